"""Channel concatenation, channel shuffle and channel slicing on channel-blocked tensors, as one copy.

A network's data-movement operators over channels (ShuffleNet's concat -> reshape-transpose-reshape ->
split, Inception's concatenated branches of widths that are not whole blocks) all give each output
channel one channel of some input. In the blocked layout (blocked_layout.py) such a channel sits at
(chunk, lane) of a blocked tensor, so each of these operators is a gather from blocked tensors into
a blocked tensor: no conversion to NCHW and back, which is what TVM's lowering otherwise needs
(its reshape and transpose only know the plain layout).

A chain of them composes: the gather for a split after a shuffle after a concat reads the concat's
inputs directly, and the operators in between, which nothing else reads, are removed as dead code.
A gather reads at most MAX_SOURCES tensors (each output lane selects among them); past that the
inputs are read as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

MAX_SOURCES = 2


@dataclass(frozen=True)
class ChannelMap:
    """Where each channel of a tensor comes from: `channels[i]` is (source index, channel of that
    source) for channel i; `sources` are blocked tensors (Relax values) and their blocks."""

    sources: tuple[tuple[Any, int], ...]
    channels: tuple[tuple[int, int], ...]

    @classmethod
    def identity(cls, value: Any, block: int, channels: int) -> ChannelMap:
        """The map of a blocked tensor itself."""
        return cls(((value, block),), tuple((0, c) for c in range(channels)))

    def select(self, order: list[int] | np.ndarray) -> ChannelMap:
        """The map of the tensor whose channel i is this one's channel order[i] (a slice or a permutation)."""
        return ChannelMap(self.sources, tuple(self.channels[int(i)] for i in order))

    @staticmethod
    def concat(parts: list[ChannelMap], limit: int | None = MAX_SOURCES) -> ChannelMap | None:
        """The map of the channel concatenation of `parts`; None if it would read more than `limit` tensors."""
        sources: list[tuple[Any, int]] = []
        channels: list[tuple[int, int]] = []
        for part in parts:
            index = []
            for source in part.sources:
                known = next((i for i, s in enumerate(sources) if s[0].same_as(source[0])), None)
                if known is None:
                    sources.append(source)
                    known = len(sources) - 1
                index.append(known)
            channels.extend((index[k], c) for k, c in part.channels)
        if limit is not None and len(sources) > limit:
            return None
        return ChannelMap(tuple(sources), tuple(channels))

    def tables(self, padded: int) -> np.ndarray:
        """int32 [3, padded]: per output channel the source index (-1 for padding lanes), the source's
        chunk and its lane."""
        table = np.zeros((3, padded), dtype="int32")
        table[0, :] = -1
        for i, (k, c) in enumerate(self.channels):
            block = self.sources[k][1]
            table[:, i] = (k, c // block, c % block)
        return table


def shuffle_order(channels: int, inner_shape: tuple[int, ...], axes: tuple[int, ...]) -> np.ndarray:
    """For a reshape of the channel axis into `inner_shape`, a transpose of those axes by `axes`, and a
    reshape back: which input channel lands at each output channel (ShuffleNet's shuffle with g groups
    is inner_shape (g, C/g), axes (1, 0))."""
    return np.arange(channels).reshape(inner_shape).transpose(axes).reshape(channels)


def slice_order(channels: int, begin: int, end: int, stride: int) -> list[int]:
    """The channels a strided slice along the channel axis keeps, as Python's slice takes them."""
    return list(range(channels))[slice(begin, end, stride)]


def gather_channels_nchwc(*args: Any, block: int) -> Any:
    """TE: the blocked tensor [n, tables' width / block, h, w, block] whose lane (chunk, lane) is read
    from the sources (blocked tensors `args[:-1]`, same n, h and w) as the tables (`args[-1]`,
    see :meth:`ChannelMap.tables`) say; padding lanes are zero.

    Every source is read at indices clamped into its shape and the value picked by a select, so no
    read is out of bounds whichever source a lane uses.
    """
    from tvm import te, tirx

    *sources, table = args
    n_batch, _, height, width, _ = (int(d) for d in sources[0].shape)
    chunks = int(table.shape[1]) // block
    dtype = sources[0].dtype

    def gathered(n, chunk, y, x, lane):
        channel = chunk * block + lane
        which, src_chunk, src_lane = table[0, channel], table[1, channel], table[2, channel]
        value = tirx.const(0, dtype)
        for k in reversed(range(len(sources))):
            source = sources[k]
            last_chunk, last_lane = int(source.shape[1]) - 1, int(source.shape[4]) - 1
            read = source[n, te.min(src_chunk, last_chunk), y, x, te.min(src_lane, last_lane)]
            value = tirx.Select(which == k, read, value)
        return value

    return te.compute((n_batch, chunks, height, width, block), gathered, name="gather_channels_nchwc")
