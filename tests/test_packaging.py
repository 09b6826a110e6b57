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
    from axtrain import __version__

    # One version: the wheel's metadata takes it from axtrain/__init__.py (pyproject: dynamic).
    assert wheel.name.startswith(f"axtrain-{__version__}-"), wheel.name
    names = zipfile.ZipFile(wheel).namelist()
    assert any(name.endswith(".dist-info/licenses/LICENSE") or name.endswith(".dist-info/LICENSE") for name in names), "LICENSE not in the wheel"
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


def test_version_is_shared_by_the_cli_and_the_installed_metadata() -> None:
    from importlib.metadata import version

    from axtrain import __version__

    done = subprocess.run([sys.executable, "-m", "axtrain.cli", "--version"], capture_output=True, text=True)
    assert done.returncode == 0
    assert done.stdout.strip() == f"axtrain, version {__version__}"
    assert version("axtrain") == __version__


def test_license_file_is_the_apache_license_pyproject_names() -> None:
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert 'license = "Apache-2.0"' in (ROOT / "pyproject.toml").read_text(encoding="utf-8")
