"""The search runtime every strategy shares: data, seeding, checkpoint/resume, final training, outputs.

A strategy (nasc.search.strategies) only searches: it runs its search epochs and derives an
architecture, an ArchSpec or a path-level PathArch. The runtime trains that architecture
(``build_any``) for ``final_epochs`` and writes arch.json, model.pt, search.json and checkpoint.pt.
A checkpoint is written atomically after every epoch (RNG state included), so ``resume=True`` after
a kill repeats at most the epoch in flight and ends in the same result as an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from nasc.errors import SearchError
from nasc.events import Progress, ProgressEvent, ignore_progress
from nasc.latency import LatencyPredictor
from nasc.typed_toml import to_plain

from .budget_pick import pick_among, pick_within_budget
from .context import SearchContext
from .data import count_classes, load_data
from .objective import LatencyCosts, block_sum_ms, predicted_ms
from .outputs import (
    CHECKPOINT_NAME,
    AnyArch,
    SearchRecord,
    SearchResult,
    arch_from_dict,
    atomic_json,
    atomic_torch_save,
    build_any,
    load_checkpoint,
)
from .path_level.cell import PathArch
from .settings import DataSettings, SearchSettings
from .space import ArchSpec, Network, SearchSpace
from .strategies import Strategy, create_strategy
from .training import accuracy, batches, cosine, epoch_summary, set_lr, weight_step

CHECKPOINT_FORMAT = 3  # 3: the derived architecture as its arch.json dict (either kind), not a list of ops


@dataclass
class _State:
    """Everything a checkpoint holds besides the strategy's and the final network's weights."""

    stage: str = "search"  # search -> final -> done
    next_epoch: int = 0
    arch_json: str | None = None  # the derived architecture's to_dict(), as JSON (ArchSpec or PathArch)
    budget_pick: dict[str, Any] | None = None  # BudgetPick.to_dict() when the budget chose the architecture
    history: list[dict[str, Any]] = field(default_factory=list)


class _Run:
    def __init__(self, settings: SearchSettings, data_settings: DataSettings, base_dir: str | Path,
                 predictor: LatencyPredictor, out_dir: Path, progress: Progress) -> None:
        self.settings = settings
        self.out_dir = out_dir
        self.progress = progress
        data = load_data(data_settings, settings.space, settings.seed, base_dir)
        space = SearchSpace(settings.space, data.num_classes)
        costs = LatencyCosts.from_predictor(space, predictor)
        self.fingerprint = hashlib.sha256(
            json.dumps(
                {"format": CHECKPOINT_FORMAT, "search": to_plain(settings), "data": to_plain(data_settings),
                 "classes": list(data.class_names), "costs": to_plain(costs)},
                sort_keys=True,
            ).encode()
        ).hexdigest()
        torch.manual_seed(settings.seed)
        gen = torch.Generator().manual_seed(settings.seed + 1)
        self.ctx = SearchContext(settings, data, space, predictor, costs, gen, progress)
        self.strategy: Strategy = create_strategy(settings.strategy, self.ctx)
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
                "arch": st.arch_json,
                "history": json.dumps(st.history),
                "budget_pick": json.dumps(st.budget_pick),
                "gen_state": self.ctx.gen.get_state(),
                "strategy": self.strategy.state_dict(),
                "final_net": self.net.state_dict() if self.net is not None else None,
                "final_opt": self.final_opt.state_dict() if self.final_opt is not None else None,
            },
            self.checkpoint_path,
        )

    def load(self, ckpt: dict[str, Any]) -> None:
        if ckpt.get("format") != CHECKPOINT_FORMAT or ckpt.get("fingerprint") != self.fingerprint:
            raise SearchError(
                f"{self.checkpoint_path}: the checkpoint was made with other settings, data, latencies or nasc; "
                "run with the same settings, or without --resume into another output folder"
            )
        self.strategy.load_state_dict(ckpt["strategy"])
        self.ctx.gen.set_state(ckpt["gen_state"])
        self.state = _State(
            stage=ckpt["stage"], next_epoch=ckpt["next_epoch"],
            arch_json=ckpt["arch"], history=json.loads(ckpt["history"]),
            budget_pick=json.loads(ckpt.get("budget_pick", "null")),
        )
        if ckpt["final_net"] is not None:
            self._make_final(self.derived_arch(), init=False)
            assert self.net is not None and self.final_opt is not None
            self.net.load_state_dict(ckpt["final_net"])
            self.final_opt.load_state_dict(ckpt["final_opt"])

    def derived_arch(self) -> AnyArch:
        """The derived architecture the checkpoint holds (the search must have ended)."""
        assert self.state.arch_json is not None
        return arch_from_dict(json.loads(self.state.arch_json), str(self.checkpoint_path))

    # --- final training -----------------------------------------------------------------------
    def _make_final(self, arch: AnyArch, init: bool) -> None:
        if init:
            torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=self.ctx.gen)))
        self.net = build_any(arch)
        if init:
            self.strategy.init_final(self.net, arch)
        s = self.settings
        self.final_opt = torch.optim.SGD(
            self.net.parameters(), lr=s.weight_lr, momentum=0.9, nesterov=True, weight_decay=s.weight_decay
        )

    def final_epoch(self, epoch: int) -> None:
        assert self.net is not None and self.final_opt is not None
        s, data = self.settings, self.ctx.data
        train = batches(data.train, s.batch_size, self.ctx.gen)
        label = f"epoch {epoch + 1}/{s.final_epochs}"
        loss_sum = correct = seen = 0.0
        for i, idx in enumerate(train):
            set_lr(self.final_opt, cosine(s.weight_lr, epoch * len(train) + i, s.final_epochs * len(train)))
            loss, right = weight_step(self.net, self.final_opt, data.train, idx)
            loss_sum, correct, seen = loss_sum + loss, correct + right, seen + len(idx)
            self.progress(ProgressEvent("final", i + 1, len(train), label=label))
        record = {
            "stage": "final",
            "epoch": epoch + 1,
            "train_loss": round(loss_sum / seen, 6),
            "train_accuracy": round(correct / seen, 6),
            "valid_accuracy": round(accuracy(self.net, data.valid), 6),
        }
        self._record(record, label)

    def _record(self, record: dict[str, Any], label: str) -> None:
        self.state.history.append(record)
        figures = {k: float(v) for k, v in record.items() if k.endswith(("_loss", "_accuracy", "_ms"))
                   and isinstance(v, int | float)}
        self.progress(ProgressEvent(str(record["stage"]), label=label, message=epoch_summary(record),
                                    figures=figures))

    # --- the whole run ------------------------------------------------------------------------
    def run(self) -> SearchResult:
        s, st = self.settings, self.state
        if st.stage == "search":
            for epoch in range(st.next_epoch, self.strategy.search_epochs):
                record = self.strategy.search_epoch(epoch)
                self._record(record, f"epoch {record['epoch']}")
                st.next_epoch = epoch + 1
                self.save()
                self._write_record(None)
            arch = self.derive()
            self._make_final(arch, init=True)
            st.stage, st.next_epoch, st.arch_json = "final", 0, json.dumps(arch.to_dict())
            self.save()
        for epoch in range(st.next_epoch, s.final_epochs):
            self.final_epoch(epoch)
            st.next_epoch = epoch + 1
            self.save()
            self._write_record(None)
        return self.finish()

    def derive(self) -> AnyArch:
        """The strategy's architecture, or with [search] derive = "budget" the most probable (or best
        scored) one that spends the budget (budget_pick.py). The pick chooses one op per layer of the
        space, so a grown path-level network is returned as the strategy derived it."""
        arch = self.strategy.derive()
        s, ctx = self.settings, self.ctx
        if s.derive != "budget" or s.latency_ms is None:
            return arch
        if isinstance(arch, PathArch):
            self.progress(ProgressEvent.note("search", f"derived {arch} as grown: derive = \"budget\" picks among "
                                                       "one-op-per-layer architectures, not path-level networks"))
            return arch
        layer_ops = [layer.ops for layer in ctx.space.layers()]

        def network_ms(ops: tuple[str, ...]) -> float:
            return predicted_ms(ArchSpec(ctx.space, ops), ctx.predictor)

        scored = self.strategy.scored_candidates()
        if scored is None:
            pick = pick_within_budget(layer_ops, self.strategy.layer_scores(), ctx.costs, s.latency_ms, network_ms,
                                      fill=s.budget_fill)
        else:
            pick = pick_among(scored, layer_ops, ctx.costs, s.latency_ms, network_ms, fill=s.budget_fill)
        self.state.budget_pick = pick.to_dict()
        self.progress(ProgressEvent.note("search", f"derived {' '.join(pick.ops)}: {pick.message()}"))
        return ArchSpec(ctx.space, pick.ops)

    def finish(self) -> SearchResult:
        assert self.net is not None and self.state.arch_json is not None
        ctx = self.ctx
        arch = self.derived_arch()
        predicted = predicted_ms(arch, ctx.predictor)
        budget = self.settings.latency_ms
        result = SearchResult(
            arch=arch,
            strategy=self.settings.strategy,
            predicted_ms=predicted,
            block_sum_ms=block_sum_ms(arch, ctx.predictor),
            budget_ms=budget,
            meets_budget=None if budget is None else predicted <= budget,
            test_accuracy=accuracy(self.net, ctx.data.test),
            valid_accuracy=accuracy(self.net, ctx.data.valid),
            seed=self.settings.seed,
            out_dir=str(self.out_dir),
            preprocessing=ctx.data.preprocessing(),
            figures={**self.strategy.result_figures(),
                     **({"budget_pick": self.state.budget_pick} if self.state.budget_pick else {})},
        )
        atomic_json(arch.to_dict(), self.out_dir / "arch.json")
        atomic_torch_save(self.net.state_dict(), self.out_dir / "model.pt")
        self._write_record(result)
        self.state.stage = "done"
        self.save()
        return result

    def _write_record(self, result: SearchResult | None) -> None:
        ctx = self.ctx
        record = SearchRecord(
            complete=result is not None,
            strategy=self.settings.strategy,
            settings=to_plain(self.settings),
            space=ctx.space.to_dict(),
            latency={
                "fixed_ms": ctx.costs.fixed_ms,
                "layers": [dict(zip(layer.ops, costs, strict=True))
                           for layer, costs in zip(ctx.space.layers(), ctx.costs.layer_ms, strict=True)],
            },
            history=tuple(self.state.history),
            result=result,
        )
        atomic_json(record.to_dict(), self.out_dir / "search.json")


def search_space(settings: SearchSettings, data_settings: DataSettings, base_dir: str | Path = ".",
                 num_classes: int | None = None) -> SearchSpace:
    """The space of [search.space] (classes counted from [data] unless given)."""
    if num_classes is None:
        num_classes = count_classes(data_settings, settings.space, base_dir)
    return SearchSpace(settings.space, num_classes)


def run_search(
    settings: SearchSettings,
    data_settings: DataSettings,
    predictor: LatencyPredictor,
    out_dir: str | Path,
    *,
    base_dir: str | Path = ".",
    progress: Progress = ignore_progress,
    resume: bool = False,
) -> SearchResult:
    """Search with `settings.strategy` on [data] for `predictor`'s device; train the result and save it.

    Writes arch.json, model.pt (state dict of `build_any(arch)`), search.json and checkpoint.pt into
    `out_dir`. With `resume`, continues from checkpoint.pt.
    """
    if not isinstance(predictor, LatencyPredictor):
        raise SearchError(f"{type(predictor).__name__} is not a LatencyPredictor (block_ms, network_ms)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    run = _Run(settings, data_settings, base_dir, predictor, out, progress)
    ckpt = load_checkpoint(run.checkpoint_path)
    if ckpt is not None and resume:
        run.load(ckpt)
        if run.state.stage == "done":
            return run.finish()
    elif ckpt is not None and ckpt.get("stage") != "done":
        raise SearchError(
            f"{run.checkpoint_path}: an unfinished search is there; pass --resume to continue it, "
            "or choose another output folder with -o"
        )
    return run.run()
