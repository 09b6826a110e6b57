"""Pass ``fold_qdq`` (compiler/passes/fold_qdq.py): Q/DQ pairs become formats and integer layers.

The execution check (tests/compiler/execution.py) runs the folded layers through hwmodels.forward
and compares them with onnxruntime on the source model, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from execution import compare_execution
from onnx_graphs import Spec, build_model, mlp_specs, random_conv, random_dense

from axtrain.compiler.onnx_import import import_onnx
from axtrain.compiler.passes.fold_qdq import fold_qdq
from axtrain.compiler.passes.validate import validate
from axtrain.errors import OnnxError
from axtrain.hwmodels.fixedpoint import FixedPointFormat as F
from axtrain.hwmodels.multipliers import EXACT, MultiplierMode


def folded(path):
    return fold_qdq(validate(import_onnx(path)))


def test_formats_weights_and_shapes(save_model, rng: np.random.Generator) -> None:
    specs = mlp_specs(rng, [7, 5, 3])
    path = save_model(build_model(specs, ["N", 7], f_in=4))
    ir = folded(path)
    assert [layer.op for layer in ir.layers] == ["dense", "dense"] and ir.shapes == ((7,), (5,), (3,))
    assert ir.input_format == F(8, 4) and ir.layers[0].weight_format == F(8, 7)
    assert ir.layers[0].output_format == F(8, specs[0].fo) and ir.layers[1].input_format == ir.layers[0].output_format
    np.testing.assert_array_equal(ir.layers[0].weight, specs[0].weight.astype(np.int64))
    assert ir.layers[0].relu and not ir.layers[1].relu
    assert ir.layers[0].multipliers == (EXACT,) and ir.layers[0].sram_voltage == 1.1  # no metadata: exact, nominal


def test_metadata_modes_and_voltage(save_model, rng: np.random.Generator) -> None:
    specs = mlp_specs(rng, [6, 3, 2])
    specs[0].metadata = {"axtrain.multiplier": '["exact","drum:2","K1"]', "axtrain.weight_sram_voltage": "0.66"}
    specs[1].metadata = {"axtrain.multiplier": "K3"}
    ir = folded(save_model(build_model(specs, ["N", 6])))
    assert ir.layers[0].multipliers == (EXACT, MultiplierMode(2), MultiplierMode(1)) and ir.layers[0].sram_voltage == 0.66
    assert ir.layers[1].multipliers == (MultiplierMode(3),)  # one mode for the whole layer


def test_a_mode_list_of_the_wrong_length_is_refused(save_model, rng: np.random.Generator) -> None:
    specs = mlp_specs(rng, [6, 3])
    specs[0].metadata = {"axtrain.multiplier": '["exact","drum:2"]'}
    with pytest.raises(OnnxError, match="lists 2 modes for 3 output neurons") as info:
        folded(save_model(build_model(specs, ["N", 6])))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_folded_layers_execute_like_onnxruntime(kind: str, save_model, rng: np.random.Generator) -> None:
    if kind == "mlp":
        specs, shape = mlp_specs(rng, [9, 8, 4]), ["N", 9]
        specs[0].fo = -2
    else:
        specs = [random_conv(rng, 3, 2, 3, pad=1, fw=7, fo=1, relu=True), Spec("maxpool", kernel=2, stride=2), Spec("flatten"), random_dense(rng, 4, 27, fw=7, fo=0)]
        shape = ["N", 2, 6, 6]
    path = save_model(build_model(specs, shape))
    ir = folded(path)
    x = rng.uniform(-6, 6, size=(12, *[int(d) for d in shape[1:]])).astype(np.float32)
    compare_execution(ir, "fold_qdq", path, x)
