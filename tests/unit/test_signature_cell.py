"""A path-level cell block: its key carries the cell string, parses back, and never collides with the
other families (whose keys and dicts stay as they were before cells existed)."""

from __future__ import annotations

import pytest

from nasc.signature import BlockSignature


def test_cell_key_round_trips_and_names_the_cell() -> None:
    sig = BlockSignature(op="cell", in_channels=16, out_channels=24, in_size=16, stride=2,
                         cell="add(sep3,cat_split(identity,max3))")
    key = sig.key()
    assert key.endswith("-cell:add(sep3,cat_split(identity,max3))")
    assert BlockSignature.parse(key) == sig
    assert BlockSignature.from_dict(sig.to_dict()) == sig


def test_other_blocks_keep_their_keys_and_dicts() -> None:
    sig = BlockSignature(op="mbconv", in_channels=16, out_channels=16, in_size=8, kernel=3, expand=6, idskip=True)
    assert sig.key() == "mbconv-input:8x8x16-output:8x8x16-expand:6-kernel:3-stride:1-idskip:1"
    assert "cell" not in sig.to_dict()
    assert BlockSignature.parse(sig.key()) == sig


def test_two_cells_at_one_position_differ() -> None:
    a = BlockSignature(op="cell", in_channels=8, out_channels=8, in_size=8, idskip=True, cell="add(sep3,sep3)")
    b = BlockSignature(op="cell", in_channels=8, out_channels=8, in_size=8, idskip=True, cell="add(sep3,sep5)")
    assert a.key() != b.key()


@pytest.mark.parametrize(("op", "cell"), [("cell", ""), ("mbconv", "sep3"), ("cell", "add(sep3, sep5)")])
def test_cell_string_only_on_cell_blocks_and_without_spaces(op: str, cell: str) -> None:
    with pytest.raises(ValueError, match="cell"):
        BlockSignature(op=op, in_channels=8, out_channels=8, in_size=8, cell=cell)
