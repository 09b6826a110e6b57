"""NTV SRAM: the bit-error-rate curve and the fault injector (fast path vs per-bit reference)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from axtrain.errors import HardwareModelError
from axtrain.hwmodels.ntv import bit_error_rate, flip_positions, inject, inject_reference


def test_calibration_points_exactly() -> None:
    assert bit_error_rate(0.40) == 0.1
    assert bit_error_rate(0.66) == 0.01
    assert bit_error_rate(0.85) == 0.001
    assert bit_error_rate(1.1) == 0.0


def test_monotone_decreasing_over_the_range() -> None:
    volts = np.linspace(0.40, 1.10, 701)
    rates = np.array([bit_error_rate(v) for v in volts])
    assert np.all(np.diff(rates[:-1]) < 0)  # strictly decreasing up to the nominal voltage
    assert rates[-1] == 0.0 and rates[-2] > 0.0


@pytest.mark.parametrize(("v0", "p0", "v1", "p1"), [(0.40, 0.1, 0.66, 0.01), (0.66, 0.01, 0.85, 0.001)])
def test_log_linear_between_points(v0: float, p0: float, v1: float, p1: float) -> None:
    for t in (0.1, 0.5, 0.9):
        v = v0 + t * (v1 - v0)
        expected = p0 ** (1 - t) * p1**t  # geometric interpolation = linear in log p
        assert math.isclose(bit_error_rate(v), expected, rel_tol=1e-9)


@pytest.mark.parametrize("voltage", [0.39, 1.2, -1.0, float("nan"), "high"])
def test_out_of_range_voltage_raises(voltage: object) -> None:
    with pytest.raises(HardwareModelError, match="SRAM voltage"):
        bit_error_rate(voltage)  # type: ignore[arg-type]


@pytest.mark.parametrize("p", [0.01, 0.1])
def test_flip_rate_over_ten_million_bits_within_three_sigma(p: float) -> None:
    n_bits = 10**7
    words = np.zeros(n_bits // 8, dtype=np.uint8)
    flipped = inject(words, 8, p, np.random.default_rng(7))
    count = int(np.unpackbits(flipped).sum())
    sigma = math.sqrt(n_bits * p * (1 - p))
    assert abs(count - n_bits * p) <= 3 * sigma


def test_flips_stay_inside_bits_and_keep_dtype_and_shape() -> None:
    rng = np.random.default_rng(3)
    words = rng.integers(-8, 8, size=(40, 25)).astype(np.int16)  # 4-bit values held in int16
    out = inject(words, 4, 0.3, rng)
    assert out.dtype == np.int16 and out.shape == words.shape
    assert out.min() >= -8 and out.max() <= 7  # sign-extended 4-bit words, never wider
    assert np.any(out != words)
    unsigned = rng.integers(0, 64, size=500).astype(np.uint8)
    out_u = inject(unsigned, 6, 0.5, rng)
    assert out_u.dtype == np.uint8 and int(out_u.max()) < 64


def test_reproducible_with_the_same_seed() -> None:
    words = np.arange(-128, 128, dtype=np.int8).repeat(20)
    first = inject(words, 8, 0.05, np.random.default_rng(11))
    again = inject(words, 8, 0.05, np.random.default_rng(11))
    other = inject(words, 8, 0.05, np.random.default_rng(12))
    assert np.array_equal(first, again) and not np.array_equal(first, other)


def test_bad_inputs_raise() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(HardwareModelError):
        inject(np.zeros(4, dtype=np.float32), 8, 0.1, rng)
    with pytest.raises(HardwareModelError):
        inject(np.zeros(4, dtype=np.int8), 16, 0.1, rng)  # wider than the storage dtype
    with pytest.raises(HardwareModelError):
        flip_positions(10, 1.5, rng)


def test_flip_positions_edges() -> None:
    rng = np.random.default_rng(0)
    assert flip_positions(100, 0.0, rng).size == 0
    assert flip_positions(100, 1.0, rng).tolist() == list(range(100))
    positions = flip_positions(10**5, 0.2, rng)
    assert np.all(np.diff(positions) > 0) and positions[0] >= 0 and positions[-1] < 10**5


def _flip_statistics(fn, draws: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-bit flip frequency and per-draw flip counts of ``draws`` injections into a small image."""
    words = np.array([-128, -1, 0, 1, 77, 127, -77, 5], dtype=np.int8)
    rng = np.random.default_rng(seed)
    per_bit = np.zeros(words.size * 8)
    counts = np.empty(draws)
    for i in range(draws):
        diff = np.unpackbits((fn(words, 8, 0.1, rng) ^ words).view(np.uint8))
        per_bit += diff
        counts[i] = diff.sum()
    return per_bit / draws, counts


def test_fast_path_has_the_reference_flip_distribution() -> None:
    draws, p, n = 2000, 0.1, 64
    fast_bits, fast_counts = _flip_statistics(inject, draws, seed=1)
    ref_bits, ref_counts = _flip_statistics(inject_reference, draws, seed=2)
    # Every bit position flips at rate p in both (4 sigma per position over 64 positions).
    sigma_bit = math.sqrt(p * (1 - p) / draws)
    assert np.all(np.abs(fast_bits - p) < 4.5 * sigma_bit) and np.all(np.abs(ref_bits - p) < 4.5 * sigma_bit)
    # Flips per draw: Binomial(64, p) in both: same mean and variance (two-sample, 4 sigma).
    mean, var = n * p, n * p * (1 - p)
    assert abs(fast_counts.mean() - ref_counts.mean()) < 4 * math.sqrt(2 * var / draws)
    for counts in (fast_counts, ref_counts):
        assert abs(counts.mean() - mean) < 4 * math.sqrt(var / draws)
        assert abs(counts.var() / var - 1) < 4 * math.sqrt(2 / draws) * 1.2  # var of sample variance, ~Gaussian
    # Same histogram of flips per draw: chi-square over the bins with enough mass.
    f_hist = np.bincount(np.minimum(fast_counts.astype(int), 14), minlength=15)
    r_hist = np.bincount(np.minimum(ref_counts.astype(int), 14), minlength=15)
    keep = (f_hist + r_hist) >= 20
    chi2 = float((((f_hist - r_hist) ** 2) / (f_hist + r_hist))[keep].sum())
    assert chi2 < 40.0, f"chi-square {chi2:.1f} over {int(keep.sum())} bins"  # p ~ 1e-4 at ~13 dof


@pytest.mark.parametrize("bits", [1, 3, 8, 12, 16, 23, 32])
def test_both_mask_routes_match_a_python_reference(bits: int, monkeypatch: pytest.MonkeyPatch) -> None:
    from axtrain.hwmodels import ntv

    n_words = 300
    positions = flip_positions(n_words * bits, 0.2, np.random.default_rng(bits))
    expected = [0] * n_words
    for position in positions.tolist():
        expected[position // bits] |= 1 << (position % bits)
    assert ntv._flip_masks(positions, n_words, bits).tolist() == expected  # bit-array route
    monkeypatch.setattr(ntv, "_BIT_ARRAY_LIMIT", 0)
    assert ntv._flip_masks(positions, n_words, bits).tolist() == expected  # bincount route


def test_32bit_words_flip_the_sign_bit() -> None:
    words = np.zeros(20_000, dtype=np.int32)
    out = inject(words, 32, 0.05, np.random.default_rng(5))
    assert out.dtype == np.int32 and np.any(out < 0)
    assert abs(np.unpackbits(out.view(np.uint8)).mean() - 0.05) < 0.002
