"""`axtrain diff`: equivalent across a renamed source file, names the layer and word of a changed
weight, and names architecture fields."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

from nets import compile_bundle, set_weight_word

from axtrain.formats.arch import Architecture


def test_recompile_from_a_renamed_onnx_file_is_equivalent(cnn_bundle: Path, cnn_model: Path, tmp_path: Path, run_cli: Callable) -> None:
    renamed = tmp_path / "renamed-model.onnx"
    shutil.copy(cnn_model, renamed)
    again = compile_bundle(renamed, tmp_path / "again")
    a, b = (json.loads((p / "manifest.json").read_text()) for p in (cnn_bundle, again))
    assert a["source_onnx_name"] != b["source_onnx_name"]  # the old identity (manifest sha256) changed
    assert a["content_sha256"] == b["content_sha256"]  # the new one did not
    code, out, _ = run_cli(["diff", cnn_bundle, again])
    assert code == 0 and out.startswith("equivalent:")


def test_one_weight_changed_names_layer_and_word(cnn_bundle: Path, tmp_path: Path, run_cli: Callable) -> None:
    edited = tmp_path / "edited"
    shutil.copytree(cnn_bundle, edited)
    # Layer 2 (c1) weights follow layer 0's 3 x 18 words; its word 7 is row 0, column 7 of [5, 12].
    old = set_weight_word(edited, 54 + 7, 5)
    code, out, _ = run_cli(["diff", cnn_bundle, edited])
    assert code == 1
    lines = out.splitlines()
    assert lines[0] == f"weights: layer 2 (c1) weight word 7 (row 0, col 7; image word 61): {old} -> 5"
    assert lines[-1].startswith("1 differences; content sha256 different")


def test_architecture_and_program_differences_are_named(cnn_bundle: Path, cnn_model: Path, tmp_path: Path, run_cli: Callable) -> None:
    other = compile_bundle(cnn_model, tmp_path / "slow", Architecture(dram_latency_cycles=150))
    code, out, _ = run_cli(["diff", cnn_bundle, other])
    assert code == 1 and "arch: dram_latency_cycles: 100 -> 150" in out.splitlines()
    assert not any(line.startswith("program:") for line in out.splitlines())  # same instructions
    small = compile_bundle(cnn_model, tmp_path / "small", Architecture(pe_rows=2, pe_cols=2))
    code, out, _ = run_cli(["diff", cnn_bundle, small])
    assert code == 1 and any(line.startswith("program: instruction ") for line in out.splitlines())
