"""`nasc export`: a search's output folder (arch.json + model.pt) -> a checked ONNX file."""

from __future__ import annotations

from pathlib import Path

from nasc.compiler.export import ExportedModel, export_onnx
from nasc.fsutil import ensure_writable_dir
from nasc.search.outputs import SearchRecord, load_trained


def export_search(search_dir: Path, output: Path | None = None, opset: int = 17) -> ExportedModel:
    """Export the trained network of a finished search to `output` (default: SEARCH_DIR/model.onnx)."""
    folder = Path(search_dir)
    SearchRecord.load(folder).finished_result(folder)  # a search still running is not exported
    arch, net = load_trained(folder)
    target = Path(output) if output is not None else folder / "model.onnx"
    ensure_writable_dir(target.parent)
    return export_onnx(net, arch.input_shape(), target, opset=opset)
