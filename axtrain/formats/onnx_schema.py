"""Keys and version of the AxTrain ONNX annotation schema (docs/onnx-schema.md)."""

from __future__ import annotations

import json
from typing import Any, Sequence

from axtrain.errors import AxTrainError, OnnxError
from axtrain.hwmodels.multipliers import MultiplierMode, parse_mode

SCHEMA_VERSION = "1"
OPSET = 21
IR_VERSION = 10

# Model-level metadata_props
KEY_SCHEMA = "axtrain.schema"
KEY_APP = "axtrain.app"
KEY_METHOD = "axtrain.method"
KEY_SEED = "axtrain.seed"
KEY_VERSIONS = "axtrain.versions"
# The network's output layer ("sigmoid" or "softmax"; absent: not recorded). With "sigmoid" the graph
# ends in a Sigmoid node, which the compiler turns into a host-side tail op.
KEY_OUTPUT_LAYER = "axtrain.output_layer"

# Node-level metadata_props (on Gemm / Conv)
KEY_MULTIPLIER = "axtrain.multiplier"
KEY_SRAM_VOLTAGE = "axtrain.weight_sram_voltage"
KEY_INPUT_FORMAT = "axtrain.input_format"
KEY_WEIGHT_FORMAT = "axtrain.weight_format"
KEY_OUTPUT_FORMAT = "axtrain.output_format"
KEY_BIAS_FORMAT = "axtrain.bias_format"
KEY_LAYER = "axtrain.layer"

INPUT_NAME = "input"
OUTPUT_NAME = "output"

# Added with the exporter (schema version 1 still: readers ignore unknown keys).
# "true" when the layer satisfies the accumulation bound of docs/numerics.md, so float32 evaluation
# (onnxruntime) is exact; "false" when it does not (see docs/onnx-schema.md for the tolerance).
KEY_FLOAT32_EXACT = "axtrain.float32_exact"
# The layer's worst-case accumulator magnitude in LSB units of the bias format (an integer), the
# left side of the bound: fan_in * max|a| * max|w| + max|bias|.
KEY_ACCUMULATOR_BOUND = "axtrain.accumulator_bound"

MODEL_KEYS = (KEY_SCHEMA, KEY_APP, KEY_METHOD, KEY_SEED, KEY_VERSIONS, KEY_OUTPUT_LAYER)
NODE_KEYS = (
    KEY_LAYER,
    KEY_MULTIPLIER,
    KEY_SRAM_VOLTAGE,
    KEY_INPUT_FORMAT,
    KEY_WEIGHT_FORMAT,
    KEY_BIAS_FORMAT,
    KEY_OUTPUT_FORMAT,
    KEY_FLOAT32_EXACT,
    KEY_ACCUMULATOR_BOUND,
)
NAMESPACE = "axtrain."
# Largest integer below which every float32 integer multiple of one LSB is exact.
FLOAT32_EXACT_LIMIT = 1 << 24


def read_annotations(model: Any) -> dict[str, dict[str, Any]]:
    """The ``axtrain.*`` metadata of an ONNX ``ModelProto`` as plain strings.

    Returns ``{"model": {key: value}, "nodes": {node_name: {key: value}}}``; only keys in the
    ``axtrain.`` namespace are kept and only nodes that carry at least one. Works on the protobuf
    object alone (no onnx import here), so the compiler can use it too.
    """
    model_props = {p.key: p.value for p in model.metadata_props if p.key.startswith(NAMESPACE)}
    nodes: dict[str, dict[str, str]] = {}
    for node in model.graph.node:
        props = {p.key: p.value for p in node.metadata_props if p.key.startswith(NAMESPACE)}
        if props:
            nodes[node.name] = props
    return {"model": model_props, "nodes": nodes}


def format_multiplier(modes: Sequence[Any]) -> str:
    """The ``axtrain.multiplier`` value for per-neuron modes: one mode if all agree, else a JSON list."""
    names = [str(mode) for mode in modes]
    if not names:
        raise ValueError("format_multiplier needs at least one mode")
    if len(set(names)) == 1:
        return names[0]
    return json.dumps(names, separators=(",", ":"))


def parse_multiplier(text: str, out_features: int, where: str = "node") -> tuple[MultiplierMode, ...]:
    """Parse an ``axtrain.multiplier`` value into one mode per output neuron.

    Raises :class:`~axtrain.errors.OnnxError` (one line naming ``where``) on a bad value or a list
    whose length is not ``out_features``. The one reader of this key (exporter tests, compiler).
    """
    try:
        if text.lstrip().startswith("["):
            items = json.loads(text)
            if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
                raise OnnxError(f"{where}: {KEY_MULTIPLIER} must be a mode or a JSON list of modes, got {text[:60]!r}")
            if len(items) != out_features:
                raise OnnxError(f"{where}: {KEY_MULTIPLIER} lists {len(items)} modes for {out_features} output neurons")
            return tuple(parse_mode(item) for item in items)
        return (parse_mode(text),) * out_features
    except json.JSONDecodeError:
        raise OnnxError(f"{where}: {KEY_MULTIPLIER} is not valid JSON: {text[:60]!r}") from None
    except OnnxError:
        raise
    except AxTrainError as exc:
        raise OnnxError(f"{where}: {KEY_MULTIPLIER}: {exc}") from None
