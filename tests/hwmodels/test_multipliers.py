"""Multipliers: the pure-Python reference against the vectorised numpy path."""

from __future__ import annotations

import numpy as np
import pytest

from axtrain.errors import HardwareModelError
from axtrain.hwmodels.multipliers import (
    EXACT,
    MultiplierMode,
    drum_operand_reference,
    drum_transform,
    drum_transform_float,
    matmul,
    multiply,
    multiply_reference,
    parse_mode,
)

MODES = ["exact"] + [f"drum:{k}" for k in range(1, 9)]
SIGNED8 = np.arange(-128, 128, dtype=np.int64)


@pytest.mark.parametrize("mode", MODES)
def test_every_signed_8bit_pair_agrees_with_reference(mode: str) -> None:
    a, b = np.meshgrid(SIGNED8, SIGNED8, indexing="ij")
    fast = multiply(a, b, mode)
    reference = np.array([multiply_reference(x, y, mode) for x, y in zip(a.ravel().tolist(), b.ravel().tolist())])
    assert fast.shape == (256, 256)
    assert np.array_equal(fast.ravel(), reference)


@pytest.mark.parametrize("k", range(1, 9))
def test_every_16bit_operand_transform_agrees_with_reference(k: int) -> None:
    # Each operand is transformed on its own, so agreement on every 16-bit value covers every pair.
    values = np.arange(-(2**15), 2**16, dtype=np.int64)
    reference = np.array([drum_operand_reference(v, k) for v in values.tolist()])
    assert np.array_equal(drum_transform(values, k), reference)


def _assert_random_pairs_agree(k: int, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.integers(-(2**15), 2**15, n)
    b = rng.integers(-(2**15), 2**15, n)
    reference = np.array([multiply_reference(x, y, f"drum:{k}") for x, y in zip(a.tolist(), b.tolist())])
    assert np.array_equal(multiply(a, b, f"drum:{k}"), reference)


@pytest.mark.parametrize("k", range(1, 9))
def test_random_16bit_pairs_agree_with_reference(k: int) -> None:
    _assert_random_pairs_agree(k, 20_000, seed=k)


@pytest.mark.slow
@pytest.mark.parametrize("k", range(1, 9))
def test_a_million_random_16bit_pairs_agree_with_reference(k: int) -> None:
    _assert_random_pairs_agree(k, 10**6, seed=100 + k)


def test_drum_definition_on_hand_checked_values() -> None:
    # 0b1011_0110 = 182, k=3: keep 101, set lowest kept bit (already 1), drop 5 bits -> 0b1010_0000 = 160.
    assert drum_operand_reference(182, 3) == 160
    # 0b1001_0110 = 150, k=3: keep 100 -> 101, then << 5 -> 160.
    assert drum_operand_reference(150, 3) == 160
    assert drum_operand_reference(-150, 3) == -160  # sign-magnitude
    assert drum_operand_reference(7, 3) == 7  # fits in k bits: unchanged
    assert multiply_reference(-150, 182, "drum:3") == -160 * 160


def test_parse_mode_aliases_and_errors() -> None:
    for k in range(1, 5):
        assert parse_mode(f"K{k}") == parse_mode(f"drum:{k}") == parse_mode(f"drum({k})") == MultiplierMode(k)
    assert parse_mode("exact") == EXACT and str(parse_mode("k2")) == "drum:2"
    for bad in ("K5", "drum:0", "drum:17", "booth", "", "drum:-1"):
        with pytest.raises(HardwareModelError):
            parse_mode(bad)


def test_matmul_is_the_sum_of_reference_products(rng: np.random.Generator) -> None:
    a = rng.integers(-128, 128, (5, 7))
    w = rng.integers(-128, 128, (7, 3))
    for mode in ("exact", "drum:2", "K1"):
        expected = [[sum(multiply_reference(int(a[i, t]), int(w[t, j]), mode) for t in range(7)) for j in range(3)] for i in range(5)]
        got = matmul(a, w, mode)
        assert got.dtype == np.int64 and got.tolist() == expected


@pytest.mark.parametrize("k", [1, 3, 8, 12])
def test_wide_operands_take_the_arithmetic_path(k: int, rng: np.random.Generator) -> None:
    # A span above the lookup-table limit: the transform is computed bit by bit, not looked up.
    values = rng.integers(-(2**40), 2**40, 10_000)
    assert np.array_equal(drum_transform(values, k), [drum_operand_reference(v, k) for v in values.tolist()])
    small = values[:100]  # below the table's size threshold
    assert np.array_equal(drum_transform(small % 300 - 150, k), [drum_operand_reference(v, k) for v in (small % 300 - 150).tolist()])


def test_drum1_is_drum2_over_1_5_per_operand_from_magnitude_3() -> None:
    """docs/hwmodels.md "The K mapping": for |a| >= 3, DRUM(2)(a) = 1.5 * DRUM(1)(a) exactly, so a
    DRUM(1) product is the DRUM(2) product / 2.25; below 3 (|a| = 1, 2) both pass a unchanged."""
    from axtrain.hwmodels.multipliers import drum_operand_reference as drum

    for a in range(-(1 << 15), 1 << 15):
        if abs(a) >= 3:
            assert 2 * drum(a, 2) == 3 * drum(a, 1), a
        else:
            assert drum(a, 1) == drum(a, 2) == a


@pytest.mark.parametrize("k", range(1, 17))
def test_drum_transform_float_matches_the_integer_transform(k: int) -> None:
    """The bit-pattern transform of integer-valued floats is drum_transform's integers: every value
    of 18 bits, and random ones up to float32's and float64's exact-integer limits (2**24, 2**53)."""
    rng = np.random.default_rng(k)
    small = np.arange(-(1 << 17), (1 << 17) + 1, dtype=np.int64)
    wide32 = np.concatenate([small, rng.integers(-(1 << 24) + 1, 1 << 24, 20000), [(1 << 24) - 1, -(1 << 24) + 1, 1 << k, -(1 << k), (1 << k) - 1]])
    got32 = drum_transform_float(wide32.astype(np.float32), k)
    assert got32.dtype == np.float32
    np.testing.assert_array_equal(got32.astype(np.int64), drum_transform(wide32, k))
    wide64 = np.concatenate([wide32, rng.integers(-(1 << 53) + 1, 1 << 53, 20000), [(1 << 53) - 1, -(1 << 53) + 1]])
    got64 = drum_transform_float(wide64.astype(np.float64), k)
    assert got64.dtype == np.float64
    np.testing.assert_array_equal(got64.astype(np.int64), drum_transform(wide64, k))


def test_drum_transform_float_leaves_a_strided_input_alone() -> None:
    values = np.arange(-300, 300, dtype=np.float32).reshape(20, 30)[:, ::3]
    before = values.copy()
    got = drum_transform_float(values, 2)
    np.testing.assert_array_equal(values, before)
    np.testing.assert_array_equal(got.astype(np.int64), drum_transform(before.astype(np.int64), 2))


def test_drum_transform_float_rejects_what_it_cannot_represent() -> None:
    with pytest.raises(HardwareModelError, match="float32 or float64"):
        drum_transform_float(np.arange(4), 2)
    with pytest.raises(HardwareModelError, match="outside 1..23"):
        drum_transform_float(np.arange(4, dtype=np.float32), 24)
