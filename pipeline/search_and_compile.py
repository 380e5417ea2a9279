"""`nasc search-and-compile`: latency table -> search -> export -> compile, tune, verify -> measure -> package.

One output folder holds every stage's result (search/, export/model.onnx, compile/, bundle/, report.html,
events.jsonl) and a record per stage (stages/NAME.json) with the hash of its inputs: settings, the
upstream stage's outputs, the nasc / torch / TVM versions. ``resume`` reuses a stage whose inputs and
outputs are unchanged; the first stage that runs again makes every later one run again. Each stage
writes its outputs atomically, so a crash, SIGKILL or Ctrl-C costs at most the stage that was running
(and the search continues from its own checkpoint).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, ClassVar, TypeVar

import torch

from nasc import __version__
from nasc.compiler.artifact import CompiledArtifact
from nasc.compiler.target import library_linker
from nasc.compiler.toolchain import toolchain_id
from nasc.devices.rpc import open_session
from nasc.devices.spec import DeviceSpec
from nasc.errors import ConfigError, DeviceUnreachable, SearchError
from nasc.events import RUN_STAGE, Progress, ProgressEvent, ignore_progress
from nasc.firmware_bridge.flash import flash
from nasc.fsutil import ensure_writable_dir, sha256_file, write_json_atomic
from nasc.search.data import check_source
from nasc.search.outputs import SearchRecord, SearchResult
from nasc.search.runtime import search_space
from nasc.typed_toml import to_plain

from .compile import compile_onnx
from .config import Config
from .export import export_search
from .latency_table_build import build_project_table
from .measure import MeasureReport, measure_model
from .package import package
from .report import load_report_inputs, write_report
from .search import device_predictor, search_on_device
from .stages import StageBook, StageRecord, digest, files_digest

T = TypeVar("T")

STAGE = RUN_STAGE  # progress: a bar over the stages (step k of n, label NAME) and "stage k/n" notes
STAGES = ("lut", "search", "export", "compile", "measure", "package")
EVENTS_NAME = "events.jsonl"
RUN_JSON = "run.json"
REPORT_NAME = "report.html"


@dataclass(frozen=True)
class StageRun:
    """How one stage went in this run."""

    name: str
    status: str  # "ran" or "reused"
    seconds: float
    inputs_sha256: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class PipelineSummary:
    """What `nasc search-and-compile` made and how good it is (run.json; the CLI's summary table)."""

    SCHEMA: ClassVar[str] = "nasc.run/1"

    out_dir: str
    device: str
    emulated: bool
    strategy: str
    arch: str
    test_accuracy: float
    predicted_ms: float
    measured_ms: float
    measured_spread_ms: tuple[float, float]  # min, max of the timed repeats
    prediction_error_pct: float  # (predicted - measured) / measured
    budget_ms: float | None
    meets_budget: bool | None  # measured on the device <= budget; None without a budget
    budget_used: float | None  # measured / budget
    budget_note: str  # how the architecture was picked for the budget (search/budget_pick.py), or ""
    parity_passed: bool
    parity_max_abs_err: float | None
    parity_where: str
    parity_detail: dict[str, Any]
    trials_spent: int
    tasks_tuned: int
    tasks_reused: int
    records_applied: int
    bundle: str
    bundle_sha256: str
    report: str
    flashed_to: str | None
    stages: tuple[StageRun, ...]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the --json output and run.json)."""
        data = dataclasses.asdict(self)
        data["stages"] = [s.to_dict() for s in self.stages]
        data["measured_spread_ms"] = list(self.measured_spread_ms)
        return {"schema": self.SCHEMA, **data}


@dataclass(frozen=True)
class PipelineRequest:
    """One run: the project, the device, where it goes, and how."""

    config: Config
    device: DeviceSpec
    out_dir: Path
    resume: bool = False
    flash_port: str | None = None


def default_out_dir(config: Config, device: DeviceSpec) -> Path:
    """[project].output_dir/run-<device>."""
    return config.output_dir() / f"run-{device.name}"


def bundle_name(project: str, device: str) -> str:
    """<project>-<device>.tar.gz, the device named once ("digits-local" on local: digits-local.tar.gz)."""
    stem = project if project.endswith(f"-{device}") else f"{project}-{device}"
    return f"{stem}.tar.gz"


def _versions() -> dict[str, str]:
    return {"nasc": __version__, "torch": torch.__version__, "toolchain": toolchain_id()}


def _source_fingerprint(config: Config) -> Any:
    """What identifies the data's content: a built-in name, a file's hash, a folder's listing."""
    source = config.data.source
    path = config.resolve_path(source)
    if path.is_file():
        return {"file": str(path), "sha256": sha256_file(path)}
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        return {"folder": str(path), "files": len(files), "bytes": sum(p.stat().st_size for p in files),
                "latest_mtime_ns": max((p.stat().st_mtime_ns for p in files), default=0)}
    return source


def preflight(request: PipelineRequest, progress: Progress = ignore_progress) -> None:
    """Everything knowable at second one: budget, folder, data, cross compiler, device reachable."""
    config, device = request.config, request.device
    budget = config.search.latency_ms
    if budget is not None and budget <= 0:
        raise ConfigError(f"{config.source}: [search] latency_ms must be positive, got {budget}")
    ensure_writable_dir(request.out_dir)
    check_source(config.data, config.search.space, config.base_dir)
    library_linker(device)  # a missing cross compiler
    if config.compile.trials < 0:
        raise ConfigError(f"{config.source}: [compile] trials must be >= 0, got {config.compile.trials}")
    progress(ProgressEvent.note(STAGE, f"checking that {device.name} answers"))
    try:
        with open_session(device, config.cache_dir(), config.measure):
            pass
    except DeviceUnreachable as exc:  # its message names the address and the command that starts a server
        raise DeviceUnreachable(f"{exc}\n(nothing was searched or compiled yet)") from None


class _EventLog:
    """Appends every progress event of the run to events.jsonl (for the report), then passes it on."""

    def __init__(self, path: Path, downstream: Progress) -> None:
        self.path = path
        self.downstream = downstream
        self.started = time.monotonic()
        self._file: IO[str] | None = None

    def __enter__(self) -> _EventLog:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", encoding="utf-8")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            self._file.close()
        self._file = None

    def __call__(self, event: ProgressEvent) -> None:
        if self._file is not None:
            line = {"t_s": round(time.monotonic() - self.started, 3), "stage": event.stage, "step": event.step,
                    "total": event.total, "label": event.label, "message": event.message,
                    "figures": dict(event.figures)}
            self._file.write(json.dumps(line) + "\n")
            self._file.flush()
        self.downstream(event)


class _Run:
    """The stages of one request, in order; each either reused (resume, same inputs) or run."""

    def __init__(self, request: PipelineRequest, progress: Progress) -> None:
        self.request = request
        self.config = request.config
        self.device = request.device
        self.out = request.out_dir
        self.progress = progress
        self.book = StageBook(self.out)
        self.rerun_from_here = not request.resume
        self.stage_runs: list[StageRun] = []
        self.records: dict[str, StageRecord] = {}

    # --- the driver -----------------------------------------------------------------------------
    def stage(self, name: str, inputs: dict[str, Any], run: Callable[[bool], tuple[T, dict[str, Any]]],
              reuse: Callable[[], T], outputs: Callable[[], list[Path]]) -> T:
        """Reuse `name` when allowed and unchanged, else `run(continue_started)` it and record it."""
        k = STAGES.index(name) + 1
        inputs = {**inputs, "versions": _versions()}
        inputs_sha = digest(inputs)
        old = self.book.read(name)
        unchanged = old is not None and old.inputs_sha256 == inputs_sha
        if not self.rerun_from_here and unchanged and old is not None and old.state == "done" \
                and files_digest(outputs()) == old.outputs_sha256:
            with contextlib.suppress(Exception):  # an unreadable output: run the stage again
                value = reuse()
                self.progress(ProgressEvent.note(STAGE, f"stage {k}/{len(STAGES)} {name}: unchanged, reused"))
                self.stage_runs.append(StageRun(name, "reused", 0.0, inputs_sha))
                self.records[name] = old
                return value
        self.rerun_from_here = True
        self.progress(ProgressEvent(STAGE, k - 1, len(STAGES), label=name))
        continue_started = unchanged and old is not None and old.state == "started" and self.request.resume
        self.progress(ProgressEvent.note(STAGE, f"stage {k}/{len(STAGES)} {name}"
                                                + (" (continuing)" if continue_started else "")))
        self.book.write(StageRecord(name, "started", inputs_sha, inputs))
        started = time.monotonic()
        value, facts = run(continue_started)
        seconds = round(time.monotonic() - started, 3)
        record = StageRecord(name, "done", inputs_sha, inputs, files_digest(outputs()), facts, seconds)
        self.book.write(record)
        self.records[name] = record
        self.stage_runs.append(StageRun(name, "ran", seconds, inputs_sha))
        return value

    def upstream(self, name: str) -> str:
        return self.records[name].outputs_sha256

    # --- the stages -----------------------------------------------------------------------------
    def lut(self) -> None:
        config, device = self.config, self.device
        table_state = self.out / "lut" / "latencies.json"

        trials = config.table_trials()
        untuned_config = config.with_section("search", table_trials=0)

        def latencies() -> dict[str, Any]:
            predictor = device_predictor(config, device)
            space = search_space(config.search, config.data, config.base_dir)
            state: dict[str, Any] = {"blocks": {b.key(): predictor.block_ms(b) for b in space.candidate_blocks()},
                                     "fit": predictor.fit.to_dict(), "table_trials": trials}
            if trials:  # the same blocks untuned, for the report's "what tuning changed" (not searched on)
                try:
                    untuned = device_predictor(untuned_config, device)
                    state["untuned_layers"] = [{op: untuned.block_ms(layer.signature(op)) for op in layer.ops}
                                               for layer in space.layers()]
                except SearchError:  # the cache lost them: the stage reruns and measures them again
                    state["untuned_layers"] = None
            return state

        def run(_: bool) -> tuple[None, dict[str, Any]]:
            report = build_project_table(config, device, progress=self.progress)
            if trials:
                build_project_table(untuned_config, device, progress=self.progress)
            write_json_atomic(table_state, latencies())
            return None, report.to_dict()

        inputs = {"device": device.to_dict(), "space": to_plain(config.search.space),
                  "data": _source_fingerprint(config), "measure": to_plain(config.measure),
                  "table_trials": config.table_trials()}
        # The table lives in the cache; its entries for this space are copied out so a changed entry
        # (a rebuilt cache) changes this stage's output hash and so reruns the search.
        self.stage("lut", inputs, run, lambda: None, lambda: [table_state])
        if not self.rerun_from_here and json.loads(table_state.read_text()) != latencies():
            # The cache changed under a reused stage: record the new latencies, search again.
            self.rerun_from_here = True
            write_json_atomic(table_state, latencies())

    def search(self) -> SearchResult:
        folder = self.out / "search"

        def run(continue_started: bool) -> tuple[SearchResult, dict[str, Any]]:
            if not continue_started and folder.exists():
                shutil.rmtree(folder)  # an older run's checkpoint belongs to other inputs
            result = search_on_device(self.config, self.device, folder, progress=self.progress,
                                      resume=continue_started)
            return result, {"arch": str(result.arch), "test_accuracy": result.test_accuracy,
                            "predicted_ms": result.predicted_ms}

        inputs = {"search": to_plain(self.config.search), "data": to_plain(self.config.data),
                  "data_content": _source_fingerprint(self.config), "lut": self.upstream("lut")}
        return self.stage("search", inputs, run, lambda: SearchRecord.load(folder).finished_result(folder),
                          lambda: [folder / "arch.json", folder / "model.pt", folder / "search.json"])

    def export(self) -> Path:
        onnx_path = self.out / "export" / "model.onnx"

        def run(_: bool) -> tuple[Path, dict[str, Any]]:
            exported = export_search(self.out / "search", onnx_path, opset=self.config.compile.opset)
            return onnx_path, {"sha256": exported.sha256}

        inputs = {"search": self.upstream("search"), "opset": self.config.compile.opset}
        return self.stage("export", inputs, run, lambda: onnx_path, lambda: [onnx_path])

    def compile(self, onnx_path: Path) -> CompiledArtifact:
        folder = self.out / "compile"

        def run(_: bool) -> tuple[CompiledArtifact, dict[str, Any]]:
            artifact = compile_onnx(onnx_path, self.device, self.config.compile, folder, self.config.cache_dir(),
                                    verify=True, progress=self.progress)
            return artifact, {"tuning": artifact.tuning.to_dict(), "parity_passed": artifact.parity.passed}

        inputs = {"onnx": self.upstream("export"), "compile": to_plain(self.config.compile),
                  "device": self.device.to_dict()}
        return self.stage("compile", inputs, run, lambda: CompiledArtifact.load(folder),
                          lambda: [folder / "model.so", folder / "model.onnx", folder / "compile.json"])

    def measure(self) -> MeasureReport:
        folder = self.out / "compile"

        def run(_: bool) -> tuple[MeasureReport, dict[str, Any]]:
            report = measure_model(folder, self.device, self.config, progress=self.progress)
            return report, {"median_ms": report.measurement.median_ms}

        inputs = {"artifact": self.upstream("compile"), "measure": to_plain(self.config.measure)}
        return self.stage("measure", inputs, run, lambda: MeasureReport.load(folder),
                          lambda: [folder / "measure.json"])

    def package(self) -> tuple[Path, str]:
        bundle = self.out / "bundle" / bundle_name(self.config.project.name, self.device.name)

        def run(_: bool) -> tuple[tuple[Path, str], dict[str, Any]]:
            bundle.parent.mkdir(parents=True, exist_ok=True)
            result = package(self.out / "compile", bundle, self.config.package, self.out / "search")
            return (bundle, result.sha256), {"sha256": result.sha256, "size_bytes": result.size_bytes}

        inputs = {"artifact": self.upstream("compile"), "measure": self.upstream("measure"),
                  "search": self.upstream("search"), "package": to_plain(self.config.package)}
        return self.stage("package", inputs, run, lambda: (bundle, sha256_file(bundle)), lambda: [bundle])


def _summary(run: _Run, result: SearchResult, artifact: CompiledArtifact, measured: MeasureReport,
             bundle: Path, bundle_sha: str, report: Path, flashed_to: str | None, seconds: float) -> PipelineSummary:
    m = measured.measurement
    budget = result.budget_ms
    parity = artifact.parity
    return PipelineSummary(
        out_dir=str(run.out), device=run.device.name, emulated=run.device.emulated, strategy=result.strategy,
        arch=str(result.arch), test_accuracy=result.test_accuracy, predicted_ms=result.predicted_ms,
        measured_ms=m.median_ms, measured_spread_ms=(m.min_ms, m.max_ms),
        prediction_error_pct=100.0 * (result.predicted_ms - m.median_ms) / m.median_ms,
        budget_ms=budget, meets_budget=None if budget is None else m.median_ms <= budget,
        budget_used=None if budget is None else m.median_ms / budget,
        budget_note=str(result.figures.get("budget_pick", {}).get("message", "")),
        parity_passed=parity.passed, parity_max_abs_err=parity.max_abs_err, parity_where=parity.where,
        parity_detail=parity.to_dict(), trials_spent=artifact.tuning.trials_run,
        tasks_tuned=artifact.tuning.tasks_tuned, tasks_reused=artifact.tuning.tasks_reused,
        records_applied=artifact.tuning.records_applied, bundle=str(bundle), bundle_sha256=bundle_sha,
        report=str(report), flashed_to=flashed_to, stages=tuple(run.stage_runs), seconds=round(seconds, 3),
    )


@contextlib.contextmanager
def _logged(out_dir: Path, progress: Progress) -> Iterator[_EventLog]:
    with _EventLog(out_dir / EVENTS_NAME, progress) as log:
        yield log


def search_and_compile(request: PipelineRequest, progress: Progress = ignore_progress) -> PipelineSummary:
    """The whole job for `request.device`; returns the summary (also written to DIR/run.json)."""
    started = time.monotonic()
    out = ensure_writable_dir(request.out_dir)
    config = request.config
    if config.search.table_trials is None:  # the table holds the blocks as this run's final compile ships them
        config = config.with_section("search", table_trials=config.compile.trials)
    request = dataclasses.replace(request, out_dir=out, config=config)
    preflight(request, progress)
    if not request.resume and StageBook(out).any_done():
        progress(ProgressEvent.note(STAGE, f"{out} holds an earlier run; every stage runs again "
                                           "(pass --resume to reuse the finished ones)"))
    with _logged(out, progress) as log:
        run = _Run(request, log)
        log(ProgressEvent.note(STAGE, f"search-and-compile for {request.device.name} into {out}"))
        run.lut()
        result = run.search()
        onnx_path = run.export()
        artifact = run.compile(onnx_path)
        measured = run.measure()
        bundle, bundle_sha = run.package()
        flashed_to = None
        if request.flash_port:
            log(ProgressEvent.note(STAGE, f"sending {bundle.name} to {request.flash_port}"))
            flash(bundle, request.flash_port, settings=request.config.package, progress=log)
            flashed_to = request.flash_port
        report_path = out / REPORT_NAME
        summary = _summary(run, result, artifact, measured, bundle, bundle_sha, report_path, flashed_to,
                           time.monotonic() - started)
        write_report(report_path, load_report_inputs(
            out, request.device, [(s.name, s.status, s.seconds) for s in run.stage_runs], summary.to_dict()))
        log(ProgressEvent.note(STAGE, f"report: {report_path}"))
    write_json_atomic(out / RUN_JSON, summary.to_dict())
    return summary


