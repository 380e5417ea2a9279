"""Function-preserving transformations of a trained path-level network (Net2Net; Cai et al., ICML 2018).

Each transformation is a pure function: a PathArch and its built network in, a Transformed out (the
new PathArch, a new network that ``build_path`` makes for it with every tensor loaded strictly, and
the names of the modules it created or rewrote). The input network is never changed. In eval mode
the new network computes the old function, up to float rounding:

- ``widen``: more hidden units in a sep (multiplier) or MBConv (expansion) edge; new units copy
  random old ones (within their depthwise group) and the consuming 1x1 conv divides each old
  unit's column by its number of copies, so the sum it computes is unchanged (Net2WiderNet).
- ``deepen_layer``: a new residual layer after `after`, in the same stage; its branch's BatchNorms
  are calibrated on data and the last one's scale and shift are zero, so the layer is x + 0.
  (Zero, not identity: the space's layers carry a shortcut.)
- ``deepen_edge``: an identity-initialised ``conv1`` or ``sepK_mM`` (M even) after an edge's op.
- ``branch_add``: an edge becomes ``add`` of 2 to 4 copies of it. The add merge is a plain sum
  (one ONNX Add, the paper's add); each copy's last BatchNorm has its scale and shift divided by
  the number of copies, so the copies' sum is the old output. Parameter-free edges are refused.
- ``branch_concat``: an edge becomes ``cat`` of copies that each produce a slice of its output
  channels (rows of the last conv and BN); a channel-wise edge (identity, pooling) becomes
  ``cat_split`` with the input split the same way, since its output channel c reads only channel c.
- ``insert_node``: an identity edge becomes ``cat_split(identity, identity[, identity])``.
- ``replace_identity``: an identity edge becomes ``conv1`` (identity matrix, the centre tap) or
  ``sepK_mM`` (depthwise +1 / -1 at the centre, see modules.py for why this is exact) whose
  BatchNorms take their running statistics from a few batches of data and invert them, so they
  are the identity in eval mode and close to it when fine-tuning starts in train mode.

Copies get identical gradients and stay copies; ``perturb`` adds symmetry-breaking Gaussian noise to
the touched convolutions. It changes the function, so apply it only after ``max_output_change`` of
the noise-free result has been checked.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from itertools import pairwise

import torch
from torch import nn

from ..space import Network, SearchSpace
from .cell import MAX_BRANCHES, Edge, EdgeOp, EdgeSite, Node, PathArch, Tree, edge_op, even_split, replace_edge
from .modules import build_path, cell_module_name, edge_modules, join, make_edge

State = dict[str, torch.Tensor]
OUTPUT_LAYERS = {"conv1": ("0", "1"), "sep": ("pointwise.0", "pointwise.1"), "mbconv": ("project.0", "project.1")}
# Layers whose output units are the hidden units, and the 1x1 conv that consumes them.
HIDDEN_LAYERS = {
    "sep": (("depthwise.0", "depthwise.1"), "pointwise.0"),
    "mbconv": (("expand.0", "expand.1", "depthwise.0", "depthwise.1"), "project.0"),
}
BN_STATS = ("weight", "bias", "running_mean", "running_var")


@dataclass(frozen=True)
class Transformed:
    """The result of a transformation: the new arch, its network, the modules created or rewritten."""

    arch: PathArch
    network: Network
    touched: tuple[str, ...]


def widen(arch: PathArch, net: Network, layer: int, edge: int, width: int, seed: int = 0) -> Transformed:
    """Net2WiderNet: edge `edge` of layer `layer` (sep or MBConv) gets multiplier / expansion `width`."""
    site = _site(arch, layer, edge)
    op = site.op
    if op.kind not in HIDDEN_LAYERS:
        raise ValueError(f"{_where(layer, site)}: only sep and MBConv edges have hidden units to widen")
    if op.kind == "mbconv" and op.width == 1:
        raise ValueError(f"{_where(layer, site)}: an expansion-1 MBConv has no expansion units to replicate")
    if width <= op.width:
        raise ValueError(f"{_where(layer, site)}: width {width} does not exceed the current {op.width}")
    new_op = op.widened(width)
    generator = torch.Generator().manual_seed(seed)
    cin = site.in_channels
    if op.kind == "sep":  # a depthwise unit must stay in its input channel's group
        base = (torch.arange(cin) * op.width)[:, None]
        extra = torch.randint(op.width, (cin, width - op.width), generator=generator)
        mapping = torch.cat([base + torch.arange(op.width)[None], base + extra], dim=1).reshape(-1)
    else:
        old = cin * op.width
        mapping = torch.cat([torch.arange(old), torch.randint(old, (cin * width - old,), generator=generator)])
    states = _edge_states(net, layer, arch.cells[layer])
    producers, consumer = HIDDEN_LAYERS[op.kind]
    states[edge] = _replicate_units(states[edge], producers, consumer, mapping)
    tree = _replaced(arch, layer, site, Edge(new_op.name, site.edge.then))
    return _finish(net, arch, layer, tree, states, [edge])


def branch_add(arch: PathArch, net: Network, layer: int, edge: int, copies: int = 2) -> Transformed:
    """The edge becomes ``add`` of `copies` copies, each copy's last BN scaled by 1 / copies."""
    site = _leaf(arch, layer, edge)
    if not site.op.parametric:
        raise ValueError(f"{_where(layer, site)}: copies of a parameter-free op cannot be scaled to keep the sum; "
                         "use branch_concat")
    _check_count(copies, layer, site)
    states = _edge_states(net, layer, arch.cells[layer])
    scaled = _scale_output(states[edge], site.op.kind, 1.0 / copies)
    tree = _replaced(arch, layer, site, Node("add", (Edge(site.edge.op),) * copies))
    states[edge : edge + 1] = [scaled] * copies
    return _finish(net, arch, layer, tree, states, list(range(edge, edge + copies)))


def branch_concat(arch: PathArch, net: Network, layer: int, edge: int, parts: int = 2) -> Transformed:
    """The edge becomes ``cat`` of copies producing slices of its output (``cat_split`` when channel-wise)."""
    site = _leaf(arch, layer, edge)
    _check_count(parts, layer, site)
    states = _edge_states(net, layer, arch.cells[layer])
    branches = (Edge(site.edge.op),) * parts
    if site.op.channelwise:
        tree = _replaced(arch, layer, site, Node("concat", branches, "split"))
        states[edge : edge + 1] = [{}] * parts
        return _finish(net, arch, layer, tree, states, [])
    tree = _replaced(arch, layer, site, Node("concat", branches))
    sizes = even_split(site.out_channels, parts)
    bounds = [sum(sizes[:i]) for i in range(parts + 1)]
    states[edge : edge + 1] = [_slice_output(states[edge], site.op.kind, lo, hi) for lo, hi in pairwise(bounds)]
    return _finish(net, arch, layer, tree, states, list(range(edge, edge + parts)))


def insert_node(arch: PathArch, net: Network, layer: int, edge: int, parts: int = 2) -> Transformed:
    """An identity edge becomes ``cat_split`` of `parts` identities (a node whose branches can then grow)."""
    site = _site(arch, layer, edge)
    if site.op.kind != "identity":
        raise ValueError(f"{_where(layer, site)}: insert_node works on identity edges")
    return branch_concat(arch, net, layer, edge, parts)


def replace_identity(
    arch: PathArch, net: Network, layer: int, edge: int, op: str, batches: Sequence[torch.Tensor]
) -> Transformed:
    """An identity edge becomes `op` (``conv1`` or ``sepK_mM``, M even) initialised as the identity,
    its BatchNorms set from the edge's input over `batches` (network inputs)."""
    site = _site(arch, layer, edge)
    if site.op.kind != "identity":
        raise ValueError(f"{_where(layer, site)}: replace_identity works on identity edges")
    new_op = _identity_op(op)
    names = edge_modules(arch.cells[layer])
    x = _capture(net, join(cell_module_name(layer), names[edge].op), batches, output=False)
    states = _edge_states(net, layer, arch.cells[layer])
    states[edge] = _identity_state(new_op, x)
    tree = _replaced(arch, layer, site, Edge(new_op.name, site.edge.then))
    return _finish(net, arch, layer, tree, states, [edge])


def deepen_edge(
    arch: PathArch, net: Network, layer: int, edge: int, op: str, batches: Sequence[torch.Tensor]
) -> Transformed:
    """`op` (``conv1`` or ``sepK_mM``, M even), initialised as the identity, goes right after the edge's op."""
    site = _site(arch, layer, edge)
    new_op = _identity_op(op)
    names = edge_modules(arch.cells[layer])
    x = _capture(net, join(cell_module_name(layer), names[edge].op), batches, output=True)
    states = _edge_states(net, layer, arch.cells[layer])
    states.insert(edge + 1, _identity_state(new_op, x))
    tree = _replaced(arch, layer, site, Edge(site.edge.op, Edge(new_op.name, site.edge.then)))
    return _finish(net, arch, layer, tree, states, [edge + 1])


def deepen_layer(
    arch: PathArch, net: Network, after: int, op: str, batches: Sequence[torch.Tensor], seed: int = 0
) -> Transformed:
    """A new residual layer with cell `op` right after layer `after`, in its stage, adding exactly zero."""
    layers = arch.space.layers()
    if not 0 <= after < len(layers):
        raise ValueError(f"layer {after} does not exist; the arch has layers 0..{len(layers) - 1}")
    new_op = edge_op(op)
    if not new_op.parametric:
        raise ValueError(f"deepen_layer needs an op with weights (conv1, sepK, kK_eE), got {op!r}")
    settings = arch.space.settings
    stage, first = 0, 0
    while first + settings.stages[stage].depth <= after:
        first += settings.stages[stage].depth
        stage += 1
    channels = settings.stages[stage].channels
    x = _capture(net, f"layers.{after}", batches, output=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = make_edge(new_op, channels, channels, 1)
    _calibrate(module, x)
    out_bn = module.get_submodule(OUTPUT_LAYERS[new_op.kind][1])
    with torch.no_grad():
        out_bn.weight.zero_()
        out_bn.bias.zero_()
    stages = list(settings.stages)
    stages[stage] = replace(stages[stage], depth=stages[stage].depth + 1)
    space = SearchSpace(replace(settings, stages=tuple(stages)), arch.space.num_classes)
    new_arch = PathArch(space, (*arch.cells[: after + 1], Edge(new_op.name), *arch.cells[after + 1 :]))
    state: State = {}
    for key, value in net.state_dict().items():
        parts = key.split(".")
        if parts[0] == "layers" and int(parts[1]) > after:
            key = ".".join(["layers", str(int(parts[1]) + 1), *parts[2:]])
        state[key] = value.detach().clone()
    name = cell_module_name(after + 1)
    state.update(_under(name, module.state_dict()))
    return _load(net, new_arch, state, (name,))


def max_output_change(old: nn.Module, new: nn.Module, batches: Sequence[torch.Tensor]) -> float:
    """Largest absolute difference of the two networks' eval-mode outputs over `batches`."""
    worst = 0.0
    with _eval(old), _eval(new), torch.no_grad():
        for x in batches:
            worst = max(worst, float((old(x) - new(x)).abs().max()))
    return worst


def perturb(net: Network, touched: Sequence[str], scale: float = 0.01, seed: int = 0) -> Network:
    """A copy of `net` whose conv weights under `touched` get Gaussian noise of `scale` times their RMS.

    Breaks the symmetry of replicated units and branches; it changes the function, so call it only
    after the noise-free transformation has passed ``max_output_change``."""
    noisy = copy.deepcopy(net)
    generator = torch.Generator().manual_seed(seed)
    prefixes = tuple(f"{name}." for name in touched)
    with torch.no_grad():
        for name, param in noisy.named_parameters():
            if param.ndim == 4 and name.startswith(prefixes):
                rms = param.pow(2).mean().sqrt()
                param.add_(torch.randn(param.shape, generator=generator) * scale * rms)
    return noisy


def _where(layer: int, site: EdgeSite) -> str:
    return f"layer {layer} edge {site.index} ({site.edge.op})"


def _site(arch: PathArch, layer: int, edge: int) -> EdgeSite:
    if not 0 <= layer < len(arch.cells):
        raise ValueError(f"layer {layer} does not exist; the arch has layers 0..{len(arch.cells) - 1}")
    found = arch.sites(layer)
    if not 0 <= edge < len(found):
        raise ValueError(f"layer {layer} has no edge {edge}; its cell {arch.cells[layer]} has {len(found)} edges")
    return found[edge]


def _leaf(arch: PathArch, layer: int, edge: int) -> EdgeSite:
    site = _site(arch, layer, edge)
    if site.edge.then is not None:
        raise ValueError(f"{_where(layer, site)}: it feeds '{site.edge.then}'; only an edge with nothing after it "
                         "can become a node")
    return site


def _check_count(count: int, layer: int, site: EdgeSite) -> None:
    if not 2 <= count <= MAX_BRANCHES:
        raise ValueError(f"{_where(layer, site)}: a node has 2 to {MAX_BRANCHES} branches, asked for {count}")


def _replaced(arch: PathArch, layer: int, site: EdgeSite, new: Tree) -> Tree:
    """Layer `layer`'s cell with the edge at `site` replaced by `new`, checked against the layer."""
    try:
        tree = replace_edge(arch.cells[layer], site.index, new)
        arch.with_cell(layer, tree)
    except ValueError as err:
        raise ValueError(f"{_where(layer, site)}: {err}") from None
    return tree


def _identity_op(name: str) -> EdgeOp:
    op = edge_op(name)
    if op.kind == "conv1" or (op.kind == "sep" and op.width % 2 == 0):
        return op
    raise ValueError(f"{name!r} cannot start as an exact identity: use conv1 or sepK_mM with an even M "
                     "(pairs of ReLU units carry +x and -x; ReLU6 and single units clip negative inputs)")


def _edge_states(net: Network, layer: int, tree: Tree) -> list[State]:
    """The state of each edge's op module of layer `layer`'s cell, in edge order."""
    base = cell_module_name(layer)
    state = net.state_dict()
    return [_sub(state, join(base, names.op)) for names in edge_modules(tree)]


def _sub(state: State, prefix: str) -> State:
    start = f"{prefix}."
    return {key[len(start) :]: value.detach().clone() for key, value in state.items() if key.startswith(start)}


def _under(prefix: str, sub: State) -> State:
    return {join(prefix, key): value.detach().clone() for key, value in sub.items()}


def _finish(
    net: Network, arch: PathArch, layer: int, tree: Tree, states: list[State], touched: list[int]
) -> Transformed:
    """Assemble the new cell's state from per-edge states and build the new network."""
    base = cell_module_name(layer)
    state = {key: value.detach().clone() for key, value in net.state_dict().items()
             if not key.startswith(f"{base}.")}
    names = edge_modules(tree)
    for edge_names, sub in zip(names, states, strict=True):
        state.update(_under(join(base, edge_names.op), sub))
    return _load(net, arch.with_cell(layer, tree), state, tuple(join(base, names[i].op) for i in touched))


def _load(net: Network, arch: PathArch, state: State, touched: tuple[str, ...]) -> Transformed:
    """``build_path(arch)`` loaded strictly with `state` (so the module is exactly what the arch builds)."""
    with torch.device("meta"):
        new = build_path(arch)
    new.load_state_dict(state, strict=True, assign=True)
    new.train(net.training)
    return Transformed(arch, new, touched)


def _replicate_units(sub: State, producers: tuple[str, ...], consumer: str, mapping: torch.Tensor) -> State:
    """Unit j of the widened op copies old unit mapping[j]; the consumer splits each old column over its copies."""
    counts = torch.bincount(mapping).to(torch.float32)
    result: State = {}
    for key, value in sub.items():
        owner = key.rsplit(".", 1)[0]
        if owner in producers and value.ndim >= 1:
            result[key] = value[mapping].clone()
        elif key == f"{consumer}.weight":
            result[key] = value[:, mapping] / counts[mapping].view(1, -1, 1, 1)
        else:
            result[key] = value.clone()
    return result


def _scale_output(sub: State, kind: str, factor: float) -> State:
    bn = OUTPUT_LAYERS[kind][1]
    return {key: value * factor if key in (f"{bn}.weight", f"{bn}.bias") else value.clone()
            for key, value in sub.items()}


def _slice_output(sub: State, kind: str, lo: int, hi: int) -> State:
    conv, bn = OUTPUT_LAYERS[kind]
    sliced = {f"{conv}.weight", *(f"{bn}.{name}" for name in BN_STATS)}
    return {key: value[lo:hi].clone() if key in sliced else value.clone() for key, value in sub.items()}


def _capture(net: nn.Module, name: str, batches: Sequence[torch.Tensor], output: bool) -> torch.Tensor:
    """The input (or output) of module `name` over `batches` in eval mode, concatenated along the batch."""
    if not batches:
        raise ValueError("give at least one batch of network inputs to set the new BatchNorms from")
    seen: list[torch.Tensor] = []

    def hook(_module: nn.Module, args: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        seen.append((out if output else args[0]).detach().clone())

    handle = net.get_submodule(name).register_forward_hook(hook)
    try:
        with _eval(net), torch.no_grad():
            for x in batches:
                net(x)
    finally:
        handle.remove()
    return torch.cat(seen)


@contextmanager
def _eval(module: nn.Module) -> Iterator[None]:
    """Eval mode for the duration, then the module's own mode again."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


def _identity_bn(bn: nn.Module, mean: torch.Tensor, var: torch.Tensor) -> None:
    """Running statistics from data, affine inverting them: the identity in eval mode."""
    assert isinstance(bn, nn.BatchNorm2d) and bn.running_mean is not None and bn.running_var is not None
    bn.running_mean.copy_(mean)
    bn.running_var.copy_(var)
    bn.weight.copy_(torch.sqrt(var + bn.eps))
    bn.bias.copy_(mean)


def _identity_state(op: EdgeOp, x: torch.Tensor) -> State:
    """The state of `op` (c -> c channels) initialised as the identity on inputs like `x`."""
    c = x.shape[1]
    mean, var = x.mean(dim=(0, 2, 3)), x.var(dim=(0, 2, 3), unbiased=False)
    with torch.random.fork_rng(devices=[]):
        module = make_edge(op, c, c, 1)
    with torch.no_grad():
        if op.kind == "conv1":
            module.get_submodule("0").weight.copy_(torch.eye(c).view(c, c, 1, 1))
            _identity_bn(module.get_submodule("1"), mean, var)
        else:
            m, k = op.width, op.kernel
            sign = torch.tensor([1.0, -1.0]).repeat(m // 2)  # hidden unit i*m + r carries sign[r] * x_i
            depthwise = torch.zeros(c * m, 1, k, k)
            depthwise[:, 0, k // 2, k // 2] = sign.repeat(c)
            module.get_submodule("depthwise.0").weight.copy_(depthwise)
            _identity_bn(module.get_submodule("depthwise.1"), (mean[:, None] * sign[None]).reshape(-1),
                         var.repeat_interleave(m))
            pointwise = torch.kron(torch.eye(c), sign[None] / (m // 2))  # relu(x) - relu(-x) == x
            module.get_submodule("pointwise.0").weight.copy_(pointwise.view(c, c * m, 1, 1))
            _identity_bn(module.get_submodule("pointwise.1"), mean, var)
    return {key: value.detach().clone() for key, value in module.state_dict().items()}


def _calibrate(module: nn.Module, x: torch.Tensor) -> None:
    """BatchNorm running statistics of `module` from one train-mode pass over `x` (cumulative average)."""
    norms = [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]
    momenta = [bn.momentum for bn in norms]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None
    module.train()
    with torch.no_grad():
        module(x)
    for bn, momentum in zip(norms, momenta, strict=True):
        bn.momentum = momentum
    module.eval()
