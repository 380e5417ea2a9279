"""A compile worker: reads JSON jobs on stdin, builds each library, answers one JSON line per job.

Run as ``python -m nasc.pipeline.compile_worker`` by :class:`nasc.pipeline.blockbuild.BlockCompiler`.
TVM's build noise (stdout and stderr of C++) goes to /dev/null; answers go to the original stdout.
"""

from __future__ import annotations

import json
import os
import sys


def main() -> int:
    """Serve jobs until stdin closes."""
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    from nasc.pipeline.blockbuild import compile_library

    for line in sys.stdin:
        if not line.strip():
            continue
        job = json.loads(line)
        try:
            out = compile_library(job["onnx"], job["device"], job["out"], job.get("tuning_dir"))
            answers.write(json.dumps({"ok": True, "out": out}) + "\n")
        except Exception as exc:
            text = str(exc).strip().splitlines()
            error = f"{type(exc).__name__}: {text[-1] if text else ''}"
            answers.write(json.dumps({"ok": False, "error": error}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
