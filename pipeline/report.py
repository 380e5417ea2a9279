"""report.html of a search-and-compile run: one self-contained page a person reads to trust the result.

The page says what was built for which device (target, TVM and nasc versions, emulated or not), how
good it is (accuracy, predicted against measured latency, the budget, parity with onnxruntime), and
shows how it came about: the candidates the search evaluated, the architecture, the search's progress,
the tuning curve and what each stage cost. It opens offline: the style is inline and every plot is a
PNG drawn with matplotlib's Agg canvas (no pyplot, no display) and embedded as a base64 data URI.

Everything the page shows comes from :class:`ReportInputs`, whose records are read through their own
classes (SearchRecord, CompiledArtifact, MeasureReport) by :func:`load_report_inputs`. A missing piece
(no budget, no measurement, no tuning) renders as "not available: why", never as an error or an
empty plot.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nasc import __version__
from nasc.compiler.artifact import CompiledArtifact
from nasc.compiler.tune import TUNE_STAGE
from nasc.compiler.verify import ParityReport
from nasc.devices.spec import DeviceSpec
from nasc.fsutil import atomic_write_text, sha256_file
from nasc.search.ops import parse_op
from nasc.search.outputs import SearchRecord, SearchResult
from nasc.search.space import ArchSpec

from .measure import MEASURE_JSON, MeasureReport

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

StageFact = tuple[str, str, float]  # (stage name, "ran" or "reused", seconds)
STAGE_STATUSES = ("ran", "reused")
# The keys of ReportInputs.summary (as PipelineSummary names them); load_report_inputs fills any the caller
# leaves out from the records.
SUMMARY_KEYS = ("test_accuracy", "predicted_ms", "measured_ms", "prediction_error_pct", "budget_ms", "meets_budget")
EVENTS_NAME = "events.jsonl"

DPI = 110
WIDTH = 9.0  # inches: 990 pixels, the page's column
FONT_SIZE = 10
KERNEL_COLOURS = {3: "#4C72B0", 5: "#DD8452", 7: "#55A868"}
OTHER_KERNEL_COLOUR = "#8172B3"
ZERO_COLOUR = "#BBBBBB"
FIXED_COLOUR = "#6B7B8C"
BUDGET_COLOUR = "#C44E52"


@dataclass(frozen=True)
class ReportInputs:
    """Everything report.html shows, typed; built by :func:`load_report_inputs` or by hand (tests)."""

    run_dir: str
    device: dict[str, Any]  # DeviceSpec.to_dict(): name, target, connection, emulated, ...
    search: SearchRecord
    artifact: CompiledArtifact
    measure: MeasureReport | None  # None: the artifact was not measured
    bundle_path: str | None  # None: nothing was packaged
    bundle_sha256: str | None
    events: tuple[dict[str, Any], ...]  # events.jsonl: {"t_s", "stage", "step", "total", "label", "message", "figures"}
    stages: tuple[StageFact, ...]  # (stage name, "ran" / "reused", seconds), in run order
    summary: dict[str, Any]  # SUMMARY_KEYS (None where not known), as PipelineSummary names them
    generated_at: str  # ISO 8601, UTC

    def __post_init__(self) -> None:
        for stage in self.stages:
            if len(stage) != 3 or stage[1] not in STAGE_STATUSES:
                raise ValueError(f"a stage fact is (name, 'ran' or 'reused', seconds), not {stage!r}")


# --- loading ------------------------------------------------------------------------------------------------
def read_events(path: str | Path) -> tuple[dict[str, Any], ...]:
    """The event objects of an events.jsonl (none when it is missing; a torn or foreign line is skipped)."""
    file = Path(path)
    if not file.is_file():
        return ()
    events: list[dict[str, Any]] = []
    for line in file.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue  # the last line of a run killed mid-write
        if isinstance(event, dict) and isinstance(event.get("stage"), str):
            events.append(event)
    return tuple(events)


def summary_from_records(search: SearchRecord, measure: MeasureReport | None) -> dict[str, Any]:
    """SUMMARY_KEYS from the records: the budget counts as met when the measured median (else the
    prediction, when nothing was measured) is within it."""
    result = search.result
    predicted = result.predicted_ms if result is not None else None
    measured = measure.measurement.median_ms if measure is not None else None
    budget = result.budget_ms if result is not None else search.settings.get("latency_ms")
    error = None
    if predicted is not None and measured:
        error = 100.0 * (predicted - measured) / measured
    reference = measured if measured is not None else predicted
    return {
        "test_accuracy": result.test_accuracy if result is not None else None,
        "predicted_ms": predicted,
        "measured_ms": measured,
        "prediction_error_pct": error,
        "budget_ms": budget,
        "meets_budget": None if budget is None or reference is None else reference <= budget,
    }


def load_report_inputs(
    run_dir: str | Path,
    device: DeviceSpec | Mapping[str, Any] | None,
    stages: Sequence[StageFact] = (),
    summary: Mapping[str, Any] | None = None,
) -> ReportInputs:
    """The inputs of DIR/report.html from a run folder (search/, compile/, bundle/, events.jsonl).

    `device` defaults to the one compile.json names; `summary` overrides what is computed from the records
    (see :func:`summary_from_records`); its "bundle" and "bundle_sha256", when given, name the bundle.
    """
    folder = Path(run_dir)
    if isinstance(stages, Mapping | str):
        raise TypeError("stages: give a sequence of (stage name, 'ran' or 'reused', seconds) tuples")
    search = SearchRecord.load(folder / "search")
    artifact = CompiledArtifact.load(folder / "compile")
    measure = MeasureReport.load(folder / "compile") if (folder / "compile" / MEASURE_JSON).is_file() else None
    given = dict(summary or {})
    bundle_path, bundle_sha = given.get("bundle"), given.get("bundle_sha256")
    if not bundle_path or not Path(bundle_path).is_file():
        bundles = sorted((folder / "bundle").glob("*.tar.gz"))
        bundle_path = str(bundles[-1]) if bundles else None
        bundle_sha = sha256_file(bundles[-1]) if bundles else None
    elif not bundle_sha:
        bundle_sha = sha256_file(bundle_path)
    if device is None:
        device_dict = dict(artifact.device)
    elif isinstance(device, DeviceSpec):
        device_dict = device.to_dict()
    else:
        device_dict = dict(device)
    merged = summary_from_records(search, measure)
    merged.update({k: v for k, v in given.items() if k in SUMMARY_KEYS})
    return ReportInputs(
        run_dir=str(folder),
        device=device_dict,
        search=search,
        artifact=artifact,
        measure=measure,
        bundle_path=str(bundle_path) if bundle_path else None,
        bundle_sha256=str(bundle_sha) if bundle_sha else None,
        events=read_events(folder / EVENTS_NAME),
        stages=tuple((str(n), str(s), float(t)) for n, s, t in stages),
        summary=merged,
        generated_at=_dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat(),
    )


# --- formatting ---------------------------------------------------------------------------------------------
def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _ms(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:.4g} ms" if value < 100 else f"{value:.1f} ms"


def _pct(value: float | None, signed: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:+.1f} %" if signed else f"{value:.1f} %"


def _acc(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f} %"


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:.3g}"


def _na(reason: str) -> str:
    return f'<p class="na"><strong>not available:</strong> {_e(reason)}</p>'


def _target_text(target: Any) -> str:
    if isinstance(target, Mapping):
        main = " ".join(f"{k}={v}" for k, v in target.items() if k in ("kind", "mtriple", "mcpu", "mattr") and v)
        return main or json.dumps(target, sort_keys=True)
    return str(target)


# --- plots --------------------------------------------------------------------------------------------------


def _figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png_uri(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, facecolor="white")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _op_colour(op: str, max_expand: int) -> tuple[str, float]:
    """Colour by kernel, opacity by expansion (fuller = wider)."""
    if op == "zero":
        return ZERO_COLOUR, 1.0
    try:
        kernel, expand = parse_op(op)
    except ValueError:
        return OTHER_KERNEL_COLOUR, 1.0
    return KERNEL_COLOURS.get(kernel, OTHER_KERNEL_COLOUR), 0.35 + 0.65 * expand / max(max_expand, 1)


def _epoch_tag(record: Mapping[str, Any]) -> str:
    return f"{str(record.get('stage', '?'))[:1]}{record.get('epoch', '?')}"


def _search_epochs(search: SearchRecord) -> list[dict[str, Any]]:
    return [h for h in search.history if h.get("stage") in ("warmup", "search")]


def _budget_line(ax: Axes, budget: float | None, vertical: bool = True) -> None:
    if budget is None:
        return
    line = ax.axvline if vertical else ax.axhline
    line(budget, color=BUDGET_COLOUR, linestyle="--", linewidth=1.4, label=f"budget {_ms(budget)}")


def plot_candidates(search: SearchRecord, measure: MeasureReport | None) -> Figure | str:
    """Plot 1: accuracy against predicted latency of each epoch's candidate and of the final network."""
    epochs = [h for h in _search_epochs(search) if h.get("valid_accuracy") is not None]
    result = search.result
    if not epochs and result is None:
        return "the search recorded no epoch and has no result (it did not finish)"
    predicted = all(h.get("derived_predicted_ms") is not None for h in epochs)
    x_key = "derived_predicted_ms" if predicted else "derived_ms"
    eval_mode = all(h.get("derived_valid_accuracy") is not None for h in epochs)
    y_key = "derived_valid_accuracy" if eval_mode else "valid_accuracy"
    points = [(float(h[x_key]), float(h[y_key]), _epoch_tag(h)) for h in epochs if h.get(x_key) is not None]
    fig = _figure(WIDTH, 4.6)
    ax = fig.add_subplot()
    if points:
        xs, ys, tags = zip(*points, strict=True)
        ax.plot(xs, ys, color="#999999", linewidth=0.8, zorder=1)
        dots = ax.scatter(xs, ys, c=range(len(xs)), cmap="viridis", s=46, edgecolors="black", linewidths=0.4,
                          zorder=2, label="candidate of each search epoch (argmax path)")
        bar = fig.colorbar(dots, ax=ax, pad=0.01, aspect=30)
        step = max(1, len(tags) // 10)
        bar.set_ticks(list(range(0, len(tags), step)))
        bar.set_ticklabels([tags[i] for i in range(0, len(tags), step)])
        bar.set_label("epoch (w = warm-up, s = search)")
    if result is not None:
        ax.scatter([result.predicted_ms], [result.valid_accuracy], marker="*", s=260, color="#E24A33",
                   edgecolors="black", linewidths=0.6, zorder=4,
                   label=f"final network, predicted (test acc. {_acc(result.test_accuracy)})")
        if measure is not None:
            median = measure.measurement.median_ms
            ax.scatter([median], [result.valid_accuracy], marker="D", s=60, facecolors="white",
                       edgecolors="#E24A33", linewidths=1.6, zorder=4, label="final network, measured on device")
            ax.annotate("", xy=(median, result.valid_accuracy), xytext=(result.predicted_ms, result.valid_accuracy),
                        arrowprops={"arrowstyle": "->", "color": "#E24A33", "linestyle": "--", "lw": 1.0})
    _budget_line(ax, result.budget_ms if result is not None else search.settings.get("latency_ms"))
    ax.set_xlabel("latency (ms, predicted from the device's latency table)" if predicted
                  else "latency (ms, sum of the blocks' table latencies)")
    ax.set_ylabel("validation accuracy" + (" (eval mode)" if eval_mode else ""))
    low, high = ax.get_ylim()
    pad = 0.08 * (high - low)
    ax.set_ylim(max(0.0, low - pad), min(1.0, high + pad))
    ax.grid(True, alpha=0.3)
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=2, fontsize=9, frameon=False)
    return fig


def plot_latency(search: SearchRecord, measure: MeasureReport | None) -> Figure | str:
    """Plot 2: the final network's predicted latency against the one measured on the device."""
    result = search.result
    if result is None:
        return "the search did not finish, so there is no final network"
    if measure is None:
        return "the network was not measured on the device (no compile/measure.json)"
    m = measure.measurement
    fig = _figure(WIDTH, 2.7)
    ax = fig.add_subplot()
    labels = ["predicted\n(latency table)", f"measured median\n({m.device}{', EMULATED' if m.emulated else ''})"]
    values = [result.predicted_ms, m.median_ms]
    bars = ax.barh([1, 0], values, height=0.55, color=["#8DA0CB", "#66C2A5"], edgecolor="black", linewidth=0.5)
    ax.errorbar([m.median_ms], [0], xerr=[[m.median_ms - m.min_ms], [m.max_ms - m.median_ms]], fmt="none",
                ecolor="black", capsize=5, linewidth=1.0, label=f"min–max of {m.repeat} repeats")
    ax.set_yticks([1, 0], labels)
    for bar, value in zip(bars, values, strict=True):
        ax.text(bar.get_width() / 2, bar.get_y() + bar.get_height() / 2, _ms(value), ha="center", va="center",
                fontsize=9.5, fontweight="bold")
    _budget_line(ax, result.budget_ms)
    error = 100.0 * (result.predicted_ms - m.median_ms) / m.median_ms
    ax.set_title(f"prediction error {_pct(error, signed=True)} (predicted vs measured median)", fontsize=FONT_SIZE)
    ax.set_xlabel("latency (ms)")
    ax.set_xlim(0, max([*values, m.max_ms, result.budget_ms or 0.0]) * 1.12)
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8.5)
    return fig


def _box_label(layer_index: int, op: str, out_channels: int, stride: int) -> tuple[str, str]:
    if op == "zero":
        return f"L{layer_index}", "skip"
    try:
        kernel, expand = parse_op(op)
    except ValueError:
        return f"L{layer_index}", op
    return f"L{layer_index}", f"{kernel}x{kernel} e{expand}\n{out_channels} ch s{stride}"


def plot_architecture(arch: ArchSpec) -> Figure:
    """Plot 3: the network block by block: stem, each searchable layer (kernel, expansion, width, skipped), head."""
    from matplotlib.patches import FancyBboxPatch, Patch

    space = arch.space
    settings = space.settings
    boxes: list[tuple[str, str, str, float, bool]] = [  # (top, body, colour, alpha, skipped)
        ("stem", f"3x3 conv s{settings.stem_stride}\n{settings.stem_channels} ch", FIXED_COLOUR, 0.9, False)]
    max_expand = max([parse_op(o)[1] for o in settings.ops if o != "zero"] or [1])
    for layer, op in zip(space.layers(), arch.ops, strict=True):
        top, body = _box_label(layer.index, op, layer.out_channels, layer.stride)
        colour, alpha = _op_colour(op, max_expand)
        boxes.append((top, body, colour, alpha, op == "zero"))
    boxes.append(("head", f"1x1 x{settings.head_expand}, pool\n{space.num_classes} classes", FIXED_COLOUR, 0.9,
                  False))
    per_row = 7
    rows = math.ceil(len(boxes) / per_row)
    fig = _figure(min(per_row, len(boxes)) * 1.2 + 0.5, rows * 1.5 + 0.7)
    ax = fig.add_subplot()
    width, height, gap = 1.0, 1.0, 0.25
    for i, (top, body, colour, alpha, skipped) in enumerate(boxes):
        row, col = divmod(i, per_row)
        x, y = col * (width + gap), -row * (height + 0.55)
        ax.add_patch(FancyBboxPatch(
            (x, y), width, height, boxstyle="round,pad=0.02,rounding_size=0.08", facecolor=colour,
            alpha=alpha if not skipped else 0.5, edgecolor="#333333", linewidth=1.0,
            linestyle="--" if skipped else "-", hatch="//" if skipped else None))
        ax.text(x + width / 2, y + height - 0.14, top, ha="center", va="center", fontsize=9.5, fontweight="bold",
                color="#111111")
        ax.text(x + width / 2, y + height / 2 - 0.1, body, ha="center", va="center", fontsize=9, color="#111111",
                linespacing=1.3)
        if i + 1 < len(boxes) and (i + 1) % per_row:
            ax.annotate("", xy=(x + width + gap, y + height / 2), xytext=(x + width, y + height / 2),
                        arrowprops={"arrowstyle": "->", "color": "#555555", "lw": 0.8})
    ax.set_xlim(-0.1, min(per_row, len(boxes)) * (width + gap) - gap + 0.1)
    ax.set_ylim(-(rows - 1) * (height + 0.55) - 0.1, height + 0.1)
    ax.set_aspect("equal")
    ax.axis("off")
    kernels = sorted({parse_op(o)[0] for o in settings.ops if o != "zero"})
    handles = [Patch(facecolor=KERNEL_COLOURS.get(k, OTHER_KERNEL_COLOUR), edgecolor="#333333",
                     label=f"{k}x{k} depthwise") for k in kernels]
    handles += [Patch(facecolor=ZERO_COLOUR, edgecolor="#333333", hatch="//", linestyle="--",
                      label="skipped (identity)"),
                Patch(facecolor=FIXED_COLOUR, edgecolor="#333333", label="fixed stem / head")]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 5), fontsize=8.5,
               frameon=False)
    fig.suptitle("e = expansion (fuller colour = wider), ch = output channels, s = stride", fontsize=9,
                 color="#444444")
    return fig


def plot_probabilities(search: SearchRecord) -> Figure | str:
    """Plot 4a: each layer's architecture probabilities after every search epoch (stacked bars)."""
    epochs = [h for h in _search_epochs(search) if isinstance(h.get("probabilities"), list) and h["probabilities"]]
    if not epochs:
        return "search.json's history holds no architecture probabilities (this strategy does not record them)"
    layers = len(epochs[-1]["probabilities"])
    if any(len(h["probabilities"]) != layers for h in epochs):
        return "the epochs of search.json record different numbers of layers"
    ops: list[str] = []
    for h in epochs:
        for layer in h["probabilities"]:
            ops.extend(op for op in layer if op not in ops)
    ops.sort(key=lambda o: (o == "zero", o))
    max_expand = max([parse_op(o)[1] for o in ops if o != "zero" and _is_mbconv(o)] or [1])
    cols = min(4, layers)
    rows = math.ceil(layers / cols)
    fig = _figure(WIDTH, rows * 2.0 + 0.8)
    axes = fig.subplots(rows, cols, squeeze=False, sharey=True)
    x = list(range(len(epochs)))
    tags = [_epoch_tag(h) for h in epochs]
    step = max(1, math.ceil(len(tags) / 8))
    for index in range(rows * cols):
        ax = axes[index // cols][index % cols]
        if index >= layers:
            ax.axis("off")
            continue
        bottom = [0.0] * len(epochs)
        for op in ops:
            values = [float(h["probabilities"][index].get(op, 0.0)) for h in epochs]
            colour, alpha = _op_colour(op, max_expand)
            ax.bar(x, values, bottom=bottom, width=0.9, color=colour, alpha=alpha, edgecolor="white",
                   linewidth=0.3, label=op, hatch="//" if op == "zero" else None)
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
        ax.set_title(f"layer {index}", fontsize=9)
        ax.set_ylim(0, 1)
        ax.set_xticks(x[::step], tags[::step], fontsize=8)
        ax.tick_params(axis="y", labelsize=8)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(ops), 6), fontsize=8.5, frameon=False)
    fig.supylabel("probability", fontsize=9)
    return fig


def _is_mbconv(op: str) -> bool:
    try:
        parse_op(op)
    except ValueError:
        return False
    return True


def plot_search_figures(search: SearchRecord) -> Figure | str:
    """Plot 4b: the strategy's own figures per epoch: losses, accuracies, expected and candidate latency."""
    history = [h for h in search.history if isinstance(h, Mapping) and "stage" in h]
    if not history:
        return "search.json's history is empty"
    x = list(range(len(history)))
    tags = [_epoch_tag(h) for h in history]
    step = max(1, math.ceil(len(tags) / 10))
    latency_keys = [(k, label) for k, label in (("expected_ms", "expected latency (architecture distribution)"),
                                                ("derived_predicted_ms", "candidate (argmax path), predicted"))
                    if any(h.get(k) is not None for h in history)]
    panels = 3 if latency_keys else 2
    fig = _figure(WIDTH, 3.3)
    axes = fig.subplots(1, panels)
    series = [
        (axes[0], "train_loss", "train loss", "#4C72B0"), (axes[0], "arch_loss", "architecture loss", "#DD8452"),
        (axes[1], "train_accuracy", "train accuracy", "#4C72B0"),
        (axes[1], "valid_accuracy", "valid accuracy", "#55A868"),
        (axes[1], "derived_valid_accuracy", "candidate valid acc. (eval mode)", "#8172B3"),
    ]
    if latency_keys:
        series += [(axes[2], k, label, colour) for (k, label), colour in zip(latency_keys, ("#C44E52", "#937860"),
                                                                            strict=False)]
    for ax, key, label, colour in series:
        points = [(i, float(h[key])) for i, h in enumerate(history) if isinstance(h.get(key), int | float)]
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, marker="o", markersize=3.5, color=colour, label=label, linewidth=1.3)
    finals = [i for i, h in enumerate(history) if h.get("stage") == "final"]
    for ax, title in zip(axes, ("loss", "accuracy", "latency (ms)"), strict=False):
        if finals:
            ax.axvspan(finals[0] - 0.5, finals[-1] + 0.5, color="#EEEEEE", zorder=0)
        ax.set_title(title, fontsize=FONT_SIZE)
        ax.set_xticks(x[::step], tags[::step], fontsize=8)
        ax.grid(True, alpha=0.3)
    if latency_keys:
        budget = search.settings.get("latency_ms")
        if isinstance(budget, int | float):
            _budget_line(axes[2], float(budget), vertical=False)
    handles, labels = [], []
    for ax in axes:
        more = ax.get_legend_handles_labels()
        handles += more[0]
        labels += more[1]
    fig.legend(handles, labels, loc="outside lower center", ncols=4, fontsize=8.5, frameon=False)
    return fig


def tune_points(events: Sequence[Mapping[str, Any]]) -> list[tuple[int, float]]:
    """(trials so far, best estimate in ms) of every tuning event that carries the estimate."""
    points = []
    for event in events:
        figures = event.get("figures") or {}
        value = figures.get("best_estimate_ms") if isinstance(figures, Mapping) else None
        if event.get("stage") == TUNE_STAGE and isinstance(value, int | float) and math.isfinite(value):
            points.append((int(event.get("step") or 0), float(value)))
    return points


def _no_tuning_reason(artifact: CompiledArtifact) -> str:
    tuning = artifact.tuning
    if tuning.trials_per_task == 0:
        applied = f"; {tuning.records_applied} tuned operators from earlier runs were applied" \
            if tuning.records_applied else ""
        return f"no tuning ran (trials per task 0){applied}"
    if tuning.trials_run == 0:
        return (f"no new trials: all {len(tuning.tasks)} tasks were tuned before at {tuning.trials_per_task} trials "
                f"per task and reused from the tuning database")
    return "events.jsonl holds no tuning events with a best estimate (the run's events were not recorded)"


def plot_tuning(events: Sequence[Mapping[str, Any]], artifact: CompiledArtifact) -> Figure | str:
    """Plot 5a: best estimated latency (sum of the tasks' best times, by weight) against trials spent."""
    points = tune_points(events)
    if not points:
        return _no_tuning_reason(artifact)
    fig = _figure(WIDTH, 3.6)
    ax = fig.add_subplot()
    xs, ys = zip(*points, strict=True)
    timed, all_timed_at = _first_timings(points), None
    tasks_timed = max(timed)
    if tasks_timed > 1:
        all_timed_at = xs[timed.index(tasks_timed)]
        ax.axvspan(0, all_timed_at, color="#EEF1F6", zorder=0,
                   label=f"tasks getting their first timing ({tasks_timed} by trial {all_timed_at})")
    ax.plot(xs, ys, drawstyle="steps-post", marker="o", markersize=3, color="#4C72B0",
            label="best estimate so far (the tasks timed so far)")
    tasks = artifact.tuning.tasks
    if tasks and all(t.default_us is not None for t in tasks if t.trials_run):
        untuned = sum((t.default_us or 0.0) * t.weight for t in tasks if t.trials_run) / 1000.0
        if untuned > 0:
            ax.axhline(untuned, color="#999999", linestyle=":", linewidth=1.3,
                       label=f"untuned schedules ({_ms(untuned)})")
    ax.set_xlabel("trials spent in this run")
    ax.set_ylabel("ms (tuned operators, weighted)")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.set_xlim(0, max(xs) * 1.02 + 0.5)
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=2, fontsize=8.5, frameon=False)
    if all_timed_at is not None and all_timed_at >= max(xs):
        note = "every task got its first timing only at the last trial: the curve shows that phase alone"
    else:
        note = "rises while tasks get their first timing (shaded), then falls as faster schedules are found"
    ax.set_title(note, fontsize=9, color="#444444")
    return fig


def _first_timings(points: Sequence[tuple[int, float]]) -> list[int]:
    """How many tasks had a timing at each point: the estimate only grows when a task gets its first one
    (a task's best time only falls), so each rise counts one task."""
    counts, previous = [], None
    for _, value in points:
        grew = previous is None or value - previous > 1e-9 * max(abs(previous), 1e-12)
        counts.append((counts[-1] if counts else 0) + (1 if grew else 0))
        previous = value
    return counts


def plot_tasks(artifact: CompiledArtifact) -> Figure | str:
    """Plot 5b: per tuning task, the untuned schedule's time against the best tuned one (compile.json)."""
    tasks = [t for t in artifact.tuning.tasks if t.best_us is not None or t.default_us is not None]
    if not tasks:
        if not artifact.tuning.tasks:
            return "compile.json lists no tuning tasks; " + _no_tuning_reason(artifact)
        return "no task was timed in this run; " + _no_tuning_reason(artifact)
    tasks.sort(key=lambda t: -(t.best_us or t.default_us or 0.0) * t.weight)
    tasks = tasks[:20]
    fig = _figure(WIDTH, 0.4 * len(tasks) + 1.3)
    ax = fig.add_subplot()
    ys = list(range(len(tasks)))[::-1]
    ax.barh([y + 0.2 for y in ys], [t.default_us or 0.0 for t in tasks], height=0.38, color="#BBBBBB",
            edgecolor="black", linewidth=0.4, label="untuned schedule")
    ax.barh([y - 0.2 for y in ys], [t.best_us or 0.0 for t in tasks], height=0.38, color="#4C72B0",
            edgecolor="black", linewidth=0.4, label="best tuned")
    names = [f"{t.name if len(t.name) <= 34 else t.name[:33] + '…'} (x{t.weight}, {t.trials_run} "
             f"trial{'' if t.trials_run == 1 else 's'})" for t in tasks]
    ax.set_yticks(ys, names, fontsize=8)
    values = [v for t in tasks for v in (t.best_us, t.default_us) if v]
    if values and max(values) / max(min(values), 1e-9) > 30:
        ax.set_xscale("log")
    ax.set_xlabel("µs per call")
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(fontsize=8.5, loc="lower right")
    return fig


def plot_stages(stages: Sequence[StageFact]) -> Figure | str:
    """Plot 7: seconds per stage, ran or reused."""
    if not stages:
        return "the caller gave no stage timings"
    fig = _figure(WIDTH, 0.32 * len(stages) + 0.9)
    ax = fig.add_subplot()
    ys = list(range(len(stages)))[::-1]
    colours = ["#4C72B0" if status == "ran" else "#BBBBBB" for _, status, _ in stages]
    ax.barh(ys, [max(s, 0.0) for _, _, s in stages], color=colours, edgecolor="black", linewidth=0.4)
    ax.set_yticks(ys, [f"{name} ({status})" for name, status, _ in stages], fontsize=9)
    top = max([s for _, _, s in stages] or [1.0]) or 1.0
    for y, (_, _, seconds) in zip(ys, stages, strict=True):
        ax.text(seconds + top * 0.01, y, f"{seconds:.1f} s", va="center", fontsize=8.5)
    ax.set_xlim(0, top * 1.15)
    ax.set_xlabel("seconds")
    ax.grid(True, axis="x", alpha=0.3)
    return fig


# --- the page -----------------------------------------------------------------------------------------------
STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", "DejaVu Sans", Arial, sans-serif; margin: 0;
       color: #1d1f23; background: #f4f5f7; line-height: 1.45; font-size: 15px; }
main { max-width: 1080px; margin: 0 auto; padding: 24px 28px 40px; background: #ffffff; }
h1 { font-size: 1.6em; margin: 0 0 4px; }
h2 { font-size: 1.25em; margin: 32px 0 10px; padding-bottom: 4px; border-bottom: 2px solid #e3e6ea; }
h3 { font-size: 1.05em; margin: 20px 0 6px; }
.sub { color: #555b63; margin: 0 0 10px; }
.meta { display: flex; flex-wrap: wrap; gap: 6px 18px; margin: 10px 0 0; padding: 0; list-style: none;
        font-size: 0.93em; }
.meta li { background: #f0f2f5; border-radius: 4px; padding: 3px 8px; }
.badge { display: inline-block; padding: 2px 8px; border-radius: 10px; font-size: 0.85em; font-weight: 600; }
.ok { background: #dff3e4; color: #17612e; }
.bad { background: #fbe0e0; color: #8a1c1c; }
.warn { background: #fff3cd; color: #6b4e00; }
.neutral { background: #e8eaee; color: #3d434b; }
.banner { margin: 14px 0 0; padding: 10px 14px; border-radius: 6px; background: #fff3cd; color: #5c4400;
          border: 1px solid #f0d68a; }
table { border-collapse: collapse; width: 100%; margin: 6px 0 8px; font-size: 0.95em; }
th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid #e3e6ea; vertical-align: top; }
th { background: #f7f8fa; font-weight: 600; }
table.kv th { width: 230px; }
td.num { font-variant-numeric: tabular-nums; }
code, .mono { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 0.9em;
              overflow-wrap: anywhere; }
figure { margin: 12px 0 24px; }
figure img { max-width: 100%; height: auto; border: 1px solid #e3e6ea; border-radius: 4px; }
figcaption { color: #555b63; font-size: 0.9em; margin-top: 4px; }
.na { padding: 10px 14px; background: #f6f7f9; border-left: 4px solid #b8bec7; color: #3d434b; margin: 8px 0 20px; }
td .na { margin: 0; padding: 4px 10px; }
footer { color: #6b7078; font-size: 0.85em; margin-top: 36px; }
"""


def _badge(ok: bool | None, yes: str, no: str, unknown: str = "unknown") -> str:
    if ok is None:
        return f'<span class="badge neutral">{_e(unknown)}</span>'
    return f'<span class="badge {"ok" if ok else "bad"}">{_e(yes if ok else no)}</span>'


def _kv_table(rows: Sequence[tuple[str, str]]) -> str:
    body = "".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<table class="kv">{body}</table>'


def _figure_html(title: str, caption: str, make: Callable[[], Figure | str], alt: str) -> str:
    from matplotlib import rc_context

    with rc_context({"font.size": FONT_SIZE, "axes.titlesize": FONT_SIZE, "font.family": "DejaVu Sans"}):
        try:
            made = make()
        except Exception as exc:  # a record this nasc cannot draw: say so instead of losing the whole report
            made = f"the plot failed ({type(exc).__name__}: {exc})"
        if isinstance(made, str):
            return f"<h3>{_e(title)}</h3>{_na(made)}"
        uri = _png_uri(made)
    return (f'<figure><h3>{_e(title)}</h3><img src="{uri}" alt="{_e(alt)}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>")


def _summary_rows(inputs: ReportInputs) -> list[tuple[str, str]]:
    result, measure, artifact, s = inputs.search.result, inputs.measure, inputs.artifact, inputs.summary
    rows: list[tuple[str, str]] = []
    if result is not None:
        rows.append(("architecture", f'<span class="mono">{_e(result.arch)}</span>'))
        rows.append(("test accuracy", f"<strong>{_e(_acc(s.get('test_accuracy')))}</strong> "
                                      f"(validation {_e(_acc(result.valid_accuracy))}, "
                                      f"{_e(result.arch.space.num_classes)} classes)"))
    else:
        rows.append(("architecture", _na("the search did not finish (search.json has no result)")))
    rows.append(("predicted latency", f"<strong>{_e(_ms(s.get('predicted_ms')))}</strong> "
                                      "(the device's latency table, fitted line)"))
    if measure is not None:
        m = measure.measurement
        flags = " ".join(f'<span class="badge {c}">{_e(t)}</span>' for t, c, on in (
            ("EMULATED", "warn", m.emulated), ("NOISY", "warn", m.noisy)) if on)
        rows.append(("measured latency", f"<strong>{_e(_ms(s.get('measured_ms')))}</strong> median on "
                                         f"{_e(m.device)} (p90 {_e(_ms(m.p90_ms))}, min–max {_e(_ms(m.min_ms))} – "
                                         f"{_e(_ms(m.max_ms))}, {_e(m.repeat)} repeats of {_e(m.number)}) {flags}"))
        rows.append(("prediction error", f"{_e(_pct(s.get('prediction_error_pct'), signed=True))} "
                                         "(predicted − measured) / measured"))
    else:
        rows.append(("measured latency", _na("not measured on the device (no compile/measure.json)")))
        rows.append(("prediction error", _na("needs a measurement")))
    budget = s.get("budget_ms")
    if budget is None:
        rows.append(("latency budget", _na("no budget was set ([search] latency_ms)")))
    else:
        basis = "measured median" if s.get("measured_ms") is not None else "prediction (not measured)"
        rows.append(("latency budget", f"{_e(_ms(budget))} {_badge(s.get('meets_budget'), 'met', 'NOT met')} "
                                       f"(by the {_e(basis)})"))
    rows.append(("parity vs onnxruntime", _parity_line(artifact.parity, "compile")
                 + ("<br>" + _parity_line(measure.parity, "on device") if measure is not None else "")))
    tuning = artifact.tuning
    if tuning.trials_per_task:
        measured_on = f", timed on {_e(tuning.measured_on)}" if tuning.measured_on else ""
        emulated = ' <span class="badge warn">EMULATED timings</span>' if tuning.emulated else ""
        rows.append(("tuning", f"{_e(tuning.trials_run)} trials spent in this run ({_e(tuning.trials_per_task)} per "
                               f"task on average){measured_on}; {_e(tuning.tasks_tuned)} of {_e(len(tuning.tasks))} "
                               f"tasks tuned, {_e(tuning.tasks_reused)} reused from earlier runs; "
                               f"{_e(tuning.records_applied)} tuned operators applied; {_e(f'{tuning.seconds:.1f}')} s"
                               f"{emulated}"))
    else:
        rows.append(("tuning", f"none (trials per task 0); {_e(tuning.records_applied)} tuned operators from "
                               "earlier runs applied"))
    if inputs.bundle_path:
        rows.append(("bundle", f'<span class="mono">{_e(inputs.bundle_path)}</span><br>sha256 '
                               f'<span class="mono">{_e(inputs.bundle_sha256 or "—")}</span>'))
    else:
        rows.append(("bundle", _na("nothing was packaged (no bundle/*.tar.gz)")))
    return rows


def _parity_line(parity: ParityReport, what: str) -> str:
    if not parity.checked:
        return f"{_e(what)}: {_badge(None, '', '', 'not checked')} {_e(parity.where)}"
    return (f"{_e(what)}: {_badge(parity.passed, 'passed', 'FAILED')} max abs err {_e(_num(parity.max_abs_err))}, "
            f"max rel err {_e(_num(parity.max_rel_err))} on {_e(parity.where)}")


def _parity_table(inputs: ReportInputs) -> str:
    checks: list[tuple[str, ParityReport]] = [("at compile", inputs.artifact.parity)]
    if inputs.measure is not None:
        checks.append(("on the device (measure)", inputs.measure.parity))
    head = ("check", "result", "where", "inputs", "max abs err", "max rel err", "atol", "rtol", "worst output")
    rows = []
    for name, p in checks:
        result = _badge(p.passed, "passed", "FAILED") if p.checked else _badge(None, "", "", "not checked")
        cells = [_e(name), result, _e(p.where), _e(p.samples), _e(_num(p.max_abs_err)), _e(_num(p.max_rel_err)),
                 _e(_num(p.atol)), _e(_num(p.rtol)), _e(p.worst_output or "—")]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    note = "" if inputs.measure is not None else _na("no on-device check: the artifact was not measured")
    return ("<table><tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr>" + "".join(rows) + "</table>"
            + note)


def _where_rows(inputs: ReportInputs) -> list[tuple[str, str]]:
    device, artifact = inputs.device, inputs.artifact
    measure = inputs.measure
    rows = [
        ("device", f"{_e(device.get('name', '?'))}" + (f" — {_e(device['description'])}"
                                                      if device.get("description") else "")),
        ("connection", f'<span class="mono">{_e(device.get("connection", "—"))}</span>'),
        ("emulated", _badge(not device.get("emulated", False), "no (hardware)", "YES: latencies from an emulator")),
        ("target", f'<span class="mono">{_e(_target_text(device.get("target")))}</span>'),
        ("target triple", f'<span class="mono">{_e(artifact.target_triple)}</span>'),
        ("TVM", _e(artifact.tvm_version)),
        ("nasc", _e(artifact.nasc_version) + ("" if artifact.nasc_version == __version__
                                              else f" (report by nasc {_e(__version__)})")),
        ("ONNX", _e(artifact.onnx_version)),
        ("compile", f"{_e(f'{artifact.compile_seconds:.1f}')} s; library "
                    f'<span class="mono">{_e(artifact.library_path)}</span>'),
    ]
    if measure is not None:
        m = measure.measurement
        rows.append(("measured", f"{_e(m.address or m.device)} at {_e(m.measured_at or '—')}; warm-up {_e(m.warmup)}, "
                                 f"{_e(m.repeat)} x {_e(m.number)} runs, {_e(m.attempts)} attempt(s)"))
    return rows


def _stage_table(stages: Sequence[StageFact]) -> str:
    if not stages:
        return _na("the caller gave no stage timings")
    rows = "".join(
        f"<tr><td>{_e(name)}</td><td>{_badge(status == 'ran', 'ran', 'reused')}</td>"
        f'<td class="num">{_e(f"{seconds:.1f}")} s</td></tr>' for name, status, seconds in stages)
    total = sum(s for _, _, s in stages)
    return (f"<table><tr><th>stage</th><th>this run</th><th>seconds</th></tr>{rows}"
            f'<tr><th>total</th><th></th><th class="num">{_e(f"{total:.1f}")} s</th></tr></table>')


def render_report(inputs: ReportInputs) -> str:
    """The whole report as one self-contained HTML page (inline style, plots as PNG data URIs)."""
    search, artifact, measure, s = inputs.search, inputs.artifact, inputs.measure, inputs.summary
    result: SearchResult | None = search.result
    device = inputs.device
    name = device.get("name", "?")
    emulated = bool(device.get("emulated", False))
    title = f"nasc report: {result.strategy if result else search.strategy} search for {name}"
    budget_badge = "" if s.get("budget_ms") is None else _badge(s.get("meets_budget"), "budget met", "budget NOT met")
    parity_ok = artifact.parity.passed and (measure is None or measure.parity.passed)
    meta = [
        ("device", f"{_e(name)}"), ("target", f'<span class="mono">{_e(_target_text(device.get("target")))}</span>'),
        ("TVM", _e(artifact.tvm_version)), ("nasc", _e(artifact.nasc_version)),
        ("emulated", "yes" if emulated else "no"), ("generated", _e(inputs.generated_at)),
    ]
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{STYLE}</style></head><body><main>",
        f"<header><h1>{_e(title)}</h1>",
        f'<p class="sub">Search → ONNX → TVM compile and tune → verify → measure → bundle, in '
        f'<span class="mono">{_e(inputs.run_dir)}</span></p>',
        f"<p>{budget_badge} {_badge(parity_ok, 'parity with onnxruntime', 'parity FAILED')} "
        f"{_badge(measure is not None, 'measured on the device', 'not measured')}</p>",
        '<ul class="meta">' + "".join(f"<li><strong>{_e(k)}:</strong> {v}</li>" for k, v in meta) + "</ul>",
    ]
    if emulated:
        parts.append('<div class="banner"><strong>EMULATED device:</strong> every latency on this page was '
                     "measured on an emulated board, not on hardware; it orders networks but does not say how "
                     "fast the real device is.</div>")
    parts.append("</header>")
    parts.append("<section><h2>Summary</h2>" + _kv_table(_summary_rows(inputs)) + "</section>")

    parts.append("<section><h2>Search</h2>")
    parts.append(_figure_html(
        "1. Accuracy against latency", "Each dot is the architecture a search epoch would choose (the most probable "
        "op per layer), at its predicted latency and its validation accuracy in the shared-weight supernet; the star "
        "is the final network after its own training (validation accuracy; test accuracy in the legend), the "
        "diamond its latency measured on the device.", lambda: plot_candidates(search, measure),
        "accuracy against latency of the search's candidates and the final network"))
    parts.append(_figure_html(
        "2. Predicted against measured latency", "The search's prediction for the final network (latency table of "
        "the device plus the fitted line) against the median measured on the device; the whisker spans the "
        "fastest and slowest repeat.", lambda: plot_latency(search, measure),
        "predicted and measured latency of the final network"))
    if result is not None:
        arch = result.arch
        parts.append(_figure_html(
            "3. The architecture", "Block by block: the fixed stem and head and every searchable layer with its "
            "kernel, expansion, output channels and stride; dashed grey boxes are skipped layers (identity).",
            lambda: plot_architecture(arch), "the searched architecture block by block"))
    else:
        parts.append("<h3>3. The architecture</h3>" + _na("the search did not finish (search.json has no result)"))
    parts.append(_figure_html(
        "4. Architecture probabilities per layer", "softmax(alpha) of every layer after each epoch: the search "
        "moving its belief between candidate ops (colour = kernel, fullness = expansion, hatched = skip).",
        lambda: plot_probabilities(search), "architecture probabilities per layer and epoch"))
    parts.append(_figure_html(
        "4b. The search's figures per epoch", "Epochs: w = warm-up, s = search, f = the final network's training "
        "(shaded). Loss and accuracy of the supernet, then of the final network; the expected latency of the "
        "architecture distribution and the predicted latency of each epoch's candidate.",
        lambda: plot_search_figures(search), "loss, accuracy and latency per epoch"))
    parts.append("</section>")

    parts.append("<section><h2>Compile</h2>")
    parts.append(_figure_html(
        "5. Tuning curve", "MetaSchedule's best estimate of the tuned operators' total time (each task's best "
        "candidate times its weight) against the trials spent, from the run's tuning events.",
        lambda: plot_tuning(inputs.events, artifact), "tuning curve: best estimate against trials"))
    parts.append(_figure_html(
        "5b. Tuning tasks", "Per fused operator (compile.json): the untuned schedule's time against the best tuned "
        "one, heaviest first; x = how often the model calls it.", lambda: plot_tasks(artifact),
        "untuned against tuned time per tuning task"))
    parts.append("<h3>6. Parity with onnxruntime</h3>" + _parity_table(inputs))
    parts.append("</section>")

    parts.append("<section><h2>7. What ran where</h2>" + _kv_table(_where_rows(inputs)))
    parts.append("<h3>Stages</h3>" + _stage_table(inputs.stages))
    if inputs.stages:
        parts.append(_figure_html("Stage times", "Seconds per stage in this run; grey stages were reused from an "
                                  "earlier run (unchanged inputs and outputs).", lambda: plot_stages(inputs.stages),
                                  "seconds per stage"))
    parts.append("</section>")
    parts.append(f"<footer>Written by nasc {_e(__version__)} at {_e(inputs.generated_at)} from "
                 f"{_e(len(inputs.events))} progress events and the records in "
                 f'<span class="mono">{_e(inputs.run_dir)}</span>.</footer>')
    parts.append("</main></body></html>")
    return "\n".join(parts) + "\n"


def write_report(path: str | Path, inputs: ReportInputs) -> Path:
    """Render `inputs` and write the page to `path` atomically."""
    return atomic_write_text(path, render_report(inputs))
