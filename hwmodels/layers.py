"""The integer layer record that flows through the pipeline, and its numpy reference forward.

A :class:`QuantizedLayer` holds one layer of a deployed network as the hardware sees it: integer
weights and bias, fixed-point formats, the multiplier of each output neuron and the weight SRAM
voltage. The trainer produces them (and exports them to ONNX), the compiler rebuilds them from ONNX,
and :func:`forward` is the numpy definition of what they compute (docs/numerics.md) against which the
torch emulation, onnxruntime, the golden vectors and the simulator are all checked.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal, Sequence

import numpy as np

from axtrain.errors import HardwareModelError
from axtrain.hwmodels.fixedpoint import FixedPointFormat, requantize, requantize_multiplier
from axtrain.hwmodels.multipliers import EXACT, MultiplierMode, transform_operand
from axtrain.hwmodels.ntv import NOMINAL_VOLTAGE

LayerOp = Literal["dense", "conv", "maxpool", "flatten"]


@dataclass(frozen=True, eq=False)
class QuantizedLayer:
    """One layer in integers.

    ``weight`` is int64 ``[out, in]`` (dense) or ``[out_ch, in_ch, kh, kw]`` (conv); ``bias`` is int64
    ``[out]`` at fractional length ``input_format.frac + weight_format.frac``. ``multipliers`` has one
    entry (the whole layer) or one per output neuron / output channel. MaxPool and flatten layers
    carry no weights and keep their input format.
    """

    name: str
    op: LayerOp
    input_format: FixedPointFormat
    output_format: FixedPointFormat
    weight: np.ndarray | None = None
    weight_format: FixedPointFormat | None = None
    bias: np.ndarray | None = None
    relu: bool = False
    multipliers: tuple[MultiplierMode, ...] = (EXACT,)
    sram_voltage: float = NOMINAL_VOLTAGE
    stride: int = 1  # conv and maxpool
    padding: int = 0  # conv: zero padding on every side
    kernel: int = 2  # maxpool window (square)
    meta: dict[str, Any] = field(default_factory=dict)
    # ISA 2: per output neuron (multiplier M, shift n, zero point z) when the layer requantises by
    # ``z + round_half_even(acc * M * 2**-n)`` (non-power-of-two scales) instead of by a shift.
    requant: tuple[tuple[int, int, int], ...] | None = None

    @property
    def has_weights(self) -> bool:
        return self.op in ("dense", "conv")

    @property
    def out_features(self) -> int:
        """Output neurons (dense) or channels (conv)."""
        if self.weight is None:
            raise HardwareModelError(f"layer {self.name!r} ({self.op}) has no output neurons")
        return int(self.weight.shape[0])

    @property
    def accumulator_frac(self) -> int:
        if self.weight_format is None:
            raise HardwareModelError(f"layer {self.name!r} ({self.op}) has no accumulator")
        return self.input_format.frac + self.weight_format.frac

    def neuron_modes(self) -> tuple[MultiplierMode, ...]:
        """The multiplier of every output neuron (a per-layer mode repeated)."""
        if len(self.multipliers) == 1:
            return self.multipliers * self.out_features
        return self.multipliers

    def with_changes(self, **changes: Any) -> "QuantizedLayer":
        """A copy with some fields replaced (records are immutable)."""

        return replace(self, **changes)


def accumulation_bound(layer: QuantizedLayer) -> int:
    """``fan_in * max|a| * max|w| + max|bias|`` in LSBs of the accumulator (docs/numerics.md):
    ``max|a|`` is the input format's largest magnitude, ``max|w|`` and ``max|bias|`` the layer's
    integers. Below ``2**24`` every product and partial sum is exact in float32 in any order."""
    if not layer.has_weights or layer.weight is None or layer.bias is None:
        raise HardwareModelError(f"layer {layer.name!r} ({layer.op}) has no weights: no accumulation bound")
    weight = np.asarray(layer.weight)
    fan_in = int(np.prod(weight.shape[1:]))
    max_a = max(-layer.input_format.qmin, layer.input_format.qmax)
    max_w = int(np.max(np.abs(weight.astype(np.int64)))) if weight.size else 0
    max_b = int(np.max(np.abs(np.asarray(layer.bias, dtype=np.int64)))) if np.size(layer.bias) else 0
    return fan_in * max_a * max_w + max_b


def im2col(x: np.ndarray, kernel_h: int, kernel_w: int, stride: int, padding: int) -> np.ndarray:
    """``[N, C, H, W]`` -> ``[N, OH*OW, C*kh*kw]`` patches (zero padding), ordered like the weights."""
    n, c, h, w = x.shape
    if padding:
        x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    oh = (h + 2 * padding - kernel_h) // stride + 1
    ow = (w + 2 * padding - kernel_w) // stride + 1
    windows = np.lib.stride_tricks.sliding_window_view(x, (kernel_h, kernel_w), axis=(2, 3))
    windows = windows[:, :, ::stride, ::stride][:, :, :oh, :ow]  # [N, C, OH, OW, kh, kw]
    return windows.transpose(0, 2, 3, 1, 4, 5).reshape(n, oh * ow, c * kernel_h * kernel_w)


def _grouped_matmul(patches: np.ndarray, weight2d: np.ndarray, modes: Sequence[MultiplierMode]) -> np.ndarray:
    """``patches [..., K] @ weight2d.T [K, M]`` where output column ``j`` uses multiplier ``modes[j]``."""
    out = np.zeros(patches.shape[:-1] + (weight2d.shape[0],), dtype=np.int64)
    for mode in sorted(set(modes), key=lambda m: (m.k is not None, m.k or 0)):
        cols = np.array([j for j, m in enumerate(modes) if m == mode])
        a = transform_operand(patches, mode).astype(np.float64)
        w = transform_operand(weight2d[cols], mode).astype(np.float64)
        # float64 GEMM is exact for integer partial sums below 2**53 (docs/numerics.md).
        out[..., cols] = np.rint(a @ w.T).astype(np.int64)
    return out


def accumulate(layer: QuantizedLayer, q_in: np.ndarray, weight: np.ndarray | None = None) -> np.ndarray:
    """The integer accumulator (products + bias) of a dense or conv layer, before requantisation.

    ``weight`` overrides the layer's weights (an NTV-faulted copy of the weight image).
    """
    w = layer.weight if weight is None else weight
    assert w is not None and layer.bias is not None
    q_in = np.asarray(q_in, dtype=np.int64)
    modes = layer.neuron_modes()
    if layer.op == "dense":
        acc = _grouped_matmul(q_in, w, modes)
        return np.asarray(acc + layer.bias)
    out_ch, _, kh, kw = w.shape
    n, _, h, wd = q_in.shape
    patches = im2col(q_in, kh, kw, layer.stride, layer.padding)
    acc = _grouped_matmul(patches, w.reshape(out_ch, -1), modes) + layer.bias  # [N, OH*OW, OC]
    oh = (h + 2 * layer.padding - kh) // layer.stride + 1
    ow = (wd + 2 * layer.padding - kw) // layer.stride + 1
    return np.asarray(acc.transpose(0, 2, 1).reshape(n, out_ch, oh, ow))


def forward_layer(layer: QuantizedLayer, q_in: np.ndarray, weight: np.ndarray | None = None) -> np.ndarray:
    """Integers in, integers out: one layer exactly as docs/numerics.md defines it."""
    q_in = np.asarray(q_in, dtype=np.int64)
    if layer.op == "flatten":
        return q_in.reshape(q_in.shape[0], -1)
    if layer.op == "maxpool":
        n, c, h, w = q_in.shape
        k, s = layer.kernel, layer.stride
        windows = np.lib.stride_tricks.sliding_window_view(q_in, (k, k), axis=(2, 3))[:, :, ::s, ::s]
        return np.asarray(windows.max(axis=(-2, -1)))
    acc = accumulate(layer, q_in, weight)
    if layer.relu:
        acc = np.maximum(acc, 0)
    if layer.requant is not None:
        table = np.asarray(layer.requant, dtype=np.int64)  # [out, (M, n, z)], broadcast over the neuron axis 1
        shape = (1, -1) + (1,) * (acc.ndim - 2)
        fmt = layer.output_format
        return requantize_multiplier(acc, table[:, 0].reshape(shape), table[:, 1].reshape(shape), table[:, 2].reshape(shape), fmt.qmin, fmt.qmax)
    return requantize(acc, layer.accumulator_frac, layer.output_format)


def forward(
    layers: Sequence[QuantizedLayer], q_input: np.ndarray, weights: Sequence[np.ndarray | None] | None = None
) -> list[np.ndarray]:
    """Run every layer; returns the integer output of each (the last one is the network output).

    ``weights``, if given, holds one weight array (or None for "the layer's own") per layer.
    """
    outputs: list[np.ndarray] = []
    current = np.asarray(q_input, dtype=np.int64)
    for index, layer in enumerate(layers):
        current = forward_layer(layer, current, None if weights is None else weights[index])
        outputs.append(current)
    return outputs
