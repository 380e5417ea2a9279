"""Every function-preserving transformation keeps the eval-mode output (1e-5) of a network with
non-trivial BatchNorm statistics, alone and in a random chain; the input network is left alone;
the result exports to ONNX opset 17 and matches onnxruntime; noise (after the check) does change it."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from path_level_nets import SPACE, START, trained

from nasc.search.path_level import transforms as T
from nasc.search.path_level.cell import PathArch
from nasc.search.path_level.modules import build_path
from nasc.search.space import Network

TOLERANCE = 1e-5


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def inputs(seed: int, batch: int = 8) -> list[torch.Tensor]:
    return [torch.randn(batch, *SPACE.input_shape()[1:], generator=torch.Generator().manual_seed(seed))]


@pytest.fixture(scope="module")
def start() -> tuple[PathArch, Network]:
    arch = PathArch.from_strings(SPACE, START)
    return arch, trained(arch)


CALIBRATION = inputs(100, batch=4)
Case = Callable[[PathArch, Network], T.Transformed]
CASES: dict[str, tuple[Case, str]] = {
    "widen-mbconv": (lambda a, n: T.widen(a, n, 0, 0, 5), "k3_e5"),
    "widen-sep": (lambda a, n: T.widen(a, n, 1, 0, 3), "add(sep3_m3,identity)"),
    "deepen-layer": (lambda a, n: T.deepen_layer(a, n, 0, "sep3", CALIBRATION), "sep3"),
    "deepen-edge-sep": (lambda a, n: T.deepen_edge(a, n, 2, 0, "sep3_m2", CALIBRATION), "cat(sep5>sep3_m2,conv1)"),
    "deepen-edge-conv1": (lambda a, n: T.deepen_edge(a, n, 0, 0, "conv1", CALIBRATION), "k3_e3>conv1"),
    "branch-add-2": (lambda a, n: T.branch_add(a, n, 2, 1, 2), "cat(sep5,add(conv1,conv1))"),
    "branch-add-3": (lambda a, n: T.branch_add(a, n, 0, 0, 3), "add(k3_e3,k3_e3,k3_e3)"),
    "branch-concat": (lambda a, n: T.branch_concat(a, n, 1, 0, 2), "add(cat(sep3,sep3),identity)"),
    "branch-concat-mbconv-3": (lambda a, n: T.branch_concat(a, n, 0, 0, 3), "cat(k3_e3,k3_e3,k3_e3)"),
    "branch-concat-split-pool": (lambda a, n: T.branch_concat(a, n, 3, 3, 2),
                                 "add(max3>conv1,cat_split(identity,cat_split(avg3,avg3)))"),
    "insert-node": (lambda a, n: T.insert_node(a, n, 1, 1, 3), "add(sep3,cat_split(identity,identity,identity))"),
    "replace-identity-conv1": (lambda a, n: T.replace_identity(a, n, 3, 2, "conv1", CALIBRATION),
                               "add(max3>conv1,cat_split(conv1,avg3))"),
    "replace-identity-sep": (lambda a, n: T.replace_identity(a, n, 1, 1, "sep5_m2", CALIBRATION),
                             "add(sep3,sep5_m2)"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_transformation_keeps_the_function(name: str, start: tuple[PathArch, Network]) -> None:
    arch, net = start
    before = {key: value.clone() for key, value in net.state_dict().items()}
    transform, expected_cell = CASES[name]
    result = transform(arch, net)
    assert expected_cell in result.arch.cell_strings()
    assert result.arch != arch
    assert T.max_output_change(net, result.network, inputs(1)) <= TOLERANCE
    assert T.max_output_change(net, result.network, [10 * x for x in inputs(2)]) <= 10 * TOLERANCE
    for key, value in net.state_dict().items():  # the input network is untouched
        assert torch.equal(value, before[key]), key
    assert not net.training and not result.network.training
    # saved as arch.json + state dict and built again, it is the same network
    again = build_path(PathArch.from_dict(json.loads(json.dumps(result.arch.to_dict()))))
    again.load_state_dict(result.network.state_dict(), strict=True)
    assert T.max_output_change(result.network, again, inputs(3)) == 0.0


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_transformed_network_exports_and_matches_onnxruntime(
    name: str, start: tuple[PathArch, Network], tmp_path: Path
) -> None:
    arch, net = start
    network = CASES[name][0](arch, net).network.eval()
    x = inputs(4, batch=2)[0]
    with torch.no_grad():
        expected = network(x).numpy()
    path = tmp_path / f"{name}.onnx"
    torch.onnx.export(network, (x,), str(path), opset_version=17, input_names=["x"], output_names=["y"],
                      dynamo=False)
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})[0]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)


def moves(arch: PathArch, rng: random.Random) -> list[tuple[str, Callable[[PathArch, Network], T.Transformed]]]:
    """Every transformation that may apply somewhere in `arch` (limits such as depth are left to it to refuse)."""
    found: list[tuple[str, Callable[[PathArch, Network], T.Transformed]]] = []
    for layer in range(len(arch.cells)):
        for site in arch.sites(layer):
            op, leaf, e, lay = site.op, site.edge.then is None, site.index, layer
            if op.kind in ("sep", "mbconv") and op.width < 9 and not (op.kind == "mbconv" and op.width == 1):
                found.append(("widen", lambda a, n, lay=lay, e=e, w=op.width + 1: T.widen(a, n, lay, e, w, seed=e)))
            if leaf and op.parametric:
                copies = rng.choice((2, 3))
                found.append(("branch_add", lambda a, n, lay=lay, e=e, c=copies: T.branch_add(a, n, lay, e, c)))
            if leaf:
                found.append(("branch_concat", lambda a, n, lay=lay, e=e: T.branch_concat(a, n, lay, e, 2)))
            if op.kind == "identity":
                new = rng.choice(("conv1", "sep3_m2", "sep7_m4"))
                found.append(("replace_identity",
                              lambda a, n, lay=lay, e=e, new=new: T.replace_identity(a, n, lay, e, new, CALIBRATION)))
                if leaf:
                    found.append(("insert_node", lambda a, n, lay=lay, e=e: T.insert_node(a, n, lay, e, 2)))
            found.append(("deepen_edge", lambda a, n, lay=lay, e=e: T.deepen_edge(a, n, lay, e, "conv1", CALIBRATION)))
        found.append(("deepen_layer", lambda a, n, lay=layer: T.deepen_layer(a, n, lay, "k3_e3", CALIBRATION)))
    return found


@pytest.mark.parametrize("seed", [0, 1])
def test_a_random_chain_of_transformations_keeps_the_function(seed: int, start: tuple[PathArch, Network]) -> None:
    rng = random.Random(seed)
    arch, net = start
    original = net
    applied: list[str] = []
    while len(applied) < 6:
        name, move = rng.choice(moves(arch, rng))
        try:
            result = move(arch, net)
        except ValueError as err:
            assert "exceeds" in str(err) or "cannot split" in str(err), err  # only the tree's limits may refuse
            continue
        arch, net = result.arch, result.network
        applied.append(name)
        assert T.max_output_change(original, net, inputs(5)) <= TOLERANCE, (applied, str(arch))
    assert len(set(applied)) >= 3, applied


def test_symmetry_breaking_noise_changes_the_function_so_it_comes_after_the_check(
    start: tuple[PathArch, Network],
) -> None:
    arch, net = start
    result = T.branch_add(arch, net, 0, 0, 2)
    assert T.max_output_change(net, result.network, inputs(6)) <= TOLERANCE
    noisy = T.perturb(result.network, result.touched, scale=0.05, seed=1)
    assert T.max_output_change(net, noisy, inputs(6)) > 100 * TOLERANCE  # the check would catch a broken transform
    copies = [noisy.get_submodule(name).expand[0].weight for name in result.touched]
    assert not torch.equal(copies[0], copies[1])
    assert T.max_output_change(net, result.network, inputs(6)) <= TOLERANCE  # perturb copies, never edits


def test_unscaled_copies_would_change_the_function(start: tuple[PathArch, Network]) -> None:
    arch, net = start
    result = T.branch_add(arch, net, 2, 1, 2)
    broken = build_path(result.arch)
    state = result.network.state_dict()
    for key in state:
        if key.startswith(tuple(f"{name}.1." for name in result.touched)) and key.endswith(("weight", "bias")):
            state[key] = state[key] * 2  # undo the 1/2 on each copy's last BatchNorm
    broken.load_state_dict(state)
    assert T.max_output_change(net, broken, inputs(7)) > 100 * TOLERANCE


def test_deepen_layer_adds_a_residual_layer_to_the_stage(start: tuple[PathArch, Network]) -> None:
    arch, net = start
    result = T.deepen_layer(arch, net, 3, "k5_e3", CALIBRATION)
    layers = result.arch.space.layers()
    assert [stage.depth for stage in result.arch.space.settings.stages] == [2, 3]
    assert (layers[4].in_channels, layers[4].out_channels, layers[4].stride, layers[4].residual) == (16, 16, 1, True)
    assert result.arch.cell_strings()[4] == "k5_e3" and result.touched == ("layers.4.op",)
    new_bn = result.network.get_submodule("layers.4.op.depthwise.1")
    assert float(new_bn.running_var.min()) > 0 and not torch.allclose(new_bn.running_var, torch.ones(48))


@pytest.mark.parametrize(
    ("transform", "message"),
    [
        (lambda a, n: T.branch_add(a, n, 1, 1, 2), "copies of a parameter-free op cannot be scaled"),
        (lambda a, n: T.widen(a, n, 2, 1, 2), "only sep and MBConv edges have hidden units"),
        (lambda a, n: T.widen(a, n, 0, 0, 3), "width 3 does not exceed the current 3"),
        (lambda a, n: T.replace_identity(a, n, 1, 0, "conv1", CALIBRATION), "works on identity edges"),
        (lambda a, n: T.replace_identity(a, n, 1, 1, "sep3", CALIBRATION), "cannot start as an exact identity"),
        (lambda a, n: T.deepen_edge(a, n, 1, 0, "k3_e6", CALIBRATION), "cannot start as an exact identity"),
        (lambda a, n: T.branch_concat(a, n, 3, 0, 2), r"edge 0 \(max3\): it feeds 'conv1'"),
        (lambda a, n: T.branch_add(a, n, 0, 0, 5), "a node has 2 to 4 branches"),
        (lambda a, n: T.insert_node(a, n, 0, 0), "works on identity edges"),
        (lambda a, n: T.deepen_layer(a, n, 1, "max3", CALIBRATION), "needs an op with weights"),
        (lambda a, n: T.widen(a, n, 0, 1, 4), "layer 0 has no edge 1"),
        (lambda a, n: T.deepen_edge(a, n, 1, 0, "conv1", []), "at least one batch"),
    ],
)
def test_transformations_refuse_what_they_cannot_do(
    transform: Case, message: str, start: tuple[PathArch, Network]
) -> None:
    arch, net = start
    with pytest.raises(ValueError, match=message):
        transform(arch, net)


def test_depth_limit_is_refused_with_the_edge_named(start: tuple[PathArch, Network]) -> None:
    arch, net = start
    first = T.deepen_edge(arch, net, 3, 1, "conv1", CALIBRATION)  # add(max3>conv1>conv1,...): depth 4
    with pytest.raises(ValueError, match=r"layer 3 edge 2 \(conv1\): .*depth 5 exceeds 4"):
        T.deepen_edge(first.arch, first.network, 3, 2, "conv1", CALIBRATION)
