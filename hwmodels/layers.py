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
from axtrain.hwmodels.pooling import avgpool, residual_add

LayerOp = Literal["dense", "conv", "maxpool", "flatten", "add", "avgpool"]


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
    # Separate strides and asymmetric pads (ONNX Conv/MaxPool attributes); empty: ``stride`` on both
    # axes, ``padding`` on every side, a square ``kernel`` for maxpool.
    strides: tuple[int, int] | tuple[()] = ()
    pads: tuple[int, int, int, int] | tuple[()] = ()  # top, left, bottom, right
    window: tuple[int, int] | tuple[()] = ()  # maxpool / avgpool kernel height, width
    groups: int = 1  # conv: channel groups (depthwise: as many as input channels)
    # avgpool: divide by the whole window (ONNX count_include_pad=1, the padding summing as 0) instead
    # of by the window's positions inside the map.
    count_include_pad: bool = False
    # The layers whose outputs this one reads, in input order (-1: the network input); empty: the
    # previous layer (a chain). A residual add reads two.
    sources: tuple[int, ...] = ()
    other_format: FixedPointFormat | None = None  # add: the format of its second input
    # ISA 2: per output neuron (multiplier M, shift n, zero point z) when the layer requantises by
    # ``z + round_half_even(acc * M * 2**-n)`` (non-power-of-two scales) instead of by a shift.
    requant: tuple[tuple[int, int, int], ...] | None = None

    @property
    def stride_hw(self) -> tuple[int, int]:
        """(vertical, horizontal) stride."""
        return self.strides if len(self.strides) == 2 else (self.stride, self.stride)

    @property
    def pads_tlbr(self) -> tuple[int, int, int, int]:
        """Padding (top, left, bottom, right)."""
        return self.pads if len(self.pads) == 4 else (self.padding, self.padding, self.padding, self.padding)

    @property
    def window_hw(self) -> tuple[int, int]:
        """Maxpool window (height, width)."""
        return self.window if len(self.window) == 2 else (self.kernel, self.kernel)

    @property
    def pad_value(self) -> int:
        """The stored word a conv's padding reads: the input zero point, so that a border position
        is the real value 0 as onnxruntime pads the dequantised input (ISA 2 ``CONV.padv``)."""
        return self.input_format.zero_point

    def source_layers(self, index: int) -> tuple[int, ...]:
        """The layers this one (at ``index``) reads: :attr:`sources`, or the previous layer."""
        return self.sources or (index - 1,)

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


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _pads4(value: int | tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    return (value,) * 4 if isinstance(value, int) else (int(value[0]), int(value[1]), int(value[2]), int(value[3]))


def im2col(x: np.ndarray, kernel_h: int, kernel_w: int, stride: int | tuple[int, int], padding: int | tuple[int, int, int, int], pad_value: int = 0) -> np.ndarray:
    """``[N, C, H, W]`` -> ``[N, OH*OW, C*kh*kw]`` patches, ordered like the weights. ``stride`` is
    one or (vertical, horizontal); ``padding`` one or (top, left, bottom, right), filled with ``pad_value``."""
    n, c, h, w = x.shape
    sh, sw = _pair(stride)
    pt, pl, pb, pr = _pads4(padding)
    if pt or pl or pb or pr:
        x = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)), constant_values=pad_value)
    oh = (h + pt + pb - kernel_h) // sh + 1
    ow = (w + pl + pr - kernel_w) // sw + 1
    windows = np.lib.stride_tricks.sliding_window_view(x, (kernel_h, kernel_w), axis=(2, 3))
    windows = windows[:, :, ::sh, ::sw][:, :, :oh, :ow]  # [N, C, OH, OW, kh, kw]
    return windows.transpose(0, 2, 3, 1, 4, 5).reshape(n, oh * ow, c * kernel_h * kernel_w)


def maxpool(q_in: np.ndarray, window: tuple[int, int], strides: tuple[int, int], pads: tuple[int, int, int, int]) -> np.ndarray:
    """Max pooling ``[N, C, H, W]`` (padding positions take no part; floor output size)."""
    kh, kw = window
    sh, sw = strides
    pt, pl, pb, pr = pads
    x = np.asarray(q_in, dtype=np.int64)
    if pt or pl or pb or pr:
        x = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)), constant_values=np.iinfo(np.int64).min)
    oh = (x.shape[2] - kh) // sh + 1
    ow = (x.shape[3] - kw) // sw + 1
    windows = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw][:, :, :oh, :ow]
    return np.asarray(windows.max(axis=(-2, -1)))


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
    sh, sw = layer.stride_hw
    pt, pl, pb, pr = layer.pads_tlbr
    g = layer.groups
    cg, mg = q_in.shape[1] // g, out_ch // g
    parts = []
    for group in range(g):  # a grouped conv is one conv per channel group
        patches = im2col(q_in[:, group * cg : (group + 1) * cg], kh, kw, (sh, sw), (pt, pl, pb, pr), layer.pad_value)
        rows = slice(group * mg, (group + 1) * mg)
        parts.append(_grouped_matmul(patches, w[rows].reshape(mg, -1), modes[rows]))
    acc = np.concatenate(parts, axis=-1) + layer.bias  # [N, OH*OW, OC]
    oh = (h + pt + pb - kh) // sh + 1
    ow = (wd + pl + pr - kw) // sw + 1
    return np.asarray(acc.transpose(0, 2, 1).reshape(n, out_ch, oh, ow))


def forward_layer(layer: QuantizedLayer, q_in: np.ndarray, weight: np.ndarray | None = None) -> np.ndarray:
    """Integers in, integers out: one layer exactly as docs/numerics.md defines it."""
    q_in = np.asarray(q_in, dtype=np.int64)
    if layer.op == "flatten":
        return q_in.reshape(q_in.shape[0], -1)
    if layer.op == "maxpool":
        return maxpool(q_in, layer.window_hw, layer.stride_hw, layer.pads_tlbr)
    if layer.op == "avgpool":
        shift = layer.output_format.frac - layer.input_format.frac
        return avgpool(q_in, layer.window_hw, layer.stride_hw, layer.pads_tlbr, shift, layer.output_format, layer.count_include_pad)
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
    network_input = np.asarray(q_input, dtype=np.int64)
    for index, layer in enumerate(layers):
        inputs = [network_input if j < 0 else outputs[j] for j in layer.source_layers(index)]
        if layer.op == "add":
            outputs.append(add_layer(layer, inputs[0], inputs[1]))
            continue
        outputs.append(forward_layer(layer, inputs[0], None if weights is None else weights[index]))
    return outputs


def add_shifts(layer: QuantizedLayer) -> tuple[int, int, int]:
    """``(sa, sb, shift)`` of a residual add: both inputs aligned to the finer scale, then moved to
    the output format (hwmodels/pooling.py)."""
    assert layer.other_format is not None
    fa, fb = layer.input_format.frac, layer.other_format.frac
    f = max(fa, fb)
    return f - fa, f - fb, f - layer.output_format.frac


def add_layer(layer: QuantizedLayer, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A residual add of two integer maps, requantised to the layer's output format."""
    sa, sb, shift = add_shifts(layer)
    return residual_add(a, b, sa, sb, shift, layer.output_format, layer.relu)
