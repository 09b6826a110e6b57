"""Pass 2, fold_qdq: walk the input-to-output chain and fold QuantizeLinear/DequantizeLinear pairs
into the formats of integer layer records (``axtrain.hwmodels.layers.QuantizedLayer``).

Accepted chain (docs/onnx-schema.md, docs/compiler.md):

    input -> Q -> DQ -> { compute [-> Relu] -> Q -> DQ | MaxPool [-> Q -> DQ] | Flatten } ... -> output

where compute is ``Gemm`` (transB 0 or 1), ``Conv``, or ``MatMul [-> Add]``, with weights a
DequantizeLinear of an int8/int16 initializer and the bias a DequantizeLinear of an int32 one at
scale ``2**-(fa+fw)``. Node metadata (axtrain.*) gives modes, voltage and layer names, and its
formats must agree with the scales.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from axtrain.compiler.ir import CompilerIR, Graph, Node
from axtrain.compiler.subset import COMPUTE_OPS, WEIGHT_DTYPES, activation_format_any, initializer, parse_format, pow2_frac, refuse, scale_frac
from axtrain.errors import HardwareModelError, OnnxError
from axtrain.formats import onnx_schema as keys
from axtrain.formats.isa import operand_range
from axtrain.hwmodels.fixedpoint import FixedPointFormat, quantize_multiplier
from axtrain.hwmodels.layers import QuantizedLayer
from axtrain.hwmodels.multipliers import EXACT, MultiplierMode
from axtrain.hwmodels.ntv import NOMINAL_VOLTAGE, bit_error_rate


class FloatBiasWarning(UserWarning):
    """A float bias was not a multiple of s_a * s_w and was rounded as onnxruntime's quantizer does."""


class _Chain:
    """Graph navigation: producers and consumers of every tensor."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.producer: dict[str, Node] = {}
        self.consumers: dict[str, list[Node]] = {}
        for node in graph.nodes:
            for name in node.outputs:
                if name:
                    self.producer[name] = node
            for name in node.inputs:
                if name:
                    self.consumers.setdefault(name, []).append(node)
        self.visited: set[int] = set()

    def next_node(self, tensor: str, after: Node | None) -> Node:
        users = self.consumers.get(tensor, [])
        if len(users) == 1:  # the common case: no message to build
            self.visited.add(users[0].index)
            return users[0]
        where = after.label if after is not None else f"input '{tensor}'"
        if not users:
            if tensor == self.graph.outputs[0][0]:
                raise OnnxError(f"{where}: its output '{tensor}' is the graph output in float; a layer must end in QuantizeLinear -> DequantizeLinear (or be the last Gemm/MatMul/Conv)")
            raise OnnxError(f"{where}: its output '{tensor}' is not consumed and is not the graph output")
        if len(users) > 1:
            names = ", ".join(u.label for u in users)
            raise OnnxError(f"{where}: its output '{tensor}' feeds {len(users)} nodes ({names}); only a chain of layers is supported")
        node = users[0]
        self.visited.add(node.index)
        return node

    def constant_dq(self, node: Node, position: int, what: str) -> tuple[np.ndarray, Node]:
        """Input ``position`` of ``node`` must be DequantizeLinear(initializer): its array and the DQ node."""
        name = node.inputs[position] if position < len(node.inputs) else ""
        if name in self.graph.initializers:
            array = self.graph.initializers[name]
            raise refuse(node, f"{what} '{name}' is a {array.dtype} initializer; it must be a DequantizeLinear of an integer initializer")
        dq = self.producer.get(name)
        if dq is not None and dq.op == "DequantizeLinear" and dq.inputs[0] not in self.graph.initializers:
            inner = self.producer.get(dq.inputs[0])
            source = f"{inner.label}, which is not a constant" if inner is not None else f"'{dq.inputs[0]}', which is not a constant"
            raise refuse(node, f"{what} '{name}': its DequantizeLinear ({dq.label}) reads {source}; fold it to an integer initializer")
        if dq is None or dq.op != "DequantizeLinear":
            source = f"comes from {dq.label}" if dq is not None else "is not a constant"
            raise refuse(node, f"{what} '{name}' {source}; it must be a DequantizeLinear of an integer initializer")
        self.visited.add(dq.index)
        return self.graph.initializers[dq.inputs[0]], dq


def _modes(node: Node, out_features: int) -> tuple[MultiplierMode, ...]:
    # One mode when every neuron agrees (the layer's compact form), else one per output neuron.
    text = node.metadata.get(keys.KEY_MULTIPLIER)
    if text is None:
        return (EXACT,)
    modes = keys.parse_multiplier(text, out_features, where=f"{node.label}: metadata")
    return modes if len(set(modes)) > 1 else modes[:1]


def _voltage(node: Node) -> float:
    text = node.metadata.get(keys.KEY_SRAM_VOLTAGE)
    if text is None:
        return NOMINAL_VOLTAGE
    try:
        volts = float(text)
        bit_error_rate(volts)  # range check of the NTV model
    except ValueError:
        raise refuse(node, f"metadata {keys.KEY_SRAM_VOLTAGE}={text!r} is not a number of volts") from None
    except HardwareModelError as exc:
        raise refuse(node, f"metadata {keys.KEY_SRAM_VOLTAGE}: {exc}") from None
    return volts


def _agree(node: Node, key: str, actual: FixedPointFormat, compare_bits: bool = True) -> None:
    declared = parse_format(node, key)
    if declared is None:
        return
    if declared.frac != actual.frac or (compare_bits and declared.bits != actual.bits) or not declared.signed:
        raise refuse(node, f"metadata {key}={declared} disagrees with the graph's quantisation ({actual})")


def _fold_compute(
    chain: _Chain, node: Node, fmt_in: FixedPointFormat, shape: tuple[int, ...], index: int
) -> tuple[QuantizedLayer, Node, FixedPointFormat, tuple[int, ...]]:
    """A compute node and its Relu/Q followers -> one layer; returns the layer, the last Q node, the output shape."""
    graph = chain.graph
    w_int, w_dq = chain.constant_dq(node, 1, "weight")
    if str(w_int.dtype) not in WEIGHT_DTYPES:
        raise refuse(node, f"weight is {w_int.dtype}; int8 or int16 expected")
    transposed = node.op == "Gemm" and node.attrs.get("transB", 0) == 0 or node.op == "MatMul"
    w_scales = _weight_scales(graph, w_dq, w_int, transposed)  # per output neuron, float32 values
    fw = pow2_frac(float(w_scales[0])) if np.all(w_scales == w_scales[0]) else None
    fw = 0 if fw is None else fw  # a non-power-of-two weight scale: the layer requantises by multipliers
    weight = w_int.astype(np.int64)
    if transposed:
        if weight.ndim != 2:
            raise refuse(node, f"weight has shape {list(weight.shape)}, expected 2-D")
        weight = weight.T
    bits = WEIGHT_DTYPES[str(w_int.dtype)]
    declared_w = parse_format(node, keys.KEY_WEIGHT_FORMAT)
    if declared_w is not None:
        if declared_w.frac != fw or declared_w.bits > bits or not declared_w.signed:
            raise refuse(node, f"metadata {keys.KEY_WEIGHT_FORMAT}={declared_w} disagrees with the weight's quantisation (s{bits}.{fw})")
        bits = declared_w.bits
    fmt_w = FixedPointFormat(bits, fw)
    if weight.size and (weight.min() < fmt_w.qmin or weight.max() > fmt_w.qmax):
        raise refuse(node, f"weights exceed the {fmt_w} range")

    # Shapes and geometry.
    attrs: dict[str, object] = {}
    conv_pads = (0, 0, 0, 0)
    if node.op == "Conv":
        if weight.ndim != 4:
            raise refuse(node, f"weight has shape {list(weight.shape)}, expected [out, in, kh, kw]")
        if len(shape) != 3:
            raise refuse(node, f"input has per-sample shape {list(shape)}; Conv needs [channels, height, width]")
        out_ch, in_ch, kh, kw = weight.shape
        kernel = node.attrs.get("kernel_shape", [kh, kw])
        if list(kernel) != [kh, kw]:
            raise refuse(node, f"kernel_shape {kernel} disagrees with the weight {list(weight.shape)}")
        dh, dw = (int(v) for v in node.attrs.get("dilations", [1, 1]))
        if (dh, dw) != (1, 1):
            extent, limit = ((kh - 1) * dh + 1, (kw - 1) * dw + 1), operand_range("CONV", "kh")[1]
            if max(extent) > limit:  # checked before the kernel with zero taps is allocated
                raise refuse(node, f"dilations {[dh, dw]} make the {kh}x{kw} kernel {extent[0]}x{extent[1]} with its zero taps, beyond CONV's {limit}")
            weight = dilate_kernel(weight, dh, dw)
            kh, kw = weight.shape[2:]
        group = int(node.attrs.get("group", 1))
        if in_ch * group != shape[0] or out_ch % group:
            raise refuse(node, f"weight {list(weight.shape)} with group={group} does not fit the input's {shape[0]} channels (in x group = channels, out divisible by group)")
        sh, sw = (int(v) for v in node.attrs.get("strides", [1, 1]))
        pt, pl, pb, pr = conv_pads = node_pads(node, (shape[1], shape[2]), (kh, kw), (sh, sw))
        oh = (shape[1] + pt + pb - kh) // sh + 1
        ow = (shape[2] + pl + pr - kw) // sw + 1
        if oh < 1 or ow < 1:
            raise refuse(node, f"kernel {kh}x{kw} does not fit the {shape[1]}x{shape[2]} input")
        attrs = _geometry_attrs((sh, sw), (pt, pl, pb, pr))
        if group != 1:
            attrs["groups"] = group
        out_shape: tuple[int, ...] = (out_ch, oh, ow)
        op = "conv"
    else:
        if len(shape) != 1:
            raise refuse(node, f"input has per-sample shape {list(shape)}; {node.op} needs a flat vector (add a Flatten)")
        if weight.shape[1] != shape[0]:
            raise refuse(node, f"weight has fan-in {weight.shape[1]}, the input has {shape[0]} features")
        out_shape = (weight.shape[0],)
        op = "dense"
    out_features = weight.shape[0]

    # ISA 2: any non-power-of-two scale (input, weights, output) makes a layer requantise by a
    # per-neuron multiplier and shift (REQ rq=1) instead of a shift; its accumulator scale is
    # s_in * s_w[c], not a power of two.
    requant = not fmt_in.power_of_two or pow2_frac(float(w_scales[0])) is None or not np.all(w_scales == w_scales[0])
    if fmt_in.zero_point and any(conv_pads):
        # The border reads CONV.padv = the zero point (the real value 0, as onnxruntime pads), so the
        # bias fold below is exact at every position (decision 185).
        low, high = operand_range("CONV", "padv")
        if not low <= fmt_in.zero_point <= high:
            raise refuse(node, f"a padded Conv whose input has zero point {fmt_in.zero_point}: CONV's pad value (padv) holds [{low}, {high}]")
    acc_scales = np.float64(fmt_in.scale) * w_scales.astype(np.float64)  # exact products of two float32 values

    # Bias: Gemm/Conv third input, or MatMul -> Add.
    fmt_acc_frac = fmt_in.frac + fw
    bias = np.zeros(out_features, dtype=np.int64)
    bias_node: Node | None = node if node.op in ("Gemm", "Conv") and len(node.inputs) > 2 and node.inputs[2] else None
    bias_position = 2
    current = node
    if node.op == "MatMul" and node.outputs[0] != graph.outputs[0][0]:
        follower = chain.next_node(node.outputs[0], node)
        if follower.op == "Add":
            bias_node = follower
            bias_position = 1 if follower.inputs[0] == node.outputs[0] else 0
            current = follower
        else:
            chain.visited.discard(follower.index)
    bias_origin = "none"
    if bias_node is not None and requant:
        bias, bias_origin = _bias_at_scales(chain, bias_node, bias_position, acc_scales, out_features)
    elif bias_node is not None:
        bias, bias_origin = _bias(chain, bias_node, bias_position, fmt_acc_frac, out_features)
    if fmt_in.zero_point:
        # The input words hold q = r + z: sum w*(q - z) = sum w*q - z * sum w, exactly, into the bias.
        bias = bias - fmt_in.zero_point * weight.reshape(out_features, -1).sum(axis=1)
        if bias.size and (bias.min() < np.iinfo(np.int32).min or bias.max() > np.iinfo(np.int32).max):
            raise refuse(node, f"the bias with the input zero point {fmt_in.zero_point} folded in does not fit int32")
        bias_origin += f", input zero point {fmt_in.zero_point} folded"
    declared_b = parse_format(node, keys.KEY_BIAS_FORMAT)
    if declared_b is not None and (declared_b.frac != fmt_acc_frac or declared_b.bits != 32):
        raise refuse(node, f"metadata {keys.KEY_BIAS_FORMAT}={declared_b} disagrees with the graph (s32.{fmt_acc_frac})")

    # Optional Relu, then the output QuantizeLinear (or a float graph output).
    output_name = graph.outputs[0][0]
    relu = False
    if current.outputs[0] != output_name:
        follower = chain.next_node(current.outputs[0], current)
        relu = follower.op == "Relu"
        if relu:
            current = follower
    if current.outputs[0] == output_name:
        if requant:
            raise refuse(current, f"a float graph output after {node.label} at a non-power-of-two accumulator scale is not supported (add a final QuantizeLinear/DequantizeLinear)")
        follower, fmt_out = current, _float_output(node, current, weight, bias, fmt_in, fmt_acc_frac)
    else:
        if relu:
            follower = chain.next_node(current.outputs[0], current)
        follower, fmt_out = _quantizer(chain, follower, current)
    requant = requant or not fmt_out.power_of_two or bool(fmt_out.zero_point)
    entries: tuple[tuple[int, int, int], ...] | None = None
    if requant:
        try:  # M * 2**-n ~ s_in * s_w[c] / s_out, gemmlowp/TFLite's QuantizeMultiplier (docs/numerics.md)
            entries = tuple((*quantize_multiplier(float(s / fmt_out.scale)), fmt_out.zero_point) for s in acc_scales)
        except HardwareModelError as exc:
            raise refuse(node, str(exc)) from None
    _agree(node, keys.KEY_INPUT_FORMAT, fmt_in)
    _agree(node, keys.KEY_OUTPUT_FORMAT, fmt_out)
    name = node.metadata.get(keys.KEY_LAYER) or node.name or f"layer{index}"
    layer = QuantizedLayer(
        name=name,
        op=op,  # type: ignore[arg-type]
        input_format=fmt_in,
        output_format=fmt_out,
        weight=weight,
        weight_format=fmt_w,
        bias=bias,
        relu=relu,
        multipliers=_modes(node, out_features),
        sram_voltage=_voltage(node),
        meta={"onnx_node": node.name or f"#{node.index}", "bias_origin": bias_origin, "float_output": follower is current},
        requant=entries,
        **attrs,  # type: ignore[arg-type]
    )
    return layer, follower, fmt_out, out_shape


def dilate_kernel(weight: np.ndarray, dh: int, dw: int) -> np.ndarray:
    """A dilated Conv's kernel ``[out, in, kh, kw]`` as the dense kernel it reads:
    ``[out, in, (kh-1)*dh+1, (kw-1)*dw+1]`` with the taps at multiples of the dilation and zeros
    between (decision 187). The same window positions, the same output size and the same integers
    (a zero tap adds 0); the zero taps are weight words like any other (they cost MACs and, under NTV,
    can flip)."""
    out_ch, in_ch, kh, kw = weight.shape
    dense = np.zeros((out_ch, in_ch, (kh - 1) * dh + 1, (kw - 1) * dw + 1), dtype=weight.dtype)
    dense[:, :, ::dh, ::dw] = weight
    return dense


def _weight_scales(graph: Graph, dq: Node, w_int: np.ndarray, transposed: bool) -> np.ndarray:
    """The weight scale of every output neuron (float32 values): one per-tensor scale repeated, or
    per-axis scales along the output axis (0 for ``[out, ...]``, 1 for a transposed ``[in, out]``)."""
    scale = initializer(graph, dq, 1, "scale")
    if scale.dtype != np.float32:
        raise refuse(dq, f"scale is {scale.dtype}, expected float32")
    values = scale.reshape(-1).astype(np.float32)
    if not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise refuse(dq, "weight scales must be positive finite numbers")
    out_axis = 1 if transposed else 0
    outputs = int(w_int.shape[out_axis]) if w_int.ndim > out_axis else 1
    if values.size == 1:
        return np.full(outputs, values[0], dtype=np.float32)
    axis = int(dq.attrs.get("axis", 1)) % max(w_int.ndim, 1)
    if axis != out_axis or values.size != outputs:
        raise refuse(dq, f"per-axis weight scales along axis {axis} ({values.size} values): only one scale per output neuron (axis {out_axis}) is supported")
    zero = graph.initializers.get(dq.inputs[2]) if len(dq.inputs) > 2 and dq.inputs[2] else None
    if zero is not None and np.any(zero != 0):
        raise refuse(dq, "per-axis weight zero points must be 0 (symmetric weights)")
    return values


def _bias_at_scales(chain: _Chain, node: Node, position: int, acc_scales: np.ndarray, out_features: int) -> tuple[np.ndarray, str]:
    """The bias in accumulator integers of a requantising layer (accumulator scale ``s_in * s_w[c]``
    per neuron): an int32 DequantizeLinear at those scales as is (onnxruntime's quantizer writes its
    bias at ``float32(s_in * s_w[c])``), a float32 bias rounded as onnxruntime's quantizer does."""
    graph = chain.graph
    name = node.inputs[position] if position < len(node.inputs) else ""
    target = acc_scales.astype(np.float32)
    if name in graph.initializers and graph.initializers[name].dtype.kind == "f":
        values = graph.initializers[name].astype(np.float32).reshape(-1)
        if values.size != out_features:
            raise refuse(node, f"bias '{name}' has {values.size} values for {out_features} output neurons")
        rounded = np.clip(np.rint(values / target), np.iinfo(np.int32).min, np.iinfo(np.int32).max)
        return rounded.astype(np.int64), "float, rounded at s_a*s_w"
    b_int, b_dq = chain.constant_dq(node, position, "bias")
    if str(b_int.dtype) != "int32" or b_int.size != out_features:
        raise refuse(node, f"bias must be {out_features} int32 values at the scales s_a * s_w (got {b_int.size} {b_int.dtype})")
    scales = initializer(graph, b_dq, 1, "scale").reshape(-1).astype(np.float32)
    scales = np.broadcast_to(scales, (out_features,)) if scales.size == 1 else scales
    if scales.size != out_features:
        raise refuse(node, f"bias has {scales.size} scales for {out_features} output neurons")
    if np.allclose(scales, target, rtol=1e-6, atol=0):
        return b_int.reshape(-1).astype(np.int64), "int32 at s_a*s_w"
    # Another scale: the bias value b * s_b at the accumulator scale, rounded as a float bias is.
    exact = b_int.reshape(-1).astype(np.float64) * scales.astype(np.float64) / acc_scales
    rounded = np.clip(np.rint(exact), np.iinfo(np.int32).min, np.iinfo(np.int32).max)
    if not np.array_equal(rounded, exact):
        warnings.warn(
            f"{node.label}: bias at scales other than s_a*s_w rounded to the accumulator scale (round half to even); "
            f"the bundle equals the graph with that rounded bias",
            FloatBiasWarning,
            stacklevel=2,
        )
    return rounded.astype(np.int64), "int32 rescaled to s_a*s_w"


def _geometry_attrs(strides: tuple[int, int], pads: tuple[int, int, int, int]) -> dict[str, object]:
    """QuantizedLayer fields for strides and pads: the scalar ``stride``/``padding`` where the axes
    (sides) agree, as records of the chain compiler had them, else the separate tuples too."""
    attrs: dict[str, object] = {"stride": strides[0], "padding": pads[0]}
    if strides[0] != strides[1]:
        attrs["strides"] = strides
    if len(set(pads)) > 1:
        attrs["pads"] = pads
    return attrs


def _bias(chain: _Chain, node: Node, position: int, acc_frac: int, out_features: int) -> tuple[np.ndarray, str]:
    """The bias as int64 at the accumulator's scale ``2**-acc_frac``, and where it came from.

    - DequantizeLinear of an int8/int16/int32 initializer at ``2**-fb``: ``fb == acc_frac`` as is,
      ``fb < acc_frac`` shifted left (exact); a finer bias scale only where every value is a
      multiple of the shift (exact), else refused.
    - A float32 initializer: quantised as onnxruntime's static quantizer does
      (``round_half_even(bias / (s_a * s_w))`` in float32, saturated to int32); exact where every
      value is already a multiple of ``s_a * s_w``, else a warning says the compiled model equals
      the graph with that quantised bias (docs/importing.md).
    """
    graph = chain.graph
    name = node.inputs[position] if position < len(node.inputs) else ""
    if name in graph.initializers and graph.initializers[name].dtype.kind == "f":
        values = graph.initializers[name].astype(np.float32).reshape(-1)
        if values.size != out_features:
            raise refuse(node, f"bias '{name}' has {values.size} values for {out_features} output neurons")
        scaled = values / np.float32(math.ldexp(1.0, -acc_frac))
        if not np.all(np.isfinite(scaled)):
            raise refuse(node, f"float bias '{name}' is not finite at the accumulator scale 2**-{acc_frac}")
        rounded = np.clip(np.rint(scaled), np.iinfo(np.int32).min, np.iinfo(np.int32).max)
        if not np.array_equal(rounded, scaled):
            warnings.warn(
                f"{node.label}: float bias '{name}' quantised to int32 at s_a*s_w = 2**-{acc_frac} as onnxruntime's "
                f"quantizer does (round half to even); it was not a multiple of that scale, so the bundle equals the "
                f"graph with the quantised bias, not the float one",
                FloatBiasWarning,
                stacklevel=2,
            )
            return rounded.astype(np.int64), "float, rounded"
        return rounded.astype(np.int64), "float, exact"
    producer = chain.producer.get(name)
    if name and producer is not None and producer.op != "DequantizeLinear":
        raise refuse(node, f"bias '{name}' comes from {producer.label}; it must be a DequantizeLinear of an integer initializer or a float initializer")
    b_int, b_dq = chain.constant_dq(node, position, "bias")
    if str(b_int.dtype) not in ("int8", "int16", "int32"):
        raise refuse(node, f"bias is {b_int.dtype}; int8, int16 or int32 expected")
    fb = scale_frac(graph, b_dq)
    if b_int.size != out_features:
        raise refuse(node, f"bias has {b_int.size} values for {out_features} output neurons")
    integers = b_int.reshape(-1).astype(np.int64)
    if fb < acc_frac:
        integers = integers << (acc_frac - fb)
    elif fb > acc_frac:
        step = 1 << min(fb - acc_frac, 62)
        if np.any(integers % step):
            raise refuse(node, f"bias scale 2**-{fb} is finer than input scale x weight scale 2**-{acc_frac} and its values are not multiples of the difference")
        integers = integers // step
    if integers.size and (integers.min() < np.iinfo(np.int32).min or integers.max() > np.iinfo(np.int32).max):
        raise refuse(node, f"bias at the accumulator scale 2**-{acc_frac} does not fit int32")
    return integers, str(b_int.dtype) if fb == acc_frac else f"{b_int.dtype} at 2**-{fb}"


def _float_output(node: Node, last: Node, weight: np.ndarray, bias: np.ndarray, fmt_in: FixedPointFormat, acc_frac: int) -> FixedPointFormat:
    """A layer whose output is the graph output in float (no final Q/DQ): the accumulator itself,
    exact: ``s16`` when every accumulator value fits the 16-bit neuron word (REQ with shift 0
    saturates nothing), else ``s32`` stored by STA (ISA 2) when the bound fits 32 bits."""
    fan_in = int(np.prod(weight.shape[1:]))
    max_a = max(-fmt_in.qmin, fmt_in.qmax)
    bound = fan_in * max_a * (int(np.abs(weight).max()) if weight.size else 0) + (int(np.abs(bias).max()) if bias.size else 0)
    if bound <= (1 << 15) - 1:
        return FixedPointFormat(16, acc_frac)  # fits the neuron word: REQ with shift 0 saturates nothing
    if bound <= (1 << 31) - 1:
        return FixedPointFormat(32, acc_frac)  # ISA 2: STA stores the 32-bit accumulators (emit)
    raise refuse(last, f"float graph output (no QuantizeLinear after {node.label}) whose accumulator bound {bound} does not fit 32 bits (add a final QuantizeLinear/DequantizeLinear)")


def _clip_bits(graph: Graph, clip: Node, fmt: FixedPointFormat) -> int:
    """The width a Clip before a QuantizeLinear saturates to: its bounds must be a format's range
    ``[-2**(b-1), 2**(b-1) - 1] * 2**-f`` at the Q's scale (docs/onnx-schema.md, narrow formats)."""
    bounds = []
    for position, what in ((1, "min"), (2, "max")):
        value = initializer(graph, clip, position, what)
        if value.size != 1 or value.dtype != np.float32:
            raise refuse(clip, f"{what} must be a float32 scalar")
        bounds.append(math.ldexp(float(value.reshape(-1)[0]), fmt.frac))
    low, high = bounds
    for bits in range(2, fmt.bits + 1):
        if low == -(1 << (bits - 1)) and high == (1 << (bits - 1)) - 1:
            return bits
    raise refuse(clip, f"bounds [{low}, {high}] LSB are not the range of a signed format of at most {fmt.bits} bits at scale 2**-{fmt.frac}")


def _quantizer(chain: _Chain, node: Node, after: Node | None) -> tuple[Node, FixedPointFormat]:
    """``node`` starts a quantiser: ``[Clip ->] QuantizeLinear``. Returns the Q node and its format."""
    if node.op == "Clip":
        q = chain.next_node(node.outputs[0], node)
        if q.op != "QuantizeLinear":
            raise refuse(q, f"expected a QuantizeLinear after {node.label}, found {q.op}")
        fmt = activation_format_any(chain.graph, q)
        if not fmt.power_of_two:
            raise refuse(node, "a Clip before a QuantizeLinear at a non-power-of-two scale is not supported")
        return q, FixedPointFormat(_clip_bits(chain.graph, node, fmt), fmt.frac)
    if node.op != "QuantizeLinear":
        where = f"after {after.label}" if after is not None else "on the graph input"
        raise refuse(node, f"expected a QuantizeLinear (or Clip + QuantizeLinear) {where}, found {node.op}")
    return node, activation_format_any(chain.graph, node)


def _expect_dq(chain: _Chain, q: Node) -> Node:
    """The DequantizeLinear that must follow QuantizeLinear ``q`` at the same scale."""
    dq = chain.next_node(q.outputs[0], q)
    if dq.op != "DequantizeLinear":
        raise refuse(dq, f"expected a DequantizeLinear after {q.label}, found {dq.op}")
    if activation_format_any(chain.graph, dq) != activation_format_any(chain.graph, q):
        raise refuse(dq, f"its scale differs from the QuantizeLinear before it ({q.label})")
    return dq


def _fold_pool(node: Node, fmt: FixedPointFormat, shape: tuple[int, ...], index: int, op: str) -> tuple[QuantizedLayer, tuple[int, ...]]:
    """MaxPool / AveragePool / GlobalAveragePool -> a layer (an average's output format is set by
    the caller from its QuantizeLinear) and its output shape."""
    if len(shape) != 3:
        raise refuse(node, f"input has per-sample shape {list(shape)}; {node.op} needs [channels, height, width]")
    if node.op == "GlobalAveragePool":
        kh, kw, sh, sw, (pt, pl, pb, pr) = shape[1], shape[2], 1, 1, (0, 0, 0, 0)
    else:
        kh, kw = (int(v) for v in node.attrs["kernel_shape"])
        sh, sw = (int(v) for v in node.attrs.get("strides", [1, 1]))
        pt, pl, pb, pr = node_pads(node, (shape[1], shape[2]), (kh, kw), (sh, sw))
    if shape[1] + pt + pb < kh or shape[2] + pl + pr < kw:
        raise refuse(node, f"window {kh}x{kw} is larger than the padded {shape[1]}x{shape[2]} input")
    ceil = bool(node.attrs.get("ceil_mode", 0))
    oh, extra_b = pool_extent(shape[1], kh, sh, pt, pb, ceil)
    ow, extra_r = pool_extent(shape[2], kw, sw, pl, pr, ceil)
    include_pad = bool(node.attrs.get("count_include_pad", 0)) and any((pt, pl, pb, pr, extra_b, extra_r))
    if include_pad and (extra_b or extra_r):
        raise refuse(node, f"count_include_pad=1 with ceil_mode=1 where the last window runs past the padding (onnxruntime divides it by the window clipped to the padded map, which AVGPOOL does not encode; {oh}x{ow} output)")
    if include_pad and fmt.zero_point:
        raise refuse(node, f"count_include_pad=1 on a padded input with zero point {fmt.zero_point}: the padding counts as the zero point, which AVGPOOL sums as 0")
    # ceil_mode=1 is floor mode over extra rows below and columns right: they take no part (decision 186).
    attrs: dict[str, object] = {"kernel": kh, **_geometry_attrs((sh, sw), (pt, pl, pb + extra_b, pr + extra_r))}
    if kh != kw:
        attrs["window"] = (kh, kw)
    if include_pad:
        attrs["count_include_pad"] = True
    stem = "pool" if op == "maxpool" else "avgpool"
    layer = QuantizedLayer(name=node.name or f"{stem}{index}", op=op, input_format=fmt, output_format=fmt, meta={"onnx_node": node.name or f"#{node.index}"}, **attrs)  # type: ignore[arg-type]
    return layer, (shape[0], oh, ow)


def node_pads(node: Node, size: tuple[int, int], kernel: tuple[int, int], strides: tuple[int, int]) -> tuple[int, int, int, int]:
    """A Conv's or pool's padding (top, left, bottom, right): its ``pads``, or what ``auto_pad``
    makes of the map (ONNX, as onnxruntime computes it): ``VALID`` none; ``SAME_UPPER`` /
    ``SAME_LOWER`` ``ceil(size / s)`` outputs, the total padding ``(out - 1) * s + k - size`` split
    with the odd one after (UPPER) or before (LOWER). ``kernel`` is the kernel's extent (a dilated
    one's with its zero taps)."""
    mode = node.attrs.get("auto_pad", "NOTSET")
    if mode == "NOTSET":
        top, left, bottom, right = (int(v) for v in node.attrs.get("pads", [0, 0, 0, 0]))
        return top, left, bottom, right
    if mode == "VALID":
        return 0, 0, 0, 0
    before, after = [], []
    for n, k, s in zip(size, kernel, strides, strict=True):
        total = max(0, (-(-n // s) - 1) * s + k - n)
        first = total // 2 if mode == "SAME_UPPER" else total - total // 2
        before.append(first)
        after.append(total - first)
    return before[0], before[1], after[0], after[1]


def pool_extent(size: int, k: int, s: int, before: int, after: int, ceil: bool) -> tuple[int, int]:
    """A pool's output extent along one axis and the padding it adds after the map to reach it in
    floor mode. ``ceil`` (ONNX ceil_mode=1, as onnxruntime computes it): ``ceil((size + before +
    after - k) / s) + 1`` windows, less a last one that would start in the padding after the map;
    the added padding is smaller than the window (the last window starts inside the map)."""
    span = size + before + after - k
    out = span // s + 1
    if ceil:
        out = -(-span // s) + 1
        if (out - 1) * s >= size + before:
            out -= 1
    return out, max(0, (out - 1) * s + k - (size + before + after))


def _check_average_formats(node: Node, fmt_in: FixedPointFormat, fmt_out: FixedPointFormat) -> None:
    """AVGPOOL scales the average of the stored words by ``2**shift`` and has no zero points: that is
    onnxruntime's DQ-AveragePool-Q only where both scales are powers of two (or equal) and the stored
    words' zero point moves to the output's exactly, ``z_out = z_in * 2**shift``, an even number
    (rounding half to even commutes with adding an even integer only). Anything else compiled to
    wrong integers before decision 189; it is refused by name."""
    if fmt_in.power_of_two != fmt_out.power_of_two or (not fmt_in.power_of_two and fmt_in.scale != fmt_out.scale):
        raise refuse(node, f"an average pool from {fmt_in} to {fmt_out}: AVGPOOL scales by a power of two only (non-power-of-two scales must be the same on both sides)")
    if fmt_in.zero_point or fmt_out.zero_point:
        shift = fmt_out.frac - fmt_in.frac
        moved = fmt_in.zero_point * 2**shift if shift >= 0 else fmt_in.zero_point / 2**-shift
        if moved != fmt_out.zero_point or fmt_out.zero_point % 2:
            raise refuse(node, f"an average pool from {fmt_in} to {fmt_out}: AVGPOOL has no zero points, so the output's must be the input's times 2**{shift} and even (here {fmt_in.zero_point} -> {fmt_out.zero_point})")


def _requantizer(chain: _Chain, node: Node) -> tuple[Node, FixedPointFormat, bool]:
    """The ``[Relu ->] [Clip ->] QuantizeLinear -> DequantizeLinear`` after an average or an add:
    the DQ node, the output format, and whether a Relu came first."""
    follower = chain.next_node(node.outputs[0], node)
    relu = follower.op == "Relu"
    if relu:
        follower = chain.next_node(follower.outputs[0], follower)
    q, fmt = _quantizer(chain, follower, node)
    return _expect_dq(chain, q), fmt, relu


_LAYER_OPS = ("MaxPool", "Flatten", "AveragePool", "GlobalAveragePool", "Add", "QuantizeLinear", "Clip")


def fold_qdq(ir: CompilerIR) -> CompilerIR:
    """Fold the QDQ graph into integer layers with formats, shapes and modes.

    The layers form a DAG in file (topological) order: a quantised activation (a DequantizeLinear
    output, or the output of a MaxPool/Flatten) may feed several layers, and a residual ``Add`` of
    two of them is a layer with two sources (``QuantizedLayer.sources``)."""
    graph = ir.graph
    assert graph is not None
    chain = _Chain(graph)
    input_name, _, dims = graph.inputs[0]
    output_name = graph.outputs[0][0]
    shape: tuple[int, ...] = tuple(int(d) for d in dims[1:])  # type: ignore[arg-type]
    shapes = [shape]
    first = chain.next_node(input_name, None)
    q, fmt = _quantizer(chain, first, None)
    dq = _expect_dq(chain, q)
    input_format = fmt
    # Quantised activation tensors: name -> (producing layer, -1 for the network input; format; shape).
    known: dict[str, tuple[int, FixedPointFormat, tuple[int, ...]]] = {dq.outputs[0]: (-1, fmt, shape)}
    layers: list[QuantizedLayer] = []
    for node in graph.nodes:
        if node.index in chain.visited or node.index == first.index:
            continue
        activations = [name for name in node.inputs if name in known]
        if not activations:
            continue  # a weight's DequantizeLinear (visited by its layer) or a node off the graph's paths
        chain.visited.add(node.index)
        source, fmt, shape = known[activations[0]]
        index = len(layers)
        if node.op in COMPUTE_OPS and node.inputs[0] in known:
            layer, q, fmt, out_shape = _fold_compute(chain, node, fmt, shape, index)
            tensor = q.outputs[0] if layer.meta.get("float_output") else _expect_dq(chain, q).outputs[0]
        elif node.op == "MaxPool":
            layer, out_shape = _fold_pool(node, fmt, shape, index, "maxpool")
            tensor = node.outputs[0]
        elif node.op in ("AveragePool", "GlobalAveragePool"):
            layer, out_shape = _fold_pool(node, fmt, shape, index, "avgpool")
            dq_out, fmt_out, relu = _requantizer(chain, node)
            if relu:
                raise refuse(node, "a Relu after an average pool is not supported (the average of non-negative values needs none)")
            _check_average_formats(node, fmt, fmt_out)
            layer = layer.with_changes(output_format=fmt_out)
            tensor = dq_out.outputs[0]
        elif node.op == "Flatten":
            layer = QuantizedLayer(name=node.name or f"flatten{index}", op="flatten", input_format=fmt, output_format=fmt, meta={"onnx_node": node.name or f"#{node.index}"})
            out_shape = (math.prod(shape),)
            tensor = node.outputs[0]
        elif node.op == "Add":
            if len(activations) != 2 or len(node.inputs) != 2:
                raise refuse(node, "an Add inside the network must add two quantised activations (a bias Add follows a MatMul)")
            other_source, other_fmt, other_shape = known[activations[1]]
            if other_shape != shape:
                raise refuse(node, f"adds shapes {list(shape)} and {list(other_shape)}; only equal shapes are supported (no broadcasting)")
            dq_out, fmt_out, relu = _requantizer(chain, node)
            layer = QuantizedLayer(
                name=node.name or f"add{index}", op="add", input_format=fmt, output_format=fmt_out, relu=relu, other_format=other_fmt,
                sources=(source, other_source), meta={"onnx_node": node.name or f"#{node.index}"},
            )
            out_shape = shape
            tensor = dq_out.outputs[0]
        elif node.op in ("QuantizeLinear", "Clip") and node.inputs[0] in known:
            # A [Clip ->] Q -> DQ pair at the tensor's own format (after MaxPool/Flatten) changes nothing.
            q, fmt_q = _quantizer(chain, node, chain.producer.get(node.inputs[0]))
            dq = _expect_dq(chain, q)
            if fmt_q != fmt:
                raise refuse(node, f"requantises {fmt} to {fmt_q} outside a compute layer, which is not supported")
            known[dq.outputs[0]] = known[node.inputs[0]]
            continue
        else:
            raise refuse(node, "not expected here: a layer is Gemm/MatMul/Conv [+ Relu] + QuantizeLinear, MaxPool, AveragePool, GlobalAveragePool, a residual Add or Flatten")
        if layer.op != "add" and source != index - 1:
            layer = layer.with_changes(sources=(source,))
        elif layer.op == "add" and layer.sources == (index - 1,):
            layer = layer.with_changes(sources=())
        layers.append(layer)
        shapes.append(out_shape)
        known[tensor] = (index, layer.output_format, out_shape)
    if output_name not in known:
        raise OnnxError(f"the graph output '{output_name}' is not reached from the input through supported layers")
    if known[output_name][0] != len(layers) - 1:
        raise refuse(graph.nodes[-1], f"layers follow the one that produces the graph output '{output_name}'")
    consumed = {j for i, layer in enumerate(layers) for j in layer.source_layers(i)}
    dead = [i for i in range(len(layers) - 1) if i not in consumed]
    if dead:
        raise OnnxError(f"layer {dead[0]} '{layers[dead[0]].name}': its output is not used by any layer")
    if not any(layer.has_weights for layer in layers):
        raise OnnxError("the graph has no Gemm, MatMul or Conv layer")
    unused = [n for n in graph.nodes if n.index not in chain.visited and n.index != first.index]
    if unused:
        raise refuse(unused[0], "is not on the chain from the graph input to its output")
    info = {
        "schema": graph.metadata.get(keys.KEY_SCHEMA),
        "app": graph.metadata.get(keys.KEY_APP, "custom"),
        "method": graph.metadata.get(keys.KEY_METHOD),
        "seed": graph.metadata.get(keys.KEY_SEED),
    }
    return ir.update(layers=tuple(layers), shapes=tuple(shapes), input_format=input_format, model_info=info)
