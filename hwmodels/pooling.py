"""Average pooling and residual addition in integers, exactly as onnxruntime's DQ-op-Q computes them
with power-of-two scales (docs/numerics.md).

- **Average pool**: ``out = sat(round_half_even(sum * 2**shift / count))`` where ``sum`` is the
  window's integer sum, ``count`` the window positions inside the map (ONNX ``count_include_pad=0``)
  or the whole window ``kh * kw`` (``count_include_pad=1``: the padding counts, summing as 0)
  and ``shift = output frac - input frac``. onnxruntime divides in float32; the exact rational
  rounding gives the same integers whenever the float32 quotient does not cross a rounding boundary,
  which it cannot for the windows and formats the ISA encodes (|value| < 2**15, count < 2**12: the
  distance to the nearest tie is at least 2**-12 / count, far above float32's error).
- **Residual add**: ``out = sat(round_half_even((a * 2**sa + b * 2**sb) * 2**-shift))`` with
  ``sa = f - fa``, ``sb = f - fb``, ``f = max(fa, fb)`` and ``shift = f - fo``: the float32 sum of
  two dequantised int16s at power-of-two scales is exact, so this is onnxruntime's result.

Each has a slow reference (loops over windows / elements) and a fast numpy form, cross-checked by
tests/hwmodels/test_pooling.py.
"""

from __future__ import annotations

import numpy as np

from axtrain.hwmodels.fixedpoint import FixedPointFormat, requantize


def round_divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` rounded half to even, in int64 arithmetic (``den > 0``)."""
    num = np.asarray(num, dtype=np.int64)
    den = np.asarray(den, dtype=np.int64)
    q, r = np.divmod(num, den)  # floor division: 0 <= r < den
    up = (2 * r > den) | ((2 * r == den) & (q % 2 == 1))
    return np.asarray(q + up.astype(np.int64))


def scaled_average(total: np.ndarray, count: np.ndarray, shift: int, fmt: FixedPointFormat) -> np.ndarray:
    """``sat_fmt(round_half_even(total * 2**shift / count))``: an average moved to the output scale."""
    total = np.asarray(total, dtype=np.int64)
    count = np.asarray(count, dtype=np.int64)
    if shift >= 0:
        value = round_divide(total << shift, count)
    else:
        value = round_divide(total, count << -shift)
    return np.asarray(np.clip(value, fmt.qmin, fmt.qmax))


def _extents(size: int, k: int, s: int, pad: int, out: int) -> list[tuple[int, int]]:
    return [(max(o * s - pad, 0), min(o * s - pad + k, size)) for o in range(out)]


def avgpool_reference(
    x: np.ndarray, window: tuple[int, int], strides: tuple[int, int], pads: tuple[int, int, int, int], shift: int, fmt: FixedPointFormat,
    count_include_pad: bool = False,
) -> np.ndarray:
    """Average pooling of ``x [N, C, H, W]`` (integers), one window at a time (the definition);
    ``count_include_pad``: every window divides by ``kh * kw``."""
    x = np.asarray(x, dtype=np.int64)
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (pt, pl, pb, pr) = window, strides, pads
    oh, ow = (h + pt + pb - kh) // sh + 1, (w + pl + pr - kw) // sw + 1
    out = np.empty((n, c, oh, ow), dtype=np.int64)
    for oy, (y0, y1) in enumerate(_extents(h, kh, sh, pt, oh)):
        for ox, (x0, x1) in enumerate(_extents(w, kw, sw, pl, ow)):
            total = x[:, :, y0:y1, x0:x1].sum(axis=(2, 3))
            count = kh * kw if count_include_pad else (y1 - y0) * (x1 - x0)
            out[:, :, oy, ox] = scaled_average(total, np.full(total.shape, count), shift, fmt)
    return out


def window_sums(x: np.ndarray, window: tuple[int, int], strides: tuple[int, int], pads: tuple[int, int, int, int], out: tuple[int, int]) -> np.ndarray:
    """Window sums of ``x [..., H, W]`` (zero padding), vectorised over the window offsets:
    ``[..., oh, ow]`` in ``x``'s dtype (exact for integers and for floats below 2**24 / 2**53)."""
    (kh, kw), (sh, sw), (pt, pl, pb, pr) = window, strides, pads
    oh, ow = out
    padded = np.zeros((*x.shape[:-2], x.shape[-2] + pt + pb, x.shape[-1] + pl + pr), dtype=x.dtype)
    padded[..., pt : pt + x.shape[-2], pl : pl + x.shape[-1]] = x
    total = np.zeros((*x.shape[:-2], oh, ow), dtype=x.dtype)
    for ky in range(kh):
        for kx in range(kw):
            total += padded[..., ky : ky + sh * (oh - 1) + 1 : sh, kx : kx + sw * (ow - 1) + 1 : sw]
    return total


def window_counts(
    h: int, w: int, window: tuple[int, int], strides: tuple[int, int], pads: tuple[int, int, int, int], out: tuple[int, int],
    count_include_pad: bool = False,
) -> np.ndarray:
    """Every window's divisor, ``[oh, ow]`` int64: its positions inside the map, or (``count_include_pad``)
    the whole window."""
    if count_include_pad:
        return np.full(out, window[0] * window[1], dtype=np.int64)
    return window_sums(np.ones((h, w), dtype=np.int64), window, strides, pads, out)


def avgpool(
    x: np.ndarray, window: tuple[int, int], strides: tuple[int, int], pads: tuple[int, int, int, int], shift: int, fmt: FixedPointFormat,
    count_include_pad: bool = False,
) -> np.ndarray:
    """:func:`avgpool_reference` vectorised over the windows (the same integers)."""
    x = np.asarray(x, dtype=np.int64)
    h, w = x.shape[-2:]
    (kh, kw), (sh, sw), (pt, pl, pb, pr) = window, strides, pads
    out = ((h + pt + pb - kh) // sh + 1, (w + pl + pr - kw) // sw + 1)
    counts = window_counts(h, w, window, strides, pads, out, count_include_pad)
    return scaled_average(window_sums(x, window, strides, pads, out), counts, shift, fmt)


def residual_add(a: np.ndarray, b: np.ndarray, sa: int, sb: int, shift: int, fmt: FixedPointFormat, relu: bool = False) -> np.ndarray:
    """``sat(round_half_even(max?(a * 2**sa + b * 2**sb) * 2**-shift))`` elementwise (``relu``:
    the sum is clamped at 0 first, as a Relu between the Add and its QuantizeLinear)."""
    total = (np.asarray(a, dtype=np.int64) << sa) + (np.asarray(b, dtype=np.int64) << sb)
    if relu:
        total = np.maximum(total, 0)
    return requantize(total, shift, FixedPointFormat(fmt.bits, 0, fmt.signed))


def residual_add_reference(a: np.ndarray, b: np.ndarray, sa: int, sb: int, shift: int, fmt: FixedPointFormat, relu: bool = False) -> np.ndarray:
    """:func:`residual_add` one element at a time in Python integers (the definition)."""
    flat_a, flat_b = np.asarray(a, dtype=np.int64).ravel(), np.asarray(b, dtype=np.int64).ravel()
    out = np.empty(flat_a.size, dtype=np.int64)
    for i, (x, y) in enumerate(zip(flat_a.tolist(), flat_b.tolist(), strict=True)):
        total = x * 2**sa + y * 2**sb
        if relu:
            total = max(total, 0)
        if shift <= 0:
            value = total * 2**-shift
        else:
            q, r = divmod(total, 2**shift)
            value = q + (1 if 2 * r > 2**shift or (2 * r == 2**shift and q % 2) else 0)
        out[i] = min(max(value, fmt.qmin), fmt.qmax)
    return out.reshape(np.shape(a))
