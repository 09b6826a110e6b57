"""The numba kernels of the pas forward against the torch path, bit for bit (decisions 213).

The torch functions of trainer/emulation.py are the definition (they are themselves checked
against their slow references in test_emulation_fused.py). Each kernel gets the edge values its
float32 steps could treat differently: ties of the rounding, saturation, signed zeros, NaN,
infinities, magnitudes at the DRUM threshold; then random data, and a whole emulated training
step (outputs and every gradient) with the kernels on and off.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

pytest.importorskip("numba", reason="numba is not installed here: the torch path alone runs, and the rest of the suite covers it")

from axtrain.hwmodels.fixedpoint import FixedPointFormat  # noqa: E402
from axtrain.hwmodels.multipliers import parse_mode  # noqa: E402
from axtrain.trainer import emulation, kernels  # noqa: E402
from axtrain.trainer.emulation import FaultSource, drum_transform, emulate, flip_bits, quantize_real  # noqa: E402
from axtrain.trainer.hardware import calibrate  # noqa: E402
from axtrain.trainer.reductions import max_abs  # noqa: E402

EDGES = [0.0, -0.0, 0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 126.5, 127.5, -128.5, 1e9, -1e9, math.inf, -math.inf, math.nan, 3.0, 4.0, 7.0, -8.0, 2.0**-20]


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(torch.int32)


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dtype == b.dtype == torch.float32 and a.shape == b.shape and torch.equal(_bits(a), _bits(b))


@pytest.fixture(autouse=True)
def _kernels_on() -> None:
    assert kernels.enabled(), "numba imports here, so the kernels must be on (is AXTRAIN_KERNELS=torch set?)"


def _torch_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kernels, "_compiled", lambda: None)


def _weights(w: torch.Tensor, frac: int, fmt: FixedPointFormat, k: int | None, masks: torch.Tensor | None, bits: int) -> torch.Tensor:
    """The weight side of kernels.prepare_layer alone (a one-element bias beside it)."""
    out, _ = kernels.prepare_layer(w, torch.zeros(1), masks, kernels.weight_args(frac, fmt.qmin, fmt.qmax, k, bits), kernels.bias_args(0, -1, 1))
    return out


def _values(scale: float, n: int = 4000, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    random = torch.randn(n, generator=g) * scale
    return torch.cat([torch.tensor(EDGES, dtype=torch.float32) * scale, random])


@pytest.mark.parametrize("k", [None, 1, 2, 3, 5, 8, 16])
@pytest.mark.parametrize("frac", [-3, 0, 4, 12])
def test_drum_kernel_equals_the_torch_transform_on_every_16bit_value(k: int | None, frac: int) -> None:
    values = torch.arange(-(2**15), 2**15, dtype=torch.float32) * 2.0**-frac
    mode = parse_mode("exact" if k is None else f"drum:{k}")
    expected = values if k is None else drum_transform(values, k, frac)
    assert _same(kernels.drum(values, k, frac), expected)
    assert _same(emulation.transform_real(values.reshape(256, 256), mode, frac), expected.reshape(256, 256))


def test_drum_kernel_passes_everything_when_the_threshold_overflows_or_k_exceeds_the_mantissa() -> None:
    values = torch.tensor([0.0, -0.0, 3.0, -5.0, 1e30], dtype=torch.float32)
    assert _same(kernels.drum(values, 4, -126), drum_transform(values, 4, -126))
    assert _same(kernels.drum(values, 24, 0), drum_transform(values, 24, 0))


@pytest.mark.parametrize("bits", [4, 8, 16])
@pytest.mark.parametrize("k", [None, 1, 2, 4])
@pytest.mark.parametrize("flips", [False, True])
def test_weight_kernel_equals_the_weight_pipeline(bits: int, k: int | None, flips: bool) -> None:
    """quantise, flip, DRUM, scale back: the kernel against emulation._weight_pipeline (torch)."""
    frac = bits - 3
    w = _values(2.0 ** (2 - frac) * 8)
    fmt = FixedPointFormat(bits, frac)
    masks = torch.randint(0, 2**bits, w.shape, generator=torch.Generator().manual_seed(1)) if flips else None
    mode = parse_mode("exact" if k is None else f"drum:{k}")
    layer = type("L", (), {"weight_format": fmt})()
    finite = torch.isfinite(w) | ~torch.tensor(flips)  # a NaN word's integer conversion is undefined: flipped only where finite
    w = torch.where(finite, w, torch.zeros_like(w))
    expected = emulation._weight_pipeline(layer, mode, masks, torch.float32)(w)  # type: ignore[arg-type]
    assert _same(_weights(w, frac, fmt, k, masks, bits), expected)
    into = torch.empty_like(w)  # the same into a given buffer (the per-layer path's group buffer)
    kernels.prepare_layer(w, torch.zeros(1), masks, kernels.weight_args(frac, fmt.qmin, fmt.qmax, k, bits), kernels.bias_args(0, -1, 1), w_out=into)
    assert _same(into, expected)
    if masks is not None:  # the flip alone (no scale, no DRUM) is the torch flip_bits of the quantised words
        assert _same(_weights(w, 0, fmt, None, masks, bits), flip_bits(w.round().clamp(fmt.qmin, fmt.qmax), masks, bits))


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("fmt", [FixedPointFormat(8, 4), FixedPointFormat(8, -2), FixedPointFormat(16, 10)])
def test_relu_quantize_kernel_equals_relu_then_quantize_real(relu: bool, fmt: FixedPointFormat) -> None:
    acc = _values(2.0 ** (fmt.bits - 1 - fmt.frac) / 2)[:4020].reshape(-1, 6)
    ours, theirs = acc.clone(), acc.clone()
    out = kernels.relu_quantize(ours, fmt.frac, fmt.qmin, fmt.qmax, relu)
    if relu:
        theirs.relu_()
    scaled = theirs * 2.0**fmt.frac  # quantize_real's torch body, spelled out (the kernel is quantize_real's fast path)
    expected = scaled.round_().clamp_(fmt.qmin, fmt.qmax).mul_(2.0**-fmt.frac)
    assert _same(out, expected)
    assert _same(ours, theirs), "the ReLU is applied to the accumulator in place, as relu_ does"
    assert _same(quantize_real(acc, fmt), kernels.relu_quantize(acc.clone(), fmt.frac, fmt.qmin, fmt.qmax, False))


@pytest.mark.parametrize("k", [None, 1, 2, 3, 8])
@pytest.mark.parametrize("fmt", [FixedPointFormat(8, 4), FixedPointFormat(8, -2), FixedPointFormat(16, 10), FixedPointFormat(4, 0)])
def test_quantize_drum_kernel_equals_quantize_then_drum(k: int | None, fmt: FixedPointFormat) -> None:
    """The first layer's operand in one pass: the bits of quantize_real then the DRUM transform, on
    the edge values (ties, saturation, signed zeros, NaN, infinities) and random data."""
    x = _values(2.0 ** (fmt.bits - 1 - fmt.frac) / 2)[:4020].reshape(-1, 6)
    before = x.clone()
    quantised = kernels.relu_quantize(x.clone(), fmt.frac, fmt.qmin, fmt.qmax, False)
    expected = quantised if k is None else drum_transform(quantised, k, fmt.frac)
    assert _same(kernels.quantize_drum(x, fmt.frac, fmt.qmin, fmt.qmax, k), expected)
    assert _same(x, before), "the input is not modified"


def test_emulate_takes_the_first_operand_in_one_pass_with_the_same_bits(monkeypatch: pytest.MonkeyPatch) -> None:
    """emulate's first layer (quantise + DRUM in one kernel pass) gives the bits of the two passes
    (the torch path), in evaluation and in a training step (outputs and gradients), and is taken."""
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(30, 16), nn.ReLU(), nn.Linear(16, 4))
    x, y = torch.randn(200, 30) * 3, torch.randint(0, 4, (200,))
    calls = []
    original = kernels.quantize_drum
    monkeypatch.setattr(kernels, "quantize_drum", lambda *a: calls.append(a[1:]) or original(*a))
    one_pass_operand = emulation._one_pass_first_operand
    for mode in ("drum:2", "drum:1"):
        layers = calibrate(model, x, multipliers=mode)
        runs = []
        for one_pass in (True, False):
            monkeypatch.setattr(emulation, "_one_pass_first_operand", one_pass_operand if one_pass else (lambda x, layer: None))
            model.zero_grad(set_to_none=True)
            evaluated = emulate(model, layers, x, exact=True)
            trained = emulate(model, layers, x)
            torch.nn.functional.cross_entropy(trained, y).backward()
            runs.append([evaluated, trained.detach()] + [p.grad.clone() for p in model.parameters()])
        assert all(_same(a, b) for a, b in zip(*runs, strict=True)), mode
    assert len(calls) == 4  # two emulate calls per mode with the one pass on, none with it off
    exact_layers = calibrate(model, x, multipliers="exact")
    calls.clear()
    emulate(model, exact_layers, x, exact=True)
    assert calls == []  # an exact multiplier has no transform: quantisation alone


def test_bias_kernel_equals_the_float32_bias_pipeline() -> None:
    acc_frac = 14
    b = torch.cat([_values(0.01), torch.tensor([2.0**17, -(2.0**17), 2.0**17 - 2.0**-14, 131071.99], dtype=torch.float32)])
    expected = emulation._bias_pipeline(acc_frac, torch.float32, compute=torch.float32)(b)
    _, bias = kernels.prepare_layer(
        torch.zeros(1), b, None, kernels.weight_args(0, -128, 127, None, 8), kernels.bias_args(acc_frac, emulation.BIAS_QMIN, emulation.BIAS_QMAX)
    )
    assert _same(bias, expected)
    assert float(expected.nan_to_num(nan=0.0).max()) == 2.0**31 * 2.0**-acc_frac  # saturation was exercised: the float32 2**31


@pytest.mark.parametrize(
    "values",
    [[0.0], [0.5, -0.99999994], [1.0], [-1.0], [0.3, math.nan], [math.inf], [-math.inf], [2.0**-149, -0.0], [], [0.999, 1.0000001]],
)
def test_below_one_is_max_abs_below_one(values: list[float]) -> None:
    g = torch.tensor(values, dtype=torch.float32)
    assert kernels.below_one(g) == (max_abs(g) < 1.0)


def test_below_one_declines_what_the_kernels_do_not_take() -> None:
    assert kernels.below_one(torch.zeros(3, dtype=torch.float64)) is None
    assert kernels.below_one(torch.zeros(3, 4).T) is None


def test_kernels_take_only_contiguous_float32_cpu_tensors() -> None:
    assert kernels.applicable(torch.zeros(3, 4))
    assert not kernels.applicable(torch.zeros(3, 4).T)
    assert not kernels.applicable(torch.zeros(3, dtype=torch.float64))


def _mlp_step(seed: int, voltage: float, per_layer: bool) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """One emulated forward and backward of a small MLP. ``per_layer``: collect every layer's output,
    which takes the per-layer path; otherwise (kernels on) the whole MLP is one FusedChain node."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(30, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4))
    x = torch.randn(64, 30)
    layers = calibrate(copy.deepcopy(model), x, multipliers="drum:2", sram_voltage=voltage)
    faults = FaultSource(torch.Generator().manual_seed(5)) if voltage < 1.1 else None
    collected: list[torch.Tensor] | None = [] if per_layer else None
    out = emulate(model, layers, x, faults=faults, collect=collected)
    # The whole MLP as one node hands back all six parameters' gradients; a per-layer node two.
    params = [f for f, _ in out.grad_fn.next_functions if type(f).__name__ == "AccumulateGrad"]
    assert len(params) == (6 if not per_layer and kernels.enabled() else 2)
    (out.square().sum() * 3.0).backward()  # gradients above 1 too: the STE mask is exercised
    outputs = [t.detach() for t in collected] if collected is not None else [out.detach()]
    return outputs, [p.grad.detach().clone() for p in model.parameters() if p.grad is not None]


@pytest.mark.parametrize("voltage", [1.1, 0.66])
def test_an_emulated_training_step_is_the_same_bits_chained_per_layer_and_without_kernels(monkeypatch: pytest.MonkeyPatch, voltage: float) -> None:
    chained_out, chained_grads = _mlp_step(3, voltage, per_layer=False)
    outs, grads = _mlp_step(3, voltage, per_layer=True)
    _torch_only(monkeypatch)
    assert not kernels.enabled()
    outs_torch, grads_torch = _mlp_step(3, voltage, per_layer=True)
    plain_out, plain_grads = _mlp_step(3, voltage, per_layer=False)
    assert len(grads) == len(grads_torch) == len(chained_grads) == 6
    for a, b in zip(outs, outs_torch, strict=True):
        assert _same(a, b)
    assert _same(chained_out[0], outs[-1]) and _same(plain_out[0], outs[-1])
    for a, b, c, d in zip(grads, grads_torch, chained_grads, plain_grads, strict=True):
        assert _same(a, b) and _same(a, c) and _same(a, d)
    assert float((6.0 * outs[-1]).abs().max()) >= 1.0  # the loss gradient 6 * out reached 1: the output mask dropped some


def test_the_environment_switches_the_kernels_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(kernels.ENV, "torch")
    kernels._compiled.cache_clear()
    try:
        assert not kernels.enabled()
        assert not kernels.applicable(torch.zeros(2))
    finally:
        monkeypatch.delenv(kernels.ENV)
        kernels._compiled.cache_clear()
    assert kernels.enabled()


def test_a_numba_that_cannot_be_imported_leaves_the_torch_path(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    import axtrain.trainer

    monkeypatch.setitem(sys.modules, "axtrain.trainer.kernels_numba", None)  # `import` of it raises ImportError
    monkeypatch.delattr(axtrain.trainer, "kernels_numba", raising=False)  # (else `from ... import` finds the attribute)
    kernels._compiled.cache_clear()
    try:
        assert not kernels.enabled()
        assert kernels.below_one(torch.zeros(3)) is None
        x = torch.arange(-64, 64, dtype=torch.float32)
        assert _same(emulation.transform_real(x, parse_mode("drum:2"), 0), drum_transform(x, 2, 0))
    finally:
        monkeypatch.undo()
        kernels._compiled.cache_clear()
    assert kernels.enabled()
