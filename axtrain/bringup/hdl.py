"""``axtrain hdl``: a SystemVerilog package, a C header and a self-checking testbench, generated.

Nothing here is transcribed by hand: opcodes, field offsets and widths, mode codes and the version
come from :mod:`axtrain.formats.isa` (``OPS``), buffer depths and word widths from the
:class:`~axtrain.formats.arch.Architecture`, and, when generated from a bundle, its sizes and
content hash from the manifest. An ISA version change therefore reaches RTL and firmware by
regenerating.

Outputs (in ``--out DIR``):

    axtrain_isa_pkg.sv     package axtrain_isa_pkg: parameters, opcode enum, field accessors,
                           host registers (and, from a bundle, its sizes and DRAM byte map)
    axtrain_isa.h          the same for C (#defines, tables, static inline accessors)
    (from a bundle only)
    axtrain_tb.sv          module axtrain_tb: $readmemh of the bundle's hex images; checks every
                           decoded field against expected_fields.hex (made from the disassembly)
                           and each image's checksum; prints PASS/FAIL and calls $finish
    expected_fields.hex    per instruction: opcode, then each operand's raw bits (32-bit words)
    *.hex                  copies of program.hex, weights.hex, bias.hex, requant.hex (when the
                           bundle has requant entries), golden inputs and layers
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np

from axtrain import atomic
from axtrain.formats import bundle as fmt
from axtrain.formats.arch import Architecture
from axtrain.formats.isa import (
    BIAS_WORD_BITS,
    ISA_VERSION,
    MAX_MODE_CODE,
    MODE_EXACT,
    OPCODE_BITS,
    OPS,
    REQUANT_ENTRY_WORDS,
    WORD_BITS,
    WORD_BYTES,
    OpSpec,
    disassemble,
)

PACKAGE = "axtrain_isa_pkg"
PACKAGE_FILE = f"{PACKAGE}.sv"
HEADER_FILE = "axtrain_isa.h"
TESTBENCH = "axtrain_tb"
TESTBENCH_FILE = f"{TESTBENCH}.sv"
EXPECTED_FILE = "expected_fields.hex"
MODE_CODE_BITS = OPS["MODE"].fields[-1].bits
OPCODE_SLOTS = 1 << max(1, (max(spec.opcode for spec in OPS.values())).bit_length())  # table size


def field_layout(spec: OpSpec) -> list[tuple[str, int, int, bool]]:
    """``(name, lsb, bits, signed)`` of each operand of ``spec`` in encoding order."""
    out, lsb = [], OPCODE_BITS
    for field in spec.fields:
        out.append((field.name, lsb, field.bits, field.signed))
        lsb += field.bits
    return out


def arch_constants(arch: Architecture) -> list[tuple[str, int, str]]:
    """``(NAME, value, comment)`` of the architecture parameters an RTL or firmware needs."""
    return [
        ("PE_ROWS", arch.pe_rows, "PE array rows"),
        ("PE_COLS", arch.pe_cols, "PE array columns"),
        ("PE_COUNT", arch.pe_count, "PEs; PE e sits at row e / PE_COLS, column e % PE_COLS"),
        ("WEIGHT_WORD_BITS", arch.weight_word_bits, "weight word (DRAM.W, WB, WLM), two's complement"),
        ("NEURON_WORD_BITS", arch.neuron_word_bits, "neuron word (DRAM.A, NB, NLM), two's complement"),
        ("BIAS_WORD_BITS", BIAS_WORD_BITS, "bias word (DRAM.B, BB)"),
        ("ACCUMULATOR_BITS", arch.accumulator_bits, "PE accumulator"),
        ("WEIGHT_BUFFER_WORDS", arch.weight_buffer_words, "WB depth in weight words"),
        ("NEURON_BUFFER_WORDS", arch.neuron_buffer_words, "NB depth in neuron words"),
        ("BIAS_BUFFER_WORDS", arch.bias_buffer_words, "BB depth (= mode table entries)"),
        ("MODE_TABLE_WORDS", arch.bias_buffer_words, "MT depth"),
        ("PE_WEIGHT_MEMORY_WORDS", arch.pe_weight_memory_words, "WLM depth per PE"),
        ("PE_NEURON_MEMORY_WORDS", arch.pe_neuron_memory_words, "NLM depth per PE"),
        ("WEIGHT_BUFFER_BYTES", arch.weight_buffer_bytes, "arch.json weight_buffer_bytes"),
        ("NEURON_BUFFER_BYTES", arch.neuron_buffer_bytes, "arch.json neuron_buffer_bytes"),
        ("WEIGHT_BUFFER_BANDWIDTH", arch.weight_buffer_bandwidth, "bytes per cycle"),
        ("NEURON_BUFFER_BANDWIDTH", arch.neuron_buffer_bandwidth, "bytes per cycle"),
        ("DRAM_BANDWIDTH", arch.dram_bandwidth, "bytes per cycle"),
        ("DRAM_LATENCY_CYCLES", arch.dram_latency_cycles, "cycles to the first word"),
        ("CLOCK_MHZ", int(round(arch.clock_hz / 1e6)), "clock (arch.json clock_hz / 1e6, rounded)"),
    ]


def bundle_constants(bundle: fmt.Bundle) -> list[tuple[str, int, str]]:
    """Sizes and placement of one bundle (its memory map, docs/bringup.md)."""
    m = bundle.manifest
    return [
        ("BUNDLE_INSTRUCTIONS", len(bundle.program), "program.hex lines"),
        ("BUNDLE_WEIGHT_WORDS", m.weight_words, "weights.hex lines"),
        ("BUNDLE_BIAS_WORDS", m.bias_words, "bias.hex lines"),
        ("BUNDLE_REQUANT_ENTRIES", m.requant_entries, "DRAM.Q entries (LDQ dram/count count these)"),
        ("BUNDLE_REQUANT_WORDS", m.requant_entries * REQUANT_ENTRY_WORDS, f"requant.hex lines ({REQUANT_ENTRY_WORDS} int32 words per entry: M, n, z)"),
        ("BUNDLE_ACTIVATION_WORDS", m.activation_words, "DRAM.A words per image (the batch stride)"),
        ("BUNDLE_INPUT_DRAM", m.input.dram, "DRAM.A word address of the network input"),
        ("BUNDLE_INPUT_WORDS", int(np.prod(m.input.shape)), "input words per image"),
        ("BUNDLE_OUTPUT_DRAM", m.output.dram, "DRAM.A word address of the network output"),
        ("BUNDLE_OUTPUT_WORDS", int(np.prod(m.output.shape)), "output words per image"),
        ("BUNDLE_GOLDEN_COUNT", m.golden_count, "golden vectors"),
        ("BUNDLE_LAYERS", len(bundle.layers), "layers (SYNC layer indices 0 .. LAYERS-1)"),
    ]


# The host interface of docs/bringup.md: control registers (byte offsets in the accelerator's
# register window) and the byte-addressed device DRAM map of one bundle.
HOST_REGISTERS: tuple[tuple[str, int, str], ...] = (
    ("REG_CTRL", 0x00, "write 1 to bit 0 (start): run the program once per image of the batch"),
    ("REG_STATUS", 0x04, "bit 0 done (sticky until the next start), bit 1 error, bit 2 busy"),
    ("REG_ERROR_PC", 0x08, "instruction index of the first error (when STATUS.error)"),
    ("REG_PROGRAM_BASE", 0x0C, "byte address of program.bin in device DRAM"),
    ("REG_PROGRAM_WORDS", 0x10, "instructions (128-bit words) to load"),
    ("REG_WEIGHT_BASE", 0x14, "byte address of DRAM.W word 0 (weights.bin)"),
    ("REG_BIAS_BASE", 0x18, "byte address of DRAM.B word 0 (bias.bin)"),
    ("REG_ACT_BASE", 0x1C, "byte address of image 0's DRAM.A word 0"),
    ("REG_ACT_STRIDE", 0x20, "bytes between consecutive images' DRAM.A spaces"),
    ("REG_BATCH", 0x24, "images in the batch"),
    ("REG_CYCLES_LO", 0x28, "cycles since start, bits 31..0 (read only)"),
    ("REG_CYCLES_HI", 0x2C, "cycles since start, bits 63..32 (read only)"),
    # ISA 2: appended after the ISA 1 registers so that their offsets did not move (decision 170).
    ("REG_REQUANT_BASE", 0x30, "byte address of DRAM.Q entry 0 (requant.bin)"),
)
REGION_ALIGN = 4096  # each DRAM region starts on a 4 KiB boundary
ACT_STRIDE_ALIGN = 64  # images' activation spaces start on 64-byte boundaries


def _align(value: int, to: int) -> int:
    return -(-value // to) * to


def memory_map(bundle: fmt.Bundle) -> list[tuple[str, int, str]]:
    """The bundle's default device-DRAM byte map (docs/bringup.md): program, weight image, bias
    image, requant image (ISA 2, ``DRAM.Q``), then one activation space per image; an ISA word
    address ``d`` of space X is byte ``X_BASE + d * X_WORD_BYTES`` (activations: ``+ n * ACT_STRIDE``
    for image ``n``; ``DRAM.Q`` entry ``d`` at ``REQUANT_BASE + 12 d``). Without requant entries the
    requant region is empty and the activation base is where ISA 1 put it."""
    m, arch = bundle.manifest, bundle.arch
    program_bytes = len(bundle.program) * WORD_BYTES
    weight_bytes = m.weight_words * arch.weight_word_bytes
    bias_bytes = m.bias_words * BIAS_WORD_BITS // 8
    weight_base = _align(program_bytes, REGION_ALIGN)
    bias_base = _align(weight_base + weight_bytes, REGION_ALIGN)
    requant_bytes = m.requant_entries * REQUANT_ENTRY_WORDS * BIAS_WORD_BITS // 8
    requant_base = _align(bias_base + bias_bytes, REGION_ALIGN)
    act_base = _align(requant_base + requant_bytes, REGION_ALIGN)
    stride = _align(m.activation_words * arch.neuron_word_bytes, ACT_STRIDE_ALIGN)
    return [
        ("MAP_PROGRAM_BASE", 0, f"{program_bytes} bytes"),
        ("MAP_WEIGHT_BASE", weight_base, f"{weight_bytes} bytes, {arch.weight_word_bytes} per word"),
        ("MAP_BIAS_BASE", bias_base, f"{bias_bytes} bytes, 4 per word"),
        ("MAP_REQUANT_BASE", requant_base, f"{requant_bytes} bytes, {REQUANT_ENTRY_WORDS * BIAS_WORD_BITS // 8} per entry (M, n, z: 4 each)"),
        ("MAP_ACT_BASE", act_base, "image 0's activation space"),
        ("MAP_ACT_STRIDE", stride, f"{m.activation_words} words x {arch.neuron_word_bytes} bytes, rounded up to {ACT_STRIDE_ALIGN}"),
        ("MAP_INPUT_OFFSET", m.input.dram * arch.neuron_word_bytes, "byte offset of the input within an image's space"),
        ("MAP_OUTPUT_OFFSET", m.output.dram * arch.neuron_word_bytes, "byte offset of the output within an image's space"),
    ]


# ---------------------------------------------------------------------------------------------
# SystemVerilog
# ---------------------------------------------------------------------------------------------


def _sv_table(name: str, kind: str, rows: Sequence[Sequence[int]], width: int) -> str:
    body = ", ".join("'{" + ", ".join(str(v) for v in row) + "}" for row in rows)
    return f"  localparam {kind} {name} [{OPCODE_SLOTS}][{width}] = '{{{body}}};\n"


def systemverilog_package(arch: Architecture, bundle: fmt.Bundle | None = None, source: str = "") -> str:
    """The text of ``axtrain_isa_pkg.sv``."""
    specs = sorted(OPS.values(), key=lambda s: s.opcode)
    max_fields = max(len(s.fields) for s in specs)
    out = [
        f"// Generated by `axtrain hdl` from ISA version {ISA_VERSION} (axtrain/formats/isa.py){source}. Do not edit: regenerate.\n",
        "// A parameter package: most consumers use a few constants and accessors, and each accessor reads\n",
        "// only its field of the word, so Verilator's unused warnings are off here (and only these).\n",
        "/* verilator lint_off UNUSEDPARAM */\n/* verilator lint_off UNUSEDSIGNAL */\n",
        f"package {PACKAGE};\n\n",
        f"  localparam int unsigned ISA_VERSION = {ISA_VERSION};\n",
        f"  localparam int unsigned WORD_BITS = {WORD_BITS};  // one instruction; program.hex holds one per line\n",
        f"  localparam int unsigned WORD_BYTES = {WORD_BYTES};  // program.bin: little-endian words back to back\n",
        f"  localparam int unsigned OPCODE_BITS = {OPCODE_BITS};  // bits [OPCODE_BITS-1:0]; 0 is never an instruction\n",
        f"  localparam int unsigned MAX_FIELDS = {max_fields};\n",
        "  typedef logic [WORD_BITS-1:0] word_t;\n\n",
        "  typedef enum logic [OPCODE_BITS-1:0] {\n",
        ",\n".join(f"    OP_{s.name} = {OPCODE_BITS}'h{s.opcode:02X}" for s in specs),
        "\n  } opcode_e;\n\n",
        "  // Multiplier mode codes (MODE code, the mode table): 0 exact, k in 1..16 DRUM(k). 17..31 are invalid.\n",
        f"  localparam int unsigned MODE_CODE_WIDTH = {MODE_CODE_BITS};\n",
        f"  localparam int unsigned MODE_EXACT = {MODE_EXACT};\n",
        "  localparam int unsigned MODE_DRUM_MIN = 1;\n",
        f"  localparam int unsigned MODE_DRUM_MAX = {MAX_MODE_CODE};\n\n",
        "  // Architecture\n",
    ]
    for name, value, comment in arch_constants(arch):
        out.append(f"  localparam int unsigned {name} = {value};  // {comment}\n")
    if bundle is not None:
        out.append("\n  // Bundle\n")
        for name, value, comment in bundle_constants(bundle):
            out.append(f"  localparam int unsigned {name} = {value};  // {comment}\n")
        if bundle.manifest.content_sha256:
            out.append(f"  localparam logic [255:0] BUNDLE_CONTENT_SHA256 = 256'h{bundle.manifest.content_sha256};\n")
        out.append("\n  // Device DRAM byte map (docs/bringup.md)\n")
        for name, value, comment in memory_map(bundle):
            out.append(f"  localparam int unsigned {name} = 32'h{value:08X};  // {comment}\n")
    out.append("\n  // Host control registers: byte offsets in the accelerator's register window (docs/bringup.md)\n")
    for name, value, comment in HOST_REGISTERS:
        out.append(f"  localparam int unsigned {name} = 'h{value:02X};  // {comment}\n")
    out.append("\n  // Operand fields: <OP>_<FIELD>_LSB / _BITS; signed fields are two's complement.\n")
    for s in specs:
        for name, lsb, bits, signed in field_layout(s):
            tag = f"{s.name}_{name.upper()}"
            out.append(f"  localparam int unsigned {tag}_LSB = {lsb};\n  localparam int unsigned {tag}_BITS = {bits};{'  // signed' if signed else ''}\n")
        out.append(f"  localparam int unsigned {s.name}_USED_BITS = {s.used_bits};  // bits above are reserved, zero\n")
    # Tables by opcode for generic decoders (unused opcodes: 0 fields).
    counts, lsbs, widths, signs = [0] * OPCODE_SLOTS, [[0] * max_fields for _ in range(OPCODE_SLOTS)], [[0] * max_fields for _ in range(OPCODE_SLOTS)], [[0] * max_fields for _ in range(OPCODE_SLOTS)]
    used = [0] * OPCODE_SLOTS
    for s in specs:
        counts[s.opcode], used[s.opcode] = len(s.fields), s.used_bits
        for i, (_, lsb, bits, signed) in enumerate(field_layout(s)):
            lsbs[s.opcode][i], widths[s.opcode][i], signs[s.opcode][i] = lsb, bits, int(signed)
    out.append("\n  // Tables indexed by opcode, for generic decoders.\n")
    out.append(f"  localparam int unsigned OP_VALID [{OPCODE_SLOTS}] = '{{{', '.join('1' if o in {s.opcode for s in specs} else '0' for o in range(OPCODE_SLOTS))}}};\n")
    out.append(f"  localparam int unsigned OP_FIELD_COUNT [{OPCODE_SLOTS}] = '{{{', '.join(map(str, counts))}}};\n")
    out.append(f"  localparam int unsigned OP_USED_BITS [{OPCODE_SLOTS}] = '{{{', '.join(map(str, used))}}};\n")
    out.append(_sv_table("OP_FIELD_LSB", "int unsigned", lsbs, max_fields))
    out.append(_sv_table("OP_FIELD_BITS", "int unsigned", widths, max_fields))
    out.append(_sv_table("OP_FIELD_SIGNED", "int unsigned", signs, max_fields))
    out.append("\n  function automatic logic [OPCODE_BITS-1:0] opcode_of(input word_t w);\n    return w[OPCODE_BITS-1:0];\n  endfunction\n")
    out.append(
        "\n  // 1 when the opcode is known and every reserved bit above its operands is zero.\n"
        "  function automatic logic word_valid(input word_t w);\n"
        "    int unsigned op;\n"
        "    op = int'(w[OPCODE_BITS-1:0]);\n"
        f"    if (op >= {OPCODE_SLOTS} || OP_VALID[op] == 0) return 1'b0;\n"
        "    return (w >> OP_USED_BITS[op]) == '0;\n"
        "  endfunction\n"
    )
    for s in specs:
        for name, _lsb, bits, signed in field_layout(s):
            tag = f"{s.name}_{name.upper()}"
            kind = "logic signed" if signed else "logic"
            out.append(
                f"\n  function automatic {kind} [{bits - 1}:0] {s.name.lower()}_{name}(input word_t w);\n"
                f"    return {'$signed(' if signed else ''}w[{tag}_LSB +: {tag}_BITS]{')' if signed else ''};\n"
                "  endfunction\n"
            )
    out.append(f"\nendpackage : {PACKAGE}\n/* verilator lint_on UNUSEDSIGNAL */\n/* verilator lint_on UNUSEDPARAM */\n")
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# C
# ---------------------------------------------------------------------------------------------


def c_header(arch: Architecture, bundle: fmt.Bundle | None = None, source: str = "") -> str:
    """The text of ``axtrain_isa.h`` (C99, header only)."""
    specs = sorted(OPS.values(), key=lambda s: s.opcode)
    max_fields = max(len(s.fields) for s in specs)
    out = [
        f"/* Generated by `axtrain hdl` from ISA version {ISA_VERSION} (axtrain/formats/isa.py){source}. Do not edit: regenerate. */\n",
        "#ifndef AXTRAIN_ISA_H\n#define AXTRAIN_ISA_H\n\n#include <stdint.h>\n\n",
        f"#define AXT_ISA_VERSION {ISA_VERSION}\n#define AXT_WORD_BITS {WORD_BITS}\n#define AXT_WORD_BYTES {WORD_BYTES}\n",
        f"#define AXT_OPCODE_BITS {OPCODE_BITS}\n#define AXT_MAX_FIELDS {max_fields}\n#define AXT_OPCODE_SLOTS {OPCODE_SLOTS}\n\n",
        f"#define AXT_MODE_CODE_WIDTH {MODE_CODE_BITS}\n#define AXT_MODE_EXACT {MODE_EXACT}\n#define AXT_MODE_DRUM_MIN 1\n#define AXT_MODE_DRUM_MAX {MAX_MODE_CODE}\n\n",
    ]
    for s in specs:
        out.append(f"#define AXT_OP_{s.name} 0x{s.opcode:02X}u\n")
    out.append("\n/* Architecture */\n")
    for name, value, comment in arch_constants(arch):
        out.append(f"#define AXT_{name} {value}u /* {comment} */\n")
    if bundle is not None:
        out.append("\n/* Bundle */\n")
        for name, value, comment in bundle_constants(bundle):
            out.append(f"#define AXT_{name} {value}u /* {comment} */\n")
        if bundle.manifest.content_sha256:
            out.append(f'#define AXT_BUNDLE_CONTENT_SHA256 "{bundle.manifest.content_sha256}"\n')
        out.append("\n/* Device DRAM byte map (docs/bringup.md) */\n")
        for name, value, comment in memory_map(bundle):
            out.append(f"#define AXT_{name} 0x{value:08X}u /* {comment} */\n")
    out.append("\n/* Host control registers: byte offsets in the register window (docs/bringup.md) */\n")
    for name, value, comment in HOST_REGISTERS:
        out.append(f"#define AXT_{name} 0x{value:02X}u /* {comment} */\n")
    out.append("\n/* Operand fields */\n")
    for s in specs:
        for name, lsb, bits, signed in field_layout(s):
            tag = f"AXT_{s.name}_{name.upper()}"
            out.append(f"#define {tag}_LSB {lsb}u\n#define {tag}_BITS {bits}u{' /* signed */' if signed else ''}\n")
        out.append(f"#define AXT_{s.name}_USED_BITS {s.used_bits}u\n")
    out.append(
        "\n/* One instruction word: lo = bits 63..0, hi = bits 127..64 (program.bin is little-endian). */\n"
        "typedef struct { uint64_t lo, hi; } axt_word_t;\n\n"
        "static inline axt_word_t axt_word_from_bytes(const uint8_t *b) {\n"
        "  axt_word_t w = {0, 0};\n  for (int i = 7; i >= 0; --i) { w.lo = (w.lo << 8) | b[i]; w.hi = (w.hi << 8) | b[i + 8]; }\n  return w;\n}\n\n"
        "/* Bits [lsb, lsb + n) of a word, n <= 64. */\n"
        "static inline uint64_t axt_bits(axt_word_t w, unsigned lsb, unsigned n) {\n"
        "  uint64_t v;\n"
        "  if (lsb >= 64) v = w.hi >> (lsb - 64);\n"
        "  else if (lsb == 0) v = w.lo;\n"
        "  else v = (w.lo >> lsb) | (w.hi << (64 - lsb));\n"
        "  return n >= 64 ? v : (v & ((UINT64_C(1) << n) - 1));\n}\n\n"
        "static inline int64_t axt_sbits(axt_word_t w, unsigned lsb, unsigned n) {\n"
        "  uint64_t v = axt_bits(w, lsb, n);\n  return (v >> (n - 1)) ? (int64_t)v - (int64_t)(UINT64_C(1) << n) : (int64_t)v;\n}\n\n"
        "static inline unsigned axt_opcode(axt_word_t w) { return (unsigned)(w.lo & 0xFFu); }\n"
    )
    for s in specs:
        for name, _lsb, _bits, signed in field_layout(s):
            tag = f"AXT_{s.name}_{name.upper()}"
            if signed:
                out.append(f"static inline int64_t axt_{s.name.lower()}_{name}(axt_word_t w) {{ return axt_sbits(w, {tag}_LSB, {tag}_BITS); }}\n")
            else:
                out.append(f"static inline uint64_t axt_{s.name.lower()}_{name}(axt_word_t w) {{ return axt_bits(w, {tag}_LSB, {tag}_BITS); }}\n")
    names = ["0"] * OPCODE_SLOTS
    counts, used = [0] * OPCODE_SLOTS, [0] * OPCODE_SLOTS
    fields = [["0"] * max_fields for _ in range(OPCODE_SLOTS)]
    lsbs = [[0] * max_fields for _ in range(OPCODE_SLOTS)]
    widths = [[0] * max_fields for _ in range(OPCODE_SLOTS)]
    signs = [[0] * max_fields for _ in range(OPCODE_SLOTS)]
    for s in specs:
        names[s.opcode], counts[s.opcode], used[s.opcode] = f'"{s.name}"', len(s.fields), s.used_bits
        for i, (name, lsb, bits, signed) in enumerate(field_layout(s)):
            fields[s.opcode][i], lsbs[s.opcode][i], widths[s.opcode][i], signs[s.opcode][i] = f'"{name}"', lsb, bits, int(signed)

    def table(rows: list[list]) -> str:
        return "{" + ", ".join("{" + ", ".join(map(str, row)) + "}" for row in rows) + "}"

    out.append("\n/* Tables indexed by opcode (a null name: not an instruction). */\n")
    out.append(f"static const char *const axt_op_name[AXT_OPCODE_SLOTS] = {{{', '.join(names)}}};\n")
    out.append(f"static const uint8_t axt_field_count[AXT_OPCODE_SLOTS] = {{{', '.join(map(str, counts))}}};\n")
    out.append(f"static const uint8_t axt_used_bits[AXT_OPCODE_SLOTS] = {{{', '.join(map(str, used))}}};\n")
    out.append(f"static const char *const axt_field_name[AXT_OPCODE_SLOTS][AXT_MAX_FIELDS] = {table(fields)};\n")
    out.append(f"static const uint8_t axt_field_lsb[AXT_OPCODE_SLOTS][AXT_MAX_FIELDS] = {table(lsbs)};\n")
    out.append(f"static const uint8_t axt_field_bits[AXT_OPCODE_SLOTS][AXT_MAX_FIELDS] = {table(widths)};\n")
    out.append(f"static const uint8_t axt_field_signed[AXT_OPCODE_SLOTS][AXT_MAX_FIELDS] = {table(signs)};\n")
    out.append("\n#endif /* AXTRAIN_ISA_H */\n")
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# Testbench
# ---------------------------------------------------------------------------------------------

_LINE = re.compile(r"^([A-Z]+)((?: [a-z0-9]+=-?\d+)*)$")


def expected_fields(disassembly: str) -> str:
    """``expected_fields.hex`` from disassembly text: per instruction its opcode, then each operand's
    raw field bits (two's complement within the field), one 32-bit word per line."""
    lines = []
    for number, text in enumerate(disassembly.splitlines()):
        match = _LINE.match(text.strip())
        if not match:
            raise ValueError(f"disassembly line {number + 1} is not canonical: {text!r}")
        spec = OPS[match.group(1)]
        lines.append(f"{spec.opcode:08x}")
        values = dict(token.split("=") for token in match.group(2).split())
        for name, _, bits, _ in field_layout(spec):
            lines.append(f"{int(values[name]) & ((1 << bits) - 1):08x}")
    return "".join(line + "\n" for line in lines)


def checksum(words: np.ndarray, bits: int) -> tuple[int, int]:
    """(sum, position-weighted sum) of sign-extended words, modulo 2**32, as the testbench computes."""
    values = [int(v) for v in np.asarray(words, dtype=np.int64).reshape(-1)]
    plain = sum(values) & 0xFFFFFFFF
    weighted = sum((i + 1) * v for i, v in enumerate(values)) & 0xFFFFFFFF
    return plain, weighted


def testbench(bundle: fmt.Bundle, images: list[tuple[str, str, int, int, np.ndarray]]) -> str:
    """The text of ``axtrain_tb.sv``. ``images``: (file, array name, word bits, words, values)."""
    specs = sorted(OPS.values(), key=lambda s: s.opcode)
    expected_words = sum(1 + len(ins.spec.fields) for ins in bundle.program)
    out = [
        f"// Generated by `axtrain hdl` for bundle {bundle.manifest.content_sha256 or bundle.path.name}. Do not edit: regenerate.\n",
        "// Loads the bundle's hex images with $readmemh, decodes every instruction with the package's\n",
        "// accessors and compares each field with expected_fields.hex (made from the disassembly), then\n",
        "// checks every image's checksums. Prints PASS or FAIL and finishes.\n",
        f"module {TESTBENCH};\n  import {PACKAGE}::*;\n\n",
        f"  localparam int unsigned EXPECTED_WORDS = {expected_words};\n",
        "  word_t program_words [BUNDLE_INSTRUCTIONS];\n",
        "  logic [31:0] expected [EXPECTED_WORDS];\n",
    ]
    for _, array, bits, words, _ in images:
        out.append(f"  logic [{bits - 1}:0] {array} [{words}];\n")
    out.append(
        "  int unsigned errors;\n  int unsigned cursor;\n  logic [31:0] sum, weighted;\n\n"
        "  task automatic check(input string what, input int unsigned index, input logic [31:0] got, input logic [31:0] want);\n"
        "    if (got !== want) begin\n"
        "      if (errors < 10) $display(\"FAIL instruction %0d %s: decoded 0x%08x, disassembly 0x%08x\", index, what, got, want);\n"
        "      errors = errors + 1;\n"
        "    end\n"
        "  endtask\n\n"
        "  initial begin\n"
        "    errors = 0;\n"
        f"    $readmemh(\"{fmt.PROGRAM_HEX}\", program_words);\n"
        f"    $readmemh(\"{EXPECTED_FILE}\", expected);\n"
    )
    for file, array, _, _, _ in images:
        out.append(f"    $readmemh(\"{file}\", {array});\n")
    out.append(
        "    cursor = 0;\n"
        "    for (int unsigned i = 0; i < BUNDLE_INSTRUCTIONS; i++) begin\n"
        "      check(\"opcode\", i, 32'(opcode_of(program_words[i])), expected[cursor]);\n"
        "      if (!word_valid(program_words[i])) check(\"reserved bits\", i, 32'd1, 32'd0);\n"
        "      cursor = cursor + 1;\n"
        "      case (opcode_e'(opcode_of(program_words[i])))\n"
    )
    for s in specs:
        out.append(f"        OP_{s.name}: begin\n")
        for name, _, _bits, _ in field_layout(s):
            accessor = f"{s.name.lower()}_{name}(program_words[i])"
            out.append(f"          check(\"{s.name}.{name}\", i, 32'({{{accessor}}}), expected[cursor]); cursor = cursor + 1;\n")
        out.append("        end\n")
    out.append(
        "        default: check(\"known opcode\", i, 32'd1, 32'd0);\n"
        "      endcase\n"
        "    end\n"
        "    check(\"expected_fields.hex consumed\", BUNDLE_INSTRUCTIONS, cursor, EXPECTED_WORDS);\n"
    )
    for file, array, bits, words, values in images:
        plain, weighted = checksum(values, bits)
        out.append(
            "    sum = 0; weighted = 0;\n"
            f"    for (int unsigned i = 0; i < {words}; i++) begin\n"
            f"      sum = sum + 32'($signed({array}[i]));\n"
            f"      weighted = weighted + (i + 1) * 32'($signed({array}[i]));\n"
            "    end\n"
            f"    check(\"{file} sum\", 0, sum, 32'h{plain:08x});\n"
            f"    check(\"{file} position-weighted sum\", 0, weighted, 32'h{weighted:08x});\n"
        )
    out.append(
        "    if (errors == 0) $display(\"PASS %0d instructions decoded, "
        + f"{len(images)} hex images loaded"
        + "\", BUNDLE_INSTRUCTIONS);\n"
        "    else $display(\"FAIL %0d mismatches\", errors);\n"
        "    $finish;\n"
        "  end\nendmodule\n"
    )
    return "".join(out)


def testbench_images(bundle: fmt.Bundle) -> list[tuple[str, str, int, int, np.ndarray]]:
    """The hex images the testbench loads: (file name in the output folder, array, bits, words, values)."""
    m, arch = bundle.manifest, bundle.arch
    images = [
        (fmt.WEIGHTS_HEX, "weights", arch.weight_word_bits, m.weight_words, bundle.weights),
        (fmt.BIAS_HEX, "bias", BIAS_WORD_BITS, m.bias_words, bundle.bias),
    ]
    if m.requant_entries:  # a zero-size unpacked array is not legal SystemVerilog: only when there are entries
        words = fmt.requant_image_words(bundle.requant)
        images.append((fmt.REQUANT_HEX, "requant", BIAS_WORD_BITS, int(words.size), words))
    q = bundle.load_npy(fmt.GOLDEN_INPUTS_INT)
    images.append(("golden_inputs.hex", "golden_inputs", arch.neuron_word_bits, int(q.size), q))
    for layer in bundle.layers:
        values = bundle.golden_layer(layer.index)
        bits = fmt.golden_word_bits(layer.output_format, arch.neuron_word_bits)
        images.append((f"golden_layer_{layer.index}.hex", f"golden_layer_{layer.index}", bits, int(values.size), values))
    return images


def generate(out: Path, arch: Architecture, bundle: fmt.Bundle | None = None, source: str = "", overwrite: bool = False) -> list[str]:
    """Write the generated files into the folder ``out`` atomically; returns their names."""
    files: dict[str, bytes] = {
        PACKAGE_FILE: systemverilog_package(arch, bundle, source).encode("ascii"),
        HEADER_FILE: c_header(arch, bundle, source).encode("ascii"),
    }
    if bundle is not None:
        images = testbench_images(bundle)
        files[TESTBENCH_FILE] = testbench(bundle, images).encode("ascii")
        files[EXPECTED_FILE] = expected_fields(disassemble(bundle.program_bytes)).encode("ascii")
        files[fmt.PROGRAM_HEX] = fmt.program_hex(bundle.program_bytes).encode("ascii")
        for file, _, bits, _, values in images:
            if file in (fmt.WEIGHTS_HEX, fmt.BIAS_HEX, fmt.REQUANT_HEX):
                files[file] = (bundle.path / file).read_bytes()  # the bundle's own image, byte for byte
            else:
                files[file] = fmt.image_hex(np.asarray(values).reshape(-1), bits).encode("ascii")
    with atomic.directory(out, overwrite=overwrite) as tmp:
        for name, data in sorted(files.items()):
            (tmp / name).write_bytes(data)
    return sorted(files)


def verilator_commands(out: Path) -> list[list[str]]:
    """The commands that lint the package and build the testbench (run in ``out``)."""
    return [
        ["verilator", "--lint-only", "-Wall", PACKAGE_FILE],
        ["verilator", "--binary", "-Wall", "--top-module", TESTBENCH, PACKAGE_FILE, TESTBENCH_FILE, "-o", TESTBENCH],
    ]


def have_verilator() -> bool:
    return shutil.which("verilator") is not None
