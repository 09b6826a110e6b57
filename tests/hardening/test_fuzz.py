"""Fuzzing: mutated ONNX files, bundles and config files end in success or a one-line AxTrainError
(exit code 2 through the CLI) -- never another exception, a hang or an allocation past the bound.

Each campaign runs in a subprocess (``harness.py``) whose address space is capped at what the
loaded toolchain holds plus ``axtrain.limits.MEMORY_BOUND_BYTES`` (``RLIMIT_AS``), with a per-case
timer, derandomised hypothesis draws (the same cases on every run) and a JSON summary. The default
suite runs a few hundred cases (~30 s); ``-m slow`` runs 10,000.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from axtrain.limits import MEMORY_BOUND_BYTES

HARNESS = Path(__file__).parent / "harness.py"
CASE_TIMEOUT_S = 10


def run_campaign(target: str, cases: int, tmp_path: Path, wall_limit_s: int) -> dict:
    """Run one campaign in a subprocess and return its summary (printed for the log)."""
    out = tmp_path / f"{target}.json"
    command = [sys.executable, str(HARNESS), "--target", target, "--cases", str(cases), "--timeout", str(CASE_TIMEOUT_S),
               "--memory-mb", str(MEMORY_BOUND_BYTES >> 20), "--json", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=wall_limit_s)
    assert done.returncode == 0, f"fuzz process died (exit {done.returncode}): {done.stderr[-2000:]}"
    summary = json.loads(out.read_text())
    print(f"fuzz {target}: {summary['cases']} cases, {summary['ok']} accepted, {summary['refused']} refused, "
          f"{summary['unexpected']} unexpected, {summary['cli_runs']} through the CLI, slowest {summary['slowest_case_s']} s, "
          f"wall {summary['wall_s']} s")
    return summary


def check(summary: dict, cases: int) -> None:
    assert summary["cases"] == cases
    assert summary["unexpected"] == 0, "\n".join(json.dumps(c) for c in summary["unexpected_cases"])
    assert summary["refused"] > 0 and summary["ok"] > 0  # the mutations reach both ends
    assert summary["longest_message"] <= 500, summary["longest_message_text"]


FAST = {"onnx": 150, "bundle": 120, "config": 100}
SLOW = {"onnx": 4000, "bundle": 4000, "config": 2000}  # 10,000 in all


@pytest.mark.parametrize("target", sorted(FAST))
def test_fuzz_fast(target: str, tmp_path: Path) -> None:
    check(run_campaign(target, FAST[target], tmp_path, wall_limit_s=300), FAST[target])


@pytest.mark.slow
@pytest.mark.parametrize("target", sorted(SLOW))
def test_fuzz_10000(target: str, tmp_path: Path) -> None:
    check(run_campaign(target, SLOW[target], tmp_path, wall_limit_s=3000), SLOW[target])
