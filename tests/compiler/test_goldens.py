"""compiler/goldens.py: coverage-chosen golden inputs and the coverage figures they record."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

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
                patches = im2col(a[n : n + 1], *layer.weight.shape[2:], layer.stride, layer.padding)[0]
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


def test_instruction_coverage_counts_data_instructions(tmp_path: Path) -> None:
    from nets import compile_bundle, export

    from axtrain.formats.bundle import load_bundle

    layers, shape = cnn_layers()
    b = load_bundle(compile_bundle(export(layers, shape, tmp_path / "m.onnx"), tmp_path / "b"))
    c = b.manifest.golden_coverage
    data = [ins for ins in b.program if ins.op not in ("MODE", "CONV", "END")]
    assert c.instructions == len(data) and c.instructions_exercised == len(data) and c.unexercised_instructions == []
    # All-zero inputs leave the first layer's loads of the input, its DISTN and MAC without data.
    q = np.zeros((1, b.manifest.activation_words), dtype=np.int64)
    hit, counted, missed = goldens.instruction_coverage(b.program, b.arch, b.weights, b.bias, q)
    assert counted == len(data) and hit < counted and missed[0] == 0  # instruction 0 is LDN of the input
