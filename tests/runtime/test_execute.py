"""Numerics: the fast executor is bit-identical to the ISA interpreter and to hwmodels.forward.

Exact mode, DRUM 1..4 (per layer, per neuron, and by override) and NTV-faulted weight images, on
compiled small networks for the default and a tiny PE array; every layer's output is compared, not
only the last.
"""

from __future__ import annotations

import numpy as np
import pytest

from axtrain.formats.isa import parse_assembly
from axtrain.hwmodels.fixedpoint import FixedPointFormat, dequantize, quantize
from axtrain.hwmodels.layers import forward
from axtrain.hwmodels.multipliers import parse_mode
from axtrain.hwmodels.pooling import residual_add
from axtrain.runtime import execute
from axtrain.runtime.execute import FastExecutor, balanced_chunk, output_integers, place_inputs, residual_sum
from axtrain.runtime.faults import fault_regions, run_image
from axtrain.runtime.interpreter import run_program
from axtrain.runtime.plan import Add, Copy, Requantize
from axtrain.runtime.simulation import simulate


def _inputs(bundle, n=23, seed=1):
    fmt = FixedPointFormat.parse(bundle.manifest.input.format)
    rng = np.random.default_rng(seed)
    return rng.uniform(fmt.qmin * fmt.scale * 1.2, fmt.qmax * fmt.scale * 1.2, size=(n, *bundle.manifest.input.shape)).astype(np.float32)


def _run_all(bundle, x, image=None, mode=None, chunk=7):
    image = bundle.weights if image is None else image
    m = bundle.manifest
    dram = place_inputs(x, m.input.format, m.input.dram, m.activation_words)
    executor = FastExecutor(bundle.program, bundle.arch, mode)
    final, layers = executor.run(executor.prepare(image, bundle.bias), dram, collect=True, chunk=chunk)
    reference = run_program(bundle.program, bundle.arch, image, bundle.bias, dram, mode)
    return executor, final, layers, reference


def _layer_weights(layers, image, bundle):
    """Per-layer weight arrays cut out of a (faulted) weight image, shaped like each layer's own."""
    out = []
    for layer, record in zip(layers, bundle.layers):
        if record.weights is None:
            out.append(None)
        else:
            words = image[record.weights.dram : record.weights.dram + record.weights.count]
            out.append(words.reshape(layer.weight.shape))
    return out


@pytest.mark.parametrize("kind", ["mlp", "cnn", "mixed"])
@pytest.mark.parametrize("arch_name", ["default", "tiny"])
def test_exact_mode_matches_interpreter_and_forward(bundle_factory, kind, arch_name) -> None:
    bundle, layers = bundle_factory(kind, arch_name)
    x = _inputs(bundle)
    executor, final, outputs, reference = _run_all(bundle, x)
    assert executor.plan.fast, executor.plan.reason
    assert np.array_equal(final, reference.dram_a)
    expected = forward(layers, quantize(x, layers[0].input_format))
    for index, want in enumerate(expected):
        assert np.array_equal(outputs[index], want.reshape(len(x), -1)), f"layer {index}"
        assert np.array_equal(reference.layer_outputs[index], want.reshape(len(x), -1))


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_drum_modes_match_forward(bundle_factory, k) -> None:
    """Bundles annotated with drum:k (two networks) and the override on an exact bundle."""
    for kind in ("mlp", "cnn"):
        bundle, layers = bundle_factory(kind, "tiny", modes=(f"drum:{k}",))
        x = _inputs(bundle, seed=k)
        _, final, outputs, reference = _run_all(bundle, x)
        expected = forward(layers, quantize(x, layers[0].input_format))
        assert np.array_equal(final, reference.dram_a)
        for index, want in enumerate(expected):
            assert np.array_equal(outputs[index], want.reshape(len(x), -1)), f"{kind} layer {index}"
    exact_bundle, exact_layers = bundle_factory("cnn", "default")
    mode = parse_mode(f"drum:{k}")
    x = _inputs(exact_bundle, seed=10 + k)
    _, final, outputs, reference = _run_all(exact_bundle, x, mode=mode)
    overridden = [layer.with_changes(multipliers=(mode,)) if layer.has_weights else layer for layer in exact_layers]
    expected = forward(overridden, quantize(x, exact_layers[0].input_format))
    assert np.array_equal(final, reference.dram_a)
    assert np.array_equal(outputs[len(expected) - 1], expected[-1].reshape(len(x), -1))


@pytest.mark.parametrize("kind,arch_name", [("cnn", "tiny"), ("mixed", "default"), ("mlp", "default")])
def test_ntv_faulted_images_match_forward(bundle_factory, kind, arch_name) -> None:
    bundle, layers = bundle_factory(kind, arch_name)
    regions = fault_regions(bundle.layers, 0.4)  # p = 10 %: many flips, sign bits included
    x = _inputs(bundle, seed=3)
    for run in range(2):
        image = run_image(bundle.weights, regions, seed=5, run=run)
        assert not np.array_equal(image, bundle.weights)
        _, final, outputs, reference = _run_all(bundle, x, image=image)
        expected = forward(layers, quantize(x, layers[0].input_format), _layer_weights(layers, image, bundle))
        assert np.array_equal(final, reference.dram_a)
        for index, want in enumerate(expected):
            assert np.array_equal(outputs[index], want.reshape(len(x), -1)), f"run {run} layer {index}"


def test_unusual_program_falls_back_to_the_interpreter() -> None:
    """A MAC whose tile shape differs from its DISTN's is outside the fast plan: same integers anyway."""
    from axtrain.formats.arch import Architecture

    arch = Architecture(pe_rows=2, pe_cols=2)
    program = parse_assembly("""
        LDN nb=0 dram=0 count=4
        CONV c=4 h=1 w=1 kh=1 kw=1 sh=1 sw=1 pt=0 pl=0 pb=0 pr=0 padv=0 oh=1 ow=1
        LDB bb=0 dram=0 count=2
        LDW wb=0 dram=0 rows=2 cols=4 stride=4
        DISTW wb=0 stride=4 m=2 p=1 k=4
        DISTN nb=0 p0=0 m=4 p=1 k0=0 k=4
        MAC m=2 p=1 k=4 bb=0 mt=0 init=1
        MAC m=1 p=2 k=2 bb=0 mt=0 init=0
        REQ nb=8 ostride=2 m=1 p=2 shift=1 bits=8
        STN dram=4 nb=8 count=2
        END
    """)
    rng = np.random.default_rng(0)
    weights, bias = rng.integers(-50, 50, size=8), rng.integers(-100, 100, size=2)
    dram = np.zeros((5, 6), dtype=np.int64)
    dram[:, :4] = rng.integers(-100, 100, size=(5, 4))
    executor = FastExecutor(program, arch)
    assert not executor.plan.fast and "MAC" in executor.plan.reason
    final, _ = executor.run(executor.prepare(weights, bias), dram)
    assert np.array_equal(final, run_program(program, arch, weights, bias, dram).dram_a)


def test_simulate_outputs_are_the_dequantised_forward(bundle_factory) -> None:
    bundle, layers = bundle_factory("cnn", "default")
    x = _inputs(bundle, n=11)
    result = simulate(bundle, x)
    q = forward(layers, quantize(x, layers[0].input_format))[-1]
    assert result.outputs.dtype == np.float32
    assert np.array_equal(result.outputs, dequantize(q, layers[-1].output_format))
    golden = simulate(bundle, bundle.golden_inputs())
    assert np.array_equal(golden.outputs, bundle.golden_outputs())


def test_output_integers_read_the_output_placement(bundle_factory) -> None:
    bundle, layers = bundle_factory("mlp", "default")
    x = _inputs(bundle, n=4)
    executor, final, outputs, _ = _run_all(bundle, x)
    assert np.array_equal(output_integers(bundle, final), outputs[len(layers) - 1])


REQUANT_PROGRAM = """
    LDN nb=0 dram=0 count=18
    LDQ qa=2 dram=1 count=4
    CONV c=2 h=3 w=3 kh=2 kw=2 sh=1 sw=1 pt=0 pl=0 pb=0 pr=0 padv=0 oh=2 ow=2
    LDB bb=0 dram=0 count=4
    LDW wb=0 dram=0 rows=4 cols=8 stride=8
    DISTW wb=0 stride=8 m=2 p=4 k=8
    DISTN nb=0 p0=0 m=2 p=4 k0=0 k=8
    MAC m=2 p=4 k=8 bb=0 mt=0 init=1
    RELU m=2 p=4
    REQ nb=40 ostride=4 m=2 p=4 shift=0 bits=8 uns=1 rq=1 qa=2
    DISTW wb=16 stride=8 m=2 p=4 k=8
    DISTN nb=0 p0=0 m=2 p=4 k0=0 k=8
    MAC m=2 p=4 k=8 bb=2 mt=0 init=1
    REQ nb=48 ostride=4 m=2 p=4 shift=0 bits=5 rq=1 qa=4
    SYNC layer=0 nb=40 count=16 space=0
    STN dram=20 nb=40 count=16
    END
"""


def test_table_scaled_req_fast_and_interpreter_equal_the_exact_definition() -> None:
    """ISA 2 REQ with rq=1: both executors give clip(z + round_half_even(acc * M / 2**n)), computed
    here independently in rationals from the accumulators (uint8 after RELU, then a signed 5-bit tile)."""
    from fractions import Fraction

    from axtrain.formats.arch import Architecture
    from axtrain.formats.isa import check_program

    arch = Architecture(pe_rows=2, pe_cols=4)
    program = parse_assembly(REQUANT_PROGRAM)
    rng = np.random.default_rng(5)
    weights, bias = rng.integers(-120, 120, size=32), rng.integers(-3000, 3000, size=4)
    # DRAM.Q: entry 0 unused; entries 1..4 -> table 2..5 (non-power-of-two multipliers, zero points).
    requant = np.array([[0, 0, 0], [1518500250, 40, 128], [1073741824, 35, 3], [2045222520, 44, -2], [1234567890, 38, 0]], dtype=np.int64)
    check_program(program, arch, weights.size, bias.size, 40, requant.shape[0])
    dram = np.zeros((9, 40), dtype=np.int64)
    dram[:, :18] = rng.integers(-128, 128, size=(9, 18))
    fast = FastExecutor(program, arch)
    assert fast.plan.fast
    got, _ = fast.run(fast.prepare(weights, bias, requant), dram)
    slow = run_program(program, arch, weights, bias, dram, requant_image=requant)
    assert np.array_equal(got, slow.dram_a)

    def half_even(v: Fraction) -> int:
        f = v.numerator // v.denominator
        r = v - f
        return f + (1 if r > Fraction(1, 2) or (r == Fraction(1, 2) and f % 2) else 0)

    x = dram[:, :18].reshape(9, 2, 3, 3)
    w = weights.reshape(4, 2, 2, 2)
    expected = np.zeros((9, 16), dtype=np.int64)
    for img in range(9):
        for o in range(4):
            m, n, z = requant[1 + o]
            lo, hi = (0, 255) if o < 2 else (-16, 15)
            for pos in range(4):
                oy, ox = divmod(pos, 2)
                acc = int(bias[o]) + int(np.sum(x[img, :, oy : oy + 2, ox : ox + 2] * w[o]))
                if o < 2:
                    acc = max(acc, 0)
                expected[img, o * 4 + pos] = min(max(int(z) + half_even(Fraction(acc * int(m), 1 << int(n))), lo), hi)
    assert np.array_equal(got[:, 20:36], expected)
    assert len(np.unique(expected[:, :8])) > 4 and expected[:, 8:].min() < 0  # not all saturated or zero


def test_sta_stores_saturated_accumulators_fast_and_interpreter_agree() -> None:
    """ISA 2 STA: a conv tile's accumulators, saturated to 32 bits, land in DRAM.A rows ``ostride``
    apart; the accumulator SYNC reports them. Both executors agree with the plain integer sum."""
    from axtrain.formats.arch import Architecture
    from axtrain.formats.isa import check_program

    arch = Architecture(pe_rows=3, pe_cols=4, accumulator_bits=48)
    program = parse_assembly("""
        LDN nb=0 dram=0 count=18
        LDB bb=0 dram=0 count=3
        LDW wb=0 dram=0 rows=3 cols=8 stride=8
        CONV c=2 h=3 w=3 kh=2 kw=2 sh=1 sw=1 pt=0 pl=0 pb=0 pr=0 padv=0 oh=2 ow=2
        DISTW wb=0 stride=8 m=3 p=4 k=8
        DISTN nb=0 p0=0 m=3 p=4 k0=0 k=8
        MAC m=3 p=4 k=8 bb=0 mt=0 init=1
        STA dram=20 ostride=5 m=3 p=4
        SYNC layer=0 nb=20 count=4 space=1
        END
    """)
    rng = np.random.default_rng(3)
    weights = rng.integers(-30000, 30000, size=24)
    bias = np.array([5, -(1 << 31), (1 << 31) - 1])  # saturation on both sides reachable
    dram = np.zeros((6, 40), dtype=np.int64)
    dram[:, :18] = rng.integers(-30000, 30000, size=(6, 18))
    check_program(program, arch, 24, 3, 40)
    fast = FastExecutor(program, arch)
    assert fast.plan.fast
    got, layers = fast.run(fast.prepare(weights, bias), dram, collect=True)
    slow = run_program(program, arch, weights, bias, dram)
    assert np.array_equal(got, slow.dram_a) and np.array_equal(layers[0], slow.layer_outputs[0])
    x, w = dram[:, :18].reshape(6, 2, 3, 3), weights.reshape(3, 2, 2, 2)
    for o in range(3):
        for pos in range(4):
            oy, ox = divmod(pos, 2)
            acc = bias[o] + np.einsum("ncij,cij->n", x[:, :, oy : oy + 2, ox : ox + 2], w[o])
            assert np.array_equal(got[:, 20 + 5 * o + pos], np.clip(acc, -(1 << 31), (1 << 31) - 1))
    assert np.array_equal(got[:, 24], np.zeros(6))  # the gap between rows is not written
    assert (got[:, 25:29] == -(1 << 31)).any() and (got[:, 30:34] == (1 << 31) - 1).any()  # saturated both ways


@pytest.mark.parametrize("kind", ["mlp", "mixed"])
@pytest.mark.parametrize("runs", [1, 3])
def test_prepared_tiles_and_bounds_are_the_plain_gathers(bundle_factory, kind, runs) -> None:
    # prepare_weights gathers each tile straight into its GEMM layout (issue 15); the definition is
    # one plain gather per MAC from the (transformed) image, and the chain bound sum(k * max|w|).
    from axtrain.hwmodels.multipliers import drum_transform
    from axtrain.runtime.execute import prepare_weights
    from axtrain.runtime.plan import Mac

    bundle, _ = bundle_factory(kind, "tiny")
    executor = FastExecutor(bundle.program, bundle.arch, parse_mode("drum:3") if kind == "mixed" else None)
    plan = executor.plan
    images = np.stack([bundle.weights] + [run_image(bundle.weights, fault_regions(bundle.layers, 0.6), 7, r) for r in range(runs - 1)])
    prepared = prepare_weights(plan, images, bundle.bias)
    padded = np.concatenate([images, np.zeros((runs, 1), dtype=np.int64)], axis=1)
    bound: dict[int, float] = {}
    checked = 0
    for number, mac in enumerate(plan.steps):
        if not isinstance(mac, Mac):
            continue
        per_mac = 0.0
        for code, rows in mac.groups:
            w = (padded if code == 0 else drum_transform(padded, code))[:, mac.sources()[rows]]  # [runs, rows, k]
            w[:, mac.sources()[rows] < 0] = 0  # a word no LDW wrote reads 0
            per_mac = max(per_mac, float(np.abs(w).max(initial=0)))
            if mac.fused_into is not None:
                continue
            tile = next(t for t in prepared.tiles[number] if t.code == code)
            k_all = mac.k if mac.fused is None else mac.fused.k  # a fused chain's head holds the whole chain
            got = tile.w.reshape(k_all, runs, rows.size).transpose(1, 2, 0) if mac.shared_input else tile.w
            assert got.shape == (runs, rows.size, k_all)
            assert np.array_equal(got[:, :, : mac.k], w)  # the head's own k-range first
            checked += 1
        bound[mac.chain] = bound.get(mac.chain, 0.0) + mac.k * per_mac
    assert checked and bound == prepared.chain_weight_bound


@pytest.mark.parametrize(("sa", "sb", "shift", "relu", "bound"), [(0, 2, 3, True, 128.0), (0, 3, 4, False, 128.0), (1, 0, 0, True, 128.0), (0, 0, -2, False, 128.0), (0, 0, 0, True, 128.0), (2, 2, 2, False, 128.0), (3, 0, 3, True, 128.0), (4, 7, 9, False, 32768.0), (0, 9, 5, True, 32768.0)])
def test_residual_sum_equals_residual_add(sa: int, sb: int, shift: int, relu: bool, bound: float) -> None:
    """The executor's ADD (float32 where provably exact, float64 otherwise: the last two cases)
    gives hwmodels.pooling.residual_add's integers, ties and saturation included."""
    rng = np.random.default_rng([sa, sb, shift + 10])
    top = int(bound)
    a = rng.integers(-top, top + 1, (64, 50))
    b = rng.integers(-top, top + 1, (64, 50))
    a[0, :4], b[0, :4] = [-top, top, 0, 1], [-top, top, 1, 0]
    step = Add(index=0, a=np.zeros(0, np.int64), b=np.zeros(0, np.int64), dst=np.zeros(0, np.int64), sa=sa, sb=sb, shift=shift, qmin=-128, qmax=127, relu=relu)
    got = residual_sum(a.astype(np.float32), b.astype(np.float32)[:, ::1], step, bound)
    assert got.dtype == (np.float32 if bound * (2**sa + 2**sb) < 2**24 else np.float64)
    np.testing.assert_array_equal(got.astype(np.int64), residual_add(a, b, sa, sb, shift, FixedPointFormat(8, 0), relu))


@pytest.mark.parametrize("n,cap,workers,expected", [(1000, 146, 2, 125), (100, 146, 2, 146), (1000, 146, 1, 146), (10000, 146, 2, 143), (9, 2, 2, 2)])
def test_balanced_chunks_keep_the_cap_and_even_out_the_threads(n: int, cap: int, workers: int, expected: int) -> None:
    chunk = balanced_chunk(n, cap, workers)
    assert chunk == expected  # by hand: ceil(n / (ceil(ceil(n / cap) / workers) * workers)), or cap for one chunk
    sizes = [min(chunk, n - start) for start in range(0, n, chunk)]
    capped = [min(cap, n - start) for start in range(0, n, cap)]
    busiest = sum(sorted(sizes, reverse=True)[: -(-len(sizes) // workers)])  # images the busiest thread runs
    assert chunk <= cap and busiest <= sum(sorted(capped, reverse=True)[: -(-len(capped) // workers)])


def test_default_chunks_give_the_same_integers_as_one_chunk(bundle_factory, monkeypatch) -> None:
    bundle, _ = bundle_factory("cnn", "tiny", modes=("drum:2",))
    x = _inputs(bundle, n=150)
    m = bundle.manifest
    dram = place_inputs(x, m.input.format, m.input.dram, m.activation_words)
    executor = FastExecutor(bundle.program, bundle.arch)
    prepared = executor.prepare(bundle.weights, bundle.bias)
    whole, _ = executor.run(prepared, dram, chunk=len(x))
    sizes: list[int] = []
    real = execute.run_plan

    def counted(plan, weights, batch, *args, **kwargs):
        sizes.append(batch.shape[0])
        return real(plan, weights, batch, *args, **kwargs)

    monkeypatch.setattr(execute, "CHUNK_WORDS", 1)  # the smallest default chunk: 64 images, 3 chunks
    monkeypatch.setattr(execute, "WORKERS", 2)
    monkeypatch.setattr(execute, "run_plan", counted)
    default, _ = executor.run(prepared, dram)
    assert sorted(sizes) == [36, 38, 38, 38]  # 3 chunks of at most 64 become 4 of at most 38
    assert default.dtype == whole.dtype == np.int64 and np.array_equal(default, whole)


def test_stores_outside_the_region_are_not_read_out(bundle_factory) -> None:
    bundle, _ = bundle_factory("cnn", "tiny")
    m = bundle.manifest
    dram = place_inputs(_inputs(bundle, n=5), m.input.format, m.input.dram, m.activation_words)
    executor = FastExecutor(bundle.program, bundle.arch)
    prepared = executor.prepare(bundle.weights, bundle.bias)
    every, _ = execute.run_plan(executor.plan, prepared, dram, bundle.arch)
    assert every  # the output's STN
    for lo, hi in ((m.output.dram, m.output.dram + int(np.prod(m.output.shape))), (0, 1), (m.activation_words, m.activation_words + 1)):
        kept, _ = execute.run_plan(executor.plan, prepared, dram, bundle.arch, region=(lo, hi))
        touching = [(address, values) for address, values in every if address < hi and address + values.shape[2] > lo]
        assert [a for a, _ in kept] == [a for a, _ in touching]
        assert all(np.array_equal(v0, v1) for (_, v0), (_, v1) in zip(kept, touching, strict=True))
        collected, _ = execute.run_plan(executor.plan, prepared, dram, bundle.arch, collect=True, region=(lo, hi))
        assert len(collected) == len(every)  # collecting SYNCs may read any store: all kept
    nothing, _ = execute.run_plan(executor.plan, prepared, dram, bundle.arch, region=(m.activation_words, m.activation_words + 1))
    assert nothing == []  # past every activation word: no store is read out


SPILL_PROGRAM = """
    LDN nb=0 dram=0 count=4
    CONV c=4 h=1 w=1 kh=1 kw=1 sh=1 sw=1 pt=0 pl=0 pb=0 pr=0 padv=0 oh=1 ow=1
    LDB bb=0 dram=0 count=2
    MODE mt=0 count=2 code=2
    LDW wb=0 dram=0 rows=2 cols=4 stride=4
    DISTW wb=0 stride=4 m=2 p=1 k=4
    DISTN nb=0 p0=0 m=2 p=1 k0=0 k=4
    MAC m=2 p=1 k=4 bb=0 mt=0 init=1
    REQ nb=8 ostride=1 m=2 p=1 shift=2 bits=8
    STN dram=20 nb=8 count=2
    LDN nb=12 dram=20 count=2
    CONV c=2 h=1 w=1 kh=1 kw=1 sh=1 sw=1 pt=0 pl=0 pb=0 pr=0 padv=0 oh=1 ow=1
    LDW wb=8 dram=8 rows=2 cols=2 stride=2
    DISTW wb=8 stride=2 m=2 p=1 k=2
    DISTN nb=12 p0=0 m=2 p=1 k0=0 k=2
    MAC m=2 p=1 k=2 bb=0 mt=0 init=1
    REQ nb=16 ostride=1 m=2 p=1 shift=1 bits=8
    STN dram=24 nb=16 count=2
    END
"""


def test_spill_copies_carry_the_drum_transforms_instead_of_recomputing_them(monkeypatch) -> None:
    """A REQ's words spilled (STN) and read back (LDN) into words a DRUM DISTN reads: the transforms
    are computed once, at the REQ, and copied twice (plan.transform_targets); same integers as the
    interpreter."""
    from axtrain.formats.arch import Architecture

    arch = Architecture(pe_rows=2, pe_cols=2)
    program = parse_assembly(SPILL_PROGRAM)
    executor = FastExecutor(program, arch)
    copies = [step for step in executor.plan.steps if isinstance(step, Copy)]
    assert executor.plan.fast and len(copies) == 2 and all(step.transforms_copied and step.transform_any for step in copies)
    first_req = next(step for step in executor.plan.steps if isinstance(step, Requantize))
    assert first_req.transform_any  # read by no DISTN itself: its transforms are for the copies
    calls: list[int] = []
    real = execute._transform_values
    monkeypatch.setattr(execute, "_transform_values", lambda values, code, bound: calls.append(values.shape[-2]) or real(values, code, bound))
    rng = np.random.default_rng(3)
    weights, bias = rng.integers(-90, 90, size=12), rng.integers(-300, 300, size=2)
    dram = np.zeros((7, 26), dtype=np.int64)
    dram[:, :4] = rng.integers(-128, 128, size=(7, 4))
    got, _ = executor.run(executor.prepare(weights, bias), dram)
    assert calls == [4, 2]  # the inputs (LDN) and the first REQ; neither copy transforms again
    assert np.array_equal(got, run_program(program, arch, weights, bias, dram).dram_a)
    assert len(np.unique(got[:, 24:26])) > 2  # not all saturated or zero


@pytest.mark.skipif(not execute.FORK_AVAILABLE, reason="needs os.fork and a second usable CPU")
def test_chunks_in_forked_children_give_the_threads_integers(bundle_factory, monkeypatch) -> None:
    """run_many's forked path (a long plan on two workers: the first chunks in a child process)
    returns the same integers as the threads and as one chunk, for several NTV runs."""
    bundle, _ = bundle_factory("cnn", "tiny", modes=("drum:2",), v=0.7)
    m = bundle.manifest
    dram = place_inputs(_inputs(bundle, n=40), m.input.format, m.input.dram, m.activation_words)
    images = np.stack([run_image(bundle.weights, fault_regions(bundle.layers), 3, run) for run in range(2)])
    executor = FastExecutor(bundle.program, bundle.arch)
    prepared = executor.prepare(images, bundle.bias)
    region = (m.output.dram, int(np.prod(m.output.shape)))
    whole, _ = executor.run_many(prepared, dram, chunk=len(dram), region=region)
    monkeypatch.setattr(execute, "WORKERS", 2)
    monkeypatch.setattr(execute, "FORKS", False)
    threads, _ = executor.run_many(prepared, dram, chunk=9, region=region)
    monkeypatch.setattr(execute, "FORKS", True)
    monkeypatch.setattr(execute, "FORK_MIN_STEPS", 0)
    assert executor._forks(False, whole.size, 5) and not executor._forks(True, whole.size, 5)
    forked, layers = executor.run_many(prepared, dram, chunk=9, region=region)
    assert layers == {} and forked.dtype == np.int64
    assert np.array_equal(forked, whole) and np.array_equal(threads, whole)


@pytest.mark.skipif(not execute.FORK_AVAILABLE, reason="needs os.fork and a second usable CPU")
def test_a_forked_chunks_error_is_raised_here_in_chunk_order(bundle_factory, monkeypatch) -> None:
    """The first chunks run in the child: when both processes fail, the child's (earlier) error is
    the one raised, as the chunks in sequence would; a parent-only error still comes through."""
    bundle, _ = bundle_factory("cnn", "tiny", modes=("drum:2",))
    m = bundle.manifest
    dram = place_inputs(_inputs(bundle, n=20), m.input.format, m.input.dram, m.activation_words)
    executor = FastExecutor(bundle.program, bundle.arch)
    prepared = executor.prepare(bundle.weights, bundle.bias)
    real = execute.run_plan
    failing: set[int] = set()

    def run_plan(plan, weights, batch, *args, **kwargs):
        first = int(np.flatnonzero((dram == batch[0]).all(axis=1))[0])
        if first in failing:
            raise ValueError(f"chunk at image {first}")
        return real(plan, weights, batch, *args, **kwargs)

    monkeypatch.setattr(execute, "run_plan", run_plan)
    monkeypatch.setattr(execute, "WORKERS", 2)
    monkeypatch.setattr(execute, "FORK_MIN_STEPS", 0)
    region = (m.output.dram, int(np.prod(m.output.shape)))
    failing.update({0, 15})  # chunks of 5: 0 and 5 in the child, 10 and 15 here
    with pytest.raises(ValueError, match="chunk at image 0$"):
        executor.run_many(prepared, dram, chunk=5, region=region)
    failing.clear()
    failing.add(15)
    with pytest.raises(ValueError, match="chunk at image 15$"):
        executor.run_many(prepared, dram, chunk=5, region=region)


def test_a_dense_layer_s_tiles_are_read_in_place_from_their_patterns(bundle_factory) -> None:
    """A dense layer's MACs carry their weight sources as affine patterns (the plan's ``w_view``),
    and one run's tiles are views of the image built from them, word for word the plain gather."""
    from axtrain.runtime.execute import prepare_weights
    from axtrain.runtime.plan import Mac

    bundle, _ = bundle_factory("mlp", "tiny")
    plan = FastExecutor(bundle.program, bundle.arch).plan
    macs = {number: step for number, step in enumerate(plan.steps) if isinstance(step, Mac)}
    assert macs and all(mac.w_src is None and mac.w_view is not None for mac in macs.values())
    prepared = prepare_weights(plan, bundle.weights, bundle.bias)
    heads = [number for number, mac in macs.items() if mac.fused_into is None]
    for number in heads:
        mac = macs[number]
        parts = [macs[n] for n in mac.fused.macs] if mac.fused is not None else [mac]
        want = np.concatenate([bundle.weights[part.sources()] for part in parts], axis=1)  # [m, K]
        (tile,) = prepared.tiles[number]
        got = tile.w.T if mac.shared_input else tile.w[0]
        assert tile.w.base is not None and np.array_equal(got, want)


def test_prepared_weights_past_float32_s_integers_are_float64(bundle_factory) -> None:
    """A weight image with a word of 2**24 + 1 (not a float32) is prepared in float64, exactly;
    one whose words stay below 2**24 in float32."""
    from axtrain.runtime.execute import prepare_weights
    from axtrain.runtime.plan import Mac

    bundle, _ = bundle_factory("mlp", "tiny")
    plan = FastExecutor(bundle.program, bundle.arch).plan
    number, mac = next((n, s) for n, s in enumerate(plan.steps) if isinstance(s, Mac) and s.fused_into is None)
    for top, dtype in (((1 << 24) - 1, np.float32), ((1 << 24) + 1, np.float64)):
        image = bundle.weights.copy()
        image[mac.sources()[0, 0]] = -top
        (tile,) = prepare_weights(plan, image, bundle.bias).tiles[number]
        assert tile.w.dtype == dtype and tile.wmax == top
        got = tile.w.T if mac.shared_input else tile.w[0]
        assert got[0, 0] == -top


def test_a_req_rounds_into_its_view_only_when_it_names_each_word_once() -> None:
    """The REQ fast path writes through a strided view; a pattern that names one word twice (a
    malformed program's tile) keeps write()'s assignment instead."""
    from axtrain.runtime.execute import _distinct_words

    assert _distinct_words((3, (4,), (1,)))
    assert _distinct_words((0, (2, 3), (3, 1)))  # a row-major tile
    assert _distinct_words((0, (2, 3), (10, 2)))  # strided rows and columns
    assert not _distinct_words((0, (3,), (0,)))  # one word three times
    assert not _distinct_words((0, (2, 2), (1, 1)))  # words 0, 1, 1, 2
