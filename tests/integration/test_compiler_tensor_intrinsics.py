"""The quick import of TVM's tensor intrinsics: same registrations, same stack for TVM's parser."""

from __future__ import annotations

import inspect
import subprocess
import sys
import textwrap

from nasc.compiler.tensor_intrinsics import _FRAMES_WITH_SOURCE, _stack_without_deep_source


def _both_stacks(real_stack):
    return real_stack(), inspect.stack()  # one line: both see the same frames and lines


def test_stack_keeps_source_of_first_frames_and_every_frame_object() -> None:
    real_stack = inspect.stack
    with _stack_without_deep_source():
        assert inspect.stack is not real_stack
        real, cheap = _both_stacks(real_stack)
    assert inspect.stack is real_stack  # restored
    assert len(cheap) == len(real)
    for index, (want, got) in enumerate(zip(real, cheap, strict=True)):
        assert (got.filename, got.function) == (want.filename, want.function)
        if index < _FRAMES_WITH_SOURCE:
            assert got.code_context == want.code_context
            assert got.lineno == want.lineno
        else:
            assert got.code_context is None
    # The frames TVM's parser reads closure variables from are the real frame objects.
    assert [f.frame for f in cheap] == [f.frame for f in real]


def test_stack_is_restored_when_the_import_fails() -> None:
    real = inspect.stack
    try:
        with _stack_without_deep_source():
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert inspect.stack is real


def test_import_registers_the_intrinsics_in_a_fresh_process() -> None:
    script = textwrap.dedent(
        """
        import inspect, sys
        real = inspect.stack
        from nasc.compiler.tensor_intrinsics import import_tensor_intrinsics
        import_tensor_intrinsics()
        assert "tvm.s_tir.tensor_intrin" in sys.modules
        assert inspect.stack is real
        from tvm.s_tir import TensorIntrin
        print(TensorIntrin.get("dot_16x4_avx512") is not None)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "True"
