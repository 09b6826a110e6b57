"""Integer-exact matrix products in floating point, kept in float32 where a bound allows (issue 15).

The fast executor multiplies integer-valued float arrays and must get every integer exactly. A
float32 GEMM is exact while every partial sum stays below ``2**24``, a float64 GEMM below ``2**53``.
With 8-bit operands a fan-in of 1,500 or more already exceeds ``2**24`` in the worst case, so a
whole wide layer (784-4096-4096-10's second layer: ``4096 * 127 * 90 ~ 2**25.5``) ran as a float64
GEMM, about twice the time of float32 and single-threaded. :func:`exact_matmul` instead splits the
inner dimension into pieces short enough for float32 to be exact, runs one float32 GEMM per piece,
and adds the pieces in float64 (each piece's result is an exact integer below ``2**24``; their sum is
below the caller's bound, below ``2**53``, so every addition is exact). Same integers, tested
against int64 products in tests/runtime/test_gemm.py.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np

from axtrain.runtime.blas import blas_threads

F32_EXACT = 1 << 24
F64_EXACT = 1 << 53
MIN_PIECE = 256  # shorter float32 pieces lose to one float64 GEMM (more passes over the output)
BIG_GEMM = 1 << 26  # multiply-adds from which a product may use ``threads`` BLAS threads


def plan_pieces(k: int, bound: float) -> int | None:
    """Inner-dimension length of each float32 piece for a product of fan-in ``k`` whose partial sums
    are bounded by ``bound`` (linear in ``k``: ``k * max|a| * max|b|``): ``k`` itself when float32 is
    exact outright, a shorter length when splitting keeps float32 (at least :data:`MIN_PIECE`), or
    None when float32 cannot be used."""
    if bound < F32_EXACT:
        return k
    if k == 0 or bound >= F64_EXACT:
        return None
    per_product = bound / k
    piece = math.floor((F32_EXACT - 1) / per_product) if per_product > 0 else k
    return piece if piece >= MIN_PIECE else None


def exact_matmul(left: np.ndarray, right: np.ndarray, bound: float, threads: int = 1) -> np.ndarray:
    """``left @ right`` (2-D, integer-valued floats or integers) with every integer exact.

    ``bound`` bounds ``sum_i |left[r, i]| * |right[i, c]|`` for every output (the executor's
    ``k * max|a| * max|w|``). The result is float32 when float32 was exact outright, float64 when
    the product was split into float32 pieces or computed in float64, int64 past ``2**53``.
    """
    k = left.shape[1]
    macs = left.shape[0] * k * right.shape[1]
    piece = plan_pieces(k, bound)
    parallel = blas_threads(threads) if threads > 1 and macs >= BIG_GEMM else contextlib.nullcontext()
    with parallel:
        if piece == k:
            return left.astype(np.float32, copy=False) @ right.astype(np.float32, copy=False)
        if piece is not None:
            out = np.zeros((left.shape[0], right.shape[1]), dtype=np.float64)
            a32 = left.astype(np.float32, copy=False)
            b32 = right.astype(np.float32, copy=False)
            for start in range(0, k, piece):
                out += a32[:, start : start + piece] @ b32[start : start + piece]
            return out
        if bound < F64_EXACT:
            return left.astype(np.float64, copy=False) @ right.astype(np.float64, copy=False)
    return left.astype(np.int64) @ right.astype(np.int64)
