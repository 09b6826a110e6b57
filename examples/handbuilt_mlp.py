"""A user's recipe: build a small fixed-point MLP as a QDQ ONNX graph by hand, compile it, verify it.

    python examples/handbuilt_mlp.py [OUT_DIR]

The graph follows docs/onnx-schema.md without any axtrain metadata (so the multiplier is exact and
the weight SRAM nominal): input -> Q -> DQ -> Gemm(DQ(int8 W), DQ(int32 b)) -> Relu -> Q -> DQ ->
Gemm -> Q -> DQ -> output, every scale a power of two and every zero point 0.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def qdq(nodes: list, inits: list, source: str, out: str, frac: int, tag: str) -> None:
    """QuantizeLinear -> DequantizeLinear at scale 2**-frac, int8, zero point 0."""
    inits += [numpy_helper.from_array(np.array(2.0**-frac, np.float32), f"{tag}.scale"), helper.make_tensor(f"{tag}.zero", TensorProto.INT8, [], [0])]
    nodes.append(helper.make_node("QuantizeLinear", [source, f"{tag}.scale", f"{tag}.zero"], [f"{tag}.q"], name=f"{tag}/Q"))
    nodes.append(helper.make_node("DequantizeLinear", [f"{tag}.q", f"{tag}.scale", f"{tag}.zero"], [out], name=f"{tag}/DQ"))


def dense(nodes: list, inits: list, source: str, out: str, weight: np.ndarray, bias: np.ndarray, f_in: int, f_w: int, tag: str) -> None:
    """Gemm with int8 weights at 2**-f_w and int32 bias at 2**-(f_in + f_w)."""
    inits += [
        numpy_helper.from_array(weight.astype(np.int8), f"{tag}.w"),
        numpy_helper.from_array(np.array(2.0**-f_w, np.float32), f"{tag}.w.scale"),
        numpy_helper.from_array(bias.astype(np.int32), f"{tag}.b"),
        numpy_helper.from_array(np.array(2.0 ** -(f_in + f_w), np.float32), f"{tag}.b.scale"),
    ]
    nodes.append(helper.make_node("DequantizeLinear", [f"{tag}.w", f"{tag}.w.scale"], [f"{tag}.wf"], name=f"{tag}/DQw"))
    nodes.append(helper.make_node("DequantizeLinear", [f"{tag}.b", f"{tag}.b.scale"], [f"{tag}.bf"], name=f"{tag}/DQb"))
    nodes.append(helper.make_node("Gemm", [source, f"{tag}.wf", f"{tag}.bf"], [out], name=f"{tag}/Gemm", transB=1))


def build(seed: int = 0) -> onnx.ModelProto:
    """A 8-16-3 MLP with random int8 weights (input s8.5, hidden s8.1, output s8.0)."""
    rng = np.random.default_rng(seed)
    nodes: list = []
    inits: list = []
    qdq(nodes, inits, "input", "x0", 5, "in")
    dense(nodes, inits, "x0", "h", rng.integers(-127, 128, (16, 8)), rng.integers(-999, 999, 16), 5, 7, "fc1")
    nodes.append(helper.make_node("Relu", ["h"], ["h_relu"], name="fc1/Relu"))
    qdq(nodes, inits, "h_relu", "x1", 1, "fc1.out")
    dense(nodes, inits, "x1", "y", rng.integers(-127, 128, (3, 16)), rng.integers(-99, 99, 3), 1, 7, "fc2")
    qdq(nodes, inits, "y", "output", 0, "fc2.out")
    graph = helper.make_graph(
        nodes, "handbuilt_mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 8])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 3])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)
    onnx.checker.check_model(model, full_check=True)
    return model


def main(out_dir: Path) -> None:
    from axtrain.atomic import write_bytes
    from axtrain.compiler.cli import summary
    from axtrain.compiler.pipeline import compile_to_bundle
    from axtrain.runtime.verify import verify_bundle

    out_dir.mkdir(parents=True, exist_ok=True)
    model_path = out_dir / "handbuilt_mlp.onnx"
    write_bytes(model_path, build().SerializeToString())  # temp name + rename, like every artifact
    bundle = compile_to_bundle(model_path, out_dir / "handbuilt_mlp.bundle", overwrite=True)
    print(summary(bundle))
    print("\n".join(verify_bundle(bundle).lines()))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("handbuilt_mlp_out"))
