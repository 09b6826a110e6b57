"""Package a compiled IR as a bundle: layer table, golden vectors, manifest (docs/bundle.md).

Golden vectors come from ``axtrain.hwmodels.layers.forward`` on the IR's integer layers, never from
the ISA interpreter, so ``axtrain verify`` (which replays them through the interpreter) checks the
schedule, the addresses and the encoding against an independent computation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from axtrain import __version__
from axtrain.compiler.ir import CompilerIR
from axtrain.formats import bundle as fmt
from axtrain.formats.isa import BIAS_WORD_BITS, ISA_VERSION, encode_program, listing
from axtrain.hwmodels.fixedpoint import FixedPointFormat, dequantize, quantize
from axtrain.hwmodels.layers import QuantizedLayer, forward
from axtrain.provenance import versions

GOLDEN_COUNT = 8
GOLDEN_SEED = 20170204  # fixed: the same model always gets the same golden inputs


def golden_inputs(ir: CompilerIR, count: int = GOLDEN_COUNT) -> np.ndarray:
    """Deterministic float32 inputs spanning the input format's range, a little beyond it (so
    saturation is exercised) and off the quantisation grid (so rounding is exercised)."""
    assert ir.input_format is not None and ir.shapes is not None
    rng = np.random.default_rng(GOLDEN_SEED)
    f = ir.input_format
    low, high = f.qmin * f.scale * 1.1, f.qmax * f.scale * 1.1
    x = rng.uniform(low, high, size=(count, *ir.shapes[0]))
    # One input of exact grid ties (k + 1/2 LSB) to pin round-half-even.
    ties = (rng.integers(f.qmin, f.qmax, size=ir.shapes[0]) + 0.5) * f.scale
    x[0] = ties
    return x.astype(np.float32)


def modes_text(modes: Iterable[Any]) -> str:
    """A layer's multipliers in one word for the manifest: the mode, or ``mixed:N modes``."""
    distinct = sorted({str(m) for m in modes})
    return distinct[0] if len(distinct) == 1 else f"mixed:{len(distinct)} modes"


def listing_notes(layers: Sequence[tuple[str, str]], ranges: Sequence[tuple[int, int]]) -> dict[int, str]:
    """The listing's layer-boundary comments: ``layers`` are ``(name, op)``, ``ranges`` each layer's
    ``[first, end)`` instruction range."""
    return {first: f"layer {index} {name} ({op})" for index, ((name, op), (first, _)) in enumerate(zip(layers, ranges, strict=True))}


def manifest_layers(layers: Iterable[tuple[str, str, Sequence[Any] | None, float]]) -> list[dict[str, Any]]:
    """The manifest's per-layer summary from ``(name, op, modes or None without weights, sram_voltage)``."""
    return [
        {"name": name, "op": op, "multiplier": modes_text(modes) if modes is not None else "-", "sram_voltage": voltage}
        for name, op, modes, voltage in layers
    ]


def golden_files(layers: Sequence[QuantizedLayer], x: np.ndarray, input_format: FixedPointFormat) -> dict[str, bytes]:
    """``golden/layer_<i>.npy`` and ``golden/outputs.npy`` for float inputs ``x`` (the inputs file
    itself is the caller's): the integer reference ``hwmodels.layers.forward``, never the interpreter."""
    outputs = forward(layers, quantize(x, input_format))
    files = {fmt.golden_layer_file(index): fmt.npy_bytes(out.astype(np.int64)) for index, out in enumerate(outputs)}
    files[fmt.GOLDEN_OUTPUTS] = fmt.npy_bytes(dequantize(outputs[-1], layers[-1].output_format))
    return files


def layer_records(ir: CompilerIR) -> list[dict[str, Any]]:
    """The rows of ``layers.json``."""
    assert ir.layers is not None and ir.shapes is not None and ir.schedule is not None
    assert ir.allocation is not None and ir.emitted is not None
    rows = []
    for index, layer in enumerate(ir.layers):
        s, place = ir.schedule[index], ir.allocation.layers[index]
        record: dict[str, Any] = {
            "index": index,
            "name": layer.name,
            "op": layer.op,
            "input_shape": list(ir.shapes[index]),
            "output_shape": list(ir.shapes[index + 1]),
            "input_format": str(layer.input_format),
            "output_format": str(layer.output_format),
            "relu": layer.relu,
            "sram_voltage": layer.sram_voltage,
            "stride": layer.stride,
            "padding": layer.padding,
            "nb_input": place.nb_input,
            "nb_output": place.nb_output,
            "program": list(ir.emitted.layer_ranges[index]),
            "multipliers": [],
            "kernel": [],
            "macs": 0,
        }
        if layer.op == "maxpool":
            record["kernel"] = [layer.kernel, layer.kernel]
        if layer.has_weights:
            assert layer.weight is not None and layer.weight_format is not None
            m, k = s.m, s.k
            record.update(
                weight_format=str(layer.weight_format),
                bias_format=f"s32.{layer.accumulator_frac}",
                multipliers=[str(mode) for mode in layer.neuron_modes()],
                kernel=list(layer.weight.shape[2:]) if layer.op == "conv" else [],
                weights={"dram": place.weight_dram, "count": m * k, "shape": [m, k]},
                bias={"dram": place.bias_dram, "count": m, "shape": [m]},
                tiling={
                    "m_tile": s.m_tile, "p_tile": s.p_tile, "k_chunk": s.k_chunk,
                    "tiles": s.m_blocks * s.p_tiles, "chunks": s.chunks, "weights_resident": s.weights_resident,
                },
                macs=m * k * s.positions,
            )
        rows.append(fmt.LayerRecord.model_validate(record).model_dump(mode="json"))
    return rows


def _float32_bound(ir: CompilerIR) -> dict[str, Any]:
    """The manifest's float32_bound: the bounds float32_bound recorded (computed here if it did not run)."""
    from axtrain.formats.onnx_schema import FLOAT32_EXACT_LIMIT
    from axtrain.hwmodels.layers import accumulation_bound

    assert ir.layers is not None
    bounds = {
        f"{index}:{layer.name}": int(layer.meta.get("accumulation_bound", accumulation_bound(layer)))
        for index, layer in enumerate(ir.layers) if layer.has_weights
    }
    return {"limit": FLOAT32_EXACT_LIMIT, "exact": all(b < FLOAT32_EXACT_LIMIT for b in bounds.values()), "layers": bounds}


def bundle_files(ir: CompilerIR) -> tuple[dict[str, bytes], dict[str, Any]]:
    """Every file of the bundle (name -> bytes) and the manifest (without its hash list)."""
    assert ir.layers is not None and ir.shapes is not None and ir.allocation is not None and ir.emitted is not None
    assert ir.input_format is not None
    arch, e, alloc = ir.arch, ir.emitted, ir.allocation
    notes = listing_notes([(layer.name, layer.op) for layer in ir.layers], e.layer_ranges)
    program = list(e.program)
    files: dict[str, bytes] = {
        fmt.ARCH: fmt.json_bytes(arch.to_json()),
        fmt.PROGRAM_BIN: encode_program(program),
        fmt.PROGRAM_ASM: listing(program, notes).encode("utf-8"),
        fmt.WEIGHTS_BIN: fmt.image_bytes(e.weight_image, arch.weight_word_bits),
        fmt.WEIGHTS_HEX: fmt.image_hex_bytes(e.weight_image, arch.weight_word_bits),
        fmt.BIAS_BIN: fmt.image_bytes(e.bias_image, BIAS_WORD_BITS),
        fmt.BIAS_HEX: fmt.image_hex_bytes(e.bias_image, BIAS_WORD_BITS),
        fmt.LAYERS: fmt.json_bytes(layer_records(ir)),
    }
    x = golden_inputs(ir)
    files[fmt.GOLDEN_INPUTS] = fmt.npy_bytes(x)
    files.update(golden_files(ir.layers, x, ir.input_format))
    toolchain = {k: v for k, v in versions().items() if k in ("axtrain", "python", "numpy", "onnx", "pydantic")}
    manifest = {
        "format": fmt.FORMAT_NAME,
        "format_version": fmt.FORMAT_VERSION,
        "isa_version": ISA_VERSION,
        "toolchain": {**toolchain, "axtrain": __version__},
        "source_onnx_sha256": ir.source_sha256,
        "source_onnx_name": ir.source_name,
        "onnx_schema": ir.model_info.get("schema"),
        "app": ir.model_info.get("app") or "custom",
        "method": ir.model_info.get("method"),
        "seed": ir.model_info.get("seed"),
        "input": {"shape": list(ir.shapes[0]), "format": str(ir.input_format), "dram": alloc.input_dram},
        "output": {"shape": list(ir.shapes[-1]), "format": str(ir.layers[-1].output_format), "dram": alloc.output_dram},
        "activation_words": alloc.activation_words,
        "weight_words": int(e.weight_image.size),
        "weight_word_bits": arch.weight_word_bits,
        "bias_words": int(e.bias_image.size),
        "bias_word_bits": BIAS_WORD_BITS,
        "instructions": len(program),
        "golden_count": int(x.shape[0]),
        "float32_bound": _float32_bound(ir),
        "layers": manifest_layers(
            (layer.name, layer.op, layer.neuron_modes() if layer.has_weights else None, layer.sram_voltage) for layer in ir.layers
        ),
    }
    if ir.host_tail:
        # Only when there is one: bundles without a tail stay byte-identical to earlier versions.
        manifest["host_tail"] = [{"op": op.op, "node": op.node} for op in ir.host_tail]
    return files, manifest


def write_compiled_bundle(ir: CompilerIR, out: str | Path, overwrite: bool = False) -> Path:
    """Write the bundle of a compiled IR atomically."""
    files, manifest = bundle_files(ir)
    return fmt.write_bundle(out, files, manifest, overwrite=overwrite)
