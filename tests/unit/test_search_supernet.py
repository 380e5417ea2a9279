"""Binarized paths: which candidates run per mode, the binary-gate gradient, alpha rescaling, weight inheritance."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from nasc.search.settings import SpaceSettings, StageSettings
from nasc.search.space import ArchSpec, SearchSpace, build
from nasc.search.supernet import Supernet, inherit_weights

TINY = SearchSpace(
    SpaceSettings(resolution=8, in_channels=1, stem_channels=8, stem_stride=1,
                  ops=("k3_e3", "k5_e6", "k7_e3", "zero"),
                  stages=(StageSettings(8, 2, 1), StageSettings(16, 1, 2))),
    num_classes=3,
)


def _count_calls(net: Supernet) -> Counter[tuple[int, int]]:
    calls: Counter[tuple[int, int]] = Counter()
    for li, mixed in enumerate(net.mixed_ops()):
        for ci, op in enumerate(mixed.candidates):
            op.register_forward_hook(lambda *_, key=(li, ci): calls.update([key]))
    return calls


@pytest.fixture(params=[True, False], ids=["superkernel", "separate"])
def net(request: pytest.FixtureRequest) -> Supernet:
    torch.manual_seed(0)
    return Supernet(TINY, share_weights=request.param)


def test_single_mode_runs_exactly_the_sampled_path(net: Supernet) -> None:
    calls = _count_calls(net)
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        calls.clear()
        ops = net.sample_single(gen)
        net(torch.randn(2, 1, 8, 8)).sum().backward()
        chosen = zip(net.mixed_ops(), ops, strict=True)
        assert sorted(calls) == sorted((li, m.names.index(op)) for li, (m, op) in enumerate(chosen))
        assert all(n == 1 for n in calls.values())


def test_two_mode_runs_two_paths_per_layer_and_gates_are_one_hot(net: Supernet) -> None:
    calls = _count_calls(net)
    gen = torch.Generator().manual_seed(1)
    for _ in range(20):
        calls.clear()
        net.sample_two(gen)
        net(torch.randn(2, 1, 8, 8))
        for li, mixed in enumerate(net.mixed_ops()):
            ran = sorted(ci for (layer, ci) in calls if layer == li)
            assert ran == sorted(mixed.active) and len(ran) == 2
            assert mixed.gates is not None and mixed.gates.sum() == 1 and mixed.gates[mixed.active[0]] == 1


def test_all_mode_runs_every_path(net: Supernet) -> None:
    calls = _count_calls(net)
    net.set_all_paths()
    net(torch.randn(2, 1, 8, 8))
    assert len(calls) == sum(len(m.names) for m in net.mixed_ops())


def test_sampling_follows_the_architecture_probabilities(net: Supernet) -> None:
    mixed = net.mixed_ops()[0]
    with torch.no_grad():
        mixed.alpha.copy_(torch.tensor([3.0, 0.0, 0.0, 0.0]))
    gen = torch.Generator().manual_seed(2)
    picks = Counter(mixed.sample_single(gen) for _ in range(2000))
    expected = float(torch.softmax(mixed.alpha.detach(), 0)[0])
    assert abs(picks[0] / 2000 - expected) < 0.04


def test_gate_gradient_maps_to_alpha_like_the_softmax_derivative(net: Supernet) -> None:
    mixed = net.mixed_ops()[1]
    with torch.no_grad():
        mixed.alpha.copy_(torch.tensor([0.5, -0.2, 1.0, 0.1]))
    mixed.sample_two(torch.Generator().manual_seed(3))
    gate_grad = torch.tensor([0.7, -1.3, 0.4, 2.0])
    got = mixed.alpha_grad_from_gates(gate_grad)
    # reference: d/d alpha of sum_j dL/dg_j * softmax(alpha[pair])_j
    alpha = mixed.alpha.detach().clone().requires_grad_(True)
    pair = mixed.active
    (gate_grad[pair] * torch.softmax(alpha[pair], 0)).sum().backward()
    torch.testing.assert_close(got, alpha.grad)
    assert all(got[i] == 0 for i in range(4) if i not in pair)


def test_rescale_keeps_the_unsampled_paths_probabilities(net: Supernet) -> None:
    mixed = net.mixed_ops()[1]
    with torch.no_grad():
        mixed.alpha.copy_(torch.tensor([0.5, -0.2, 1.0, 0.1]))
    mixed.sample_two(torch.Generator().manual_seed(4))
    before = torch.softmax(mixed.alpha.detach(), 0)
    with torch.no_grad():
        mixed.alpha[mixed.active[0]] += 0.8
        mixed.alpha[mixed.active[1]] -= 0.3
    mixed.rescale_alpha()
    after = torch.softmax(mixed.alpha.detach(), 0)
    others = [i for i in range(4) if i not in mixed.active]
    torch.testing.assert_close(after[others], before[others])
    assert after[mixed.active[0]] > before[mixed.active[0]]


def test_derive_takes_the_most_probable_op_and_inherited_net_matches_the_supernet_path(net: Supernet) -> None:
    with torch.no_grad():
        for mixed, best in zip(net.mixed_ops(), [1, 3, 2], strict=True):
            mixed.alpha[best] = 2.0
    arch = net.derive()
    assert arch.ops == ("k5_e6", "zero", "k7_e3")
    gen = torch.Generator().manual_seed(5)
    net.train()
    for _ in range(3):  # give batch-norm buffers non-default values
        net.sample_single(gen)
        net(torch.randn(4, 1, 8, 8))
    final = build(arch)
    inherit_weights(final, net, arch)
    net.choose(arch)
    x = torch.randn(3, 1, 8, 8)
    torch.testing.assert_close(final.eval()(x), net.eval()(x))


def test_weight_and_arch_parameters_partition_the_supernet(net: Supernet) -> None:
    weights = {id(p) for p in net.weight_parameters()}
    arch = {id(p) for p in net.arch_parameters()}
    assert not weights & arch
    assert weights | arch == {id(p) for p in net.parameters()}
    assert len(arch) == len(TINY.layers())
    ArchSpec.uniform(TINY, "k3_e3")  # the tiny space is a valid space


def test_superkernel_candidates_slice_one_weight_and_train_it_together() -> None:
    torch.manual_seed(0)
    net = Supernet(TINY, share_weights=True)
    mixed = net.mixed_ops()[0]
    small, big = mixed.candidates[mixed.names.index("k3_e3")], mixed.candidates[mixed.names.index("k5_e6")]
    _, dw_small, _ = small.weights()
    _, dw_big, _ = big.weights()
    torch.testing.assert_close(dw_small, dw_big[: dw_small.shape[0], :, 1:4, 1:4])  # the centre of the 5x5
    assert dw_small.untyped_storage().data_ptr() == mixed.shared.depthwise.untyped_storage().data_ptr()  # a view
    mixed.choose(mixed.names.index("k3_e3"))
    for other in net.mixed_ops()[1:]:
        other.choose(0)
    net(torch.randn(2, 1, 8, 8)).sum().backward()
    grad = mixed.shared.depthwise.grad
    assert grad is not None and grad[:24, :, 1:4, 1:4].abs().sum() > 0  # k3_e3 trains the shared centre...
    assert grad[24:].abs().sum() == 0 and grad[:, :, 0].abs().sum() == 0  # ...and nothing outside it
