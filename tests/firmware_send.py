"""Send files with the nasc protocol, one JSON result line each (a test tool, run as its own process).

    python tests/firmware_send.py PORT FILE [FILE ...] [--ack-timeout-s 0.15] [--stall-timeout-s 20]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

from nasc.errors import TransferError
from nasc.firmware_bridge.port import open_port
from nasc.firmware_bridge.sender import NascSender, SenderSettings


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("port")
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--chunk-bytes", type=int, default=256)
    parser.add_argument("--window-frames", type=int, default=4)
    parser.add_argument("--ack-timeout-s", type=float, default=0.15)
    parser.add_argument("--stall-timeout-s", type=float, default=20.0)
    args = parser.parse_args()
    settings = SenderSettings(args.chunk_bytes, args.window_frames, args.ack_timeout_s, args.stall_timeout_s)
    try:
        with contextlib.closing(open_port(args.port, 921600)) as port:
            for path in args.files:
                result = NascSender(port, settings, where=args.port).send(path)
                print(json.dumps(result.to_dict()), flush=True)
    except TransferError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
