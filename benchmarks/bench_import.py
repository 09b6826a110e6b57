"""Compile time per node with the import normalisation passes (issue 12).

1. The whole pipeline against the same pipeline without the normalisation passes
   (fold_constants, lower_qonnx, flatten_shapes, canonical_qdq, drop_identity) on a 32-layer QDQ MLP
   in onnxruntime's pattern (``Gemm -> Q -> DQ -> Relu -> Q -> DQ``, weights quantised in the graph
   from float initializers), rewritten once beforehand into the dialect the bare pipeline reads.
   Limit 1.5: the new passes may add at most half again.
2. Compile time per node of a 128-layer graph against that of an 8-layer one (limit 1.5): time per
   node does not grow with the graph (every pass is linear in the nodes).
3. ISA 2: the 32-layer MLP with non-power-of-two scales (requant table, LDQ and REQ rq=1 emitted)
   against the same MLP with power-of-two scales (limit 1.5), and its time per node at 128 layers
   against 8 (limit 1.5): the requantisation patterns add no per-node growth.

Best of 5 after one warm-up; the ONNX file is parsed once outside the timing (import is not a pass).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):  # run as `python benchmarks/bench_import.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from benchmarks.common import Result, alternated_best

WIDTH = 32


def _model(layers: int, pow2: bool = True) -> object:
    """An MLP as onnxruntime's quantizer writes it (power-of-two scales, or calibrated-looking ones)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    f = lambda name, v: numpy_helper.from_array(np.array(v, dtype=np.float32), name)  # noqa: E731
    scales = (2**-4, 2**-7, 2**-3) if pow2 else (0.0517, 0.00731, 0.1093)
    inits = [f("s_in", scales[0]), f("s_w", scales[1]), f("s_a", scales[2]), helper.make_tensor("z", TensorProto.INT8, [], [0])]
    nodes = [helper.make_node("QuantizeLinear", ["input", "s_in", "z"], ["q0"]), helper.make_node("DequantizeLinear", ["q0", "s_in", "z"], ["x0"])]
    tensor = "x0"
    for i in range(layers):
        inits.append(numpy_helper.from_array(rng.normal(0, 0.1, (WIDTH, WIDTH)).astype(np.float32), f"w{i}"))
        nodes += [
            helper.make_node("QuantizeLinear", [f"w{i}", "s_w", "z"], [f"wq{i}"]),
            helper.make_node("DequantizeLinear", [f"wq{i}", "s_w", "z"], [f"wd{i}"]),
            helper.make_node("Gemm", [tensor, f"wd{i}"], [f"acc{i}"], transB=1),
            helper.make_node("QuantizeLinear", [f"acc{i}", "s_a", "z"], [f"aq{i}"]),
            helper.make_node("DequantizeLinear", [f"aq{i}", "s_a", "z"], [f"ad{i}"]),
            helper.make_node("Relu", [f"ad{i}"], [f"r{i}"]),
            helper.make_node("QuantizeLinear", [f"r{i}", "s_a", "z"], [f"rq{i}"]),
            helper.make_node("DequantizeLinear", [f"rq{i}", "s_a", "z"], [f"x{i + 1}"]),
        ]
        tensor = f"x{i + 1}"
    nodes[-1].output[0] = "y"
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", WIDTH])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", WIDTH])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _imported(layers: int, tmp: Path, pow2: bool = True) -> object:
    import onnx

    from axtrain.compiler.onnx_import import import_onnx

    path = tmp / f"mlp{layers}{'' if pow2 else '-requant'}.onnx"
    onnx.save(_model(layers, pow2), path)
    return import_onnx(path)


def run(quick: bool = False) -> list[Result]:
    """The normalisation passes' cost, and compile time per node at two graph sizes."""
    from axtrain.compiler.pipeline import NORMALISATION, PASSES, run_passes

    bare = PASSES[len(NORMALISATION):]
    repeat = 3 if quick else 5
    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
        ir = _imported(32, Path(tmp))
        normalised = run_passes(ir, NORMALISATION)  # what the bare pipeline can read
        # Alternated rounds, best of each side (common.alternated_best): at ~20 ms a call, one
        # sequential best-of-5 per side read 0.85x to 1.85x on the shared machine for the same code.
        t_all, t_bare = alternated_best(lambda: run_passes(ir), lambda: run_passes(normalised, bare), repeat)
        small, large = _imported(8, Path(tmp)), _imported(128, Path(tmp))
        t_small, t_large = alternated_best(lambda: run_passes(small), lambda: run_passes(large), repeat, repeat=2)
        t_small, t_large = t_small / len(small.graph.nodes), t_large / len(large.graph.nodes)
        requant = _imported(32, Path(tmp), pow2=False)
        assert run_passes(requant).emitted.requant_image.size  # the requant path really runs
        t_requant, t_pow2 = alternated_best(lambda: run_passes(requant), lambda: run_passes(ir), repeat)
        rq_small, rq_large = _imported(8, Path(tmp), pow2=False), _imported(128, Path(tmp), pow2=False)
        t_rq_small, t_rq_large = alternated_best(lambda: run_passes(rq_small), lambda: run_passes(rq_large), repeat, repeat=2)
        t_rq_small, t_rq_large = t_rq_small / len(rq_small.graph.nodes), t_rq_large / len(rq_large.graph.nodes)
    nodes = len(ir.graph.nodes)
    return [
        Result(f"compile, 32-layer onnxruntime-style MLP ({nodes} nodes)", t_all, "same, normalised graph, without the normalisation passes", t_bare, limit=1.5, note="best of %d alternated rounds of 3" % repeat),
        Result("compile time per node, 128 layers", t_large, "per node, 8 layers", t_small, limit=1.5, note="linear passes: no growth per node"),
        Result("compile, 32-layer MLP, non-power-of-two scales (ISA 2 requant)", t_requant, "same MLP, power-of-two scales", t_pow2, limit=1.5, note="REQ rq=1 + LDQ"),
        Result("compile time per node, 128 layers, non-power-of-two", t_rq_large, "per node, 8 layers, non-power-of-two", t_rq_small, limit=1.5, note="no growth per node"),
    ]


if __name__ == "__main__":
    from benchmarks.common import format_table

    print(format_table(run(quick="--quick" in sys.argv)))
