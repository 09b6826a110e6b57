"""``axtrain compile`` and ``axtrain inspect``."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from axtrain.formats.arch import DEFAULT_ARCH, load_arch

if TYPE_CHECKING:
    from axtrain.compiler.ir import CompilerIR
    from axtrain.formats.bundle import Bundle


STAGE_NAMES = (
    "import", "fold_constants", "lower_qonnx", "flatten_shapes", "canonical_qdq", "drop_identity",
    "host_tail", "validate", "fold_qdq", "float32_bound", "tile_schedule", "allocate", "emit",
)  # compiler.pipeline.STAGES (checked by a test)


@click.command("compile")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", "out", type=click.Path(path_type=Path), help="Bundle directory to write (required unless --stop-after).")
@click.option("--arch", "arch_file", type=click.Path(dir_okay=False, path_type=Path), help="Architecture YAML/JSON (defaults: docs/compiler.md).")
@click.option("--force", is_flag=True, help="Replace an existing bundle directory.")
@click.option("--golden", "golden_count", type=int, default=8, show_default=True, help="Golden vectors to write, chosen for coverage (docs/bundle.md).")
@click.option("--dump-ir", "dump_dir", type=click.Path(file_okay=False, path_type=Path), help="Write the IR after every stage into this folder (NN-<stage>.json, .asm once emitted).")
@click.option("--stop-after", type=click.Choice(STAGE_NAMES), help="Stop after this stage; no bundle is written.")
@click.option("--max-elements", type=int, default=None, metavar="N",
              help="Allow initializers of up to N elements each and in all (default: 16,777,216 each, 33,554,432 in all; "
                   "at most what the ISA addresses and this machine's memory compiles, see docs/hardening.md).")
def compile_command(
    model: Path, out: Path | None, arch_file: Path | None, force: bool, golden_count: int, dump_dir: Path | None, stop_after: str | None,
    max_elements: int | None,
) -> None:
    """Compile MODEL (QDQ ONNX, power-of-two scales) into a FlexFlow bundle."""
    from axtrain.compiler.dump import dump_ir
    from axtrain.compiler.package import write_compiled_bundle
    from axtrain.compiler.pipeline import STAGES, compile_model
    from axtrain.errors import ConfigError
    from axtrain.limits import model_element_limits
    from axtrain.locks import output_lock

    model_element_limits(max_elements, ConfigError)  # a bad value is refused before anything is read
    arch = load_arch(arch_file) if arch_file else DEFAULT_ARCH
    if out is None and stop_after is None:
        raise ConfigError("--out BUNDLE is required (unless --stop-after STAGE)")
    if not 1 <= golden_count <= 4096:
        raise ConfigError(f"--golden must lie in [1, 4096], got {golden_count}")

    def after(stage: str, ir: CompilerIR) -> None:
        if dump_dir is not None:
            dump_ir(ir, stage, STAGES.index(stage), dump_dir)

    if stop_after is not None:  # nothing is written under --out: no lock, no overwrite check
        ir = compile_model(model, arch, after=after, stop_after=stop_after, max_elements=max_elements)
        layers = f"{len(ir.layers)} layers" if ir.layers is not None else f"{len(ir.graph.nodes) if ir.graph else 0} nodes"
        click.echo(f"stopped after {stop_after}: {layers}" + (f"; IR in {dump_dir}" if dump_dir else "") + " (no bundle written)")
        return
    assert out is not None
    with output_lock(out):
        if out.exists() and not force:
            raise ConfigError(f"{out} already exists (use --force to replace it)")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ir = compile_model(model, arch, after=after, max_elements=max_elements)
        for warning in caught:  # one line each, like errors (float32 bound, float biases rounded)
            click.echo(f"warning: {warning.message}", err=True)
        write_compiled_bundle(ir, out, overwrite=force, golden_count=golden_count)
    assert ir.emitted is not None and ir.layers is not None
    click.echo(
        f"compiled {model.name}: {len(ir.layers)} layers, {len(ir.emitted.program)} instructions, "
        f"{ir.emitted.weight_image.size} weight words -> {out}"
    )


def coverage_line(b: Bundle) -> str:
    """One line on what the golden vectors exercise (format 1.1), shared by inspect and verify."""
    c = b.manifest.golden_coverage
    if c is None:
        return f"golden coverage: not recorded (format {b.manifest.format_version} bundle, {b.manifest.golden_count} goldens)"
    pct = 100.0 * c.weight_words_exercised / max(c.weight_words, 1)
    gaps = [f"{row.name} {row.weight_words - row.exercised}" for row in c.layers if row.exercised < row.weight_words]
    return (
        f"golden coverage: {b.manifest.golden_count} goldens exercise {c.weight_words_exercised}/{c.weight_words} weight words ({pct:.1f} %; "
        f"format 1's 8 uniform draws: {c.legacy_weight_words_exercised}) and {c.instructions_exercised}/{c.instructions} data instructions"
        + (f"; unexercised words: {', '.join(gaps)}" if gaps else "")
    )


def _fmt_bytes(n: int) -> str:
    return f"{n} B" if n < 10_000 else f"{n / 1024:.1f} KiB"


def summary_dict(bundle_path: Path) -> dict[str, Any]:
    """What ``axtrain inspect --json`` prints: the facts of :func:`summary`, as numbers."""
    from axtrain.formats.bundle import load_bundle
    from axtrain.formats.isa import count_by_kind

    b = load_bundle(bundle_path)
    m, arch = b.manifest, b.arch
    return {
        "bundle": str(bundle_path), "format_version": m.format_version, "isa_version": m.isa_version,
        "axtrain": m.toolchain.get("axtrain"), "source_onnx": m.source_onnx_name, "source_onnx_sha256": m.source_onnx_sha256,
        "app": m.app, "method": m.method, "arch": arch.to_json(),
        "input": {"shape": list(m.input.shape), "format": str(m.input.format)},
        "output": {"shape": list(m.output.shape), "format": str(m.output.format)},
        "host_tail": [op.op for op in m.host_tail],
        "host_scales": host_scales(b),
        "layers": [
            {
                "index": layer.index, "name": layer.name, "op": layer.op, "input_shape": list(layer.input_shape),
                "output_shape": list(layer.output_shape), "input_format": str(layer.input_format),
                "weight_format": None if layer.weight_format is None else str(layer.weight_format), "output_format": str(layer.output_format),
                "multipliers": sorted({str(mode) for mode in layer.multipliers}), "sram_voltage": layer.sram_voltage,
                "tiles": layer.tiling.tiles if layer.tiling else None, "macs": layer.macs, "instructions": layer.program[1] - layer.program[0],
            }
            for layer in b.layers
        ],
        "instructions": {"count": len(b.program), "bytes": len(b.program_bytes), "by_kind": dict(count_by_kind(b.program))},
        "memory": {
            "weight_words": m.weight_words, "weight_word_bits": m.weight_word_bits, "bias_words": m.bias_words,
            "bias_word_bits": m.bias_word_bits, "activation_words": m.activation_words, "requant_entries": m.requant_entries,
        },
    }


def host_scales(b: Any) -> dict[str, Any]:
    """What the host applies to the network input and output (ISA 2): the float32 scale, the zero
    point, and whether the output words are 32-bit accumulators stored by STA."""
    fin, fout = b.manifest.input.fixed_point, b.manifest.output.fixed_point
    accumulator = any(ins.op == "STA" for ins in b.program)
    return {
        "input_scale": float(fin.scale), "input_zero_point": fin.zero_point,
        "output_scale": float(fout.scale), "output_zero_point": fout.zero_point, "output_accumulator_words": accumulator,
    }


def _scales_line(b: Any) -> str:
    h = host_scales(b)
    out = "32-bit accumulator words (STA)" if h["output_accumulator_words"] else "neuron words"
    return (
        f"host   input q = round(x / {h['input_scale']!r}) + {h['input_zero_point']}; "
        f"output ({out}) y = (q - {h['output_zero_point']}) * {h['output_scale']!r} in float32"
    )


def _bound_line(bound: object) -> str:
    """One line on the float32 accumulation bound (docs/numerics.md)."""
    if bound is None:
        return "float32 bound: not recorded (older bundle)"
    worst = max(bound.layers.values(), default=0)  # type: ignore[attr-defined]
    verdict = "exact in onnxruntime" if bound.exact else "onnxruntime's float32 may differ"  # type: ignore[attr-defined]
    return f"float32 bound: largest {worst} vs limit 2**24: {verdict}"


def summary(bundle_path: Path) -> str:
    """The text ``axtrain inspect`` prints."""
    from axtrain.formats.bundle import load_bundle
    from axtrain.formats.isa import count_by_kind

    b = load_bundle(bundle_path)
    m, arch = b.manifest, b.arch
    lines = [
        f"bundle {bundle_path}  (format v{m.format_version}, ISA v{m.isa_version}, axtrain {m.toolchain.get('axtrain', '?')})",
        f"source {m.source_onnx_name}  sha256 {m.source_onnx_sha256[:16]}...  app {m.app}  method {m.method or '-'}",
        f"arch   {arch.pe_rows}x{arch.pe_cols} PEs @ {arch.clock_hz / 1e9:g} GHz, WB {_fmt_bytes(arch.weight_buffer_bytes)}, "
        f"NB {_fmt_bytes(arch.neuron_buffer_bytes)}, PE memories {arch.pe_weight_memory_bytes}+{arch.pe_neuron_memory_bytes} B",
        f"input  {m.input.shape} {m.input.format}   output {m.output.shape} {m.output.format}",
        _scales_line(b),
        _bound_line(m.float32_bound),
        "host tail " + (" -> ".join(f"{op.op} ({op.node})" for op in m.host_tail) + "  (float32 on the host, after the last layer)" if m.host_tail else "none"),
        "",
        f"{'#':>2}  {'name':<14} {'op':<8} {'in -> out':<24} {'formats (in/w/out)':<22} {'mode':<14} {'V':>5} {'tiles':>5} {'MACs':>9} {'instr':>6}",
    ]
    for layer in b.layers:
        modes = sorted(set(layer.multipliers))
        mode = "-" if not modes else modes[0] if len(modes) == 1 else f"mixed({len(modes)})"
        formats = f"{layer.input_format}/{layer.weight_format or '-'}/{layer.output_format}"
        shapes = f"{'x'.join(map(str, layer.input_shape))} -> {'x'.join(map(str, layer.output_shape))}"
        tiles = layer.tiling.tiles if layer.tiling else "-"
        lines.append(
            f"{layer.index:>2}  {layer.name[:14]:<14} {layer.op:<8} {shapes:<24} {formats:<22} {mode:<14} "
            f"{layer.sram_voltage:>5.2f} {tiles:>5} {layer.macs:>9} {layer.program[1] - layer.program[0]:>6}"
        )
    lines += ["", coverage_line(b)]
    counts = count_by_kind(b.program)
    lines += ["", f"instructions: {len(b.program)} ({len(b.program_bytes)} bytes): " + ", ".join(f"{k} {v}" for k, v in counts.items())]
    live = max(math.prod(layer.input_shape) + (0 if layer.op == "flatten" else math.prod(layer.output_shape)) for layer in b.layers)
    lines += [
        "memory:",
        f"  weight image {m.weight_words} words x {m.weight_word_bits} bit = {_fmt_bytes(m.weight_words * m.weight_word_bits // 8)}",
        f"  bias image   {m.bias_words} words x {m.bias_word_bits} bit = {_fmt_bytes(m.bias_words * m.bias_word_bits // 8)}",
        f"  requant image {m.requant_entries} entries (M, n, z) x 3 x 32 bit = {_fmt_bytes(m.requant_entries * 12)}",
        f"  neuron buffer: at most {live} of {arch.neuron_buffer_words} words live at once"
        + (" (layers whose maps do not fit run in row bands through DRAM activations)" if live > arch.neuron_buffer_words else ""),
        f"  DRAM activations {m.activation_words} words per sample",
    ]
    return "\n".join(lines)


@click.command("inspect")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--asm", is_flag=True, help="Also print the disassembly (with --json: as the key 'asm').")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object (manifest facts, layers, instruction counts, memory) instead of text.")
def inspect_command(bundle: Path, asm: bool, as_json: bool) -> None:
    """Summarise BUNDLE: layers, instruction counts per kind, memory footprint, modes."""
    from axtrain.formats.bundle import load_bundle
    from axtrain.formats.isa import disassemble

    if as_json:
        import json

        facts = summary_dict(bundle)
        if asm:
            facts["asm"] = disassemble(load_bundle(bundle).program_bytes)
        click.echo(json.dumps(facts, indent=2))
        return

    click.echo(summary(bundle))
    if asm:
        click.echo("")
        click.echo(disassemble(load_bundle(bundle).program_bytes), nl=False)
