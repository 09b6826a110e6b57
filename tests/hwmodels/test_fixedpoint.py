"""Dynamic fixed point: property tests and agreement with onnx's reference QuantizeLinear."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import onnx
import pytest
from hypothesis import given, settings, strategies as st
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

from axtrain.errors import HardwareModelError
from axtrain.hwmodels.fixedpoint import FixedPointFormat, choose_frac, dequantize, quantize, requantize, round_shift

FORMATS = st.builds(FixedPointFormat, bits=st.integers(2, 16), frac=st.integers(-8, 20), signed=st.booleans())
FLOATS = st.floats(width=32, allow_nan=False, allow_infinity=True)


def half_even(value: Fraction) -> int:
    """Round a rational half to even: the independent reference for every rounding here."""
    floor = math.floor(value)
    rest = value - floor
    if rest > Fraction(1, 2) or (rest == Fraction(1, 2) and floor % 2 == 1):
        return floor + 1
    return floor


def reference_quantize(x: float, fmt: FixedPointFormat) -> int:
    """QuantizeLinear on one float32 in exact rational arithmetic."""
    if math.isinf(x):
        return fmt.qmax if x > 0 else fmt.qmin
    return min(max(half_even(Fraction(float(np.float32(x))) * Fraction(2) ** fmt.frac), fmt.qmin), fmt.qmax)


@settings(max_examples=300, deadline=None)
@given(fmt=FORMATS, data=st.data())
def test_quantize_is_idempotent_on_its_grid(fmt: FixedPointFormat, data: st.DataObject) -> None:
    q = np.array(data.draw(st.lists(st.integers(fmt.qmin, fmt.qmax), min_size=1, max_size=20)), dtype=np.int64)
    assert np.array_equal(quantize(dequantize(q, fmt), fmt), q)


@settings(max_examples=300, deadline=None)
@given(fmt=FORMATS, xs=st.lists(FLOATS, min_size=1, max_size=20))
def test_quantize_saturates_and_matches_exact_rounding(fmt: FixedPointFormat, xs: list[float]) -> None:
    q = quantize(np.array(xs, dtype=np.float32), fmt)
    assert q.dtype == np.int64
    assert q.min() >= fmt.qmin and q.max() <= fmt.qmax
    assert q.tolist() == [reference_quantize(x, fmt) for x in xs]


def test_round_half_to_even_on_ties() -> None:
    fmt = FixedPointFormat(8, 1)
    # x * 2 = 0.5, 1.5, 2.5, -0.5, -1.5, -2.5  -> 0, 2, 2, 0, -2, -2
    q = quantize(np.array([0.25, 0.75, 1.25, -0.25, -0.75, -1.25], dtype=np.float32), fmt)
    assert q.tolist() == [0, 2, 2, 0, -2, -2]


def _onnx_quantize(x: np.ndarray, frac: int, zero_point: np.ndarray) -> np.ndarray:
    node = helper.make_node("QuantizeLinear", ["x", "scale", "zp"], ["y"])
    elem = helper.np_dtype_to_tensor_dtype(zero_point.dtype)
    graph = helper.make_graph(
        [node],
        "q",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None])],
        [helper.make_tensor_value_info("y", elem, [None])],
        initializer=[
            helper.make_tensor("scale", TensorProto.FLOAT, [], [math.ldexp(1.0, -frac)]),
            helper.make_tensor("zp", elem, [], [0]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    onnx.checker.check_model(model)
    return ReferenceEvaluator(model).run(None, {"x": x})[0]


@pytest.mark.parametrize(("dtype", "bits", "signed"), [(np.int8, 8, True), (np.int16, 16, True), (np.uint8, 8, False)])
@pytest.mark.parametrize("frac", [-3, 0, 5, 12])
def test_agrees_with_onnx_reference_quantize_linear(dtype: type, bits: int, signed: bool, frac: int) -> None:
    fmt = FixedPointFormat(bits, frac, signed)
    rng = np.random.default_rng(bits * 100 + frac)
    span = 2.0 * fmt.qmax * fmt.scale  # twice the range: about half the values saturate
    lsb_ties = (rng.integers(-2 * fmt.qmax, 2 * fmt.qmax, 2000) + 0.5) * fmt.scale  # exact half-LSB ties
    # onnx's reference casts to int32 before clipping, so stay inside int32 after scaling.
    extremes = np.array([fmt.qmax + 0.5, fmt.qmin - 0.5, 2.0**30, -(2.0**30), 0.0, -0.0]) * fmt.scale
    x = np.concatenate([rng.uniform(-span, span, 5000), lsb_ties, extremes]).astype(np.float32)
    expected = _onnx_quantize(x, frac, np.zeros((), dtype=dtype))
    assert expected.dtype == dtype
    assert np.array_equal(quantize(x, fmt), expected.astype(np.int64))


@settings(max_examples=300, deadline=None)
@given(
    acc=st.lists(st.integers(-(2**40), 2**40), min_size=1, max_size=10),
    acc_frac=st.integers(0, 30),
    fmt=FORMATS,
)
def test_requantize_equals_quantize_of_the_exact_real(acc: list[int], acc_frac: int, fmt: FixedPointFormat) -> None:
    got = requantize(np.array(acc, dtype=np.int64), acc_frac, fmt).tolist()
    exact_ref = [min(max(half_even(Fraction(a, 2**acc_frac) * Fraction(2) ** fmt.frac), fmt.qmin), fmt.qmax) for a in acc]
    assert got == exact_ref
    # Where acc * 2**-acc_frac is a float32, quantize (ONNX's Q node after a float accumulation) agrees.
    exact = [a for a in acc if abs(a) < 2**24]
    if exact:
        reals = np.array([math.ldexp(a, -acc_frac) for a in exact], dtype=np.float32)
        assert requantize(np.array(exact), acc_frac, fmt).tolist() == quantize(reals, fmt).tolist()


@settings(max_examples=500, deadline=None)
@given(acc=st.integers(-(2**63), 2**63 - 1), shift=st.integers(-10, 80))
def test_round_shift_matches_rational_reference(acc: int, shift: int) -> None:
    if shift < 0 and abs(acc) >= 2 ** (62 + shift):
        acc >>= 12  # keep a left shift inside int64
    assert int(round_shift(np.array([acc]), shift)[0]) == half_even(Fraction(acc) / Fraction(2) ** shift)


def test_requantize_saturates_large_left_shifts() -> None:
    fmt = FixedPointFormat(8, 10)
    acc = np.array([1 << 40, -(1 << 40), 3, -3, 0])
    assert requantize(acc, -40, fmt).tolist() == [127, -128, 127, -128, 0]


@settings(max_examples=500, deadline=None)
@given(
    max_abs=st.floats(min_value=2.0**-20, max_value=2.0**20, width=32, allow_nan=False),
    bits=st.integers(2, 16),
    signed=st.booleans(),
)
def test_choose_frac_fits_within_half_an_lsb_and_is_maximal(max_abs: float, bits: int, signed: bool) -> None:
    frac = choose_frac(max_abs, bits, signed)

    def error_in_lsb(f: int) -> Fraction:
        fmt = FixedPointFormat(bits, f, signed)
        q = int(quantize(np.array([max_abs], dtype=np.float32), fmt)[0])
        return abs(Fraction(q) - Fraction(max_abs) * Fraction(2) ** f)

    assert error_in_lsb(frac) <= Fraction(1, 2)
    assert error_in_lsb(frac + 1) > Fraction(1, 2)


def test_choose_frac_edges() -> None:
    assert choose_frac(0.0, 8) == 7  # no integer bits
    assert choose_frac(127.4, 8) == 0 and choose_frac(127.6, 8) == -1  # 127.6 would saturate by 0.6 LSB
    with pytest.raises(HardwareModelError, match="finite"):
        choose_frac(float("nan"), 8)
    with pytest.raises(HardwareModelError, match="below -64"):
        choose_frac(1e30, 8)


def test_format_parse_round_trip_and_errors() -> None:
    for fmt in (FixedPointFormat(8, 6), FixedPointFormat(16, -2, False)):
        assert FixedPointFormat.parse(str(fmt)) == fmt
    with pytest.raises(HardwareModelError):
        FixedPointFormat.parse("x8.2")
    with pytest.raises(HardwareModelError):
        FixedPointFormat(1, 0)


# ---------------------------------------------------------------------------------------------
# Requantisation by multiplier and shift (ISA 2 REQ with the requant table)
# ---------------------------------------------------------------------------------------------

from axtrain.hwmodels.fixedpoint import (  # noqa: E402
    MAX_RQ_SHIFT,
    check_requant_entry,
    quantize_multiplier,
    requantize_multiplier,
    requantize_multiplier_reference,
    saturation_bounds,
)

INT64 = st.integers(-(1 << 63), (1 << 63) - 1)
ACCUMULATORS = st.one_of(INT64, st.integers(-(1 << 47), 1 << 47), st.integers(-4096, 4096), st.sampled_from([-(1 << 63), (1 << 63) - 1, 0]))
MULTIPLIERS = st.one_of(st.integers(0, (1 << 31) - 1), st.sampled_from([0, 1 << 30, (1 << 31) - 1]))
SHIFTS = st.one_of(st.integers(0, MAX_RQ_SHIFT), st.sampled_from([0, 1, 31, 32, 33, 62, 94, 95, 96]))


def exact_requantize(acc: int, m: int, n: int, z: int, qmin: int, qmax: int) -> int:
    """The definition in rationals (independent of both implementations)."""
    return min(max(z + half_even(Fraction(acc * m, 1 << n)), qmin), qmax)


@settings(max_examples=600, deadline=None)
@given(acc=st.lists(ACCUMULATORS, min_size=1, max_size=8), m=MULTIPLIERS, n=SHIFTS, z=st.integers(-(1 << 16), 1 << 16),
       bits=st.integers(2, 16), signed=st.booleans())
def test_multiplier_requantize_fast_equals_reference_over_int64(acc: list[int], m: int, n: int, z: int, bits: int, signed: bool) -> None:
    qmin, qmax = saturation_bounds(bits, signed)
    fast = requantize_multiplier(np.array(acc, dtype=np.int64), m, n, z, qmin, qmax)
    slow = [requantize_multiplier_reference(a, m, n, z, qmin, qmax) for a in acc]
    assert fast.tolist() == slow == [exact_requantize(a, m, n, z, qmin, qmax) for a in acc]


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_multiplier_requantize_per_element_parameters(data: st.DataObject) -> None:
    size = data.draw(st.integers(1, 30))
    acc = data.draw(st.lists(st.integers(-(1 << 47), 1 << 47), min_size=size, max_size=size))
    m = data.draw(st.lists(MULTIPLIERS, min_size=size, max_size=size))
    n = data.draw(st.lists(SHIFTS, min_size=size, max_size=size))
    z = data.draw(st.lists(st.integers(-200, 200), min_size=size, max_size=size))
    fast = requantize_multiplier(np.array(acc), np.array(m), np.array(n), np.array(z), -(1 << 24), 1 << 24)  # the widest bounds allowed
    assert fast.tolist() == [exact_requantize(*args, -(1 << 24), 1 << 24) for args in zip(acc, m, n, z, strict=True)]


def test_48_bit_accumulator_times_31_bit_multiplier_does_not_overflow() -> None:
    # |acc * M| ~ 2**78: a plain int64 product would wrap; the exact result fits an unsaturated range.
    acc = np.array([(1 << 47) - 1, -(1 << 47), 123456789012345, -98765432109876], dtype=np.int64)
    m, n = (1 << 31) - 1, 62
    got = requantize_multiplier(acc, m, n, 0, -(1 << 24), 1 << 24)
    assert got.tolist() == [exact_requantize(int(a), m, n, 0, -(1 << 24), 1 << 24) for a in acc]
    assert got.tolist()[:2] == [1 << 16, -(1 << 16)]  # (2**47 - 1)(2**31 - 1) / 2**62 = 2**16 - 2**-15 - ...: rounds to 2**16
    wrapped = (acc * np.int64(m)) >> n  # what a naive int64 product gives (wraps)
    assert not np.array_equal(wrapped, got)


@settings(max_examples=300, deadline=None)
@given(acc=st.lists(st.integers(-(1 << 40), 1 << 40), min_size=1, max_size=20), shift=st.integers(-30, 97), bits=st.integers(2, 16))
def test_power_of_two_multiplier_is_the_v1_rounding_shift(acc: list[int], shift: int, bits: int) -> None:
    # M = 2**30, n = shift + 30 is REQ v1's rounding shift by `shift`: power-of-two graphs keep their bits.
    fmt = FixedPointFormat(bits, 0)
    n = shift + 30
    if n > MAX_RQ_SHIFT:
        return
    got = requantize_multiplier(np.array(acc), 1 << 30, n, 0, fmt.qmin, fmt.qmax)
    assert np.array_equal(got, requantize(np.array(acc), shift, fmt))


@pytest.mark.parametrize("real, expected", [(0.125, (1 << 30, 33)), (1.0, (1 << 30, 30)), (0.75, (3 << 29, 31)), (2.0**-60, (1 << 30, 90))])
def test_quantize_multiplier_exact_cases(real: float, expected: tuple[int, int]) -> None:
    assert quantize_multiplier(real) == expected


@settings(max_examples=300, deadline=None)
@given(real=st.floats(min_value=2.0**-90, max_value=2.0**30, allow_nan=False, allow_infinity=False))
def test_quantize_multiplier_relative_error_at_most_2_to_minus_31(real: float) -> None:
    m, n = quantize_multiplier(real)
    assert 1 << 30 <= m < 1 << 31 and 0 <= n <= MAX_RQ_SHIFT and check_requant_entry(m, n, 0) is None
    assert abs(Fraction(m, 1 << n) - Fraction(real)) <= Fraction(real) * Fraction(1, 1 << 31)


@pytest.mark.parametrize("real", [0.0, -1.0, float("nan"), float("inf"), 2.0**32, 2.0**-100])
def test_quantize_multiplier_refuses_out_of_range(real: float) -> None:
    with pytest.raises(HardwareModelError, match="requantisation multiplier"):
        quantize_multiplier(real)


def test_requant_entry_checks_and_bounds() -> None:
    assert check_requant_entry(1 << 31, 3, 0) == "multiplier 2147483648 outside [0, 2**31)"
    assert "shift 128" in str(check_requant_entry(1, 128, 0))
    assert "zero point" in str(check_requant_entry(1, 1, 1 << 17))
    with pytest.raises(HardwareModelError, match=r"within \+-2\*\*24"):
        requantize_multiplier(np.array([1]), 1, 1, 0, 0, 1 << 25)
