"""Fixtures for the bring-up tests; the networks live in nets.py beside this file (pytest runs with
--import-mode=importlib, so this directory is put on sys.path)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from nets import cnn_layers, compile_bundle, export  # noqa: E402


@pytest.fixture(scope="session")
def cnn_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A compiled CNN bundle (read only: copy it before editing)."""
    root = tmp_path_factory.mktemp("bringup")
    layers, shape = cnn_layers()
    return compile_bundle(export(layers, shape, root / "cnn.onnx"), root / "cnn")


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> Callable[[list[str]], tuple[int, str, str]]:
    """Run ``axtrain ARGS`` in-process: (exit code, stdout, stderr)."""
    from axtrain.cli import main

    def run(args: list[str]) -> tuple[int, str, str]:
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as stop:
            code = int(stop.code or 0)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run
