"""`nasc search` across rooms: the device's measured latency table becomes the search's predictor."""

from __future__ import annotations

from pathlib import Path

from nasc.compiler.toolchain import table_toolchain
from nasc.devices.predictor import TablePredictor, load_predictor
from nasc.devices.spec import DeviceSpec
from nasc.events import Progress, ignore_progress
from nasc.fsutil import ensure_writable_dir
from nasc.latency import LatencyPredictor
from nasc.search.outputs import SearchResult
from nasc.search.runtime import run_search

from .cell_latency import MeasuringPredictor
from .config import Config

PATH_LEVEL = "path-level"  # the strategy whose networks hold cells the space's table does not list


def device_predictor(config: Config, device: DeviceSpec) -> TablePredictor:
    """The measured LatencyPredictor for `device`: the cache's latency table for this toolchain, untuned or
    tuned at [search] table_trials, with the line `nasc lut fit` fitted for that table, if it ran."""
    return load_predictor(config.cache_dir(), device, table_toolchain(config.table_trials(), device.threads))


def search_on_device(config: Config, device: DeviceSpec, out_dir: Path | None = None, *,
                     progress: Progress = ignore_progress, resume: bool = False) -> SearchResult:
    """Search [search] on [data] with `device`'s measured latencies; write into `out_dir`
    (default: [project].output_dir/search)."""
    out = ensure_writable_dir(out_dir if out_dir is not None else config.output_dir() / "search")
    # A path-level search makes cells no table holds yet: they are measured on the device as they appear.
    predictor: LatencyPredictor = (MeasuringPredictor(config, device, progress) if config.search.strategy == PATH_LEVEL
                                   else device_predictor(config, device))
    return run_search(config.search, config.data, predictor, out, base_dir=config.base_dir, progress=progress,
                      resume=resume)
