"""What ISA 2 compiles that ISA 1 refused (docs/importing.md, docs/numerics.md): non-power-of-two
scales (REQ with the requant table), asymmetric activation zero points (stored with the zero point,
folded into the next layer's bias), per-channel power-of-two weight scales wider than one weight word
(per-neuron shifts), unsigned activations on the graph input. Each is compiled, run on the
interpreter and the fast executor and compared with onnxruntime (QDQ fusions off): bit for bit for
power-of-two scales, within one output LSB otherwise."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx_graphs import build_model, mlp_specs, random_conv
from test_refusals import _init, _node, non_power_of_two_scale, nonzero_zero_point, per_channel_scale, uint8_activation

from axtrain.compiler.package import write_compiled_bundle
from axtrain.compiler.pipeline import compile_model
from axtrain.formats.bundle import load_bundle
from axtrain.hwmodels.fixedpoint import dequantize
from axtrain.runtime.interpreter import run_bundle
from axtrain.runtime.simulation import simulate


def _mlp(seed: int = 3) -> onnx.ModelProto:
    return build_model(mlp_specs(np.random.default_rng(seed), [6, 5, 3]), ["N", 6])


def _all_non_power_of_two(model: onnx.ModelProto) -> None:
    """Every activation and weight scale times a non-power-of-two factor, layer 1's weight scales per
    neuron; each bias scale is then s_a * s_w (per neuron), as onnxruntime's quantizer writes it."""
    def scale(name: str) -> np.ndarray:
        return numpy_helper.to_array(_init(model, name)).astype(np.float32)

    def put(name: str, value: np.ndarray) -> None:
        _init(model, name).CopyFrom(numpy_helper.from_array(np.asarray(value, dtype=np.float32), name))

    for name, factor in (("s_in", 0.7), ("sw0", 0.9), ("so0", 0.55), ("so1", 0.8)):
        put(name, scale(name) * np.float32(factor))
    put("sw1", scale("sw1") * np.array([0.61, 0.77, 0.93], dtype=np.float32))
    _node(model, "dq_w1").attribute.append(helper.make_attribute("axis", 0))
    _init(model, "zw1").CopyFrom(numpy_helper.from_array(np.zeros(3, dtype=np.int8), "zw1"))  # onnxruntime: per-axis zero points
    put("sb0", scale("s_in") * scale("sw0"))
    put("sb1", scale("so0") * scale("sw1"))
    _node(model, "dq_b1").attribute.append(helper.make_attribute("axis", 0))


def _per_channel_pow2(model: onnx.ModelProto) -> None:
    per_channel_scale(model)  # 2**-6 .. 2**-26: no common scale fits one 16-bit weight word
    _init(model, "zw0").CopyFrom(numpy_helper.from_array(np.zeros(5, dtype=np.int8), "zw0"))  # onnxruntime: per-axis zero points


def _onnxruntime(path: Path, x: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.add_session_config_entry("session.disable_quant_qdq", "1")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


CASES: dict[str, tuple[Callable[[onnx.ModelProto], None], bool, str]] = {
    # name: (mutation, bitwise against onnxruntime, what the bundle must show)
    "non-power-of-two output scale": (non_power_of_two_scale, False, "rq"),
    "every scale non-power-of-two, per-channel weights": (_all_non_power_of_two, False, "rq"),
    "nonzero zero point": (nonzero_zero_point, True, "zero point"),
    "per-channel power-of-two scales 2**-6 .. 2**-26": (_per_channel_pow2, True, "rq"),
    "uint8 graph input": (uint8_activation, True, "unsigned input"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_isa2_patterns_compile_and_match_onnxruntime(name: str, tmp_path: Path) -> None:
    mutate, bitwise, shows = CASES[name]
    model = _mlp()
    mutate(model)
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    ir = compile_model(path)
    write_compiled_bundle(ir, tmp_path / "b")
    bundle = load_bundle(tmp_path / "b")
    from axtrain.compiler.cli import summary, summary_dict

    fout = ir.layers[-1].output_format
    assert f"output (neuron words) y = (q - {fout.zero_point}) * {float(fout.scale)!r}" in summary(tmp_path / "b")
    assert summary_dict(tmp_path / "b")["memory"]["requant_entries"] == bundle.manifest.requant_entries
    if shows == "rq":
        assert bundle.manifest.requant_entries > 0 and any(ins.op == "REQ" and ins["rq"] for ins in bundle.program)
    elif shows == "zero point":
        assert ir.layers[-1].output_format.zero_point == 3
    else:
        assert not ir.input_format.signed
    x = np.random.default_rng(8).normal(0.0, 2.0, (300, 6)).astype(np.float32)
    produced = run_bundle(bundle, x)[-1]
    fast = simulate(bundle, x).outputs
    assert np.array_equal(dequantize(produced, ir.layers[-1].output_format), fast)  # interpreter == fast executor
    expected = _onnxruntime(path, x)
    lsb = np.rint((fast - expected) / np.float32(ir.layers[-1].output_format.scale))
    assert np.unique(produced).size > 5  # not vacuous: many output codes
    from axtrain.regress.against import verify_against

    line = verify_against(bundle, path, extra=64)[0]
    if bitwise:
        np.testing.assert_array_equal(fast, expected)
        assert "bit for bit" in line
    else:
        assert np.abs(lsb).max() <= 1 and np.mean(lsb != 0) < 0.01, (np.abs(lsb).max(), np.mean(lsb != 0))
        assert "within 1 output LSB" in line


def test_zero_point_on_a_padded_conv_compiles_with_padv(tmp_path: Path) -> None:
    """Refused until decision 185: the border of a padded Conv on a zero-point input reads CONV.padv =
    the zero point (the real value 0, as onnxruntime pads), so the bundle matches onnxruntime bit for bit."""
    rng = np.random.default_rng(1)
    model = build_model([random_conv(rng, 2, 1, 3, pad=1)], ["N", 1, 5, 5])
    zero = next(t for t in model.graph.initializer if t.name == "z_in")
    zero.CopyFrom(helper.make_tensor("z_in", TensorProto.INT8, [], [5]))
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    ir = compile_model(path)
    write_compiled_bundle(ir, tmp_path / "b")
    bundle = load_bundle(tmp_path / "b")
    assert [ins["padv"] for ins in bundle.program if ins.op == "CONV"] == [5]
    x = np.random.default_rng(2).normal(0.0, 2.0, (64, 1, 5, 5)).astype(np.float32)
    fast = simulate(bundle, x).outputs
    assert np.array_equal(dequantize(run_bundle(bundle, x)[-1], ir.layers[-1].output_format), fast.reshape(64, *ir.shapes[-1]))
    expected = _onnxruntime(path, x)
    assert np.unique(expected).size > 5
    np.testing.assert_array_equal(fast.reshape(expected.shape), expected)
