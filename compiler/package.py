"""Package a compiled IR as a bundle: layer table, golden vectors, manifest (docs/bundle.md).

Golden vectors come from ``axtrain.hwmodels.layers.forward`` on the IR's integer layers, never from
the ISA interpreter, so ``axtrain verify`` (which replays them through the interpreter) checks the
schedule, the addresses and the encoding against an independent computation.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from axtrain import __version__
from axtrain.compiler import goldens
from axtrain.compiler.ir import CompilerIR
from axtrain.errors import ConfigError
from axtrain.formats import bundle as fmt
from axtrain.formats.isa import BIAS_WORD_BITS, ISA_VERSION, decode_program, encode_program, listing
from axtrain.hwmodels.fixedpoint import FixedPointFormat, dequantize, quantize
from axtrain.hwmodels.layers import QuantizedLayer, forward
from axtrain.provenance import versions

GOLDEN_COUNT = 8
GOLDEN_SEED = goldens.GOLDEN_SEED  # fixed: the same model always gets the same golden inputs
MAX_GOLDEN_COUNT = 4096


def golden_inputs(ir: CompilerIR, count: int = GOLDEN_COUNT) -> np.ndarray:
    """Deterministic float32 goldens chosen for coverage (compiler/goldens.py): the first made of
    exact rounding ties, the rest picked from a seeded pool (uniform over the input format's range
    and 10 % beyond, one-sided, saturating corners, aimed at first-layer neurons) for the most weight
    words exercised."""
    assert ir.input_format is not None and ir.shapes is not None and ir.layers is not None
    return goldens.select_goldens(ir.layers, ir.shapes[0], ir.input_format, count).inputs


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
            "input_shape": list(ir.input_shape(index)),
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
        if layer.op in ("maxpool", "avgpool"):
            record["kernel"] = list(layer.window_hw)
        if layer.strides:
            record["strides"] = list(layer.strides)
        if layer.pads:
            record["pads"] = list(layer.pads)
        if layer.groups != 1:
            record["groups"] = layer.groups
        if layer.sources:
            record["sources"] = list(layer.sources)
        if layer.other_format is not None:
            record["other_format"] = str(layer.other_format)
        if layer.count_include_pad:
            record["count_include_pad"] = True
        if layer.has_weights:
            assert layer.weight is not None and layer.weight_format is not None
            m, k = layer.out_features, s.k  # a grouped conv: every group's rows (s.m is one group's)
            record.update(
                weight_format=str(layer.weight_format),
                bias_format=f"s32.{layer.accumulator_frac}",
                multipliers=[str(mode) for mode in layer.neuron_modes()],
                kernel=list(layer.weight.shape[2:]) if layer.op == "conv" else [],
                weights={"dram": place.weight_dram, "count": m * k, "shape": [m, k]},
                bias={"dram": place.bias_dram, "count": m, "shape": [m]},
                tiling={
                    "m_tile": s.m_tile, "p_tile": s.p_tile, "k_chunk": s.k_chunk,
                    "tiles": s.m_blocks * s.p_tiles * layer.groups, "chunks": s.chunks, "weights_resident": s.weights_resident,
                },
                macs=m * k * s.positions,
            )
        rows.append(fmt.LayerRecord.model_validate(record).model_dump(mode="json"))
    return rows


def _float32_bound(ir: CompilerIR) -> dict[str, Any]:
    """The manifest's float32_bound: the bounds float32_bound recorded (computed here if it did not run)."""
    # numpy-only modules, imported here to keep the bundle writer's top-level imports as they were
    from axtrain.formats.onnx_schema import FLOAT32_EXACT_LIMIT
    from axtrain.hwmodels.layers import accumulation_bound

    assert ir.layers is not None
    bounds = {
        f"{index}:{layer.name}": int(layer.meta.get("accumulation_bound", accumulation_bound(layer)))
        for index, layer in enumerate(ir.layers) if layer.has_weights
    }
    return {"limit": FLOAT32_EXACT_LIMIT, "exact": all(b < FLOAT32_EXACT_LIMIT for b in bounds.values()), "layers": bounds}


def bundle_files(ir: CompilerIR, golden_count: int = GOLDEN_COUNT) -> tuple[dict[str, bytes], dict[str, Any]]:
    """Every file of the bundle (name -> bytes) and the manifest (without its hash list)."""
    if not 1 <= golden_count <= MAX_GOLDEN_COUNT:
        raise ConfigError(f"--golden must lie in [1, {MAX_GOLDEN_COUNT}], got {golden_count}")
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
        fmt.REQUANT_BIN: fmt.image_bytes(fmt.requant_image_words(e.requant_image), BIAS_WORD_BITS),
        fmt.REQUANT_HEX: fmt.image_hex_bytes(fmt.requant_image_words(e.requant_image), BIAS_WORD_BITS),
        fmt.LAYERS: fmt.json_bytes(layer_records(ir)),
    }
    selection = goldens.select_goldens(ir.layers, ir.shapes[0], ir.input_format, golden_count)
    x = selection.inputs
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
        "requant_entries": int(e.requant_image.shape[0]),
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
    return finish_format_1_1(files, manifest, ir.layers, arch, selection), manifest


def write_compiled_bundle(ir: CompilerIR, out: str | Path, overwrite: bool = False, golden_count: int = GOLDEN_COUNT) -> Path:
    """Write the bundle of a compiled IR atomically (``golden_count`` goldens chosen for coverage)."""
    files, manifest = bundle_files(ir, golden_count)
    return fmt.write_bundle(out, files, manifest, overwrite=overwrite)


# ---------------------------------------------------------------------------------------------
# Format 1.1: testbench vectors, golden coverage, content hash. Pieces that work on a finished
# file set, so that any writer of bundles (the compiler above, a re-planner) adds them the same way.
# ---------------------------------------------------------------------------------------------


def testbench_files(files: dict[str, bytes], neuron_word_bits: int, input_format: str) -> dict[str, bytes]:
    """The ``$readmemh`` twins derived from a file set: ``program.hex``, the quantised golden inputs
    (``golden/inputs_int.npy`` and ``.hex``) and every ``golden/layer_<i>.hex`` (neuron words,
    images back to back, each image's values in NCHW order)."""
    x = fmt.read_npy_bytes(files[fmt.GOLDEN_INPUTS])
    q = quantize(x, FixedPointFormat.parse(input_format)).astype(np.int64)
    out = {
        fmt.PROGRAM_HEX: fmt.program_hex(files[fmt.PROGRAM_BIN]).encode("ascii"),
        fmt.GOLDEN_INPUTS_INT: fmt.npy_bytes(q),
        fmt.GOLDEN_INPUTS_HEX: fmt.image_hex(q.reshape(-1), neuron_word_bits).encode("ascii"),
    }
    records = json.loads(files[fmt.LAYERS])
    index = 0
    while fmt.golden_layer_file(index) in files:
        values = fmt.read_npy_bytes(files[fmt.golden_layer_file(index)])
        bits = fmt.golden_word_bits(records[index]["output_format"], neuron_word_bits) if index < len(records) else neuron_word_bits
        out[fmt.golden_layer_hex(index)] = fmt.image_hex(values.reshape(-1), bits).encode("ascii")
        index += 1
    return out


def coverage_record(
    layers: Any, x: np.ndarray, input_format: FixedPointFormat, files: dict[str, bytes], manifest: dict[str, Any], arch: Any, selection: "goldens.Selection | None" = None
) -> dict[str, Any]:
    """The manifest's ``golden_coverage``: weight words exercised (integer reference model) and
    data-carrying instructions exercised (from the layer data; tests check it against the ISA interpreter)."""
    q = quantize(x, input_format)
    covered = np.asarray(goldens.exercised(layers, q).any(axis=0), dtype=bool)
    legacy = selection.legacy_covered if selection is not None else None
    if legacy is None:
        legacy_x, _ = goldens.legacy_inputs(x.shape[1:], input_format)
        legacy = int(goldens.exercised(layers, quantize(legacy_x, input_format)).any(axis=0).sum())
    weights = np.frombuffer(files[fmt.WEIGHTS_BIN], dtype=fmt.image_dtype(arch.weight_word_bits)).astype(np.int64)
    bias = np.frombuffer(files[fmt.BIAS_BIN], dtype=fmt.image_dtype(BIAS_WORD_BITS)).astype(np.int64)
    records = json.loads(files[fmt.LAYERS])
    hit, counted, missed = goldens.instruction_coverage(layers, records, decode_program(files[fmt.PROGRAM_BIN]), weights, bias, q)
    return {
        "criterion": goldens.CRITERION,
        "weight_words": int(covered.size),
        "weight_words_exercised": int(covered.sum()),
        "legacy_weight_words_exercised": int(legacy),
        "instructions": counted,
        "instructions_exercised": hit,
        "unexercised_instructions": missed,
        "candidates": selection.pool if selection is not None else int((manifest.get("golden_coverage") or {}).get("candidates", 0)),
        "layers": goldens.layer_coverage(layers, covered),
    }


def content_hash_of_files(files: dict[str, bytes], manifest: dict[str, Any], arch: Any) -> str:
    """:func:`axtrain.formats.bundle.content_sha256` of a file set about to be written."""
    weights = np.frombuffer(files[fmt.WEIGHTS_BIN], dtype=fmt.image_dtype(arch.weight_word_bits)).astype(np.int64)
    bias = np.frombuffer(files[fmt.BIAS_BIN], dtype=fmt.image_dtype(BIAS_WORD_BITS)).astype(np.int64)
    layers = json.loads(files[fmt.LAYERS])
    requant = np.frombuffer(files.get(fmt.REQUANT_BIN, b""), dtype=fmt.image_dtype(BIAS_WORD_BITS)).astype(np.int64)  # absent: empty
    return fmt.content_sha256(arch, files[fmt.PROGRAM_BIN], weights, bias, manifest, layers, requant)


def finish_format_1_1(files: dict[str, bytes], manifest: dict[str, Any], layers: Any, arch: Any, selection: "goldens.Selection | None" = None) -> dict[str, bytes]:
    """Add format 1.1's parts to a file set and its manifest (in place; returns ``files``):
    the testbench twins, ``golden_coverage`` for the golden inputs in ``files`` under the integer
    ``layers``, ``content_sha256``, and ``format_version``."""
    files.update(testbench_files(files, arch.neuron_word_bits, manifest["input"]["format"]))
    x = fmt.read_npy_bytes(files[fmt.GOLDEN_INPUTS])
    manifest["golden_coverage"] = coverage_record(layers, x, FixedPointFormat.parse(manifest["input"]["format"]), files, manifest, arch, selection)
    manifest["format_version"] = fmt.FORMAT_VERSION
    manifest["golden_count"] = int(x.shape[0])
    manifest["content_sha256"] = content_hash_of_files(files, manifest, arch)
    return files
