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
from typing import Any

import numpy as np
import torch

from axtrain.trainer.drum_bits import IDENTITY, drum_constants

#: The environment variable that selects the kernels: ``numba`` (default, where importable) or ``torch``.
ENV = "AXTRAIN_KERNELS"


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
    """Whether the kernels take these tensors (:func:`plain`) and are enabled."""
    return all(map(plain, tensors)) and enabled()


def drum_params(k: int | None, frac: int) -> tuple[int, int, int, int]:
    """:func:`axtrain.trainer.drum_bits.drum_constants` of float32 values (``k`` None: an exact
    multiplier, the identity): ``(mode, keep, lower, limit)``, the numba transform's arguments."""
    return (IDENTITY, 0, 0, 0) if k is None else drum_constants(k, frac, torch.float32)


def plain(t: torch.Tensor) -> bool:
    """Whether the kernels can take ``t`` as it is: float32, on the CPU, contiguous."""
    return t.dtype == torch.float32 and t.device.type == "cpu" and t.is_contiguous()


_NO_MASKS = np.zeros(0, np.int64)


def _array(t: torch.Tensor) -> np.ndarray:
    """The numpy view of a contiguous CPU tensor (any shape: the kernels flatten it themselves)."""
    return t.detach().numpy() if t.requires_grad else t.numpy()  # detach costs a microsecond: only where needed


def relu_quantize(acc: torch.Tensor, frac: int, qmin: int, qmax: int, relu: bool) -> torch.Tensor:
    """``acc.relu_()`` (if ``relu``) in place, then ``quantize_real(acc, fmt)`` as a new tensor, one pass."""
    kern = _compiled()
    assert kern is not None
    out = torch.empty_like(acc)
    kern.relu_quantize(_array(acc), _array(out), math.ldexp(1.0, frac), math.ldexp(1.0, -frac), qmin, qmax, relu)
    return out


def quantize_drum(x: torch.Tensor, frac: int, qmin: int, qmax: int, k: int | None) -> torch.Tensor:
    """``drum(relu_quantize(x, frac, qmin, qmax, False), k, frac)`` as a new tensor, in one pass
    (``x`` is not modified)."""
    mode, keep, lower, limit = drum_params(k, frac)
    if mode == IDENTITY:
        return relu_quantize(x, frac, qmin, qmax, False)
    kern = _compiled()
    assert kern is not None
    out = torch.empty_like(x)
    kern.quantize_drum(_array(x), _array(out), math.ldexp(1.0, frac), math.ldexp(1.0, -frac), qmin, qmax, mode, keep, lower, limit)
    return out


def drum(x: torch.Tensor, k: int | None, frac: int) -> torch.Tensor:
    """DRUM(k) of float32 values ``q * 2**-frac``: :func:`axtrain.trainer.emulation.drum_transform`, one pass."""
    mode, keep, lower, limit = drum_params(k, frac)
    if mode == IDENTITY:
        return x
    kern = _compiled()
    assert kern is not None
    out = torch.empty_like(x)
    kern.drum(_array(x), _array(out), mode, keep, lower, limit)
    return out


_ONE_PATTERN = 0x3F800000  # float32 1.0: |g| < 1 exactly where the magnitude's pattern is below it (NaN's is above)


def below_one(g: torch.Tensor) -> bool | None:
    """``max |g| < 1`` (False where any element is NaN) in one read-only pass, or None where the
    kernels do not take ``g`` (not float32, not contiguous, not on the CPU, kernels off). The
    straight-through mask's test, run several times per training step: checked inline, without
    :func:`applicable`'s generality."""
    kern = _compiled()
    if kern is None or not plain(g):
        return None
    return bool(kern.max_magnitude_bits(_array(g)) < _ONE_PATTERN)


def weight_args(frac: int, qmin: int, qmax: int, k: int | None, bits: int) -> tuple[float, float, int, int, int, int, int, int, int]:
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
    w_out: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A dense layer's multiplier-side weights and quantised bias in one call: the weight pipeline
    ``drum_k(flip(clamp(round(w * 2**f)))) * 2**-f`` of
    :func:`axtrain.trainer.emulation._weight_pipeline` (``masks``: int64 XOR masks of the stored
    words, or None) and the float32 bias pipeline ``clamp(round(b * 2**f_acc)) * 2**-f_acc``, with
    the constants of :func:`weight_args` / :func:`bias_args`. Returns new float32 tensors shaped as
    ``w`` and ``b`` (the weights written into ``w_out`` instead where given, a contiguous float32
    tensor of ``w``'s shape). ``arrays``: numpy views of ``w`` and ``b`` made earlier (a
    parameter's storage outlives its in-place updates, so a training loop can make them once)."""
    kern = _compiled()
    assert kern is not None
    w_t, b_t = torch.empty(w.shape) if w_out is None else w_out, torch.empty(b.shape)
    m = _array(masks.to(torch.int64).contiguous()) if masks is not None else _NO_MASKS
    w_a, b_a = arrays if arrays is not None else (_array(w), _array(b))
    kern.prepare_layer(w_a, w_t.numpy(), m, masks is not None, weights, b_a, b_t.numpy(), biases)
    return w_t, b_t
