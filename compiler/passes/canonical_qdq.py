"""Normalisation pass canonical_qdq: rewrite the quantisation patterns of real quantizers into the
dialect fold_qdq reads (docs/onnx-schema.md), where today's ISA computes them exactly.

**Activations.** A *quantiser chain* is a run of ``Relu``, float ``Clip``, ``QuantizeLinear``, integer
``Clip`` and ``DequantizeLinear`` nodes between two layers (``Gemm -> Q -> DQ -> Relu -> Q -> DQ`` as
onnxruntime writes it, ``Q -> Clip(int) -> DQ`` as Brevitas writes a 4-bit activation, ReLU6-style
``Clip`` on either side of the Q/DQ). All its Q/DQ nodes must share one power-of-two scale ``s``.
Every node of it is a clamp of ``r = round_half_even(x / s)`` (rounding is monotone, so a clamp
before a QuantizeLinear is the clamp of its rounded bounds), so the chain as a whole is
``clamp(r, L, H)`` times ``s``, with zero points subtracted (``q - z``). Today's REQ saturates to a
signed ``b``-bit range after an optional RELU, so the chain compiles exactly when ``[L, H]`` is

- ``[-2**(b-1), 2**(b-1) - 1]``: a signed ``b``-bit format (int8/int16 with zero point 0, uint8
  with zero point 128, an integer Clip of a narrower range), or
- ``[0, 2**(b-1) - 1]`` directly after a layer: RELU then a signed ``b``-bit format (uint8 with
  zero point 0 after a Relu is ``b = 9``: the same integers as an int9 that is never negative);

for ``2 <= b <= 16`` (the neuron word). It is rewritten as ``[Relu ->] [Clip ->] Q -> DQ`` with an
int8/int16 zero point of 0 (the Clip only for widths other than 8 and 16). Anything else is refused
in one line naming the node and the pattern. A chain after MaxPool or Flatten that clamps to a range containing the one its
input already has is the identity and is removed.

**Weights and biases.** A DequantizeLinear of an integer initializer with a nonzero or unsigned zero
point, or with per-axis power-of-two scales, is rewritten as one with the integers ``(q - z) *
2**(f_max - f_c)`` (exact) at the per-tensor scale ``2**-f_max``, stored as int8/int16 (int32 for a
bias) when they fit; per-channel scales that span more than the weight word are refused ("needs ISA
v2: per-channel weight scales").
"""

from __future__ import annotations

import math

import numpy as np

from axtrain.compiler.ir import CompilerIR, Graph, Node
from axtrain.compiler.passes.graph_edit import consumers, fresh_index, make_node, producers, prune_initializers
from axtrain.compiler.subset import refuse

CHAIN_OPS = ("Relu", "Clip", "QuantizeLinear", "DequantizeLinear")
MAX_ACTIVATION_BITS = 16  # the neuron word (REQ saturates to at most this width)
_DTYPE_RANGES = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767), "uint16": (0, 65535)}


def _pow2_frac(value: float) -> int | None:
    if not math.isfinite(value) or value <= 0:
        return None
    mantissa, exponent = math.frexp(value)
    return 1 - exponent if mantissa == 0.5 else None


def _scalar(graph: Graph, node: Node, position: int) -> np.ndarray | None:
    if position >= len(node.inputs) or not node.inputs[position]:
        return None
    return graph.initializers.get(node.inputs[position])


def _zero(graph: Graph, node: Node) -> tuple[int, str] | None:
    """The zero point and its dtype name of a Q/DQ node (0 and the output type when absent)."""
    zero = _scalar(graph, node, 2)
    if zero is None:
        if len(node.inputs) > 2 and node.inputs[2]:
            return None  # not a constant: validate refuses it
        code = int(node.attrs.get("output_dtype", 0) or 2)
        return 0, {2: "uint8", 3: "int8", 4: "uint16", 5: "int16"}.get(code, f"type{code}")
    if zero.size != 1:
        return None
    return int(zero.reshape(-1)[0]), str(zero.dtype)


class _Chain:
    def __init__(self, start: str, nodes: list[Node]) -> None:
        self.start = start
        self.nodes = nodes


def _chains(graph: Graph) -> list[_Chain]:
    """Every maximal run of CHAIN_OPS on activations that contains a QuantizeLinear."""
    producer, users = producers(graph), consumers(graph)
    outputs = {name for name, _ in graph.outputs}
    found: list[_Chain] = []
    for node in graph.nodes:
        if node.op not in CHAIN_OPS or not node.inputs or node.inputs[0] in graph.initializers:
            continue
        before = producer.get(node.inputs[0])
        if before is not None and before.op in CHAIN_OPS and len(users.get(node.inputs[0], [])) == 1:
            continue  # not the start of a run
        run = [node]
        while True:
            tensor = run[-1].outputs[0] if run[-1].outputs else ""
            nxt = users.get(tensor, [])
            if tensor in outputs or len(nxt) != 1 or nxt[0].op not in CHAIN_OPS or nxt[0].inputs[0] != tensor:
                break
            run.append(nxt[0])
        if any(n.op == "QuantizeLinear" for n in run):
            found.append(_Chain(node.inputs[0], run))
    return found


def _round_bound(value: float, scale: float) -> float:
    return float(np.rint(np.float32(value) / np.float32(scale))) if math.isfinite(value) else value


def _scale_text(scale: float) -> str:
    frac = _pow2_frac(scale)
    return f"2**-{frac}" if frac is not None else repr(scale)


def _analyse(graph: Graph, chain: _Chain) -> tuple[float, float, float, bool] | None:
    """``(scale, L, H, trailing_ok)`` of a chain, or None where it is not a chain this pass reads
    (per-axis scales, non-constant parameters: validate names those). The scale may be any
    positive float32 (ISA 2 requantises non-power-of-two scales by multipliers)."""
    scales = set()
    for node in chain.nodes:
        if node.op in ("QuantizeLinear", "DequantizeLinear"):
            scale = _scalar(graph, node, 1)
            if scale is None or scale.size != 1 or scale.dtype != np.float32:
                return None
            scale_number = float(scale.reshape(-1)[0])
            if not math.isfinite(scale_number) or scale_number <= 0:
                return None
            scales.add(scale_number)
    if len(scales) != 1:
        first = next(n for n in chain.nodes if n.op == "QuantizeLinear")
        raise refuse(first, f"the quantiser chain requantises at {len(scales)} scales ({', '.join(_scale_text(s) for s in sorted(scales))}); one scale per layer output is supported")
    frac_scale = scales.pop()
    low, high = -math.inf, math.inf
    zero_q: int | None = None
    integer = False  # between a Q and its DQ
    for node in chain.nodes:
        if node.op == "Relu":
            if integer:
                raise refuse(node, "a Relu between a QuantizeLinear and its DequantizeLinear is not supported")
            low = max(low, 0.0)
        elif node.op == "Clip":
            bounds: list[float] = []
            for position in (1, 2):
                value = _scalar(graph, node, position)
                if value is None and position < len(node.inputs) and node.inputs[position]:
                    return None
                if value is not None and value.size != 1:
                    return None
                bounds.append(math.nan if value is None else float(value.reshape(-1)[0]))
            if integer:
                assert zero_q is not None
                lo, hi = (b - zero_q if not math.isnan(b) else d for b, d in zip(bounds, (-math.inf, math.inf), strict=True))
            else:
                lo, hi = (_round_bound(b, frac_scale) if not math.isnan(b) else d for b, d in zip(bounds, (-math.inf, math.inf), strict=True))
            low, high = max(low, lo), min(high, hi)
        elif node.op == "QuantizeLinear":
            zero = _zero(graph, node)
            if zero is None or zero[1] not in _DTYPE_RANGES:
                return None
            zero_q = zero[0]
            dmin, dmax = _DTYPE_RANGES[zero[1]]
            low, high = max(low, dmin - zero_q), min(high, dmax - zero_q)
            integer = True
        else:  # DequantizeLinear
            zero = _zero(graph, node) if len(node.inputs) > 2 and node.inputs[2] else (0, "")
            if zero is None or not integer:
                return None
            if zero[0] != zero_q:
                raise refuse(node, f"zero point {zero[0]} differs from its QuantizeLinear's ({zero_q})")
            integer = False
    if integer:
        return None  # ends inside the integer domain (an integer graph output): validate refuses it
    # A float Clip after the last DequantizeLinear must clip at multiples of the scale to be a clamp.
    trailing_ok = True
    last_dq = max(i for i, n in enumerate(chain.nodes) if n.op == "DequantizeLinear")
    for node in chain.nodes[last_dq + 1:]:
        if node.op == "Clip":
            for position in (1, 2):
                value = _scalar(graph, node, position)
                if value is not None and not float(np.float32(value.reshape(-1)[0]) / np.float32(frac_scale)).is_integer():
                    trailing_ok = False
    return frac_scale, low, high, trailing_ok


def _format_of(low: float, high: float) -> tuple[int, bool] | None:
    """``(bits, relu)`` of a clamp range today's REQ computes exactly, or None."""
    for bits in range(2, MAX_ACTIVATION_BITS + 1):
        top = (1 << (bits - 1)) - 1
        if high == top and low == -(1 << (bits - 1)):
            return bits, False
        if high == top and low == 0:
            return bits, True
    return None


def _raw_format(zero: tuple[int, str] | None, low: float, high: float) -> tuple[int, bool] | None:
    """``(bits, relu)`` when the clamp range is the Q type's whole range around its zero point ``z``,
    ``[dmin - z, dmax - z]``, or ``[0, dmax - z]`` after a Relu (``dmin - z < 0``): stored as the raw
    integers with the zero point (ISA 2). None for any other range (a clamp inside the type)."""
    if zero is None or zero[1] not in _DTYPE_RANGES:
        return None
    z, dtype = zero
    dmin, dmax = _DTYPE_RANGES[dtype]
    bits = 8 if dtype in ("int8", "uint8") else 16
    if high != dmax - z:
        return None
    if low == dmin - z:
        return bits, False
    if low == 0 and dmin - z < 0:
        return bits, True
    return None


def _describe(low: float, high: float) -> str:
    return f"[{int(low) if math.isfinite(low) else low}, {int(high) if math.isfinite(high) else high}]"


def _canonical_weights(graph: Graph) -> Graph:
    """DequantizeLinear of integer initializers with zero points or per-axis scales -> per-tensor,
    zero point 0 (see the module docstring)."""
    initializers = dict(graph.initializers)
    nodes: list[Node] = []
    for node in graph.nodes:
        if node.op != "DequantizeLinear" or not node.inputs or node.inputs[0] not in initializers:
            nodes.append(node)
            continue
        q = initializers[node.inputs[0]]
        scale = _scalar(graph, node, 1)
        zero = _scalar(graph, node, 2)
        if q.dtype.kind not in "iu" or scale is None or scale.dtype != np.float32 or (len(node.inputs) > 2 and node.inputs[2] and zero is None):
            nodes.append(node)
            continue
        per_axis = scale.size != 1
        shifted = zero is not None and (zero.dtype.kind == "u" or np.any(zero != 0)) or q.dtype.kind == "u"
        if not per_axis and not shifted:
            nodes.append(node)
            continue
        fracs = [_pow2_frac(float(v)) for v in scale.reshape(-1)]
        if any(f is None for f in fracs):
            nodes.append(node)  # non-power-of-two: kept; fold_qdq requantises it per neuron (ISA 2)
            continue
        values = q.astype(np.int64)
        axis = int(node.attrs.get("axis", 1)) % max(q.ndim, 1)
        shape = [1] * q.ndim
        if per_axis:
            if q.ndim == 0 or scale.ndim != 1 or q.shape[axis] != scale.size:
                nodes.append(node)
                continue
            shape[axis] = scale.size
        if zero is not None:
            values = values - (zero.astype(np.int64).reshape(shape) if per_axis and zero.size > 1 else int(zero.reshape(-1)[0]))
        top = max(f for f in fracs if f is not None)
        shifts = np.array([top - f for f in fracs if f is not None], dtype=np.int64)
        if per_axis:
            values = values << shifts.reshape(shape)
        target = next((d for d in (np.int8, np.int16, np.int32) if not values.size or (np.iinfo(d).min <= values.min() and values.max() <= np.iinfo(d).max)), None)
        if target is None or (per_axis and target == np.int32 and q.dtype.itemsize < 4):
            if per_axis and not shifted:
                nodes.append(node)  # ISA 2: per-neuron shifts in the requant table (fold_qdq)
                continue
            raise refuse(node, f"per-channel weight scales 2**-{min(f for f in fracs if f is not None)} .. 2**-{top} with a zero point do not fit one 16-bit weight word at one scale")
        name = f"{node.inputs[0]}.canonical"
        scale_name = f"{node.inputs[1]}.canonical"
        initializers[name] = values.astype(target)
        initializers[scale_name] = np.array(math.ldexp(1.0, -top), dtype=np.float32)
        nodes.append(Node(index=node.index, name=node.name, op=node.op, domain=node.domain, inputs=(name, scale_name), outputs=node.outputs, attrs={}, metadata=node.metadata))
    return graph.replace(nodes=tuple(nodes), initializers=prune_initializers(initializers, nodes))


def _already_canonical(graph: Graph, chain: _Chain, bits: int, relu: bool, container: type) -> bool:
    """Is the chain already ``[Relu ->] [Clip ->] Q -> DQ`` with zero points 0 of the container type
    (the Clip only for widths other than 8 and 16)? fold_qdq reads that form as it is."""
    ops = [n.op for n in chain.nodes]
    expected = (["Relu"] if relu else []) + (["Clip"] if bits not in (8, 16) else []) + ["QuantizeLinear", "DequantizeLinear"]
    if ops != expected:
        return False
    for node in chain.nodes[-2:]:
        zero = _scalar(graph, node, 2)
        if zero is None or zero.dtype != np.dtype(container) or int(zero.reshape(-1)[0]) != 0:
            return False
    return True


def canonical_graph(graph: Graph) -> Graph:
    """``graph`` with its weights and quantiser chains in the compiler's dialect (pure)."""
    graph = _canonical_weights(graph)
    producer = producers(graph)
    input_names = {name for name, *_ in graph.inputs}
    replaced: dict[int, list[Node]] = {}  # index of a chain's first node -> its canonical nodes
    removed: set[int] = set()
    ranges: dict[str, tuple[float, float, float]] = {}  # tensor -> (scale, L, H) known after a chain
    initializers = dict(graph.initializers)
    index = fresh_index(graph)
    for chain in _chains(graph):
        analysed = _analyse(graph, chain)
        if analysed is None:
            continue
        scale, low, high, trailing_ok = analysed
        first, last = chain.nodes[0], chain.nodes[-1]
        q = next(n for n in chain.nodes if n.op == "QuantizeLinear")
        before = producer.get(chain.start)
        # Through MaxPool/Flatten a range stays what it was: a chain that only re-clamps it is the identity.
        source = before.inputs[0] if before is not None and before.op in ("MaxPool", "Flatten") else None
        if source is not None and source in ranges:
            known = ranges[source]
            if known[0] == scale and low <= known[1] and known[2] <= high:
                ranges[last.outputs[0]] = known
                removed.update(n.index for n in chain.nodes)
                replaced[first.index] = [make_node(index, f"{q.name or q.index}/identity", "Identity", [chain.start], [last.outputs[0]])]
                index += 1
                continue
        if not trailing_ok:
            raise refuse(last, "a Clip after the DequantizeLinear at bounds that are not multiples of its scale is not supported")
        fmt = _format_of(low, high)
        zero_point = 0
        at_layer = before is not None and before.op in ("Gemm", "Conv", "MatMul", "Add")
        if fmt is not None and fmt[0] not in (8, 16) and _pow2_frac(scale) is None:
            fmt = None  # no exact Clip at a non-power-of-two scale: keep the type and its zero point instead
        if fmt is not None and fmt[1] and not at_layer and _raw_format(_zero(graph, q), low, high) is not None:
            fmt = None  # an unsigned range off a layer (the graph input, after a pool): the stored type itself
        if fmt is None:
            zero = _zero(graph, q)
            raw = _raw_format(zero, low, high)
            if raw is None:
                raise refuse(q, f"activation range {_describe(low, high)} LSB (zero point {zero[0] if zero else '?'}) is neither a signed format{' after a Relu' if low == 0 else ''} of at most {MAX_ACTIVATION_BITS} bits nor its type's whole range around the zero point")
            # ISA 2: an asymmetric range kept as the stored integers q = r + z (REQ adds z, the
            # consuming layer folds -z * sum(w) into its bias; docs/numerics.md).
            assert zero is not None
            bits, relu, zero_point = raw[0], raw[1], zero[0]
            fmt = (bits, relu)
            unsigned_raw = zero[1].startswith("u")
        else:
            unsigned_raw = False
        bits, relu = fmt
        if relu and not at_layer:
            where = "the graph input" if chain.start in input_names else f"the output of {before.label}" if before is not None else f"'{chain.start}'"
            raise refuse(q, f"unsigned activation range {_describe(low, high)} on {where} that is not its type's whole range (the hardware's other unsigned values come only from a layer's RELU)")
        container: type = np.int8 if bits <= 8 else np.int16
        if zero_point or unsigned_raw:
            zero_info = _zero(graph, q)
            assert zero_info is not None
            container = np.dtype(zero_info[1]).type
        if bits not in (8, 16) and _pow2_frac(scale) is None:
            raise refuse(q, f"a {bits}-bit activation at the non-power-of-two scale {scale!r} is not supported (8 or 16 bits)")
        ranges[last.outputs[0]] = (scale, 0.0 if relu else float(-(1 << (bits - 1))), float((1 << (bits - 1)) - 1))
        if not (zero_point or unsigned_raw) and _already_canonical(graph, chain, bits, relu, container):
            continue  # the compiler's own dialect (our exporter's graphs): left exactly as it is
        tag = q.name or f"q{q.index}"
        scale_name, zero_name = f"{tag}.canonical_scale", f"{tag}.canonical_zero"
        initializers[scale_name] = np.array(scale, dtype=np.float32)
        initializers[zero_name] = np.array(zero_point, dtype=container)
        made: list[Node] = []
        tensor = chain.start
        if relu:
            made.append(make_node(index, f"{tag}/relu", "Relu", [tensor], [f"{tag}.canonical_relu"]))
            tensor, index = f"{tag}.canonical_relu", index + 1
        if bits not in (8, 16):
            lo_name, hi_name = f"{tag}.canonical_clip_min", f"{tag}.canonical_clip_max"
            initializers[lo_name] = np.array(-(1 << (bits - 1)) * scale, dtype=np.float32)  # exact: scale is a power of two here
            initializers[hi_name] = np.array(((1 << (bits - 1)) - 1) * scale, dtype=np.float32)
            made.append(make_node(index, f"{tag}/clip", "Clip", [tensor, lo_name, hi_name], [f"{tag}.canonical_clip"]))
            tensor, index = f"{tag}.canonical_clip", index + 1
        made.append(Node(index=q.index, name=q.name, op="QuantizeLinear", domain="", inputs=(tensor, scale_name, zero_name), outputs=(f"{tag}.canonical_q",), attrs={}, metadata=q.metadata))
        last_dq = next(n for n in reversed(chain.nodes) if n.op == "DequantizeLinear")
        dq_index, dq_name = (last_dq.index, last_dq.name) if last_dq.index != q.index else (index, f"{tag}/dequantize")
        made.append(Node(index=dq_index, name=dq_name, op="DequantizeLinear", domain="", inputs=(f"{tag}.canonical_q", scale_name, zero_name), outputs=(last.outputs[0],), attrs={}, metadata=last_dq.metadata))
        index += 1
        removed.update(n.index for n in chain.nodes)
        replaced[first.index] = made
    if not replaced:
        return graph
    nodes: list[Node] = []
    for node in graph.nodes:
        if node.index in replaced:
            nodes.extend(replaced[node.index])
        elif node.index not in removed:
            nodes.append(node)
    return graph.replace(nodes=tuple(nodes), initializers=prune_initializers(initializers, nodes))


def canonical_qdq(ir: CompilerIR) -> CompilerIR:
    """Rewrite quantiser chains and weight quantisation into the compiler's dialect (module docstring)."""
    assert ir.graph is not None
    return ir.update(graph=canonical_graph(ir.graph))
