"""Fixtures for the regression tests. The networks are the bring-up tests' (tests/bringup/nets.py);
pytest runs with --import-mode=importlib, so that directory is put on sys.path."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "bringup"))

from nets import cnn_layers, compile_bundle, export  # noqa: E402


@pytest.fixture(scope="session")
def cnn_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CNN's ONNX file."""
    layers, shape = cnn_layers()
    return export(layers, shape, tmp_path_factory.mktemp("regress") / "cnn.onnx")


@pytest.fixture(scope="session")
def cnn_bundle(cnn_model: Path) -> Path:
    """A compiled CNN bundle (read only: copy it before editing)."""
    return compile_bundle(cnn_model, cnn_model.parent / "cnn")

