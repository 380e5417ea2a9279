"""Moves and the meta-controller: every legal move applies and keeps the function (random chains);
the Tree-LSTM reads the whole tree both ways; REINFORCE moves the controller toward a rewarded move
and the latency penalty away from an expensive one (each with a control run that must not move);
the random policy draws legal moves uniformly; runs reproduce from their seeds."""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable

import pytest
import torch
from path_level_nets import SPACE, START, trained

from nasc.search.path_level import transforms as T
from nasc.search.path_level.cell import Edge, PathArch, Tree, parse_cell
from nasc.search.path_level.controller import ControllerSettings, TreeController
from nasc.search.path_level.modules import build_path
from nasc.search.path_level.moves import (
    LAYER_OPS,
    Move,
    apply_move,
    legal_moves,
    result_arch,
    widen_widths,
)
from nasc.search.path_level.policy import Policy, RandomPolicy, Step
from nasc.search.path_level.rewards import penalised_reward, stretched
from nasc.search.path_level.tree_lstm import TreeEncoder
from nasc.search.settings import SpaceSettings
from nasc.search.space import Network, SearchSpace

TOLERANCE = 1e-5
BATCH = 10  # networks per controller update, as in the official code


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def inputs(seed: int, batch: int = 4) -> list[torch.Tensor]:
    return [torch.randn(batch, *SPACE.input_shape()[1:], generator=torch.Generator().manual_seed(seed))]


CALIBRATION = inputs(100)
START_ARCH = PathArch.from_strings(SPACE, START)


# --- moves ------------------------------------------------------------------------------------
def check_moves(arch: PathArch, net: Network, moves: list[Move], seed: int) -> dict[Move, T.Transformed]:
    """Apply each move: no error, the arch ``result_arch`` predicted, the function kept."""
    results = {}
    for move in moves:
        result = apply_move(arch, net, move, CALIBRATION, seed=seed)
        assert result.arch == result_arch(arch, move), str(move)
        assert T.max_output_change(net, result.network, inputs(seed)) <= TOLERANCE, (str(arch), str(move))
        results[move] = result
    return results


def test_every_legal_move_of_the_start_network_applies_and_keeps_the_function() -> None:
    moves = legal_moves(START_ARCH)
    assert len(set(moves)) == len(moves)
    check_moves(START_ARCH, trained(START_ARCH), moves, seed=5)
    assert {move.kind for move in moves} == {"widen", "deepen_layer", "deepen_edge", "branch", "insert_node",
                                             "replace_identity"}


@pytest.mark.parametrize("seed", [0, 1])
def test_legal_moves_apply_and_keep_the_function_along_random_chains(seed: int) -> None:
    """Every legal move of the networks one and two random moves away from the start, except that
    moves differing only in their new op (all checked above; the op does not change what is legal)
    are represented by one drawn op per site."""
    rng = random.Random(seed)
    original = trained(START_ARCH, seed)
    first = apply_move(START_ARCH, original, rng.choice(legal_moves(START_ARCH)), CALIBRATION)
    arch, net = first.arch, first.network
    for _ in range(2):
        moves = legal_moves(arch)
        assert len(set(moves)) == len(moves)
        groups: dict[object, list[Move]] = {}
        for move in moves:
            groups.setdefault((move.kind, move.layer, move.edge) if move.op is not None else move, []).append(move)
        results = check_moves(arch, net, [rng.choice(group) for group in groups.values()], seed)
        chosen = rng.choice(sorted(results, key=str))  # the chain goes on from one of them
        arch, net = results[chosen].arch, results[chosen].network
        assert T.max_output_change(original, net, inputs(seed)) <= TOLERANCE


@pytest.mark.parametrize(
    ("cells", "refused", "transform"),
    [
        (["k3_e3", "add(identity>conv1>conv1,sep3)", "conv1", "conv1"],  # depth 4: deepening edge 2 makes 5
         Move("deepen_edge", 1, 2, op="conv1"), lambda a, n: T.deepen_edge(a, n, 1, 2, "conv1", CALIBRATION)),
        (["k3_e3", "add(identity>conv1>conv1,sep3)", "conv1", "conv1"],  # a node under depth 4 makes 5
         Move("branch", 1, 2, merge="add", count=2), lambda a, n: T.branch_add(a, n, 1, 2, 2)),
        (["k3_e3", "sep3>conv1", "conv1", "conv1"],  # sep3 feeds conv1: not a leaf
         Move("branch", 1, 0, merge="concat", count=2), lambda a, n: T.branch_concat(a, n, 1, 0, 2)),
        (["k3_e3", "add(max3,conv1)", "conv1", "conv1"],  # parameter-free copies cannot be scaled
         Move("branch", 1, 0, merge="add", count=2), lambda a, n: T.branch_add(a, n, 1, 0, 2)),
        (["k3_e3", "add(max3,conv1)", "conv1", "conv1"],
         Move("insert_node", 1, 0, count=2), lambda a, n: T.insert_node(a, n, 1, 0, 2)),
        (["k3_e1", "sep3", "conv1", "conv1"],
         Move("widen", 0, 0, width=2), lambda a, n: T.widen(a, n, 0, 0, 2)),
    ],
)
def test_moves_the_transforms_refuse_are_not_listed(
    cells: list[str], refused: Move, transform: Callable[[PathArch, Network], T.Transformed]
) -> None:
    arch = PathArch.from_strings(SPACE, cells)
    assert refused not in legal_moves(arch)
    with pytest.raises(ValueError):
        result_arch(arch, refused)
    with pytest.raises(ValueError):
        transform(arch, build_path(arch))


def test_widths_on_offer_stay_within_the_grammar() -> None:
    assert widen_widths(1) == [2]  # 1.5 and 2 both round up to 2: offered once
    assert widen_widths(3) == [5, 6]
    assert widen_widths(6) == [9]
    assert widen_widths(9) == []
    arch = PathArch.from_strings(SPACE, ["k3_e9", "sep3_m5", "conv1", "conv1"])
    assert [m.width for m in legal_moves(arch) if m.kind == "widen"] == [8]  # k3_e9 cannot grow; 5 * 2 > 9


def test_moves_read_well_and_round_trip() -> None:
    assert str(Move("branch", 2, 1, merge="add", count=3)) == "layer 2 edge 1: branch add x3"
    assert str(Move("deepen_layer", 0, op="k3_e3")) == "after layer 0: deepen_layer k3_e3"
    assert str(Move("replace_identity", 3, 2, op="conv1")) == "layer 3 edge 2: replace_identity by conv1"
    for move in legal_moves(START_ARCH):
        assert Move.from_dict(move.to_dict()) == move
    with pytest.raises(ValueError, match=r"a branch move takes \['count', 'edge', 'merge'\]"):
        Move("branch", 0, 0, count=2)
    with pytest.raises(ValueError, match="unknown move kind"):
        Move("prune", 0, 0)  # type: ignore[arg-type]


# --- the Tree-LSTM ----------------------------------------------------------------------------
def encoder() -> TreeEncoder:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        module = TreeEncoder(embed=10, hidden=16)
        module.reset_parameters()
    return module


def halves(module: TreeEncoder, text: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(bottom-up, top-down) hidden states of every edge of a cell."""
    with torch.no_grad():
        edges = module(parse_cell(text)).edges
    return edges[:, :16], edges[:, 16:]


def differs(a: torch.Tensor, b: torch.Tensor) -> list[bool]:
    return [not torch.allclose(x, y, atol=1e-7) for x, y in zip(a, b, strict=True)]


def test_different_cells_encode_differently() -> None:
    module = encoder()
    with torch.no_grad():
        codes = {text: module(parse_cell(text)) for text in
                 ["add(sep3,identity)", "cat(sep3,identity)", "add(sep5,identity)", "sep3>add(sep3,identity)"]}
    summaries = [code.cell for code in codes.values()]
    for i in range(len(summaries)):
        for j in range(i + 1, len(summaries)):
            assert not torch.allclose(summaries[i], summaries[j], atol=1e-6)
    # add is order-free (child-sum), cat is not (N-ary): as the merges themselves
    add_ab, add_ba = (module(parse_cell(t)).cell[:16] for t in ["add(sep3,conv1)", "add(conv1,sep3)"])
    cat_ab, cat_ba = (module(parse_cell(t)).cell[:16] for t in ["cat(sep3,conv1)", "cat(conv1,sep3)"])
    assert torch.allclose(add_ab, add_ba, atol=1e-6)
    assert not torch.allclose(cat_ab, cat_ba, atol=1e-6)


def test_bottom_up_and_top_down_passes_reach_every_edge() -> None:
    module = encoder()
    base = "sep3>add(conv1,cat(max3,avg3))"  # edges: 0 sep3, 1 conv1, 2 max3, 3 avg3
    up, down = halves(module, base)
    # the deepest leaf changes the bottom-up state of itself and every edge above it, and only those
    leaf_up, leaf_down = halves(module, "sep3>add(conv1,cat(max3,sep5))")
    assert differs(up, leaf_up) == [True, False, False, True]
    # ... and the top-down state of itself and every edge beside it (its sibling, its node's sibling)
    assert differs(down, leaf_down) == [False, True, True, True]
    # the root op changes the top-down state of every edge, and the bottom-up state of itself only
    root_up, root_down = halves(module, "sep5>add(conv1,cat(max3,avg3))")
    assert differs(down, root_down) == [True, True, True, True]
    assert differs(up, root_up) == [True, False, False, False]
    # the merge type reaches both ways: the edge above bottom-up, the edges below top-down
    merge_up, merge_down = halves(module, "sep3>cat(conv1,cat(max3,avg3))")
    assert differs(up, merge_up) == [True, False, False, False]
    assert differs(down, merge_down) == [False, True, True, True]


# --- the controller ---------------------------------------------------------------------------
def controller(**changes: float) -> TreeController:
    return TreeController(ControllerSettings(**changes))  # type: ignore[arg-type]


def mass(policy: TreeController, wanted: Callable[[Move], bool], arch: PathArch = START_ARCH) -> float:
    return sum(p for move, p in policy.probabilities(arch).items() if wanted(move))


def train(policy: Policy, reward: Callable[[Move], float], updates: int) -> None:
    for _ in range(updates):
        steps = policy.sample(START_ARCH, BATCH)
        policy.update([[step] for step in steps], [reward(step.move) for step in steps])


def test_the_controller_gives_probability_to_legal_moves_only() -> None:
    policy = controller()
    probabilities = policy.probabilities(START_ARCH)
    assert set(probabilities) == set(legal_moves(START_ARCH))
    assert math.isclose(sum(probabilities.values()), 1.0, abs_tol=1e-5)
    assert min(probabilities.values()) > 0
    steps = policy.sample(START_ARCH, 20)
    legal = set(legal_moves(START_ARCH))
    for step in steps:
        assert step.move in legal and step.arch == START_ARCH
        assert math.isclose(step.log_prob, policy.log_prob(START_ARCH, step.move).item(), abs_tol=1e-5)
        assert step.entropy > 0
    with pytest.raises(ValueError, match="not a legal"):
        policy.log_prob(START_ARCH, Move("branch", 1, 1, merge="add", count=2))  # identity: parameter-free


def is_add_branch(move: Move) -> bool:
    return move.kind == "branch" and move.merge == "add"


def test_policy_gradient_moves_toward_the_rewarded_transformation() -> None:
    def reward(move: Move) -> float:
        return 1.0 if is_add_branch(move) else 0.0

    learner, control = controller(), controller(lr=0.0)
    start = mass(learner, is_add_branch)
    assert math.isclose(start, mass(control, is_add_branch))  # same seed, same start
    train(learner, reward, updates=15)
    train(control, reward, updates=15)
    assert mass(learner, is_add_branch) > start + 0.5, (start, mass(learner, is_add_branch))
    assert abs(mass(control, is_add_branch) - start) < 1e-6  # without the update nothing moves


def add_of_three(tree: Tree) -> int:
    """Add nodes of three branches in a cell: the synthetic latency's expensive structure."""
    if isinstance(tree, Edge):
        return add_of_three(tree.then) if tree.then is not None else 0
    own = int(tree.merge == "add" and len(tree.branches) == 3)
    return own + sum(add_of_three(branch) for branch in tree.branches)


def synthetic_latency_ms(arch: PathArch) -> float:
    """2 ms, and 3 ms more for every add of three copies (the one expensive transformation)."""
    return 2.0 + 3.0 * sum(add_of_three(cell) for cell in arch.cells)


def is_expensive(move: Move) -> bool:
    return is_add_branch(move) and move.count == 3


@pytest.mark.parametrize("penalised", [True, False])
def test_the_latency_penalty_steers_away_from_the_expensive_transformation(penalised: bool) -> None:
    target_ms = 3.0 if penalised else None
    assert synthetic_latency_ms(result_arch(START_ARCH, Move("branch", 0, 0, merge="add", count=3))) > 3.0
    assert synthetic_latency_ms(result_arch(START_ARCH, Move("branch", 0, 0, merge="add", count=2))) < 3.0

    def reward(move: Move) -> float:
        accuracy = 0.52 if is_expensive(move) else 0.50  # the expensive move is slightly more accurate
        return penalised_reward(accuracy, synthetic_latency_ms(result_arch(START_ARCH, move)), target_ms)

    policy = controller()
    start = mass(policy, is_expensive)
    train(policy, reward, updates=30)
    end = mass(policy, is_expensive)
    if penalised:
        assert end < 0.25 * start, (start, end)
    else:
        assert end > start, (start, end)  # the accuracy alone pulls toward it


def test_controller_runs_reproduce_from_the_seed_and_resume_from_a_checkpoint() -> None:
    def draws(policy: TreeController) -> list[Move]:
        return [step.move for step in policy.sample(START_ARCH, 20)]

    first, second, other = controller(seed=3), controller(seed=3), controller(seed=4)
    assert draws(first) == draws(second)
    assert draws(first) != draws(other)
    steps = first.sample(START_ARCH, BATCH)
    first.update([[s] for s in steps], [float(i) for i in range(BATCH)])
    saved = first.checkpoint()
    expected = draws(first)
    resumed = controller(seed=99)
    resumed.restore(saved)
    assert draws(resumed) == expected
    assert resumed.baseline == first.baseline


def test_an_episode_of_several_moves_is_learned_as_one() -> None:
    policy = controller()
    arch = START_ARCH
    episode: list[Step] = []
    for _ in range(3):
        (step,) = policy.sample(arch, 1)
        episode.append(step)
        arch = result_arch(arch, step.move)
    before = sum(policy.log_prob(s.arch, s.move).item() for s in episode)
    other = policy.sample(START_ARCH, 1)
    policy.update([episode, other], [1.0, 0.0])
    after = sum(policy.log_prob(s.arch, s.move).item() for s in episode)
    assert after > before
    assert policy.baseline == pytest.approx(0.5)  # the first batch's mean


# --- rewards ----------------------------------------------------------------------------------
def test_penalised_reward() -> None:
    assert penalised_reward(0.5, 10.0, None) == pytest.approx(1.0)  # tan(pi / 4)
    assert penalised_reward(0.5, 2.0, 3.0) == penalised_reward(0.5, 3.0, 3.0) == pytest.approx(1.0)
    assert penalised_reward(0.5, 6.0, 3.0) == pytest.approx(0.5)
    assert penalised_reward(0.5, 6.0, 3.0, weight=2.0) == pytest.approx(0.25)
    assert penalised_reward(0.5, 6.0, 3.0, form="hinge", weight=0.1, stretch=False) == pytest.approx(0.4)
    assert stretched(0.9) - stretched(0.8) > stretched(0.2) - stretched(0.1)  # the top of the scale counts more
    assert math.isfinite(stretched(1.0))
    with pytest.raises(ValueError, match="not a fraction"):
        stretched(97.0)
    with pytest.raises(ValueError, match="must be positive"):
        penalised_reward(0.5, 0.0, 3.0)


# --- the random policy ------------------------------------------------------------------------
def test_the_random_policy_draws_legal_moves_uniformly() -> None:
    policy: Policy = RandomPolicy(seed=0)
    legal = legal_moves(START_ARCH)
    draws_per_move = 40
    steps = policy.sample(START_ARCH, draws_per_move * len(legal))
    counts = Counter(step.move for step in steps)
    assert set(counts) == set(legal)
    chi2 = sum((counts[m] - draws_per_move) ** 2 / draws_per_move for m in legal)
    assert chi2 < len(legal) + 5 * math.sqrt(2 * len(legal)), chi2  # df = moves - 1; about 5 sigma
    assert all(step.log_prob == pytest.approx(-math.log(len(legal))) for step in steps)
    policy.update([[s] for s in steps[:3]], [1.0, 0.0, 0.0])  # learns nothing, raises nothing
    assert [s.move for s in RandomPolicy(seed=0).sample(START_ARCH, 5)] == [s.move for s in steps[:5]]
    with pytest.raises(ValueError, match="3 episodes but 2 rewards"):
        policy.update([[s] for s in steps[:3]], [1.0, 0.0])


def test_deepen_layer_moves_offer_the_space_ops_after_every_layer() -> None:
    offered = [m for m in legal_moves(START_ARCH) if m.kind == "deepen_layer"]
    assert offered == [Move("deepen_layer", layer, op=op) for layer in range(4) for op in LAYER_OPS]
    deeper = result_arch(START_ARCH, Move("deepen_layer", 2, op="k5_e3"))
    assert deeper.cell_strings() == [*START[:3], "k5_e3", START[3]]



def test_a_new_layer_takes_only_the_ops_of_its_space() -> None:
    small = SearchSpace(SpaceSettings(resolution=8, stem_channels=8, stem_stride=1, head_expand=2,
                                      ops=("k3_e3", "k5_e3", "zero"), stages=SPACE.settings.stages), num_classes=4)
    arch = PathArch.from_strings(small, ["k3_e3"] * 4)
    offered = {m.op for m in legal_moves(arch) if m.kind == "deepen_layer"}
    assert offered == {"k3_e3", "k5_e3"}  # the table holds these blocks at every new layer's shapes
    with pytest.raises(ValueError, match="space's ops"):
        result_arch(arch, Move("deepen_layer", 0, op="k7_e6"))
