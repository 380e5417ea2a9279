"""CompiledArtifact: what `nasc compile` produced, as written to compile.json."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nasc.errors import InputError
from nasc.records import read_record
from nasc.tensors import TensorSpec

from .build import KernelCounts
from .tune import TuningSummary
from .verify import ParityReport

SCHEMA = "nasc.compile/1"
COMPILE_JSON = "compile.json"
LIBRARY_NAME = "model.so"
ONNX_NAME = "model.onnx"


@dataclass(frozen=True)
class CompiledArtifact:
    """A library built for one device, with everything needed to trust and reuse it."""

    directory: str
    device: dict[str, Any]
    library: str
    library_sha256: str
    onnx: str
    onnx_sha256: str
    target: dict[str, Any]
    target_triple: str
    tvm_version: str
    nasc_version: str
    onnx_version: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    tuning: TuningSummary
    parity: ParityReport
    compile_seconds: float = 0.0
    kernels: KernelCounts | None = None  # None: a compile.json written before nasc counted them

    @property
    def library_path(self) -> Path:
        """Absolute path of the library."""
        return Path(self.directory) / self.library

    @property
    def onnx_path(self) -> Path:
        """Absolute path of the ONNX model."""
        return Path(self.directory) / self.onnx

    def to_dict(self) -> dict[str, Any]:
        """The compile.json content (paths relative to the output folder)."""
        return {
            "schema": SCHEMA,
            "device": self.device,
            "library": self.library,
            "library_sha256": self.library_sha256,
            "onnx": self.onnx,
            "onnx_sha256": self.onnx_sha256,
            "target": self.target,
            "target_triple": self.target_triple,
            "tvm_version": self.tvm_version,
            "nasc_version": self.nasc_version,
            "onnx_version": self.onnx_version,
            "inputs": [s.to_dict() for s in self.inputs],
            "outputs": [s.to_dict() for s in self.outputs],
            "tuning": self.tuning.to_dict(),
            "parity": self.parity.to_dict(),
            "compile_seconds": round(self.compile_seconds, 3),
            **({"kernels": self.kernels.to_dict()} if self.kernels is not None else {}),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], directory: str | Path) -> CompiledArtifact:
        """Inverse of :meth:`to_dict`, for an artifact living in `directory`."""
        return cls(
            directory=str(directory),
            device=data["device"],
            library=data["library"],
            library_sha256=data["library_sha256"],
            onnx=data["onnx"],
            onnx_sha256=data["onnx_sha256"],
            target=data["target"],
            target_triple=data["target_triple"],
            tvm_version=data["tvm_version"],
            nasc_version=data["nasc_version"],
            onnx_version=data["onnx_version"],
            inputs=tuple(TensorSpec.from_dict(s) for s in data["inputs"]),
            outputs=tuple(TensorSpec.from_dict(s) for s in data["outputs"]),
            tuning=TuningSummary.from_dict(data["tuning"]),
            parity=ParityReport.from_dict(data["parity"]),
            compile_seconds=float(data.get("compile_seconds", 0.0)),
            kernels=KernelCounts.from_dict(data["kernels"]) if "kernels" in data else None,
        )

    @classmethod
    def load(cls, directory: str | Path) -> CompiledArtifact:
        """Read `directory`/compile.json; a file that does not match is an InputError naming it and the key."""
        path = Path(directory) / COMPILE_JSON
        data = read_record(path, SCHEMA, f"run `nasc compile MODEL.onnx -o {directory}` first")
        try:
            return cls.from_dict(data, Path(directory))
        except KeyError as exc:
            raise InputError(f"{path}: key {exc} is missing; compile again with this nasc") from None
        except (TypeError, ValueError) as exc:
            raise InputError(f"{path}: not a valid compile record ({exc}); compile again") from None
