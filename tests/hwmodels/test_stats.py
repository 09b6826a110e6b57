"""DRUM error statistics: the published check values and an independent exhaustive computation."""

from __future__ import annotations

from fractions import Fraction

import pytest

from axtrain.errors import HardwareModelError
from axtrain.hwmodels.multipliers import multiply_reference
from axtrain.hwmodels.stats import drum_error_stats

# Mean relative error (%) of DRUM(k) products of 16-bit unsigned uniform operands (DESIGN.md, the
# DRUM paper's check values).
PUBLISHED = {4: 5.89, 5: 2.94, 6: 1.47, 7: 0.73, 8: 0.37}


@pytest.mark.parametrize("k", sorted(PUBLISHED))
def test_16bit_unsigned_mean_relative_error_matches_published(k: int) -> None:
    stats = drum_error_stats(k, 16, samples=200_000, seed=k)
    assert abs(stats["mean_relative_error"] * 100 - PUBLISHED[k]) < 0.05
    assert 0 < stats["bias"] < stats["mean_relative_error"]  # DRUM is nearly unbiased, slightly positive
    assert stats["max_relative_error"] < 2.0 ** (2 - k) + 2.0 ** (2 - 2 * k)  # (1 + 2**-(k-1))**2 - 1 bound


@pytest.mark.slow
@pytest.mark.parametrize("k", sorted(PUBLISHED))
def test_16bit_unsigned_published_values_at_a_million_samples(k: int) -> None:
    stats = drum_error_stats(k, 16, samples=10**6, seed=0)
    assert abs(stats["mean_relative_error"] * 100 - PUBLISHED[k]) < 0.05


@pytest.mark.parametrize(("k", "bits", "signed"), [(2, 5, False), (3, 6, True)])
def test_small_widths_are_enumerated_exactly(k: int, bits: int, signed: bool) -> None:
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    errors = [
        Fraction(multiply_reference(a, b, f"drum:{k}") - a * b, a * b)
        for a in range(low, high + 1)
        for b in range(low, high + 1)
        if a * b != 0
    ]
    stats = drum_error_stats(k, bits, signed=signed)
    assert stats["exhaustive"] and stats["pairs"] == len(errors)
    assert stats["bias"] == pytest.approx(float(sum(errors) / len(errors)), rel=1e-12, abs=1e-15)
    assert stats["mean_relative_error"] == pytest.approx(float(sum(abs(e) for e in errors) / len(errors)), rel=1e-12)
    assert stats["max_relative_error"] == pytest.approx(float(max(abs(e) for e in errors)), rel=1e-12)


def test_signed_and_unsigned_agree_in_magnitude_statistics() -> None:
    # Sign-magnitude DRUM: the error of a product depends on the magnitudes only.
    unsigned = drum_error_stats(3, 8)
    signed = drum_error_stats(3, 8, signed=True)
    assert unsigned["max_relative_error"] == pytest.approx(signed["max_relative_error"], rel=1e-12)


def test_reproducible_and_validated() -> None:
    assert drum_error_stats(5, 12, samples=1000, seed=3) == drum_error_stats(5, 12, samples=1000, seed=3)
    with pytest.raises(HardwareModelError):
        drum_error_stats(0, 16)
    with pytest.raises(HardwareModelError):
        drum_error_stats(4, 64)
    with pytest.raises(HardwareModelError):
        drum_error_stats(4, 16, samples=0)
