"""Serial throughput: the nasc protocol (sliding window) vs YMODEM (stop-and-wait, the peer) on one emulated line.

Both send the same payload through tests/firmware_relay.py pacing a 921600-baud UART (92160 bytes/s)
with a fixed one-way latency like a USB-serial adapter's, to the nasc receiver process (nasc protocol,
or --protocol ymodem). Reported per protocol: median seconds over --runs and the fraction of the line
rate reached; then the ratio nasc/YMODEM. Optionally with --damage (frames damaged, nasc only, since
the relay's damage is frame-aware).

    .venv/bin/python bench/firmware_serial_throughput.py [--kib 256] [--latency-ms 2] [--runs 3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from nasc.firmware_bridge.port import open_port
from nasc.firmware_bridge.sender import NascSender, SenderSettings
from nasc.firmware_bridge.ymodem import YmodemSender

REPO = Path(__file__).resolve().parents[1]
RELAY = REPO / "tests" / "firmware_relay.py"
LINE_BYTES_PER_S = 92160


def one_run(protocol: str, payload: Path, latency_ms: float, damage: float, workdir: Path, seed: int) -> float:
    """Seconds to send `payload` once (receiver saved it, byte-identical)."""
    relay_args = ["--bytes-per-s", str(LINE_BYTES_PER_S), "--latency-ms", str(latency_ms), "--seed", str(seed),
                  "--rate", str(damage)]
    if protocol == "ymodem":
        relay_args.append("--raw")
    relay = subprocess.Popen([sys.executable, str(RELAY), *relay_args], stdout=subprocess.PIPE, text=True)
    dest = workdir / f"dest-{protocol}-{seed}"
    receiver = None
    try:
        ports = json.loads(relay.stdout.readline())  # type: ignore[union-attr]
        receiver = subprocess.Popen([sys.executable, "-m", "nasc.firmware_bridge.receiver", "--port",
                                     ports["receiver_port"], "--dest", str(dest), "--protocol", protocol, "--once"],
                                    stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        with contextlib.closing(open_port(ports["sender_port"], 921600)) as port:
            start = time.perf_counter()
            if protocol == "ymodem":
                YmodemSender(port).send(payload)
            else:
                NascSender(port, SenderSettings(1024, 8, 0.5, 30.0)).send(payload)
            receiver.wait(60)
            elapsed = time.perf_counter() - start
        assert (dest / payload.name).read_bytes() == payload.read_bytes(), "payload damaged"
        return elapsed
    finally:
        if receiver is not None and receiver.poll() is None:
            receiver.kill()
            receiver.wait()
        relay.terminate()
        relay.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kib", type=int, default=256)
    parser.add_argument("--latency-ms", type=float, default=2.0)
    parser.add_argument("--damage", type=float, default=0.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        payload = workdir / "payload.bin"
        payload.write_bytes(os.urandom(args.kib * 1024))
        medians = {}
        for protocol in ("nasc", "ymodem"):
            damage = args.damage if protocol == "nasc" else 0.0
            times = [one_run(protocol, payload, args.latency_ms, damage, workdir, seed) for seed in range(args.runs)]
            medians[protocol] = statistics.median(times)
            rate = payload.stat().st_size / medians[protocol]
            print(f"{protocol:>6}: median {medians[protocol]:.2f} s over {args.runs} runs, {rate:.0f} bytes/s, "
                  f"{rate / LINE_BYTES_PER_S:.0%} of the line rate" + (f" ({damage:.0%} damage)" if damage else ""))
        print(f"nasc / YMODEM throughput: {medians['ymodem'] / medians['nasc']:.2f}x "
              f"({args.kib} KiB, 921600 baud, {args.latency_ms} ms one-way latency)")


if __name__ == "__main__":
    main()
