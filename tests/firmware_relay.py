"""A damaging serial line between two pseudo-terminal pairs (a test tool, run as its own process).

    python tests/firmware_relay.py --rate 0.05 --seed 1 [--bytes-per-s 92160] [--latency-ms 2] [--raw]

Prints one JSON line {"sender_port": ..., "receiver_port": ...} and relays bytes between the two
pty pairs. Each 0x00-delimited frame, in each direction, is damaged with probability `rate`:
corrupted (bits flipped), dropped, or delayed (the line stalls, order kept), one third each.
`--bytes-per-s` paces each direction like a UART at that speed, `--latency-ms` adds a fixed
one-way latency, `--raw` treats every read as a unit instead of splitting at 0x00 (for YMODEM).
On SIGTERM it writes its counts as JSON to `--stats` and exits.
"""

from __future__ import annotations

import argparse
import collections
import errno
import json
import os
import random
import select
import signal
import sys
import time
import tty


class Direction:
    """One way of the line: frames in, damaged, paced, out."""

    def __init__(self, name: str, out_fd: int, rng: random.Random, rate: float, delay_s: tuple[float, float],
                 bytes_per_s: float, stats: collections.Counter[str]) -> None:
        self.name = name
        self.out_fd = out_fd
        self.rng = rng
        self.rate = rate
        self.delay_s = delay_s
        self.bytes_per_s = bytes_per_s
        self.stats = stats
        self.partial = bytearray()
        self.queue: collections.deque[tuple[float, bytes]] = collections.deque()
        self.line_free_at = 0.0
        self.raw = False
        self.latency_s = 0.0

    def feed(self, data: bytes) -> None:
        if self.raw:  # any protocol (YMODEM): each read is a unit
            self._frame(data)
            return
        *frames, tail = bytes(self.partial + data).split(b"\x00")
        self.partial = bytearray(tail)
        for frame in frames:
            self._frame(frame + b"\x00")

    def _frame(self, frame: bytes) -> None:
        now = time.monotonic()
        hold = 0.0
        self.stats[f"{self.name}_frames"] += 1
        if (len(frame) > 1 or self.raw) and self.rng.random() < self.rate:  # a lone delimiter is left alone
            damage = self.rng.choice(("corrupt", "drop", "delay"))
            self.stats[f"{self.name}_{damage}"] += 1
            if damage == "drop":
                return
            if damage == "corrupt":
                data = bytearray(frame)
                for _ in range(self.rng.randint(1, 3)):
                    i = self.rng.randrange(max(1, len(data) - 1))  # the delimiter stays: framing resynchronises
                    data[i] ^= 1 << self.rng.randrange(8)
                frame = bytes(data)
            else:
                hold = self.rng.uniform(*self.delay_s)
        start = max(now + self.latency_s, self.line_free_at) + hold
        duration = len(frame) / self.bytes_per_s if self.bytes_per_s else 0.0
        self.line_free_at = start + duration
        self.queue.append((self.line_free_at, frame))

    def flush(self) -> float | None:
        """Write frames whose time has come; return seconds until the next one (None if none)."""
        now = time.monotonic()
        while self.queue and self.queue[0][0] <= now:
            _, frame = self.queue.popleft()
            try:
                os.write(self.out_fd, frame)
            except BlockingIOError:
                self.stats[f"{self.name}_overflow"] += 1  # nobody reads that end: the bytes are lost
            except OSError as exc:
                if exc.errno != errno.EIO:
                    raise
        return self.queue[0][0] - now if self.queue else None


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bytes-per-s", type=float, default=0.0)
    parser.add_argument("--delay-ms", type=float, nargs=2, default=(5.0, 60.0))
    parser.add_argument("--stats", default="")
    parser.add_argument("--raw", action="store_true", help="do not split at 0x00 (for YMODEM)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="fixed one-way latency (a USB adapter's)")
    args = parser.parse_args()
    stats: collections.Counter[str] = collections.Counter()
    master_a, slave_a = os.openpty()
    master_b, slave_b = os.openpty()
    for fd in (slave_a, slave_b):
        tty.setraw(fd)  # the slaves stay open here, so a peer closing its end never gives EIO
    for fd in (master_a, master_b):
        os.set_blocking(fd, False)
    rng = random.Random(args.seed)
    delay = (args.delay_ms[0] / 1000, args.delay_ms[1] / 1000)
    to_receiver = Direction("to_receiver", master_b, rng, args.rate, delay, args.bytes_per_s, stats)
    to_sender = Direction("to_sender", master_a, rng, args.rate, delay, args.bytes_per_s, stats)
    route = {master_a: to_receiver, master_b: to_sender}
    for direction in route.values():
        direction.raw = args.raw
        direction.latency_s = args.latency_ms / 1000
    running = True

    def stop(signum: int, frame: object) -> None:
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(json.dumps({"sender_port": os.ttyname(slave_a), "receiver_port": os.ttyname(slave_b)}), flush=True)
    while running:
        waits = [w for w in (to_receiver.flush(), to_sender.flush()) if w is not None]
        timeout = min([0.05, *waits])
        try:
            readable, _, _ = select.select([master_a, master_b], [], [], max(0.0, timeout))
        except InterruptedError:
            continue
        for fd in readable:
            try:
                data = os.read(fd, 65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as exc:
                if exc.errno == errno.EIO:
                    continue
                raise
            route[fd].feed(data)
    if args.stats:
        with open(args.stats, "w") as f:
            json.dump(stats, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
