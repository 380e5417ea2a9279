"""Import TVM's tensor intrinsics several times faster than a plain import.

MetaSchedule imports ``tvm.s_tir.tensor_intrin`` in every process that builds a candidate or
creates a tuning context. That module parses about 250 TVMScript functions at import time, and
each parse calls ``inspect.stack()``. For every frame on the stack, ``inspect`` looks up the
source file. The import machinery's own frames (``<frozen importlib._bootstrap>``) have no file,
so each lookup scans all of ``sys.modules``: about 2,000 modules once torch is loaded (tvm_ffi
loads it). That made each builder worker spend many seconds importing before its first build.

TVM's parser reads the source line of the first three frames only (to tell a function defined in
a ``@I.ir_module`` class) and the frame objects of the others (to resolve closure variables), so
while the module is imported ``inspect.stack`` gives the first three frames in full and the rest
without their source context. Nothing changes after the import.
"""

from __future__ import annotations

import inspect
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_FRAMES_WITH_SOURCE = 3
_lock = threading.Lock()


@contextmanager
def _stack_without_deep_source() -> Iterator[None]:
    real_stack = inspect.stack

    def stack(context: int = 1) -> list[inspect.FrameInfo]:
        frame = sys._getframe(1)
        frames: list[inspect.FrameInfo] = []
        while frame is not None:
            if len(frames) < _FRAMES_WITH_SOURCE:
                frames.append(inspect.FrameInfo(frame, *inspect.getframeinfo(frame, context)))
            else:
                code = frame.f_code
                frames.append(inspect.FrameInfo(frame, code.co_filename, frame.f_lineno, code.co_name, None, None))
            frame = frame.f_back
        return frames

    inspect.stack = stack
    try:
        yield
    finally:
        inspect.stack = real_stack


def import_tensor_intrinsics() -> None:
    """Import ``tvm.s_tir.tensor_intrin`` (registers TVM's tensor intrinsics) once, quickly."""
    if "tvm.s_tir.tensor_intrin" in sys.modules:
        return
    with _lock, _stack_without_deep_source():
        import tvm.s_tir.tensor_intrin  # noqa: F401
