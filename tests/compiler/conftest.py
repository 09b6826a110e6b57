"""Compiler test fixtures. The graph builders live in ``onnx_graphs.py`` beside this file; pytest runs
with ``--import-mode=importlib``, so this directory is put on ``sys.path`` for the tests to import it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

import onnx
import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture
def save_model(tmp_path: Path) -> Callable[[onnx.ModelProto, str], Path]:
    """Save a model under tmp_path and return its path."""

    def save(model: onnx.ModelProto, name: str = "model.onnx") -> Path:
        path = tmp_path / name
        onnx.save(model, path)
        return path

    return save
