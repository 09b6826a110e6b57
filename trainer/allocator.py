"""Keep freed heap memory in the training process instead of handing it back to the OS each step.

A training step allocates and frees the same few hundred-kilobyte tensors every time. glibc's
``malloc`` serves blocks above its mmap threshold (adaptive, 128 KiB at start) with fresh ``mmap``
pages and trims the top of the heap whenever more than twice that threshold is free, so every step
of AxTrain-act page-faults its ``[batch, K, width]`` Jacobian tensors back in: on MNIST-MLP at one
thread, ~400-650 minor faults and ~0.5-1.2 ms of kernel time per step, a third of the step's extra
cost over BP (a BP step: ~0 faults). Fixing both thresholds keeps those pages mapped and reused.

This changes only where memory comes from, never a value: the same seed gives the same bits with or
without it. It is process-wide, so it is called once by a training session
(:class:`axtrain.trainer.engine.Session`) and by the trainer benchmarks, which time what a session
runs; nothing happens where the C library is not glibc (macOS, musl) or refuses the setting.
Cost: up to :data:`TRIM_THRESHOLD` bytes of freed memory stay mapped in the process.
"""

from __future__ import annotations

import ctypes
import platform

#: Blocks up to this size come from the heap (glibc's own cap for its adaptive threshold).
MMAP_THRESHOLD = 32 << 20
#: Freed memory at the top of the heap kept mapped, at most.
TRIM_THRESHOLD = 64 << 20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h parameter numbers

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Fix glibc's mmap and trim thresholds for this process (once); whether they are in force."""
    global _applied
    if _applied is None:
        _applied = False
        if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
            try:
                mallopt = ctypes.CDLL(None).mallopt
            except (OSError, AttributeError):
                return False
            mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
            mallopt.restype = ctypes.c_int
            # mallopt returns 1 on success; the trim threshold first, so that a refused mmap
            # threshold leaves glibc's own (adaptive) behaviour otherwise untouched.
            _applied = bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)) and bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    return _applied
