"""Hardening test fixtures. pytest runs with ``--import-mode=importlib``: this directory (harness,
mutators, seeds) and the compiler tests' graph builder are put on ``sys.path`` here."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "compiler"))


import os  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
from dataclasses import dataclass  # noqa: E402

import pytest  # noqa: E402


@dataclass(frozen=True)
class TinyChain:
    """A finished 2-epoch breast-cancer run, its ONNX export and its bundle, in a folder every user
    may read (the permission tests run commands as an unprivileged user)."""

    root: Path
    run: Path
    onnx: Path
    bundle: Path


@pytest.fixture(scope="session")
def tiny_chain() -> TinyChain:
    from axtrain.compiler.pipeline import compile_to_bundle
    from axtrain.trainer.config import make_config
    from axtrain.trainer.engine import train
    from axtrain.trainer.export import export_run

    root = Path(tempfile.mkdtemp(prefix="axtrain-chain-"))
    os.chmod(root, 0o755)
    try:
        config = make_config({"app": "breast-cancer", "method": "bp", "epochs": 2, "device": "cpu"}, "test")
        train(config, root / "run", progress=False)
        export_run(root / "run", root / "model.onnx")
        compile_to_bundle(root / "model.onnx", root / "model.bundle")
        for path in root.rglob("*"):
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        yield TinyChain(root, root / "run", root / "model.onnx", root / "model.bundle")
    finally:
        shutil.rmtree(root, ignore_errors=True)
