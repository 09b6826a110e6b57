"""The host tail (the paper's Sigmoid output layer) through the chain: export, compile, simulate.

Exact mode against onnxruntime on each UCI app's test split (random integer weights with the app's
topology, as test_onnxruntime.py): the decided classes are identical and the float outputs agree
within ``SIGMOID_ATOL`` (onnxruntime's float32 Sigmoid is its own approximation, so not bit for
bit); the output-error metrics of the report equal the trainer's definitions; report_check accepts
the report and catches a tampered ``output_error``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from axtrain.compiler.cli import summary
from axtrain.compiler.pipeline import compile_to_bundle
from axtrain.datasets import APPLICATIONS, load
from axtrain.errors import OnnxError
from axtrain.formats.bundle import load_bundle
from axtrain.runtime.host_tail import SIGMOID_ATOL, apply_tail, class_sums, output_metrics, output_metrics_runs
from axtrain.runtime.report import simulate_to_report
from axtrain.runtime.report_check import check_report
from axtrain.trainer.export import bit_exact_session, export_layers, save_model

from .test_onnxruntime import app_network

UCI = [a for a, s in sorted(APPLICATIONS.items()) if s.dataset != "mnist"]


def _sigmoid_bundle(app: str, tmp_path: Path):
    layers, shape = app_network(app)
    onnx_path = save_model(export_layers(layers, shape, {"app": app}, output_layer="sigmoid"), tmp_path / f"{app}.onnx")
    return onnx_path, load_bundle(compile_to_bundle(onnx_path, tmp_path / f"{app}.bundle"))


@pytest.mark.parametrize("app", UCI)
def test_sigmoid_tail_matches_onnxruntime(app: str, tmp_path: Path) -> None:
    onnx_path, bundle = _sigmoid_bundle(app, tmp_path)
    assert [(op.op, op.node) for op in bundle.manifest.host_tail] == [("Sigmoid", "output_layer/Sigmoid")]
    data = load(app, seed=0)
    x, y = data.x_test.astype(np.float32), data.y_test.astype(np.int64)
    result, report = simulate_to_report(bundle, x, y, {"source": "test", "app": app})
    expected = bit_exact_session(onnx_path).run(None, {"input": x})[0]
    assert result.outputs.dtype == expected.dtype == np.float32 and result.outputs.shape == expected.shape
    assert float(np.max(np.abs(result.outputs - expected))) <= SIGMOID_ATOL
    assert np.all((result.outputs >= 0) & (result.outputs <= 1))
    # The decided class (argmax of the exact pre-tail outputs) always holds onnxruntime's largest
    # Sigmoid output (to within SIGMOID_ATOL), and equals its argmax wherever that output is clearly largest. These random
    # networks reach |z| = 32, where float32 Sigmoid outputs tie at 0 or 1 (a trained network: below).
    pred = result.predictions[0]
    rows = np.arange(len(pred))
    assert np.all(expected[rows, pred] >= expected.max(axis=1) - SIGMOID_ATOL)
    top2 = np.sort(expected, axis=1)[:, -2:]
    unique = top2[:, 1] - top2[:, 0] > 2 * SIGMOID_ATOL  # a clear winner, whatever the float32 rounding
    assert unique.sum() >= 10  # random weights saturate many samples; enough clear winners remain
    assert np.array_equal(pred[unique], expected.argmax(axis=1)[unique])
    # The outputs are not saturated constants (a comparison of 0s and 1s would prove little).
    assert np.unique(expected).size > 10
    assert check_report(report) == []
    err = report["output_error"]
    assert err["outputs"] == "sigmoid" and report["config"]["host_tail"] == ["Sigmoid"]
    assert err["error_rate"] == pytest.approx(1 - report["accuracy"]["mean"], abs=1e-12)
    onehot = np.eye(expected.shape[1])[y]
    assert err["mse"] == pytest.approx(float(((expected.astype(np.float64) - onehot) ** 2).sum(1).mean()), abs=1e-5)


def test_trained_sigmoid_network_decides_as_onnxruntime(tmp_path: Path) -> None:
    """A trained Sigmoid network (BP, 2 epochs, the trainer's export): argmax identical on the whole
    test split, outputs within SIGMOID_ATOL."""
    pytest.importorskip("torch")
    from axtrain.trainer.config import TrainConfig
    from axtrain.trainer.engine import train
    from axtrain.trainer.export import export_run

    run = tmp_path / "run"
    train(TrainConfig(app="satimage", method="bp", seed=0, epochs=2, device="cpu", threads=1, output_layer="sigmoid"), run)
    onnx_path = export_run(run, tmp_path / "net.onnx")
    assert [n.op_type for n in onnx.load(str(onnx_path)).graph.node][-1] == "Sigmoid"
    bundle = load_bundle(compile_to_bundle(onnx_path, tmp_path / "net.bundle"))
    data = load("satimage", seed=0)
    x, y = data.x_test.astype(np.float32), data.y_test.astype(np.int64)
    result, report = simulate_to_report(bundle, x, y, {"source": "test"})
    expected = bit_exact_session(onnx_path).run(None, {"input": x})[0]
    assert float(np.max(np.abs(result.outputs - expected))) <= SIGMOID_ATOL
    assert np.array_equal(result.predictions[0], expected.argmax(axis=1))
    assert report["accuracy"]["mean"] > 0.5 and check_report(report) == []


def test_bundle_without_tail_is_unchanged_and_scored_as_softmax(tmp_path: Path) -> None:
    layers, shape = app_network("ionosphere")
    plain = save_model(export_layers(layers, shape, {"app": "ionosphere"}), tmp_path / "plain.onnx")
    bundle = load_bundle(compile_to_bundle(plain, tmp_path / "plain.bundle"))
    assert bundle.manifest.host_tail == []
    assert "host_tail" not in json.loads((bundle.path / "manifest.json").read_text())
    assert "host tail none" in summary(bundle.path)
    data = load("ionosphere", seed=0)
    _, report = simulate_to_report(bundle, data.x_test.astype(np.float32), data.y_test.astype(np.int64), {"source": "test"})
    assert report["output_error"]["outputs"] == "softmax" and check_report(report) == []
    _, unlabelled = simulate_to_report(bundle, data.x_test.astype(np.float32), None, {"source": "test"})
    assert unlabelled["output_error"] is None and check_report(unlabelled) == []


def test_inspect_shows_the_tail(tmp_path: Path) -> None:
    _, bundle = _sigmoid_bundle("breast-cancer", tmp_path)
    assert "host tail Sigmoid (output_layer/Sigmoid)" in summary(bundle.path)


def test_report_check_catches_a_tampered_output_error(tmp_path: Path) -> None:
    _, bundle = _sigmoid_bundle("breast-cancer", tmp_path)
    data = load("breast-cancer", seed=0)
    _, report = simulate_to_report(bundle, data.x_test.astype(np.float32), data.y_test.astype(np.int64), {"source": "test"})
    bad = json.loads(json.dumps(report))
    bad["output_error"]["mse"] += 0.01
    assert any("output_error.mse" in p for p in check_report(bad))
    bad = json.loads(json.dumps(report))
    bad["output_error"]["per_run"][0]["error_rate"] = 0.5
    assert check_report(bad)
    bad = json.loads(json.dumps(report))
    bad["output_error"] = None
    assert any("labelled" in p for p in check_report(bad))


def test_a_sigmoid_inside_the_network_is_refused(tmp_path: Path) -> None:
    layers, shape = app_network("ionosphere")
    model = export_layers(layers, shape, {"app": "ionosphere"}, output_layer="sigmoid")
    # Move the Sigmoid in front of the last node's consumer: rewire so that it is not the graph's end.
    graph = model.graph
    sig = [n for n in graph.node if n.op_type == "Sigmoid"][0]
    extra = onnx.helper.make_node("Relu", [sig.output[0]], ["after"], name="after/Relu")
    graph.node.append(extra)
    graph.output[0].name = "after"
    path = save_model(model, tmp_path / "inner.onnx")
    with pytest.raises(OnnxError, match="operator Sigmoid is not supported inside the network"):
        compile_to_bundle(path, tmp_path / "inner.bundle")


def test_metrics_equal_the_trainers_definitions() -> None:
    torch = pytest.importorskip("torch")
    from axtrain.trainer.outputs import output_metrics as trainer_metrics

    rng = np.random.default_rng(3)
    z = rng.normal(0, 3, size=(200, 6))
    y = rng.integers(0, 6, size=200)
    for ops, layer in (([], "softmax"), (["Sigmoid"], "sigmoid")):
        ours = output_metrics(z, y, ops)
        theirs = trainer_metrics(torch.as_tensor(z), torch.as_tensor(y), layer)
        for key in ours:
            assert ours[key] == pytest.approx(theirs[key], rel=1e-12, abs=1e-15), (layer, key)
    # softmax: mse and brier coincide; sigmoid: they do not.
    soft = output_metrics(z, y, [])
    assert soft["mse"] == pytest.approx(soft["brier"], rel=1e-12)
    assert output_metrics(z, y, ["Sigmoid"])["mse"] != pytest.approx(output_metrics(z, y, ["Sigmoid"])["brier"], rel=1e-3)


def test_apply_tail_is_float32_sigmoid() -> None:
    z = np.array([[-100.0, -2.0, 0.0, 2.0, 100.0]], dtype=np.float32)
    out = apply_tail(["Sigmoid"], z)
    assert out.dtype == np.float32
    assert np.allclose(out, 1 / (1 + np.exp(-z.astype(np.float64))), rtol=0, atol=1e-7)
    assert out[0, 0] == 0.0 or out[0, 0] < 1e-40


def test_softmax_brier_is_the_written_out_definition_bit_for_bit() -> None:
    """Without a tail O is p, so brier reuses mse's float: equal to the definition computed on its own."""
    rng = np.random.default_rng(11)
    for n, k in ((1, 2), (37, 10), (1000, 7)):
        z = rng.integers(-128, 128, size=(n, k)).astype(np.float32) / 8
        y = rng.integers(0, k, size=n)
        z64 = z.astype(np.float64)
        e = np.exp(z64 - z64.max(axis=1, keepdims=True))
        p = e / e.sum(axis=1, keepdims=True)
        brier = float(((p - np.eye(k)[y]) ** 2).sum(axis=1).mean())
        assert output_metrics(z, y, [])["brier"] == brier


@pytest.mark.parametrize("classes", [1, 2, 3, 7, 8, 9, 10, 15, 16, 17, 33, 127, 128, 129, 300])
def test_class_sums_add_in_numpys_row_order(classes: int) -> None:
    """The class-major sum is the row-major ``sum(axis=1)`` bit for bit: numpy's pairwise order
    (sequential below 8, eight running sums to 128, halves above), signed zeros included."""
    rng = np.random.default_rng(classes)
    values = rng.random((2000, classes)) * 10.0 ** rng.uniform(-8, 8, (2000, classes))
    values[rng.random(values.shape) < 0.3] *= -1
    values[rng.random(values.shape) < 0.05] = -0.0
    got = class_sums(list(np.ascontiguousarray(values.T)))
    want = values.sum(axis=1)
    assert np.array_equal(got, want)
    assert np.array_equal(np.signbit(got), np.signbit(want))


@pytest.mark.parametrize("ops", [[], ["Sigmoid"]])
@pytest.mark.parametrize("classes", [1, 2, 5, 10, 17, 130])
def test_metrics_of_many_runs_are_the_floats_of_one_call_per_run(ops: list[str], classes: int) -> None:
    """output_metrics_runs (simulate's path) against output_metrics per run: the same floats, with
    tied outputs (the first class wins), saturated ones and a sigmoid far out in both tails."""
    rng = np.random.default_rng(7 + classes)
    z = (rng.integers(-2048, 2048, size=(3, 400, classes)) / 16).astype(np.float32)
    z[0, :50] = 0.0  # every class tied
    z[1, :20, : max(1, classes // 2)] = 127.9375  # ties at the top
    z[2, :10] = -127.9375
    y = rng.integers(0, classes, size=400)
    with np.errstate(over="ignore"):
        got = output_metrics_runs(z, y, ops)
        want = [output_metrics(z[run], y, ops) for run in range(3)]
    assert got == want
    assert len({m["error_rate"] for m in got}) > 1 or classes == 1
