"""What a search writes (arch.json, model.pt, search.json, checkpoint.pt) and how to read it back."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nasc.errors import InputError
from nasc.fsutil import atomic_output, atomic_write_text

from .space import ArchSpec, Network, build

CHECKPOINT_NAME = "checkpoint.pt"


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
    """The outcome of one search: the architecture, its predicted latency and trained accuracy."""

    arch: ArchSpec
    predicted_ms: float  # predictor.network_ms(arch.blocks())
    block_sum_ms: float  # sum of the blocks' predicted latencies
    expected_ms: float  # the supernet's expected latency at the end of the search
    budget_ms: float | None
    meets_budget: bool | None  # None without a budget
    test_accuracy: float
    valid_accuracy: float
    arch_algo: str
    seed: int
    out_dir: str
    preprocessing: dict[str, Any]

    @property
    def arch_path(self) -> Path:
        return Path(self.out_dir) / "arch.json"

    @property
    def model_path(self) -> Path:
        return Path(self.out_dir) / "model.pt"

    @property
    def search_path(self) -> Path:
        return Path(self.out_dir) / "search.json"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "arch": self.arch.to_dict(),
            "predicted_ms": self.predicted_ms,
            "block_sum_ms": self.block_sum_ms,
            "expected_ms": self.expected_ms,
            "budget_ms": self.budget_ms,
            "meets_budget": self.meets_budget,
            "test_accuracy": self.test_accuracy,
            "valid_accuracy": self.valid_accuracy,
            "arch_algo": self.arch_algo,
            "seed": self.seed,
            "out_dir": self.out_dir,
            "preprocessing": self.preprocessing,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchResult:
        """Inverse of :meth:`to_dict`."""
        return cls(**{**data, "arch": ArchSpec.from_dict(data["arch"])})


def load_arch(path: str | Path) -> ArchSpec:
    """Read arch.json; a bad file raises InputError naming it."""
    file = Path(path)
    try:
        return ArchSpec.from_dict(json.loads(file.read_text()), str(file))
    except FileNotFoundError:
        raise InputError(f"{file}: no such file; run `nasc search` first or give the search's output folder") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{file}: not a valid arch.json ({exc})") from None


def load_trained(out_dir: str | Path) -> tuple[ArchSpec, Network]:
    """The searched network of a search output folder, weights loaded, in eval mode (ready to export)."""
    folder = Path(out_dir)
    arch = load_arch(folder / "arch.json")
    net = build(arch)
    model = folder / "model.pt"
    if not model.is_file():
        raise InputError(f"{model}: no trained weights; the search in {folder} did not finish (run it with --resume)")
    try:
        net.load_state_dict(torch.load(model, map_location="cpu", weights_only=True))
    except (RuntimeError, OSError) as exc:
        raise InputError(f"{model}: weights do not fit {folder / 'arch.json'} ({exc})") from None
    return arch, net.eval()
