"""End-to-end compile of hand-built QDQ graphs (onnx.helper, not the exporter): the bundle verifies,
and the interpreter, hwmodels.forward and onnxruntime agree bit for bit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from execution import ort_outputs
from onnx_graphs import Spec, build_model, lenet_specs, mlp_specs, random_conv, random_dense

from axtrain.compiler.package import write_compiled_bundle
from axtrain.compiler.pipeline import compile_model
from axtrain.formats.arch import Architecture
from axtrain.formats.bundle import load_bundle
from axtrain.hwmodels.fixedpoint import dequantize, quantize
from axtrain.hwmodels.layers import forward
from axtrain.hwmodels.multipliers import MultiplierMode
from axtrain.runtime.interpreter import run_bundle
from axtrain.runtime.verify import verify_bundle


def inputs_for(shape: tuple[int, ...], n: int, rng: np.random.Generator, span: float = 8.0) -> np.ndarray:
    return rng.uniform(-span, span, size=(n, *shape)).astype(np.float32)


def check_all_agree(model_path: Path, out: Path, rng: np.random.Generator, arch: Architecture | None = None, n: int = 16) -> None:
    ir = compile_model(model_path, arch or Architecture())
    write_compiled_bundle(ir, out)
    result = verify_bundle(out)
    assert len(result.layers) == len(ir.layers) and result.ok
    bundle = load_bundle(out)
    x = inputs_for(tuple(bundle.manifest.input.shape), n, rng)
    reference = forward(ir.layers, quantize(x, ir.input_format))
    produced = run_bundle(bundle, x)
    for ref, got in zip(reference, produced):
        np.testing.assert_array_equal(got, ref)
    # onnxruntime computes the exact network: equal floats at the last layer (exact multiples of one LSB).
    final = dequantize(produced[-1], ir.layers[-1].output_format)
    np.testing.assert_array_equal(final, ort_outputs(model_path, x).reshape(final.shape))
    # Not vacuous: outputs neither all saturated nor all zero.
    fmt = ir.layers[-1].output_format
    assert np.mean((produced[-1] > fmt.qmin) & (produced[-1] < fmt.qmax) & (produced[-1] != 0)) > 0.3


def test_handbuilt_mlp_compiles_verifies_and_matches(save_model, tmp_path: Path, rng: np.random.Generator) -> None:
    specs = mlp_specs(rng, [30, 64, 64, 2])
    specs[0].fo, specs[1].fo, specs[2].fo = -3, -4, -5
    path = save_model(build_model(specs, ["N", 30], f_in=4))
    check_all_agree(path, tmp_path / "mlp.bundle", rng)


def test_lenet_shaped_graph(save_model, tmp_path: Path, rng: np.random.Generator) -> None:
    specs = lenet_specs(rng)
    for spec, fo in zip([s for s in specs if s.weight is not None], [-1, -5, -6, -5, -5]):
        spec.fo = fo
    path = save_model(build_model(specs, ["N", 1, 28, 28], f_in=4))
    check_all_agree(path, tmp_path / "lenet.bundle", rng, n=4)
    bundle = load_bundle(tmp_path / "lenet.bundle")
    assert len(bundle.program) < 1000  # coarse instructions: a simulator batches each over images


# Architectures that do not divide the layers: odd PE arrays, tiny local memories, a weight buffer that
# forces block / chunk residency, a bias buffer smaller than a layer.
ODD_ARCHES = {
    "3x5-pes": Architecture(pe_rows=3, pe_cols=5, pe_weight_memory_bytes=14, pe_neuron_memory_bytes=22),
    "block-resident": Architecture(pe_rows=2, pe_cols=7, weight_buffer_bytes=2 * 40 * 9, pe_weight_memory_bytes=10, pe_neuron_memory_bytes=10),
    "chunk-resident": Architecture(pe_rows=4, pe_cols=4, weight_buffer_bytes=60, bias_buffer_words=5, pe_weight_memory_bytes=12, pe_neuron_memory_bytes=16),
    "1x1": Architecture(pe_rows=1, pe_cols=1, pe_weight_memory_bytes=6, pe_neuron_memory_bytes=6, weight_buffer_bytes=64, bias_buffer_words=3),
}


def odd_specs(rng: np.random.Generator) -> list[Spec]:
    """Shapes that divide nothing: 3x9x7 input, stride-2 padded conv, 3/2 pool, 37 and 11 neurons."""
    return [
        random_conv(rng, 5, 3, 3, pad=1, stride=2, fw=7, fo=-2, relu=True),
        Spec("maxpool", kernel=3, stride=2),
        Spec("flatten"),
        random_dense(rng, 37, 5 * 2 * 1, fw=7, fo=-4, relu=True),
        random_dense(rng, 11, 37, fw=7, fo=-4),
    ]


@pytest.mark.parametrize("arch_name", list(ODD_ARCHES))
def test_odd_shapes_on_odd_arrays(arch_name: str, save_model, tmp_path: Path, rng: np.random.Generator) -> None:
    path = save_model(build_model(odd_specs(rng), ["N", 3, 9, 7], f_in=4))
    check_all_agree(path, tmp_path / "odd.bundle", rng, ODD_ARCHES[arch_name])


def test_odd_arches_exercise_every_schedule(save_model, rng: np.random.Generator) -> None:
    path = save_model(build_model(odd_specs(rng), ["N", 3, 9, 7], f_in=4))
    residency, bias, partial_tiles = set(), set(), False
    for arch in ODD_ARCHES.values():
        for s in compile_model(path, arch).schedule:
            if s.kind == "compute":
                residency.add(s.weights_resident)
                bias.add(s.bias_resident)
                partial_tiles |= s.positions % s.p_tile != 0 or s.m % s.m_tile != 0 or s.k % s.k_chunk != 0
    assert residency == {"layer", "block", "chunk"} and bias == {"layer", "block"} and partial_tiles


@pytest.mark.parametrize("variant", ["gemm_t", "matmul"])
def test_gemm_transb0_and_matmul_add_equal_gemm(variant: str, save_model, rng: np.random.Generator) -> None:
    base = random_dense(rng, 9, 13, fw=7, fo=-3, relu=True)
    other = Spec(variant, np.ascontiguousarray(base.weight.T), base.bias, fw=7, fo=-3, relu=True)
    ir_a = compile_model(save_model(build_model([base], ["N", 13]), "a.onnx"))
    ir_b = compile_model(save_model(build_model([other], ["N", 13]), "b.onnx"))
    np.testing.assert_array_equal(ir_a.layers[0].weight, ir_b.layers[0].weight)
    assert ir_a.emitted.program == ir_b.emitted.program
    np.testing.assert_array_equal(ir_a.emitted.weight_image, ir_b.emitted.weight_image)


def test_per_neuron_modes_and_metadata(save_model, tmp_path: Path, rng: np.random.Generator) -> None:
    modes = ["drum:1", "drum:1", "exact", "drum:3", "drum:3", "drum:3", "exact"]
    spec = random_dense(rng, 7, 10, fw=7, fo=-3, metadata={
        "axtrain.multiplier": '["' + '","'.join(modes) + '"]',
        "axtrain.weight_sram_voltage": "0.66",
        "axtrain.input_format": "s8.4", "axtrain.weight_format": "s8.7", "axtrain.output_format": "s8.-3",
        "axtrain.bias_format": "s32.11", "axtrain.layer": "fc_out",
    })
    model = build_model([spec], ["N", 10], model_metadata={"axtrain.schema": "1", "axtrain.app": "demo", "axtrain.method": "axtrain", "axtrain.seed": "5"})
    ir = compile_model(save_model(model))
    layer = ir.layers[0]
    assert layer.name == "fc_out" and layer.sram_voltage == 0.66
    assert [str(m) for m in layer.neuron_modes()] == modes
    write_compiled_bundle(ir, tmp_path / "b")
    assert verify_bundle(tmp_path / "b").ok  # golden computed with DRUM per neuron
    bundle = load_bundle(tmp_path / "b")
    assert (bundle.manifest.app, bundle.manifest.method, bundle.manifest.seed) == ("demo", "axtrain", "5")
    assert bundle.layers[0].multipliers == modes and bundle.manifest.layers[0].multiplier == "mixed:3 modes"
    # The approximate modes matter: the exact-override run differs from the golden somewhere.
    x = bundle.golden_inputs()
    exact = run_bundle(bundle, x, mode_override=MultiplierMode(None))[0]
    assert not np.array_equal(exact, bundle.golden_layer(0))


def test_compiling_twice_is_byte_identical(save_model, tmp_path: Path, rng: np.random.Generator) -> None:
    path = save_model(build_model(mlp_specs(rng, [12, 9, 4]), ["N", 12]))
    trees = []
    for name in ("one", "two"):
        out = tmp_path / name
        write_compiled_bundle(compile_model(path), out)
        trees.append({str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()})
    assert trees[0] == trees[1]
    assert {"manifest.json", "program.bin", "weights.hex", "golden/layer_1.npy"} <= set(trees[0])


def test_hex_images_match_binary(save_model, tmp_path: Path, rng: np.random.Generator) -> None:
    path = save_model(build_model(mlp_specs(rng, [5, 3]), ["N", 5]))
    write_compiled_bundle(compile_model(path), tmp_path / "b")
    bundle = load_bundle(tmp_path / "b")
    hex_words = [int(line, 16) for line in (tmp_path / "b" / "weights.hex").read_text().split()]
    assert all(len(line) == 4 for line in (tmp_path / "b" / "weights.hex").read_text().split())
    signed = [w - (1 << 16) if w >= 1 << 15 else w for w in hex_words]
    assert signed == bundle.weights.tolist()
    ir = compile_model(path)
    assert bundle.weights.tolist() == ir.layers[0].weight.reshape(-1).tolist()
    bias_words = [int(line, 16) for line in (tmp_path / "b" / "bias.hex").read_text().split()]
    assert [w - (1 << 32) if w >= 1 << 31 else w for w in bias_words] == ir.layers[0].bias.tolist()


def test_onnx_roundtrip_through_protobuf_bytes(save_model, rng: np.random.Generator) -> None:
    model = build_model(mlp_specs(rng, [4, 3]), [1, 4])  # a fixed batch of 1 is accepted too
    path = save_model(model)
    assert onnx.load(path).graph.input[0].name == "input"
    assert compile_model(path).shapes[0] == (4,)
