"""What a search writes (arch.json, model.pt, search.json, checkpoint.pt) and how to read it back.

search.json is written from :class:`SearchRecord` and read back only through it; its ``result``
is a :class:`SearchResult` once the search is complete.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from nasc.errors import InputError
from nasc.fsutil import atomic_output, atomic_write_text
from nasc.records import field_of, read_record

from .path_level.cell import PATH_ARCH_FORMAT, PathArch
from .path_level.modules import build_path
from .space import ArchSpec, Network, build

AnyArch = ArchSpec | PathArch  # one op per layer, or one path-level cell per layer

CHECKPOINT_NAME = "checkpoint.pt"
SEARCH_JSON = "search.json"


def atomic_json(data: Any, path: Path) -> None:
    """Write JSON via a temporary file and os.replace."""
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def atomic_torch_save(obj: Any, path: Path) -> None:
    """torch.save via a temporary file and os.replace."""
    with atomic_output(path) as handle:
        torch.save(obj, handle)


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    """The checkpoint at `path` (weights_only), or None if there is none."""
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file
        raise InputError(f"{path}: unreadable checkpoint ({exc}); delete it to start the search again") from None


@dataclass(frozen=True)
class SearchResult:
    """The outcome of one search: the architecture, its predicted latency and trained accuracy.

    ``figures`` holds what only the strategy knows (ProxylessNAS: its expected latency and how the
    architecture was updated).
    """

    arch: AnyArch
    strategy: str
    predicted_ms: float  # predictor.network_ms(arch.blocks())
    block_sum_ms: float  # sum of the blocks' predicted latencies
    budget_ms: float | None
    meets_budget: bool | None  # None without a budget
    test_accuracy: float
    valid_accuracy: float
    seed: int
    out_dir: str
    preprocessing: dict[str, Any]
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def arch_path(self) -> Path:
        return Path(self.out_dir) / "arch.json"

    @property
    def model_path(self) -> Path:
        return Path(self.out_dir) / "model.pt"

    @property
    def search_path(self) -> Path:
        return Path(self.out_dir) / SEARCH_JSON

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "arch": self.arch.to_dict(),
            "strategy": self.strategy,
            "predicted_ms": self.predicted_ms,
            "block_sum_ms": self.block_sum_ms,
            "budget_ms": self.budget_ms,
            "meets_budget": self.meets_budget,
            "test_accuracy": self.test_accuracy,
            "valid_accuracy": self.valid_accuracy,
            "seed": self.seed,
            "out_dir": self.out_dir,
            "preprocessing": self.preprocessing,
            "figures": self.figures,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str | Path = SEARCH_JSON) -> SearchResult:
        """Inverse of :meth:`to_dict`; a missing or mistyped key is an InputError naming `source` and it."""
        try:
            arch = arch_from_dict(field_of(data, "arch", dict, source), str(source))
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(f"{source}: key 'result.arch' is not a valid architecture ({exc})") from None
        return cls(
            arch=arch,
            strategy=field_of(data, "strategy", str, source),
            predicted_ms=field_of(data, "predicted_ms", float, source),
            block_sum_ms=field_of(data, "block_sum_ms", float, source),
            budget_ms=field_of(data, "budget_ms", float, source, optional=True),
            meets_budget=field_of(data, "meets_budget", bool, source, optional=True),
            test_accuracy=field_of(data, "test_accuracy", float, source),
            valid_accuracy=field_of(data, "valid_accuracy", float, source),
            seed=field_of(data, "seed", int, source),
            out_dir=field_of(data, "out_dir", str, source),
            preprocessing=field_of(data, "preprocessing", dict, source),
            figures=field_of(data, "figures", dict, source),
        )


@dataclass(frozen=True)
class SearchRecord:
    """search.json: the settings used, the per-layer latencies, the history so far and, once done, the result."""

    SCHEMA: ClassVar[str] = "nasc.search/1"

    complete: bool
    strategy: str
    settings: dict[str, Any]
    space: dict[str, Any]
    latency: dict[str, Any]  # {"fixed_ms": stem + head, "layers": [{op: ms}, ...]} from the device's predictor
    history: tuple[dict[str, Any], ...]
    result: SearchResult | None = None

    def to_dict(self) -> dict[str, Any]:
        """The search.json content."""
        return {
            "schema": self.SCHEMA, "complete": self.complete, "strategy": self.strategy, "settings": self.settings,
            "space": self.space, "latency": self.latency, "history": list(self.history),
            "result": self.result.to_dict() if self.result is not None else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str | Path = SEARCH_JSON) -> SearchRecord:
        """Inverse of :meth:`to_dict` (errors name `source` and the key)."""
        result = field_of(data, "result", dict, source, optional=True)
        return cls(
            complete=field_of(data, "complete", bool, source),
            strategy=field_of(data, "strategy", str, source),
            settings=field_of(data, "settings", dict, source),
            space=field_of(data, "space", dict, source),
            latency=field_of(data, "latency", dict, source),
            history=tuple(field_of(data, "history", list, source)),
            result=SearchResult.from_dict(result, f"{source} (result)") if result is not None else None,
        )

    @classmethod
    def load(cls, folder: str | Path) -> SearchRecord:
        """Read `folder`/search.json."""
        path = Path(folder) / SEARCH_JSON
        return cls.from_dict(read_record(path, cls.SCHEMA, f"run `nasc search -o {Path(folder)}` to make it"), path)

    def finished_result(self, folder: str | Path) -> SearchResult:
        """The result of a complete search (an InputError naming the folder otherwise)."""
        if not self.complete or self.result is None:
            raise InputError(f"{Path(folder) / SEARCH_JSON}: the search did not finish; run it again with --resume")
        return self.result


def arch_from_dict(data: dict[str, Any], source: str) -> AnyArch:
    """An arch.json's content: a path-level network by its format key, else an ArchSpec."""
    if data.get("format") == PATH_ARCH_FORMAT:
        return PathArch.from_dict(data, source)
    return ArchSpec.from_dict(data, source)


def build_any(arch: AnyArch) -> Network:
    """The trainable network of either kind of architecture."""
    return build_path(arch) if isinstance(arch, PathArch) else build(arch)


def load_arch(path: str | Path) -> AnyArch:
    """Read arch.json (either kind); a bad file raises InputError naming it."""
    file = Path(path)
    try:
        return arch_from_dict(json.loads(file.read_text()), str(file))
    except FileNotFoundError:
        raise InputError(f"{file}: no such file; run `nasc search` first or give the search's output folder") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{file}: not a valid arch.json ({exc})") from None


def load_trained(out_dir: str | Path) -> tuple[AnyArch, Network]:
    """The searched network of a search output folder, weights loaded, in eval mode (ready to export)."""
    folder = Path(out_dir)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder; give the output folder of `nasc search` (-o)")
    arch = load_arch(folder / "arch.json")
    net = build_any(arch)
    model = folder / "model.pt"
    if not model.is_file():
        raise InputError(f"{model}: no trained weights; the search in {folder} did not finish (run it with --resume)")
    try:
        net.load_state_dict(torch.load(model, map_location="cpu", weights_only=True))
    except (RuntimeError, OSError) as exc:
        raise InputError(f"{model}: weights do not fit {folder / 'arch.json'} ({exc})") from None
    return arch, net.eval()
