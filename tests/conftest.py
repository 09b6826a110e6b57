"""Shared test fixtures."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded generator: every test is reproducible."""
    return np.random.default_rng(12345)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 2-epoch BP run on breast-cancer (a few seconds), shared by the session."""
    from axtrain.trainer.config import make_config
    from axtrain.trainer.engine import train

    root = tmp_path_factory.mktemp("tiny")
    train(make_config({"app": "breast-cancer", "method": "bp", "epochs": 2, "device": "cpu"}, "test"), root / "run", progress=False)
    return root / "run"


@pytest.fixture(scope="session")
def tiny_bundle(tiny_run: Path) -> Path:
    """The bundle compiled from :func:`tiny_run` (exact multiplier, nominal voltage)."""
    from axtrain.compiler.pipeline import compile_to_bundle
    from axtrain.trainer.export import export_run

    export_run(tiny_run, tiny_run.parent / "model.onnx")
    return Path(compile_to_bundle(tiny_run.parent / "model.onnx", tiny_run.parent / "model.bundle"))


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> Callable[[list[Any]], tuple[int, str, str]]:
    """Run ``axtrain ARGS`` in-process: (exit code, stdout, stderr). Arguments may be paths."""
    from axtrain.cli import main

    def run(args: list[Any]) -> tuple[int, str, str]:
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as stop:
            code = int(stop.code or 0)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run
