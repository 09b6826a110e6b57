"""reproduce's overwrite rule (axtrain/reproduce/run.py check_out) and no debris on refusal."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from axtrain.errors import ConfigError
from axtrain.reproduce.run import check_out


def _main(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    from axtrain.cli import main

    capsys.readouterr()
    try:
        main(args)
        code = 0
    except SystemExit as stop:
        code = int(stop.code or 0)
    return code, capsys.readouterr().err


def test_a_folder_holding_something_else_is_refused_unless_forced(tmp_path: Path) -> None:
    (tmp_path / "b.bundle").mkdir()
    (tmp_path / "b.bundle" / "manifest.json").write_text("{}")
    with pytest.raises(ConfigError, match="holds no reproduction"):
        check_out(tmp_path / "b.bundle")
    check_out(tmp_path / "b.bundle", force=True)
    check_out(tmp_path / "absent")
    (tmp_path / "r" / "cells").mkdir(parents=True)
    (tmp_path / "r" / "REPORT.md").write_text("x")
    check_out(tmp_path / "r")  # a reproduction folder: its cells are reused


def test_refused_on_the_command_line_before_anything_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "b.bundle").mkdir()
    (tmp_path / "b.bundle" / "manifest.json").write_text("{}")
    code, err = _main(["reproduce", "fig6", "--quick", "--out", "b.bundle"], capsys)
    assert code == 2 and "holds no reproduction" in err
    assert [p.name for p in (tmp_path / "b.bundle").iterdir()] == ["manifest.json"]


@pytest.mark.skipif(importlib.util.find_spec("ray") is not None, reason="checks the message when ray is not installed")
def test_executor_ray_without_ray_leaves_no_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    code, err = _main(["reproduce", "fig6", "--quick", "--executor", "ray", "--out", "r"], capsys)
    assert code == 2 and "needs the 'ray' package" in err
    assert list(tmp_path.iterdir()) == []
