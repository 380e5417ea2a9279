"""The latency term: expected latency from the predictor, both loss forms, the RL reward, and that a
tight budget moves the architecture toward cheaper ops (fails if the latency term were ignored)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from search_fakes import MacsPredictor

from nasc.pipeline.config import Config, parse_config
from nasc.search.objective import LatencyCosts, block_sum_ms, expected_latency_ms, latency_loss, rl_reward
from nasc.search.path_level.cell import PathArch
from nasc.search.runtime import run_search, search_space
from nasc.search.settings import ProxylessSettings
from nasc.search.space import ArchSpec

TINY_TOML = """
[search]
final_epochs = 0
batch_size = 64
[search.proxyless]
warmup_epochs = 0
epochs = 3
arch_lr = 0.05
[search.space]
resolution = 8
in_channels = 1
stem_channels = 8
stem_stride = 1
ops = ["k3_e3", "k7_e6", "zero"]
stages = [{channels = 8, depth = 2, stride = 1}, {channels = 16, depth = 2, stride = 2}]
"""


def tiny_config() -> Config:
    return parse_config(TINY_TOML, "tiny.toml")


def test_expected_latency_is_the_probability_weighted_sum_and_differentiable() -> None:
    config = tiny_config()
    space = search_space(config.search, config.data, num_classes=10)
    predictor = MacsPredictor()
    costs = LatencyCosts.from_predictor(space, predictor)
    assert costs.fixed_ms == pytest.approx(
        predictor.block_ms(space.stem_signature()) + predictor.block_ms(space.head_signature()))
    alphas = [torch.randn(len(layer.ops), requires_grad=True) for layer in space.layers()]
    probs = [torch.softmax(a, 0) for a in alphas]
    value = expected_latency_ms(probs, costs.tensors(), costs.fixed_ms)
    manual = costs.fixed_ms + sum(
        float(p[j].detach()) * costs.layer_ms[i][j] for i, p in enumerate(probs) for j in range(len(p)))
    assert float(value) == pytest.approx(manual, rel=1e-5)
    value.backward()
    for alpha, layer_costs in zip(alphas, costs.layer_ms, strict=True):
        # raising the alpha of the most expensive op raises E[LAT]; of the cheapest, lowers it
        assert alpha.grad[layer_costs.index(max(layer_costs))] > 0
        assert alpha.grad[layer_costs.index(min(layer_costs))] < 0


@pytest.mark.parametrize("form", ["mul", "add"])
@pytest.mark.parametrize("budget_ms", [0.05, 3.0])  # sub-millisecond budgets must not flip the sign
def test_loss_grows_with_latency_and_with_cross_entropy(form: str, budget_ms: float) -> None:
    settings = ProxylessSettings(latency_loss=form)  # type: ignore[arg-type]
    lat = torch.tensor(budget_ms * 0.8, requires_grad=True)
    ce = torch.tensor(1.5, requires_grad=True)
    loss = latency_loss(ce, lat, budget_ms, settings)
    loss.backward()
    assert lat.grad > 0 and ce.grad > 0
    if form == "mul":
        assert float(loss) == pytest.approx(1.5 * (math.log(budget_ms * 800) / math.log(budget_ms * 1000)) ** 0.6)
    assert float(latency_loss(ce, lat, None, ProxylessSettings())) == 1.5  # no budget: CE alone


def test_hinge_pulls_only_above_the_budget() -> None:
    settings = ProxylessSettings(latency_loss="hinge", latency_lambda=2.0)
    ce = torch.tensor(1.5)
    under, over = torch.tensor(0.8, requires_grad=True), torch.tensor(1.25, requires_grad=True)
    assert float(latency_loss(ce, under, 1.0, settings)) == 1.5
    latency_loss(ce, under, 1.0, settings).backward()
    assert float(under.grad) == 0.0
    loss = latency_loss(ce, over, 1.0, settings)
    loss.backward()
    assert float(loss) == pytest.approx(1.5 + 2.0 * 0.25) and float(over.grad) == pytest.approx(2.0)
    assert rl_reward(0.9, 0.5, 1.0, settings) == rl_reward(0.9, 1.0, 1.0, settings) == 0.9
    assert rl_reward(0.9, 1.5, 1.0, settings) == pytest.approx(0.9 - 2.0 * 0.5)


def test_rl_reward_prefers_faster_networks_at_equal_accuracy() -> None:
    for form in ("mul", "add"):
        settings = ProxylessSettings(latency_loss=form)  # type: ignore[arg-type]
        reward = [rl_reward(0.9, latency, 1.0, settings) for latency in (0.5, 1.0, 2.0)]
        assert reward[0] > reward[1] > reward[2]
        assert rl_reward(0.95, 1.0, 1.0, settings) > rl_reward(0.9, 1.0, 1.0, settings)


def _expected_history(tmp_path: Path, name: str, latency_ms: float | None = None,
                      **proxyless: object) -> list[float]:
    config = tiny_config().with_section("search", latency_ms=latency_ms)
    config = config.with_section("search.proxyless", **proxyless)
    run_search(config.search, config.data, MacsPredictor(), tmp_path / name)
    history = json.loads((tmp_path / name / "search.json").read_text())["history"]
    return [h["expected_ms"] for h in history]


@pytest.mark.parametrize(("algo", "form", "weight"), [("grad", "mul", 2.0), ("rl", "add", 5.0)])
def test_tight_budget_moves_the_architecture_toward_cheaper_ops(
    tmp_path: Path, algo: str, form: str, weight: float
) -> None:
    space = search_space(tiny_config().search, tiny_config().data, num_classes=10)
    costs = LatencyCosts.from_predictor(space, MacsPredictor())
    uniform = float(expected_latency_ms(
        [torch.full((len(c),), 1 / len(c)) for c in costs.layer_ms], costs.tensors(), costs.fixed_ms))
    tight = 0.5 * costs.arch_ms(space, [layer.ops[0] for layer in space.layers()])
    free = _expected_history(tmp_path, "free", arch_algo=algo)
    budget = _expected_history(tmp_path, "tight", arch_algo=algo, latency_loss=form, latency_ms=tight,
                               beta=weight, latency_lambda=weight)
    # a tenth of the way from the uniform mix toward the cheapest network, and below the search without budget
    assert budget[-1] < uniform - 0.1 * (uniform - costs.fixed_ms)
    assert budget[-1] < free[-1]


def test_block_sum_is_the_cost_tables_sum_for_either_kind_of_network() -> None:
    config = tiny_config()
    space = search_space(config.search, config.data, num_classes=10)
    predictor = MacsPredictor()
    costs = LatencyCosts.from_predictor(space, predictor)
    for ops in (("k3_e3", "zero", "k7_e6", "zero"), ("k7_e6", "k3_e3", "k3_e3", "k7_e6")):
        arch = ArchSpec(space, ops)
        assert block_sum_ms(arch, predictor) == costs.arch_ms(space, ops)  # the very same float as before
        assert block_sum_ms(PathArch.from_arch(arch), predictor) == costs.arch_ms(space, ops)
    grown = PathArch.from_strings(space, ["add(k3_e3,k3_e3)", "zero", "k7_e6", "zero"])
    assert block_sum_ms(grown, predictor) > costs.arch_ms(space, ("k3_e3", "zero", "k7_e6", "zero"))
