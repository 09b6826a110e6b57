"""Pipeline wall time (issue 6, 7): ``axtrain pipeline --app breast-cancer`` with the defaults, in a
fresh process as a user runs it (imports, data, training, export, compile, verify, 50 NTV runs).

1. Against the 60 s budget of issue 6 (``baseline`` = 60 s, limit 1.0).
2. Against the bare training stage measured in the same run: ``axtrain train`` with the same
   config in a fresh process (no limit; the ratio is what export + compile + verify + simulate and
   the ledger add on top of training).
3. A rerun of the finished pipeline (every stage reused: ledger check and output hashes) against the
   first run (no limit).

Each figure is one run (a full pipeline is tens of seconds; best-of-N would take minutes). The
per-stage times the pipeline prints go into the note. ``quick`` trains 5 epochs instead of the
defaults.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as `python benchmarks/bench_pipeline.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import Result, format_table

APP = "breast-cancer"
BUDGET_S = 60.0
STAGE_LINE = re.compile(r"^\[(\w+)\] done in ([0-9.]+) s$", re.MULTILINE)


def _axtrain(args: list[str], cwd: Path) -> tuple[float, str]:
    """Wall time of ``axtrain ARGS`` in a fresh interpreter, and its output (stderr included)."""
    cmd = [sys.executable, "-c", "import sys; from axtrain.cli import main; sys.exit(main())", *args]
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"axtrain {' '.join(args)} exited with {done.returncode}: {done.stderr.strip().splitlines()[-1:]}")
    return seconds, done.stdout + done.stderr


def run(quick: bool = False) -> list[Result]:
    """Pipeline wall time against the budget, the bare training stage, and a full-reuse rerun."""
    epochs = ["--epochs", "5"] if quick else []
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        cwd = Path(tmp)
        t_train, _ = _axtrain(["train", "--app", APP, "--method", "axtrain", "--out", "train-only", "--quiet", *epochs], cwd)
        t_pipe, log = _axtrain(["pipeline", "--app", APP, "--out", "pipe", *epochs], cwd)
        t_rerun, relog = _axtrain(["pipeline", "--app", APP, "--out", "pipe", *epochs], cwd)
    stages = ", ".join(f"{name} {float(s):.1f}" for name, s in STAGE_LINE.findall(log))
    assert "reused" in relog and not STAGE_LINE.search(relog), "the rerun ran a stage again"
    label = f"pipeline {APP}, " + ("5 epochs" if quick else "defaults")
    return [
        Result(label, t_pipe, "issue 6 budget", BUDGET_S, limit=1.0, note=f"fresh process; stages (s): {stages}"),
        Result("  same, vs the bare training stage", t_pipe, "axtrain train, same config", t_train, note="fresh processes; pipeline overhead over training"),
        Result("pipeline rerun, every stage reused", t_rerun, "first pipeline run", t_pipe, note="ledger + output hashes"),
    ]


if __name__ == "__main__":
    print(format_table(run(quick="--quick" in sys.argv)))
