"""ONNX -> TVM Relax IRModule; operators the importer cannot take are named, never a raw traceback."""

from __future__ import annotations

import onnx

from nasc.errors import CompileError, UnsupportedOperator

from .shape_folding import fold_static_shapes


def supported_op_types() -> frozenset[str]:
    """ONNX operator types TVM 0.27's Relax importer converts."""
    from tvm.relax.frontend.onnx.onnx_frontend import _get_convert_map

    return frozenset(_get_convert_map()) | {"Constant", "If"}


def check_operators(model: onnx.ModelProto, where: str) -> None:
    """Raise UnsupportedOperator for the first node whose op type the importer lacks."""
    supported = supported_op_types()
    missing = [(n.op_type, n.name or f"#{i}", n.domain) for i, n in enumerate(model.graph.node)
               if n.op_type not in supported or n.domain not in ("", "ai.onnx")]
    if missing:
        op_type, node_name, domain = missing[0]
        others = sorted({m[0] for m in missing[1:]} - {op_type})
        more = f" (also unsupported: {', '.join(others)})" if others else ""
        dom = f" in domain '{domain}'" if domain not in ("", "ai.onnx") else ""
        raise UnsupportedOperator(
            f"{where}: node '{node_name}' uses operator '{op_type}'{dom}, which TVM's ONNX importer cannot "
            f"convert{more}. Replace it in the source model (e.g. an equivalent of supported ops) and re-export."
        )


def import_onnx(model: onnx.ModelProto, where: str = "model"):  # -> tvm.IRModule
    """Import a checked ONNX model into Relax with weights bound as constants."""
    from tvm.relax.frontend.onnx import from_onnx

    check_operators(model, where)
    try:
        return from_onnx(fold_static_shapes(model), keep_params_in_input=False)
    except Exception as exc:
        raise CompileError(f"{where}: TVM's ONNX importer failed: {type(exc).__name__}: {exc}") from exc
