"""The real producers' corpus (producers.py): every file that needs no ISA v2 feature compiles,
verifies, matches onnxruntime bit for bit in exact mode and runs under drum:K and NTV; every other file
is refused in one line, exit 2, naming the node and the pattern. A few cases run in the default tier,
the whole corpus in the slow tier (``make test-slow``), which also prints the share that compiles."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from producers import Case, calibration, corpus

from axtrain.compiler.package import write_compiled_bundle
from axtrain.compiler.pipeline import compile_model
from axtrain.formats.bundle import load_bundle
from axtrain.hwmodels.fixedpoint import dequantize
from axtrain.hwmodels.multipliers import parse_mode
from axtrain.runtime.interpreter import run_bundle
from axtrain.runtime.verify import verify_bundle

CASES = {case.name: case for case in corpus()}
FAST = (
    "brevitas-qcdq-mlp-8b-bias-qout-op17",
    "brevitas-qcdq-mlp-4b-nobias-fout-op17",
    "qonnx-quant-mlp-4b-bias-qout",
    "torch-fq-mlp-bias-op17-dyn",
    "ort-s8s8-mlp-bias",
)


def reference(path: Path, x: np.ndarray) -> np.ndarray:
    """onnxruntime's float32 output (QDQ fusions off, docs/onnx-schema.md); for a file of QONNX
    Quant nodes, which onnxruntime cannot run, qonnx's own executor."""
    model = onnx.load(str(path))
    if any(node.domain.startswith("qonnx") for node in model.graph.node):
        from qonnx.core.modelwrapper import ModelWrapper
        from qonnx.core.onnx_exec import execute_onnx
        from qonnx.transformation.infer_shapes import InferShapes

        wrapper = ModelWrapper(model).transform(InferShapes())
        name = wrapper.graph.input[0].name
        return np.asarray(execute_onnx(wrapper, {name: x})[wrapper.graph.output[0].name], dtype=np.float32)
    options = ort.SessionOptions()
    options.add_session_config_entry("session.disable_quant_qdq", "1")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def run_cli(args: list[str]) -> tuple[int, str, str]:
    """The CLI in a child process: the producers' libraries leave logging handlers on pytest's
    captured streams, which would add lines to what a user sees; a child shows exactly that."""
    done = subprocess.run([sys.executable, "-m", "axtrain.cli", *args], capture_output=True, text=True, timeout=300, check=False)
    return done.returncode, done.stdout, done.stderr


def check_case(case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reason = case.missing()
    if reason:
        pytest.skip(reason)
    path = case.build(tmp_path)
    if case.refusal is not None:
        code, _, err = run_cli(["compile", str(path), "--out", str(tmp_path / "b")])
        assert code == 2, err
        assert err.count("\n") == 1 and err.startswith("error: node '"), err  # one line, naming the node
        assert re.search(case.refusal, err), err
        assert not (tmp_path / "b").exists()
        return
    ir = compile_model(path)
    write_compiled_bundle(ir, tmp_path / "b")
    assert verify_bundle(tmp_path / "b").ok
    bundle = load_bundle(tmp_path / "b")
    shape = tuple(bundle.manifest.input.shape)
    declared = ir.graph.inputs[0][2][0]  # a static batch (the exporter's example) is fed in slices of it
    batch = declared if isinstance(declared, int) else 16
    x = calibration(shape, n=16 - 16 % batch, seed=11) * 2.0
    produced = run_bundle(bundle, x)
    final = dequantize(produced[-1], ir.layers[-1].output_format)
    expected = np.concatenate([reference(path, x[i:i + batch]) for i in range(0, len(x), batch)]).reshape(final.shape)
    if case.bitwise:
        np.testing.assert_array_equal(final, expected)  # bit for bit
    else:  # non-power-of-two scales: within one output LSB of onnxruntime's float path (docs/numerics.md)
        lsb = np.rint((final - expected) / np.float32(ir.layers[-1].output_format.scale))
        assert np.abs(lsb).max() <= 1, np.abs(lsb).max()
    fmt = ir.layers[-1].output_format
    assert np.mean(produced[-1] != 0) > 0.3 and np.mean(np.abs(produced[-1]) < fmt.qmax) > 0.3  # not vacuous
    approximate = run_bundle(bundle, x, mode_override=parse_mode("drum:2"))[-1]
    assert approximate.shape == produced[-1].shape and not np.array_equal(approximate, produced[-1])
    np.save(tmp_path / "x.npy", x)
    code, out, err = run_cli(["simulate", str(tmp_path / "b"), "--inputs", str(tmp_path / "x.npy"), "--multiplier", "drum:3", "--sram-voltage", "0.66"])
    assert code == 0, err
    assert "energy" in out.lower()


@pytest.mark.parametrize("name", FAST)
def test_producer_fast(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    check_case(CASES[name], tmp_path, capsys)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in CASES if n not in FAST])
def test_producer_corpus(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    check_case(CASES[name], tmp_path, capsys)
