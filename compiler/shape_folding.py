"""Shape arithmetic of a static-shaped ONNX model, folded into constants before import.

torch's exporter writes `x.chunk(2, 1)` and `x.view(n, g, c // g, h, w)` as arithmetic on `Shape(x)`
(Shape, Gather, Div, Mul, Concat, ...) feeding Slice and Reshape. Every shape in a nasc model is
static, so these values are constants, but TVM's importer keeps them as run-time computations: a
Slice with computed bounds becomes a dynamic_strided_slice whose output has no static shape, and the
convolution after it cannot be lowered. Folding them here gives the importer constant bounds, hence
static shapes.

Only the shape subgraph is touched: Shape (and Size) of tensors whose shape inference finds static,
and the nodes computed from them and constants alone, each evaluated once with onnx's reference
implementation. A model without Shape or Size nodes is returned as it came, so models that import
today import exactly as before.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper
from onnx.reference import ReferenceEvaluator

SHAPE_OPS = frozenset({"Shape", "Size"})
# Never evaluated at compile time: random or stateful, or carrying subgraphs.
_UNFOLDABLE = frozenset({"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial",
                         "Bernoulli", "If", "Loop", "Scan"})


def _static_shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    """Every value whose shape inference gives all dimensions as numbers."""
    inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    graph = inferred.graph
    shapes: dict[str, tuple[int, ...]] = {}
    for value in [*graph.input, *graph.value_info, *graph.output]:
        dims = value.type.tensor_type.shape.dim if value.type.HasField("tensor_type") else []
        if value.type.tensor_type.HasField("shape") and all(d.HasField("dim_value") for d in dims):
            shapes[value.name] = tuple(int(d.dim_value) for d in dims)
    return shapes


def _shape_value(node: onnx.NodeProto, shape: tuple[int, ...]) -> np.ndarray:
    """What Shape (with its start / end attributes) or Size yields for a tensor of `shape`."""
    if node.op_type == "Size":
        return np.array(int(np.prod(shape)), dtype=np.int64)
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    start, end = attrs.get("start", 0), attrs.get("end", len(shape))
    return np.array(shape[start:end], dtype=np.int64)


def fold_static_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` with its shape subgraph folded into initializers (see the module docstring)."""
    graph = model.graph
    if not any(node.op_type in SHAPE_OPS for node in graph.node):
        return model
    shapes = _static_shapes(model)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    folded: dict[str, np.ndarray] = {}  # values of the shape subgraph, now known
    kept: list[onnx.NodeProto] = []
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and not any(
                a.ref_attr_name for a in node.attribute):
            constants[node.output[0]] = ReferenceEvaluator(node, opsets={"": opset}).run(None, {})[0]
            kept.append(node)
            continue
        inputs = [name for name in node.input if name]
        if node.op_type in SHAPE_OPS and node.domain in ("", "ai.onnx") and node.input[0] in shapes:
            folded[node.output[0]] = _shape_value(node, shapes[node.input[0]])
            continue
        foldable = (node.domain in ("", "ai.onnx") and node.op_type not in _UNFOLDABLE and inputs
                    and any(name in folded for name in inputs)
                    and all(name in folded or name in constants for name in inputs))
        if not foldable:
            kept.append(node)
            continue
        feeds = {name: folded[name] if name in folded else constants[name] for name in inputs}
        values = ReferenceEvaluator(node, opsets={"": opset}).run(None, feeds)
        folded.update(zip(node.output, values, strict=True))
    if len(kept) == len(graph.node):
        return model
    needed = {name for node in kept for name in node.input} | {o.name for o in graph.output}
    kept = [node for node in kept if node.op_type != "Constant" or node.output[0] in needed]  # fed the folded only
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.node[:]
    out.graph.node.extend(kept)
    out.graph.initializer.extend(numpy_helper.from_array(np.asarray(folded[name]), name)
                                 for name in sorted(needed & folded.keys()))
    return out
