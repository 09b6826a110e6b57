"""``python -m axtrain.runtime.report_check``: help and options are not taken for file names."""

from __future__ import annotations

import pytest

from axtrain.runtime.report_check import main


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_prints_usage_and_exits_zero(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([flag]) == 0
    out = capsys.readouterr()
    assert out.out.startswith("usage: python -m axtrain.runtime.report_check")
    assert out.err == ""


def test_an_unknown_option_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--strict", "report.json"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: unknown option '--strict'")


def test_no_argument_is_usage_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage:" in capsys.readouterr().err
