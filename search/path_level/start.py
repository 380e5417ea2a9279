"""The start network of a path-level search, from [search.path_level] start.

Three forms, so a user can begin from MobileNetV2's shape, from one cell everywhere, or from any network
written out (a proxyless result's ops are such a line):
- ``mobilenetv2``: every layer the space's MBConv op with the smallest kernel, then the largest
  expansion (k3_e6 in the default space). An op of [search.space] ops, so the latency table already
  holds its blocks; MobileNetV2's 3x3 kernel because path-level moves add larger kernels themselves
  (sep5 and sep7 branches and edges), while nothing shrinks a kernel again;
- ``uniform:CELL``: every layer CELL, any cell string (``uniform:k3_e3``, ``uniform:add(sep3,identity)``);
- one cell string per searchable layer, separated by white space (``zero`` only on residual layers).
"""

from __future__ import annotations

from pathlib import Path

from ..outputs import load_arch
from ..settings import OP_PATTERN, START_KEYWORD, UNIFORM_PREFIX
from ..space import ArchSpec, SearchSpace
from .cell import PathArch


def mobilenetv2_op(space: SearchSpace) -> str:
    """The space's MBConv op with the smallest kernel, then the largest expansion."""
    ops = [op for op in space.settings.ops if op != "zero"]

    def rank(op: str) -> tuple[int, int]:
        match = OP_PATTERN.match(op)
        assert match is not None  # SpaceSettings admits only kK_eE and zero
        return int(match["kernel"]), -int(match["expand"])

    return min(ops, key=rank)


def start_arch(space: SearchSpace, text: str) -> PathArch:
    """The PathArch that `text` (a start setting) names on `space`; ValueError says what does not fit."""
    text = text.strip()
    count = len(space.layers())
    if text == START_KEYWORD:
        cells = [mobilenetv2_op(space)] * count
    elif text.startswith(UNIFORM_PREFIX):
        cells = [text.removeprefix(UNIFORM_PREFIX).strip()] * count
    else:
        cells = text.split()
        if len(cells) != count:
            raise ValueError(f"{text!r} names {len(cells)} cells, the space has {count} searchable layers "
                             f"(or write {START_KEYWORD!r} or 'uniform:CELL')")
    return PathArch.from_strings(space, cells)


def start_setting(value: str) -> str:
    """A `--start` value as a start setting: an arch.json, or a search's output folder holding one (a
    proxyless result, say), becomes its line of cells; any other value is a start setting already."""
    path = Path(value)
    if path.is_dir():
        path = path / "arch.json"
    if not path.is_file():
        return value
    arch = load_arch(path)  # InputError naming the file when it is no arch.json
    return " ".join(arch.ops if isinstance(arch, ArchSpec) else arch.cell_strings())
