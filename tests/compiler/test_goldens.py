"""compiler/goldens.py: coverage-chosen golden inputs and the coverage figures they record."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "bringup"))

from nets import cnn_layers, rare_mlp_layers  # noqa: E402

from axtrain.compiler import goldens  # noqa: E402
from axtrain.hwmodels.fixedpoint import quantize  # noqa: E402
from axtrain.hwmodels.layers import forward, im2col  # noqa: E402


def brute_force_exercised(layers, q: np.ndarray) -> np.ndarray:
    """The criterion by loops: word (j, i) of a compute layer is exercised by an image when some
    output position of neuron j that the layer does not clamp multiplies input i != 0."""
    outputs = forward(layers, q)
    inputs = [q] + outputs[:-1]
    words = []
    for layer, a, out in zip(layers, inputs, outputs, strict=True):
        if not layer.has_weights:
            continue
        m = layer.weight.shape[0]
        k = layer.weight.size // m
        cov = np.zeros((m, k), dtype=bool)
        for n in range(a.shape[0]):
            if layer.op == "dense":
                patches, live = a[n][None, :], out[n][:, None]
            else:
                patches = im2col(a[n : n + 1], *layer.weight.shape[2:], layer.stride_hw, layer.pads_tlbr, layer.input_format.zero_point)[0]
                live = out[n].reshape(m, -1)
            for j in range(m):
                for q_pos in range(patches.shape[0]):
                    if not layer.relu or live[j, q_pos] > 0:
                        cov[j] |= patches[q_pos] != 0
        words.append(cov.reshape(-1))
    return np.concatenate(words)


def test_exercised_matches_the_brute_force_definition() -> None:
    layers, shape = cnn_layers()
    fmt = layers[0].input_format
    x, _ = goldens.legacy_inputs(shape, fmt, 3)
    q = quantize(x, fmt)
    fast = goldens.exercised(layers, q).any(axis=0)
    assert fast.sum() < fast.size  # some words unexercised by these three: the comparison means something
    assert np.array_equal(fast, brute_force_exercised(layers, q))


def test_selection_is_seeded_keeps_the_ties_input_and_covers_more() -> None:
    layers, shape = rare_mlp_layers()
    fmt = layers[0].input_format
    a = goldens.select_goldens(layers, shape, fmt, 8)
    b = goldens.select_goldens(layers, shape, fmt, 8)
    assert np.array_equal(a.inputs, b.inputs) and a.inputs.dtype == np.float32 and a.inputs.shape == (8, 6)
    legacy, _ = goldens.legacy_inputs(shape, fmt)
    assert np.array_equal(a.inputs[0], legacy[0])  # the rounding-ties input stays first
    assert np.all(np.abs(a.inputs[0] / fmt.scale % 1) == 0.5)
    assert a.covered.sum() == 80 and a.legacy_covered == 70
    more = goldens.select_goldens(layers, shape, fmt, 600)  # more than the pool: topped up, still seeded
    assert more.inputs.shape == (600, 6) and np.array_equal(more.inputs[:8], goldens.select_goldens(layers, shape, fmt, 600).inputs[:8])


def interpreter_coverage(program, arch, weights, bias, dram) -> list[bool | None]:
    """The definition, instruction by instruction: run the ISA reference interpreter over the goldens
    and ask of each instruction whether it moved or computed a nonzero value (None: MODE, CONV, END)."""
    from axtrain.runtime.interpreter import MachineState, local_words_used, step

    state = MachineState(arch, weights, bias, np.array(dram, np.int64), local_words=local_words_used(program))
    outputs: dict = {}
    verdicts: list[bool | None] = []
    for index, ins in enumerate(program):
        o = ins.operands()
        op = ins.op
        value = None
        if op == "MAC":  # the products, before the step (it does not change its operands)
            e, k = o["m"] * o["p"], o["k"]
            value = bool(np.any((state.nlm[:, :e, :k] != 0) & (state.wlm[None, :e, :k] != 0)))
        step(state, ins, index, outputs)
        if op == "LDW":
            value = bool(np.any(state.wb[o["wb"] : o["wb"] + o["rows"] * o["cols"]]))
        elif op == "LDB":
            value = bool(np.any(state.bb[o["bb"] : o["bb"] + o["count"]]))
        elif op in ("LDN", "SYNC"):
            value = bool(np.any(state.nb[:, o["nb"] : o["nb"] + o["count"]]))
        elif op == "STN":
            value = bool(np.any(state.dram_a[:, o["dram"] : o["dram"] + o["count"]]))
        elif op == "DISTW":
            value = bool(np.any(state.wlm[: o["m"] * o["p"], : o["k"]]))
        elif op == "DISTN":
            value = bool(np.any(state.nlm[:, : o["m"] * o["p"], : o["k"]]))
        elif op == "RELU":
            value = bool(np.any(state.acc[:, : o["m"] * o["p"]]))
        elif op == "REQ":
            e = np.arange(o["m"] * o["p"])
            value = bool(np.any(state.nb[:, o["nb"] + (e // o["p"]) * o["ostride"] + e % o["p"]]))
        elif op == "POOL":
            oh, ow = (o["h"] + o["pt"] + o["pb"] - o["kh"]) // o["sh"] + 1, (o["w"] + o["pl"] + o["pr"] - o["kw"]) // o["sw"] + 1
            value = bool(np.any(state.nb[:, o["dst"] : o["dst"] + o["c"] * oh * ow]))
        verdicts.append(value)
    return verdicts


@pytest.mark.parametrize("arch_name", ["default", "tiny"])
@pytest.mark.parametrize("inputs", ["goldens", "zeros"])
def test_instruction_coverage_agrees_with_the_interpreter(arch_name: str, inputs: str, tmp_path: Path) -> None:
    import json

    from nets import compile_bundle, export

    from axtrain.formats.arch import Architecture
    from axtrain.formats.bundle import load_bundle

    tiny = Architecture(pe_rows=2, pe_cols=3, weight_buffer_bytes=96, neuron_buffer_bytes=4096, bias_buffer_words=4,
                        pe_weight_memory_bytes=16, pe_neuron_memory_bytes=16)
    layers, shape = cnn_layers()
    b = load_bundle(compile_bundle(export(layers, shape, tmp_path / "m.onnx"), tmp_path / "b", tiny if arch_name == "tiny" else None))
    q = b.load_npy("golden/inputs_int.npy")
    if inputs == "zeros":  # an all-zero input leaves the input load and the first layer's tiles without data
        q = np.zeros_like(q[:1])
    dram = np.zeros((q.shape[0], b.manifest.activation_words), np.int64)
    dram[:, b.manifest.input.dram : b.manifest.input.dram + q[0].size] = q.reshape(q.shape[0], -1)
    verdicts = interpreter_coverage(b.program, b.arch, b.weights, b.bias, dram)
    records = json.loads((b.path / "layers.json").read_text())
    hit, counted, missed = goldens.instruction_coverage(layers, records, b.program, b.weights, b.bias, q)
    assert counted == sum(v is not None for v in verdicts)
    assert hit == sum(bool(v) for v in verdicts)
    assert missed == [i for i, v in enumerate(verdicts) if v is False][:16]
    if inputs == "zeros":
        assert hit < counted  # the comparison covers instructions without data too
    else:
        c = b.manifest.golden_coverage
        assert (c.instructions, c.instructions_exercised, c.unexercised_instructions) == (counted, hit, missed)
