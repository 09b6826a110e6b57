"""What produced an artifact: toolchain and library versions, recorded in every report and run."""

from __future__ import annotations

import platform
from importlib import metadata

from axtrain import __version__

_LIBRARIES = ("numpy", "torch", "numba", "onnx", "onnxruntime", "pydantic", "click")  # numba: the trainer's pas kernels (decisions 213)


def versions() -> dict[str, str]:
    """Versions of Python, axtrain and the numerical libraries, read without importing them.

    Reading package metadata (not ``import torch``) keeps this usable from the compiler and runtime,
    which must run on machines without torch; a library that is not installed is reported as such.
    """
    found = {"python": platform.python_version(), "axtrain": __version__}
    for name in _LIBRARIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found
