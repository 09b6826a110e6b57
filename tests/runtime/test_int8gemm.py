"""onnxruntime's int8 kernels for the fast executor's large GEMMs (runtime/int8gemm.py): the same
integers as the float32 GEMM, taken only where the operands fit, and off where they must be."""

from __future__ import annotations

import numpy as np
import pytest

from axtrain.runtime import execute, int8gemm
from axtrain.runtime.execute import FastExecutor, place_inputs
from axtrain.runtime.faults import fault_regions, run_image

from .conftest import compile_layers, dense, random_inputs

pytestmark = pytest.mark.skipif(not int8gemm.enabled(), reason="onnxruntime's session does not build here (the float path runs)")


@pytest.mark.parametrize("k,n,cols", [(1, 1, 1), (3, 2, 5), (257, 130, 7), (784, 128, 64), (512, 300, 1)])
@pytest.mark.parametrize("low,high", [(0, 127), (-7, 45), (-127, 0), (-60, 67)])
def test_product_is_the_float_gemm(k: int, n: int, cols: int, low: int, high: int) -> None:
    rng = np.random.default_rng(k * 1000 + n + cols)
    w = rng.integers(-128, 128, (k, n)).astype(np.float32)
    w.flat[:2] = (-128, 127)  # the int8 extremes
    x = rng.integers(low, high + 1, (k, cols)).astype(np.float32)
    x.flat[-1], x.flat[0] = high, low  # both ends of the activation range (one element: the low end)
    zero = int8gemm.zero_point(float(x.min()), float(x.max()))
    assert zero == -low
    w8 = int8gemm.weight_operand(w)
    assert w8 is not None and w8.dtype == np.int8
    got = int8gemm.product(x, w8, zero)
    want = w.T @ x  # exact: |partial sums| <= 784 * 127 * 128 < 2**24
    assert got.dtype == np.float32 and got.shape == (n, cols)
    assert np.array_equal(got, want)
    wide = int8gemm.product(x, w8, zero, wide=True)
    assert wide.dtype == np.float64 and np.array_equal(wide, want)


def test_wide_product_is_exact_past_float32() -> None:
    """k = 4096 at the extremes: sums of 66.6 M, past 2**24, exact in int32 and as float64."""
    rng = np.random.default_rng(9)
    k, n, cols = 4096, 130, 9
    w = np.where(rng.random((k, n)) < 0.5, -128, 127).astype(np.float32)
    w[:, 0], w[:, 1] = -128, 127
    x = np.full((k, cols), 127.0, dtype=np.float32)
    x[:, 1] = rng.integers(0, 128, k)
    w8 = int8gemm.weight_operand(w)
    assert w8 is not None
    got = int8gemm.product(x, w8, 0, wide=True)
    want = w.astype(np.int64).T @ x.astype(np.int64)
    assert np.abs(want).max() == 4096 * 127 * 128 > 2**24
    assert got.dtype == np.float64 and np.array_equal(got, want)


def test_product_takes_a_strided_view() -> None:
    rng = np.random.default_rng(3)
    w = rng.integers(-128, 128, (300, 200)).astype(np.float32)
    x = rng.integers(0, 128, (600, 40)).astype(np.float32)[::2]  # every other row: not contiguous
    w8 = int8gemm.weight_operand(w)
    assert w8 is not None
    assert np.array_equal(int8gemm.product(x, w8, 0), w.T @ x)


def test_operands_outside_the_kernels_range_are_refused() -> None:
    assert int8gemm.weight_operand(np.array([[-128.0, 127.0]])) is not None
    assert int8gemm.weight_operand(np.array([[128.0, 0.0]])) is None
    assert int8gemm.weight_operand(np.array([[-129.0, 0.0]])) is None
    assert int8gemm.zero_point(0, 127) == 0
    assert int8gemm.zero_point(-5, 122) == 5
    assert int8gemm.zero_point(-5, 123) is None  # would reach 128 after the shift
    assert int8gemm.zero_point(0, 128) is None
    assert int8gemm.zero_point(-128, 0) is None


def test_the_held_model_is_the_built_one() -> None:
    """MODEL and MODEL_WIDE (bytes, so that onnx is not imported at run time) are build_model() serialised."""
    assert int8gemm.MODEL == int8gemm.build_model().SerializeToString()
    assert int8gemm.MODEL_WIDE == int8gemm.build_model(wide=True).SerializeToString()
    assert int8gemm.MODEL_PACKED == int8gemm.build_model(packed=True).SerializeToString()
    assert int8gemm.MODEL_PACKED_WIDE == int8gemm.build_model(wide=True, packed=True).SerializeToString()


def test_depth_limit_keeps_the_kernels_own_sums_inside_int32() -> None:
    # before the zero point is taken off, a sum reaches 2 * k * 127 * 128
    assert int8gemm.depth_fits(66052) and 2 * 66052 * 127 * 128 < 2**31
    assert not int8gemm.depth_fits(66053)


def test_small_or_shallow_products_stay_on_the_float_path() -> None:
    assert int8gemm.worth(784, 6400, 118)
    assert not int8gemm.worth(128, 4096, 1024)  # shallow: the conversions cost more than the product
    assert not int8gemm.worth(4096, 16, 2048)  # narrow
    assert not int8gemm.worth(256, 128, 64)  # 2 M multiply-adds: below MIN_MACS


def test_switched_off_by_the_environment_and_in_a_forked_child(monkeypatch: pytest.MonkeyPatch) -> None:
    cache = int8gemm.WeightCache()
    w = np.ones((4, 3), dtype=np.float32)
    assert cache.get(w, False) is not None
    monkeypatch.setenv(int8gemm.ENV, "0")
    assert not int8gemm.enabled()
    monkeypatch.delenv(int8gemm.ENV)
    assert int8gemm.enabled()
    monkeypatch.setattr(int8gemm.os, "getpid", lambda: -1)  # as in a child forked after the import
    assert not int8gemm.enabled()
    assert cache.get(np.ones((4, 3), dtype=np.float32), False) is None


@pytest.fixture()
def int8_everywhere(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int, int, bool, bool]]:
    """Every eligible GEMM of a small test network takes the int8 path; returns the shapes it took
    (and whether its weights were packed)."""
    monkeypatch.setattr(int8gemm, "MIN_TOTAL_MACS", 0)
    monkeypatch.setattr(int8gemm, "MIN_MACS", 0)
    monkeypatch.setattr(int8gemm, "MIN_DEPTH", 1)
    monkeypatch.setattr(int8gemm, "MIN_ROWS", 1)
    taken: list[tuple[int, int, int, bool, bool]] = []
    product = int8gemm.product

    def counted(x: np.ndarray, w8: np.ndarray | int8gemm.Packed, zero: int, wide: bool = False) -> np.ndarray:
        packed = isinstance(w8, int8gemm.Packed)
        taken.append((x.shape[0], (w8.w8 if packed else w8).shape[1], x.shape[1], wide, packed))
        return product(x, w8, zero, wide)

    monkeypatch.setattr(int8gemm, "product", counted)
    return taken


def _network(seed: int, modes: tuple[str, ...] = ("exact",), inputs: int = 300) -> tuple[list, tuple[int, ...]]:
    """Large enough for tiles of the default array, with 8-bit weights at both extremes; with 1,200
    inputs the first layer's sums can pass float32's exact integers (the wide path)."""
    from axtrain.hwmodels.fixedpoint import FixedPointFormat as F

    rng = np.random.default_rng(seed)
    layers = [
        dense(rng, "d0", 40, inputs, F(8, 4), F(8, 2), modes=modes),
        dense(rng, "d1", 24, 40, F(8, 2), F(8, 2), modes=modes),
        dense(rng, "d2", 10, 24, F(8, 2), F(8, 3), relu=False, modes=modes),
    ]
    layers[0].weight[0, :2] = (-128, 127)
    layers[0].weight[:, :] = np.where(rng.random(layers[0].weight.shape) < 0.02, -128, layers[0].weight)
    return layers, (inputs,)


# DRUM with 5 faulty runs: the transformed weights reach -160, outside int8, so nothing is taken there.
@pytest.mark.parametrize("pack", [False, True], ids=["plain", "packed"])
@pytest.mark.parametrize(
    "modes,runs,inputs",
    [(("exact",), 1, 300), (("exact",), 5, 300), (("drum:3",), 1, 300), (("exact",), 1, 1200), (("exact",), 5, 1200)],
    ids=["exact-1", "exact-5", "drum3-1", "wide-1", "wide-5"],
)
def test_executor_results_are_the_float_paths(
    tmp_path, monkeypatch: pytest.MonkeyPatch, int8_everywhere, runs: int, modes: tuple[str, ...], inputs: int, pack: bool
) -> None:
    """Same integers from every layer, Monte Carlo runs (a shared first layer) and one run, exact
    and DRUM (a GEMM of transformed operands), past float32's exact sums (1,200 inputs), with the
    weights passed per call and packed once (PACK_MIN_IMAGES lowered to this test's 37 images)."""
    from axtrain.formats.bundle import load_bundle

    monkeypatch.setattr(int8gemm, "PACK_MIN_IMAGES", 1 if pack else 10**9)

    layers, shape = _network(7, modes, inputs)
    bundle = load_bundle(compile_layers(layers, shape, tmp_path / "net"))
    m = bundle.manifest
    # Inputs of one sign, as images are (the full signed range spans 255 and takes the float path).
    x = np.abs(random_inputs(bundle, 37, seed=5))
    dram = place_inputs(x, m.input.format, m.input.dram, m.activation_words)
    regions = fault_regions(bundle.layers, 0.6)
    images = np.stack([run_image(bundle.weights, regions, 11, run) for run in range(runs)])
    executor = FastExecutor(bundle.program, bundle.arch)
    assert executor.plan.fast, executor.plan.reason
    prepared = executor.prepare(images if runs > 1 else images[0], bundle.bias)
    fast, fast_layers = executor.run_many(prepared, dram, collect=True, chunk=10)
    assert int8_everywhere, "the int8 path was not taken: the test compares nothing"
    assert any(wide for *_, wide, _ in int8_everywhere) == (inputs > 1000)  # the wide path where sums pass 2**24
    assert all(packed == pack for *_, packed in int8_everywhere)
    monkeypatch.setenv(int8gemm.ENV, "0")
    count = len(int8_everywhere)
    slow, slow_layers = executor.run_many(prepared, dram, collect=True, chunk=10)
    assert len(int8_everywhere) == count  # switched off: the float path only
    assert np.array_equal(fast, slow)
    for layer, values in slow_layers.items():
        assert np.array_equal(fast_layers[layer], values), layer


def test_the_simulation_threshold_keeps_small_jobs_off(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A job below MIN_TOTAL_MACS never asks for onnxruntime (its import would cost more than it saves)."""
    asked: list[bool] = []
    monkeypatch.setattr(int8gemm, "enabled", lambda: asked.append(True) or True)
    layers, shape = _network(1)
    from axtrain.formats.bundle import load_bundle

    bundle = load_bundle(compile_layers(layers, shape, tmp_path / "net"))
    executor = FastExecutor(bundle.program, bundle.arch)
    assert not execute._int8_pays(executor.plan, 10, 1)
    assert not asked
    for name, value in (("MIN_TOTAL_MACS", 1), ("MIN_MACS", 1), ("MIN_DEPTH", 1)):
        monkeypatch.setattr(int8gemm, name, value)
    assert not execute._int8_pays(executor.plan, 10, 1)  # tiles of 40 rows: too narrow
    assert not asked
    monkeypatch.setattr(int8gemm, "MIN_ROWS", 1)
    assert execute._int8_pays(executor.plan, 10, 1) and asked
    # Several runs: the shared first layer's GEMM has runs x 40 rows; the others run per run (not taken).
    monkeypatch.setattr(int8gemm, "MIN_ROWS", 120)
    assert execute._int8_pays(executor.plan, 10, 3)
    assert not execute._int8_pays(executor.plan, 10, 2)


def test_the_wide_session_is_built_only_when_a_product_needs_it() -> None:
    """enabled() builds and checks the float32-result session alone; the int32-result one (sums past
    2**24) comes with the first wide product, and then gives the exact sums."""
    int8gemm._session.cache_clear()
    try:
        assert int8gemm.enabled()
        assert int8gemm._session.cache_info().currsize == 1
        assert int8gemm.wide_available()
        assert int8gemm._session.cache_info().currsize == 2
        rng = np.random.default_rng(5)
        x = rng.integers(0, 128, (4096, 7)).astype(np.float32)
        w = np.full((4096, 3), 127, dtype=np.int8)
        out = int8gemm.product(x, w, 0, wide=True)
        assert out.dtype == np.float64 and np.array_equal(out, w.astype(np.int64).T @ x.astype(np.int64))
    finally:
        int8gemm._session.cache_clear()


def test_a_kernel_that_is_not_exact_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sessions' self-check: a kernel that loses an integer anywhere leaves the float path on,
    and packed weights fall back to the plain session."""
    session = int8gemm._session()

    def plain(values: np.ndarray, weights: np.ndarray, zero: int) -> np.ndarray:
        return int8gemm._run(session, values, zero, weights)

    assert int8gemm._self_check(plain)
    assert not int8gemm._self_check(lambda v, w, z: np.clip(plain(v, w, z), -(2.0**15), 2.0**15 - 1))  # as a 16-bit lane would
    assert not int8gemm._self_check(lambda v, w, z: plain(v, w, z) + (v[0, 0] == 127))  # one integer off, in one case
    assert int8gemm.packing_works()

    int8gemm.packing_works.cache_clear()
    monkeypatch.setattr(int8gemm.Packed, "product", lambda self, x, zero, wide: np.clip(int8gemm._run(session, x, zero, self.w8), -(2.0**15), 2.0**15))
    try:
        assert not int8gemm.packing_works()
        w = np.ones((300, 200), dtype=np.float32)
        assert isinstance(int8gemm.WeightCache(pack=True).get(w, False), np.ndarray)  # the plain operand
    finally:
        int8gemm.packing_works.cache_clear()


@pytest.mark.parametrize("wide", [False, True])
def test_packed_weights_give_the_plain_products(wide: bool) -> None:
    """A Packed matrix (the weights an initializer of their own session, packed once) gives the
    plain session's integers on the shapes and ranges of test_product_is_the_float_gemm; a cache
    with ``pack`` hands it out, one per tile, and ``product`` takes it."""
    rng = np.random.default_rng(11)
    cache = int8gemm.WeightCache(pack=True)
    for k, n, cols, low, high in [(1, 1, 1, 0, 127), (257, 130, 7, -7, 45), (784, 640, 183, -60, 67), (512, 300, 1, -127, 0)]:
        w = rng.integers(-128, 128, (k, n)).astype(np.float32)
        w.flat[:2] = (-128, 127)
        x = rng.integers(low, high + 1, (k, cols)).astype(np.float32)
        zero = int8gemm.zero_point(low, high)
        assert zero is not None
        packed = cache.get(w, False)
        assert isinstance(packed, int8gemm.Packed) and cache.get(w, False) is packed
        got = int8gemm.product(x, packed, zero, wide)
        assert got.dtype == (np.float64 if wide else np.float32)
        assert np.array_equal(got, int8gemm.product(x, packed.w8, zero, wide))
        assert np.array_equal(got, w.astype(np.int64).T @ x.astype(np.int64))
    single = rng.integers(-128, 128, (1, 90, 300)).astype(np.float32)  # one run's [rows, k]: packed as its transpose
    x = rng.integers(0, 128, (300, 20)).astype(np.float32)
    packed = cache.get(single, True)
    assert isinstance(packed, int8gemm.Packed)
    assert np.array_equal(int8gemm.product(x, packed, 0, wide), single[0].astype(np.int64) @ x.astype(np.int64))
    assert isinstance(int8gemm.WeightCache().get(single, True), np.ndarray)  # no packing unless asked
