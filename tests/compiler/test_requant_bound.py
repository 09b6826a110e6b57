"""The measured bound of non-power-of-two requantisation against onnxruntime's float path
(docs/numerics.md "Requantisation by multiplier and shift"): every output within one LSB, the argmax
unchanged on at least 99.9 % of inputs. The default tier measures a hand-built MLP with every scale
non-power-of-two (per-channel weights, a rescaled bias); the slow tier the real onnxruntime
``quantize_static`` exports of the producers corpus on 10,000 inputs each."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from producers import corpus
from test_isa2_import import _all_non_power_of_two, _mlp, _onnxruntime
from test_producers import reference

from axtrain.compiler.package import write_compiled_bundle
from axtrain.compiler.pipeline import compile_model
from axtrain.formats.bundle import load_bundle
from axtrain.runtime.simulation import simulate

MAX_LSB = 1
MIN_ARGMAX_AGREEMENT = 0.999


def measure(bundle_dir: Path, outputs: np.ndarray, expected: np.ndarray) -> tuple[int, float, float]:
    """(largest |difference| in output LSBs, share of outputs that differ, share of equal argmax)."""
    scale = np.float32(load_bundle(bundle_dir).manifest.output.fixed_point.scale)
    got, want = outputs.reshape(len(outputs), -1), expected.reshape(len(expected), -1)
    lsb = np.rint((got - want) / scale)
    return int(np.abs(lsb).max()), float(np.mean(lsb != 0)), float(np.mean(got.argmax(1) == want.argmax(1)))


def test_measured_bound_of_a_non_power_of_two_mlp(tmp_path: Path) -> None:
    model = _mlp(5)
    _all_non_power_of_two(model)
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    write_compiled_bundle(compile_model(path), tmp_path / "b")
    x = np.random.default_rng(21).normal(0.0, 2.0, (10000, 6)).astype(np.float32)
    worst, differing, agree = measure(tmp_path / "b", simulate(load_bundle(tmp_path / "b"), x).outputs, _onnxruntime(path, x))
    assert worst <= MAX_LSB and agree >= MIN_ARGMAX_AGREEMENT, (worst, differing, agree)
    assert differing < 0.01
    print(f"non-power-of-two MLP: max {worst} LSB, {differing:.5%} of outputs differ, argmax agrees on {agree:.4%}")


ORT_COMPILED = [case for case in corpus() if case.producer == "onnxruntime" and case.refusal is None]


@pytest.mark.slow
@pytest.mark.parametrize("case", ORT_COMPILED, ids=lambda c: c.name)
def test_measured_bound_of_onnxruntime_exports(case, tmp_path: Path) -> None:
    reason = case.missing()
    if reason:
        pytest.skip(reason)
    path = case.build(tmp_path)
    ir = compile_model(path)
    write_compiled_bundle(ir, tmp_path / "b")
    bundle = load_bundle(tmp_path / "b")
    declared = ir.graph.inputs[0][2][0]
    batch = declared if isinstance(declared, int) else 1000
    x = np.random.default_rng(13).normal(0.0, 1.0, (10000, *bundle.manifest.input.shape)).astype(np.float32)
    expected = np.concatenate([reference(path, x[i : i + batch]) for i in range(0, len(x), batch)])
    worst, differing, agree = measure(tmp_path / "b", simulate(bundle, x).outputs, expected)
    print(f"{case.name}: max {worst} LSB, {differing:.5%} of outputs differ, argmax agrees on {agree:.4%}")
    assert worst <= MAX_LSB and agree >= MIN_ARGMAX_AGREEMENT, (worst, differing, agree)
