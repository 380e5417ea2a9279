"""Fuse a channel concatenation into the pooling operator that reads it.

FuseOps never fuses an injective operator into a following pool or convolution, so a concatenation
(squeezenet's fire modules join two expand convolutions with one) runs as a kernel of its own that
copies both inputs into a new tensor for its reader. Where the reader is a pool, grouping the two
makes the concatenation a select in the pool's loads and the copy is gone (one kernel and one copy
fewer).

Convolutions are left alone: fused the same way, squeezenet's convolution readers ran slower than
the copy and the convolution apart, since the select sits in the convolution's innermost loads,
which read each input element once per output channel block.

Two passes: one between FuseOps and FuseTIR moves a concatenation whose result has exactly one use,
as an argument of a pool (a lone call_tir, or a fused operator that pools), into a new primitive
function with that reader, so that FuseTIR makes one kernel of the two; one after FuseTIR computes
the concatenation inline in the reader's loads (MetaSchedule's CPU rules never inline a block with an
if_then_else, so left as a block it would be computed as a copy inside the kernel).
"""

from __future__ import annotations

from typing import Any

# Prefix of the PrimFuncs that LegalizeOps makes for relax.concat.
CONCAT_PREFIX = "concatenate"
# A reader whose PrimFunc (or fused function) name holds this pools: max_pool2d, avg_pool2d, ...
POOL_MARK = "pool2d"


def fuse_concat_into_pools() -> Any:
    """The module pass (after FuseOps, before FuseTIR)."""
    import tvm

    @tvm.transform.module_pass(opt_level=0, name="FuseConcatIntoPools")
    def rewrite(mod: Any, _ctx: Any) -> Any:
        return _rewrite_module(mod)

    return rewrite


def inline_fused_concatenations() -> Any:
    """The module pass (after FuseTIR): each fused concatenation computed inline in its reader's loads."""
    import tvm

    @tvm.transform.module_pass(opt_level=0, name="InlineFusedConcatenations")
    def rewrite(mod: Any, _ctx: Any) -> Any:
        for gv, func in list(mod.functions.items()):
            if isinstance(func, tvm.tirx.PrimFunc) and gv.name_hint.startswith(f"fused_{CONCAT_PREFIX}"):
                mod[gv] = _inline_concat_blocks(func)
        return mod

    return rewrite


def _inline_concat_blocks(func: Any) -> Any:
    import tvm

    sch = tvm.s_tir.Schedule(tvm.IRModule({"main": func}))
    root = sch.get_sblock(func.body.block.name_hint)
    for block in sch.get_child_blocks(root):
        if sch.get(block).name_hint.startswith("T_concat"):
            try:
                sch.compute_inline(block)
            except tvm.s_tir.ScheduleError:  # an output of the kernel too (read after it): it stays a copy
                continue
    return sch.mod["main"]


def _rewrite_module(mod: Any) -> Any:
    from tvm import relax

    for gv, func in list(mod.functions.items()):
        if isinstance(func, relax.Function) and not _is_primitive(func):
            mod = _rewrite_function(mod, gv)
    return mod


def _is_primitive(func: Any) -> bool:
    return func.attrs is not None and bool(func.attrs.get("Primitive", False))


def _call_tir() -> Any:
    import tvm

    return tvm.ir.Op.get("relax.call_tir")


def _is_concat(value: Any) -> bool:
    """Whether `value` is a call_tir of a concatenation PrimFunc on a tuple of its parts."""
    from tvm import relax

    return (isinstance(value, relax.Call) and value.op.same_as(_call_tir()) and len(value.args) == 2
            and isinstance(value.args[1], relax.Tuple) and value.args[0].name_hint.startswith(CONCAT_PREFIX))


def _uses(func: Any) -> dict[Any, int]:
    """How often each variable is read in `func` (the function's result counts as a read)."""
    from tvm import relax

    counts: dict[Any, int] = {}

    def visit(expr: Any) -> None:
        if isinstance(expr, relax.Var):
            counts[expr] = counts.get(expr, 0) + 1

    relax.analysis.post_order_visit(func.body, visit)
    return counts


def _rewrite_function(mod: Any, gv: Any) -> Any:
    from tvm import relax

    func = mod[gv]
    if not isinstance(func.body, relax.SeqExpr):
        return mod
    uses = _uses(func)
    builder = relax.BlockBuilder(mod)
    blocks = []
    changed = False
    for block in func.body.blocks:
        if not isinstance(block, relax.DataflowBlock):
            blocks.append(block)
            continue
        pending: dict[Any, Any] = {}  # concatenation result -> its call, while its reader is not yet seen
        bindings = []
        for binding in block.bindings:
            if isinstance(binding, relax.VarBinding) and _is_concat(binding.value) and uses.get(binding.var, 0) == 1:
                pending[binding.var] = binding
                continue
            reader = _fused_reader(mod, binding, pending)
            if reader is not None:
                concat_binding, index = reader
                del pending[concat_binding.var]
                call = _fuse(builder, concat_binding, binding, index)
                bindings.append(relax.VarBinding(binding.var, call))
                changed = True
                continue
            bindings.extend(_flush_read(binding, pending))
            bindings.append(binding)
        bindings.extend(pending.values())
        blocks.append(relax.DataflowBlock(bindings))
    if not changed:
        return mod
    mod = builder.get()
    mod[gv] = relax.Function(func.params, relax.SeqExpr(blocks, func.body.body), func.ret_ty,
                             func.is_pure, func.attrs)
    return relax.transform.Normalize()(mod)


def _flush_read(binding: Any, pending: dict[Any, Any]) -> list[Any]:
    """Pending concatenations that `binding` reads (in a way the pass does not fuse), emitted first."""
    from tvm import relax

    read: list[Any] = []

    def visit(expr: Any) -> None:
        if isinstance(expr, relax.Var) and expr in pending:
            read.append(pending.pop(expr))

    relax.analysis.post_order_visit(binding.value, visit)
    return read


def _fused_reader(mod: Any, binding: Any, pending: dict[Any, Any]) -> tuple[Any, int] | None:
    """(the pending concatenation, its argument position) if `binding` is a pool that reads it."""
    from tvm import relax

    if not isinstance(binding, relax.VarBinding) or not isinstance(binding.value, relax.Call):
        return None
    call = binding.value
    if isinstance(call.op, relax.GlobalVar) and _is_primitive(mod[call.op]):
        args, name = list(call.args), call.op.name_hint
    elif call.op.same_as(_call_tir()) and len(call.args) == 2 and isinstance(call.args[1], relax.Tuple):
        args, name = list(call.args[1].fields), call.args[0].name_hint
    else:
        return None
    if POOL_MARK not in name:
        return None
    hits = [(i, a) for i, a in enumerate(args) if isinstance(a, relax.Var) and a in pending]
    if len(hits) != 1:
        return None
    index, var = hits[0]
    return pending[var], index


def _fuse(builder: Any, concat_binding: Any, reader_binding: Any, index: int) -> Any:
    """A call of a new primitive function: the concatenation, then its reader, in one group."""
    from tvm import relax

    concat_call = concat_binding.value
    parts = list(concat_call.args[1].fields)
    reader = reader_binding.value
    is_function = isinstance(reader.op, relax.GlobalVar)
    reader_args = list(reader.args) if is_function else list(reader.args[1].fields)
    outer_args = parts + [a for i, a in enumerate(reader_args) if i != index]
    params = [relax.Var(f"p{i}", a.ty) for i, a in enumerate(outer_args)]
    part_params, rest_params = params[:len(parts)], params[len(parts):]
    joined = relax.DataflowVar("joined", concat_binding.var.ty)
    inner_args = [*rest_params[:index], joined, *rest_params[index:]]
    bindings = [relax.VarBinding(joined, relax.Call(concat_call.op, [concat_call.args[0], relax.Tuple(part_params)],
                                                    concat_call.attrs, concat_call.ty_args))]
    if is_function:
        fused = builder.get()[reader.op]
        inlined = fused.bind_params(dict(zip(fused.params, inner_args, strict=True)))
        for block in inlined.body.blocks:
            bindings.extend(block.bindings)
        result = inlined.body.body
    else:
        result = relax.Var("out", reader_binding.var.ty)
        bindings.append(relax.VarBinding(result, relax.Call(reader.op, [reader.args[0], relax.Tuple(inner_args)],
                                                            reader.attrs, reader.ty_args)))
    body = relax.SeqExpr([relax.DataflowBlock(bindings)], result)
    func = relax.Function(params, body, reader_binding.var.ty, is_pure=True).with_attr("Primitive", True)
    reader_name = reader.op.name_hint if is_function else reader.args[0].name_hint
    name = f"fused_{concat_call.args[0].name_hint}_{reader_name.removeprefix('fused_')}"
    new_gv = builder.add_func(func, name)
    return relax.Call(new_gv, outer_args)
