"""Path-level cells as data: string grammar and dict codec round trips, errors naming the position or
key, channel flow and stride placement, PathArch JSON, and from_arch matching search.space.build."""

from __future__ import annotations

import json
import re

import pytest
import torch

from nasc.search.path_level.cell import (
    Edge,
    Node,
    PathArch,
    depth,
    edge_op,
    edges,
    parse_cell,
    replace_edge,
    sites,
    tree_from_dict,
)
from nasc.search.path_level.modules import build_path, edge_modules, make_edge, make_tree
from nasc.search.settings import SpaceSettings, StageSettings
from nasc.search.space import ArchSpec, SearchSpace, build

SPACE = SearchSpace(
    SpaceSettings(resolution=8, stem_channels=8, stem_stride=1, head_expand=2,
                  stages=(StageSettings(8, depth=2, stride=1), StageSettings(16, depth=2, stride=2))),
    num_classes=4,
)  # layers: 8->8 (residual), 8->8 (residual), 8->16 stride 2, 16->16 (residual)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


CELLS = [
    "k3_e6",
    "zero",
    "sep7_m2",
    "add(sep3,sep3)",
    "cat(conv1,add(identity,sep5))",
    "sep3>add(identity,avg3)",
    "cat_split(identity,max3,avg3,identity)",
    "add(k5_e3>conv1,cat(sep3,sep5_m3))",
    "identity>sep3>max3",
    "add(cat_split(identity,sep3>conv1),conv1)",
]


@pytest.mark.parametrize("text", CELLS)
def test_cell_strings_and_dicts_round_trip(text: str) -> None:
    tree = parse_cell(text)
    assert str(tree) == text
    assert tree_from_dict(json.loads(json.dumps(tree.to_dict()))) == tree


def test_the_tree_reads_as_written() -> None:
    tree = parse_cell("cat(conv1,add(identity,sep5))")
    assert tree == Node("concat", (Edge("conv1"), Node("add", (Edge("identity"), Edge("sep5")))))
    assert parse_cell("sep3>add(identity,avg3)") == Edge("sep3", Node("add", (Edge("identity"), Edge("avg3"))))
    assert parse_cell("sep3>conv1>max3") == Edge("sep3", Edge("conv1", Edge("max3")))
    assert parse_cell("cat_split(identity,max3)").alloc == "split"  # type: ignore[union-attr]
    assert [e.op for e in edges(parse_cell("add(k5_e3>conv1,cat(sep3,sep5_m3))"))] == [
        "k5_e3", "conv1", "sep3", "sep5_m3"]
    assert depth(parse_cell("add(sep3,identity>sep3>max3)")) == 4
    assert depth(parse_cell("cat(conv1,add(identity,sep5))")) == 3


@pytest.mark.parametrize(
    ("text", "position", "message"),
    [
        ("add(sep3,,sep3)", 9, "expected an op or a merge"),
        ("add(sep3", 8, "expected ',' or ')', found the end"),
        ("sep4", 0, "unknown op 'sep4'"),
        ("add(sep3,sep9)", 9, "unknown op 'sep9'"),
        ("mul(sep3,sep3)", 0, "unknown merge 'mul'"),
        ("add(sep3)", 0, "2 to 4 branches, got 1"),
        ("add(sep3,sep3)x", 14, "unexpected 'x' after a complete cell"),
        ("add(sep3,sep3)>conv1", 14, "only an edge may be followed by '>'"),
        ("cat(sep3,add(identity,sep3)>max3)", 27, "only an edge may be followed by '>'"),
        ("sep3>conv1>max3>identity>sep5", 0, "depth 5 exceeds 4"),
        ("add(sep3,cat(conv1,add(identity,cat(sep3,sep5))))", 0, "depth 5 exceeds 4"),
        ("sep3_m1", 0, "write op 'sep3_m1' as 'sep3'"),
        ("add(zero,sep3)", 0, "zero is only a whole cell"),
        ("sep3>zero", 0, "zero is only a whole cell"),
        ("add(sep3, sep3)", 9, "expected an op or a merge"),
        ("", 0, "found the end"),
    ],
)
def test_bad_cell_strings_name_the_position(text: str, position: int, message: str) -> None:
    with pytest.raises(ValueError, match=f"position {position}: .*{re.escape(message)}"):
        parse_cell(text)


def test_split_allocation_needs_a_concat_merge_and_too_many_branches_are_refused() -> None:
    with pytest.raises(ValueError, match="split input needs a concat merge"):
        Node("add", (Edge("identity"), Edge("identity")), "split")
    with pytest.raises(ValueError, match="position 0: a node needs 2 to 4 branches, got 5"):
        parse_cell("add(sep3,sep3,sep3,sep3,sep3)")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"merge": "add", "branches": [{"op": "sep3"}, {"op": "sep4"}]}, r"cell\.branches\[1\]: unknown op 'sep4'"),
        ({"op": "sep3", "then": {"op": "conv1", "colour": 1}}, r"cell\.then: unknown keys \['colour'\]"),
        ({"merge": "add", "branches": "sep3"}, "cell: 'branches' must be a list"),
        ({"merge": "sum", "branches": [{"op": "sep3"}, {"op": "sep3"}]}, "cell: unknown merge 'sum'"),
        ({"kind": "sep3"}, "cell: expected a table with 'op' or 'merge'"),
        ("sep3", "cell: expected a table"),
    ],
)
def test_bad_cell_dicts_name_the_key_path(data: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        tree_from_dict(data)


def test_channels_split_evenly_and_the_stride_sits_on_each_paths_first_edge() -> None:
    tree = parse_cell("cat(conv1,add(sep3>identity,cat_split(max3,avg3,max3)))")
    placed = [(s.edge.op, s.in_channels, s.out_channels, s.stride) for s in sites(tree, 6, 12, 2)]
    assert placed == [
        ("conv1", 6, 6, 2),
        ("sep3", 6, 6, 2), ("identity", 6, 6, 1),
        ("max3", 2, 2, 2), ("avg3", 2, 2, 2), ("max3", 2, 2, 2),
    ]
    # 7 -> 11: cat gives 6 + 5 channels; cat_split cuts 7 inputs into 3 + 2 + 2 but 5 outputs into 2 + 2 + 1
    with pytest.raises(ValueError, match=r"edge 3 \(max3\): max3 keeps its channels, got 3->2"):
        sites(tree, 7, 11, 2)
    with pytest.raises(ValueError, match="cannot split 2 channels into 3 branches"):
        sites(parse_cell("cat(conv1,conv1,conv1)"), 4, 2, 1)


def test_modules_follow_the_channel_flow_at_stride_one_and_two() -> None:
    tree = parse_cell("cat(conv1,add(sep3>identity,cat_split(max3,avg3,max3)))")
    for stride, size in ((1, 8), (2, 4)):
        module = make_tree(tree, 6, 12, stride).eval()
        assert module(torch.randn(2, 6, 8, 8)).shape == (2, 12, size, size)
    names = edge_modules(tree)
    assert [n.op for n in names] == ["branches.0", "branches.1.branches.0.op", "branches.1.branches.0.then",
                                     "branches.1.branches.1.branches.0", "branches.1.branches.1.branches.1",
                                     "branches.1.branches.1.branches.2"]


@pytest.mark.parametrize("op", ["identity", "max3", "avg3", "conv1", "sep3", "sep5_m2", "sep7", "k3_e6", "k5_e1"])
@pytest.mark.parametrize("stride", [1, 2])
def test_every_edge_op_builds_and_runs(op: str, stride: int) -> None:
    parsed = edge_op(op)
    if op == "identity" and stride == 2:
        with pytest.raises(ValueError, match="identity needs stride 1"):
            make_edge(parsed, 8, 8, stride)
        return
    cout = 8 if parsed.channelwise else 12
    out = make_edge(parsed, 8, cout, stride).eval()(torch.randn(2, 8, 8, 8))
    assert out.shape == (2, cout, 8 // stride, 8 // stride)


def test_path_arch_round_trips_through_json_under_its_own_format() -> None:
    arch = PathArch.from_strings(SPACE, ["add(sep3,identity)", "zero", "cat(sep5,conv1)", "k3_e6>cat_split(max3,avg3)"])
    data = json.loads(json.dumps(arch.to_dict()))
    assert PathArch.from_dict(data) == arch
    assert data["cell_strings"] == ["add(sep3,identity)", "zero", "cat(sep5,conv1)", "k3_e6>cat_split(max3,avg3)"]
    assert str(arch) == " ".join(data["cell_strings"])
    with pytest.raises(ValueError, match="unknown arch format 'path-level/1'"):
        ArchSpec.from_dict(data, "x/arch.json")
    with pytest.raises(ValueError, match=r"x/arch\.json: unknown path-level arch format 1"):
        PathArch.from_dict(ArchSpec.uniform(SPACE, "k3_e6").to_dict(), "x/arch.json")
    data["cell_strings"][0] = "add(sep3,sep3)"
    with pytest.raises(ValueError, match="disagree"):
        PathArch.from_dict(data)
    data = arch.to_dict()
    data["cells"][2]["branches"][1] = {"op": "conv2"}
    with pytest.raises(ValueError, match=r"x/arch.json: cells\[2\]\.branches\[1\]: unknown op 'conv2'"):
        PathArch.from_dict(data, "x/arch.json")


@pytest.mark.parametrize(
    ("cells", "message"),
    [
        (["k3_e6", "k3_e6", "identity", "k3_e6"], r"layer 2 \(8->16 channels, stride 2\).*identity needs stride 1"),
        (["k3_e6", "k3_e6", "zero", "k3_e6"], r"layer 2 .*zero needs a residual layer"),
        (["k3_e6", "k3_e6", "cat_split(max3,conv1)", "k3_e6"], r"layer 2 .*edge 0 \(max3\): .* got 4->8"),
        (["k3_e6", "k3_e6", "k3_e6"], "4 searchable layers, the arch names 3 cells"),
    ],
)
def test_path_arch_refuses_cells_that_do_not_fit_their_layer(cells: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PathArch.from_strings(SPACE, cells)


def test_cat_whose_branches_cannot_produce_their_channels_is_refused() -> None:
    PathArch.from_strings(SPACE, ["k3_e6", "k3_e6", "cat(sep3,max3)", "k3_e6"])  # sep3 8->8, max3 8->8: fits
    with pytest.raises(ValueError, match=r"layer 2 .*edge 1 \(max3\): max3 keeps its channels, got 8->5"):
        PathArch.from_strings(SPACE, ["k3_e6", "k3_e6", "cat(sep3,max3,conv1)", "k3_e6"])


def test_replace_edge_swaps_one_edge_with_what_follows_it() -> None:
    tree = parse_cell("add(sep3>conv1,cat(identity,max3))")
    assert str(replace_edge(tree, 0, Edge("sep5"))) == "add(sep5,cat(identity,max3))"
    new = replace_edge(tree, 3, parse_cell("cat_split(max3,max3)"))
    assert str(new) == "add(sep3>conv1,cat(identity,cat_split(max3,max3)))"
    with pytest.raises(ValueError, match="edge 4 does not exist"):
        replace_edge(tree, 4, Edge("sep5"))


def test_from_arch_builds_the_same_network_as_build() -> None:
    arch = ArchSpec(SPACE, ("k3_e3", "zero", "k5_e6", "k7_e6"))
    torch.manual_seed(0)
    reference = build(arch).eval()
    path = PathArch.from_arch(arch)
    assert path.cell_strings() == ["k3_e3", "zero", "k5_e6", "k7_e6"]
    net = build_path(path)
    net.load_state_dict(reference.state_dict(), strict=True)
    net.eval()
    x = torch.randn(4, *SPACE.input_shape()[1:])
    with torch.no_grad():
        assert torch.equal(net(x), reference(x))
