"""Networks for the bring-up and regression tests (tests/bringup, tests/regress): small seeded
integer networks exported with the exporter's public API and compiled (numpy + onnx, no torch)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from axtrain.formats.arch import Architecture
from axtrain.hwmodels.fixedpoint import FixedPointFormat as F
from axtrain.hwmodels.layers import QuantizedLayer


def cnn_layers(seed: int = 0) -> tuple[list[QuantizedLayer], tuple[int, ...]]:
    """2x9x9 input: conv3x3/2 pad 1 -> maxpool 2/1 -> conv 2x2 -> flatten -> dense 7."""
    rng = np.random.default_rng(seed)

    def w(*shape: int) -> np.ndarray:
        return rng.integers(-100, 100, size=shape)

    return [
        QuantizedLayer("c0", "conv", F(8, 4), F(8, 2), w(3, 2, 3, 3), F(8, 7), rng.integers(-3000, 3000, 3), True, stride=2, padding=1),
        QuantizedLayer("p0", "maxpool", F(8, 2), F(8, 2), kernel=2, stride=1),
        QuantizedLayer("c1", "conv", F(8, 2), F(8, 1), w(5, 3, 2, 2), F(8, 7), rng.integers(-3000, 3000, 5), True),
        QuantizedLayer("fl", "flatten", F(8, 1), F(8, 1)),
        QuantizedLayer("d2", "dense", F(8, 1), F(8, 2), w(7, 45), F(8, 7), rng.integers(-3000, 3000, 7), False),
    ], (2, 9, 9)


def rare_mlp_layers() -> tuple[list[QuantizedLayer], tuple[int, ...]]:
    """6 -> 8 (ReLU) -> 4. Hidden neuron 3 fires only when the input points along its weights (a
    strongly negative bias), so uniform random goldens rarely see it fire: its outgoing weights in
    layer 1 then meet a zero operand in every such golden (issue 17's weight-edit case)."""
    rng = np.random.default_rng(3)
    w0 = rng.integers(-60, 60, size=(8, 6))
    w0[3] = [90, -90, 90, -90, 90, -90]
    b0 = rng.integers(-500, 500, size=8)
    b0[3] = -int(np.abs(w0[3]).sum() * 127 * 0.75)  # fires only within 25 % of the aimed corner
    w1 = rng.integers(-100, 100, size=(4, 8))
    w1[:, 3] = [110, -110, 100, -100]
    b1 = rng.integers(-500, 500, size=4)
    return [
        QuantizedLayer("h", "dense", F(8, 4), F(8, 2), w0, F(8, 7), b0, True),
        QuantizedLayer("o", "dense", F(8, 2), F(8, 1), w1, F(8, 7), b1, False),
    ], (6,)


def export(layers: list[QuantizedLayer], shape: tuple[int, ...], path: Path, meta: dict | None = None) -> Path:
    """Export integer layers as QDQ ONNX at ``path``."""
    from axtrain.trainer.export import export_layers, save_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random weights may exceed the float32 bound: irrelevant here
        model = export_layers(layers, shape, meta or {"app": "custom", "seed": "0"})
    save_model(model, path)
    return path


def with_non_power_of_two_output(path: Path, scale: float = 0.3) -> Path:
    """The exported graph at ``path`` with its last QuantizeLinear's scale set to ``scale`` (not a
    power of two, so ISA 2 requantises that layer through the requant table: LDQ, REQ rq=1, a
    nonempty requant.hex); the layer's declared output format is dropped, as a foreign producer
    would not write it. Saved beside ``path`` as ``<stem>_rq.onnx``."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(path)
    last = [node for node in model.graph.node if node.op_type == "QuantizeLinear"][-1]
    tensor = next(t for t in model.graph.initializer if t.name == last.input[1])
    tensor.CopyFrom(numpy_helper.from_array(np.array(scale, dtype=np.float32), tensor.name))
    for node in model.graph.node:
        keep = [p for p in node.metadata_props if p.key != "axtrain.output_format"]
        if len(keep) != len(node.metadata_props):
            del node.metadata_props[:]
            node.metadata_props.extend(keep)
    out = path.with_name(f"{path.stem}_rq.onnx")
    onnx.save(model, out)
    return out


def compile_bundle(onnx_path: Path, out: Path, arch: Architecture | None = None, golden: int = 8) -> Path:
    from axtrain.compiler.pipeline import compile_to_bundle

    return compile_to_bundle(onnx_path, out, arch or Architecture(), overwrite=True, golden_count=golden)




def reseal(bundle: Path) -> None:
    """After editing a bundle's binaries in place: regenerate the text twins the loader compares
    (weights.hex, bias.hex, program.hex), the content hash and every file hash, as a careless tool
    or a deliberate forger would. The result loads; only replaying goldens can tell."""
    import json

    from axtrain.compiler.package import content_hash_of_files
    from axtrain.formats import bundle as fmt
    from axtrain.formats.arch import arch_from_dict

    manifest = json.loads((bundle / fmt.MANIFEST).read_text())
    arch = arch_from_dict(json.loads((bundle / fmt.ARCH).read_text()))
    weights = np.frombuffer((bundle / fmt.WEIGHTS_BIN).read_bytes(), dtype=fmt.image_dtype(arch.weight_word_bits))
    bias = np.frombuffer((bundle / fmt.BIAS_BIN).read_bytes(), dtype="<i4")
    (bundle / fmt.WEIGHTS_HEX).write_text(fmt.image_hex(weights, arch.weight_word_bits))
    (bundle / fmt.BIAS_HEX).write_text(fmt.image_hex(bias, 32))
    requant = np.frombuffer((bundle / fmt.REQUANT_BIN).read_bytes(), dtype="<i4")
    (bundle / fmt.REQUANT_HEX).write_text(fmt.image_hex(requant, 32))
    manifest["requant_entries"] = requant.size // 3
    (bundle / fmt.PROGRAM_HEX).write_text(fmt.program_hex((bundle / fmt.PROGRAM_BIN).read_bytes()))
    files = {name: (bundle / name).read_bytes() for name in manifest["files"]}
    manifest["content_sha256"] = content_hash_of_files(files, manifest, arch)
    manifest["files"] = {name: fmt.sha256_bytes(data) for name, data in files.items()}
    (bundle / fmt.MANIFEST).write_text(json.dumps(manifest))


def set_weight_word(bundle: Path, word: int, value: int) -> int:
    """Set word ``word`` of the weight image to ``value`` and reseal; returns the old value."""
    from axtrain.formats import bundle as fmt

    data = np.frombuffer((bundle / fmt.WEIGHTS_BIN).read_bytes(), dtype="<i2").copy()
    old = int(data[word])
    data[word] = value
    (bundle / fmt.WEIGHTS_BIN).write_bytes(data.tobytes())
    reseal(bundle)
    return old
