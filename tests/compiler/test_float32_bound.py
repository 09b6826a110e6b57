"""float32_bound: every compiled graph's layers get the float32 accumulation bound; a layer at or above
2**24 compiles with a warning, and the manifest records the bounds."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto
from onnx_graphs import Spec, build_model

from axtrain.compiler.package import write_compiled_bundle
from axtrain.compiler.passes.float32_bound import Float32BoundWarning
from axtrain.compiler.pipeline import compile_model


def _compile(tmp_path: Path, weight: np.ndarray, bits_in: int) -> tuple[list[warnings.WarningMessage], dict]:
    dtype = TensorProto.INT16 if bits_in == 16 else TensorProto.INT8
    specs = [Spec("gemm", weight=weight, bias=np.zeros(weight.shape[0], dtype=np.int32), fw=6, fo=2, out_dtype=dtype)]
    path = tmp_path / "m.onnx"
    onnx.save(build_model(specs, ["N", weight.shape[1]], f_in=4, in_dtype=dtype), path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ir = compile_model(path)
    write_compiled_bundle(ir, tmp_path / "b")
    return [w for w in caught if issubclass(w.category, Float32BoundWarning)], json.loads((tmp_path / "b" / "manifest.json").read_text())


def test_small_layer_is_exact_and_recorded(tmp_path: Path) -> None:
    weight = np.full((3, 10), 5, dtype=np.int8)
    caught, manifest = _compile(tmp_path, weight, 8)
    assert not caught
    # fan_in 10 x max|a| 128 (s8 input) x max|w| 5 + max|b| 0, worked by hand
    assert manifest["float32_bound"] == {"limit": 2**24, "exact": True, "layers": {"0:gemm0": 6400}}


def test_wide_layer_warns(tmp_path: Path) -> None:
    # 16-bit inputs and weights, fan-in 600: 600 * 32768 * 30000 > 2**24 (the hand-built MLP)
    weight = np.full((4, 600), 30000, dtype=np.int16)
    caught, manifest = _compile(tmp_path, weight, 16)
    assert len(caught) == 1 and "accumulation bound 589824000000 >= 2**24" in str(caught[0].message)
    assert manifest["float32_bound"]["exact"] is False
