"""AxTrain: training for approximate inference, and the toolchain that deploys it.

The Python API (docs/api.md): ``axtrain.train``, ``export``, ``compile``, ``simulate``, ``explore``
and ``pipeline``, each returning a frozen result object. They are resolved on first use (module
``__getattr__``), so ``import axtrain`` and the command line stay fast and torch-free.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_API = (
    "train", "export", "compile", "simulate", "explore", "pipeline",
    "TrainResult", "ExportResult", "CompileResult", "SimulateResult", "ExploreResult", "PipelineResult",
)


def __getattr__(name: str) -> Any:
    if name in ("pipeline", "explore"):
        import importlib  # also subpackages: importing the package binds it here, and it is callable (callable_module.py)

        return importlib.import_module(f"axtrain.{name}")
    if name in _API:
        import importlib  # the API by name, on first use: loading it on every `import axtrain` would slow the CLI

        return getattr(importlib.import_module("axtrain.api"), name)
    raise AttributeError(f"module 'axtrain' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
