"""The wheel installs one import name, `axtrain`, and the console script works."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_top_level_names_are_axtrain_only(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True,
        cwd=tmp_path,
    )
    (wheel,) = tmp_path.glob("axtrain-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/", 1)[0] for name in names}
    dist_info = {name for name in top_level if name.endswith(".dist-info")}
    assert top_level - dist_info == {"axtrain"}
    for part in ("compiler", "runtime", "trainer", "hwmodels", "datasets"):
        assert f"axtrain/{part}/__init__.py" in names, part
    assert any(name.startswith("axtrain/datasets/files/") and name.endswith(".gz") for name in names)


def test_cli_help_and_error_exit_code() -> None:
    done = subprocess.run([sys.executable, "-m", "axtrain.cli", "--help"], capture_output=True, text=True)
    assert done.returncode == 0
    assert "Commands" in done.stdout
    bad = subprocess.run([sys.executable, "-m", "axtrain.cli", "no-such-command"], capture_output=True, text=True)
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr
