"""Export integer layer records as an annotated dynamic-fixed-point ONNX model (docs/onnx-schema.md).

The graph is standard ONNX (opset 21, IR 10) in QDQ form, so onnxruntime runs it unchanged and
computes the exact fixed-point network of docs/numerics.md:

    input -> [Clip] -> QuantizeLinear -> DequantizeLinear
          -> per layer: Gemm/Conv (DQ weights, DQ bias) -> [Relu] -> [Clip] -> Q -> DQ
                        MaxPool / Flatten -> Q -> DQ          (same format: the pair is an identity)
          -> output (the last DequantizeLinear; with ``output_layer="sigmoid"``: a ``Sigmoid`` of it)

The optional ``Sigmoid`` is the paper's output layer (trainer ``--output-layer sigmoid``). It is the
only float op of the graph; the compiler records it as a host-side tail op of the bundle and the
runtime applies it in float32 on the host (docs/bundle.md "Host tail").

Every value between two nodes is an integer multiple of its LSB; float32 holds them (and every
partial sum of a layer) exactly while the layer satisfies the accumulation bound, which is checked
here per layer and recorded on the node. A ``Clip`` before a ``QuantizeLinear`` narrows saturation
to the format's width when it is narrower than the storage type (4..7 bits in int8, 9..15 bits in
int16): ONNX saturates at the storage type's range, the hardware at the format's.

This module works from :class:`~axtrain.hwmodels.layers.QuantizedLayer` records (numpy) and never
imports torch; :func:`export_run` imports the trainer's run-directory reader lazily.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from axtrain import __version__
from axtrain.atomic import write_bytes
from axtrain.errors import AxTrainError, OnnxError, RunError
from axtrain.formats import onnx_schema as schema
from axtrain.formats.onnx_schema import read_annotations  # re-exported for callers of this module
from axtrain.hwmodels.fixedpoint import FixedPointFormat
from axtrain.hwmodels.layers import QuantizedLayer, accumulation_bound as hw_accumulation_bound
from axtrain.hwmodels.multipliers import MultiplierMode
from axtrain.hwmodels.ntv import bit_error_rate
from axtrain.provenance import versions

__all__ = [
    "ExportPrecisionWarning",
    "accumulation_bound",
    "bit_exact_session",
    "export_layers",
    "export_run",
    "infer_input_shape",
    "read_annotations",
    "save_model",
]

# Storage element types by (signed, width): the narrowest ONNX integer type holding the format.
_STORAGE = {
    (True, 8): (TensorProto.INT8, np.int8),
    (True, 16): (TensorProto.INT16, np.int16),
    (False, 8): (TensorProto.UINT8, np.uint8),
    (False, 16): (TensorProto.UINT16, np.uint16),
}
_INT32 = np.iinfo(np.int32)
# float32 normal range for powers of two; a scale outside it would lose exactness (subnormal / inf).
_MIN_SCALE_EXP, _MAX_SCALE_EXP = -126, 127


class ExportPrecisionWarning(UserWarning):
    """A layer exceeds the accumulation bound: onnxruntime's float32 result may differ from the integers."""


@dataclass(frozen=True)
class _Meta:
    """Model-level annotations."""

    app: str
    method: str | None
    seed: str | None


def accumulation_bound(layer: QuantizedLayer) -> int:
    """Left side of the bound of docs/numerics.md: ``fan_in * max|a| * max|w| + max|bias|`` (in LSBs).

    ``max|a|`` is the input format's largest magnitude (any input may reach it); ``max|w|`` and
    ``max|bias|`` are the layer's actual integers. Below ``2**24`` every product and partial sum of
    the layer is exact in float32 whatever the summation order. One definition with the compiler's
    check of imported graphs (``axtrain.hwmodels.layers.accumulation_bound``).
    """
    if not layer.has_weights or layer.weight is None or layer.bias is None:
        raise OnnxError(f"layer {layer.name!r} ({layer.op}) has no weights: no accumulation bound")
    return hw_accumulation_bound(layer)


def infer_input_shape(layers: Sequence[QuantizedLayer]) -> tuple[int, ...]:
    """The per-sample input shape implied by the layers (no batch dimension).

    A network that starts with a dense layer takes ``(in_features,)``. One that starts with a
    convolution takes ``(channels, H, H)``: a square image whose side is the smallest that makes the
    first dense layer after the convolutions receive exactly its ``in_features``.
    """
    if not layers:
        raise OnnxError("cannot export an empty network: no layers")
    first = layers[0]
    if first.op == "dense" and first.weight is not None:
        return (int(first.weight.shape[1]),)
    if first.op != "conv" or first.weight is None:
        raise OnnxError(f"cannot infer the input shape: first layer {first.name!r} is {first.op}, give input_shape")
    channels = int(first.weight.shape[1])
    for side in range(1, 1025):
        try:
            _propagate_shapes(layers, (channels, side, side))
        except OnnxError:
            continue
        return (channels, side, side)
    raise OnnxError(f"cannot infer the input shape of convolutional network starting at {first.name!r}: give input_shape")


def _propagate_shapes(layers: Sequence[QuantizedLayer], input_shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Per-sample output shape of every layer; raises OnnxError at the first layer that does not fit."""
    shape: tuple[int, ...] = tuple(int(d) for d in input_shape)
    shapes: list[tuple[int, ...]] = []
    for layer in layers:
        where = f"layer {layer.name!r} ({layer.op})"
        if layer.op == "dense":
            assert layer.weight is not None
            if len(shape) != 1 or shape[0] != layer.weight.shape[1]:
                raise OnnxError(f"{where} expects [batch, {layer.weight.shape[1]}] input, gets [batch, {', '.join(map(str, shape))}]")
            shape = (int(layer.weight.shape[0]),)
        elif layer.op == "conv":
            assert layer.weight is not None
            out_ch, in_ch, kh, kw = (int(d) for d in layer.weight.shape)
            if len(shape) != 3 or shape[0] != in_ch:
                raise OnnxError(f"{where} expects [batch, {in_ch}, H, W] input, gets [batch, {', '.join(map(str, shape))}]")
            oh = (shape[1] + 2 * layer.padding - kh) // layer.stride + 1
            ow = (shape[2] + 2 * layer.padding - kw) // layer.stride + 1
            if oh < 1 or ow < 1:
                raise OnnxError(f"{where}: kernel {kh}x{kw} does not fit a {shape[1]}x{shape[2]} input")
            shape = (out_ch, oh, ow)
        elif layer.op == "maxpool":
            if len(shape) != 3 or shape[1] < layer.kernel or shape[2] < layer.kernel:
                raise OnnxError(f"{where}: window {layer.kernel} does not fit input [batch, {', '.join(map(str, shape))}]")
            shape = (shape[0], (shape[1] - layer.kernel) // layer.stride + 1, (shape[2] - layer.kernel) // layer.stride + 1)
        elif layer.op == "flatten":
            shape = (int(np.prod(shape)),)
        else:
            raise OnnxError(f"{where}: unsupported layer kind (dense, conv, maxpool, flatten)")
        shapes.append(shape)
    return shapes


def _storage(fmt: FixedPointFormat, where: str) -> tuple[int, type]:
    """ONNX element type and numpy dtype that store ``fmt`` (int8/uint8 up to 8 bits, else 16)."""
    if fmt.bits > 16:
        raise OnnxError(f"{where}: format {fmt} is wider than 16 bits (QDQ storage is int8 or int16)")
    return _STORAGE[(fmt.signed, 8 if fmt.bits <= 8 else 16)]


def _needs_clip(fmt: FixedPointFormat) -> bool:
    """True when ``fmt`` is narrower than its storage type, so QuantizeLinear alone would not saturate it."""
    storage_bits = 8 if fmt.bits <= 8 else 16
    return fmt.bits != storage_bits


def _check_scale(frac: int, where: str) -> None:
    # Values are q * 2**-frac with |q| < 2**24: keep every one a normal float32.
    if not (_MIN_SCALE_EXP <= -frac and 24 - frac < _MAX_SCALE_EXP):
        raise OnnxError(f"{where}: fractional length {frac} puts the scale outside float32's exact range")


def _scalar(name: str, value: Any, dtype: Any) -> TensorProto:
    return numpy_helper.from_array(np.array(value, dtype=dtype), name)


class _Builder:
    """Accumulates nodes and initializers in a fixed order (deterministic bytes)."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[TensorProto] = []

    def init(self, tensor: TensorProto) -> str:
        self.initializers.append(tensor)
        return tensor.name

    def node(self, op: str, inputs: list[str], output: str, name: str, **attrs: Any) -> onnx.NodeProto:
        node = helper.make_node(op, inputs, [output], name=name, **attrs)
        self.nodes.append(node)
        return node

    def quantize_pair(self, source: str, fmt: FixedPointFormat, prefix: str, output: str) -> str:
        """``[Clip] -> QuantizeLinear -> DequantizeLinear`` at ``fmt``; returns the DQ output name."""
        elem, dtype = _storage(fmt, prefix)
        _check_scale(fmt.frac, prefix)
        scale = self.init(_scalar(f"{prefix}.scale", math.ldexp(1.0, -fmt.frac), np.float32))
        zero = self.init(_scalar(f"{prefix}.zero_point", 0, dtype))
        if _needs_clip(fmt):
            # Saturate at the format's range, not the storage type's: clip(x) then round equals
            # round(x) then saturate, because both bounds are whole LSBs and rounding is monotone.
            low = self.init(_scalar(f"{prefix}.clip_min", math.ldexp(fmt.qmin, -fmt.frac), np.float32))
            high = self.init(_scalar(f"{prefix}.clip_max", math.ldexp(fmt.qmax, -fmt.frac), np.float32))
            self.node("Clip", [source, low, high], f"{prefix}.clipped", name=f"{prefix}/Clip")
            source = f"{prefix}.clipped"
        self.node("QuantizeLinear", [source, scale, zero], f"{prefix}.q", name=f"{prefix}/QuantizeLinear")
        self.node("DequantizeLinear", [f"{prefix}.q", scale, zero], output, name=f"{prefix}/DequantizeLinear")
        return output

    def dequantized_initializer(self, values: np.ndarray, fmt_frac: int, elem_dtype: type, prefix: str) -> str:
        """An integer initializer and the DequantizeLinear that turns it into float32."""
        _check_scale(fmt_frac, prefix)
        data = self.init(numpy_helper.from_array(np.ascontiguousarray(values.astype(elem_dtype)), f"{prefix}.int"))
        scale = self.init(_scalar(f"{prefix}.scale", math.ldexp(1.0, -fmt_frac), np.float32))
        zero = self.init(_scalar(f"{prefix}.zero_point", 0, elem_dtype))
        self.node("DequantizeLinear", [data, scale, zero], f"{prefix}.float", name=f"{prefix}/DequantizeLinear")
        return f"{prefix}.float"


def _check_layer(layer: QuantizedLayer, previous: FixedPointFormat | None) -> None:
    """Refuse what the QDQ graph cannot represent, with one line naming the layer."""
    where = f"layer {layer.name!r} ({layer.op})"
    if previous is not None and layer.input_format != previous:
        # forward() hands integers on unchanged, so a change of format would be a reinterpretation,
        # which a Q/DQ pair at one scale cannot express.
        raise OnnxError(f"{where}: input format {layer.input_format} differs from the previous layer's output {previous}")
    if layer.op in ("maxpool", "flatten"):
        if layer.output_format != layer.input_format:
            raise OnnxError(f"{where}: output format {layer.output_format} must equal input format {layer.input_format}")
        if layer.op == "maxpool" and (layer.kernel < 1 or layer.stride < 1):
            raise OnnxError(f"{where}: kernel {layer.kernel} and stride {layer.stride} must be positive")
        return
    if layer.weight is None or layer.bias is None or layer.weight_format is None:
        raise OnnxError(f"{where}: weight, weight_format and bias are required")
    weight = np.asarray(layer.weight)
    bias = np.asarray(layer.bias)
    if not np.issubdtype(weight.dtype, np.integer) or not np.issubdtype(bias.dtype, np.integer):
        raise OnnxError(f"{where}: weight and bias must be integer arrays, got {weight.dtype} and {bias.dtype}")
    expected_rank = 2 if layer.op == "dense" else 4
    if weight.ndim != expected_rank:
        raise OnnxError(f"{where}: weight has rank {weight.ndim}, expected {expected_rank}")
    if bias.shape != (weight.shape[0],):
        raise OnnxError(f"{where}: bias shape {bias.shape} does not match {weight.shape[0]} outputs")
    fmt = layer.weight_format
    if weight.size and (weight.min() < fmt.qmin or weight.max() > fmt.qmax):
        raise OnnxError(f"{where}: weights span [{weight.min()}, {weight.max()}], outside {fmt} [{fmt.qmin}, {fmt.qmax}]")
    if bias.size and (bias.min() < _INT32.min or bias.max() > _INT32.max):
        raise OnnxError(f"{where}: bias does not fit int32")
    if len(layer.multipliers) not in (1, weight.shape[0]):
        raise OnnxError(f"{where}: {len(layer.multipliers)} multipliers for {weight.shape[0]} output neurons")
    if layer.op == "conv" and (layer.stride < 1 or layer.padding < 0):
        raise OnnxError(f"{where}: stride {layer.stride} must be >= 1 and padding {layer.padding} >= 0")


def _model_meta(metadata: Mapping[str, Any]) -> _Meta:
    """Read ``app``, ``method``, ``seed`` (bare or ``axtrain.``-prefixed keys)."""

    def get(key: str) -> str | None:
        for name in (key, schema.NAMESPACE + key):
            if name in metadata and metadata[name] is not None:
                return str(metadata[name])
        return None

    return _Meta(app=get("app") or "custom", method=get("method"), seed=get("seed"))


def _props(proto: Any, items: Sequence[tuple[str, str]]) -> None:
    for key, value in items:
        proto.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))


def export_layers(
    layers: Sequence[QuantizedLayer],
    input_shape: tuple[int, ...],
    metadata: Mapping[str, Any],
    multiplier: MultiplierMode | None = None,
    sram_voltage: float | None = None,
    output_layer: str | None = None,
) -> onnx.ModelProto:
    """Build the annotated QDQ ONNX model of ``layers`` (docs/onnx-schema.md).

    ``output_layer="sigmoid"`` appends a ``Sigmoid`` after the last layer's final DequantizeLinear
    (the paper's output layer); ``None`` or ``"softmax"`` end the graph at that DequantizeLinear
    (a softmax network's decision is the argmax of its logits, so the softmax itself is not exported).

    ``input_shape`` is the per-sample shape without the batch dimension (``(30,)``, ``(1, 28, 28)``);
    the batch dimension is symbolic (``batch``). ``metadata`` supplies ``app``, ``method`` and
    ``seed`` (plain or ``axtrain.``-prefixed keys; ``app`` defaults to ``custom``). ``multiplier``
    (a typed mode; text is parsed at the edge, axtrain/cli_params.py) and ``sram_voltage`` (volts) replace the layers' own
    annotations on every compute layer. The arithmetic of the graph is always exact: annotations
    tell the hardware what to approximate, they do not change the ONNX numerics.

    A layer that exceeds the accumulation bound is still exported; it is marked
    ``axtrain.float32_exact = false`` and an :class:`ExportPrecisionWarning` is issued.
    """
    if not layers:
        raise OnnxError("cannot export an empty network: no layers")
    if output_layer not in (None, "sigmoid", "softmax"):
        raise OnnxError(f"output layer {output_layer!r} is unknown; use sigmoid or softmax")
    sigmoid = output_layer == "sigmoid"
    override_mode = multiplier
    if sram_voltage is not None:
        bit_error_rate(sram_voltage)  # validates the voltage against the NTV model's range
    names = [layer.name for layer in layers]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise OnnxError(f"layer names must be unique to name ONNX nodes; repeated: {', '.join(duplicates)}")
    input_shape = tuple(int(d) for d in input_shape)
    previous: FixedPointFormat | None = None
    for layer in layers:
        _check_layer(layer, previous)
        previous = layer.output_format
    shapes = _propagate_shapes(layers, input_shape)

    build = _Builder()
    current = build.quantize_pair(schema.INPUT_NAME, layers[0].input_format, "input_quant", "input_quant.out")
    last = len(layers) - 1
    for index, layer in enumerate(layers):
        prefix = layer.name
        output = (f"{prefix}.out" if sigmoid else schema.OUTPUT_NAME) if index == last else f"{prefix}.out"
        if layer.op == "flatten":
            build.node("Flatten", [current], f"{prefix}.flat", name=f"{prefix}/Flatten", axis=1)
            current = build.quantize_pair(f"{prefix}.flat", layer.output_format, f"{prefix}.quant", output)
            continue
        if layer.op == "maxpool":
            k, s = layer.kernel, layer.stride
            build.node("MaxPool", [current], f"{prefix}.pooled", name=f"{prefix}/MaxPool", kernel_shape=[k, k], strides=[s, s])
            current = build.quantize_pair(f"{prefix}.pooled", layer.output_format, f"{prefix}.quant", output)
            continue
        current = _compute_layer(build, layer, current, output, override_mode, sram_voltage)
    if sigmoid:
        build.node("Sigmoid", [current], schema.OUTPUT_NAME, name="output_layer/Sigmoid")

    batch_shape: list[str | int | None] = ["batch", *input_shape]
    graph = helper.make_graph(
        build.nodes,
        "axtrain",
        [helper.make_tensor_value_info(schema.INPUT_NAME, TensorProto.FLOAT, batch_shape)],
        [helper.make_tensor_value_info(schema.OUTPUT_NAME, TensorProto.FLOAT, ["batch", *shapes[-1]])],
        initializer=build.initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", schema.OPSET)],
        ir_version=schema.IR_VERSION,
        producer_name="axtrain",
        producer_version=__version__,
    )
    meta = _model_meta(metadata)
    items = [(schema.KEY_SCHEMA, schema.SCHEMA_VERSION), (schema.KEY_APP, meta.app)]
    if meta.method is not None:
        items.append((schema.KEY_METHOD, meta.method))
    if meta.seed is not None:
        items.append((schema.KEY_SEED, meta.seed))
    if output_layer is not None:
        items.append((schema.KEY_OUTPUT_LAYER, output_layer))
    items.append((schema.KEY_VERSIONS, json.dumps(versions(), sort_keys=True, separators=(",", ":"))))
    _props(model, items)
    return model


def _compute_layer(
    build: _Builder,
    layer: QuantizedLayer,
    current: str,
    output: str,
    override_mode: Any,
    sram_voltage: float | None,
) -> str:
    """Gemm or Conv with DQ weight and bias, optional Relu, then the output Q/DQ pair."""
    assert layer.weight is not None and layer.bias is not None and layer.weight_format is not None
    prefix = layer.name
    where = f"layer {layer.name!r}"
    _, weight_dtype = _storage(layer.weight_format, f"{where} weight")
    bias_format = FixedPointFormat(32, layer.accumulator_frac)
    weight = build.dequantized_initializer(np.asarray(layer.weight), layer.weight_format.frac, weight_dtype, f"{prefix}.weight")
    bias = build.dequantized_initializer(np.asarray(layer.bias), bias_format.frac, np.int32, f"{prefix}.bias")
    if layer.op == "dense":
        node = build.node("Gemm", [current, weight, bias], f"{prefix}.acc", name=f"{prefix}/Gemm", transB=1)
    else:
        _, _, kh, kw = layer.weight.shape
        p, s = layer.padding, layer.stride
        node = build.node(
            "Conv", [current, weight, bias], f"{prefix}.acc", name=f"{prefix}/Conv",
            kernel_shape=[int(kh), int(kw)], pads=[p, p, p, p], strides=[s, s],
        )
    source = f"{prefix}.acc"
    if layer.relu:
        build.node("Relu", [source], f"{prefix}.relu", name=f"{prefix}/Relu")
        source = f"{prefix}.relu"
    result = build.quantize_pair(source, layer.output_format, f"{prefix}.quant", output)

    bound = accumulation_bound(layer)
    exact = bound < schema.FLOAT32_EXACT_LIMIT
    if not exact:
        warnings.warn(
            f"layer {layer.name!r}: accumulation bound {bound} >= 2**24, onnxruntime's float32 result may "
            f"differ from the fixed-point integers (docs/onnx-schema.md)",
            ExportPrecisionWarning,
            stacklevel=3,
        )
    modes = (override_mode,) * layer.out_features if override_mode is not None else layer.neuron_modes()
    voltage = layer.sram_voltage if sram_voltage is None else sram_voltage
    _props(
        node,
        [
            (schema.KEY_LAYER, layer.name),
            (schema.KEY_MULTIPLIER, schema.format_multiplier(modes)),
            (schema.KEY_SRAM_VOLTAGE, repr(float(voltage))),
            (schema.KEY_INPUT_FORMAT, str(layer.input_format)),
            (schema.KEY_WEIGHT_FORMAT, str(layer.weight_format)),
            (schema.KEY_BIAS_FORMAT, str(bias_format)),
            (schema.KEY_OUTPUT_FORMAT, str(layer.output_format)),
            (schema.KEY_FLOAT32_EXACT, "true" if exact else "false"),
            (schema.KEY_ACCUMULATOR_BOUND, str(bound)),
        ],
    )
    return result


def save_model(model: onnx.ModelProto, path: str | os.PathLike[str]) -> Path:
    """Write ``model`` atomically; the same model always gives the same bytes."""
    return write_bytes(path, model.SerializeToString())


def bit_exact_session(model: onnx.ModelProto | bytes | str | os.PathLike[str]) -> Any:
    """An onnxruntime CPU session that reproduces the fixed-point integers bit for bit.

    All graph optimisations stay on except onnxruntime's QDQ fusions (``session.disable_quant_qdq``):
    those replace ``DQ -> Gemm/Conv -> Q`` by int8 kernels (QGemm, QLinearConv) whose AVX2 path
    without VNNI saturates pairs of u8*s8 products at 16 bits (VPMADDUBSW) and so loses exactness
    for weights near the int8 range ends. Measured in tests/trainer/test_export.py.
    """
    import onnxruntime as ort  # imported here: exporting needs only onnx

    options = ort.SessionOptions()
    options.add_session_config_entry("session.disable_quant_qdq", "1")
    if isinstance(model, onnx.ModelProto):
        model = model.SerializeToString()
    elif not isinstance(model, bytes):
        model = os.fspath(model)
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def export_run(
    run_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    multiplier: MultiplierMode | None = None,
    sram_voltage: float | None = None,
) -> Path:
    """Export a trained run directory to ``out`` (the ``axtrain export`` command).

    Reads the run with ``axtrain.trainer.rundir.load_layers`` (imported here, not at module level, so
    this module stays free of torch). The input shape comes from the run's metadata key
    ``input_shape`` if present, else from the layers (:func:`infer_input_shape`).
    """
    try:
        # rundir imports torch; exporting layers needs only onnx
        from axtrain.trainer.rundir import load_layers
    except ImportError as exc:  # the trainer's run-directory reader is not part of this build
        raise RunError(f"cannot read run directories in this build: {exc}") from None
    layers, metadata = load_layers(Path(run_dir))
    shape = metadata.get("input_shape") if isinstance(metadata, Mapping) else None
    if isinstance(shape, str):
        try:
            shape = json.loads(shape)
        except json.JSONDecodeError:
            raise RunError(f"{run_dir}: metadata input_shape {shape!r} is not a JSON list") from None
    input_shape = tuple(int(d) for d in shape) if shape else infer_input_shape(layers)
    # Runs from before the output-layer option were softmax networks (no key in their metadata).
    output_layer = str(metadata.get("output_layer", "softmax")) if isinstance(metadata, Mapping) else "softmax"
    try:
        model = export_layers(layers, input_shape, metadata, multiplier=multiplier, sram_voltage=sram_voltage, output_layer=output_layer)
    except AxTrainError as exc:
        raise type(exc)(f"{run_dir}: {exc}") from None
    return save_model(model, out)
