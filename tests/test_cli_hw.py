"""``axtrain hw``: output formats and one-line errors with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from axtrain.cli import main


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run ``axtrain args`` in-process through main() (the real error mapping)."""
    code = 0
    try:
        main(list(args))
    except SystemExit as stop:
        code = int(stop.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_drum_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "hw", "drum", "--k", "6", "--bits", "16", "--samples", "200000", "--json")
    stats = json.loads(out)
    assert code == 0 and abs(stats["mean_relative_error"] - 0.0147) < 0.0005
    assert {"bias", "max_relative_error", "pairs"} <= stats.keys()


def test_drum_text(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "hw", "drum", "--k", "2", "--bits", "8", "--signed")
    assert code == 0 and "mean relative error" in out and "bias" in out and "max relative error" in out


def test_ntv_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "hw", "ntv", "--voltage", "0.66", "--json")
    result = json.loads(out)
    assert code == 0 and result["bit_error_rate"] == 0.01 and result["voltage"] == 0.66


def test_tech(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "hw", "tech")
    assert code == 0 and "dram_pj_per_byte" in out and "pJ/B" in out
    table = tmp_path / "t.yaml"
    table.write_text("dram_pj_per_byte: 42\n")
    code, out, _ = run_cli(capsys, "hw", "tech", "--table", str(table), "--json")
    assert code == 0 and json.loads(out)["dram_pj_per_byte"] == 42.0


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("hw", "drum", "--k", "0", "--bits", "8"), "DRUM k"),
        (("hw", "drum", "--k", "4", "--bits", "99"), "operand width"),
        (("hw", "ntv", "--voltage", "0.2"), "outside"),
    ],
)
def test_errors_exit_2_with_one_line(capsys: pytest.CaptureFixture[str], args: tuple[str, ...], needle: str) -> None:
    code, out, err = run_cli(capsys, *args)
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    # The shared voltage type (axtrain/cli_params.py) refuses a non-number as a usage error: exit 2, one line.
    code, _, err = run_cli(capsys, "hw", "ntv", "--voltage", "abc")
    assert code == 2 and "Invalid value for '--voltage': 'abc' is not a voltage in volts" in err and "Traceback" not in err


def test_unknown_key_in_table_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    table = tmp_path / "t.json"
    table.write_text('{"bogus": 1}')
    code, _, err = run_cli(capsys, "hw", "tech", "--table", str(table))
    assert code == 2 and "bogus" in err and str(table) in err


def test_subprocess_entry_point() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "axtrain.cli", "hw", "ntv", "--voltage", "0.66", "--json"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["bit_error_rate"] == 0.01
