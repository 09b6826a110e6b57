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


def test_a_wide_layer_runs_in_float32_pieces_and_equals_the_interpreter(tmp_path, monkeypatch) -> None:
    # fan-in 1800, 8-bit activations and weights: 1800 * 128 * 100 > 2**24, so before the pieces this
    # layer was one float64 GEMM; now its MACs run through runtime.gemm and must give the same integers.
    from axtrain.formats.bundle import load_bundle
    from axtrain.hwmodels.fixedpoint import FixedPointFormat as F
    from axtrain.runtime import execute
    from axtrain.runtime.execute import FastExecutor, place_inputs
    from axtrain.runtime.interpreter import run_program

    from .conftest import compile_layers, dense

    rng = np.random.default_rng(11)
    layers = [dense(rng, "wide", 6, 1800, F(8, 2), F(8, -6)), dense(rng, "out", 3, 6, F(8, -6), F(8, -4), relu=False)]
    bundle = load_bundle(compile_layers(layers, (1800,), tmp_path / "wide"))
    x = rng.uniform(-40, 40, size=(5, 1800)).astype(np.float32)
    m = bundle.manifest
    dram = place_inputs(x, m.input.format, m.input.dram, m.activation_words, dtype=np.float32)
    pieces = []
    original = execute._gemm_pieces
    monkeypatch.setattr(execute, "_gemm_pieces", lambda *a: pieces.append(a[2]) or original(*a))
    executor = FastExecutor(bundle.program, bundle.arch)
    final, outputs = executor.run(executor.prepare(bundle.weights, bundle.bias), dram, collect=True)
    reference = run_program(bundle.program, bundle.arch, bundle.weights, bundle.bias, dram.astype(np.int64))
    assert pieces and max(pieces) >= F32_EXACT  # the wide layer took the pieces path
    assert np.array_equal(final, reference.dram_a)
    assert all(np.array_equal(outputs[i], reference.layer_outputs[i]) for i in reference.layer_outputs)
    assert np.abs(outputs[0]).max() > 0
