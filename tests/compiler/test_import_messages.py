"""The three messages issue 12 found misleading, and what each case does now: a float graph output,
a weight whose DequantizeLinear reads a non-constant, a float bias."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper
from onnx_graphs import Spec, build_model

from axtrain.compiler.passes.fold_qdq import FloatBiasWarning
from axtrain.compiler.pipeline import compile_model
from axtrain.errors import OnnxError
from axtrain.hwmodels.fixedpoint import dequantize, quantize
from axtrain.hwmodels.layers import forward


def _drop_output_qdq(model: onnx.ModelProto) -> None:
    """The last layer's Gemm writes the graph output in float (no final Q/DQ)."""
    q = next(n for n in model.graph.node if n.name == "q_out0")
    dq = next(n for n in model.graph.node if n.name == "dq_out0")
    gemm = next(n for n in model.graph.node if n.op_type == "Gemm")
    gemm.output[0] = "output"
    model.graph.node.remove(q)
    model.graph.node.remove(dq)


def _save(model: onnx.ModelProto, tmp_path: Path) -> Path:
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    return path


def test_float_output_wider_than_the_neuron_word_is_stored_by_sta(tmp_path: Path) -> None:
    """ISA 2: a float graph output whose accumulators need more than 16 bits compiles to STA (32-bit
    accumulator words, the host applies 2**-(f_a + f_w)) and matches onnxruntime bit for bit."""
    from axtrain.compiler.package import write_compiled_bundle
    from axtrain.formats.bundle import load_bundle
    from axtrain.runtime.execute import output_floats
    from axtrain.runtime.interpreter import run_bundle
    from axtrain.runtime.simulation import simulate

    weight = np.random.default_rng(4).integers(-127, 128, size=(3, 20)).astype(np.int8)  # bound 20 * 128 * 127 > 2**15
    weight[0] = 100  # reachable: a row of one sign
    model = build_model([Spec("gemm", weight=weight, bias=np.array([7, -9, 0], dtype=np.int32))], ["N", 20])
    _drop_output_qdq(model)
    path = _save(model, tmp_path)
    ir = compile_model(path)
    assert str(ir.layers[-1].output_format).startswith("s32.")
    write_compiled_bundle(ir, tmp_path / "b")
    bundle = load_bundle(tmp_path / "b")
    ops = [ins.op for ins in bundle.program]
    assert "STA" in ops and "STN" not in ops and "REQ" not in ops and bundle.program[-2]["space"] == 1
    from axtrain.compiler.cli import summary, summary_dict

    scale = 2.0 ** -ir.layers[-1].output_format.frac
    assert f"output (32-bit accumulator words (STA)) y = (q - 0) * {scale!r}" in summary(tmp_path / "b")
    assert summary_dict(tmp_path / "b")["host_scales"]["output_accumulator_words"] is True
    x = np.random.default_rng(3).uniform(-1, 1, (64, 20)).astype(np.float32)
    x[0] = 100.0  # saturates the input format: drives row 0 beyond 2**15
    q = run_bundle(bundle, x)[-1]
    assert np.abs(q).max() > 1 << 15
    expected = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    np.testing.assert_array_equal(output_floats(bundle, q), expected)
    np.testing.assert_array_equal(simulate(bundle, x).outputs, expected)  # the fast executor


def test_float_output_that_fits_compiles_as_the_accumulator(tmp_path: Path) -> None:
    weight = np.array([[3, -2, 1, 0], [1, 1, -1, 2]], dtype=np.int8)  # 4 * 128 * 3 + 5 < 2**15
    model = build_model([Spec("gemm", weight=weight, bias=np.array([5, -5], dtype=np.int32), fw=2)], ["N", 4], f_in=1)
    _drop_output_qdq(model)
    path = _save(model, tmp_path)
    ir = compile_model(path)
    assert str(ir.layers[-1].output_format) == "s16.3"  # f_a + f_w = 1 + 2, shift 0
    x = np.random.default_rng(3).uniform(-70, 70, (32, 4)).astype(np.float32)
    got = dequantize(forward(ir.layers, quantize(x, ir.input_format))[-1], ir.layers[-1].output_format)
    expected = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    np.testing.assert_array_equal(got, expected)


def test_weight_from_a_non_constant_names_its_source(tmp_path: Path) -> None:
    model = build_model([Spec("gemm", weight=np.ones((2, 2), dtype=np.int8), bias=np.zeros(2, dtype=np.int32))], ["N", 2])
    dq = next(n for n in model.graph.node if n.name == "dq_w0")
    # The weight's integers come out of a node the compiler does not fold (a Relu of the constant).
    model.graph.node.insert(0, onnx.helper.make_node("Relu", ["w0"], ["w0_pooled"], name="relu_w"))
    dq.input[0] = "w0_pooled"
    with pytest.raises(OnnxError, match=r"node 'gemm0' \(Gemm\): weight 'wf0': its DequantizeLinear \(node 'dq_w0' \(DequantizeLinear\)\) reads node 'relu_w' \(Relu\), which is not a constant"):
        compile_model(_save(model, tmp_path))


def test_float_bias_quantised_like_onnxruntime(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    weight = rng.integers(-50, 50, (3, 6)).astype(np.int8)
    model = build_model([Spec("gemm", weight=weight, bias=np.zeros(3, dtype=np.int32), fw=6, fo=3)], ["N", 6], f_in=4)
    bias = np.array([0.0123, -0.5, 2.0 ** -11 * 3], dtype=np.float32)  # off the 2**-10 grid: 12.595.., -512, 1.5 LSB
    gemm = next(n for n in model.graph.node if n.op_type == "Gemm")
    model.graph.node.remove(next(n for n in model.graph.node if n.name == "dq_b0"))
    model.graph.initializer.append(numpy_helper.from_array(bias, "b_float"))
    gemm.input[2] = "b_float"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ir = compile_model(_save(model, tmp_path))
    assert [w.category for w in caught] == [FloatBiasWarning]
    # round_half_even(b / 2**-10) in float32: 12.595 -> 13, -512 -> -512, 1.5 -> 2 (a tie, to even)
    np.testing.assert_array_equal(ir.layers[0].bias, [13, -512, 2])
