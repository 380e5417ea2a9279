"""ProxylessNAS search: warm-up, alternating weight / architecture steps, derive, train, report.

`run_search(config, predictor, out_dir)` is the library entry behind `nasc search`. Weight steps
use the training split, architecture steps the validation split, the final accuracy the test split.
A checkpoint is written atomically after every epoch (RNG state included), so `resume=True` after
a kill repeats at most the epoch in flight and ends in the same result as an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nasc.config import Config
from nasc.errors import SearchError
from nasc.typed_toml import to_plain

from .data import Dataset, Split, load_data
from .latency import LatencyPredictor
from .objective import LatencyCosts, expected_latency_ms, latency_loss, predicted_ms, rl_reward
from .outputs import (
    CHECKPOINT_NAME,
    SearchResult,
    atomic_json,
    atomic_torch_save,
    load_checkpoint,
)
from .settings import SearchSettings
from .space import ArchSpec, Network, SearchSpace, build
from .supernet import Supernet, inherit_weights

CHECKPOINT_FORMAT = 1
EVAL_BATCH = 256


@dataclass(frozen=True)
class ProgressEvent:
    """One step (or, with `summary` set, the end of an epoch) of a stage: warmup, search or final."""

    stage: str
    epoch: int  # 1-based within the stage
    epochs: int
    step: int
    steps: int
    summary: str = ""


Progress = Callable[[ProgressEvent], None]


def search_space(config: Config, num_classes: int | None = None) -> SearchSpace:
    """The space of `config` ([search.space]; classes counted from [data] unless given)."""
    from .data import count_classes

    if num_classes is None:
        num_classes = count_classes(config.data, config.search.space, config.base_dir)
    return SearchSpace(config.search.space, num_classes)


def _batches(split: Split, batch_size: int, gen: torch.Generator) -> list[torch.Tensor]:
    """Shuffled index batches; a last batch of one image is dropped (batch norm needs two)."""
    order = torch.randperm(len(split), generator=gen)
    batches = list(torch.split(order, batch_size))
    if len(batches) > 1 and len(batches[-1]) < 2:
        batches.pop()
    return batches


def _cycle(batches: list[torch.Tensor]) -> Iterator[torch.Tensor]:
    while True:
        yield from batches


def _cosine(base: float, step: int, total: int) -> float:
    return 0.5 * base * (1 + math.cos(math.pi * min(step, total) / max(total, 1)))


def _set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr


@torch.no_grad()
def accuracy(model: nn.Module, split: Split, train_mode_bn: bool = False) -> float:
    """Top-1 accuracy on `split`. `train_mode_bn` uses batch statistics (supernet paths) and
    leaves the running statistics untouched."""
    saved = {k: v.clone() for k, v in model.named_buffers()} if train_mode_bn else None
    model.train(train_mode_bn)
    correct = 0
    for start in range(0, len(split), EVAL_BATCH):
        x, y = split.x[start : start + EVAL_BATCH], split.y[start : start + EVAL_BATCH]
        correct += int((model(x).argmax(1) == y).sum())
    if saved is not None:
        for name, buf in model.named_buffers():
            buf.copy_(saved[name])
    return correct / max(len(split), 1)


@dataclass
class _State:
    """Everything a checkpoint holds."""

    stage: str = "search"  # search -> final -> done
    next_epoch: int = 0
    rl_baseline: float | None = None
    arch_ops: tuple[str, ...] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)


class _Search:
    def __init__(self, config: Config, predictor: LatencyPredictor, out_dir: Path, progress: Progress | None) -> None:
        self.settings: SearchSettings = config.search
        self.out_dir = out_dir
        self.progress = progress or (lambda event: None)
        self.predictor = predictor
        self.data: Dataset = load_data(config.data, self.settings.space, self.settings.seed, config.base_dir)
        self.space = SearchSpace(self.settings.space, self.data.num_classes)
        self.costs = LatencyCosts.from_predictor(self.space, predictor)
        self.cost_tensors = self.costs.tensors()
        self.fingerprint = hashlib.sha256(
            json.dumps(
                {"format": CHECKPOINT_FORMAT, "search": to_plain(self.settings), "data": to_plain(config.data),
                 "classes": list(self.data.class_names), "costs": to_plain(self.costs)},
                sort_keys=True,
            ).encode()
        ).hexdigest()
        s = self.settings
        torch.manual_seed(s.seed)
        self.gen = torch.Generator().manual_seed(s.seed + 1)
        self.supernet = Supernet(self.space, share_weights=s.weight_sharing == "superkernel")
        self.weight_opt = torch.optim.SGD(
            self.supernet.weight_parameters(), lr=s.weight_lr, momentum=0.9, nesterov=True, weight_decay=s.weight_decay
        )
        self.arch_opt = torch.optim.Adam(self.supernet.arch_parameters(), lr=s.arch_lr, betas=(0.0, 0.999), eps=1e-8)
        self.net: Network | None = None
        self.final_opt: torch.optim.Optimizer | None = None
        self.state = _State()

    # --- checkpoint ---------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / CHECKPOINT_NAME

    def save(self) -> None:
        st = self.state
        atomic_torch_save(
            {
                "format": CHECKPOINT_FORMAT,
                "fingerprint": self.fingerprint,
                "stage": st.stage,
                "next_epoch": st.next_epoch,
                "rl_baseline": st.rl_baseline,
                "arch_ops": list(st.arch_ops) if st.arch_ops else None,
                "history": json.dumps(st.history),
                "gen_state": self.gen.get_state(),
                "supernet": self.supernet.state_dict(),
                "weight_opt": self.weight_opt.state_dict(),
                "arch_opt": self.arch_opt.state_dict(),
                "final_net": self.net.state_dict() if self.net is not None else None,
                "final_opt": self.final_opt.state_dict() if self.final_opt is not None else None,
            },
            self.checkpoint_path,
        )

    def load(self, ckpt: dict[str, Any]) -> None:
        if ckpt.get("format") != CHECKPOINT_FORMAT or ckpt.get("fingerprint") != self.fingerprint:
            raise SearchError(
                f"{self.checkpoint_path}: the checkpoint was made with other settings, data or latencies; "
                "run with the same settings, or without --resume into another output folder"
            )
        self.supernet.load_state_dict(ckpt["supernet"])
        self.weight_opt.load_state_dict(ckpt["weight_opt"])
        self.arch_opt.load_state_dict(ckpt["arch_opt"])
        self.gen.set_state(ckpt["gen_state"])
        self.state = _State(
            stage=ckpt["stage"], next_epoch=ckpt["next_epoch"], rl_baseline=ckpt["rl_baseline"],
            arch_ops=tuple(ckpt["arch_ops"]) if ckpt["arch_ops"] else None, history=json.loads(ckpt["history"]),
        )
        if ckpt["final_net"] is not None:
            self._make_final(ArchSpec(self.space, self.state.arch_ops or ()), init=False)
            assert self.net is not None and self.final_opt is not None
            self.net.load_state_dict(ckpt["final_net"])
            self.final_opt.load_state_dict(ckpt["final_opt"])

    # --- steps --------------------------------------------------------------------------------
    def weight_step(self, model: nn.Module, opt: torch.optim.Optimizer, idx: torch.Tensor) -> tuple[float, int]:
        model.train()
        x, y = self.data.train.x[idx], self.data.train.y[idx]
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach()) * len(idx), int((logits.argmax(1) == y).sum())

    def expected_ms(self) -> torch.Tensor:
        return expected_latency_ms(self.supernet.probs(), self.cost_tensors, self.costs.fixed_ms)

    def arch_step_grad(self, idx: torch.Tensor) -> float:
        """Binary-gate gradient step: two paths per layer run; dL/dgates -> dL/dalpha."""
        net = self.supernet
        net.train()
        net.sample_two(self.gen)
        x, y = self.data.valid.x[idx], self.data.valid.y[idx]
        loss = latency_loss(F.cross_entropy(net(x), y), self.expected_ms(), self.settings)
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
        ops = net.sample_single(self.gen)
        x, y = self.data.valid.x[idx], self.data.valid.y[idx]
        with torch.no_grad():
            acc = float((net(x).argmax(1) == y).float().mean())
        reward = rl_reward(acc, self.costs.arch_ms(self.space, ops), self.settings)
        st = self.state
        baseline = reward if st.rl_baseline is None else st.rl_baseline
        st.rl_baseline = self.settings.rl_baseline_decay * baseline + (1 - self.settings.rl_baseline_decay) * reward
        loss = -(reward - baseline) * net.log_prob()
        self.arch_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.arch_opt.step()
        self.arch_opt.zero_grad(set_to_none=True)
        return -reward

    # --- epochs -------------------------------------------------------------------------------
    def search_epoch(self, epoch: int) -> None:
        s = self.settings
        warm = epoch < s.warmup_epochs
        stage, stage_epoch, stage_epochs = (
            ("warmup", epoch + 1, s.warmup_epochs) if warm else ("search", epoch - s.warmup_epochs + 1, s.epochs)
        )
        train = _batches(self.data.train, s.batch_size, self.gen)
        valid = _cycle(_batches(self.data.valid, s.batch_size, self.gen))
        total_steps = (s.warmup_epochs + s.epochs) * len(train)
        loss_sum = correct = seen = 0.0
        arch_losses: list[float] = []
        for i, idx in enumerate(train):
            _set_lr(self.weight_opt, _cosine(s.weight_lr, epoch * len(train) + i, total_steps))
            self.supernet.sample_single(self.gen)
            loss, right = self.weight_step(self.supernet, self.weight_opt, idx)
            loss_sum, correct, seen = loss_sum + loss, correct + right, seen + len(idx)
            if not warm and (i + 1) % s.arch_update_every == 0:
                step = self.arch_step_grad if s.arch_algo == "grad" else self.arch_step_rl
                arch_losses.append(step(next(valid)))
            self.progress(ProgressEvent(stage, stage_epoch, stage_epochs, i + 1, len(train)))
        derived = self.supernet.derive()
        self.supernet.choose(derived)
        record = {
            "stage": stage,
            "epoch": stage_epoch,
            "train_loss": round(loss_sum / seen, 6),
            "train_accuracy": round(correct / seen, 6),
            "valid_accuracy": round(accuracy(self.supernet, self.data.valid, train_mode_bn=True), 6),
            "arch_loss": round(sum(arch_losses) / len(arch_losses), 6) if arch_losses else None,
            "expected_ms": round(float(self.expected_ms().detach()), 6),
            "derived": str(derived),
            "derived_ms": round(self.costs.arch_ms(self.space, derived.ops), 6),
            "probabilities": self.supernet.probabilities(),
        }
        self.state.history.append(record)
        self.progress(ProgressEvent(stage, stage_epoch, stage_epochs, len(train), len(train), summary=_summary(record)))

    def _make_final(self, arch: ArchSpec, init: bool) -> None:
        if init:
            torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=self.gen)))
        self.net = build(arch)
        if init and self.settings.final_init == "inherit":
            inherit_weights(self.net, self.supernet, arch)
        s = self.settings
        self.final_opt = torch.optim.SGD(
            self.net.parameters(), lr=s.weight_lr, momentum=0.9, nesterov=True, weight_decay=s.weight_decay
        )

    def final_epoch(self, epoch: int) -> None:
        assert self.net is not None and self.final_opt is not None
        s = self.settings
        train = _batches(self.data.train, s.batch_size, self.gen)
        loss_sum = correct = seen = 0.0
        for i, idx in enumerate(train):
            _set_lr(self.final_opt, _cosine(s.weight_lr, epoch * len(train) + i, s.final_epochs * len(train)))
            loss, right = self.weight_step(self.net, self.final_opt, idx)
            loss_sum, correct, seen = loss_sum + loss, correct + right, seen + len(idx)
            self.progress(ProgressEvent("final", epoch + 1, s.final_epochs, i + 1, len(train)))
        record = {
            "stage": "final",
            "epoch": epoch + 1,
            "train_loss": round(loss_sum / seen, 6),
            "train_accuracy": round(correct / seen, 6),
            "valid_accuracy": round(accuracy(self.net, self.data.valid), 6),
        }
        self.state.history.append(record)
        done = ProgressEvent("final", epoch + 1, s.final_epochs, len(train), len(train), summary=_summary(record))
        self.progress(done)

    # --- the whole run ------------------------------------------------------------------------
    def run(self) -> SearchResult:
        s, st = self.settings, self.state
        search_epochs = s.warmup_epochs + s.epochs
        if st.stage == "search":
            for epoch in range(st.next_epoch, search_epochs):
                self.search_epoch(epoch)
                st.next_epoch = epoch + 1
                self.save()
                self._write_search_json(None)
            arch = self.supernet.derive()
            self._make_final(arch, init=True)
            st.stage, st.next_epoch, st.arch_ops = "final", 0, arch.ops
            self.save()
        for epoch in range(st.next_epoch, s.final_epochs):
            self.final_epoch(epoch)
            st.next_epoch = epoch + 1
            self.save()
            self._write_search_json(None)
        return self._finish()

    def _finish(self) -> SearchResult:
        assert self.net is not None and self.state.arch_ops is not None
        arch = ArchSpec(self.space, self.state.arch_ops)
        predicted = predicted_ms(arch, self.predictor)
        budget = self.settings.latency_ms
        result = SearchResult(
            arch=arch,
            predicted_ms=predicted,
            block_sum_ms=self.costs.arch_ms(self.space, arch.ops),
            expected_ms=float(self.expected_ms().detach()),
            budget_ms=budget,
            meets_budget=None if budget is None else predicted <= budget,
            test_accuracy=accuracy(self.net, self.data.test),
            valid_accuracy=accuracy(self.net, self.data.valid),
            arch_algo=self.settings.arch_algo,
            seed=self.settings.seed,
            out_dir=str(self.out_dir),
            preprocessing=self.data.preprocessing(),
        )
        atomic_json(arch.to_dict(), self.out_dir / "arch.json")
        atomic_torch_save(self.net.state_dict(), self.out_dir / "model.pt")
        self._write_search_json(result)
        self.state.stage = "done"
        self.save()
        return result

    def _write_search_json(self, result: SearchResult | None) -> None:
        atomic_json(
            {
                "complete": result is not None,
                "settings": to_plain(self.settings),
                "space": self.space.to_dict(),
                "latency": {
                    "fixed_ms": self.costs.fixed_ms,
                    "layers": [
                        dict(zip(layer.ops, costs, strict=True))
                        for layer, costs in zip(self.space.layers(), self.costs.layer_ms, strict=True)
                    ],
                },
                "history": self.state.history,
                "result": result.to_dict() if result is not None else None,
            },
            self.out_dir / "search.json",
        )


def _summary(record: dict[str, Any]) -> str:
    parts = [f"{record['stage']} {record['epoch']}", f"loss {record['train_loss']:.3f}",
             f"valid acc {record['valid_accuracy']:.3f}"]
    if "expected_ms" in record:
        parts += [f"expected {record['expected_ms']:.4f} ms", record["derived"]]
    return "  ".join(parts)


def run_search(
    config: Config,
    predictor: LatencyPredictor,
    out_dir: str | Path | None = None,
    progress: Progress | None = None,
    resume: bool = False,
) -> SearchResult:
    """Search the space of `config` for its data and `predictor`'s device; train and save the result.

    Writes arch.json, model.pt (state dict of `build(arch)`), search.json and checkpoint.pt into
    `out_dir` (default: [project].output_dir/search). With `resume`, continues from checkpoint.pt.
    """
    if not isinstance(predictor, LatencyPredictor):
        raise SearchError(f"{type(predictor).__name__} is not a LatencyPredictor (block_ms, network_ms)")
    out = Path(out_dir) if out_dir is not None else config.output_dir() / "search"
    out.mkdir(parents=True, exist_ok=True)
    search = _Search(config, predictor, out, progress)
    ckpt = load_checkpoint(search.checkpoint_path)
    if ckpt is not None and resume:
        search.load(ckpt)
        if search.state.stage == "done":
            return search._finish()
    elif ckpt is not None and ckpt.get("stage") != "done":
        raise SearchError(
            f"{search.checkpoint_path}: an unfinished search is there; pass --resume to continue it, "
            "or choose another output folder with -o"
        )
    return search.run()
