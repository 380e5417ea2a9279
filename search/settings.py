"""[search], [search.space] and [data] settings of build.toml (plain data, no torch)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import ClassVar, Literal

OP_PATTERN = re.compile(r"^k(?P<kernel>[357])_e(?P<expand>[1-9])$")
DEFAULT_OPS = ("k3_e3", "k3_e6", "k5_e3", "k5_e6", "k7_e3", "k7_e6", "zero")
# The registered strategies (nasc.search.strategies maps each to its module); settings check names here.
STRATEGY_NAMES = ("proxyless", "nao", "random", "path-level")


def strategy_table(name: str) -> str:
    """The build.toml table of strategy `name`'s own settings: ``search.<name>`` with dashes as underscores
    (``path-level`` -> ``search.path_level``, the field of SearchSettings; TOML reads either spelling)."""
    return "search." + name.replace("-", "_")


@dataclass(frozen=True)
class StageSettings:
    """One stage of the backbone: `depth` searchable layers, the first with `stride`."""

    channels: int
    depth: int = 1
    stride: int = 1

    def __post_init__(self) -> None:
        if self.channels < 1:
            raise ValueError(f"stage channels must be >= 1, got {self.channels}")
        if self.depth < 1:
            raise ValueError(f"stage depth must be >= 1, got {self.depth}")
        if self.stride not in (1, 2):
            raise ValueError(f"stage stride must be 1 or 2, got {self.stride}")


def _default_stages() -> tuple[StageSettings, ...]:
    return (
        StageSettings(channels=24, depth=2, stride=2),
        StageSettings(channels=40, depth=2, stride=2),
        StageSettings(channels=64, depth=2, stride=1),
    )


@dataclass(frozen=True)
class SpaceSettings:
    """[search.space]: a MobileNetV2-style backbone (stem, searchable stages, head)."""

    resolution: int = 32  # input height = width
    in_channels: int = 3  # input image channels the stem expects (1 or 3)
    stem_channels: int = 16
    stem_stride: int = 2
    head_expand: int = 4  # head: 1x1 conv to last_channels * head_expand, pool, linear
    ops: tuple[str, ...] = DEFAULT_OPS  # "kK_eE" (MBConv kernel K, expansion E) and "zero"
    stages: tuple[StageSettings, ...] = field(default_factory=_default_stages)

    def __post_init__(self) -> None:
        if self.resolution < 4:
            raise ValueError(f"resolution must be >= 4, got {self.resolution}")
        if self.in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 or 3, got {self.in_channels}")
        if self.stem_channels < 1 or self.head_expand < 1:
            raise ValueError("stem_channels and head_expand must be >= 1")
        if self.stem_stride not in (1, 2):
            raise ValueError(f"stem_stride must be 1 or 2, got {self.stem_stride}")
        if not self.stages:
            raise ValueError("stages is empty; give at least one {channels=..., depth=..., stride=...}")
        if not self.ops:
            raise ValueError("ops is empty; give at least one op such as 'k3_e6'")
        if len(set(self.ops)) != len(self.ops):
            raise ValueError(f"ops lists an op twice: {list(self.ops)}")
        for op in self.ops:
            if op != "zero" and not OP_PATTERN.match(op):
                raise ValueError(f"unknown op {op!r}; use 'kK_eE' with K in 3, 5, 7 and E in 1..9, or 'zero'")
        if all(op == "zero" for op in self.ops):
            raise ValueError("ops holds only 'zero'; add at least one MBConv op such as 'k3_e6'")


@dataclass(frozen=True)
class ProxylessSettings:
    """[search.proxyless]: ProxylessNAS's own settings (binarized paths, latency term, final init)."""

    arch_algo: Literal["grad", "rl"] = "grad"
    # "hinge" (default): CE + latency_lambda*max(0, LAT/T - 1), no pull under the budget, so the search may spend
    # all of it; "add": CE + latency_lambda*LAT/T, whose pull keeps going below the budget (a 1 ms budget gave a
    # 0.40 ms network); "mul": the paper's CE*(log LAT/log T)^beta, with almost no pull on small tasks (digits).
    latency_loss: Literal["mul", "add", "hinge"] = "hinge"
    beta: float = 0.6  # exponent of the multiplicative form (and RL reward trade-off)
    latency_lambda: float = 1.0  # weight of the additive form, LAT in units of the budget
    warmup_epochs: int = 4  # weight-only epochs before architecture updates
    epochs: int = 12  # search epochs: weight and architecture steps alternate
    arch_lr: float = 0.03  # Adam (betas 0, 0.999) on architecture parameters
    arch_update_every: int = 1  # one architecture step after this many weight steps
    rl_baseline_decay: float = 0.9
    final_init: Literal["scratch", "inherit"] = "scratch"
    weight_sharing: Literal["superkernel", "none"] = "superkernel"  # candidates of a layer slice one kernel

    def __post_init__(self) -> None:
        for name in ("warmup_epochs", "epochs"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.arch_update_every < 1:
            raise ValueError("arch_update_every must be >= 1")
        if self.arch_lr <= 0:
            raise ValueError("arch_lr must be > 0")
        if self.beta < 0 or self.latency_lambda < 0:
            raise ValueError("beta and latency_lambda must be >= 0")
        if not 0 <= self.rl_baseline_decay < 1:
            raise ValueError("rl_baseline_decay must be in [0, 1)")


@dataclass(frozen=True)
class NaoSettings:
    """[search.nao]: Neural Architecture Optimization with weight sharing (Luo et al. 2018, NAO-WS).

    A pool of architectures is scored with a shared supernet; an encoder maps each to a continuous
    embedding, a predictor estimates its accuracy and device latency there, a decoder maps embeddings
    back; gradient steps on the embeddings of the best ones decode into new architectures for the pool.
    """

    warmup_epochs: int = 4  # supernet epochs on the initial pool before the first round
    rounds: int = 3  # score the pool, train encoder-predictor-decoder, propose, add to the pool
    epochs_per_round: int = 2  # supernet epochs before each round (paths drawn from the pool)
    initial_pool: int = 50  # random architectures to start from
    seeds: int = 20  # the pool's best (objective) whose embeddings are optimised each round
    new_per_round: int = 20  # new architectures each round adds
    trade_off: float = 0.8  # lambda: lambda * predictor MSE + (1 - lambda) * reconstruction NLL (the paper's)
    latency_weight: float = 2.0  # objective: predicted accuracy (0..1 over the pool) - weight * max(0, LAT/T - 1)
    epd_epochs: int = 200  # encoder-predictor-decoder passes over the pool per round (continues the last round's)
    epd_lr: float = 0.001
    emb_size: int = 48  # token embedding; the published code's sizes
    hidden_size: int = 96  # encoder and decoder LSTM
    mlp_hidden: int = 64  # predictor MLP
    max_step_tries: int = 12  # step sizes tried (growing) until new_per_round new architectures decode
    fill_random: bool = True  # where fewer decode, fill the round's new architectures with random unseen ones
    # Score candidates on the whole validation split (0), or on a fixed subset of this many images drawn with
    # the seed (NAO-WS's published code scores each on one batch of 500, a noisy signal: search.json reports it).
    eval_images: int = 0
    final_init: Literal["scratch", "inherit"] = "scratch"

    def __post_init__(self) -> None:
        for name in ("warmup_epochs", "eval_images"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        for name in ("rounds", "epochs_per_round", "seeds", "new_per_round", "epd_epochs", "emb_size",
                     "hidden_size", "mlp_hidden", "max_step_tries"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.initial_pool < 3:
            raise ValueError(f"initial_pool must be >= 3 (the predictor learns from the pool), got {self.initial_pool}")
        if not 0 <= self.trade_off <= 1:
            raise ValueError(f"trade_off must be in [0, 1], got {self.trade_off}")
        if self.latency_weight < 0 or self.epd_lr <= 0:
            raise ValueError("latency_weight must be >= 0 and epd_lr > 0")


@dataclass(frozen=True)
class RandomSettings:
    """[search.random]: random search with weight sharing (NAO's peer: the same pool and supernet, random new
    architectures each round)."""

    warmup_epochs: int = 4
    rounds: int = 3
    epochs_per_round: int = 2
    initial_pool: int = 50
    new_per_round: int = 20
    eval_images: int = 0  # as [search.nao] eval_images
    final_init: Literal["scratch", "inherit"] = "scratch"

    def __post_init__(self) -> None:
        NaoSettings(warmup_epochs=self.warmup_epochs, rounds=self.rounds, epochs_per_round=self.epochs_per_round,
                    initial_pool=self.initial_pool, new_per_round=self.new_per_round, eval_images=self.eval_images)


START_KEYWORD = "mobilenetv2"
UNIFORM_PREFIX = "uniform:"


@dataclass(frozen=True)
class PathLevelSettings:
    """[search.path_level]: path-level network transformation (Cai et al., ICML 2018), hardware-aware.

    A start network is trained, then grown one function-preserving move per round: a policy samples
    `moves_per_round` moves on the current network, each is applied to a copy (inherited weights),
    fine-tuned `finetune_steps` steps and scored by ``tan(accuracy * pi / 2)`` penalised by its predicted
    latency over [search] latency_ms; the current network gets the same fine-tune, and the best candidate
    replaces it only if it scores higher. Moves only ever grow a network, so the start should sit under the
    budget: the search spends the rest of it.
    """

    # "mobilenetv2": every layer the space's MBConv op with the smallest kernel, then the largest expansion
    # (k3_e6, MobileNetV2's block, in the default space; an op of the space, so the latency table holds it);
    # "uniform:CELL": every layer CELL (a cell string, e.g. "uniform:k3_e3"); else one cell string per
    # searchable layer, separated by spaces ("k3_e6 zero add(sep3,identity) ..."; zero on residual layers).
    start: str = START_KEYWORD
    start_epochs: int = 4  # training epochs of the start network (SGD, [search] weight_lr, cosine) before round 1
    rounds: int = 4  # each grows the current network by at most one move
    moves_per_round: int = 4  # networks sampled per round, each one move from the current one (a policy batch)
    finetune_steps: int = 20  # SGD steps of each candidate (and of the current network) before it is scored
    finetune_lr: float = 0.01  # constant, momentum 0.9: a short fine-tune of inherited weights, not a restart
    # Score on the whole validation split (0), or on a fixed subset of this many images drawn with the seed.
    eval_images: int = 0
    policy: Literal["controller", "random"] = "controller"  # the Tree-LSTM meta-controller or uniform moves
    penalty: Literal["mul", "hinge"] = "mul"  # reward * (T/LAT)^weight, or reward - weight*(LAT/T - 1), over T
    penalty_weight: float = 1.0
    stretch: bool = True  # reward from tan(accuracy * pi / 2) (the official code's), else the accuracy itself
    perturb_scale: float = 0.01  # symmetry-breaking noise on touched convs, times their RMS (after the check)
    bn_batches: int = 2  # training batches that set new BatchNorms and check that a move keeps the function
    controller_lr: float = 6e-3  # Adam on the controller (the official code's; 0: a controller that never learns)
    entropy_weight: float = 1e-2  # REINFORCE entropy bonus
    baseline_step: float = 0.95  # baseline += baseline_step * (batch mean reward - baseline)

    def __post_init__(self) -> None:
        text = self.start.strip()
        if not text or text.removeprefix(UNIFORM_PREFIX).strip() == "":
            raise ValueError(f"start must be {START_KEYWORD!r}, 'uniform:CELL' or one cell string per layer, "
                             f"got {self.start!r}")
        for name in ("start_epochs", "rounds", "eval_images"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("moves_per_round", "finetune_steps", "bn_batches"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.finetune_lr <= 0:
            raise ValueError(f"finetune_lr must be > 0, got {self.finetune_lr}")
        for name in ("penalty_weight", "perturb_scale", "controller_lr", "entropy_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 < self.baseline_step <= 1:
            raise ValueError(f"baseline_step must be in (0, 1], got {self.baseline_step}")


@dataclass(frozen=True)
class SearchSettings:
    """[search]: what every strategy shares (budget, seed, training of the derived network, the space).

    Each strategy's own settings live in its sub-table ([search.proxyless], [search.nao], [search.random],
    [search.path_level]).
    """

    MOVED_KEYS: ClassVar[dict[str, str]] = {
        name: "search.proxyless" for name in ("arch_algo", "latency_loss", "beta", "latency_lambda", "warmup_epochs",
                                              "epochs", "arch_lr", "arch_update_every", "rl_baseline_decay",
                                              "final_init", "weight_sharing")
    }

    strategy: str = "proxyless"  # a name registered in nasc.search.strategies
    latency_ms: float | None = None  # budget T on the target device; none: accuracy only
    seed: int = 0
    batch_size: int = 64
    weight_lr: float = 0.05  # SGD, cosine decay
    weight_decay: float = 4e-5
    final_epochs: int = 20  # training of the derived network
    # The latency table the search reads: its blocks built with default schedules (0) or tuned with MetaSchedule
    # at this many trials per task in the device's tuning database, which the final compile then reuses.
    # None: the trials the final compile tunes at ([compile].trials; search-and-compile's --trials in a run).
    table_trials: int | None = None
    # "budget": the most probable architecture whose predicted latency lands in [budget_fill * T, T]
    # (budget_pick.py); "argmax": the strategy's own pick, wherever it lands.
    # A strategy that grows a path-level network (path-level) returns it as derived: the pick is among
    # one-op-per-layer architectures only.
    derive: Literal["budget", "argmax"] = "budget"
    budget_fill: float = 0.9
    space: SpaceSettings = field(default_factory=SpaceSettings)
    proxyless: ProxylessSettings = field(default_factory=ProxylessSettings)
    nao: NaoSettings = field(default_factory=NaoSettings)
    random: RandomSettings = field(default_factory=RandomSettings)
    path_level: PathLevelSettings = field(default_factory=PathLevelSettings)

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGY_NAMES:
            raise ValueError(f"strategy {self.strategy!r} is not registered; use one of {', '.join(STRATEGY_NAMES)}")
        if self.latency_ms is not None and self.latency_ms <= 0.001:
            raise ValueError(f"latency_ms must be > 0.001 (ms), got {self.latency_ms}")
        if self.final_epochs < 0:
            raise ValueError("final_epochs must be >= 0")
        if self.table_trials is not None and self.table_trials < 0:
            raise ValueError("table_trials must be >= 0")
        if not 0 < self.budget_fill <= 1:
            raise ValueError(f"budget_fill must be in (0, 1], got {self.budget_fill}")
        if self.batch_size < 2:
            raise ValueError("batch_size must be >= 2")
        if self.weight_lr <= 0:
            raise ValueError("weight_lr must be > 0")


@dataclass(frozen=True)
class DataSettings:
    """[data]: where training data comes from and how it is split.

    ``source``: "digits" (scikit-learn's, shipped), "fashion-mnist" (the idx files of Debian's
    dataset-fashion-mnist in /usr/share/datasets/fashion-mnist, or of the folder $NASC_FASHION_MNIST_DIR),
    an image-folder tree (one folder per class) or an .npz with arrays x and y.
    ``valid_fraction`` and ``test_fraction`` split the images by a seeded permutation. Fashion-MNIST keeps its
    official split: its 10,000 test images are the test split (``test_fraction`` does not apply) and
    ``valid_fraction`` of its 60,000 training images are the valid split.
    ``max_train``: keep at most this many training images (0: all), a subset drawn by the seed with each class
    kept in proportion (at least one image each), to make a search on a large source affordable; the valid
    and test splits are left whole, and the normalisation statistics come from the kept images.
    """

    source: str = "digits"  # "digits", "fashion-mnist", an image-folder tree or an .npz with x, y
    valid_fraction: float = 0.2  # architecture steps use this split
    test_fraction: float = 0.2  # final accuracy is reported on this split (not for fashion-mnist: its own)
    max_train: int = 0  # at most this many training images, class-stratified by the seed (0: all)

    def __post_init__(self) -> None:
        if not self.source:
            raise ValueError(
                "source is empty; use 'digits', 'fashion-mnist', a folder of class folders or an .npz file"
            )
        if not (0 < self.valid_fraction < 1 and 0 < self.test_fraction < 1):
            raise ValueError("valid_fraction and test_fraction must be between 0 and 1")
        if self.valid_fraction + self.test_fraction >= 0.9:
            raise ValueError("valid_fraction + test_fraction must leave at least 10% for training")
        if self.max_train < 0:
            raise ValueError(f"max_train must be >= 0 (0 keeps every training image), got {self.max_train}")
