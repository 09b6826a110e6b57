"""Fixtures for the bring-up tests; the networks live in nets.py beside this file (pytest runs with
--import-mode=importlib, so this directory is put on sys.path)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from nets import cnn_layers, compile_bundle, export, with_non_power_of_two_output  # noqa: E402


@pytest.fixture(scope="session")
def cnn_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A compiled CNN bundle (read only: copy it before editing)."""
    root = tmp_path_factory.mktemp("bringup")
    layers, shape = cnn_layers()
    return compile_bundle(export(layers, shape, root / "cnn.onnx"), root / "cnn")



@pytest.fixture(scope="session")
def rq_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same CNN with a non-power-of-two output scale: a bundle with requant entries (ISA 2)."""
    root = tmp_path_factory.mktemp("bringup_rq")
    layers, shape = cnn_layers()
    return compile_bundle(with_non_power_of_two_output(export(layers, shape, root / "cnn.onnx")), root / "cnn_rq")
