"""report.html of a search-and-compile run: one self-contained page a person reads to trust the result.

The page says what was built for which device (target, TVM and nasc versions, emulated or not), how
good it is (accuracy, predicted against measured latency, the budget, parity with onnxruntime), and
shows how it came about: the candidates the search evaluated, the architecture, the search's progress,
the tuning curve and what each stage cost. It opens offline: the style is inline and every plot is a
PNG drawn with matplotlib's Agg canvas (report_plots.py) and embedded as a base64 data URI.

Everything the page shows comes from :class:`ReportInputs`, whose records are read through their own
classes (SearchRecord, CompiledArtifact, MeasureReport) by :func:`load_report_inputs`. A missing piece
(no budget, no measurement, no tuning) renders as "not available: why", never as an error or an
empty plot.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nasc import __version__
from nasc.compiler.artifact import CompiledArtifact
from nasc.compiler.verify import ParityReport
from nasc.devices.spec import DeviceSpec
from nasc.fsutil import atomic_write_text, sha256_file
from nasc.search.outputs import SearchRecord, SearchResult
from nasc.search.path_level.cell import PathArch

from .measure import MEASURE_JSON, MeasureReport
from .report_plots import (
    FONT_SIZE,
    StageFact,
    acc_text,
    ms_text,
    pct_text,
    plot_architecture,
    plot_candidates,
    plot_latency,
    plot_layer_tuning,
    plot_probabilities,
    plot_search_figures,
    plot_stages,
    plot_tasks,
    plot_tuning,
    png_uri,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

STAGE_STATUSES = ("ran", "reused")
# The keys of ReportInputs.summary (as PipelineSummary names them); load_report_inputs fills any the caller
# leaves out from the records.
SUMMARY_KEYS = ("test_accuracy", "predicted_ms", "measured_ms", "prediction_error_pct", "budget_ms", "meets_budget",
                "budget_note")
LUT_STATE = "lut/latencies.json"  # the lut stage's copy of the table for this space (and its untuned view)
EVENTS_NAME = "events.jsonl"



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
    table: dict[str, Any] | None = None  # lut/latencies.json: table_trials, untuned_layers ([{op: ms}] per layer)

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
        "budget_note": (result.figures.get("budget_pick") or {}).get("message") if result is not None else None,
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
        table=_read_table_state(folder / LUT_STATE),
    )


def _read_table_state(path: Path) -> dict[str, Any] | None:
    """lut/latencies.json, or None when it is missing or unreadable (the plot then says so)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None

# --- formatting ---------------------------------------------------------------------------------------------
def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)








def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:.3g}"


def _na(reason: str) -> str:
    return f'<p class="na"><strong>not available:</strong> {_e(reason)}</p>'


def _target_text(target: Any) -> str:
    if isinstance(target, Mapping):
        main = " ".join(f"{k}={v}" for k, v in target.items() if k in ("kind", "mtriple", "mcpu", "mattr") and v)
        return main or json.dumps(target, sort_keys=True)
    return str(target)


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
        uri = png_uri(made)
    return (f'<figure><h3>{_e(title)}</h3><img src="{uri}" alt="{_e(alt)}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>")


def _summary_rows(inputs: ReportInputs) -> list[tuple[str, str]]:
    result, measure, artifact, s = inputs.search.result, inputs.measure, inputs.artifact, inputs.summary
    rows: list[tuple[str, str]] = []
    if result is not None:
        rows.append(("architecture", f'<span class="mono">{_e(result.arch)}</span>'))
        rows.append(("test accuracy", f"<strong>{_e(acc_text(s.get('test_accuracy')))}</strong> "
                                      f"(validation {_e(acc_text(result.valid_accuracy))}, "
                                      f"{_e(result.arch.space.num_classes)} classes)"))
    else:
        rows.append(("architecture", _na("the search did not finish (search.json has no result)")))
    rows.append(("predicted latency", f"<strong>{_e(ms_text(s.get('predicted_ms')))}</strong> "
                                      "(the device's latency table, fitted line)"))
    if measure is not None:
        m = measure.measurement
        flags = " ".join(f'<span class="badge {c}">{_e(t)}</span>' for t, c, on in (
            ("EMULATED", "warn", m.emulated), ("NOISY", "warn", m.noisy)) if on)
        rows.append(("measured latency", f"<strong>{_e(ms_text(s.get('measured_ms')))}</strong> median on "
                                         f"{_e(m.device)} (p90 {_e(ms_text(m.p90_ms))}, "
                                         f"min–max {_e(ms_text(m.min_ms))} – {_e(ms_text(m.max_ms))}, "
                                         f"{_e(m.repeat)} repeats of {_e(m.number)}) {flags}"))
        rows.append(("prediction error", f"{_e(pct_text(s.get('prediction_error_pct'), signed=True))} "
                                         "(predicted − measured) / measured"))
    else:
        rows.append(("measured latency", _na("not measured on the device (no compile/measure.json)")))
        rows.append(("prediction error", _na("needs a measurement")))
    budget = s.get("budget_ms")
    if budget is None:
        rows.append(("latency budget", _na("no budget was set ([search] latency_ms)")))
    else:
        basis = "measured median" if s.get("measured_ms") is not None else "prediction (not measured)"
        note = s.get("budget_note")
        rows.append(("latency budget", f"{_e(ms_text(budget))} of the compiled, tuned artifact on the device "
                                       f"{_badge(s.get('meets_budget'), 'met', 'NOT met')} (by the {_e(basis)})"
                                       + (f"<br>picked: {_e(note)}" if note else "")))
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
    head = ("check", "result", "where", "inputs", "max abs err", "max rel err", "onnxruntime's own noise",
            "output scale", "tolerance", "worst err / tolerance", "worst output")
    rows = []
    for name, p in checks:
        result = _badge(p.passed, "passed", "FAILED") if p.checked else _badge(None, "", "", "not checked")
        cells = [_e(name), result, _e(p.where), _e(p.samples), _e(_num(p.max_abs_err)), _e(_num(p.max_rel_err)),
                 _e(_num(p.reference_noise)), _e(_num(p.output_scale)), _e(_num(p.tolerance_abs)),
                 _e(_num(p.worst_err_over_tol)), _e(p.worst_output or "—")]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    rule = ('<p class="sub">An element passes within max(atol, noise_factor × onnxruntime\'s own noise (optimised '
            "against unoptimised graph), scale_rtol × the output's largest magnitude, rtol × |value|); "
            f"here atol {_e(_num(checks[0][1].atol))}, rtol {_e(_num(checks[0][1].rtol))}, noise_factor "
            f"{_e(_num(checks[0][1].noise_factor))}, scale_rtol {_e(_num(checks[0][1].scale_rtol))}.</p>")
    note = "" if inputs.measure is not None else _na("no on-device check: the artifact was not measured")
    return ("<table><tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr>" + "".join(rows) + "</table>"
            + rule + note)


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


NAO_COUNTS = (("round", "round"), ("pool", "pool_size"), ("decoded", "decoded"), ("random", "random"))
NAO_FIGURES = (("best predicted", "best_predicted_accuracy"), ("best decoded", "best_decoded_accuracy"),
               ("best in pool", "best_evaluated_accuracy"), ("Kendall tau (pool)", "predictor_kendall_tau"),
               ("Kendall tau (new, held out)", "heldout_kendall_tau"),
               ("latency head error (new, vs table)", "latency_head_mape"),
               ("decoder tokens", "epd_token_accuracy"))


def _pool_rounds_table(search: SearchRecord) -> str:
    """NAO's rounds from search.json: pool, new architectures, step sizes, predicted and scored accuracy, noise."""
    rounds = [h["pool_round"] for h in search.history if isinstance(h.get("pool_round"), dict)]
    if not rounds:
        return _na("search.json records no round (this search used another strategy or stopped before one)")
    head = "".join(f"<th>{_e(title)}</th>" for title, _ in (*NAO_COUNTS, *NAO_FIGURES))
    head += "<th>step sizes</th><th>noise</th>"
    rows = []
    for r in rounds:
        cells = "".join(f"<td>{_e(r.get(key))}</td>" for _, key in NAO_COUNTS)
        cells += "".join(f"<td>{_e(_num(r.get(key)))}</td>" for _, key in NAO_FIGURES)
        noise = r.get("noise") or {}
        published = noise.get("subsets_500_abs_diff")
        noise_text = f"rescored ±{_num(noise.get('rescore_abs_diff'))}" + (
            "" if published is None else f"; two 500-image subsets ±{_num(published)}")
        steps = ", ".join(f"{x:g}" for x in r.get("step_sizes", []))
        rows.append(f"<tr>{cells}<td>{_e(steps)}</td><td>{_e(noise_text)}</td></tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _cells_table(arch: PathArch) -> str:
    """A path-level network layer by layer: shapes, shortcut and the cell."""
    rows = "".join(
        f"<tr><td>{layer.index}</td><td>{layer.in_channels} → {layer.out_channels}</td><td>{layer.in_size}</td>"
        f"<td>{layer.stride}</td><td>{'yes' if layer.residual else 'no'}</td>"
        f'<td class="mono">{_e(cell)}</td></tr>' for layer, cell in zip(arch.space.layers(), arch.cells, strict=True))
    return ("<table><tr><th>layer</th><th>channels</th><th>input size</th><th>stride</th><th>shortcut</th>"
            f"<th>cell</th></tr>{rows}</table>")


def _path_rounds_table(search: SearchRecord) -> str:
    """The path-level rounds from search.json: moves tried, the best one, and whether it replaced the network."""
    rounds = [h["path_round"] for h in search.history if isinstance(h.get("path_round"), dict)]
    if not rounds:
        return _na("search.json records no round (the search stopped before one)")
    rows = []
    for r in rounds:
        moves = r.get("moves") or []
        best = moves[r["best_index"]] if moves and isinstance(r.get("best_index"), int) else {}
        current = r.get("current") or {}
        verdict = _badge(r.get("accepted") is not None, "accepted", "rejected")
        rows.append(
            f"<tr><td>{_e(r.get('round'))}</td><td>{_e(len(moves))}</td><td>{_e(best.get('move', '-'))}</td>"
            f"<td>{_e(_num(best.get('valid_accuracy')))}</td><td>{_e(_num(best.get('predicted_ms')))}</td>"
            f"<td>{_e(_num(best.get('reward')))}</td><td>{_e(_num(current.get('reward')))}</td><td>{verdict}</td>"
            f'<td class="mono">{_e(r.get("arch_after"))}</td></tr>')
    head = ("<tr><th>round</th><th>moves</th><th>best move</th><th>its accuracy</th><th>its ms</th>"
            "<th>its reward</th><th>current's reward</th><th></th><th>network after</th></tr>")
    return f"<table>{head}{''.join(rows)}</table>"


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
    if result is not None and isinstance(result.arch, PathArch):
        parts.append("<h3>3. The architecture</h3><p class=\"sub\">A path-level network: the fixed stem and head "
                     "and one cell per layer, grown from the start network by function-preserving "
                     "transformations; each cell is a block of the latency table.</p>" + _cells_table(result.arch))
    elif result is not None:
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
    parts.append(_figure_html(
        "4c. What tuning changed, layer by layer", "Every candidate op of each layer in the device's latency "
        "table: built with default schedules (light) and tuned as the final compile ships it (solid, what the "
        "search optimised); the chosen op is outlined. Tuning speeds ops up by different factors, so it can "
        "change which op a budget affords.", lambda: plot_layer_tuning(search, inputs.table),
        "untuned and tuned latency of each candidate op per layer"))
    if search.strategy in ("nao", "random"):
        parts.append("<h3>4d. Rounds</h3><p class=\"sub\">Each round scores the pool with the shared weights; NAO "
                     "trains its encoder-predictor-decoder on it, moves the best architectures' embeddings along the "
                     "predicted objective's gradient (step sizes grow until enough new architectures decode) and "
                     "scores the new ones (random search: random new ones only). Accuracies are validation "
                     "accuracies with shared weights; the noise is the same architectures scored twice.</p>"
                     + _pool_rounds_table(search))
    if search.strategy == "path-level":
        parts.append("<h3>4d. Rounds</h3><p class=\"sub\">Each round the policy proposes moves on the current "
                     "network; each is applied with inherited weights, fine-tuned and scored (validation accuracy, "
                     "the device latency of its blocks, the latency-penalised reward) against the current network "
                     "fine-tuned the same way; the best replaces it only if its reward is higher.</p>"
                     + _path_rounds_table(search))
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
