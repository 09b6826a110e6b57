"""runtime.gemm: integer-exact products in float32 pieces, float64 or int64, against int64 products."""

from __future__ import annotations

import numpy as np
import pytest

from axtrain.runtime.gemm import F32_EXACT, MIN_PIECE, exact_matmul, plan_pieces


def _case(rng: np.random.Generator, m: int, k: int, n: int, amax: int, wmax: int) -> tuple[np.ndarray, np.ndarray, float]:
    a = rng.integers(-amax, amax + 1, (m, k))
    b = rng.integers(-wmax, wmax + 1, (k, n))
    a[0] = amax  # one row and one column at the extremes: partial sums reach the bound
    b[:, 0] = wmax
    return a, b, float(k * amax * wmax)


def test_plan_pieces() -> None:
    assert plan_pieces(784, 784 * 127 * 90) == 784  # float32 outright
    piece = plan_pieces(4096, 4096 * 127 * 90)
    assert piece is not None and MIN_PIECE <= piece < 4096 and piece * 127 * 90 < F32_EXACT <= (piece + 1) * 127 * 90
    assert plan_pieces(4096, 4096 * 2.0**30) is None  # products too wide for useful pieces
    assert plan_pieces(10, 2.0**60) is None


@pytest.mark.parametrize("k, amax, wmax", [(300, 127, 90), (3000, 127, 90), (5000, 255, 127), (700, 2**15, 2**12), (40, 2**30, 2**27)])
def test_exact_against_int64(k: int, amax: int, wmax: int) -> None:
    rng = np.random.default_rng(k)
    a, b, bound = _case(rng, 37, k, 23, amax, wmax)
    expected = a @ b
    assert np.abs(expected).max() >= 0.99 * amax * wmax * k  # the extremes were reached
    dtypes = [np.int64] + ([np.float64] if max(amax, wmax) < 2**53 else []) + ([np.float32] if max(amax, wmax) <= F32_EXACT else [])
    for dtype in dtypes:  # the executor hands over float32 or float64 arrays; any holds the integers here
        got = exact_matmul(a.astype(dtype), b.astype(dtype), bound)
        assert np.array_equal(got.astype(np.int64), expected), dtype


def test_the_split_path_is_the_one_taken_for_wide_8bit_layers() -> None:
    rng = np.random.default_rng(5)
    a, b, bound = _case(rng, 16, 4096, 8, 127, 90)
    out = exact_matmul(a.astype(np.float32), b.astype(np.float32), bound)
    assert np.abs(a @ b).max() > F32_EXACT  # beyond float32's exact integers in one product
    assert out.dtype == np.float64 and np.array_equal(out.astype(np.int64), a @ b)
