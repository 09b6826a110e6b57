"""Hand-built QDQ ONNX graphs (onnx.helper, not the exporter) for the compiler tests.

``build_model(specs, input_shape, f_in)`` assembles the chain input -> Q -> DQ -> layers -> output
from plain layer specs; each test states its numbers, the builder only wires nodes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


@dataclass
class Spec:
    """One layer of a hand-built graph."""

    op: str  # gemm | gemm_t | matmul | conv | maxpool | flatten
    weight: np.ndarray | None = None  # int, ONNX layout of the op ([out, in] for gemm)
    bias: np.ndarray | None = None  # int32
    fw: int = 6
    fo: int = 4
    relu: bool = False
    stride: int = 1
    pad: int = 0
    kernel: int = 2
    metadata: dict[str, str] = field(default_factory=dict)
    out_dtype: int = TensorProto.INT8
    name: str = ""


def _out_shape(specs: list[Spec], input_shape: list[Any]) -> list[Any]:
    last = specs[-1]
    if last.op in ("gemm", "matmul"):
        return [input_shape[0], last.weight.shape[0]]
    if last.op == "gemm_t":
        return [input_shape[0], last.weight.shape[1]]
    return [input_shape[0]] + [None] * (len(input_shape) - 1 if last.op != "flatten" else 1)


def _scalar(name: str, value: float) -> onnx.TensorProto:
    return numpy_helper.from_array(np.array(value, dtype=np.float32), name)


def _zero(name: str, dtype: int) -> onnx.TensorProto:
    return helper.make_tensor(name, dtype, [], [0])


def build_model(
    specs: list[Spec],
    input_shape: list[Any],
    f_in: int = 4,
    in_dtype: int = TensorProto.INT8,
    model_metadata: dict[str, str] | None = None,
    opset: int = 21,
    output_shape: list[Any] | None = None,
) -> onnx.ModelProto:
    """Wire the chain; returns a checked ModelProto."""
    nodes, inits = [], []
    inits += [_scalar("s_in", 2.0**-f_in), _zero("z_in", in_dtype)]
    nodes.append(helper.make_node("QuantizeLinear", ["input", "s_in", "z_in"], ["q_in"], name="q_input"))
    nodes.append(helper.make_node("DequantizeLinear", ["q_in", "s_in", "z_in"], ["x0"], name="dq_input"))
    tensor, f_cur = "x0", f_in
    for i, s in enumerate(specs):
        name = s.name or f"{s.op}{i}"
        out = f"x{i + 1}"
        if s.op in ("gemm", "gemm_t", "matmul", "conv"):
            wdtype = TensorProto.INT8 if s.weight.dtype == np.int8 else TensorProto.INT16
            inits += [numpy_helper.from_array(s.weight, f"w{i}"), _scalar(f"sw{i}", 2.0**-s.fw), _zero(f"zw{i}", wdtype)]
            nodes.append(helper.make_node("DequantizeLinear", [f"w{i}", f"sw{i}", f"zw{i}"], [f"wf{i}"], name=f"dq_w{i}"))
            inits += [numpy_helper.from_array(s.bias.astype(np.int32), f"b{i}"), _scalar(f"sb{i}", 2.0 ** -(f_cur + s.fw))]
            nodes.append(helper.make_node("DequantizeLinear", [f"b{i}", f"sb{i}"], [f"bf{i}"], name=f"dq_b{i}"))
            if s.op == "gemm":
                node = helper.make_node("Gemm", [tensor, f"wf{i}", f"bf{i}"], [f"a{i}"], name=name, transB=1)
            elif s.op == "gemm_t":
                node = helper.make_node("Gemm", [tensor, f"wf{i}", f"bf{i}"], [f"a{i}"], name=name)
            elif s.op == "matmul":
                node = helper.make_node("MatMul", [tensor, f"wf{i}"], [f"mm{i}"], name=name)
                nodes.append(node)
                node = helper.make_node("Add", [f"mm{i}", f"bf{i}"], [f"a{i}"], name=f"add{i}")
            else:
                node = helper.make_node("Conv", [tensor, f"wf{i}", f"bf{i}"], [f"a{i}"], name=name,
                                        strides=[s.stride, s.stride], pads=[s.pad] * 4, kernel_shape=list(s.weight.shape[2:]))
            if s.op != "matmul":
                for key, value in s.metadata.items():
                    node.metadata_props.add(key=key, value=value)
            else:
                for key, value in s.metadata.items():
                    nodes[-1].metadata_props.add(key=key, value=value)
            nodes.append(node)
            last = f"a{i}"
            if s.relu:
                nodes.append(helper.make_node("Relu", [last], [f"r{i}"], name=f"relu{i}"))
                last = f"r{i}"
            inits += [_scalar(f"so{i}", 2.0**-s.fo), _zero(f"zo{i}", s.out_dtype)]
            nodes.append(helper.make_node("QuantizeLinear", [last, f"so{i}", f"zo{i}"], [f"qo{i}"], name=f"q_out{i}"))
            nodes.append(helper.make_node("DequantizeLinear", [f"qo{i}", f"so{i}", f"zo{i}"], [out], name=f"dq_out{i}"))
            f_cur = s.fo
        elif s.op == "maxpool":
            nodes.append(helper.make_node("MaxPool", [tensor], [out], name=name, kernel_shape=[s.kernel, s.kernel], strides=[s.stride, s.stride]))
        elif s.op == "flatten":
            nodes.append(helper.make_node("Flatten", [tensor], [out], name=name, axis=1))
        else:
            raise ValueError(s.op)
        tensor = out
    # rename the last tensor to "output"
    for node in nodes:
        node.output[:] = ["output" if o == tensor else o for o in node.output]
    graph = helper.make_graph(
        nodes, "handbuilt",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, input_shape)],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, output_shape or _out_shape(specs, input_shape))],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)
    for key, value in (model_metadata or {}).items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model)
    return model


def random_dense(rng: np.random.Generator, n_out: int, n_in: int, **kw: Any) -> Spec:
    """A Gemm spec with random int8 weights and int32 biases."""
    return Spec("gemm", rng.integers(-128, 128, size=(n_out, n_in)).astype(np.int8), rng.integers(-2000, 2000, size=n_out), **kw)


def random_conv(rng: np.random.Generator, out_ch: int, in_ch: int, k: int, **kw: Any) -> Spec:
    """A Conv spec with random int8 weights."""
    return Spec("conv", rng.integers(-128, 128, size=(out_ch, in_ch, k, k)).astype(np.int8), rng.integers(-2000, 2000, size=out_ch), **kw)


def mlp_specs(rng: np.random.Generator, sizes: list[int]) -> list[Spec]:
    """Dense layers sizes[0] -> sizes[1] -> ...; ReLU on all but the last; fo chosen so values spread."""
    specs = []
    for i in range(len(sizes) - 1):
        specs.append(random_dense(rng, sizes[i + 1], sizes[i], fw=7, fo=0 if i == 0 else 1, relu=i < len(sizes) - 2))
    return specs


def lenet_specs(rng: np.random.Generator) -> list[Spec]:
    """LeNet-5 shaped: conv5(6,pad2)-pool-conv5(16)-pool-flatten-120-84-10."""
    return [
        random_conv(rng, 6, 1, 5, pad=2, fw=7, fo=2, relu=True),
        Spec("maxpool", kernel=2, stride=2),
        random_conv(rng, 16, 6, 5, fw=7, fo=0, relu=True),
        Spec("maxpool", kernel=2, stride=2),
        Spec("flatten"),
        random_dense(rng, 120, 400, fw=7, fo=0, relu=True),
        random_dense(rng, 84, 120, fw=7, fo=0, relu=True),
        random_dense(rng, 10, 84, fw=7, fo=1),
    ]
