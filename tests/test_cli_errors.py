"""axtrain/cli.py main(): --debug anywhere, bare `axtrain`, and the one-line errors of issue 14."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from axtrain.errors import HardwareModelError
from axtrain.hwmodels.multipliers import parse_mode


def _axtrain(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "axtrain.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def test_bare_axtrain_prints_the_help_and_succeeds() -> None:
    done = _axtrain()
    assert done.returncode == 0
    assert done.stdout.startswith("Usage: axtrain") and "Commands:" in done.stdout
    assert "error:" not in done.stdout + done.stderr


def test_debug_after_the_subcommand_is_the_debug_flag(tiny_bundle: Path) -> None:
    plain = _axtrain("simulate", str(tiny_bundle), "--app", "satimage")
    assert plain.returncode == 2 and plain.stderr.count("\n") == 1
    debug = _axtrain("simulate", str(tiny_bundle), "--app", "satimage", "--debug")
    assert "No such option" not in debug.stderr
    assert "Traceback" in debug.stderr and "ConfigError" in debug.stderr  # the traceback of the real error


def test_a_width_mismatch_names_the_bundles_application(tiny_bundle: Path) -> None:
    done = _axtrain("simulate", str(tiny_bundle), "--app", "satimage")
    assert "[N, 30]" in done.stderr and "built for breast-cancer" in done.stderr


def test_export_of_a_missing_folder_says_so(tmp_path: Path) -> None:
    done = _axtrain("export", "runs/missing", "--out", "m.onnx", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr == "error: runs/missing: the run folder does not exist (give the --out of a finished `axtrain train`)\n"
    assert not (tmp_path / "m.onnx").exists()


def test_export_refuses_an_existing_file_unless_forced(tiny_run: Path, tmp_path: Path) -> None:
    target = tmp_path / "m.onnx"
    target.write_text("keep me")
    done = _axtrain("export", str(tiny_run), "--out", str(target))
    assert done.returncode == 2 and "already exists (use --force" in done.stderr
    assert target.read_text() == "keep me"
    assert _axtrain("export", str(tiny_run), "--out", str(target), "--force").returncode == 0
    assert target.read_bytes()[:4] != b"keep"


@pytest.mark.parametrize(("typo", "suggestion"), [("exakt", "'exact'"), ("dram:3", "'drum:3'"), ("K9", "'drum:9'"), ("drum-2", "'drum:2'")])
def test_multiplier_modes_offer_did_you_mean(typo: str, suggestion: str) -> None:
    with pytest.raises(HardwareModelError, match="did you mean") as info:
        parse_mode(typo)
    assert suggestion in str(info.value)


def test_a_mode_far_from_any_name_gets_no_suggestion() -> None:
    with pytest.raises(HardwareModelError, match="unknown multiplier mode") as info:
        parse_mode("turbo")
    assert "did you mean" not in str(info.value)
