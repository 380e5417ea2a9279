"""BlockSignature: one block of a network at one position, fully described (no torch, no TVM).

It is the contract between search/ (which builds blocks and asks for their latency) and
devices/ (which measures blocks and keys its latency table by this signature).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

_KEY = re.compile(
    r"^(?P<op>[a-z_]+)-input:(?P<h>\d+)x(?P<w>\d+)x(?P<cin>\d+)-output:(?P<oh>\d+)x(?P<ow>\d+)x(?P<cout>\d+)"
    r"-expand:(?P<expand>\d+)-kernel:(?P<kernel>\d+)-stride:(?P<stride>\d+)-idskip:(?P<idskip>[01])"
    r"(?:-cell:(?P<cell>\S+))?$"
)


@dataclass(frozen=True)
class BlockSignature:
    """A block's op and every shape that decides its cost.

    ``op`` is a block family: ``mbconv`` (inverted residual), ``stem`` (conv-bn-relu6),
    ``head`` (1x1 conv, global pool, linear to ``out_channels`` classes), ``zero`` (skipped layer),
    ``cell`` (a path-level multi-branch cell, written in ``cell`` in its compact string form; the key
    ends in ``-cell:STRING`` so that the keys of the other families stay as they were).
    Spatial sizes are square (``in_size`` x ``in_size``); batch is 1.
    """

    op: str
    in_channels: int
    out_channels: int
    in_size: int
    kernel: int = 1
    expand: int = 1
    stride: int = 1
    idskip: bool = False
    cell: str = ""

    def __post_init__(self) -> None:
        if (self.op == "cell") != bool(self.cell):
            raise ValueError(f"block {self.op}: a cell block names its cell string, and only a cell block does")
        if any(c.isspace() for c in self.cell):
            raise ValueError(f"block {self.op}: the cell string {self.cell!r} holds white space")
        if self.in_channels < 1 or self.out_channels < 1 or self.in_size < 1:
            raise ValueError(f"block {self.op}: channels and size must be positive")
        if self.stride not in (1, 2):
            raise ValueError(f"block {self.op}: stride must be 1 or 2, got {self.stride}")

    @property
    def out_size(self) -> int:
        """Output height/width (1 for the head, which pools)."""
        if self.op == "head":
            return 1
        return (self.in_size + self.stride - 1) // self.stride

    def input_shape(self, batch: int = 1) -> tuple[int, int, int, int]:
        """NCHW input shape."""
        return (batch, self.in_channels, self.in_size, self.in_size)

    def key(self) -> str:
        """Readable, complete key in once-for-all's style."""
        return (
            f"{self.op}-input:{self.in_size}x{self.in_size}x{self.in_channels}"
            f"-output:{self.out_size}x{self.out_size}x{self.out_channels}"
            f"-expand:{self.expand}-kernel:{self.kernel}-stride:{self.stride}-idskip:{int(self.idskip)}"
            + (f"-cell:{self.cell}" if self.cell else "")
        )

    @classmethod
    def parse(cls, key: str) -> BlockSignature:
        """Inverse of :meth:`key`."""
        match = _KEY.match(key)
        if not match:
            raise ValueError(f"not a block key: {key!r}")
        g = match.groupdict()
        return cls(
            op=g["op"],
            in_channels=int(g["cin"]),
            out_channels=int(g["cout"]),
            in_size=int(g["h"]),
            kernel=int(g["kernel"]),
            expand=int(g["expand"]),
            stride=int(g["stride"]),
            idskip=g["idskip"] == "1",
            cell=g["cell"] or "",
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``cell`` only for a cell block, so other blocks' dicts stay as they were)."""
        data = asdict(self)
        if not self.cell:
            del data["cell"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BlockSignature:
        """Inverse of :meth:`to_dict`."""
        return cls(**data)
