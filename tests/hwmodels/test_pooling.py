"""Average pooling and residual addition: the fast numpy forms equal the slow references, and the
rounding is exact rational rounding half to even (checked with Python's Fraction, not the code)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from axtrain.hwmodels.fixedpoint import FixedPointFormat as F
from axtrain.hwmodels.pooling import avgpool, avgpool_reference, residual_add, residual_add_reference, round_divide


def test_round_divide_is_rational_round_half_to_even() -> None:
    rng = np.random.default_rng(0)
    num = rng.integers(-5000, 5000, size=4000)
    den = rng.integers(1, 60, size=4000)
    expected = [round(Fraction(int(a), int(b))) for a, b in zip(num, den, strict=True)]  # round(): half to even
    assert round_divide(num, den).tolist() == expected
    assert round_divide(np.array([5, 7, -5, -7]), np.array([2, 2, 2, 2])).tolist() == [2, 4, -2, -4]  # ties


@pytest.mark.parametrize("window,strides,pads,shift", [
    ((2, 2), (2, 2), (0, 0, 0, 0), 0),
    ((3, 3), (1, 1), (1, 1, 1, 1), 2),
    ((3, 2), (2, 1), (1, 0, 0, 1), -1),
    ((5, 7), (1, 1), (0, 0, 0, 0), 3),  # a global pool of a 5x7 map
])
@pytest.mark.parametrize("count_include_pad", [False, True])
def test_avgpool_fast_equals_reference(window: tuple[int, int], strides: tuple[int, int], pads: tuple[int, int, int, int], shift: int, count_include_pad: bool) -> None:
    x = np.random.default_rng(1).integers(-128, 128, size=(3, 4, 5, 7))
    fmt = F(8, 0)
    fast = avgpool(x, window, strides, pads, shift, fmt, count_include_pad)
    assert np.array_equal(fast, avgpool_reference(x, window, strides, pads, shift, fmt, count_include_pad))
    assert fast.min() >= -128 and fast.max() <= 127 and np.unique(fast).size > 5


def test_avgpool_counts_only_map_positions() -> None:
    x = np.array([[[[10, 20], [30, 40]]]])
    # 2x2 windows, stride 1, one padding row above and column left (ONNX count_include_pad=0): the
    # corner window averages 10 alone (counting the padding would give 10 / 4 -> 2).
    out = avgpool(x, (2, 2), (1, 1), (1, 1, 0, 0), 0, F(8, 0))
    assert out.tolist() == [[[[10, 15], [20, 25]]]]


def test_avgpool_count_include_pad_divides_by_the_whole_window() -> None:
    x = np.array([[[[10, 20], [30, 40]]]])
    # The same windows with ONNX count_include_pad=1: every sum over 4 (the padding sums as 0):
    # 10/4 = 2.5 -> 2, 30/4 = 7.5 -> 8, 40/4 = 10, 100/4 = 25 (ties to even).
    out = avgpool(x, (2, 2), (1, 1), (1, 1, 0, 0), 0, F(8, 0), count_include_pad=True)
    assert out.tolist() == [[[[2, 8], [10, 25]]]]


@pytest.mark.parametrize("sa,sb,shift,relu", [(0, 0, 1, False), (2, 0, 3, True), (0, 3, -1, False), (1, 1, 0, True)])
def test_residual_add_fast_equals_reference(sa: int, sb: int, shift: int, relu: bool) -> None:
    rng = np.random.default_rng(2)
    a, b = rng.integers(-128, 128, size=(2, 500))
    fmt = F(8, 0)
    assert np.array_equal(residual_add(a, b, sa, sb, shift, fmt, relu), residual_add_reference(a, b, sa, sb, shift, fmt, relu))
