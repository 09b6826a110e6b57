"""The torch emulation against the numpy hwmodels: DRUM, NTV flips, the whole network, the STE."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from axtrain.hwmodels.fixedpoint import quantize
from axtrain.hwmodels.layers import forward
from axtrain.hwmodels.multipliers import drum_transform as drum_reference
from axtrain.hwmodels.ntv import bit_error_rate, flip_positions, inject
from axtrain.trainer.emulation import draw_fault_masks, drum_transform, emulate, emulate_integers, flip_bits, ste_mask
from axtrain.trainer.hardware import calibrate
from axtrain.trainer.models import lenet5, mlp

TOPOLOGIES = {
    "breast-cancer": (30, 64, 64, 2),
    "image-segmentation": (19, 64, 64, 7),
    "ionosphere": (34, 50, 50, 2),
    "satimage": (36, 64, 64, 7),
    "mnist-mlp": (784, 128, 128, 10),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("k", range(1, 9))
def test_drum_every_8bit_value(k: int, dtype: torch.dtype) -> None:
    values = np.arange(-128, 128)
    expected = drum_reference(values, k)
    got = drum_transform(torch.tensor(values, dtype=dtype), k).numpy()
    assert np.array_equal(got.astype(np.int64), expected)
    # Real domain (values times 2**-frac): the same integers after scaling back.
    scaled = drum_transform(torch.tensor(values, dtype=dtype) * 2.0**-5, k, frac=5).numpy() * 2.0**5
    assert np.array_equal(scaled.astype(np.int64), expected)


@pytest.mark.parametrize("k", [1, 2, 3, 4, 7, 12, 16])
def test_drum_random_16bit(k: int, rng: np.random.Generator) -> None:
    values = rng.integers(-(2**15), 2**15, size=20000)
    for dtype in (torch.float32, torch.float64):
        got = drum_transform(torch.tensor(values, dtype=dtype), k).numpy().astype(np.int64)
        assert np.array_equal(got, drum_reference(values, k))


def test_flips_match_hwmodels_for_the_same_fault_map(rng: np.random.Generator) -> None:
    words = rng.integers(-128, 128, size=(64, 30))
    bits, p = 8, 0.05
    positions = flip_positions(words.size * bits, p, np.random.default_rng(7))
    masks = np.zeros(words.size, dtype=np.int64)
    np.bitwise_or.at(masks, positions // bits, np.int64(1) << (positions % bits))
    got = flip_bits(torch.tensor(words, dtype=torch.float32), torch.tensor(masks.reshape(words.shape)), bits).numpy()
    expected = inject(words, bits, p, np.random.default_rng(7))  # the same draws inside
    assert positions.size > 0
    assert np.array_equal(got.astype(np.int64), expected)


def test_fault_map_statistics_match_ntv_model() -> None:
    p = bit_error_rate(0.66)  # 1 %
    bits, shape = 8, (200, 100)
    masks = draw_fault_masks(shape, bits, p, torch.Generator().manual_seed(3)).numpy()
    per_bit = np.array([((masks >> j) & 1).sum() for j in range(bits)])
    n = masks.size
    # Each bit position flips Binomial(n, p): mean n*p = 200, sd ~14; allow 5 sd.
    assert np.all(np.abs(per_bit - n * p) < 5 * np.sqrt(n * p * (1 - p)))
    total = per_bit.sum()
    reference = flip_positions(n * bits, p, np.random.default_rng(3)).size
    sd = np.sqrt(n * bits * p * (1 - p))
    assert abs(total - n * bits * p) < 5 * sd and abs(reference - n * bits * p) < 5 * sd
    assert not masks[masks >= (1 << bits)].any()  # never outside the word


def _check_bit_exact(model: torch.nn.Sequential, x: torch.Tensor, multipliers) -> None:
    layers = calibrate(model, x, multipliers=multipliers)
    expected = forward(layers, quantize(x.numpy(), layers[0].input_format))
    got = emulate_integers(model, layers, x)
    assert len(got) == len(expected)
    for index, (a, b) in enumerate(zip(got, expected)):
        assert np.array_equal(a, b), f"layer {index} ({layers[index].name}) differs under {multipliers}"


@pytest.mark.parametrize("app", sorted(TOPOLOGIES))
@pytest.mark.parametrize("mode", ["exact", "drum:1", "drum:2", "drum:3", "drum:4"])
def test_mlp_bit_exact_with_hwmodels(app: str, mode: str) -> None:
    torch.manual_seed(1)
    model = mlp(TOPOLOGIES[app])
    x = torch.randn(64 if app != "mnist-mlp" else 16, TOPOLOGIES[app][0]) * 2
    _check_bit_exact(model, x, mode)


@pytest.mark.parametrize("mode", ["exact", "drum:1", "drum:2", "drum:3", "drum:4"])
def test_lenet_bit_exact_with_hwmodels(mode: str) -> None:
    torch.manual_seed(2)
    _check_bit_exact(lenet5(), torch.randn(3, 1, 28, 28), mode)


def test_per_neuron_modes_bit_exact(rng: np.random.Generator) -> None:
    torch.manual_seed(3)
    modes = ["exact", "drum:1", "drum:2", "drum:3", "drum:4"]
    model = mlp((19, 64, 64, 7))
    per_layer = [[modes[i] for i in rng.integers(0, 5, size=n)] for n in (64, 64, 7)]
    _check_bit_exact(model, torch.randn(50, 19), per_layer)
    cnn = lenet5()
    per_layer = [[modes[i] for i in rng.integers(0, 5, size=n)] for n in (6, 16, 120, 84, 10)]
    _check_bit_exact(cnn, torch.randn(2, 1, 28, 28), per_layer)


def test_faulty_forward_bit_exact_with_same_masks() -> None:
    """With a given fault map, the emulation equals hwmodels' forward on the flipped weight image."""
    torch.manual_seed(4)
    model = mlp((30, 64, 64, 2))
    x = torch.randn(40, 30)
    layers = calibrate(model, x, multipliers="drum:2", sram_voltage=0.5)
    masks = [draw_fault_masks(l.weight.shape, 8, 0.05, torch.Generator().manual_seed(i)) for i, l in enumerate(layers)]

    class Fixed:
        def masks_for(self, layer):
            return masks[layers.index(layer)]

    got = emulate_integers(model, layers, x, faults=Fixed())
    flipped = [flip_bits(torch.tensor(l.weight), m, 8).numpy().astype(np.int64) for l, m in zip(layers, masks)]
    assert any((f != l.weight).any() for f, l in zip(flipped, layers))
    expected = forward(layers, quantize(x.numpy(), layers[0].input_format), weights=flipped)
    assert np.array_equal(got[-1], expected[-1])


def test_ste_mask_passes_small_gradients_only() -> None:
    g = torch.tensor([-2.0, -1.0, -0.75, 0.0, 0.5, 1.0, 3.0])
    assert ste_mask(g).tolist() == [0.0, 0.0, -0.75, 0.0, 0.5, 0.0, 0.0]


def test_training_forward_gradient_is_the_masked_straight_through() -> None:
    """Through the output quantiser alone, d out / d acc is the STE mask of the incoming gradient."""
    torch.manual_seed(5)
    model = mlp((4, 3))
    x = torch.randn(8, 4)
    layers = calibrate(model, x, multipliers="drum:1")
    upstream = torch.tensor([[0.5, -2.0, 0.25]] * 8)
    out = emulate(model, layers, x)
    out.backward(upstream)
    # Straight through the quantisers and DRUM: the gradient of a plain linear layer evaluated on the
    # quantised input and DRUM-transformed operands, with the masked upstream gradient.
    masked = ste_mask(upstream)
    fa = layers[0].input_format
    a = torch.round(x * 2.0**fa.frac).clamp(fa.qmin, fa.qmax) * 2.0**-fa.frac
    a_t = drum_transform(a, 1, fa.frac)
    expected_w = ste_mask(masked.T @ a_t)
    assert torch.allclose(model[0].weight.grad, expected_w, atol=1e-6)
    assert torch.allclose(model[0].bias.grad, ste_mask(masked.sum(0)), atol=1e-6)


def test_exact_mode_float64_fallback_is_bit_exact() -> None:
    """16-bit formats break the float32 bound: the GEMM must fall back to float64 and stay exact."""
    torch.manual_seed(6)
    model = mlp((200, 32, 4))
    x = torch.randn(30, 200) * 3
    layers = calibrate(model, x, bits_w=16, bits_a=16, multipliers="drum:3")
    expected = forward(layers, quantize(x.numpy(), layers[0].input_format))
    assert np.array_equal(emulate_integers(model, layers, x)[-1], expected[-1])
