"""Hardware-model speed (issue 2): NTV fault injection and the DRUM transform + GEMM.

* NTV: 50 fault maps drawn over a 1.6 M-bit weight image (200 k 8-bit words) at p = 0.1, versus
  the obvious per-bit Bernoulli baseline for the same 50 draws (one uniform number per bit, compare,
  pack the flags into byte masks, XOR). Acceptance: 50 draws "well under a second" (the absolute
  time is in the note); the limit asks for at least 2x over the baseline.
* DRUM: a 10000 x 784 @ 784 x 128 integer product with every scalar product taken by DRUM(2)
  (transform both operands, then one GEMM), versus the same exact GEMM.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as `python benchmarks/bench_hwmodels.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from axtrain.hwmodels.multipliers import matmul
from axtrain.hwmodels.ntv import inject
from benchmarks.common import Result, alternated_best, format_table

N_BITS = 1_600_000
DRAWS = 50
P = 0.1


def run(quick: bool = False) -> list[Result]:
    """Time NTV injection and DRUM GEMM against their baselines measured in the same process."""
    repeat = 2 if quick else 5
    rng = np.random.default_rng(0)
    words = rng.integers(-128, 128, N_BITS // 8).astype(np.int8)

    def draws() -> None:
        for _ in range(DRAWS):
            inject(words, 8, P, rng)

    def per_bit_naive() -> None:
        for _ in range(DRAWS):
            masks = np.packbits(rng.random(N_BITS) < P, bitorder="little").view(np.int8)
            words ^ masks

    # Alternated rounds (decisions 222): one side after the other, the ratio read 0.30-0.60 for the
    # same code as the load moved between the two measurements.
    rounds = 2 if quick else 4
    t_inject, t_bits = alternated_best(draws, per_bit_naive, rounds, repeat=2)
    results = [
        Result(f"ntv inject 1.6 Mbit x {DRAWS} draws p={P}", t_inject, f"rng.random per bit x {DRAWS}", t_bits, limit=0.5,
               note=f"{t_inject:.3f} s for {DRAWS} draws (acceptance: well under 1 s)"),
    ]

    rows = 2000 if quick else 10000
    a = rng.integers(-128, 128, (rows, 784))
    w = rng.integers(-128, 128, (784, 128))
    t_drum, t_exact = alternated_best(lambda: matmul(a, w, "drum:2"), lambda: matmul(a, w, "exact"), rounds, repeat=max(1, repeat // 2))
    results.append(Result(f"drum:2 transform+GEMM {rows}x784@784x128", t_drum, "exact GEMM (same path)", t_exact, limit=3.0,
                          note="transform of both operands, then one float64 GEMM"))
    return results


if __name__ == "__main__":
    print(format_table(run(quick="--quick" in sys.argv)))
