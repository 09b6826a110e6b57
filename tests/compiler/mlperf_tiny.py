"""QDQ ONNX graphs of real size for the compiler and runtime tests (issue 16's yardstick).

The MLPerf Tiny shapes (ResNet-8 for CIFAR-10, DS-CNN for keyword spotting, MobileNetV1-0.25 for
visual wake words, the FC autoencoder), a CIFAR-10 CNN and a 784-2048-2048-10 MLP, with seeded
random int8 weights and power-of-two scales. :class:`QdqNet` wires the nodes (a tensor may feed
several nodes); each builder states its shapes. ``width`` scales every channel count and hidden
width (rounded, at least 1) for a small default-tier twin of each network.

Output formats: each layer's output scale is chosen from its fan-in so that random activations
spread over the int8 range instead of saturating (``_out_frac``); the choice does not matter for
bit identity, only for the comparison proving something.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

WEIGHT_FRAC = 7  # int8 weights in [-64, 64) at scale 2**-7: |w| < 0.5
INPUT_FRAC = 5  # network inputs s8.5: [-4, 4)


class QdqNet:
    """A QDQ graph under construction: tensors are names carrying a fractional length."""

    def __init__(self, name: str, input_shape: list[int], seed: int, f_in: int = INPUT_FRAC) -> None:
        self.name = name
        self.input_shape = input_shape
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.frac: dict[str, int] = {}
        self.count = 0
        self.x = self._qdq("input", f_in)

    def _id(self, stem: str) -> str:
        self.count += 1
        return f"{stem}{self.count}"

    def _scale(self, frac: int) -> str:
        name = f"scale_{frac}".replace("-", "m")
        if not any(init.name == name for init in self.inits):
            self.inits.append(numpy_helper.from_array(np.array(2.0**-frac, dtype=np.float32), name))
        return name

    def _zero(self, dtype: int = TensorProto.INT8) -> str:
        name = "zero_i8" if dtype == TensorProto.INT8 else "zero_i32"
        if not any(init.name == name for init in self.inits):
            self.inits.append(helper.make_tensor(name, dtype, [], [0]))
        return name

    def _qdq(self, tensor: str, frac: int) -> str:
        q, dq = self._id("q"), self._id("dq")
        self.nodes.append(helper.make_node("QuantizeLinear", [tensor, self._scale(frac), self._zero()], [q], name=q))
        self.nodes.append(helper.make_node("DequantizeLinear", [q, self._scale(frac), self._zero()], [dq], name=dq))
        self.frac[dq] = frac
        return dq

    def _const(self, values: np.ndarray, frac: int, stem: str) -> str:
        raw, dq = self._id(stem), self._id(stem + "_dq")
        self.inits.append(numpy_helper.from_array(values, raw))
        zero = self._zero(TensorProto.INT8 if values.dtype == np.int8 else TensorProto.INT32)
        inputs = [raw, self._scale(frac)] + ([zero] if values.dtype == np.int8 else [])
        self.nodes.append(helper.make_node("DequantizeLinear", inputs, [dq], name=dq))
        return dq

    @staticmethod
    def _out_frac(f_acc: int, fan_in: int) -> int:
        # |acc| ~ sqrt(fan_in) * 32 (weights) * 24 (activations) LSB: aim the output at ~+-40 LSB.
        return f_acc - max(0, round(math.log2(math.sqrt(fan_in) * 32 * 24 / 40)))

    def conv(
        self, x: str, out_ch: int, kernel: tuple[int, int], strides: tuple[int, int] = (1, 1),
        pads: tuple[int, int, int, int] = (0, 0, 0, 0), group: int = 1, relu: bool = True, in_ch: int | None = None,
    ) -> str:
        """Conv [+ Relu] + Q/DQ; ``in_ch`` is the input's channel count."""
        assert in_ch is not None
        w = self.rng.integers(-64, 64, size=(out_ch, in_ch // group, *kernel)).astype(np.int8)
        f_a = self.frac[x]
        b = self.rng.integers(-3000, 3000, size=out_ch).astype(np.int32)
        name = self._id("conv")
        attrs = {"kernel_shape": list(kernel), "strides": list(strides), "pads": list(pads)}
        if group != 1:
            attrs["group"] = group
        self.nodes.append(helper.make_node("Conv", [x, self._const(w, WEIGHT_FRAC, "w"), self._const(b, f_a + WEIGHT_FRAC, "b")], [name], name=name, **attrs))
        return self._finish(name, f_a + WEIGHT_FRAC, w[0].size, relu)

    def gemm(self, x: str, n_in: int, n_out: int, relu: bool = True) -> str:
        """Gemm (transB=1) [+ Relu] + Q/DQ."""
        w = self.rng.integers(-64, 64, size=(n_out, n_in)).astype(np.int8)
        f_a = self.frac[x]
        b = self.rng.integers(-3000, 3000, size=n_out).astype(np.int32)
        name = self._id("gemm")
        self.nodes.append(helper.make_node("Gemm", [x, self._const(w, WEIGHT_FRAC, "w"), self._const(b, f_a + WEIGHT_FRAC, "b")], [name], name=name, transB=1))
        return self._finish(name, f_a + WEIGHT_FRAC, n_in, relu)

    def _finish(self, tensor: str, f_acc: int, fan_in: int, relu: bool) -> str:
        if relu:
            r = self._id("relu")
            self.nodes.append(helper.make_node("Relu", [tensor], [r], name=r))
            tensor = r
        return self._qdq(tensor, self._out_frac(f_acc, fan_in))

    def maxpool(self, x: str, kernel: tuple[int, int], strides: tuple[int, int], pads: tuple[int, int, int, int] = (0, 0, 0, 0)) -> str:
        name = self._id("maxpool")
        self.nodes.append(helper.make_node("MaxPool", [x], [name], name=name, kernel_shape=list(kernel), strides=list(strides), pads=list(pads)))
        self.frac[name] = self.frac[x]
        return name

    def add(self, a: str, b: str, relu: bool = True) -> str:
        """A residual Add of two quantised activations [+ Relu] + Q/DQ at the coarser input scale."""
        name = self._id("add")
        self.nodes.append(helper.make_node("Add", [a, b], [name], name=name))
        tensor = name
        if relu:
            r = self._id("relu")
            self.nodes.append(helper.make_node("Relu", [tensor], [r], name=r))
            tensor = r
        return self._qdq(tensor, min(self.frac[a], self.frac[b]) - 1)

    def avgpool(self, x: str, kernel: tuple[int, int] | None = None, strides: tuple[int, int] = (1, 1), pads: tuple[int, int, int, int] = (0, 0, 0, 0)) -> str:
        """AveragePool (``kernel``; padding not counted) or GlobalAveragePool (None) + Q/DQ one bit
        finer (averages have a fraction)."""
        name = self._id("avgpool")
        if kernel is None:
            self.nodes.append(helper.make_node("GlobalAveragePool", [x], [name], name=name))
        else:
            attrs = {"pads": list(pads)} if any(pads) else {}
            self.nodes.append(helper.make_node("AveragePool", [x], [name], name=name, kernel_shape=list(kernel), strides=list(strides), **attrs))
        return self._qdq(name, self.frac[x] + 1)

    def flatten(self, x: str) -> str:
        name = self._id("flatten")
        self.nodes.append(helper.make_node("Flatten", [x], [name], name=name, axis=1))
        self.frac[name] = self.frac[x]
        return name

    def model(self, output: str, out_dims: list[int]) -> onnx.ModelProto:
        """The checked model; ``output`` becomes the graph output ``output``."""
        for node in self.nodes:
            node.output[:] = ["output" if o == output else o for o in node.output]
            node.input[:] = ["output" if i == output else i for i in node.input]
        graph = helper.make_graph(
            self.nodes, self.name,
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", *self.input_shape])],
            [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", *out_dims])],
            initializer=self.inits,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)
        onnx.checker.check_model(model)
        return model


def _w(channels: int, width: float) -> int:
    return max(1, round(channels * width))


def mlp(seed: int = 0, width: float = 1.0, sizes: tuple[int, ...] = (784, 2048, 2048, 10)) -> onnx.ModelProto:
    """784-2048-2048-10, ReLU between (``width`` scales the hidden layers)."""
    widths = [sizes[0], *(_w(s, width) for s in sizes[1:-1]), sizes[-1]]
    net = QdqNet("mlp", [widths[0]], seed)
    x = net.x
    for i in range(len(widths) - 1):
        x = net.gemm(x, widths[i], widths[i + 1], relu=i < len(widths) - 2)
    return net.model(x, [widths[-1]])


def autoencoder(seed: int = 0, width: float = 1.0) -> onnx.ModelProto:
    """MLPerf Tiny anomaly detection: 640-128x4-8-128x4-640, ReLU on every hidden layer."""
    hidden, code = _w(128, width), _w(8, width)
    widths = [640, hidden, hidden, hidden, hidden, code, hidden, hidden, hidden, hidden, 640]
    net = QdqNet("autoencoder", [640], seed)
    x = net.x
    for i in range(len(widths) - 1):
        x = net.gemm(x, widths[i], widths[i + 1], relu=i < len(widths) - 2)
    return net.model(x, [640])


def cifar_cnn(seed: int = 0, width: float = 1.0, size: int = 32) -> onnx.ModelProto:
    """3x32x32, conv 32-32-pool-64-64-pool (3x3, pad 1), fc 4096-512-10."""
    c1, c2, hidden = _w(32, width), _w(64, width), _w(512, width)
    net = QdqNet("cifar_cnn", [3, size, size], seed)
    x = net.conv(net.x, c1, (3, 3), pads=(1, 1, 1, 1), in_ch=3)
    x = net.conv(x, c1, (3, 3), pads=(1, 1, 1, 1), in_ch=c1)
    x = net.maxpool(x, (2, 2), (2, 2))
    x = net.conv(x, c2, (3, 3), pads=(1, 1, 1, 1), in_ch=c1)
    x = net.conv(x, c2, (3, 3), pads=(1, 1, 1, 1), in_ch=c2)
    x = net.maxpool(x, (2, 2), (2, 2))
    x = net.flatten(x)
    x = net.gemm(x, c2 * (size // 4) ** 2, hidden)
    x = net.gemm(x, hidden, 10, relu=False)
    return net.model(x, [10])


def _same(size: int, kernel: int, stride: int) -> tuple[int, int, int]:
    """TensorFlow 'same' padding (as the MLPerf Tiny reference models are trained): the output
    size and the padding before and after (the odd pixel after)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return out, total // 2, total - total // 2


def resnet8(seed: int = 0, width: float = 1.0, size: int = 32) -> onnx.ModelProto:
    """MLPerf Tiny image classification ResNet-8 (CIFAR-10, 3x32x32): a 3x3 stem of 16, three
    residual stacks of 16, 32, 64 channels (the second and third start with a stride-2 3x3 conv and
    a 1x1 stride-2 shortcut), an 8x8 average pool and a 10-way dense layer."""
    net = QdqNet("resnet8", [3, size, size], seed)
    channels = [_w(16, width), _w(32, width), _w(64, width)]
    x = net.conv(net.x, channels[0], (3, 3), pads=(1, 1, 1, 1), in_ch=3)
    in_ch, hw = channels[0], size
    for stack, ch in enumerate(channels):
        stride = 1 if stack == 0 else 2
        out_hw, before, after = _same(hw, 3, stride)
        y = net.conv(x, ch, (3, 3), strides=(stride, stride), pads=(before, before, after, after), in_ch=in_ch)
        y = net.conv(y, ch, (3, 3), pads=(1, 1, 1, 1), relu=False, in_ch=ch)
        shortcut = x if stride == 1 else net.conv(x, ch, (1, 1), strides=(2, 2), relu=False, in_ch=in_ch)
        x = net.add(shortcut, y)
        in_ch, hw = ch, out_hw
    x = net.avgpool(x, (hw, hw), (hw, hw))
    x = net.gemm(net.flatten(x), in_ch, 10, relu=False)
    return net.model(x, [10])


def ds_cnn(seed: int = 0, width: float = 1.0) -> onnx.ModelProto:
    """MLPerf Tiny keyword spotting DS-CNN (1x49x10 MFCCs): a 10x4 stride-2 conv of 64 ('same'),
    four depthwise-separable blocks (3x3 depthwise + 1x1 pointwise, 64 channels), a global average
    pool and a 12-way dense layer."""
    ch = _w(64, width)
    net = QdqNet("ds_cnn", [1, 49, 10], seed)
    oh, top, bottom = _same(49, 10, 2)
    ow, left, right = _same(10, 4, 2)
    x = net.conv(net.x, ch, (10, 4), strides=(2, 2), pads=(top, left, bottom, right), in_ch=1)
    for _ in range(4):
        x = net.conv(x, ch, (3, 3), pads=(1, 1, 1, 1), group=ch, in_ch=ch)
        x = net.conv(x, ch, (1, 1), in_ch=ch)
    x = net.avgpool(x)
    x = net.gemm(net.flatten(x), ch, 12, relu=False)
    return net.model(x, [12])


def mobilenet_v1(seed: int = 0, width: float = 1.0, alpha: float = 0.25, size: int = 96) -> onnx.ModelProto:
    """MLPerf Tiny visual wake words MobileNetV1 (alpha 0.25, 3x96x96): a 3x3 stride-2 conv, 13
    depthwise-separable blocks (stride 2 at blocks 2, 4, 6, 12), a global average pool and a 2-way
    dense layer."""
    def chans(c: int) -> int:
        return _w(max(1, round(c * alpha)), width)

    plan = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1)]
    net = QdqNet("mobilenet_v1", [3, size, size], seed)
    hw, before, after = _same(size, 3, 2)
    in_ch = chans(32)
    x = net.conv(net.x, in_ch, (3, 3), strides=(2, 2), pads=(before, before, after, after), in_ch=3)
    for out, stride in plan:
        out_hw, before, after = _same(hw, 3, stride)
        x = net.conv(x, in_ch, (3, 3), strides=(stride, stride), pads=(before, before, after, after), group=in_ch, in_ch=in_ch)
        x = net.conv(x, chans(out), (1, 1), in_ch=in_ch)
        in_ch, hw = chans(out), out_hw
    x = net.avgpool(x)
    x = net.gemm(net.flatten(x), in_ch, 2, relu=False)
    return net.model(x, [2])


def residual_toy(seed: int = 0, ch: int = 4, size: int = 6) -> onnx.ModelProto:
    """A small residual network for the spill and cycle tests: a 3x3 stem of ``ch`` (2 x size x size
    input), two 3x3 convs and a residual Add with the stem's output (the shortcut spans two layers),
    a 3x3 stride-2 AveragePool with padding (not counted), a dense layer of 3. With the maps of
    ``ch * size**2`` words, a neuron buffer of three maps keeps the shortcut, one of two maps stores
    it to DRAM, and one smaller than two spills the convs, the add and the average pool in bands."""
    net = QdqNet("residual_toy", [2, size, size], seed)
    x = net.conv(net.x, ch, (3, 3), pads=(1, 1, 1, 1), in_ch=2)
    y = net.conv(x, ch, (3, 3), pads=(1, 1, 1, 1), in_ch=ch)
    y = net.conv(y, ch, (3, 3), pads=(1, 1, 1, 1), relu=False, in_ch=ch)
    x = net.add(x, y)
    x = net.avgpool(x, (3, 3), (2, 2), pads=(1, 1, 1, 1))
    out_hw = (size + 2 - 3) // 2 + 1
    x = net.gemm(net.flatten(x), ch * out_hw * out_hw, 3, relu=False)
    return net.model(x, [3])


def pooled_toy(pool: str = "global", seed: int = 3) -> onnx.ModelProto:
    """A 3x3 conv of 16 on 2x8x8, then GlobalAveragePool (``global``) or a 2x2 stride-2 MaxPool
    (``max``), then a dense layer of 3: on a 256-word neuron buffer not even one output row of all
    16 channels of the pool fits beside its input rows."""
    net = QdqNet(f"{pool}_pool", [2, 8, 8], seed)
    x = net.conv(net.x, 16, (3, 3), pads=(1, 1, 1, 1), in_ch=2)
    if pool == "global":
        x, features = net.avgpool(x), 16
    else:
        x, features = net.maxpool(x, (2, 2), (2, 2)), 16 * 4 * 4
    x = net.gemm(net.flatten(x), features, 3, relu=False)
    return net.model(x, [3])


BUILDERS: dict[str, Callable[..., onnx.ModelProto]] = {
    "resnet8": resnet8,
    "ds_cnn": ds_cnn,
    "mobilenet_v1": mobilenet_v1,
    "mlp": mlp,
    "autoencoder": autoencoder,
    "cifar_cnn": cifar_cnn,
}
