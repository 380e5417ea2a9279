"""The live display: a multi-stage run keeps its own bar (stage k/n NAME) beside the running stage's bar."""

from __future__ import annotations

import io

from rich.console import Console

from nasc.cli.render import EventRenderer
from nasc.events import RUN_STAGE, ProgressEvent


def _bars(render: EventRenderer) -> list[tuple[str, float, float | None, str]]:
    assert render._progress is not None
    return [(t.description, t.completed, t.total, t.fields.get("figures", "")) for t in render._progress.tasks]


def test_the_run_bar_stays_while_stage_bars_come_and_go() -> None:
    console = Console(file=io.StringIO(), width=120)
    with EventRenderer(console) as render:
        render(ProgressEvent(RUN_STAGE, 0, 6, label="lut"))
        render(ProgressEvent("lut", 2, 6, label="local", figures={"median_ms": 0.0123}))
        assert _bars(render) == [("stage 1/6 lut", 0, 6, ""), ("lut local", 2, 6, "median 0.012 ms")]
        render(ProgressEvent(RUN_STAGE, 3, 6, label="compile"))
        render(ProgressEvent("tune", 5, 40, label="11 tasks", figures={"best_estimate_ms": 0.5}))
        assert _bars(render) == [("stage 4/6 compile", 3, 6, ""), ("tune 11 tasks", 5, 40, "best est. 0.500 ms")]
        render(ProgressEvent.note(RUN_STAGE, "stage 5/6 measure"))  # a note is a line, not a bar
        assert len(_bars(render)) == 2
    assert render._progress is None  # closed on leaving


def test_without_a_run_one_bar_replaces_the_other() -> None:
    with EventRenderer(Console(file=io.StringIO(), width=120)) as render:
        render(ProgressEvent("lut", 1, 3, label="local"))
        render(ProgressEvent("tune", 1, 9))
        assert [b[0] for b in _bars(render)] == ["tune"]
