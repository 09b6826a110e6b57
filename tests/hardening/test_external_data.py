"""ONNX external data: a location escaping the model's directory (``../``, an absolute path, a
symlink to a file or a directory outside) is refused with an OnnxError naming the tensor, as are an
offset/length past the file's end or disagreeing with the tensor's declared shape."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx_graphs import build_model, mlp_specs

from axtrain.compiler.pipeline import compile_model
from axtrain.errors import OnnxError


def _model() -> onnx.ModelProto:
    specs = mlp_specs(np.random.default_rng(5), [10, 6, 3])
    specs[0].fo, specs[1].fo = -2, -3
    return build_model(specs, ["N", 10])


def _point(model: onnx.ModelProto, name: str, location: str, **extra: str) -> onnx.ModelProto:
    """Move initializer ``name`` to external data at ``location`` (its bytes are not written)."""
    tensor = next(t for t in model.graph.initializer if t.name == name)
    tensor.ClearField("raw_data")
    del tensor.external_data[:]
    tensor.external_data.add(key="location", value=location)
    for key, value in extra.items():
        tensor.external_data.add(key=key, value=value)
    tensor.data_location = onnx.TensorProto.EXTERNAL
    return model


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path]:
    """``tmp/model/`` (the model's directory) and ``tmp/outside/secret.bin`` (90 bytes: w0's size)."""
    model_dir, outside = tmp_path / "model", tmp_path / "outside"
    model_dir.mkdir()
    outside.mkdir()
    (outside / "secret.bin").write_bytes(bytes(range(90)))
    return model_dir, outside


def test_valid_external_data_compiles(layout: tuple[Path, Path]) -> None:
    model_dir, _ = layout
    path = model_dir / "m.onnx"
    onnx.save_model(_model(), path, save_as_external_data=True, all_tensors_to_one_file=True, location="w.data", size_threshold=16)
    assert (model_dir / "w.data").stat().st_size > 0
    reference = model_dir / "inline.onnx"
    onnx.save_model(_model(), reference)
    assert [layer.weight.tolist() for layer in compile_model(path).layers] == [layer.weight.tolist() for layer in compile_model(reference).layers]


@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlink_file", "symlink_dir", "dotdot_inside_first"])
def test_escaping_location_is_refused_naming_the_tensor(how: str, layout: tuple[Path, Path]) -> None:
    model_dir, outside = layout
    secret = outside / "secret.bin"
    if how == "dotdot":
        location = "../outside/secret.bin"
    elif how == "absolute":
        location = str(secret)
    elif how == "symlink_file":
        (model_dir / "link.bin").symlink_to(secret)
        location = "link.bin"
    elif how == "symlink_dir":
        (model_dir / "linked").symlink_to(outside, target_is_directory=True)
        location = "linked/secret.bin"
    else:
        (model_dir / "sub").mkdir()
        location = "sub/../../outside/secret.bin"
    path = model_dir / "m.onnx"
    onnx.save(_point(_model(), "w0", location), path)
    with pytest.raises(OnnxError, match=r"initializer 'w0' has external data at .*outside the model's directory"):
        compile_model(path)


def test_symlink_inside_the_directory_is_refused_by_name(layout: tuple[Path, Path]) -> None:
    # onnx refuses to open symbolic links at all; the compiler says so in its own words.
    model_dir, _ = layout
    model = _model()
    w0 = next(t for t in model.graph.initializer if t.name == "w0")
    (model_dir / "real.bin").write_bytes(w0.raw_data)
    (model_dir / "alias.bin").symlink_to(model_dir / "real.bin")
    path = model_dir / "m.onnx"
    onnx.save(_point(model, "w0", "alias.bin"), path)
    with pytest.raises(OnnxError, match=r"initializer 'w0': external data location 'alias.bin' is a symbolic link"):
        compile_model(path)


@pytest.mark.parametrize("extra, message", [
    ({"offset": "100"}, r"beyond the end"),
    ({"length": "1000"}, r"beyond the end"),
    ({"offset": "-4"}, r"offset -4 is negative"),
    ({"length": "12x"}, r"length '12x' is not an integer"),
    ({"length": "10"}, r"holds 10 bytes, its shape \[6, 10\] needs 60"),
    ({"offset": str(2**62)}, r"beyond the end"),
])
def test_bad_offset_or_length_is_refused_before_reading(extra: dict[str, str], message: str, layout: tuple[Path, Path]) -> None:
    model_dir, _ = layout
    (model_dir / "w.bin").write_bytes(bytes(90))
    path = model_dir / "m.onnx"
    onnx.save(_point(_model(), "w0", "w.bin", **extra), path)
    with pytest.raises(OnnxError, match=message) as caught:
        compile_model(path)
    assert "initializer 'w0'" in str(caught.value)


def test_missing_external_file_is_named(layout: tuple[Path, Path]) -> None:
    model_dir, _ = layout
    path = model_dir / "m.onnx"
    onnx.save(_point(_model(), "w1", "gone.bin"), path)
    with pytest.raises(OnnxError, match=r"initializer 'w1' needs external data file 'gone.bin', which is missing"):
        compile_model(path)
    assert not os.path.exists(model_dir / "gone.bin")
