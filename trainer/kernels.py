"""Fused elementwise kernels of the emulated training forward (AxTrain-pas), compiled with numba.

Each kernel does in one pass over memory what the torch path (:mod:`axtrain.trainer.emulation`)
does in four to ten: quantise the weights, flip their NTV bits and DRUM-transform them; ReLU and
requantise a layer's accumulator; DRUM-transform an activation. The torch functions stay the
definition. Every step here is the same IEEE float32 operation on the same value (a product with a
power of two, round half to even, a comparison, integer operations on the bit pattern), so the
results are the same bits; tests/trainer/test_kernels.py compares the two on edge values (ties,
saturation, signed zeros, NaN, infinities) and on random data, and the trainer's bit-identity check
(`benchmarks/train_identity.py`) covers whole runs.

Why numba (decisions 213): at the MNIST-MLP's sizes a pas step spends most of its extra time over
a BP step in these passes and in torch's per-call overhead; ``torch.compile`` costs seconds to tens
of seconds per process and needs a C++ compiler (decisions 143), while numba's compiled kernels are
cached on disk (``cache=True``) and load in well under a second. numba is imported on the first use
only, so nothing else (``compile``, ``simulate``) pays for it. Where it cannot be imported, or with
``AXTRAIN_KERNELS=torch`` in the environment, the torch path runs instead; :func:`enabled` says
which. Only contiguous float32 CPU tensors take the kernels; anything else takes the torch path.
"""

from __future__ import annotations

import functools
import math
import os
import struct
from typing import Any

import numpy as np
import torch

#: The environment variable that selects the kernels: ``numba`` (default, where importable) or ``torch``.
ENV = "AXTRAIN_KERNELS"

_MANTISSA32 = 23
_SIGN_OFF32 = (1 << 31) - 1


@functools.lru_cache(maxsize=1)
def _compiled() -> Any | None:
    """The numba kernels (a namespace), or None where numba is unavailable or switched off."""
    if os.environ.get(ENV, "numba").strip().lower() == "torch":
        return None
    try:
        from axtrain.trainer import kernels_numba  # lazy: numba's import and cache load only where a kernel runs
    except (ImportError, RuntimeError, OSError):
        # numba missing or broken on this platform, or no writable cache location for its compiled
        # kernels (numba raises RuntimeError when decorating then): the torch path is complete.
        return None
    return kernels_numba


def enabled() -> bool:
    """Whether the numba kernels run (else the torch path does)."""
    return _compiled() is not None


def applicable(*tensors: torch.Tensor) -> bool:
    """Whether the kernels take these tensors: float32, contiguous, on the CPU, and kernels enabled."""
    return all(t.dtype == torch.float32 and t.device.type == "cpu" and t.is_contiguous() for t in tensors) and enabled()


@functools.lru_cache(maxsize=1024)
def drum_params(k: int | None, frac: int) -> tuple[int, int, int, int, int]:
    """``(mode, keep, lower, limit, set_bit)`` of DRUM(k) on float32 values ``q * 2**-frac``.

    ``mode`` 0: identity (exact multiplier, ``k`` beyond the mantissa, or a threshold that float32
    cannot hold); 1: clear the low mantissa bits only (``k < 2``); 2: the full transform. The other
    fields are :func:`axtrain.trainer.emulation.drum_transform`'s constants: ``keep`` clears the
    mantissa bits below the lowest kept one, ``lower``/``limit`` bound the magnitude's bit pattern
    around the threshold ``2**k * 2**-frac``, ``set_bit`` is ``2**low`` (unused outside mode 2).
    """
    if k is None or k > _MANTISSA32:
        return (0, 0, 0, 0, 0)
    low = _MANTISSA32 + 1 - k
    keep = _to_int32(-(1 << low))
    if k < 2:
        return (1, keep, 0, 0, 0)
    threshold = math.ldexp(1.0, k - frac)
    limit = _float32_pattern(threshold)
    if limit is None:
        return (0, 0, 0, 0, 0)
    return (2, keep, limit - (1 << low), limit, 1 << low)


def _to_int32(value: int) -> int:
    return (value + (1 << 31)) % (1 << 32) - (1 << 31)


def _float32_pattern(value: float) -> int | None:
    if not math.isfinite(value):
        return None
    try:
        packed = struct.pack("<f", value)
    except OverflowError:
        return None
    pattern = int.from_bytes(packed, "little", signed=True)
    # A threshold that rounds to float32 infinity is as good as none: every finite value is below it.
    return None if pattern >= 0x7F800000 else pattern


_NO_MASKS = np.zeros(0, np.int64)


def _array(t: torch.Tensor) -> np.ndarray:
    """The numpy view of a contiguous CPU tensor (any shape: the kernels flatten it themselves)."""
    return t.detach().numpy() if t.requires_grad else t.numpy()  # detach costs a microsecond: only where needed


def quantize_flip_drum(
    w: torch.Tensor, out: torch.Tensor, frac: int, qmin: int, qmax: int, k: int | None, masks: torch.Tensor | None, bits: int
) -> None:
    """``out = drum_k(flip(clamp(round(w * 2**frac)))) * 2**-frac``, one pass (``out`` float32, w's size).

    The weight pipeline of :func:`axtrain.trainer.emulation._weight_pipeline` (``masks``: int64 XOR
    masks of the ``bits``-bit words, or None for no flips).
    """
    kern = _compiled()
    assert kern is not None
    m = _array(masks.to(torch.int64).contiguous()) if masks is not None else _NO_MASKS
    kern.quantize_flip_drum(
        _array(w), _array(out), math.ldexp(1.0, frac), math.ldexp(1.0, -frac), qmin, qmax, m, masks is not None, bits, *drum_params(k, 0)
    )


def relu_quantize(acc: torch.Tensor, frac: int, qmin: int, qmax: int, relu: bool) -> torch.Tensor:
    """``acc.relu_()`` (if ``relu``) in place, then ``quantize_real(acc, fmt)`` as a new tensor, one pass."""
    kern = _compiled()
    assert kern is not None
    out = torch.empty_like(acc)
    kern.relu_quantize(_array(acc), _array(out), math.ldexp(1.0, frac), math.ldexp(1.0, -frac), qmin, qmax, relu)
    return out


def drum(x: torch.Tensor, k: int | None, frac: int) -> torch.Tensor:
    """DRUM(k) of float32 values ``q * 2**-frac``: :func:`axtrain.trainer.emulation.drum_transform`, one pass."""
    mode, keep, lower, limit, set_bit = drum_params(k, frac)
    if mode == 0:
        return x
    kern = _compiled()
    assert kern is not None
    out = torch.empty_like(x)
    kern.drum(_array(x), _array(out), mode, keep, lower, limit, set_bit)
    return out


def quantize_bias(b: torch.Tensor, frac: int, qmin: int, qmax: int) -> torch.Tensor:
    """``clamp(round(b * 2**frac), qmin, qmax) * 2**-frac`` in float32 (the fused bias pipeline), one pass."""
    kern = _compiled()
    assert kern is not None
    out = torch.empty_like(b)
    kern.relu_quantize(_array(b), _array(out), math.ldexp(1.0, frac), math.ldexp(1.0, -frac), qmin, qmax, False)
    return out


_ONE_PATTERN = 0x3F800000  # float32 1.0: |g| < 1 exactly where the magnitude's pattern is below it (NaN's is above)


def all_below_one(g: torch.Tensor) -> bool:
    """``max |g| < 1`` for a float32 tensor (False where any element is NaN), one read-only pass."""
    kern = _compiled()
    assert kern is not None
    return bool(kern.max_magnitude_bits(_array(g)) < _ONE_PATTERN)


def below_one(g: torch.Tensor) -> bool | None:
    """:func:`all_below_one` for a CPU tensor, or None where the kernels do not take it (not
    float32, not contiguous, kernels off). The straight-through mask's test, run several times per
    training step: checked inline, without :func:`applicable`'s generality."""
    kern = _compiled()
    if kern is None or g.dtype != torch.float32 or not g.is_contiguous():
        return None
    return bool(kern.max_magnitude_bits(_array(g)) < _ONE_PATTERN)


def weight_args(frac: int, qmin: int, qmax: int, k: int | None, bits: int) -> tuple[float, float, int, int, int, int, int, int, int, int]:
    """The constants :func:`prepare_layer` takes for a layer's weights (computed once per layer)."""
    return (math.ldexp(1.0, frac), math.ldexp(1.0, -frac), qmin, qmax, bits, *drum_params(k, 0))


def bias_args(frac: int, qmin: int, qmax: int) -> tuple[float, float, int, int]:
    """The constants :func:`prepare_layer` takes for a layer's bias (computed once per layer)."""
    return (math.ldexp(1.0, frac), math.ldexp(1.0, -frac), qmin, qmax)


def prepare_layer(
    w: torch.Tensor,
    b: torch.Tensor,
    masks: torch.Tensor | None,
    weights: tuple[Any, ...],
    biases: tuple[Any, ...],
    arrays: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`quantize_flip_drum` of ``w`` and :func:`quantize_bias` of ``b`` in one call (the
    constants from :func:`weight_args` / :func:`bias_args`): new float32 tensors shaped as ``w``, ``b``.
    ``arrays``: numpy views of ``w`` and ``b`` made earlier (a parameter's storage outlives its
    in-place updates, so a training loop can make them once)."""
    kern = _compiled()
    assert kern is not None
    w_t, b_t = torch.empty(w.shape), torch.empty(b.shape)
    m = _array(masks.to(torch.int64).contiguous()) if masks is not None else _NO_MASKS
    w_a, b_a = arrays if arrays is not None else (_array(w), _array(b))
    kern.prepare_layer(w_a, w_t.numpy(), m, masks is not None, weights, b_a, b_t.numpy(), biases)
    return w_t, b_t
