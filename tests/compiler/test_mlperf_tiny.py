"""Networks of real size compile and match onnxruntime bit for bit in exact mode (issue 16).

The MLPerf Tiny shapes (ResNet-8, DS-CNN, MobileNetV1-0.25, the FC autoencoder), the CIFAR-10 CNN and
a 784-2048-2048-10 MLP (tests/compiler/mlperf_tiny.py) each compile with the default architecture,
pass ``axtrain verify``, and give onnxruntime's float32 outputs bit for bit on 1,000 seeded inputs
(slow tier). The default tier runs each with reduced widths on a few inputs, also through the
reference interpreter; the spill twins shrink the neuron buffer so that the same row-band code runs
on small maps.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable

import mlperf_tiny
import numpy as np
import onnx
import pytest

from axtrain.compiler.pipeline import compile_to_bundle
from axtrain.formats.arch import DEFAULT_ARCH, Architecture
from axtrain.formats.bundle import Bundle, load_bundle
from axtrain.runtime.execute import FastExecutor, output_floats, output_integers, place_inputs
from axtrain.runtime.interpreter import ReferenceExecutor
from axtrain.runtime.plan import Add

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is the reference of this comparison")

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # float32 bound warnings of wide layers: the comparison decides


def _inputs(bundle: Bundle, n: int, seed: int = 1) -> np.ndarray:
    # Uniform over the input format's range and 10 % beyond (some inputs saturate).
    fmt = bundle.manifest.input.fixed_point
    low, high = fmt.qmin * fmt.scale * 1.1, fmt.qmax * fmt.scale * 1.1
    return np.random.default_rng(seed).uniform(low, high, size=(n, *bundle.manifest.input.shape)).astype(np.float32)


def _onnxruntime(path: Path, x: np.ndarray) -> np.ndarray:
    from axtrain.trainer.export import bit_exact_session

    return np.asarray(bit_exact_session(path).run(None, {"input": x})[0])


def _fast(bundle: Bundle, x: np.ndarray, batch: int = 250) -> tuple[np.ndarray, np.ndarray]:
    """The fast executor's float outputs and final activation DRAM of the first batch."""
    executor = FastExecutor(bundle.program, bundle.arch)
    assert executor.plan.fast, executor.plan.reason  # the typed plan, not the interpreter fallback
    prepared = executor.prepare(bundle.weights, bundle.bias)
    outs, first = [], None
    for start in range(0, x.shape[0], batch):  # batches keep the activation DRAM of large maps small
        dram = place_inputs(x[start : start + batch], bundle.manifest.input.format, bundle.manifest.input.dram, bundle.manifest.activation_words)
        final, _ = executor.run(prepared, dram)
        first = final if first is None else first
        outs.append(output_floats(bundle, output_integers(bundle, final)))
    assert first is not None
    return np.concatenate(outs), first


def _build(name: str, tmp_path: Path, arch: Architecture = DEFAULT_ARCH, **kwargs: Any) -> tuple[Path, Bundle]:
    model = mlperf_tiny.BUILDERS[name](**kwargs)
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, path)
    return path, load_bundle(compile_to_bundle(path, tmp_path / f"{name}.bundle", arch=arch, golden_count=4))


def _compare(path: Path, bundle: Bundle, n: int, run_cli: Callable[[list[Any]], tuple[int, str, str]], reference: int = 0) -> None:
    code, out, err = run_cli(["verify", bundle.path])
    assert code == 0, out + err
    x = _inputs(bundle, n)
    got, final = _fast(bundle, x)
    expected = _onnxruntime(path, x).reshape(got.shape)
    assert got.dtype == expected.dtype == np.float32
    assert np.unique(expected).size > 10  # not a constant output: the comparison proves something
    assert int(np.sum(got.view(np.int32) != expected.view(np.int32))) == 0
    if reference:  # the living definition agrees word for word on the activation DRAM
        interpreter = ReferenceExecutor(bundle.program, bundle.arch)
        dram = place_inputs(x[:reference], bundle.manifest.input.format, bundle.manifest.input.dram, bundle.manifest.activation_words)
        expected_dram, _ = interpreter.run(interpreter.prepare(bundle.weights, bundle.bias), dram)
        assert np.array_equal(expected_dram, final[:reference])


def _ops(bundle: Bundle) -> set[str]:
    return {ins.op for ins in bundle.program}


SMALL_NB = Architecture(neuron_buffer_bytes=4096)  # 2 Ki words: the twins spill

# name, builder arguments of the default-tier twin, its architecture, instructions it must contain
TWINS: dict[str, tuple[dict[str, Any], Architecture, set[str]]] = {
    "resnet8": ({"width": 0.25, "size": 16}, DEFAULT_ARCH, {"ADD", "AVGPOOL"}),
    "ds_cnn": ({"width": 0.25}, DEFAULT_ARCH, {"AVGPOOL"}),
    "mobilenet_v1": ({"width": 0.5, "size": 24}, SMALL_NB, {"AVGPOOL"}),
    "autoencoder": ({"width": 0.25}, DEFAULT_ARCH, set()),
    "cifar_cnn": ({"width": 0.25, "size": 16}, SMALL_NB, {"POOL"}),
    "mlp": ({"width": 0.125}, DEFAULT_ARCH, set()),
}


@pytest.mark.parametrize("name", list(TWINS))
def test_small_twin_matches_onnxruntime_and_the_interpreter(name: str, tmp_path: Path, run_cli: Callable[[list[Any]], tuple[int, str, str]]) -> None:
    kwargs, arch, ops = TWINS[name]
    path, bundle = _build(name, tmp_path, arch, **kwargs)
    assert ops <= _ops(bundle)
    if arch is SMALL_NB:  # the twin runs the spill code: maps stored to and loaded from DRAM, synced there
        assert any(ins.op == "SYNC" and ins["space"] == 1 for ins in bundle.program)
    _compare(path, bundle, 24, run_cli, reference=2)


def test_resnet8_keeps_its_shortcuts_in_the_neuron_buffer(tmp_path: Path) -> None:
    """On the default buffer every shortcut of the twin fits beside the layers between its fork and
    its Add: no map goes through DRAM (decision 190), and each ADD reads both addends where their
    layers' SYNCs say they were written."""
    _, bundle = _build("resnet8", tmp_path, width=0.25, size=16)
    adds = [(i, record) for i, record in enumerate(bundle.layers) if record.op == "add"]
    assert len(adds) == 3 and all(len(record.sources) == 2 for _, record in adds)
    ops = [ins.op for ins in bundle.program]
    assert ops.count("LDN") == 1 and ops.count("STN") == 1  # the network input and output only
    syncs = {ins["layer"]: ins for ins in bundle.program if ins.op == "SYNC"}
    for _, record in adds:
        first, end = record.program
        add = next(ins for ins in bundle.program[first:end] if ins.op == "ADD")
        assert {add["a"], add["b"]} == {syncs[s]["nb"] for s in record.sources}
        assert all(syncs[s]["space"] == 0 for s in record.sources)


@pytest.mark.parametrize("mode, add_block", [("drum:1", None), ("drum:2", None), ("drum:5", None), ("drum:2", 40)])
def test_resnet8_twin_under_drum_and_ntv_faults_matches_the_interpreter(mode: str, add_block: int | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fast executor's DRUM paths on ResNet-8's shape (transformed words written by REQ, ADD and
    the residual branch's COPY, issue 16's benchmark row) give the interpreter's activation DRAM on
    a faulty 0.66 V weight image, word for word; also with the ADDs in blocks of a few words (the
    blocked path, which the full-size ADDs take; one ADD writes over an addend)."""
    from axtrain.runtime import execute
    from axtrain.runtime.faults import fault_regions, run_image
    from axtrain.runtime.overrides import Overrides, bundle_plan

    if add_block is not None:
        monkeypatch.setattr(execute, "ADD_BLOCK", add_block)

    _, bundle = _build("resnet8", tmp_path, width=0.25, size=16)
    plan = bundle_plan(bundle, Overrides.parse(mode, 0.66))
    image = run_image(bundle.weights, tuple(fault_regions(plan.layers)), 0, 0)
    assert not np.array_equal(image, bundle.weights)  # the faults flipped bits: the image differs
    x = _inputs(bundle, 3)
    dram = place_inputs(x, bundle.manifest.input.format, bundle.manifest.input.dram, bundle.manifest.activation_words)
    fast = FastExecutor(plan.program, bundle.arch)
    assert fast.plan.fast and fast.plan.codes, fast.plan.reason
    if add_block is not None:
        adds = [step for step in fast.plan.steps if isinstance(step, Add)]
        blocked = [execute.add_blocks(step, len(x)) for step in adds]
        assert adds and all(blocks is not None and len(blocks) > 1 for blocks in blocked)
        assert any(step.dst_view is not None and step.dst_view[0] in (step.a_view[0], step.b_view[0]) for step in adds)
    got, _ = fast.run(fast.prepare(image, bundle.bias), dram)
    interpreter = ReferenceExecutor(plan.program, bundle.arch)
    expected, _ = interpreter.run(interpreter.prepare(image, bundle.bias), dram)
    assert np.unique(output_integers(bundle, expected)).size > 3  # outputs that vary: the comparison proves something
    assert np.array_equal(got, expected)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(TWINS))
def test_full_size_matches_onnxruntime_on_1000_inputs(name: str, tmp_path: Path, run_cli: Callable[[list[Any]], tuple[int, str, str]]) -> None:
    path, bundle = _build(name, tmp_path)
    _compare(path, bundle, 1000, run_cli)


def _pool_net(attributes: dict[str, Any], tmp_path: Path) -> tuple[Path, onnx.NodeProto]:
    net = mlperf_tiny.QdqNet("pooled", [2, 8, 8], seed=0)
    x = net.conv(net.x, 4, (3, 3), pads=(1, 1, 1, 1), in_ch=2)
    x = net.avgpool(x, (3, 3), (2, 2))
    x = net.gemm(net.flatten(x), 64, 3, relu=False)
    model = net.model(x, [3])
    pool = next(node for node in model.graph.node if node.op_type == "AveragePool")
    for attribute, value in attributes.items():
        pool.attribute.append(onnx.helper.make_attribute(attribute, value))
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    return path, pool


@pytest.mark.parametrize("attributes", [
    {"count_include_pad": 1, "pads": [1, 1, 0, 0]},  # divisor 9 at the border too
    {"ceil_mode": 1},  # 8 rows: 4 windows (floor: 3), the last one short
    {"ceil_mode": 1, "count_include_pad": 1, "pads": [1, 1, 0, 0]},  # ceil adds no window here: allowed
])
def test_pool_attributes_onnxruntime_accepts_compile_and_match(attributes: dict[str, Any], tmp_path: Path, run_cli: Callable[[list[Any]], tuple[int, str, str]]) -> None:
    """What this test refused before decision 186: the same pool with ceil_mode / count_include_pad
    now compiles and matches onnxruntime bit for bit (tests/compiler/test_conv_pool_geometry.py has more)."""
    path, _ = _pool_net(attributes, tmp_path)
    bundle = load_bundle(compile_to_bundle(path, tmp_path / "b", golden_count=4))
    avgpool = next(ins for ins in bundle.program if ins.op == "AVGPOOL")
    assert avgpool["cip"] == attributes.get("count_include_pad", 0)
    _compare(path, bundle, 24, run_cli, reference=2)


@pytest.mark.parametrize("attribute,value,message", [
    ("dilations", [2, 2], r"dilations \[2, 2\] are not supported on a pool"),
    ("auto_pad", "SAME_MIDDLE", r"auto_pad='SAME_MIDDLE' is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID"),
    ("ceil_mode", 2, r"attribute ceil_mode=2 is not 0 or 1"),
])
def test_what_is_still_out_is_refused_in_one_line(attribute: str, value: Any, message: str, tmp_path: Path, run_cli: Callable[[list[Any]], tuple[int, str, str]]) -> None:
    path, pool = _pool_net({attribute: value}, tmp_path)
    code, _, err = run_cli(["compile", path, "--out", tmp_path / "b"])
    assert code == 2 and err.count("\n") == 1 and f"node '{pool.name}' (AveragePool)" in err, err
    assert re.search(message, err), err
    assert not (tmp_path / "b").exists()


def test_a_broadcasting_add_is_refused(tmp_path: Path, run_cli: Callable[[list[Any]], tuple[int, str, str]]) -> None:
    net = mlperf_tiny.QdqNet("broadcast", [2, 8, 8], seed=0)
    a = net.conv(net.x, 4, (3, 3), pads=(1, 1, 1, 1), in_ch=2)
    b = net.conv(a, 4, (2, 2), strides=(2, 2), in_ch=4)
    x = net.add(a, b)
    x = net.gemm(net.flatten(x), 256, 3, relu=False)
    path = tmp_path / "m.onnx"
    onnx.save(net.model(x, [3]), path)
    code, _, err = run_cli(["compile", path, "--out", tmp_path / "b"])
    assert code == 2 and err.count("\n") == 1 and re.search(r"\(Add\): adds shapes \[4, 8, 8\] and \[4, 4, 4\]", err), err
