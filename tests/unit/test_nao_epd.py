"""NAO's encoder-predictor-decoder on a synthetic space with a known accuracy and latency: held-out reconstruction,
predictor ranking, that the gradient step raises the predicted objective, that the latency hinge moves proposals to
cheaper ops, valid decoding, new-only proposals, and determinism of training."""

from __future__ import annotations

import dataclasses
import itertools
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest
import scipy.stats
import torch

from nasc.search.nao.epd import (
    EPD,
    EpdFit,
    EpdSettings,
    Vocabulary,
    _ascend,
    _stepped,
    kendall_tau,
    objective,
    propose,
    train_epd,
)

OPS = ("k3_e3", "k3_e6", "k5_e3", "k5_e6", "k7_e3", "k7_e6", "zero")
LENGTH = 8
CHOICES = tuple(OPS if i % 2 else OPS[:-1] for i in range(LENGTH))  # only odd positions may skip the layer
KERNEL_COST = {"3": 1.0, "5": 1.6, "7": 2.4}
EXPAND_COST = {"3": 1.0, "6": 1.8}
RESOLUTION_COST = (2.0, 2.0, 1.5, 1.5, 1.0, 1.0, 0.7, 0.7)  # early layers see larger feature maps
VALUE = {"k3_e3": 0.2, "k3_e6": 0.5, "k5_e3": 0.45, "k5_e6": 0.7, "k7_e3": 0.55, "k7_e6": 0.8, "zero": 0.0}
INTERACTION = np.random.default_rng(7).normal(0.0, 0.08, size=(len(OPS), len(OPS)))  # neighbouring ops
SETTINGS = EpdSettings(epochs=150)
POOL, HELD_OUT = 200, 100


def true_latency(arch: tuple[str, ...]) -> float:
    return sum(0.0 if op == "zero" else RESOLUTION_COST[i] * KERNEL_COST[op[1]] * EXPAND_COST[op[4]]
               for i, op in enumerate(arch))


def true_accuracy(arch: tuple[str, ...]) -> float:
    value = sum(VALUE[op] * (1 + 0.1 * i) for i, op in enumerate(arch))
    value += sum(INTERACTION[OPS.index(a), OPS.index(b)] for a, b in itertools.pairwise(arch))
    return value - sum(0.3 for a, b in itertools.pairwise(arch) if a == b == "zero")


def sample(rng: random.Random, n: int, exclude: set[tuple[str, ...]] | None = None) -> list[tuple[str, ...]]:
    seen = set(exclude or ())
    out: list[tuple[str, ...]] = []
    while len(out) < n:
        arch = tuple(rng.choice(layer) for layer in CHOICES)
        if arch not in seen:
            seen.add(arch)
            out.append(arch)
    return out


@dataclass(frozen=True)
class Trained:
    vocab: Vocabulary
    model: EPD
    fit: EpdFit
    budget: float
    acc_range: tuple[float, float]
    pool: torch.Tensor
    held_out: torch.Tensor
    held_out_archs: list[tuple[str, ...]]


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # other jobs share the machine; small LSTMs gain nothing from more threads
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained() -> Trained:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rng = random.Random(0)
        pool_archs = sample(rng, POOL)
        held_out_archs = sample(rng, HELD_OUT, set(pool_archs))
        budget = float(np.median([true_latency(a) for a in sample(random.Random(5), 2000)]))  # half meet it
        vocab = Vocabulary(CHOICES)
        pool = torch.tensor([vocab.encode(a) for a in pool_archs])
        held_out = torch.tensor([vocab.encode(a) for a in held_out_archs])
        raw = np.array([true_accuracy(a) for a in pool_archs])
        lo, hi = float(raw.min()), float(raw.max())
        accuracy = torch.tensor((raw - lo) / (hi - lo), dtype=torch.float32)
        latency = torch.tensor([true_latency(a) / budget for a in pool_archs], dtype=torch.float32)
        torch.manual_seed(0)
        model = EPD(vocab, SETTINGS)
        fit = train_epd(model, pool, accuracy, latency, SETTINGS, torch.Generator().manual_seed(1))
        return Trained(vocab, model, fit, budget, (lo, hi), pool, held_out, held_out_archs)
    finally:
        torch.set_num_threads(threads)


def test_vocabulary_round_trip_errors_and_mask() -> None:
    vocab = Vocabulary(CHOICES)
    assert vocab.ops == OPS  # first-seen order: position 0 lacks "zero", position 1 brings it in last
    assert (vocab.length, vocab.size) == (LENGTH, len(OPS) + 1)
    for arch in sample(random.Random(3), 50):
        tokens = vocab.encode(arch)
        assert all(1 <= t < vocab.size for t in tokens)
        assert vocab.decode(tokens) == arch
    bad = list(sample(random.Random(4), 1)[0])
    bad[2] = "zero"
    with pytest.raises(ValueError, match=r"position 2.*'zero'"):
        vocab.encode(bad)
    with pytest.raises(ValueError, match="position 0"):
        vocab.encode(["k9_e9", *bad[1:]])
    with pytest.raises(ValueError, match="positions"):
        vocab.encode(bad[:-1])
    with pytest.raises(ValueError, match="position 4"):
        vocab.decode([1, 1, 1, 1, OPS.index("zero") + 1, 1, 1, 1])
    with pytest.raises(ValueError, match="position 0"):
        vocab.decode([0] + [1] * (LENGTH - 1))  # the start token is never an op
    mask = vocab.mask()
    assert mask.shape == (LENGTH, len(OPS) + 1) and mask.dtype == torch.bool
    assert not mask[:, 0].any()
    zero = OPS.index("zero") + 1
    assert mask[1::2, zero].all() and not mask[0::2, zero].any()
    assert mask[:, 1:zero].all()
    mask[0, 0] = True
    assert not vocab.mask()[0, 0]  # a copy: the caller cannot corrupt the vocabulary
    with pytest.raises(ValueError, match="position 1"):
        Vocabulary([("a", "b"), ("a", "a")])


def test_settings_are_validated_by_key() -> None:
    for key, value in [("emb_size", 0), ("hidden_size", -1), ("mlp_layers", -1), ("dropout", 1.0),
                       ("trade_off", 1.5), ("lr", 0.0), ("epochs", 0), ("batch_size", True),
                       ("grad_clip", math.inf)]:
        with pytest.raises(ValueError, match=key):
            EpdSettings(**{key: value})
    assert EpdSettings(mlp_layers=0, trade_off=0.0, dropout=0.0).mlp_layers == 0


def test_decoder_reconstructs_held_out_architectures(trained: Trained) -> None:
    assert trained.fit.token_accuracy > 0.99
    with torch.no_grad():
        outputs, embedding = trained.model.encode(trained.held_out)
        decoded = trained.model.greedy_decode(outputs, embedding)
    share = (decoded == trained.held_out).float().mean().item()
    print(f"held-out reconstruction: {share:.4f} of tokens right ({HELD_OUT} archs unseen in training)")
    assert share >= 0.95


def test_predictor_ranks_held_out_architectures(trained: Trained) -> None:
    with torch.no_grad():
        predicted = trained.model.predict(trained.model.encode(trained.held_out)[1])
    tau_acc = kendall_tau(predicted[:, 0].tolist(), [true_accuracy(a) for a in trained.held_out_archs])
    tau_lat = kendall_tau(predicted[:, 1].tolist(), [true_latency(a) for a in trained.held_out_archs])
    print(f"held-out Kendall tau: accuracy {tau_acc:.3f}, latency {tau_lat:.3f}")
    assert tau_acc >= 0.6
    assert tau_lat >= 0.6


def test_gradient_step_raises_the_predicted_objective(trained: Trained) -> None:
    model, seeds = trained.model, trained.held_out
    with torch.no_grad():
        before = objective(model.predict(model.encode(seeds)[1]), 0.0)
    outputs, grad = _ascend(model, seeds, 0.0)
    gains = {}
    for step in (0.0, 1.0):
        with torch.no_grad():
            gains[step] = objective(model.predict(_stepped(outputs, grad, step)[1]), 0.0) - before
    print(f"mean predicted gain: step 0 {gains[0.0].mean():.2e}, step 1 {gains[1.0].mean():.3f}")
    assert gains[0.0].abs().max() < 1e-5  # no step, no gain: the gain below is the gradient's doing
    assert gains[1.0].mean() > 0.05
    assert (gains[1.0] > 0).float().mean() >= 0.9
    # and the decoded proposals are truly better than their seeds, not only predicted to be
    proposals, _ = propose(model, seeds, {tuple(r) for r in trained.pool.tolist()}, 20, 0.0)
    assert len(proposals) == 20
    truth = [true_accuracy(trained.vocab.decode(p.tokens)) for p in proposals]
    assert np.mean(truth) > np.mean([true_accuracy(a) for a in trained.held_out_archs]) + 0.5


def test_latency_penalty_moves_proposals_to_cheaper_ops(trained: Trained) -> None:
    seen = {tuple(r) for r in trained.pool.tolist()}
    mean_latency = {}
    for weight in (0.0, 5.0):
        proposals, _ = propose(trained.model, trained.held_out, seen, 20, weight)
        assert len(proposals) == 20
        mean_latency[weight] = float(np.mean([true_latency(trained.vocab.decode(p.tokens)) / trained.budget
                                              for p in proposals]))
    print(f"mean true latency / budget of proposals: no penalty {mean_latency[0.0]:.3f}, "
          f"weight 5 {mean_latency[5.0]:.3f}")
    assert mean_latency[5.0] < mean_latency[0.0] - 0.1
    assert mean_latency[5.0] < 1.0  # the hinge pulls the proposals under the budget


def test_objective_is_accuracy_less_the_latency_hinge() -> None:
    prediction = torch.tensor([[0.7, 0.5], [0.7, 1.0], [0.7, 1.5]])
    assert objective(prediction, 0.0).tolist() == pytest.approx([0.7, 0.7, 0.7])
    assert objective(prediction, 2.0).tolist() == pytest.approx([0.7, 0.7, -0.3])


def test_greedy_decode_is_valid_even_untrained() -> None:
    vocab = Vocabulary(CHOICES)
    torch.manual_seed(11)
    model = EPD(vocab, EpdSettings()).eval()
    gen = torch.Generator().manual_seed(12)
    outputs = torch.nn.functional.normalize(torch.randn(64, LENGTH, 96, generator=gen) * 5, dim=-1)
    embedding = torch.nn.functional.normalize(torch.randn(64, 96, generator=gen), dim=-1)
    with torch.no_grad():
        decoded = model.greedy_decode(outputs, embedding)
    assert decoded.shape == (64, LENGTH) and decoded.dtype == torch.long
    assert vocab.mask().gather(1, decoded.T).all()  # each token allowed at its position
    for row in decoded.tolist():
        vocab.decode(row)
    seeds = torch.tensor([vocab.encode(a) for a in sample(random.Random(13), 10)])
    proposals, _ = propose(model, seeds, set(), 5, 0.0)
    assert proposals and len({p.tokens for p in proposals}) == len(proposals)
    for p in proposals:
        vocab.decode(p.tokens)


def test_propose_returns_only_new_distinct_architectures_best_first(trained: Trained) -> None:
    seeds = trained.held_out[:30]
    seen = {tuple(r) for r in trained.pool.tolist()} | {tuple(r) for r in seeds.tolist()}
    proposals, steps = propose(trained.model, seeds, seen, 25, 1.0, first_step=0.05, growth=3.0, max_tries=6)
    keys = [p.tokens for p in proposals]
    assert 0 < len(keys) <= 25
    assert len(set(keys)) == len(keys)
    assert not set(keys) & seen
    assert steps == pytest.approx([0.05 * 3.0**k for k in range(len(steps))])
    assert all(p.step_size in steps and 0 <= p.source < len(seeds) for p in proposals)
    scores = objective(torch.tensor([p.predicted for p in proposals]), 1.0).tolist()
    assert scores == sorted(scores, reverse=True)
    assert not trained.model.training
    # a seen set holding everything a step decodes forces more tries; an exhausted search returns what it has
    few, tried = propose(trained.model, seeds[:1], seen, 1000, 0.0, max_tries=3)
    assert len(tried) == 3 and len(few) <= 3
    assert propose(trained.model, seeds, seen, 0, 0.0) == ([], [])


def _small_run(gen_seed: int, epochs: tuple[int, ...]) -> tuple[dict[str, torch.Tensor], EpdFit]:
    vocab = Vocabulary(CHOICES)
    archs = sample(random.Random(21), 48)
    tokens = torch.tensor([vocab.encode(a) for a in archs])
    raw = np.array([true_accuracy(a) for a in archs])
    accuracy = torch.tensor((raw - raw.min()) / (raw.max() - raw.min()), dtype=torch.float32)
    latency = torch.tensor([true_latency(a) / 20.0 for a in archs], dtype=torch.float32)
    settings = EpdSettings(emb_size=16, hidden_size=24, mlp_hidden=16, batch_size=16)
    torch.manual_seed(5)
    model = EPD(vocab, settings)
    gen = torch.Generator().manual_seed(gen_seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    fit = None
    for count in epochs:  # several calls sharing optimizer and generator: a resumed run
        fit = train_epd(model, tokens, accuracy, latency, dataclasses.replace(settings, epochs=count),
                        gen, optimizer=optimizer)
    assert fit is not None and not model.training
    return {k: v.clone() for k, v in model.state_dict().items()}, fit


def test_training_is_deterministic_and_resumable() -> None:
    first, fit_first = _small_run(3, (5,))
    again, fit_again = _small_run(3, (5,))
    resumed, fit_resumed = _small_run(3, (3, 2))
    other, _ = _small_run(4, (5,))
    for name, value in first.items():
        assert torch.equal(value, again[name]), name
        assert torch.equal(value, resumed[name]), name
    assert fit_first == fit_again == fit_resumed
    assert any(not torch.equal(value, other[name]) for name, value in first.items())  # the order is gen's


def test_kendall_tau_is_tau_b() -> None:
    assert kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert kendall_tau([1, 2, 3], [1, 3, 2]) == pytest.approx(1 / 3)
    assert math.isnan(kendall_tau([1, 1, 1], [1, 2, 3]))
    rng = np.random.default_rng(0)
    for _ in range(5):
        a, b = rng.integers(0, 6, 40), rng.integers(0, 6, 40)  # many ties: tau-b's denominator matters
        assert kendall_tau(a.tolist(), b.tolist()) == pytest.approx(scipy.stats.kendalltau(a, b).statistic)
    with pytest.raises(ValueError):
        kendall_tau([1, 2], [1, 2, 3])
