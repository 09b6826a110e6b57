"""Control of the BLAS thread count around small GEMMs (numpy exposes no API for it).

The simulator's GEMMs are thin (a tile of at most 256 PEs); a multi-threaded BLAS spends more time
waking threads than multiplying on such shapes, ~10x slower on a busy 2-core machine. Large GEMMs
keep the default. If numpy's OpenBLAS cannot be found, the context manager does nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
from typing import Iterator

import numpy as np

_SETTERS = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads", "openblas_set_num_threads64_", "openblas_set_num_threads")
_GETTERS = ("scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads", "openblas_get_num_threads64_", "openblas_get_num_threads")


def _find() -> tuple[object, object] | None:
    base = os.path.dirname(np.__file__)
    candidates = glob.glob(os.path.join(base, "..", "numpy.libs", "*openblas*")) + glob.glob(os.path.join(base, ".dylibs", "*openblas*"))
    for path in candidates:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        setter = next((getattr(lib, n) for n in _SETTERS if hasattr(lib, n)), None)
        getter = next((getattr(lib, n) for n in _GETTERS if hasattr(lib, n)), None)
        if setter is not None and getter is not None:
            return setter, getter
    return None


_API = _find()


@contextlib.contextmanager
def blas_threads(count: int) -> Iterator[None]:
    """Run the block with ``count`` BLAS threads, then restore the previous count."""
    if _API is None:
        yield
        return
    setter, getter = _API
    previous = int(getter())  # type: ignore[operator]
    setter(int(count))  # type: ignore[operator]
    try:
        yield
    finally:
        setter(previous)  # type: ignore[operator]


def default_threads() -> int:
    """The BLAS thread count numpy started with (1 if unknown)."""
    return _DEFAULT


_DEFAULT = int(_API[1]()) if _API is not None else 1  # type: ignore[operator]
