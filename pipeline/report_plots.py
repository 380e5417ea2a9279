"""The plots of report.html: matplotlib figures drawn on the Agg canvas (no pyplot, no display).

Each ``plot_*`` function takes the run's records and returns a Figure, or a sentence saying why the plot
is not available (no budget, no tuning, a strategy without per-epoch figures); report.py embeds them.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from nasc.compiler.artifact import CompiledArtifact
from nasc.compiler.tune import TUNE_STAGE
from nasc.search.ops import parse_op
from nasc.search.outputs import AnyArch, SearchRecord
from nasc.search.path_level.cell import Edge
from nasc.search.space import ArchSpec

from .measure import MeasureReport

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

StageFact = tuple[str, str, float]  # (stage name, "ran" or "reused", seconds)

DPI = 110
WIDTH = 9.0  # inches: 990 pixels, the page's column
FONT_SIZE = 10
KERNEL_COLOURS = {3: "#4C72B0", 5: "#DD8452", 7: "#55A868"}
OTHER_KERNEL_COLOUR = "#8172B3"
ZERO_COLOUR = "#BBBBBB"
FIXED_COLOUR = "#6B7B8C"
BUDGET_COLOUR = "#C44E52"


# --- numbers as text (shared with the page) ---------------------------------------
def ms_text(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:.4g} ms" if value < 100 else f"{value:.1f} ms"
def pct_text(value: float | None, signed: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:+.1f} %" if signed else f"{value:.1f} %"
def acc_text(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f} %"


# --- plots --------------------------------------------------------------------------------------------------


def _figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def png_uri(fig: Figure) -> str:
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
    return [h for h in search.history if h.get("stage") in ("warmup", "search", "nao", "random", "path-level")]


def _budget_line(ax: Axes, budget: float | None, vertical: bool = True) -> None:
    if budget is None:
        return
    line = ax.axvline if vertical else ax.axhline
    line(budget, color=BUDGET_COLOUR, linestyle="--", linewidth=1.4, label=f"budget {ms_text(budget)}")


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
        bar.set_label("epoch (w = warm-up, s = search, n = NAO round, r = random-search round, p = path-level round)")
    if result is not None:
        ax.scatter([result.predicted_ms], [result.valid_accuracy], marker="*", s=260, color="#E24A33",
                   edgecolors="black", linewidths=0.6, zorder=4,
                   label=f"final network, predicted (test acc. {acc_text(result.test_accuracy)})")
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
    ax.set_ylim(max(0.0, low - pad), min(1.03, high + pad))  # markers at 1.0 stay whole
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
        ax.text(bar.get_width() / 2, bar.get_y() + bar.get_height() / 2, ms_text(value), ha="center", va="center",
                fontsize=9.5, fontweight="bold")
    _budget_line(ax, result.budget_ms)
    error = 100.0 * (result.predicted_ms - m.median_ms) / m.median_ms
    ax.set_title(f"prediction error {pct_text(error, signed=True)} (predicted vs measured median)", fontsize=FONT_SIZE)
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


def _chosen_ops(arch: AnyArch, layers: int) -> list[str | None] | None:
    """The table op each layer of `arch` runs (None for a multi-branch cell); None when the layers differ."""
    if isinstance(arch, ArchSpec):
        return list(arch.ops)
    if len(arch.cells) != layers:
        return None
    return [cell.op if isinstance(cell, Edge) and cell.then is None else None for cell in arch.cells]


def plot_layer_tuning(search: SearchRecord, table: Mapping[str, Any] | None) -> Figure | str:
    """Plot 4c: per layer, each candidate op's table latency untuned and tuned; the chosen op outlined."""
    if table is None:
        return "the run folder has no lut/latencies.json (the lut stage did not run here)"
    trials = table.get("table_trials")
    untuned = table.get("untuned_layers")
    if not trials or not isinstance(untuned, list):
        return ("the latency table is untuned ([search] table_trials = 0, or --trials 0): the search optimised "
                "default schedules, so there is no tuned view to compare")
    tuned = search.latency.get("layers") if isinstance(search.latency, Mapping) else None
    if not isinstance(tuned, list) or len(tuned) != len(untuned):
        return "search.json's latency table and lut/latencies.json describe different spaces"
    chosen = _chosen_ops(search.result.arch, len(tuned)) if search.result is not None else [None] * len(tuned)
    if chosen is None:
        return ("the grown path-level network has layers the space does not (a deepened stage), so its layers "
                "do not line up with the table's")
    layers = len(tuned)
    cols = min(3, layers)
    rows = math.ceil(layers / cols)
    fig = _figure(WIDTH, rows * 2.2 + 0.7)
    axes = fig.subplots(rows, cols, squeeze=False)
    for index in range(rows * cols):
        ax = axes[index // cols][index % cols]
        if index >= layers:
            ax.axis("off")
            continue
        ops = [op for op in tuned[index] if op != "zero"]
        x = list(range(len(ops)))
        before = [float(untuned[index].get(op, float("nan"))) for op in ops]
        after = [float(tuned[index][op]) for op in ops]
        colours = [KERNEL_COLOURS.get(parse_op(op)[0], OTHER_KERNEL_COLOUR) if _is_mbconv(op) else FIXED_COLOUR
                   for op in ops]
        ax.bar([i - 0.2 for i in x], before, width=0.4, color=colours, alpha=0.35)
        bars = ax.bar([i + 0.2 for i in x], after, width=0.4, color=colours)
        for i, op in enumerate(ops):
            if op == chosen[index]:
                bars[i].set_edgecolor("black")
                bars[i].set_linewidth(1.6)
        ax.set_xticks(x, [op.replace("_", " ") for op in ops], fontsize=7.5, rotation=30)
        ax.tick_params(axis="y", labelsize=8)
        pick = chosen[index] or ("a multi-branch cell" if search.result is not None else "-")
        ax.set_title(f"layer {index} (chose {pick})", fontsize=9)
    from matplotlib.patches import Patch

    handles = [Patch(color=FIXED_COLOUR, alpha=0.35, label="untuned (default schedules)"),
               Patch(color=FIXED_COLOUR, label=f"tuned, {trials} trials per task (what the search used)"),
               Patch(facecolor="white", edgecolor="black", linewidth=1.6, label="chosen op")]
    fig.legend(handles=handles, loc="outside lower center", ncols=3, fontsize=8.5, frameon=False)
    fig.supylabel("ms (latency table)", fontsize=9)
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
                       label=f"untuned schedules ({ms_text(untuned)})")
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
