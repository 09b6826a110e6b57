"""Fast paths of the torch emulation against their definitions, bit for bit (issue 15): the
integer-only DRUM transform, the float-only straight-through mask, and the fused training-mode
dense layer (forward values and every gradient, with and without NTV fault maps)."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import axtrain.trainer.emulation as emulation
from axtrain.trainer.emulation import (
    FaultSource,
    draw_fault_masks,
    draw_fault_masks_reference,
    drum_transform,
    drum_transform_reference,
    emulate,
    ste_mask,
    ste_mask_reference,
)
from axtrain.trainer.hardware import calibrate

INT_VIEW = {torch.float32: torch.int32, torch.float64: torch.int64}


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a.contiguous().view(INT_VIEW[a.dtype]), b.contiguous().view(INT_VIEW[b.dtype]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("frac", [-5, 0, 3, 9, 111])
def test_fast_drum_equals_the_reference_on_every_16bit_value(dtype: torch.dtype, frac: int) -> None:
    """At 111 the smallest nonzero value, 2**-111, and the binade below every threshold are near
    the bottom of float32's normal range (2**-126), where the fast test's binade argument must hold."""
    values = torch.arange(-(2**15), 2**15, dtype=dtype) * 2.0**-frac
    for k in range(1, 18):
        assert _same_bits(drum_transform(values, k, frac), drum_transform_reference(values, k, frac)), k


@pytest.mark.parametrize("k", [1, 2, 4])
def test_fast_drum_blocked_path_equals_the_reference(k: int) -> None:
    """Above emulation._WHOLE elements the transform runs block by block (an odd tail included),
    below it in one piece; both equal the definition bit for bit, and an empty tensor stays empty."""
    values = torch.arange(-(2**15), 2**15, dtype=torch.float32).repeat(7)[: 3 * emulation._WHOLE + 6] * 2.0**-3
    assert values.numel() > emulation._WHOLE and values.numel() % emulation._BLOCK != 0
    grid = values.reshape(-1, 6)
    assert _same_bits(drum_transform(grid, k, 3), drum_transform_reference(grid, k, 3))
    assert _same_bits(drum_transform(grid[:100], k, 3), drum_transform_reference(grid[:100], k, 3))
    empty = torch.zeros(0, 4)
    assert drum_transform(empty, k, 3).shape == (0, 4)


def test_fast_drum_passes_everything_when_the_threshold_overflows() -> None:
    values = torch.tensor([0.0, -0.0, 3.0, -5.0, 1e30], dtype=torch.float32)
    assert _same_bits(drum_transform(values, 4, -126), drum_transform_reference(values, 4, -126))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fast_ste_mask_equals_the_reference(dtype: torch.dtype) -> None:
    special = torch.tensor([0.0, -0.0, 0.5, -0.5, 1.0 - 2**-20, 1.0, -1.0, 1.5, -7.0, 1e-40, -1e-40, 1e30,
                            float("inf"), -float("inf"), float("nan")], dtype=dtype)
    grad = torch.cat([torch.randn(5000, generator=torch.Generator().manual_seed(1), dtype=dtype) * 2, special])
    assert _same_bits(ste_mask(grad), ste_mask_reference(grad))
    # Every magnitude below 1 (signed zeros, subnormals, the largest float below 1): the fast path
    # hands the gradient back unchanged, and that is the definition's result bit for bit.
    small = torch.cat([torch.rand(5000, generator=torch.Generator().manual_seed(2), dtype=dtype) * 2 - 1,
                       torch.tensor([0.0, -0.0, 1e-40, -1e-40, 1.0 - 2**-20, -(1.0 - 2**-20)], dtype=dtype)])
    assert _same_bits(ste_mask(small), ste_mask_reference(small))
    assert _same_bits(ste_mask(small[:0]), ste_mask_reference(small[:0]))
    with_nan = torch.cat([small, torch.tensor([float("nan")], dtype=dtype)])  # NaN among small values: the full mask
    assert _same_bits(ste_mask(with_nan), ste_mask_reference(with_nan))


def _step(model: nn.Sequential, layers, x: torch.Tensor, y: torch.Tensor, fused: bool, seed: int | None):
    """Loss, output and parameter gradients of one pas forward/backward."""
    saved = emulation.FUSED
    emulation.FUSED = fused
    try:
        model.zero_grad(set_to_none=True)
        faults = FaultSource(torch.Generator().manual_seed(seed)) if seed is not None else None
        out = emulate(model, layers, x, faults=faults)
        loss = F.cross_entropy(out, y)
        loss.backward()
    finally:
        emulation.FUSED = saved
    return out.detach(), [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("multiplier, voltage", [("drum:2", 1.1), ("exact", 1.1), ("drum:3", 0.62)])
def test_fused_dense_equals_the_reference_in_values_and_gradients(multiplier: str, voltage: float) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(30, 24), nn.ReLU(), nn.Linear(24, 16), nn.ReLU(), nn.Linear(16, 5))
    x = torch.randn(64, 30) * 2
    y = torch.randint(0, 5, (64,))
    layers = calibrate(model, x, multipliers=multiplier, sram_voltage=voltage)
    seed = 7 if voltage < 1.1 else None
    reference = copy.deepcopy(model)
    optimisers = [torch.optim.Adam(m.parameters(), lr=1e-2) for m in (model, reference)]
    for step in range(3):  # gradients and the Adam updates built on them stay identical
        out_f, grads_f = _step(model, layers, x, y, fused=True, seed=seed)
        out_r, grads_r = _step(reference, layers, x, y, fused=False, seed=seed)
        assert _same_bits(out_f, out_r), step
        assert all(_same_bits(a, b) for a, b in zip(grads_f, grads_r, strict=True)), step
        assert any(bool(g.abs().sum() > 0) for g in grads_f)  # something was learnt from
        for optimiser in optimisers:
            optimiser.step()
    assert all(_same_bits(a.detach(), b.detach()) for a, b in zip(model.parameters(), reference.parameters(), strict=True))


def test_per_neuron_modes_take_the_reference_path_and_still_train() -> None:
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(10, 4), nn.ReLU(), nn.Linear(4, 3))
    x, y = torch.randn(16, 10), torch.randint(0, 3, (16,))
    layers = calibrate(model, x, multipliers=[["exact", "drum:2", "drum:2", "drum:4"], "drum:1"])
    out_f, grads_f = _step(model, layers, x, y, fused=True, seed=None)
    out_r, grads_r = _step(model, layers, x, y, fused=False, seed=None)
    assert _same_bits(out_f, out_r) and all(_same_bits(a, b) for a, b in zip(grads_f, grads_r, strict=True))


@pytest.mark.parametrize("bits", [4, 7, 8, 9, 12, 16, 24, 40])
def test_fault_masks_have_the_reference_statistics(bits: int) -> None:
    """Geometric-gap maps against the per-bit definition (they consume the generator differently, so
    the test is statistical, as for hwmodels' flip_positions): each bit position flips in
    Binomial(n, p) words under both, two neighbouring bits together in Binomial(n, p**2) (gaps that
    were off by one would break that), within 5 sd; words stay inside ``bits``; a seed gives one map."""
    n = 4096
    for p in (0.002, 0.05, 0.5, 0.999):
        fast = draw_fault_masks((64, 64), bits, p, torch.Generator().manual_seed(bits))
        slow = draw_fault_masks_reference((64, 64), bits, p, torch.Generator().manual_seed(bits))
        assert torch.equal(fast, draw_fault_masks((64, 64), bits, p, torch.Generator().manual_seed(bits)))
        for masks in (fast, slow):
            assert masks.dtype == torch.int64 and masks.shape == (64, 64)
            assert int(masks.min()) >= 0 and int(masks.max()) < (1 << bits)
            for j in range(bits):
                ones = int(((masks >> j) & 1).sum())
                assert abs(ones - n * p) <= 5 * math.sqrt(n * p * (1 - p)) + 1, (p, j, ones)
                if j + 1 < bits and n * p * p >= 10:  # the normal bound needs a count of 10 or more
                    pairs = int((((masks >> j) & 1) * ((masks >> (j + 1)) & 1)).sum())
                    q = p * p
                    assert abs(pairs - n * q) <= 5 * math.sqrt(n * q * (1 - q)) + 1, (p, j, pairs)

def test_weights_prepared_together_equal_the_reference_with_mixed_layers_and_faults() -> None:
    """The fused layers' weights and biases are quantised in one buffer per (width, mode) and the
    fault maps drawn ahead in layer order: with two different modes among the fused layers, a
    per-neuron-mode layer between them (the reference path) and fresh NTV maps every step, the
    outputs and every gradient are the reference's bits."""
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(12, 9), nn.ReLU(), nn.Linear(9, 4), nn.ReLU(), nn.Linear(4, 3))
    x, y = torch.randn(32, 12) * 2, torch.randint(0, 3, (32,))
    layers = calibrate(model, x, multipliers=["drum:2", ["exact", "drum:2", "drum:3", "drum:2"], "drum:4"], sram_voltage=0.62)
    prepared = emulation._prepare_fused(list(model), layers, None)
    assert [prepared[i].weight is not None for i in range(3)] == [True, False, True]  # by layer record
    reference = copy.deepcopy(model)
    for step in range(2):
        out_f, grads_f = _step(model, layers, x, y, fused=True, seed=11 + step)
        out_r, grads_r = _step(reference, layers, x, y, fused=False, seed=11 + step)
        assert _same_bits(out_f, out_r), step
        assert all(_same_bits(a, b) for a, b in zip(grads_f, grads_r, strict=True)), step


def test_first_operands_are_the_batches_own_and_remembered_per_data() -> None:
    """The whole data set's first-layer operands, sliced, are what emulate computes per batch; a
    network run on them gives the same bits in training (values and gradients) and evaluation; the
    memo returns them again for the same data only and lets them go with the data."""
    import gc
    import weakref

    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(20, 8), nn.ReLU(), nn.Linear(8, 3))
    x, y = torch.randn(300, 20) * 3, torch.randint(0, 3, (300,))
    layers = calibrate(model, x, multipliers="drum:2")
    firsts = emulation.first_operands(layers, x, batch=128)  # blocks of 128: an odd tail of 44
    assert firsts is not None and emulation.first_operands(layers, x) is firsts
    fmt = layers[0].input_format
    expected = drum_transform(emulation.quantize_real(x, fmt), 2, fmt.frac)
    assert _same_bits(firsts, expected)
    assert _same_bits(emulate(model, layers, x[:100], exact=True), emulate(model, layers, x[:100], exact=True, first=firsts[:100]))
    grads = []
    for first in (None, firsts[100:164]):
        model.zero_grad(set_to_none=True)
        out = emulate(model, layers, x[100:164], first=first)
        F.cross_entropy(out, y[100:164]).backward()
        grads.append([out.detach()] + [p.grad.clone() for p in model.parameters()])
    assert all(_same_bits(a, b) for a, b in zip(*grads, strict=True))
    x.mul_(2.0)  # changed in place: computed again
    assert emulation.first_operands(layers, x) is not firsts
    per_neuron = calibrate(model, x, multipliers=[["exact", "drum:2"] * 4, "drum:2"])
    assert emulation.first_operands(per_neuron, x) is None  # two mode groups: each computes its own
    kept = weakref.ref(emulation.first_operands(layers, x))
    del x, firsts
    gc.collect()
    assert kept() is None
