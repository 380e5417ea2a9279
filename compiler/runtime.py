"""Run a built library in the Relax VM, on this host or on a remote device."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def load_vm(module: Any, dev: Any):  # -> relax.VirtualMachine
    """A Relax VM over a loaded library (`tvm.runtime.load_module` or `remote.load_module`)."""
    from tvm import relax

    return relax.VirtualMachine(module, dev)


def _flatten(result: Any) -> list[Any]:
    if hasattr(result, "numpy"):
        return [result]
    items: list[Any] = []
    for item in result:
        items.extend(_flatten(item))
    return items


def run_vm(vm: Any, inputs: Sequence[np.ndarray], dev: Any) -> list[np.ndarray]:
    """Call `main` with `inputs` (in graph order) and return the outputs as numpy arrays."""
    import tvm

    args = [tvm.runtime.tensor(np.ascontiguousarray(x), dev) for x in inputs]
    result = vm["main"](*args)
    return [np.asarray(t.numpy()) for t in _flatten(result)]


def host_runner(library: str | Path) -> Callable[[Sequence[np.ndarray]], list[np.ndarray]]:
    """A function running `library` in-process on this host's CPU (no RPC)."""
    import tvm

    dev = tvm.cpu(0)
    vm = load_vm(tvm.runtime.load_module(str(library)), dev)
    return lambda inputs: run_vm(vm, inputs, dev)
