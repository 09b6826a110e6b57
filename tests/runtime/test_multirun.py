"""The fast multi-run path (Monte Carlo runs stacked, run-invariant work shared) against one run at a
time and against the ISA interpreter; the float32 input quantisation against hwmodels.quantize."""

from __future__ import annotations

import numpy as np
import pytest

from axtrain.formats.arch import Architecture
from axtrain.formats.isa import parse_assembly
from axtrain.hwmodels.fixedpoint import FixedPointFormat, quantize
from axtrain.runtime.execute import FastExecutor, output_floats, place_inputs, quantize_float32
from axtrain.runtime.faults import fault_regions, run_image
from axtrain.runtime.host_tail import output_metrics, tail_ops
from axtrain.runtime.interpreter import run_program
from axtrain.runtime.simulation import simulate

from .conftest import random_inputs


def _images(bundle, runs, voltage=0.5, seed=4):
    regions = fault_regions(bundle.layers, voltage)
    return np.stack([run_image(bundle.weights, regions, seed, run) for run in range(runs)])


@pytest.mark.parametrize("kind,arch_name,modes", [("mlp", "default", ("exact",)), ("cnn", "tiny", ("drum:2",)), ("mixed", "tiny", ("exact",))])
def test_stacked_runs_equal_single_runs_and_the_interpreter(bundle_factory, kind, arch_name, modes) -> None:
    bundle, _ = bundle_factory(kind, arch_name, modes=modes)
    m = bundle.manifest
    x = random_inputs(bundle, 19, seed=2)
    dram = place_inputs(x, m.input.format, m.input.dram, m.activation_words)
    images = _images(bundle, 4)
    assert len({image.tobytes() for image in images}) == 4  # four different chips
    executor = FastExecutor(bundle.program, bundle.arch)
    assert executor.plan.fast, executor.plan.reason
    stacked, layers = executor.run_many(executor.prepare(images, bundle.bias), dram, collect=True, chunk=6)  # 4 chunks: threads
    assert stacked.shape == (4, len(x), m.activation_words)
    for run, image in enumerate(images):
        single, single_layers = executor.run(executor.prepare(image, bundle.bias), dram, collect=True, chunk=len(x))
        reference = run_program(bundle.program, bundle.arch, image, bundle.bias, dram)
        assert np.array_equal(stacked[run], single), f"run {run}"
        assert np.array_equal(single, reference.dram_a), f"run {run}"
        for layer, values in reference.layer_outputs.items():
            assert np.array_equal(layers[layer][run], values), f"run {run} layer {layer}"
            assert np.array_equal(single_layers[layer], values), f"run {run} layer {layer}"


def test_simulate_predictions_equal_the_per_run_path(bundle_factory) -> None:
    """simulate's multi-run path vs a plain loop: one fault map, one executor pass, one argmax per run."""
    bundle, _ = bundle_factory("cnn", "default")
    m = bundle.manifest
    x = random_inputs(bundle, 30, seed=5)
    y = np.arange(len(x)) % m.output.shape[0]
    result = simulate(bundle, x, y, sram_voltage=0.45, runs=5, seed=9)
    regions = fault_regions(bundle.layers, 0.45)
    executor = FastExecutor(bundle.program, bundle.arch)
    dram = place_inputs(x, m.input.format, m.input.dram, m.activation_words)
    count = int(np.prod(m.output.shape))
    for run in range(5):
        final, _ = executor.run(executor.prepare(run_image(bundle.weights, regions, 9, run), bundle.bias), dram, chunk=len(x))
        q = final[:, m.output.dram : m.output.dram + count]
        assert np.array_equal(result.predictions[run], np.argmax(q, axis=1)), f"run {run}"
        assert result.per_run_accuracy[run] == float(np.mean(np.argmax(q, axis=1) == y))
        # The metrics (computed in threads) are the floats of one plain call per run.
        assert result.per_run_output_error[run] == output_metrics(output_floats(bundle, q), y, tail_ops(bundle)), f"run {run}"
    assert len({tuple(p) for p in result.predictions}) > 1


def test_shared_input_words_read_again_after_a_layer_are_mirrored() -> None:
    """Layer 2 reads the input words (run-invariant) and layer 1's outputs (per run) in one tile:
    the input must also be in the per-run buffer. Hand-written program, 3 weight images."""
    arch = Architecture(pe_rows=2, pe_cols=2)
    program = parse_assembly("""
        LDN nb=0 dram=0 count=4
        CONV c=4 h=1 w=1 kh=1 kw=1 sh=1 sw=1 pt=0 pl=0 pb=0 pr=0 padv=0 oh=1 ow=1
        LDB bb=0 dram=0 count=2
        LDW wb=0 dram=0 rows=2 cols=4 stride=4
        DISTW wb=0 stride=4 m=2 p=1 k=4
        DISTN nb=0 p0=0 m=2 p=1 k0=0 k=4
        MAC m=2 p=1 k=4 bb=0 mt=0 init=1
        RELU m=2 p=1
        REQ nb=4 ostride=1 m=2 p=1 shift=2 bits=8
        CONV c=6 h=1 w=1 kh=1 kw=1 sh=1 sw=1 pt=0 pl=0 pb=0 pr=0 padv=0 oh=1 ow=1
        LDB bb=0 dram=2 count=2
        LDW wb=0 dram=8 rows=2 cols=6 stride=6
        DISTW wb=0 stride=6 m=2 p=1 k=6
        DISTN nb=0 p0=0 m=2 p=1 k0=0 k=6
        MAC m=2 p=1 k=6 bb=0 mt=0 init=1
        REQ nb=6 ostride=1 m=2 p=1 shift=3 bits=8
        STN dram=4 nb=0 count=8
        END
    """)
    rng = np.random.default_rng(1)
    images = rng.integers(-100, 100, size=(3, 20))
    bias = rng.integers(-300, 300, size=4)
    dram = np.zeros((9, 12), dtype=np.int64)
    dram[:, :4] = rng.integers(-100, 100, size=(9, 4))
    executor = FastExecutor(program, arch)
    assert executor.plan.fast, executor.plan.reason
    ldn = next(step for step in executor.plan.steps if step.op == "LDN")
    assert ldn.mirror
    final, _ = executor.run_many(executor.prepare(images, bias), dram, chunk=4)
    for run in range(3):
        assert np.array_equal(final[run], run_program(program, arch, images[run], bias, dram).dram_a), f"run {run}"


@pytest.mark.parametrize("fmt", ["s8.4", "s8.-3", "u8.7", "s16.20", "s24.0", "s2.64", "s12.-64"])
def test_float32_quantisation_equals_hwmodels_quantize(fmt) -> None:
    f = FixedPointFormat.parse(fmt)
    rng = np.random.default_rng(0)
    scale = f.scale
    x = np.concatenate([
        rng.uniform(f.qmin * scale * 1.5, f.qmax * scale * 1.5 + scale, 5000),
        (np.arange(-300, 300) + 0.5) * scale,  # exact ties: round half to even
        np.array([0.0, -0.0, 1e-45, -1e-45, 1e-38, 3.4e38, -3.4e38, np.finfo(np.float32).tiny]),
    ]).astype(np.float32)
    got = quantize_float32(x, f)
    assert got.dtype == np.float32
    assert np.array_equal(got.astype(np.int64), quantize(x, f))


@pytest.mark.parametrize("background", ["first sample's values", "zero", "zero and non-zero"])
def test_constant_activation_rows_leave_the_shared_gemm(bundle_factory, monkeypatch, background) -> None:
    """Inputs with features constant over the batch (non-zero, 0 like MNIST's background, or both):
    the shared GEMM splits them off (thresholds lowered so the small test network takes that path);
    same integers as the interpreter."""
    from axtrain.runtime import execute

    monkeypatch.setattr(execute, "CONSTANT_ROWS_MIN_K", 1)
    monkeypatch.setattr(execute, "CONSTANT_ROWS_MIN_MACS", 1)
    calls = []
    original = execute._gemm

    def spy(w, x, bound, shared, runs, threads=1, int8=None):
        if shared:
            calls.append(int((x.min(axis=1) == x.max(axis=1)).sum()))
        return original(w, x, bound, shared, runs, threads, int8)

    monkeypatch.setattr(execute, "_gemm", spy)
    bundle, _ = bundle_factory("mlp", "default")
    m = bundle.manifest
    x = random_inputs(bundle, 16, seed=8)
    x[:, ::2] = x[0, ::2]  # every other feature constant over the batch
    if background == "zero":
        x[:, ::2] = 0.0
    elif background == "zero and non-zero":
        x[:, ::4] = 0.0
    dram = place_inputs(x, m.input.format, m.input.dram, m.activation_words)
    images = _images(bundle, 3)
    executor = FastExecutor(bundle.program, bundle.arch)
    final, _ = executor.run_many(executor.prepare(images, bundle.bias), dram, chunk=16)
    assert calls and max(calls) * 8 >= 13  # the split path ran
    for run in range(3):
        assert np.array_equal(final[run], run_program(bundle.program, bundle.arch, images[run], bundle.bias, dram).dram_a)


def test_gemm_with_constant_rows_is_the_exact_product(monkeypatch) -> None:
    from axtrain.runtime import execute
    from axtrain.runtime.execute import _gemm

    monkeypatch.setattr(execute, "CONSTANT_ROWS_MIN_MACS", 1)
    rng = np.random.default_rng(3)
    runs, rows, k, cols = 3, 5, 96, 40
    w = rng.integers(-128, 128, size=(k, runs * rows))
    x = rng.integers(-50, 50, size=(k, cols))
    x[rng.random(k) < 0.5] = rng.integers(-50, 50, size=(1, 1))  # about half the rows constant
    bound = float(k * 128 * 50)
    got = _gemm(w.astype(np.float32), x.astype(np.float32), bound, True, runs)
    assert got.shape == (runs, rows, cols)
    assert np.array_equal(got.reshape(runs * rows, cols).astype(np.int64), w.T @ x)


@pytest.mark.parametrize("zero_share", [0.0, 0.5, 1.0])
def test_gemm_with_zero_and_non_zero_constant_rows_is_the_exact_product(monkeypatch, zero_share) -> None:
    """Constant rows that are 0 (MNIST's background) are skipped, the others still added: all-zero,
    mixed and all-non-zero constant rows give the int64 product."""
    from axtrain.runtime import execute
    from axtrain.runtime.execute import _gemm

    monkeypatch.setattr(execute, "CONSTANT_ROWS_MIN_MACS", 1)
    rng = np.random.default_rng(7)
    runs, rows, k, cols = 4, 6, 128, 33
    w = rng.integers(-128, 128, size=(k, runs * rows))
    x = rng.integers(0, 17, size=(k, cols))
    constant = np.flatnonzero(rng.random(k) < 0.6)
    values = rng.integers(1, 17, size=constant.size)
    values[rng.random(constant.size) < zero_share] = 0
    x[constant] = values[:, None]
    assert (constant.size * 8 >= k) and (zero_share < 1.0 or not values.any())
    got = _gemm(w.astype(np.float32), x.astype(np.float32), float(k * 128 * 16), True, runs)
    assert np.array_equal(got.reshape(runs * rows, cols).astype(np.int64), w.T @ x)
