"""Both executors implement one interface (runtime/executor.py) and agree through it.

The reference interpreter is the definition; the fast executor must give the same integers for the
same call, whatever the call: one weight image or a stack of them, the whole activation DRAM or a
region, with or without each layer's output.
"""

from __future__ import annotations

import numpy as np
import pytest

from axtrain.formats.arch import Architecture
from axtrain.formats.isa import parse_assembly
from axtrain.hwmodels.multipliers import parse_mode
from axtrain.runtime.execute import FastExecutor, place_inputs
from axtrain.runtime.executor import Executor
from axtrain.runtime.faults import fault_regions, run_image
from axtrain.runtime.interpreter import ReferenceExecutor

from .conftest import random_inputs

EXECUTORS = (ReferenceExecutor, FastExecutor)


def _setup(bundle, n=11, runs=3, seed=0):
    m = bundle.manifest
    dram = place_inputs(random_inputs(bundle, n, seed=seed), m.input.format, m.input.dram, m.activation_words)
    regions = fault_regions(bundle.layers, 0.5)
    images = np.stack([run_image(bundle.weights, regions, seed=seed, run=run) for run in range(runs)])
    return dram, images


def test_both_are_executors() -> None:
    for cls in EXECUTORS:
        assert issubclass(cls, Executor)
    with pytest.raises(TypeError):
        Executor()  # type: ignore[abstract]


@pytest.mark.parametrize("cls", EXECUTORS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("kind,arch_name", [("cnn", "tiny"), ("mixed", "default")])
def test_interface_contract(bundle_factory, cls, kind: str, arch_name: str) -> None:
    bundle, _ = bundle_factory(kind, arch_name)
    dram, images = _setup(bundle)
    before = dram.copy()
    executor: Executor = cls(bundle.program, bundle.arch)
    assert executor.program == tuple(bundle.program) and executor.arch == bundle.arch
    prepared = executor.prepare(images, bundle.bias)
    final, layers = executor.run_many(prepared, dram, collect=True, chunk=4)
    runs, n, words = images.shape[0], dram.shape[0], dram.shape[1]
    assert final.shape == (runs, n, words) and final.dtype == np.int64
    assert sorted(layers) == list(range(len(bundle.layers)))
    for record in bundle.layers:
        assert layers[record.index].shape == (runs, n, int(np.prod(record.output_shape)))
    assert np.array_equal(dram, before)  # the inputs are not modified
    out = bundle.manifest.output
    region = (out.dram, int(np.prod(out.shape)))
    part, none = executor.run_many(prepared, dram, region=region)
    assert none == {} and np.array_equal(part, final[:, :, region[0] : region[0] + region[1]])
    single, single_layers = executor.run(executor.prepare(images[1], bundle.bias), dram, collect=True)
    assert np.array_equal(single, final[1])
    assert all(np.array_equal(single_layers[key], layers[key][1]) for key in layers)


@pytest.mark.parametrize("kind,arch_name,mode", [("cnn", "tiny", None), ("mlp", "default", "K1"), ("mixed", "tiny", "drum:3")])
def test_fast_equals_reference_through_the_interface(bundle_factory, kind: str, arch_name: str, mode: str | None) -> None:
    bundle, _ = bundle_factory(kind, arch_name)
    dram, images = _setup(bundle, n=9, runs=2, seed=5)
    results = []
    for cls in EXECUTORS:
        executor: Executor = cls(bundle.program, bundle.arch, parse_mode(mode) if mode else None)
        results.append(executor.run_many(executor.prepare(images, bundle.bias), dram, collect=True, chunk=5))
    (final_ref, layers_ref), (final_fast, layers_fast) = results
    assert np.array_equal(final_ref, final_fast)
    assert layers_ref.keys() == layers_fast.keys()
    assert all(np.array_equal(layers_ref[key], layers_fast[key]) for key in layers_ref)


def test_fast_executor_falls_back_to_the_reference() -> None:
    """A REQ of one accumulator after a two-row MAC is outside the plan: the fast executor hands the
    whole program to its reference executor, through the same interface."""
    arch = Architecture(pe_rows=1, pe_cols=3)
    program = parse_assembly("""
        LDN nb=0 dram=0 count=3
        CONV c=3 h=1 w=1 kh=1 kw=1 sh=1 sw=1 pt=0 pl=0 pb=0 pr=0 padv=0 oh=1 ow=1
        LDB bb=0 dram=0 count=2
        LDW wb=0 dram=0 rows=2 cols=3 stride=3
        DISTW wb=0 stride=3 m=2 p=1 k=3
        DISTN nb=0 p0=0 m=2 p=1 k0=0 k=3
        MAC m=2 p=1 k=3 bb=0 mt=0 init=1
        REQ nb=5 ostride=1 m=1 p=1 shift=0 bits=16
        SYNC layer=0 nb=5 count=1 space=0
        STN dram=3 nb=5 count=1
        END
    """)
    rng = np.random.default_rng(3)
    images, bias = rng.integers(-50, 50, size=(2, 6)), rng.integers(-100, 100, size=2)
    dram = np.concatenate([rng.integers(-100, 100, size=(4, 3)), np.zeros((4, 1), dtype=np.int64)], axis=1)
    fast, reference = FastExecutor(program, arch), ReferenceExecutor(program, arch)
    assert not fast.plan.fast and "REQ on a tile" in fast.plan.reason and isinstance(fast.reference, ReferenceExecutor)
    a = fast.run_many(fast.prepare(images, bias), dram, collect=True)
    b = reference.run_many(reference.prepare(images, bias), dram, collect=True)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1][0], b[1][0])
    # By hand: the output is row 0's dot product plus its bias (shift 0; |value| <= 15100 fits 16 bits).
    expected = dram[:, :3] @ images[:, :3].T + bias[0]
    assert np.array_equal(a[0][:, :, 3], expected.T)


def test_both_agree_on_the_graph_instructions_and_a_spill() -> None:
    """ISA 2's graph instructions (asymmetric pads, padded pools, AVGPOOL, ADD in place and apart)
    and a spilled map (STN, LDN back, SYNC from activation DRAM): same DRAM and layer outputs,
    over several weight images (runs)."""
    from .test_cycles import HAND_PROGRAMS, ODD_ARCH

    program = parse_assembly(HAND_PROGRAMS["graphs"])
    rng = np.random.default_rng(5)
    weights = rng.integers(-20, 20, size=(3, 36))
    bias = rng.integers(-500, 500, size=3)
    dram = np.zeros((9, 140), dtype=np.int64)
    dram[:, :60] = rng.integers(-128, 128, size=(9, 60))
    fast = FastExecutor(program, ODD_ARCH)
    assert fast.plan.fast, fast.plan.reason
    results = []
    for executor in (ReferenceExecutor(program, ODD_ARCH), fast):
        results.append(executor.run_many(executor.prepare(weights, bias), dram, collect=True))
    (ref_dram, ref_layers), (fast_dram, fast_layers) = results
    assert np.array_equal(ref_dram, fast_dram)
    assert ref_layers.keys() == fast_layers.keys() == {0, 1, 2}
    for key in ref_layers:
        assert np.array_equal(ref_layers[key], fast_layers[key])
    assert np.unique(ref_layers[2]).size > 5  # the sums are not a constant


@pytest.mark.parametrize("mode", [None, "drum:2"])
def test_both_agree_on_padv_cip_and_ceil_padding(mode: str | None) -> None:
    """Decisions 185-187 (tests/runtime/test_cycles.py's "geometry" program): a CONV whose padding
    reads padv = -5 (transformed under DRUM), an AVGPOOL dividing by the whole window, a POOL over
    extra right padding: the fast plan (not the fallback) and the interpreter give the same words."""
    from axtrain.hwmodels.multipliers import parse_mode
    from axtrain.runtime.overrides import override_program

    from .test_cycles import HAND_PROGRAMS, ODD_ARCH

    program = parse_assembly(HAND_PROGRAMS["geometry"])
    if mode is not None:
        program = override_program(program, parse_mode(mode))
    rng = np.random.default_rng(6)
    weights = rng.integers(-90, 90, size=(2, 36))
    bias = rng.integers(-500, 500, size=2)
    dram = np.zeros((7, 130), dtype=np.int64)
    dram[:, :98] = rng.integers(-128, 128, size=(7, 98))
    fast = FastExecutor(program, ODD_ARCH)
    assert fast.plan.fast, fast.plan.reason
    assert [step.padv for step in fast.plan.steps if step.op == "DISTN"] == [-5, -5]
    results = [executor.run_many(executor.prepare(weights, bias), dram, collect=True) for executor in (ReferenceExecutor(program, ODD_ARCH), fast)]
    (ref_dram, ref_layers), (fast_dram, fast_layers) = results
    assert np.array_equal(ref_dram, fast_dram) and np.array_equal(ref_layers[0], fast_layers[0]) and np.array_equal(ref_layers[1], fast_layers[1])
    # By hand, output (0, 0) of channel 0: the window rows -1..1, columns -2..0 read padv = -5 at 7
    # of its 9 taps per channel, and map words (0, 0) and (1, 0) at taps (1, 2) and (2, 2).
    if mode is None:
        images = dram[:, :98].reshape(7, 2, 7, 7)
        taps = np.full((7, 2, 3, 3), -5, dtype=np.int64)
        taps[:, :, 1, 2], taps[:, :, 2, 2] = images[:, :, 0, 0], images[:, :, 1, 0]
        acc = (taps.reshape(7, 18) * weights[0, :18]).sum(axis=1) + bias[0]  # weight image of run 0, row 0
        assert np.array_equal(ref_layers[0][0, :, 0], np.clip(np.rint(acc / 8), -128, 127))
