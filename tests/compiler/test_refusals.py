"""Out-of-subset models are refused through the CLI: exit code 2, one line naming the node and reason."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import pytest
from cli_run import run_cli
from onnx import TensorProto, helper, numpy_helper
from onnx_graphs import build_model, mlp_specs, random_conv


def _mlp(seed: int = 3) -> onnx.ModelProto:
    return build_model(mlp_specs(np.random.default_rng(seed), [6, 5, 3]), ["N", 6])


def _init(model: onnx.ModelProto, name: str) -> onnx.TensorProto:
    return next(t for t in model.graph.initializer if t.name == name)


def _node(model: onnx.ModelProto, name: str) -> onnx.NodeProto:
    return next(n for n in model.graph.node if n.name == name)


def sigmoid(model: onnx.ModelProto) -> None:
    _node(model, "relu0").op_type = "Sigmoid"


def non_power_of_two_scale(model: onnx.ModelProto) -> None:
    _init(model, "so0").CopyFrom(numpy_helper.from_array(np.array(0.3, dtype=np.float32), "so0"))


def nonzero_zero_point(model: onnx.ModelProto) -> None:
    _init(model, "zo1").CopyFrom(helper.make_tensor("zo1", TensorProto.INT8, [], [3]))


def float_weights(model: onnx.ModelProto) -> None:
    weights = numpy_helper.to_array(_init(model, "w1")).astype(np.float32)
    model.graph.initializer.append(numpy_helper.from_array(weights, "w1_float"))
    gemm = _node(model, "gemm1")
    gemm.input[1] = "w1_float"
    model.graph.node.remove(_node(model, "dq_w1"))


def dynamic_feature_dim(model: onnx.ModelProto) -> None:
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_param = "features"


def per_channel_scale(model: onnx.ModelProto) -> None:
    # Powers of two 2**-6 .. 2**-26: one common scale would need 8 + 20 bits per weight.
    _init(model, "sw0").CopyFrom(numpy_helper.from_array(np.array([2.0**-f for f in (6, 7, 8, 9, 26)], dtype=np.float32), "sw0"))
    _node(model, "dq_w0").attribute.append(helper.make_attribute("axis", 0))


def metadata_disagrees(model: onnx.ModelProto) -> None:
    _node(model, "gemm0").metadata_props.add(key="axtrain.output_format", value="s8.3")


def unknown_schema(model: onnx.ModelProto) -> None:
    model.metadata_props.add(key="axtrain.schema", value="9")


def branching(model: onnx.ModelProto) -> None:
    model.graph.node.append(helper.make_node("Relu", ["x1"], ["side"], name="side_relu"))


def uint8_activation(model: onnx.ModelProto) -> None:
    # uint8 on the graph input: no Relu before it, so the range [0, 255] is not a signed format.
    _init(model, "z_in").CopyFrom(helper.make_tensor("z_in", TensorProto.UINT8, [], [0]))


CASES: dict[str, tuple[Callable[[onnx.ModelProto], None], str]] = {
    "unsupported op": (sigmoid, r"node 'relu0' \(Sigmoid\): operator Sigmoid is not supported"),
    "float weights": (float_weights, r"node 'gemm1' \(Gemm\): float initializer 'w1_float' \[3, 5\]"),
    "dynamic non-batch dim": (dynamic_feature_dim, r"input 'input': dimension 1 is dynamic \('features'\)"),
    "metadata vs scales": (metadata_disagrees, r"node 'gemm0' \(Gemm\): metadata axtrain.output_format=s8.3 disagrees"),
    "unknown schema": (unknown_schema, "axtrain.schema='9': unknown AxTrain ONNX schema version"),
    # A tensor may feed several layers (a DAG); a bare Relu on a quantised activation is no layer.
    "branching graph": (branching, r"node 'side_relu' \(Relu\): not expected here: a layer is Gemm/MatMul/Conv"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_refused_with_one_line_and_exit_2(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mutate, expected = CASES[case]
    model = _mlp()
    mutate(model)
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    code, out, err = run_cli(["compile", str(path), "--out", str(tmp_path / "b")], capsys)
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert re.search(expected, err), err
    assert not (tmp_path / "b").exists()


def test_inconsistent_group_and_bad_dilation_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Grouped and dilated convs are supported (tests/compiler/test_mlperf_tiny.py, test_conv_pool_geometry.py);
    # a group the weight does not fit is not, nor a dilation that is not two positive values.
    rng = np.random.default_rng(0)
    for attribute, value, message in (("group", 2, r"weight \[4, 4, 3, 3\] with group=2 does not fit the input's 4 channels"), ("dilations", [2, 0], r"dilations \[2, 0\] are not two positive values")):
        model = build_model([random_conv(rng, 4, 4, 3)], ["N", 4, 8, 8])
        conv = _node(model, "conv0")
        for attr in list(conv.attribute):
            if attr.name == attribute:
                conv.attribute.remove(attr)
        conv.attribute.append(helper.make_attribute(attribute, value))
        path = tmp_path / f"{attribute}.onnx"
        onnx.save(model, path)
        code, _, err = run_cli(["compile", str(path), "--out", str(tmp_path / "b")], capsys)
        assert code == 2 and "node 'conv0' (Conv)" in err and re.search(message, err), err


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_corrupted_bytes_refused(damage: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _mlp().SerializeToString()
    path = tmp_path / "m.onnx"
    path.write_bytes({"garbage": b"\xff\x00not a protobuf" * 20, "truncated": data[: len(data) // 2], "empty": b""}[damage])
    code, _, err = run_cli(["compile", str(path), "--out", str(tmp_path / "b")], capsys)
    assert code == 2 and err.count("\n") == 1 and "m.onnx" in err, err


def test_external_data_outside_model_directory_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = _mlp()
    weights = _init(model, "w0")
    onnx.external_data_helper.set_external_data(weights, location="../outside.bin")
    weights.data_location = TensorProto.EXTERNAL
    weights.ClearField("raw_data")
    weights.ClearField("int32_data")
    (tmp_path / "outside.bin").write_bytes(bytes(64))
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    path = model_dir / "m.onnx"
    path.write_bytes(model.SerializeToString())
    code, _, err = run_cli(["compile", str(path), "--out", str(tmp_path / "b")], capsys)
    assert code == 2 and "initializer 'w0' has external data at '../outside.bin', outside the model's directory" in err, err


def test_external_data_inside_directory_is_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = _mlp()
    path = tmp_path / "m.onnx"
    onnx.save(model, path, save_as_external_data=True, all_tensors_to_one_file=True, location="m.data", size_threshold=0)
    code, out, err = run_cli(["compile", str(path), "--out", str(tmp_path / "b")], capsys)
    assert code == 0, err
    code, out, err = run_cli(["verify", str(tmp_path / "b")], capsys)
    assert code == 0 and "verify:" in out


def test_architecture_too_small_is_a_config_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "m.onnx"
    onnx.save(_mlp(), path)
    arch = tmp_path / "arch.yaml"
    arch.write_text("neuron_buffer_bytes: 16\n")
    code, _, err = run_cli(["compile", str(path), "--out", str(tmp_path / "b"), "--arch", str(arch)], capsys)
    assert code == 2 and "do not fit the neuron buffer (8 words)" in err, err
    arch.write_text("pe_rowz: 3\n")
    code, _, err = run_cli(["compile", str(path), "--out", str(tmp_path / "b"), "--arch", str(arch)], capsys)
    assert code == 2 and "pe_rowz: unknown key" in err, err
