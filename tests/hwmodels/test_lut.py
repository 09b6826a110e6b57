"""Table multipliers: a DRUM table must reproduce DRUM; loading from .npy and CSV; bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from axtrain.errors import ConfigError, HardwareModelError
from axtrain.hwmodels.lut import LookupMultiplier, load_lut
from axtrain.hwmodels.multipliers import multiply, multiply_reference
from axtrain.hwmodels.stats import drum_error_stats


def drum_table(k: int, signed: bool) -> np.ndarray:
    values = np.arange(-128, 128) if signed else np.arange(256)
    return np.array([[multiply_reference(a, b, f"drum:{k}") for b in values.tolist()] for a in values.tolist()])


@pytest.mark.parametrize("suffix", [".npy", ".csv"])
def test_drum_table_reproduces_drum(tmp_path: Path, suffix: str) -> None:
    table = drum_table(3, signed=False)
    path = tmp_path / f"mul8u_drum3{suffix}"
    if suffix == ".npy":
        np.save(path, table)
    else:
        np.savetxt(path, table, fmt="%d", delimiter=",")
    lut = load_lut(path)
    a, b = np.meshgrid(np.arange(256), np.arange(256), indexing="ij")
    assert np.array_equal(lut.multiply(a, b), multiply(a, b, "drum:3"))
    assert lut.multiply_reference(200, 77) == multiply_reference(200, 77, "drum:3")
    stats = lut.error_stats()
    expected = drum_error_stats(3, 8)
    assert stats["pairs"] == expected["pairs"]
    assert stats["mean_relative_error"] == pytest.approx(expected["mean_relative_error"], rel=1e-12)


def test_signed_table_matmul_is_the_sum_of_table_products(rng: np.random.Generator) -> None:
    lut = LookupMultiplier(drum_table(2, signed=True), bits=8, signed=True)
    a = rng.integers(-128, 128, (9, 6))
    w = rng.integers(-128, 128, (6, 4))
    expected = [[sum(lut.multiply_reference(int(a[i, t]), int(w[t, j])) for t in range(6)) for j in range(4)] for i in range(9)]
    assert lut.matmul(a, w, chunk_elements=30).tolist() == expected  # several row chunks
    assert np.array_equal(lut.matmul(a, w), multiply(a[:, :, None], w[None, :, :], "drum:2").sum(axis=1))


def test_bad_tables_and_operands(tmp_path: Path) -> None:
    bad = tmp_path / "small.csv"
    np.savetxt(bad, np.zeros((4, 4), dtype=int), fmt="%d", delimiter=",")
    with pytest.raises(ConfigError, match="small.csv"):
        load_lut(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_lut(tmp_path / "missing.npy")
    lut = LookupMultiplier(np.zeros((16, 16), dtype=np.int32), bits=4)
    with pytest.raises(HardwareModelError, match="outside"):
        lut.multiply(np.array([16]), np.array([1]))
    with pytest.raises(HardwareModelError):
        LookupMultiplier(np.zeros((16, 16)), bits=4)  # float table
