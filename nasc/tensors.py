"""TensorSpec: the name, shape, dtype and layout of a model input or output (no torch, no TVM)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


def default_layout(rank: int) -> str:
    """The layout nasc assumes for a tensor of this rank (image models are NCHW)."""
    return {4: "NCHW", 2: "NC", 3: "NCW"}.get(rank, "")


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    layout: str = ""

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("tensor name is empty")
        if any(d < 0 for d in self.shape):
            raise ValueError(f"tensor {self.name!r}: shape {list(self.shape)} has a negative dimension")

    @property
    def num_elements(self) -> int:
        """Product of the shape (1 for a scalar)."""
        count = 1
        for dim in self.shape:
            count *= dim
        return count

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype, "layout": self.layout}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TensorSpec:
        """Inverse of :meth:`to_dict`."""
        return cls(name=data["name"], shape=tuple(int(d) for d in data["shape"]), dtype=data["dtype"],
                   layout=data.get("layout", ""))
