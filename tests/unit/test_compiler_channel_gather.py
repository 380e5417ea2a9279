"""Channel maps of the blocked layout's gathers: concat, shuffle and slice compose into one read."""

from __future__ import annotations

import numpy as np

from nasc.compiler.channel_gather import MAX_SOURCES, ChannelMap, shuffle_order, slice_order


class _Value:
    """Stands for a Relax value: compared by identity, as `same_as` does."""

    def same_as(self, other: object) -> bool:
        return self is other


def test_shuffle_order_interleaves_the_groups() -> None:
    assert shuffle_order(6, (2, 3), (1, 0)).tolist() == [0, 3, 1, 4, 2, 5]
    assert shuffle_order(6, (3, 2), (1, 0)).tolist() == [0, 2, 4, 1, 3, 5]
    assert shuffle_order(6, (2, 3), (0, 1)).tolist() == list(range(6))  # no transpose: no shuffle


def test_slice_order_follows_python_slices() -> None:
    assert slice_order(10, 5, 10, 1) == [5, 6, 7, 8, 9]
    assert slice_order(10, 0, 2**63 - 1, 3) == [0, 3, 6, 9]  # an ONNX "to the end"
    assert slice_order(10, -3, 10, 1) == [7, 8, 9]


def test_concat_shuffle_and_split_compose_into_reads_of_the_concats_inputs() -> None:
    a, b = _Value(), _Value()
    joined = ChannelMap.concat([ChannelMap.identity(a, 8, 5), ChannelMap.identity(b, 8, 5)])
    shuffled = joined.select(shuffle_order(10, (2, 5), (1, 0)))
    first, second = shuffled.select(slice_order(10, 0, 5, 1)), shuffled.select(slice_order(10, 5, 10, 1))
    assert first.channels == ((0, 0), (1, 0), (0, 1), (1, 1), (0, 2))
    assert second.channels == ((1, 2), (0, 3), (1, 3), (0, 4), (1, 4))
    assert [s[0] for s in second.sources] == [a, b]


def test_tables_give_source_chunk_and_lane_and_mark_padding() -> None:
    a, b = _Value(), _Value()
    joined = ChannelMap.concat([ChannelMap.identity(a, 4, 6), ChannelMap.identity(b, 8, 3)])
    table = joined.tables(12)
    assert table.shape == (3, 12) and table.dtype == np.int32
    assert table[:, 5].tolist() == [0, 1, 1]  # a's channel 5: chunk 1, lane 1 of blocks of 4
    assert table[:, 8].tolist() == [1, 0, 2]  # b's channel 2
    assert (table[0, 9:] == -1).all()  # padding lanes read nothing


def test_a_concat_over_too_many_sources_is_refused_unless_unlimited() -> None:
    parts = [ChannelMap.identity(_Value(), 8, 4) for _ in range(MAX_SOURCES + 1)]
    assert ChannelMap.concat(parts) is None
    assert len(ChannelMap.concat(parts, limit=None).sources) == MAX_SOURCES + 1
    same = _Value()
    twice = ChannelMap.concat([ChannelMap.identity(same, 8, 4), ChannelMap.identity(same, 8, 4)])
    assert len(twice.sources) == 1 and len(twice.channels) == 8
