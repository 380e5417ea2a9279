"""The search strategies, by name: each module defines ``STRATEGY``, a class built from a SearchContext.

Modules are imported only when their strategy is asked for. A strategy searches (its epochs, then
``derive``); the runtime owns data, checkpoints, the final training and the outputs. ``derive`` gives
an ArchSpec (one op per layer of the space) or a PathArch (a grown path-level network, path-level):
the runtime picks within the budget only among the former, and asks ``layer_scores`` and
``scored_candidates`` only then.
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol

from nasc.errors import ConfigError

from ..context import SearchContext
from ..outputs import AnyArch
from ..settings import STRATEGY_NAMES
from ..space import Network

MODULES = {"proxyless": "nasc.search.strategies.proxyless", "nao": "nasc.search.strategies.nao",
           "random": "nasc.search.strategies.random_search", "path-level": "nasc.search.strategies.path_level"}
assert tuple(MODULES) == STRATEGY_NAMES, "register a strategy in both places"


class Strategy(Protocol):
    """A search strategy as the runtime drives it."""

    search_epochs: int

    def search_epoch(self, epoch: int) -> dict[str, Any]:
        """Run search epoch `epoch` (0-based); return its history record (stage, epoch, train_loss,
        valid_accuracy, and the strategy's own figures)."""
        ...

    def derive(self) -> AnyArch:
        """The architecture the search chose."""
        ...

    def layer_scores(self) -> list[list[float]]:
        """Per searchable layer, a log-probability for each op (in the layer's op order): what the search
        believes of each choice, for the runtime's pick within the budget."""
        ...

    def scored_candidates(self) -> list[tuple[tuple[str, ...], float]] | None:
        """Whole architectures the search scored (ops, score; higher is better) for the runtime to pick
        among within the budget, or None: the runtime then picks by `layer_scores`."""
        ...

    def init_final(self, net: Network, arch: AnyArch) -> None:
        """Initialise the derived network (``build_any(arch)``) before its final training (e.g. inherit
        searched weights)."""
        ...

    def result_figures(self) -> dict[str, Any]:
        """Figures only this strategy knows, for the search's result."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume (tensors and plain values only: checkpoints load weights-only)."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`state_dict`."""
        ...


def create_strategy(name: str, ctx: SearchContext) -> Strategy:
    """Build the strategy registered as `name`."""
    if name not in MODULES:
        raise ConfigError(f"[search] strategy: {name!r} is not registered; use one of {', '.join(MODULES)}")
    module = importlib.import_module(MODULES[name])
    return module.STRATEGY(ctx)
