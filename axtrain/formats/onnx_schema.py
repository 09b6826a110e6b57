"""Keys and version of the AxTrain ONNX annotation schema (docs/onnx-schema.md)."""

from __future__ import annotations

SCHEMA_VERSION = "1"
OPSET = 21
IR_VERSION = 10

# Model-level metadata_props
KEY_SCHEMA = "axtrain.schema"
KEY_APP = "axtrain.app"
KEY_METHOD = "axtrain.method"
KEY_SEED = "axtrain.seed"
KEY_VERSIONS = "axtrain.versions"

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
