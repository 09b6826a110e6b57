"""compiler/pipeline.py and ``axtrain compile --dump-ir DIR / --stop-after STAGE``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cli_run import run_cli
from onnx_graphs import build_model, mlp_specs

from axtrain.compiler import cli as compiler_cli
from axtrain.compiler.pipeline import STAGES, compile_model


@pytest.fixture
def model(save_model, rng: np.random.Generator) -> Path:
    return save_model(build_model(mlp_specs(rng, [6, 5, 3]), ["N", 6]))


def test_the_hook_sees_every_stage_in_order_and_stop_after_ends_there(model: Path) -> None:
    assert STAGES == (
        "import", "fold_constants", "lower_qonnx", "flatten_shapes", "canonical_qdq", "drop_identity",
        "host_tail", "validate", "fold_qdq", "float32_bound", "tile_schedule", "allocate", "emit",
    ) == compiler_cli.STAGE_NAMES
    seen: list[str] = []
    full = compile_model(model, after=lambda stage, ir: seen.append(stage))
    assert seen == list(STAGES) and full.emitted is not None
    partial = compile_model(model, stop_after="tile_schedule")
    assert partial.schedule == full.schedule and partial.allocation is None and partial.emitted is None
    assert compile_model(model, stop_after="import").layers is None
    with pytest.raises(ValueError, match="unknown compiler stage 'fold'"):
        compile_model(model, stop_after="fold")


def test_dump_ir_writes_every_stage(model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(["compile", str(model), "--out", str(tmp_path / "b"), "--dump-ir", str(tmp_path / "ir")], capsys)
    assert code == 0, err
    names = sorted(p.name for p in (tmp_path / "ir").iterdir())
    assert names == [
        "00-import.json", "01-fold_constants.json", "02-lower_qonnx.json", "03-flatten_shapes.json", "04-canonical_qdq.json",
        "05-drop_identity.json", "06-host_tail.json", "07-validate.json", "08-fold_qdq.json", "09-float32_bound.json",
        "10-tile_schedule.json", "11-allocate.json", "12-emit.asm", "12-emit.json",
    ]
    folded = json.loads((tmp_path / "ir" / "08-fold_qdq.json").read_text())
    assert [layer["op"] for layer in folded["layers"]] == ["dense", "dense"] and "schedule" not in folded
    assert folded["layers"][0]["weight"]["shape"] == [5, 6] and len(folded["layers"][0]["weight"]["sha256"]) == 64
    emitted = json.loads((tmp_path / "ir" / "12-emit.json").read_text())
    assert emitted["emitted"]["instructions"] == len((tmp_path / "b" / "program.asm").read_text().splitlines()) - 3  # header + 2 layer notes
    assert (tmp_path / "ir" / "12-emit.asm").read_text() == (tmp_path / "b" / "program.asm").read_text()


def test_stop_after_writes_no_bundle(model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(["compile", str(model), "--out", str(tmp_path / "b"), "--stop-after", "allocate", "--dump-ir", str(tmp_path / "ir")], capsys)
    assert code == 0, err
    assert "stopped after allocate: 2 layers" in out and not (tmp_path / "b").exists()
    assert sorted(p.name for p in (tmp_path / "ir").iterdir())[-1] == "11-allocate.json"
    code, _, err = run_cli(["compile", str(model)], capsys)
    assert code == 2 and "--out BUNDLE is required" in err
    code, _, err = run_cli(["compile", str(model), "--stop-after", "fold"], capsys)
    assert code == 2 and "Invalid value for '--stop-after'" in err and len(err.strip().splitlines()) == 1
