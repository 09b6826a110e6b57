"""Issue 17's weight-edit case: a weight word whose input is 0 in every one of format 1's eight
uniform goldens, edited with every hash recomputed, must fail `verify` with the default golden
count; the coverage figure shows why (all words exercised now, fewer by the old draws)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from nets import compile_bundle, export, rare_mlp_layers, set_weight_word

from axtrain.compiler.goldens import legacy_inputs
from axtrain.formats.bundle import load_bundle
from axtrain.hwmodels.fixedpoint import quantize
from axtrain.hwmodels.layers import forward


@pytest.fixture(scope="module")
def rare_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    layers, shape = rare_mlp_layers()
    root = tmp_path_factory.mktemp("rare")
    return compile_bundle(export(layers, shape, root / "rare.onnx"), root / "rare")


def test_the_edited_word_meets_only_zeros_in_the_old_goldens() -> None:
    layers, shape = rare_mlp_layers()
    x, _ = legacy_inputs(shape, layers[0].input_format)
    hidden = forward(layers, quantize(x, layers[0].input_format))[0]
    assert x.shape[0] == 8 and np.all(hidden[:, 3] == 0)  # layer 1's column 3 always multiplies 0


def test_verify_catches_the_edit_and_coverage_says_why(rare_bundle: Path, tmp_path: Path, run_cli: Callable) -> None:
    edited = tmp_path / "edited"
    shutil.copytree(rare_bundle, edited)
    # Layer 1 ("o") weights start after layer 0's 8 x 6 words; row 0, column 3 (hidden neuron 3).
    old = set_weight_word(edited, 48 + 0 * 8 + 3, -110)
    assert old == 110
    load_bundle(edited)  # every hash and twin is consistent: only the replay can tell
    code, out, err = run_cli(["verify", edited])
    assert code == 2 and err.startswith("error: layer 1 (o):") and "differ from the golden vectors" in err
    coverage = json.loads((rare_bundle / "manifest.json").read_text())["golden_coverage"]
    assert coverage["weight_words"] == 80 and coverage["weight_words_exercised"] == 80
    assert coverage["legacy_weight_words_exercised"] == 70  # 8 x 6 + 4 x 8 words less row 3 (6) and column 3 (4)
    code, out, _ = run_cli(["verify", rare_bundle])
    assert code == 0 and "exercise 80/80 weight words (100.0 %; format 1's 8 uniform draws: 70)" in out


def test_more_goldens_and_coverage_in_inspect(tmp_path: Path, run_cli: Callable) -> None:
    layers, shape = rare_mlp_layers()
    model = export(layers, shape, tmp_path / "rare.onnx")
    code, _, err = run_cli(["compile", model, "--out", tmp_path / "b", "--golden", "20"])
    assert code == 0, err
    assert np.load(tmp_path / "b" / "golden" / "inputs.npy").shape == (20, 6)
    code, out, _ = run_cli(["inspect", tmp_path / "b"])
    assert code == 0 and "golden coverage: 20 goldens exercise 80/80 weight words" in out
    code, _, err = run_cli(["compile", model, "--out", tmp_path / "c", "--golden", "0"])
    assert code == 2 and "--golden must lie in [1, 4096]" in err and not (tmp_path / "c").exists()


def test_verify_against_the_model(rare_bundle: Path, tmp_path: Path, run_cli: Callable) -> None:
    pytest.importorskip("onnxruntime", reason="onnxruntime runs the model")
    renamed = tmp_path / "another-name.onnx"
    shutil.copy(rare_bundle.parent / "rare.onnx", renamed)
    code, out, err = run_cli(["verify", rare_bundle, "--against", renamed, "--extra", "32"])
    assert code == 0, err
    assert (
        "against another-name.onnx OK  (8 goldens + 32 extra inputs, exact multipliers, equal onnxruntime bit for bit; "
        "model is the bundle's source)"
    ) in out
    # A different model (one bias changed) is caught on the outputs.
    layers, shape = rare_mlp_layers()
    other = export([layers[0], layers[1].with_changes(bias=layers[1].bias + 4000)], shape, tmp_path / "other.onnx")
    code, _, err = run_cli(["verify", rare_bundle, "--against", other])
    assert code == 2 and "output values differ from onnxruntime" in err


def test_verify_against_an_approximate_bundle_compares_in_exact_mode(tmp_path: Path, run_cli: Callable) -> None:
    """onnxruntime multiplies exactly whatever the annotations say; a DRUM(1) bundle's own outputs
    differ from it, and --against must compare with exact multipliers (found by the README Tour on a
    K1 network)."""
    pytest.importorskip("onnxruntime", reason="onnxruntime runs the model")
    from axtrain.hwmodels.multipliers import MultiplierMode
    from axtrain.runtime.interpreter import run_bundle

    layers, shape = rare_mlp_layers()
    approximate = [layer.with_changes(multipliers=(MultiplierMode(1),)) for layer in layers]
    bundle = compile_bundle(export(approximate, shape, tmp_path / "k1.onnx"), tmp_path / "k1")
    loaded = load_bundle(bundle)
    own, exact = run_bundle(loaded, loaded.golden_inputs())[-1], run_bundle(loaded, loaded.golden_inputs(), MultiplierMode(None))[-1]
    assert not np.array_equal(own, exact)  # the annotation matters, so the test can fail
    code, out, err = run_cli(["verify", bundle, "--against", tmp_path / "k1.onnx", "--extra", "16"])
    assert code == 0, err
    assert "exact multipliers, equal onnxruntime bit for bit" in out
