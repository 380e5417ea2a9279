"""Path-level network transformation (Cai et al., ICML 2018), hardware-aware: grow a trained network one
function-preserving move at a time, each move chosen by a policy and judged on the device's latency.

The start network ([search.path_level] start) trains for ``start_epochs``. Each round then:
1. the policy (the Tree-LSTM meta-controller, or uniform moves) samples ``moves_per_round`` moves on
   the current network, each one move away from it;
2. each move is applied to a copy with inherited weights, checked to keep the function, perturbed
   (path_level/grow.py), fine-tuned ``finetune_steps`` steps and scored on the validation split (or
   its fixed ``eval_images`` subset); its latency is the predictor's for the grown network's blocks,
   a multi-branch cell being a block of its own;
3. reward = ``penalised_reward(accuracy, latency, [search] latency_ms)``; the policy learns from the
   batch (REINFORCE for the controller);
4. the current network gets the same fine-tune on the same batches and is scored the same way, so a
   move wins by what it adds, not by its extra training; the best candidate replaces the current
   network only if its reward is higher (accepted), else the fine-tuned current network goes on.
``derive`` returns the grown network's PathArch and ``init_final`` loads its weights into the final
network, so the runtime's final training continues the grown network (inherited, function-preserving).

One runtime search epoch is one start epoch or one round, so a checkpoint sits between any two rounds.
Every draw of the round (batches, seeds of the moves and of their noise) goes through the context's
generator, torch's global generator is reseeded from it each epoch, and the policy's own generator is
in the checkpoint, so a resumed search repeats an uninterrupted one exactly.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from itertools import cycle, islice
from typing import Any

import torch

from nasc.errors import ConfigError, SearchError
from nasc.events import ProgressEvent

from ..context import SearchContext
from ..objective import predicted_ms
from ..outputs import AnyArch
from ..path_level.cell import PathArch
from ..path_level.controller import ControllerSettings, TreeController
from ..path_level.grow import FineTune, finetune, grow
from ..path_level.modules import build_path
from ..path_level.policy import Policy, RandomPolicy
from ..path_level.rewards import penalised_reward
from ..path_level.start import start_arch
from ..space import Network
from ..training import accuracy, batches, cosine, set_lr, weight_step

SEED_RANGE = 2**31 - 1  # seeds of moves and noise (torch.Generator takes any int; a JSON-safe range)


@dataclass(frozen=True)
class Score:
    """A network as a round judges it: accuracy on the scoring split, predicted latency, the reward."""

    valid_accuracy: float
    predicted_ms: float
    reward: float

    def to_dict(self) -> dict[str, float]:
        """Rounded for search.json."""
        return {"valid_accuracy": round(self.valid_accuracy, 6), "predicted_ms": round(self.predicted_ms, 6),
                "reward": round(self.reward, 6)}


class PathLevel:
    """The path-level strategy (see the module docstring)."""

    stage = "path-level"  # history records and progress of the rounds

    def __init__(self, ctx: SearchContext) -> None:
        self.ctx = ctx
        self.settings = s = ctx.settings.path_level
        try:
            self.start = start_arch(ctx.space, s.start)
        except ValueError as err:
            raise ConfigError(f"[search.path_level] start: {err}") from None
        self.arch = self.start
        self.net = build_path(self.arch)
        self.start_opt = self._start_optimizer() if s.start_epochs else None
        self.policy: Policy = (RandomPolicy(seed=ctx.settings.seed) if s.policy == "random" else TreeController(
            ControllerSettings(lr=s.controller_lr, entropy_weight=s.entropy_weight, baseline_step=s.baseline_step,
                               seed=ctx.settings.seed)))
        self.rounds: list[dict[str, Any]] = []
        self.search_epochs = s.start_epochs + s.rounds
        self.eval_split = ctx.data.valid.fixed_subset(s.eval_images, ctx.settings.seed)

    def _start_optimizer(self) -> torch.optim.Optimizer:
        shared = self.ctx.settings
        return torch.optim.SGD(self.net.parameters(), lr=shared.weight_lr, momentum=0.9, nesterov=True,
                               weight_decay=shared.weight_decay)

    # --- resume -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "arch": json.dumps(self.arch.to_dict()), "net": self.net.state_dict(),
            "start_opt": self.start_opt.state_dict() if self.start_opt is not None else None,
            "policy": self.policy.checkpoint(), "rounds": json.dumps(self.rounds),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.arch = PathArch.from_dict(json.loads(state["arch"]), "checkpoint (path-level arch)")
        self.net = build_path(self.arch)
        self.net.load_state_dict(state["net"])
        self.start_opt = None
        if state["start_opt"] is not None:
            self.start_opt = self._start_optimizer()
            self.start_opt.load_state_dict(state["start_opt"])
        self.policy.restore(state["policy"])
        self.rounds = json.loads(state["rounds"])

    # --- scoring ------------------------------------------------------------------------------
    def score(self, arch: PathArch, net: Network) -> Score:
        """Accuracy (running statistics), the predictor's latency of `arch`, the penalised reward."""
        s = self.settings
        acc = accuracy(net, self.eval_split)
        ms = predicted_ms(arch, self.ctx.predictor)
        reward = penalised_reward(acc, ms, self.ctx.settings.latency_ms, form=s.penalty, weight=s.penalty_weight,
                                  stretch=s.stretch)
        return Score(acc, ms, reward)

    # --- epochs -------------------------------------------------------------------------------
    def search_epoch(self, epoch: int) -> dict[str, Any]:
        torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=self.ctx.gen)))
        if epoch < self.settings.start_epochs:
            return self._start_epoch(epoch)
        return self._round(epoch - self.settings.start_epochs, epoch)

    def _start_epoch(self, epoch: int) -> dict[str, Any]:
        """One epoch of the start network (SGD, cosine over the start epochs)."""
        ctx, s, shared = self.ctx, self.settings, self.ctx.settings
        assert self.start_opt is not None
        train = batches(ctx.data.train, shared.batch_size, ctx.gen)
        label = f"start epoch {epoch + 1}/{s.start_epochs}"
        loss_sum = correct = seen = 0.0
        for i, idx in enumerate(train):
            set_lr(self.start_opt, cosine(shared.weight_lr, epoch * len(train) + i, s.start_epochs * len(train)))
            loss, right = weight_step(self.net, self.start_opt, ctx.data.train, idx)
            loss_sum, correct, seen = loss_sum + loss, correct + right, seen + len(idx)
            ctx.progress(ProgressEvent("warmup", i + 1, len(train), label=label))
        if epoch + 1 == s.start_epochs:
            self.start_opt = None  # the rounds fine-tune each network with an optimiser of its own
        return {"stage": "warmup", "epoch": epoch + 1, "train_loss": round(loss_sum / seen, 6),
                "train_accuracy": round(correct / seen, 6),
                "valid_accuracy": round(accuracy(self.net, self.eval_split), 6), "derived": str(self.arch),
                "derived_predicted_ms": round(predicted_ms(self.arch, ctx.predictor), 6)}

    def _round(self, index: int, epoch: int) -> dict[str, Any]:
        """Sample moves, grow and score each, score the fine-tuned current network, learn, maybe accept."""
        ctx, s, shared = self.ctx, self.settings, self.ctx.settings
        train = ctx.data.train
        label = f"round {index + 1}/{s.rounds}"
        order = batches(train, shared.batch_size, ctx.gen)
        calibration = [train.x[idx] for idx in order[: s.bn_batches]]
        tune = list(islice(cycle(order), s.finetune_steps))  # the same batches for every network of the round
        steps = self.policy.sample(self.arch, s.moves_per_round)
        seeds = [int(torch.randint(0, SEED_RANGE, (1,), generator=ctx.gen)) for _ in steps]
        total = len(steps) + 1
        tried: list[dict[str, Any]] = []
        grown: list[tuple[PathArch, Network, FineTune, Score]] = []
        for n, (step, seed) in enumerate(zip(steps, seeds, strict=True)):
            candidate = grow(self.arch, self.net, step.move, calibration, seed, s.perturb_scale)
            tuned = finetune(candidate.network, train, tune, s.finetune_lr, shared.weight_decay)
            score = self.score(candidate.arch, candidate.network)
            grown.append((candidate.arch, candidate.network, tuned, score))
            tried.append({"move": str(step.move), "spec": step.move.to_dict(), "arch": str(candidate.arch),
                          "log_prob": round(step.log_prob, 6),
                          "max_output_change": float(f"{candidate.max_output_change:.3g}"),
                          "train_loss": round(tuned.train_loss, 6), **score.to_dict()})
            ctx.progress(ProgressEvent(self.stage, n + 1, total, label=label))
        current = copy.deepcopy(self.net)
        current_tuned = finetune(current, train, tune, s.finetune_lr, shared.weight_decay)
        current_score = self.score(self.arch, current)
        ctx.progress(ProgressEvent(self.stage, total, total, label=label))
        self.policy.update([[step] for step in steps], [score.reward for *_, score in grown])

        best = max(range(len(grown)), key=lambda i: grown[i][3].reward)  # the first of equals
        accepted = grown[best][3].reward > current_score.reward
        before = self.arch
        if accepted:
            self.arch, self.net, kept_tune, kept = grown[best]
        else:
            self.net, kept_tune, kept = current, current_tuned, current_score
        summary = {
            "round": index + 1, "policy": s.policy, "arch": str(before),
            "current": {"train_loss": round(current_tuned.train_loss, 6), **current_score.to_dict()},
            "moves": tried, "best_index": best, "accepted": str(steps[best].move) if accepted else None,
            "arch_after": str(self.arch), "baseline": _rounded(getattr(self.policy, "baseline", None)),
        }
        self.rounds.append(summary)
        ctx.progress(ProgressEvent.note(self.stage, f"{label}: best move {steps[best].move}, reward "
                                                    f"{grown[best][3].reward:.3f} against the current network's "
                                                    f"{current_score.reward:.3f}: "
                                                    f"{'accepted' if accepted else 'rejected'}; now {self.arch}"))
        return {"stage": self.stage, "epoch": epoch + 1, "train_loss": round(kept_tune.train_loss, 6),
                "train_accuracy": round(kept_tune.train_accuracy, 6), "valid_accuracy": round(kept.valid_accuracy, 6),
                "reward": round(kept.reward, 6), "derived": str(self.arch),
                "derived_predicted_ms": round(kept.predicted_ms, 6), "path_round": summary}

    # --- results ------------------------------------------------------------------------------
    def derive(self) -> AnyArch:
        """The grown network as it stands."""
        return self.arch

    def layer_scores(self) -> list[list[float]]:
        """Not meaningful here: a grown network is no choice of one op per layer (the runtime never asks,
        since derive gives a PathArch)."""
        raise SearchError("path-level grows one network; it has no per-layer op scores to pick from")

    def scored_candidates(self) -> None:
        return None  # the candidates of a round are path-level networks, not one-op-per-layer architectures

    def init_final(self, net: Network, arch: AnyArch) -> None:
        """The grown network's weights: the final training continues it."""
        if arch != self.arch:
            raise SearchError(f"path-level: asked to initialise {arch}, but the search grew {self.arch}")
        net.load_state_dict(self.net.state_dict())

    def result_figures(self) -> dict[str, Any]:
        accepted = [r["accepted"] for r in self.rounds if r["accepted"] is not None]
        return {"policy": self.settings.policy, "start": str(self.start),
                "start_predicted_ms": predicted_ms(self.start, self.ctx.predictor),
                "accepted_moves": accepted, "rounds": list(self.rounds)}


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


STRATEGY = PathLevel
