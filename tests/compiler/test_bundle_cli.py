"""Bundle loading (versions, hashes), `axtrain verify` and `axtrain inspect` through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from cli_run import run_cli
from onnx_graphs import build_model, mlp_specs

from axtrain.errors import BundleError
from axtrain.formats import bundle as fmt
from axtrain.formats.bundle import load_bundle


@pytest.fixture
def bundle_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    specs = mlp_specs(np.random.default_rng(7), [20, 17, 5])
    specs[0].fo, specs[1].fo = -3, -4
    model_path = tmp_path / "m.onnx"
    onnx.save(build_model(specs, ["N", 20]), model_path)
    code, out, err = run_cli(["compile", str(model_path), "--out", str(tmp_path / "b")], capsys)
    assert code == 0, err
    assert "compiled m.onnx: 2 layers" in out
    return tmp_path / "b"


def test_verify_prints_per_layer_ok(bundle_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(["verify", str(bundle_dir)], capsys)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("layer  0") and "OK" in lines[0] and "OK" in lines[1] and lines[-1].endswith("OK")


@pytest.mark.parametrize("name", [fmt.WEIGHTS_BIN, fmt.PROGRAM_BIN, fmt.LAYERS, "golden/layer_1.npy", fmt.ARCH])
def test_tampered_file_fails_verify_by_name(name: str, bundle_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = bundle_dir / name
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    code, out, err = run_cli(["verify", str(bundle_dir)], capsys)
    assert code == 2 and err.count("\n") == 1
    assert f"{name} does not match its sha256" in err


def test_missing_file_fails_by_name(bundle_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (bundle_dir / fmt.BIAS_HEX).unlink()
    code, _, err = run_cli(["verify", str(bundle_dir)], capsys)
    assert code == 2 and "bias.hex is missing" in err


@pytest.mark.parametrize("key, value, message", [
    ("format_version", "2", "unknown bundle format version '2'"),
    ("isa_version", "7", "unknown ISA version '7'"),
    ("format", "zip", "not an AxTrain bundle"),
])
def test_unknown_versions_refused_by_name(key: str, value: str, message: str, bundle_dir: Path) -> None:
    manifest = json.loads((bundle_dir / fmt.MANIFEST).read_text())
    manifest[key] = value
    (bundle_dir / fmt.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=message):
        load_bundle(bundle_dir)


def test_golden_mismatch_is_reported(bundle_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Rewrite a golden file *and* its hash: the hashes pass, the replay must catch the difference.
    golden = np.load(bundle_dir / "golden/layer_1.npy", allow_pickle=False)
    golden[0, 0] += 1
    np.save(bundle_dir / "golden/layer_1.npy", golden, allow_pickle=False)
    manifest = json.loads((bundle_dir / fmt.MANIFEST).read_text())
    manifest["files"]["golden/layer_1.npy"] = fmt.sha256_file(bundle_dir / "golden/layer_1.npy")
    (bundle_dir / fmt.MANIFEST).write_text(json.dumps(manifest))
    code, _, err = run_cli(["verify", str(bundle_dir)], capsys)
    assert code == 2 and "layer 1" in err and "1 values differ from the golden vectors; first at (0, 0)" in err, err


def test_inspect_summary_and_asm(bundle_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(["inspect", str(bundle_dir), "--asm"], capsys)
    assert code == 0, err
    bundle = load_bundle(bundle_dir)
    assert f"instructions: {len(bundle.program)}" in out
    assert "MAC " in out and "weight image 425 words" in out  # 17*20 + 5*17
    asm = out.split("\n\n")[-1]
    from axtrain.formats.isa import assemble

    assert assemble(asm) == bundle.program_bytes


def test_compile_refuses_existing_output_without_force(bundle_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["compile", str(tmp_path / "m.onnx"), "--out", str(bundle_dir)], capsys)
    assert code == 2 and "already exists (use --force" in err
    code, _, err = run_cli(["compile", str(tmp_path / "m.onnx"), "--out", str(bundle_dir), "--force"], capsys)
    assert code == 0, err


def test_program_asm_assembles_to_program_bin(bundle_dir: Path) -> None:
    from axtrain.formats.isa import assemble

    assert assemble((bundle_dir / fmt.PROGRAM_ASM).read_text()) == (bundle_dir / fmt.PROGRAM_BIN).read_bytes()
