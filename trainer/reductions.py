"""Reductions the trainer runs over whole tensors, in one pass and without temporaries, and the key
by which the memos of such results recognise unchanged data."""

from __future__ import annotations

import math
from typing import Any

import torch


def max_abs(t: torch.Tensor) -> float:
    """``float(t.abs().max())`` (0.0 for an empty tensor), the same value from one min/max pass.

    ``abs()`` first writes a temporary as large as ``t``: on the 60,000 x 784 MNIST training split at
    one thread that costs 137 ms against 28 ms for ``aminmax`` (the calibration of every pas epoch
    and the exactness bound of every emulated evaluation batch take this maximum). ``max |t|`` is
    ``max(-min t, max t)`` exactly; NaN propagates through ``aminmax`` as through ``max``.
    """
    if not t.numel():
        return 0.0
    low, high = (float(v) for v in torch.aminmax(t.detach()))
    if math.isnan(low) or math.isnan(high):
        return math.nan
    return max(-low, high)


def data_state(x: torch.Tensor) -> tuple[Any, ...]:
    """What the trainer's memos of whole-data results compare besides the tensor's identity: its
    storage, shape, strides, dtype, device and torch's version counter of in-place changes (so an
    in-place update however made is seen). The memos hold ``x`` by weak reference beside this."""
    return (x.data_ptr(), tuple(x.shape), tuple(x.stride()), x.dtype, x.device, x._version)
