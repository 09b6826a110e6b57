"""compiler.replan: re-planning a bundle (new per-layer modes and voltages) shares package.py's pieces.

A hand-built conv -> pool -> flatten -> dense -> dense graph (no torch): layers without weights sit
between compute layers, so the voltage rule for them is exercised.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx_graphs import Spec, build_model, random_conv, random_dense

from axtrain.compiler.pipeline import compile_to_bundle
from axtrain.compiler.replan import Plan, apply_plan, bundle_plan, compute_layers, replan_files, write_replanned
from axtrain.errors import AxTrainError, ConfigError
from axtrain.formats.bundle import load_bundle
from axtrain.runtime.verify import verify_bundle


@pytest.fixture(scope="module")
def bundle_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(3)
    specs = [
        random_conv(rng, 3, 1, 3, pad=1, fw=7, fo=2, relu=True),
        Spec("maxpool", kernel=2, stride=2),
        Spec("flatten"),
        random_dense(rng, 9, 27, fw=7, fo=1, relu=True),
        random_dense(rng, 4, 9, fw=7, fo=1),
    ]
    root = tmp_path_factory.mktemp("replan")
    onnx.save(build_model(specs, ["N", 1, 6, 6]), root / "m.onnx")
    return compile_to_bundle(root / "m.onnx", root / "bundle")


def test_replanning_with_the_bundles_own_plan_reproduces_it_byte_for_byte(bundle_path: Path) -> None:
    b = load_bundle(bundle_path)
    plan = bundle_plan(b)
    assert plan == Plan(("exact",) * 3, (1.1,) * 3)
    files, manifest = replan_files(b, plan)
    assert set(files) == set(b.manifest.files)
    for name, data in files.items():
        assert data == (bundle_path / name).read_bytes(), name  # listing, layer table and golden vectors too
    original = json.loads((bundle_path / "manifest.json").read_text())
    original.pop("files")
    assert manifest == original


def test_replanned_bundle_verifies_and_carries_the_plan(bundle_path: Path, tmp_path: Path) -> None:
    b = load_bundle(bundle_path)
    plan = Plan(("drum:1", "exact", "drum:3"), (0.66, 1.1, 0.5))
    out = write_replanned(b, plan, tmp_path / "plan")
    assert verify_bundle(out).ok  # golden vectors recomputed under the new MODE tables
    r = load_bundle(out)
    assert bundle_plan(r) == plan and len(r.program) == len(b.program)
    codes = []
    for layer in compute_layers(r):
        first, end = layer.program
        codes.append({ins["code"] for ins in r.program[first:end] if ins.op == "MODE"})
    assert codes == [{1}, {0}, {3}]  # ISA mode codes: 0 exact, k DRUM(k)
    # pool and flatten take the voltage of the compute layer before them
    assert [(s.op, s.multiplier, s.sram_voltage) for s in r.manifest.layers] == [
        ("conv", "drum:1", 0.66), ("maxpool", "-", 0.66), ("flatten", "-", 0.66), ("dense", "exact", 1.1), ("dense", "drum:3", 0.5),
    ]
    notes = [line for line in (out / "program.asm").read_text().splitlines() if line.startswith("; layer")]
    assert notes == ["; layer 0 conv0 (conv)", "; layer 1 maxpool1 (maxpool)", "; layer 2 flatten2 (flatten)", "; layer 3 gemm3 (dense)", "; layer 4 gemm4 (dense)"]
    assert not np.array_equal(r.golden_layer(0), b.golden_layer(0))  # DRUM(1) changes the first layer's outputs
    np.testing.assert_array_equal(r.weights, b.weights)


def test_bad_plans_are_one_line_errors(bundle_path: Path) -> None:
    b = load_bundle(bundle_path)
    with pytest.raises(ConfigError, match="plan gives 4 modes and 4 voltages; .* has 3 compute layers"):
        apply_plan(b, Plan(("exact",) * 4, (1.1,) * 4))
    with pytest.raises(AxTrainError, match="outside"):
        apply_plan(b, Plan(("exact",) * 3, (0.2,) * 3))
