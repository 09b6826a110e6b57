"""The numba bodies of :mod:`axtrain.trainer.kernels` (imported by it on first use, never directly).

Every kernel is single-threaded (the trainer's threads are torch's), compiled once per machine and
cached on disk beside this file or in numba's user cache, and written with IEEE semantics (no
``fastmath``: no reassociation, no fused multiply-add, NaN kept), so each element goes through the
float32 operations the torch path runs: ``x * 2**f`` (exact), ``rint`` (round half to even, as
``torch.round``), the clamp as two comparisons (a NaN stays NaN, as in ``torch.clamp``), integer
operations on the bit pattern, and ``* 2**-f`` (exact).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(inline="always")
def _clamp(q, lo, hi):
    if q < lo:
        return lo
    if q > hi:
        return hi
    return q


@njit(inline="always")
def _drum_bits(b, mode, keep, lower, limit):
    """DRUM on a float32 bit pattern (int32): the five integer passes of ``drum_transform`` on one word
    (``mode``: drum_bits.IDENTITY 0, CLEAR 1, FULL 2)."""
    if mode == 0:
        return b
    kept = b & keep
    if mode == 1:
        return kept
    magnitude = b & np.int32(0x7FFFFFFF)
    if magnitude < lower:
        magnitude = lower
    elif magnitude > limit:
        magnitude = limit
    return kept | (magnitude - lower)


@njit(cache=True, nogil=True, boundscheck=False, error_model="numpy")
def quantize_flip_drum(w, out, scale, inverse, qmin, qmax, masks, has_masks, bits, mode, keep, lower, limit):
    w, out, masks = w.reshape(w.size), out.reshape(out.size), masks.reshape(masks.size)
    # The constants arrive as Python numbers (cheaper to pass): float32 and int32 here, exactly
    # (powers of two, integers of the format's range, bit patterns).
    scale, inverse, qmin, qmax = np.float32(scale), np.float32(inverse), np.float32(qmin), np.float32(qmax)
    keep, lower, limit = np.int32(keep), np.int32(lower), np.int32(limit)
    word_mask = (np.int64(1) << bits) - 1
    sign = np.int64(1) << (bits - 1)
    out_bits = out.view(np.int32)
    for i in range(w.size):
        q = _clamp(np.rint(w[i] * scale), qmin, qmax)
        if has_masks:
            raw = (np.int64(q) & word_mask) ^ masks[i]
            q = np.float32((raw ^ sign) - sign)
        out[i] = q
        out_bits[i] = _drum_bits(out_bits[i], mode, keep, lower, limit)
        out[i] = out[i] * inverse


@njit(cache=True, nogil=True, boundscheck=False, error_model="numpy")
def relu_quantize(acc, out, scale, inverse, qmin, qmax, relu):
    acc, out = acc.reshape(acc.size), out.reshape(out.size)
    scale, inverse, qmin, qmax = np.float32(scale), np.float32(inverse), np.float32(qmin), np.float32(qmax)
    for i in range(acc.size):
        v = acc[i]
        if relu and v < 0:  # torch.relu: negatives (and -inf) to +0; -0.0 and NaN pass unchanged
            v = np.float32(0.0)
            acc[i] = v
        out[i] = _clamp(np.rint(v * scale), qmin, qmax) * inverse


@njit(cache=True, nogil=True, boundscheck=False, error_model="numpy")
def quantize_drum(x, out, scale, inverse, qmin, qmax, mode, keep, lower, limit):
    """``relu_quantize`` (no ReLU) then ``drum`` on its result, per element: one pass over the data
    instead of two (the first layer's operand, ``transform_real(quantize_real(x))``)."""
    x, out = x.reshape(x.size), out.reshape(out.size)
    scale, inverse, qmin, qmax = np.float32(scale), np.float32(inverse), np.float32(qmin), np.float32(qmax)
    keep, lower, limit = np.int32(keep), np.int32(lower), np.int32(limit)
    out_bits = out.view(np.int32)
    for i in range(x.size):
        out[i] = _clamp(np.rint(x[i] * scale), qmin, qmax) * inverse
        out_bits[i] = _drum_bits(out_bits[i], mode, keep, lower, limit)


@njit(cache=True, nogil=True, boundscheck=False, error_model="numpy")
def drum(x, out, mode, keep, lower, limit):
    keep, lower, limit = np.int32(keep), np.int32(lower), np.int32(limit)
    x_bits = x.reshape(x.size).view(np.int32)
    out_bits = out.reshape(out.size).view(np.int32)
    for i in range(x.size):
        out_bits[i] = _drum_bits(x_bits[i], mode, keep, lower, limit)


@njit(cache=True, nogil=True, boundscheck=False, error_model="numpy")
def max_magnitude_bits(x):
    """The largest ``|x|`` bit pattern (int32) of float32 ``x``: an integer max, which vectorises; a
    NaN's pattern is above every finite and infinite one."""
    bits = x.reshape(x.size).view(np.int32)
    m = np.int32(0)
    for i in range(bits.size):
        v = bits[i] & np.int32(0x7FFFFFFF)
        if v > m:
            m = v
    return m


@njit(cache=True, nogil=True, boundscheck=False, error_model="numpy")
def prepare_layer(w, out_w, masks, has_masks, weight_args, b, out_b, bias_args):
    """A dense layer's multiplier-side weights and quantised bias in one call (two loops)."""
    scale, inverse, qmin, qmax, bits, mode, keep, lower, limit = weight_args
    quantize_flip_drum(w, out_w, scale, inverse, qmin, qmax, masks, has_masks, bits, mode, keep, lower, limit)
    b_scale, b_inverse, b_qmin, b_qmax = bias_args
    relu_quantize(b, out_b, b_scale, b_inverse, b_qmin, b_qmax, False)
