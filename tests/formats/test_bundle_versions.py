"""Bundle format 2.0 (testbench twins, coverage, content hash since 1.1); format 1 / 1.1 bundles (ISA 1) refused by name."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "bringup"))

from nets import cnn_layers, compile_bundle, export, reseal  # noqa: E402

from axtrain.cli import main  # noqa: E402
from axtrain.errors import BundleError  # noqa: E402
from axtrain.formats import bundle as fmt  # noqa: E402

NEW_FILES = (fmt.PROGRAM_HEX, fmt.GOLDEN_INPUTS_INT, fmt.GOLDEN_INPUTS_HEX)


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("versions")
    layers, shape = cnn_layers()
    return compile_bundle(export(layers, shape, root / "m.onnx"), root / "b")


@pytest.fixture
def bundle(original: Path, tmp_path: Path) -> Path:
    shutil.copytree(original, tmp_path / "b")
    return tmp_path / "b"


def cli(args: list, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as stop:
        code = int(stop.code or 0)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.mark.parametrize("old", ["1", "1.1"])
def test_format_1_bundles_are_refused_by_name(old: str, bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = json.loads((bundle / fmt.MANIFEST).read_text())
    manifest["format_version"], manifest["isa_version"] = old, "1"
    (bundle / fmt.MANIFEST).write_text(json.dumps(manifest))
    message = f"bundle format {old} (ISA 1) was written by an earlier axtrain; recompile its ONNX with `axtrain compile`"
    with pytest.raises(BundleError, match=re.escape(message)):
        fmt.load_bundle(bundle)
    for command in (["verify", bundle], ["simulate", bundle, "--app", "breast-cancer"], ["inspect", bundle]):
        code, out = cli(command, capsys)
        assert code == 2 and out.count("\n") == 1 and out.startswith("error: ") and message in out, (command, out)


def test_this_version_is_isa_2_bundle_2_0(original: Path) -> None:
    manifest = json.loads((original / fmt.MANIFEST).read_text())
    assert (manifest["format_version"], manifest["isa_version"]) == ("2.0", "2")
    assert (original / fmt.PROGRAM_ASM).read_text().startswith("; AxTrain FlexFlow ISA v2 program")


def test_unknown_minor_version_is_refused_by_name(bundle: Path) -> None:
    manifest = json.loads((bundle / fmt.MANIFEST).read_text())
    manifest["format_version"] = "2.1"
    (bundle / fmt.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"unknown bundle format version '2.1' \(this axtrain reads versions 2.0\)"):
        fmt.load_bundle(bundle)


def test_format_2_needs_its_files(bundle: Path) -> None:
    manifest = json.loads((bundle / fmt.MANIFEST).read_text())
    del manifest["files"][fmt.PROGRAM_HEX]
    (bundle / fmt.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="manifest lists no hash for program.hex"):
        fmt.load_bundle(bundle)


def test_a_consistent_but_different_program_hex_is_refused(bundle: Path) -> None:
    lines = (bundle / fmt.PROGRAM_HEX).read_text().splitlines()
    lines[3] = lines[3][:-1] + ("0" if lines[3][-1] != "0" else "1")
    (bundle / fmt.PROGRAM_HEX).write_text("\n".join(lines) + "\n")
    manifest = json.loads((bundle / fmt.MANIFEST).read_text())
    manifest["files"][fmt.PROGRAM_HEX] = fmt.sha256_file(bundle / fmt.PROGRAM_HEX)
    (bundle / fmt.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="program.hex does not match program.bin"):
        fmt.load_bundle(bundle)


def test_content_hash_is_checked_and_ignores_names(bundle: Path) -> None:
    manifest = json.loads((bundle / fmt.MANIFEST).read_text())
    manifest["source_onnx_name"] = "renamed.onnx"
    manifest["toolchain"]["axtrain"] = "9.9.9"
    (bundle / fmt.MANIFEST).write_text(json.dumps(manifest))
    fmt.load_bundle(bundle)  # names and versions are not part of the identity
    layers = json.loads((bundle / fmt.LAYERS).read_text())
    layers[0]["sram_voltage"] = 0.6  # the weight SRAM's operating point is
    (bundle / fmt.LAYERS).write_text(json.dumps(layers))
    manifest["files"][fmt.LAYERS] = fmt.sha256_file(bundle / fmt.LAYERS)
    (bundle / fmt.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="content_sha256 does not match"):
        fmt.load_bundle(bundle)
    reseal(bundle)
    fmt.load_bundle(bundle)


def test_verify_catches_a_golden_hex_twin_that_differs(bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    name = fmt.golden_layer_hex(2)
    lines = (bundle / name).read_text().splitlines()
    lines[0] = f"{(int(lines[0], 16) + 1) & 0xFFFF:04x}"
    (bundle / name).write_text("\n".join(lines) + "\n")
    reseal(bundle)
    code, out = cli(["verify", bundle], capsys)
    assert code == 2 and "golden/layer_2.hex does not match its .npy twin" in out


def test_hex_images_layout(original: Path) -> None:
    b = fmt.load_bundle(original)
    words = (original / fmt.PROGRAM_HEX).read_text().splitlines()
    assert len(words) == len(b.program) and all(len(w) == 32 for w in words)
    assert int(words[-1], 16) == 0x0E  # END: opcode in the low byte, everything else zero
    q = b.load_npy(fmt.GOLDEN_INPUTS_INT)
    hexed = (original / fmt.GOLDEN_INPUTS_HEX).read_text().split()
    assert len(hexed) == q.size and int(hexed[1], 16) == (int(q.reshape(-1)[1]) & 0xFFFF)


def test_requant_image_is_listed_hashed_and_empty_for_power_of_two_scales(original: Path) -> None:
    manifest = json.loads((original / fmt.MANIFEST).read_text())
    assert manifest["requant_entries"] == 0 and {fmt.REQUANT_BIN, fmt.REQUANT_HEX} <= set(manifest["files"])
    assert (original / fmt.REQUANT_BIN).read_bytes() == b"" and fmt.load_bundle(original).requant.shape == (0, 3)


@pytest.mark.parametrize("entry, message", [
    ([1 << 30, 33, 0], None),
    ([-5, 33, 0], r"requant.bin: entry 1: multiplier -5 outside \[0, 2\*\*31\)"),
    ([1 << 30, 200, 0], r"requant.bin: entry 1: shift 200 outside \[0, 127\]"),
])
def test_requant_entries_are_checked_on_load(entry: list[int], message: str | None, bundle: Path) -> None:
    import numpy as np

    words = np.array([[1 << 30, 31, 7], entry], dtype="<i4")
    (bundle / fmt.REQUANT_BIN).write_bytes(words.tobytes())
    reseal(bundle)
    if message is None:
        assert fmt.load_bundle(bundle).requant.tolist() == [[1 << 30, 31, 7], entry]
        return
    with pytest.raises(BundleError, match=message):
        fmt.load_bundle(bundle)


def test_requant_hex_twin_and_content_hash_cover_the_image(bundle: Path) -> None:
    import numpy as np

    (bundle / fmt.REQUANT_BIN).write_bytes(np.array([1 << 30, 31, 7], dtype="<i4").tobytes())
    reseal(bundle)
    sealed = fmt.load_bundle(bundle).manifest.content_sha256
    (bundle / fmt.REQUANT_HEX).write_text("40000000\n0000001f\n00000008\n")
    manifest = json.loads((bundle / fmt.MANIFEST).read_text())
    manifest["files"][fmt.REQUANT_HEX] = fmt.sha256_file(bundle / fmt.REQUANT_HEX)
    (bundle / fmt.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="requant.hex does not match requant.bin"):
        fmt.load_bundle(bundle)
    (bundle / fmt.REQUANT_BIN).write_bytes(np.array([1 << 30, 31, 8], dtype="<i4").tobytes())
    reseal(bundle)
    assert fmt.load_bundle(bundle).manifest.content_sha256 != sealed
