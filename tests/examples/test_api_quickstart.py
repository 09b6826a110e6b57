"""examples/api_quickstart.py runs as documented (docs/api.md) and prints every stage."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_api_example_runs(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "api_quickstart.py"), str(tmp_path / "api")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert [line.split(":", 1)[0] for line in lines] == ["train", "compile", "simulate", "pipeline"]
    assert "ran train, export, compile, verify, simulate" in lines[-1]
    for name in ("run/summary.json", "bc.onnx", "bc.bundle/manifest.json", "bc.json", "pipe/report.json", "pipe/config.json"):
        assert (tmp_path / "api" / name).is_file(), name
