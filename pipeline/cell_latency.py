"""A latency predictor that measures what its table lacks: a path-level search makes new cells as it goes,
and each one is compiled (tuned at the table's trials, as the table's other blocks), timed on the device
and stored in the latency table the moment a network that contains it is first asked about.

The table stays the one source of latencies: a new cell's entry is keyed like any other block (its
cell string, the device, the table's toolchain), so a later search, `nasc lut show` and the final
compile's tuning records all see it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from nasc.compiler.toolchain import table_toolchain
from nasc.devices.latency_table import LatencyTable
from nasc.devices.predictor import TablePredictor, load_predictor
from nasc.devices.spec import DeviceSpec
from nasc.events import Progress, ProgressEvent, ignore_progress
from nasc.search.path_level.blocks import build_path_block
from nasc.signature import BlockSignature

from .config import Config
from .latency_table_build import LUT_STAGE, build_table, table_tuning


class MeasuringPredictor:
    """nasc.latency's LatencyPredictor over the cache's table for `device`; blocks the table lacks are
    measured (tuned first where the table is tuned) and stored before they are answered."""

    def __init__(self, config: Config, device: DeviceSpec, progress: Progress = ignore_progress) -> None:
        self.config = config
        self.device = device
        self.progress = progress
        self.toolchain = table_toolchain(config.table_trials(), device.threads)
        self.table = load_predictor(config.cache_dir(), device, self.toolchain)
        self.measured: list[str] = []  # keys of the blocks this predictor added to the table

    def _ensure(self, blocks: Sequence[BlockSignature]) -> TablePredictor:
        missing = list(dict.fromkeys(b for b in blocks if not self.table.knows(b)))
        if missing:
            config, device = self.config, self.device
            self.progress(ProgressEvent.note(LUT_STAGE, f"measuring {len(missing)} new block(s) on {device.name}: "
                                                        + ", ".join(b.cell or b.op for b in missing)))
            # Exporting a block seeds torch's global generator: keep the search's draws independent of which
            # blocks the cache happened to hold (a resumed search must repeat an uninterrupted one).
            with torch.random.fork_rng(devices=[]), LatencyTable.in_cache(config.cache_dir(), self.toolchain) as table:
                build_table(device, missing, table, config.cache_dir(), config.measure, build_path_block,
                            tuning=table_tuning(config, device, config.table_trials()), progress=self.progress)
            self.table = load_predictor(config.cache_dir(), device, self.toolchain)
            self.measured.extend(b.key() for b in missing)
        return self.table

    def block_ms(self, block: BlockSignature) -> float:
        """Latency of one block, measured first if the table lacks it."""
        return self._ensure([block]).block_ms(block)

    def network_ms(self, blocks: Sequence[BlockSignature]) -> float:
        """Latency of a network of `blocks` (the table's fitted line over the blocks), measuring any it lacks."""
        return self._ensure(blocks).network_ms(blocks)
