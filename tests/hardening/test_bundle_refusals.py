"""Bundles: hashes verified on load (before any content is parsed), unknown format versions and
undecodable instructions refused by name -- through the API and through the CLI (exit 2, one line)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from harness import run_cli
from onnx_graphs import build_model, mlp_specs

from axtrain.compiler.pipeline import compile_to_bundle
from axtrain.errors import BundleError
from axtrain.formats import bundle as fmt
from axtrain.formats.bundle import load_bundle
from axtrain.formats.isa import WORD_BYTES


@pytest.fixture(scope="module")
def seed_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("seed")
    specs = mlp_specs(np.random.default_rng(8), [10, 6, 3])
    specs[0].fo, specs[1].fo = -2, -3
    onnx.save(build_model(specs, ["N", 10]), tmp / "m.onnx")
    return compile_to_bundle(tmp / "m.onnx", tmp / "b")


@pytest.fixture
def bundle(seed_bundle: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(seed_bundle, tmp_path / "b"))


def _rewrite(bundle: Path, name: str, data: bytes, rehash: bool = True) -> None:
    (bundle / name).write_bytes(data)
    if rehash:
        manifest = json.loads((bundle / fmt.MANIFEST).read_text())
        manifest["files"][name] = fmt.sha256_bytes(data)
        (bundle / fmt.MANIFEST).write_text(json.dumps(manifest))


def _assert_refused(bundle: Path, pattern: str) -> None:
    """Refused by the loader and by each CLI command with one ``error:`` line, exit 2."""
    with pytest.raises(BundleError, match=pattern):
        load_bundle(bundle)
    for command in (["verify", str(bundle)], ["inspect", str(bundle)], ["inspect", "--asm", str(bundle)]):
        code, _, err = run_cli(command)
        assert code == 2 and len(err.splitlines()) == 1 and err.startswith("error: "), (command, code, err)


@pytest.mark.parametrize("name", [fmt.LAYERS, fmt.ARCH, fmt.PROGRAM_BIN, fmt.GOLDEN_INPUTS])
def test_hashes_checked_before_contents_are_parsed(name: str, bundle: Path) -> None:
    _rewrite(bundle, name, b"\xff not what it was", rehash=False)
    _assert_refused(bundle, f"{name} does not match its sha256 in the manifest")


@pytest.mark.parametrize("value", ["2", 1, "1.0", None, ""])
def test_unknown_format_version_refused(value: object, bundle: Path) -> None:
    manifest = json.loads((bundle / fmt.MANIFEST).read_text())
    manifest["format_version"] = value
    (bundle / fmt.MANIFEST).write_text(json.dumps(manifest))
    _assert_refused(bundle, f"unknown bundle format version {value!r}")


@pytest.mark.parametrize("edit, pattern", [
    (lambda w: bytes([0x00]) + w[1:], r"instruction 3: unknown opcode 0x00"),
    (lambda w: bytes([0x7E]) + w[1:], r"instruction 3: unknown opcode 0x7e"),
    (lambda w: w[:15] + b"\x80", r"instruction 3 \(\w+\): reserved bits \d+\.\.127 are not zero"),
])
def test_undecodable_instruction_refused_by_index(edit, pattern: str, bundle: Path) -> None:
    program = bytearray((bundle / fmt.PROGRAM_BIN).read_bytes())
    word = bytes(program[3 * WORD_BYTES : 4 * WORD_BYTES])
    program[3 * WORD_BYTES : 4 * WORD_BYTES] = edit(word)
    _rewrite(bundle, fmt.PROGRAM_BIN, bytes(program))  # hashes pass: the decoder must catch it
    _assert_refused(bundle, pattern)


def test_partial_instruction_refused(bundle: Path) -> None:
    _rewrite(bundle, fmt.PROGRAM_BIN, (bundle / fmt.PROGRAM_BIN).read_bytes()[:-5])
    _assert_refused(bundle, r"not a multiple of the 16-byte instruction word")


def test_manifest_naming_a_file_outside_is_refused(bundle: Path, tmp_path: Path) -> None:
    (tmp_path / "secret").write_bytes(b"x")
    manifest = json.loads((bundle / fmt.MANIFEST).read_text())
    manifest["files"]["../secret"] = fmt.sha256_bytes(b"x")
    (bundle / fmt.MANIFEST).write_text(json.dumps(manifest))
    _assert_refused(bundle, r"manifest names a file outside the bundle: \.\./secret")


def test_symlinked_file_pointing_outside_is_refused(bundle: Path, tmp_path: Path) -> None:
    outside = tmp_path / "weights.bin"
    outside.write_bytes((bundle / fmt.WEIGHTS_BIN).read_bytes())
    (bundle / fmt.WEIGHTS_BIN).unlink()
    (bundle / fmt.WEIGHTS_BIN).symlink_to(outside)
    _assert_refused(bundle, r"manifest names a file outside the bundle: weights.bin")


def test_layer_table_disagreeing_with_the_program_is_refused_by_verify(bundle: Path) -> None:
    layers = json.loads((bundle / fmt.LAYERS).read_text())
    layers[1]["output_shape"] = [4]  # the program SYNCs 3 values
    _rewrite(bundle, fmt.LAYERS, json.dumps(layers).encode())
    code, _, err = run_cli(["verify", str(bundle)])
    assert code == 2 and "layer 1" in err and "SYNCs 3 values" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("name, text, pattern", [
    (fmt.WEIGHTS_HEX, None, r"weights.hex does not match weights.bin"),
    (fmt.BIAS_HEX, None, r"bias.hex does not match bias.bin"),
    (fmt.PROGRAM_ASM, None, r"program.asm does not match program.bin"),
    (fmt.PROGRAM_ASM, "END x=" + "9" * 5000 + "\n", r"operand x value 999999999999\.\.\. is too long"),
])
def test_text_twins_must_match_the_binaries(name: str, text: str | None, pattern: str, bundle: Path) -> None:
    # Hardware flows read the .hex images: a re-hashed but different one must not pass silently.
    if text is None:
        lines = (bundle / name).read_text().splitlines(keepends=True)
        index = next(i for i, line in enumerate(lines) if line.strip() and not line.startswith(";"))
        at = lines[index].index("=") + 1 if name == fmt.PROGRAM_ASM else 0  # an operand value / a hex digit
        first = lines[index][at]
        lines[index] = lines[index][:at] + ("0" if first != "0" else "1") + lines[index][at + 1 :]  # one digit changed
        text = "".join(lines)
    _rewrite(bundle, name, text.encode())
    _assert_refused(bundle, pattern)


@pytest.mark.parametrize("name", [fmt.WEIGHTS_HEX, fmt.PROGRAM_ASM, fmt.PROGRAM_HEX, fmt.GOLDEN_INPUTS])
def test_simulate_s_load_leaves_the_text_twins_and_goldens_to_verify(name: str, bundle: Path) -> None:
    """``load_bundle(twins=False)`` (``axtrain simulate``, decision 204) neither hashes nor compares
    what the simulator never reads: a changed twin or golden still opens, with the same contents,
    and is refused by the default load and by ``verify``."""
    whole = load_bundle(bundle)
    _rewrite(bundle, name, b"00\n", rehash=False)  # neither its hash nor its binary twin matches now
    lean = load_bundle(bundle, twins=False)
    assert lean.program == whole.program and np.array_equal(lean.weights, whole.weights) and np.array_equal(lean.bias, whole.bias)
    assert fmt.bundle_content_sha256(lean) == whole.manifest.content_sha256
    with pytest.raises(BundleError, match=f"{name} does not match its sha256"):
        load_bundle(bundle)
    code, _, err = run_cli(["verify", str(bundle)])
    assert code == 2 and f"{name} does not match its sha256" in err


@pytest.mark.parametrize("name", [fmt.WEIGHTS_BIN, fmt.PROGRAM_BIN, fmt.LAYERS, fmt.ARCH, fmt.BIAS_BIN])
def test_simulate_s_load_still_checks_what_it_reads(name: str, bundle: Path) -> None:
    _rewrite(bundle, name, b"\xff not what it was", rehash=False)
    with pytest.raises(BundleError, match=f"{name} does not match its sha256 in the manifest"):
        load_bundle(bundle, twins=False)


def test_simulate_s_load_still_checks_the_content_hash(bundle: Path) -> None:
    manifest = json.loads((bundle / fmt.MANIFEST).read_text())
    manifest["content_sha256"] = "0" * 64
    (bundle / fmt.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="content_sha256 does not match"):
        load_bundle(bundle, twins=False)
