"""`axtrain compile --max-elements`: the model-size limits scale up to what the ISA addresses and
the machine can compile, checked before anything is read (issue 15); the defaults stay as they were."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from harness import run_cli
from onnx_graphs import build_model, mlp_specs

from axtrain import limits
from axtrain.compiler.pipeline import compile_to_bundle
from axtrain.errors import ConfigError, OnnxError
from axtrain.formats.bundle import load_bundle


def _model(path: Path) -> Path:
    specs = mlp_specs(np.random.default_rng(6), [10, 6, 3])  # initializers of 60 and 18 elements
    specs[0].fo, specs[1].fo = -2, -3
    onnx.save(build_model(specs, ["N", 10]), path)
    return path


def test_defaults_are_the_fixed_limits() -> None:
    assert limits.model_element_limits(None, ConfigError) == (limits.MAX_TENSOR_ELEMENTS, limits.MAX_MODEL_ELEMENTS) == (1 << 24, 1 << 25)


def test_the_ceiling_follows_memory_and_the_address_space() -> None:
    gib = 1 << 30
    assert limits.element_ceiling(memory_bytes=16 * gib) == 16 * gib // limits.COMPILE_BYTES_PER_ELEMENT  # 134,217,728
    assert limits.element_ceiling(memory_bytes=1 << 50) == limits.ADDRESSABLE_WEIGHT_WORDS == 1 << 32
    assert limits.element_ceiling(memory_bytes=gib) == limits.MAX_MODEL_ELEMENTS  # never below the defaults
    assert limits.model_element_limits(100_000_000, ConfigError, memory_bytes=16 * gib) == (100_000_000, 100_000_000)


@pytest.mark.parametrize("value", [0, -5, 1 << 40, True])
def test_values_outside_the_range_are_refused(value: int) -> None:
    with pytest.raises(ConfigError, match="--max-elements must be an integer from 1 to"):
        limits.model_element_limits(value, ConfigError, memory_bytes=16 << 30)


def test_the_option_raises_what_the_defaults_refuse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import axtrain.compiler.onnx_import as onnx_import

    monkeypatch.setattr(onnx_import, "MAX_TENSOR_ELEMENTS", 50)  # stand-ins for 16 Mi / 32 Mi: w0 has 60
    monkeypatch.setattr(onnx_import, "MAX_MODEL_ELEMENTS", 70)
    model = _model(tmp_path / "m.onnx")
    with pytest.raises(OnnxError, match=r"initializer .* more than the limit of 50"):
        compile_to_bundle(model, tmp_path / "refused")
    with pytest.raises(OnnxError, match="more than 77 elements in all"):
        compile_to_bundle(model, tmp_path / "refused", max_elements=77)  # 60 + 6 + 18 + 3 = 87 in all
    bundle = load_bundle(compile_to_bundle(model, tmp_path / "b", max_elements=100))
    assert bundle.weights.size == 60 + 18


def test_cli_refuses_a_bad_value_in_one_line(tmp_path: Path) -> None:
    model = _model(tmp_path / "m.onnx")
    code, _, err = run_cli(["compile", str(model), "--out", str(tmp_path / "b"), "--max-elements", "0"])
    assert code == 2 and err.startswith("error: --max-elements must be") and len(err.splitlines()) == 1
    assert not (tmp_path / "b").exists()
    code, out, err = run_cli(["compile", str(model), "--out", str(tmp_path / "b"), "--max-elements", "1000"])
    assert code == 0 and "78 weight words" in out, err
