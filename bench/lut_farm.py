"""Latency-table build with 1 vs 2 stock servers behind one tracker: wall-time ratio (target >= 1.7x).

Two figures, each the median of --runs fresh builds into an empty table:
- "measure" : compile cache warm, so the wall time is the device side (sessions, uploads, timing).
  This is what a farm parallelises: each board is its own machine.
- "cold"    : compile included (two compile worker processes in both cases; the host compiles).
Here both "devices" are RPC servers on this host's CPU, each pinned to one TVM thread
(TVM_NUM_THREADS=1) so two measurements can run side by side; a real farm has a CPU per board.

    .venv/bin/python bench/lut_farm.py [--blocks 24] [--runs 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import statistics
import tempfile
from pathlib import Path

from nasc.compiler.toolchain import toolchain_id
from nasc.devices.latency_table import LatencyTable
from nasc.devices.registry import resolve_device
from nasc.devices.rpc import SessionSource
from nasc.devices.server import RpcServerProcess, free_port, stock_server_command, tracker_command
from nasc.devices.settings import MeasureSettings
from nasc.devices.spec import Connection
from nasc.devices.tracker import wait_for_servers
from nasc.pipeline.latency_table_build import build_table
from nasc.search.settings import SpaceSettings
from nasc.search.space import SearchSpace, build_block


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=24)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    blocks = SearchSpace(SpaceSettings(), 10).candidate_blocks()[: args.blocks]
    settings = MeasureSettings()
    env = {**os.environ, "TVM_NUM_THREADS": "1"}
    # the target the servers run: one core each
    local = resolve_device("local")
    target = {**local.target, "num-cores": 1}
    work = Path(tempfile.mkdtemp(prefix="nasc-bench-farm-"))
    tport = free_port()
    procs: list[RpcServerProcess] = []
    try:
        tracker = RpcServerProcess(tracker_command("127.0.0.1", tport), "127.0.0.1", tport, name="tracker")
        tracker.start()
        tracker.wait_until_listening()
        procs.append(tracker)
        for key, count in (("one", 1), ("two", 2)):
            for _ in range(count):
                port = free_port()
                cmd = stock_server_command("127.0.0.1", port, tracker=tracker.address, key=key)
                proc = RpcServerProcess(cmd, "127.0.0.1", port, name=f"server {key}", env=env).start()
                procs.append(proc)
        for proc in procs[1:]:
            proc.wait_until_listening(120)
        wait_for_servers("127.0.0.1", tport, "one", 1)
        wait_for_servers("127.0.0.1", tport, "two", 2)
        toolchain = toolchain_id()
        results: dict[str, dict[int, list[float]]] = {"cold": {1: [], 2: []}, "measure": {1: [], 2: []}}
        for run in range(args.runs):
            for servers in (1, 2):
                key = "one" if servers == 1 else "two"
                device = dataclasses.replace(local, name=f"farm-{key}", target=target,
                                             connection=Connection("tracker", "127.0.0.1", tport, key))
                for mode in ("cold", "measure"):
                    cache = work / f"{mode}-{servers}-{run}" if mode == "cold" else work / "warm"
                    table_path = work / f"table-{mode}-{servers}-{run}.sqlite"
                    with LatencyTable(table_path, toolchain) as table, SessionSource(device, cache, settings) as source:
                        if mode == "measure" and not (cache / "warmed").exists():
                            build_table(device, blocks, LatencyTable(work / "warmup.sqlite", toolchain), cache,
                                        settings, build_block, source=source)
                            (cache / "warmed").touch()
                        report = build_table(device, blocks, table, cache, settings, build_block, source=source,
                                             compile_jobs=2)
                    results[mode][servers].append(report.wall_s)
                    print(f"run {run} {mode:7s} {servers} server(s): {report.wall_s:6.2f} s "
                          f"({report.measured} blocks, {report.sessions} sessions, {len(report.noisy)} noisy)",
                          flush=True)
                    if mode == "cold":
                        shutil.rmtree(cache, ignore_errors=True)
        print(f"\n{len(blocks)} blocks, {args.runs} runs, medians:")
        for mode in ("measure", "cold"):
            one = statistics.median(results[mode][1])
            two = statistics.median(results[mode][2])
            print(f"  {mode:7s}: 1 server {one:6.2f} s, 2 servers {two:6.2f} s, speed-up {one / two:.2f}x")
    finally:
        for proc in reversed(procs):
            proc.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
