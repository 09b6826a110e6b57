"""Run the ``axtrain`` console entry point in-process for the compiler's CLI tests."""

from __future__ import annotations

import pytest

from axtrain.cli import main


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``axtrain ARGS`` through main() (the real error mapping): (exit code, stdout, stderr)."""
    try:
        main(args)
        code = 0
    except SystemExit as stop:
        code = int(stop.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err
