"""ProxylessNAS: a supernet with binarized paths, weight and architecture steps alternating, a latency
term from the device's predictor ([search.proxyless]).

Weight steps use the training split, architecture steps the validation split; the architecture is
updated by the binary-gate gradient ("grad") or REINFORCE ("rl"). Every random draw goes through the
context's generator, so the runtime's checkpoints resume it exactly.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from nasc.events import ProgressEvent

from ..context import SearchContext
from ..objective import expected_latency_ms, latency_loss, predicted_ms, rl_reward
from ..space import ArchSpec, Network
from ..supernet import Supernet, inherit_weights
from ..training import accuracy, batches, cosine, cycle, set_lr, weight_step


class Proxyless:
    """The ProxylessNAS strategy (see the module docstring)."""

    def __init__(self, ctx: SearchContext) -> None:
        self.ctx = ctx
        self.settings = ctx.settings.proxyless
        shared = ctx.settings
        self.cost_tensors = ctx.costs.tensors()
        self.supernet = Supernet(ctx.space, share_weights=self.settings.weight_sharing == "superkernel")
        self.weight_opt = torch.optim.SGD(
            self.supernet.weight_parameters(), lr=shared.weight_lr, momentum=0.9, nesterov=True,
            weight_decay=shared.weight_decay,
        )
        self.arch_opt = torch.optim.Adam(self.supernet.arch_parameters(), lr=self.settings.arch_lr,
                                         betas=(0.0, 0.999), eps=1e-8)
        self.rl_baseline: float | None = None
        self.search_epochs = self.settings.warmup_epochs + self.settings.epochs

    # --- resume -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"supernet": self.supernet.state_dict(), "weight_opt": self.weight_opt.state_dict(),
                "arch_opt": self.arch_opt.state_dict(), "rl_baseline": self.rl_baseline}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.supernet.load_state_dict(state["supernet"])
        self.weight_opt.load_state_dict(state["weight_opt"])
        self.arch_opt.load_state_dict(state["arch_opt"])
        self.rl_baseline = state["rl_baseline"]

    # --- steps --------------------------------------------------------------------------------
    def expected_ms(self) -> torch.Tensor:
        return expected_latency_ms(self.supernet.probs(), self.cost_tensors, self.ctx.costs.fixed_ms)

    def arch_step_grad(self, idx: torch.Tensor) -> float:
        """Binary-gate gradient step: two paths per layer run; dL/dgates -> dL/dalpha."""
        net = self.supernet
        net.train()
        net.sample_two(self.ctx.gen)
        x, y = self.ctx.data.valid.x[idx], self.ctx.data.valid.y[idx]
        loss = latency_loss(F.cross_entropy(net(x), y), self.expected_ms(), self.ctx.settings.latency_ms,
                            self.settings)
        mixed = net.mixed_ops()
        gates = [m.gates for m in mixed]
        alphas = net.arch_parameters()
        grads = torch.autograd.grad(loss, [*gates, *alphas], allow_unused=True)  # type: ignore[list-item]
        for m, gate_grad, alpha_grad in zip(mixed, grads[: len(mixed)], grads[len(mixed) :], strict=True):
            total = m.alpha_grad_from_gates(gate_grad if gate_grad is not None else torch.zeros_like(m.alpha))
            m.alpha.grad = total + alpha_grad if alpha_grad is not None else total
        self.arch_opt.step()
        for m in mixed:
            m.rescale_alpha()
        self.arch_opt.zero_grad(set_to_none=True)
        net.zero_grad(set_to_none=True)
        return float(loss.detach())

    def arch_step_rl(self, idx: torch.Tensor) -> float:
        """REINFORCE: sample one net, reward from its batch accuracy and latency, policy gradient."""
        net = self.supernet
        net.train()
        ops = net.sample_single(self.ctx.gen)
        x, y = self.ctx.data.valid.x[idx], self.ctx.data.valid.y[idx]
        with torch.no_grad():
            acc = float((net(x).argmax(1) == y).float().mean())
        reward = rl_reward(acc, self.ctx.costs.arch_ms(self.ctx.space, ops), self.ctx.settings.latency_ms,
                           self.settings)
        baseline = reward if self.rl_baseline is None else self.rl_baseline
        decay = self.settings.rl_baseline_decay
        self.rl_baseline = decay * baseline + (1 - decay) * reward
        loss = -(reward - baseline) * net.log_prob()
        self.arch_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.arch_opt.step()
        self.arch_opt.zero_grad(set_to_none=True)
        return -reward

    # --- epochs -------------------------------------------------------------------------------
    def search_epoch(self, epoch: int) -> dict[str, Any]:
        p, shared, ctx = self.settings, self.ctx.settings, self.ctx
        warm = epoch < p.warmup_epochs
        stage, stage_epoch, stage_epochs = (
            ("warmup", epoch + 1, p.warmup_epochs) if warm else ("search", epoch - p.warmup_epochs + 1, p.epochs)
        )
        train = batches(ctx.data.train, shared.batch_size, ctx.gen)
        valid = cycle(batches(ctx.data.valid, shared.batch_size, ctx.gen))
        total_steps = self.search_epochs * len(train)
        label = f"epoch {stage_epoch}/{stage_epochs}"
        loss_sum = correct = seen = 0.0
        arch_losses: list[float] = []
        for i, idx in enumerate(train):
            set_lr(self.weight_opt, cosine(shared.weight_lr, epoch * len(train) + i, total_steps))
            self.supernet.sample_single(ctx.gen)
            loss, right = weight_step(self.supernet, self.weight_opt, ctx.data.train, idx)
            loss_sum, correct, seen = loss_sum + loss, correct + right, seen + len(idx)
            if not warm and (i + 1) % p.arch_update_every == 0:
                step = self.arch_step_grad if p.arch_algo == "grad" else self.arch_step_rl
                arch_losses.append(step(next(valid)))
            ctx.progress(ProgressEvent(stage, i + 1, len(train), label=label))
        derived = self.supernet.derive()
        self.supernet.choose(derived)
        # The epoch's candidate (the argmax path): its ops, the predictor's latency for it and its validation
        # accuracy with the supernet's running statistics. None of these draws from a generator.
        return {
            "stage": stage,
            "epoch": stage_epoch,
            "train_loss": round(loss_sum / seen, 6),
            "train_accuracy": round(correct / seen, 6),
            "valid_accuracy": round(accuracy(self.supernet, ctx.data.valid, train_mode_bn=True), 6),
            "arch_loss": round(sum(arch_losses) / len(arch_losses), 6) if arch_losses else None,
            "expected_ms": round(float(self.expected_ms().detach()), 6),
            "derived": str(derived),
            "derived_ops": list(derived.ops),
            "derived_ms": round(ctx.costs.arch_ms(ctx.space, derived.ops), 6),
            "derived_predicted_ms": round(predicted_ms(derived, ctx.predictor), 6),
            "derived_valid_accuracy": round(accuracy(self.supernet, ctx.data.valid), 6),
            "probabilities": self.supernet.probabilities(),
        }

    def derive(self) -> ArchSpec:
        return self.supernet.derive()

    def layer_scores(self) -> list[list[float]]:
        return [torch.log_softmax(m.alpha.detach(), dim=0).tolist() for m in self.supernet.mixed_ops()]

    def scored_candidates(self) -> None:
        return None  # the supernet's per-layer probabilities (layer_scores) are what it knows

    def init_final(self, net: Network, arch: ArchSpec) -> None:
        if self.settings.final_init == "inherit":
            inherit_weights(net, self.supernet, arch)

    def result_figures(self) -> dict[str, Any]:
        return {"expected_ms": float(self.expected_ms().detach()), "arch_algo": self.settings.arch_algo}


STRATEGY = Proxyless
