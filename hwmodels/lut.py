"""A multiplier given as a lookup table, e.g. an 8x8-bit EvoApprox-style approximate multiplier.

The table holds the product for every pair of operands: ``table[a - lo, b - lo]`` with ``lo`` the
smallest operand (0 unsigned, ``-2**(bits-1)`` signed), so a ``bits``-bit multiplier is a
``2**bits x 2**bits`` integer array. Load it from ``.npy`` or CSV (``2**bits`` rows of ``2**bits``
comma-separated integers). Unlike DRUM, a table multiplier does not factor into per-operand
transforms, so a dot product is a gather and a sum (:meth:`LookupMultiplier.matmul`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from axtrain.errors import ConfigError, HardwareModelError

MAX_BITS = 8  # a 256 x 256 table; 16-bit tables would hold 4 G entries


@dataclass(frozen=True)
class LookupMultiplier:
    """A ``bits`` x ``bits`` multiplier defined by its table of products (int64, read-only)."""

    table: np.ndarray = field(repr=False)
    bits: int
    signed: bool = False
    name: str = "lut"

    def __post_init__(self) -> None:
        if not isinstance(self.bits, int) or not 1 <= self.bits <= MAX_BITS:
            raise HardwareModelError(f"lookup-table multipliers support 1..{MAX_BITS}-bit operands, got {self.bits!r}")
        side = 1 << self.bits
        table = np.asarray(self.table)
        if table.shape != (side, side) or not np.issubdtype(table.dtype, np.integer):
            raise HardwareModelError(
                f"multiplier table {self.name!r} must be a {side}x{side} integer array for {self.bits}-bit operands, got {table.shape} {table.dtype}"
            )
        table = table.astype(np.int64)
        table.setflags(write=False)
        object.__setattr__(self, "table", table)

    @property
    def lo(self) -> int:
        """The smallest operand (the table's row/column 0)."""
        return -(1 << (self.bits - 1)) if self.signed else 0

    @property
    def hi(self) -> int:
        """The largest operand."""
        return self.lo + (1 << self.bits) - 1

    def _index(self, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, dtype=np.int64)
        if values.size and (values.min() < self.lo or values.max() > self.hi):
            raise HardwareModelError(f"operand outside [{self.lo}, {self.hi}] for the {self.bits}-bit table multiplier {self.name!r}")
        return values - self.lo

    def multiply_reference(self, a: int, b: int) -> int:
        """One product, by reading the table (pure Python)."""
        if not (self.lo <= a <= self.hi and self.lo <= b <= self.hi):
            raise HardwareModelError(f"operand outside [{self.lo}, {self.hi}] for the {self.bits}-bit table multiplier {self.name!r}")
        return int(self.table[int(a) - self.lo][int(b) - self.lo])

    def multiply(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Element-wise products (broadcasting), int64."""
        return np.asarray(self.table[self._index(a), self._index(b)])

    def matmul(self, activations: np.ndarray, weights: np.ndarray, chunk_elements: int = 1 << 22) -> np.ndarray:
        """``activations (N, K) @ weights (K, M)`` with every product read from the table (int64).

        Rows are processed in chunks so the (rows, K, M) gather stays under ``chunk_elements``.
        """
        a = self._index(activations)
        w = self._index(weights)
        if a.ndim != 2 or w.ndim != 2 or a.shape[1] != w.shape[0]:
            raise HardwareModelError(f"matmul shapes do not match: {a.shape} @ {w.shape}")
        rows = max(1, chunk_elements // max(1, a.shape[1] * w.shape[1]))
        out = np.empty((a.shape[0], w.shape[1]), dtype=np.int64)
        for start in range(0, a.shape[0], rows):
            block = a[start : start + rows]
            out[start : start + rows] = self.table[block[:, :, None], w[None, :, :]].sum(axis=1)
        return out

    def error_stats(self) -> dict[str, Any]:
        """Bias, mean and max relative error against the exact product over every non-zero pair."""
        values = np.arange(self.lo, self.hi + 1, dtype=np.int64)
        exact = values[:, None] * values[None, :]
        nonzero = exact != 0
        rel = (self.table[nonzero] - exact[nonzero]) / exact[nonzero]
        return {
            "bias": float(rel.mean()),
            "mean_relative_error": float(np.abs(rel).mean()),
            "max_relative_error": float(np.abs(rel).max()),
            "pairs": int(nonzero.sum()),
        }


def load_lut(path: str | Path, bits: int = 8, signed: bool = False) -> LookupMultiplier:
    """Read a table multiplier from ``.npy`` or CSV; a bad file raises ConfigError naming it."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".npy":
            table = np.load(path, allow_pickle=False)
        else:
            table = np.loadtxt(path, delimiter=",", dtype=np.int64, ndmin=2)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read multiplier table {path}: {' '.join(str(exc).split())}") from None
    try:
        return LookupMultiplier(table, bits=bits, signed=signed, name=path.stem)
    except HardwareModelError as exc:
        raise ConfigError(f"{path}: {exc}") from None
