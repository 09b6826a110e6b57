"""AxTrain FlexFlow ISA, version 2: instructions, binary encoding, assembler and disassembler.

The semantics of every instruction are written down in docs/isa.md and executed, slowly and
obviously, by ``axtrain.runtime.interpreter`` (the living definition). This module knows the
*shape* of instructions: their operands, field widths, the 128-bit little-endian encoding, the text
syntax, and the static checks a program must pass against an :class:`Architecture`.

Encoding: every instruction is one 128-bit word stored little-endian (16 bytes). Bits [0, 8) hold
the opcode; the operands follow from bit 8 upward in the order of :data:`OPS`, each in its own
width (signed operands in two's complement). Every bit above the last operand is reserved and must
be zero; opcode 0 is not an instruction, so zeroed memory never decodes.

Text syntax (one instruction per line): ``MNEMONIC name=value name=value ...`` with every operand
named, in any order (an operand with a default, such as those ISA 2 added to REQ, may be left out); ``;`` starts a comment; blank lines are ignored. The disassembler writes the
canonical form (operands in encoding order), so ``assemble(disassemble(b)) == b``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Iterable, Iterator, Mapping, Protocol, Sequence

import numpy as np

from axtrain.errors import BundleError
from axtrain.hwmodels.multipliers import EXACT, MAX_DRUM_K, MultiplierMode


class MachineLimits(Protocol):
    """What :func:`check_program` reads of an architecture (``formats.arch.Architecture`` has it;
    a protocol, because the architecture module builds on this one, not the other way round)."""

    @property
    def pe_count(self) -> int: ...
    @property
    def pe_weight_memory_words(self) -> int: ...
    @property
    def pe_neuron_memory_words(self) -> int: ...
    @property
    def weight_buffer_words(self) -> int: ...
    @property
    def neuron_buffer_words(self) -> int: ...
    @property
    def bias_buffer_words(self) -> int: ...
    @property
    def neuron_word_bits(self) -> int: ...

ISA_VERSION = "2"
WORD_BITS = 128
WORD_BYTES = WORD_BITS // 8
OPCODE_BITS = 8

# The bias image (DRAM.B) and the bias buffer hold 32-bit two's complement words: the bias lives at
# accumulator precision (docs/isa.md, docs/numerics.md). The one statement of that width.
BIAS_WORD_BITS = 32
BIAS_WORD_BYTES = BIAS_WORD_BITS // 8
# A requant table entry (RQ, loaded by LDQ from DRAM.Q) is three such 32-bit words: the multiplier M
# (0 <= M < 2**31), the right shift n (0..127) and the output zero point z (hwmodels.fixedpoint).
REQUANT_ENTRY_WORDS = 3
# STA stores accumulators saturated to 32 bits: an accumulator output word (a float graph output).
ACC_OUT_WORD_BITS = 32
ACC_OUT_WORD_BYTES = ACC_OUT_WORD_BITS // 8

# Multiplier mode codes held by the mode table: 0 = exact, k = DRUM(k) (mode_code / mode_of_code).
MODE_EXACT = 0
MAX_MODE_CODE = MAX_DRUM_K


@dataclass(frozen=True)
class FieldSpec:
    """One operand: its name, width in bits, signedness and meaning."""

    name: str
    bits: int
    signed: bool = False
    doc: str = ""
    default: int | None = None  # an operand with a default may be left out (assembler, Instruction.of)

    @property
    def lo(self) -> int:
        return -(1 << (self.bits - 1)) if self.signed else 0

    @property
    def hi(self) -> int:
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1


@dataclass(frozen=True)
class OpSpec:
    """One instruction kind: mnemonic, opcode, operands, and the class it is counted under."""

    name: str
    opcode: int
    kind: str  # load | store | distribute | compute | activation | requantize | pool | eltwise | config | sync
    fields: tuple[FieldSpec, ...]
    doc: str

    @cached_property
    def field_names(self) -> tuple[str, ...]:
        # Cached: read once per instruction by operands() and str() (~7,000 per ResNet-8 load and plan).
        return tuple(f.name for f in self.fields)

    @property
    def used_bits(self) -> int:
        return OPCODE_BITS + sum(f.bits for f in self.fields)

    def field(self, name: str) -> FieldSpec:
        """The operand called ``name`` (KeyError naming the instruction if there is none)."""
        for spec in self.fields:
            if spec.name == name:
                return spec
        raise KeyError(f"{self.name} has no operand {name!r}")


def _f(name: str, bits: int, doc: str, signed: bool = False, default: int | None = None) -> FieldSpec:
    return FieldSpec(name, bits, signed, doc, default)


# The instruction set. Order of fields = encoding order (LSB first after the opcode).
_SPECS: tuple[OpSpec, ...] = (
    OpSpec("LDW", 0x01, "load", (
        _f("wb", 20, "weight buffer word address of the first word written"),
        _f("dram", 32, "DRAM weight image word address of the first word read"),
        _f("rows", 12, "rows of the block"),
        _f("cols", 16, "words per row"),
        _f("stride", 20, "DRAM words between the starts of consecutive rows"),
    ), "WB[wb + r*cols + c] = DRAM.W[dram + r*stride + c] for r < rows, c < cols"),
    OpSpec("LDB", 0x02, "load", (
        _f("bb", 16, "bias buffer address"),
        _f("dram", 32, "DRAM bias image word address"),
        _f("count", 16, "words"),
    ), "BB[bb + i] = DRAM.B[dram + i] for i < count"),
    OpSpec("LDN", 0x03, "load", (
        _f("nb", 20, "neuron buffer address"),
        _f("dram", 32, "DRAM activation word address"),
        _f("count", 20, "words"),
    ), "NB[nb + i] = DRAM.A[dram + i] for i < count (per image)"),
    OpSpec("STN", 0x04, "store", (
        _f("dram", 32, "DRAM activation word address"),
        _f("nb", 20, "neuron buffer address"),
        _f("count", 20, "words"),
    ), "DRAM.A[dram + i] = NB[nb + i] for i < count (per image)"),
    OpSpec("MODE", 0x05, "config", (
        _f("mt", 16, "mode table address (output neuron index)"),
        _f("count", 16, "entries"),
        _f("code", 5, "multiplier: 0 exact, k in 1..16 DRUM(k)"),
    ), "MT[mt + i] = code for i < count"),
    OpSpec("CONV", 0x06, "config", (
        _f("c", 16, "input channels (a dense layer: fan-in, h = w = 1)"),
        _f("h", 10, "input height"),
        _f("w", 10, "input width"),
        _f("kh", 5, "kernel height"),
        _f("kw", 5, "kernel width"),
        _f("sh", 4, "vertical stride"),
        _f("sw", 4, "horizontal stride"),
        _f("pt", 4, "padding rows above the map"),
        _f("pl", 4, "padding columns left of the map"),
        _f("pb", 4, "padding rows below the map"),
        _f("pr", 4, "padding columns right of the map"),
        _f("padv", 16, "the value padding positions read (the input zero point; 0: zero padding)", signed=True),
        _f("oh", 10, "output height"),
        _f("ow", 10, "output width"),
    ), "set the geometry registers read by DISTN"),
    OpSpec("DISTW", 0x07, "distribute", (
        _f("wb", 20, "weight buffer address of row 0, word 0"),
        _f("stride", 20, "weight buffer words between rows"),
        _f("m", 12, "output neurons (rows) in the tile"),
        _f("p", 12, "positions in the tile (each row is replicated over p PEs)"),
        _f("k", 16, "words per PE"),
    ), "WLM[e][i] = WB[wb + (e // p)*stride + i] for e < m*p, i < k"),
    OpSpec("DISTN", 0x08, "distribute", (
        _f("nb", 20, "neuron buffer address of the input map [c, h, w]"),
        _f("p0", 20, "first output position of the tile (oy*ow + ox)"),
        _f("m", 12, "output neurons in the tile"),
        _f("p", 12, "positions in the tile"),
        _f("k0", 20, "first input index of the chunk (c*kh*kw + ky*kw + kx)"),
        _f("k", 16, "words per PE"),
    ), "NLM[e][i] = X(p0 + e % p, k0 + i) for e < m*p, i < k (per image, zero outside the map)"),
    OpSpec("MAC", 0x09, "compute", (
        _f("m", 12, "output neurons in the tile"),
        _f("p", 12, "positions in the tile"),
        _f("k", 16, "products per PE"),
        _f("bb", 16, "bias buffer address of the tile's first output neuron"),
        _f("mt", 16, "mode table address of the tile's first output neuron"),
        _f("init", 1, "1: start from the bias; 0: accumulate onto ACC"),
    ), "ACC[e] = (init ? BB[bb + e//p] : ACC[e]) + sum_i mul_{MT[mt + e//p]}(NLM[e][i], WLM[e][i])"),
    OpSpec("RELU", 0x0A, "activation", (
        _f("m", 12, "output neurons in the tile"),
        _f("p", 12, "positions in the tile"),
    ), "ACC[e] = max(ACC[e], 0) for e < m*p"),
    OpSpec("REQ", 0x0B, "requantize", (
        _f("nb", 20, "neuron buffer address of the tile's first output"),
        _f("ostride", 20, "neuron buffer words between output neurons (output positions of the map)"),
        _f("m", 12, "output neurons in the tile"),
        _f("p", 12, "positions in the tile"),
        _f("shift", 8, "right shift (accumulator frac - output frac); negative = left shift; 0 when rq=1", signed=True),
        _f("bits", 6, "output width to saturate to (2..neuron word bits)"),
        _f("uns", 1, "1: saturate to unsigned [0, 2**bits - 1] (bits < neuron word bits); 0: signed", default=0),
        _f("rq", 1, "1: scale by the requant table entry (M, n, z) of each output neuron instead of 2**-shift", default=0),
        _f("qa", 16, "requant table address of the tile's first output neuron (rq=1)", default=0),
    ), "NB[nb + (e//p)*ostride + e%p] = sat(rq ? z + round_half_even(ACC[e] * M * 2**-n) with (M, n, z) = RQ[qa + e//p] "
       ": round_half_even(ACC[e] * 2**-shift))"),
    OpSpec("POOL", 0x0C, "pool", (
        _f("dst", 20, "neuron buffer address of the output map"),
        _f("src", 20, "neuron buffer address of the input map"),
        _f("c", 12, "channels"),
        _f("h", 10, "input height"),
        _f("w", 10, "input width"),
        _f("kh", 4, "window height"),
        _f("kw", 4, "window width"),
        _f("sh", 4, "vertical stride"),
        _f("sw", 4, "horizontal stride"),
        _f("pt", 4, "padding rows above (ignored positions)"),
        _f("pl", 4, "padding columns left"),
        _f("pb", 4, "padding rows below"),
        _f("pr", 4, "padding columns right"),
    ), "max pooling; padding positions take no part; floor output size"),
    OpSpec("SYNC", 0x0D, "sync", (
        _f("layer", 16, "layer index"),
        _f("nb", 20, "address of the layer's output (neuron buffer, or activation DRAM if space = 1)"),
        _f("count", 20, "words of the layer's output"),
        _f("space", 1, "0: the output is in the neuron buffer; 1: in activation DRAM (a spilled layer)"),
    ), "barrier: everything before it has completed; layer's output is NB[nb : nb + count] (space 1: DRAM.A)"),
    OpSpec("END", 0x0E, "sync", (), "end of program"),
    OpSpec("LDQ", 0x0F, "load", (
        _f("qa", 16, "requant table address (entries)"),
        _f("dram", 32, "DRAM requant image entry address"),
        _f("count", 16, "entries"),
    ), "RQ[qa + i] = DRAM.Q[dram + i] for i < count (an entry: multiplier M, shift n, output zero point z)"),
    OpSpec("STA", 0x10, "store", (
        _f("dram", 32, "DRAM activation word address of the tile's first output (a 32-bit accumulator word)"),
        _f("ostride", 20, "words between output neurons"),
        _f("m", 12, "output neurons in the tile"),
        _f("p", 12, "positions in the tile"),
    ), "DRAM.A[dram + (e//p)*ostride + e%p] = sat32(ACC[e]) for e < m*p (per image; a float graph output)"),
    OpSpec("ADD", 0x11, "eltwise", (
        _f("dst", 20, "neuron buffer address of the sum (may equal a or b: elementwise in place)"),
        _f("a", 20, "neuron buffer address of the first addend"),
        _f("b", 20, "neuron buffer address of the second addend"),
        _f("count", 20, "words"),
        _f("sa", 5, "left shift of a (to the finer of the two scales)"),
        _f("sb", 5, "left shift of b"),
        _f("shift", 8, "right shift of the sum to the output scale; negative = left shift", signed=True),
        _f("bits", 5, "signed output width to saturate to"),
        _f("relu", 1, "1: clamp the sum at 0 before rounding"),
    ), "NB[dst + i] = sat_bits(round_half_even(relu?((NB[a+i] << sa) + (NB[b+i] << sb)) * 2**-shift))"),
    OpSpec("AVGPOOL", 0x12, "pool", (
        _f("dst", 20, "neuron buffer address of the output map"),
        _f("src", 20, "neuron buffer address of the input map"),
        _f("c", 12, "channels"),
        _f("h", 10, "input height"),
        _f("w", 10, "input width"),
        _f("kh", 6, "window height (GlobalAveragePool: h)"),
        _f("kw", 6, "window width (GlobalAveragePool: w)"),
        _f("sh", 4, "vertical stride"),
        _f("sw", 4, "horizontal stride"),
        _f("pt", 4, "padding rows above (not counted)"),
        _f("pl", 4, "padding columns left"),
        _f("pb", 4, "padding rows below"),
        _f("pr", 4, "padding columns right"),
        _f("shift", 6, "output frac - input frac (scale of the average)", signed=True),
        _f("bits", 5, "signed output width to saturate to"),
        _f("cip", 1, "1: divide by the whole window kh*kw (ONNX count_include_pad=1, padding sums as 0); 0: by its in-map positions", default=0),
    ), "average of each window's in-map positions (cip=1: sum over kh*kw), * 2**shift, rounded half to even, saturated"),
)

OPS: dict[str, OpSpec] = {spec.name: spec for spec in _SPECS}
BY_OPCODE: dict[int, OpSpec] = {spec.opcode: spec for spec in _SPECS}
KINDS: tuple[str, ...] = tuple(dict.fromkeys(spec.kind for spec in _SPECS))

for _spec in _SPECS:  # import-time self check: every instruction fits its word
    assert _spec.used_bits <= WORD_BITS, _spec.name
assert OPS["MODE"].field("code").hi >= MAX_MODE_CODE  # every DRUM(k) has a code


def operand_range(op: str, name: str) -> tuple[int, int]:
    """``(lowest, highest)`` value the encoding of operand ``name`` of ``op`` holds.

    Other modules (the compiler's schedule and emitter, the architecture's limits) derive their
    operand limits from here rather than restating field widths."""
    spec = OPS[op].field(name)
    return spec.lo, spec.hi


def mode_code(mode: MultiplierMode) -> int:
    """The mode-table code of a multiplier: 0 exact, k DRUM(k) (inverse: :func:`mode_of_code`)."""
    k = mode.k
    return MODE_EXACT if k is None else int(k)


def mode_of_code(code: int) -> MultiplierMode:
    """The multiplier a mode-table code stands for (inverse of :func:`mode_code`); a code outside
    0..MAX_MODE_CODE raises HardwareModelError (``check_program`` refuses such programs first)."""
    return EXACT if int(code) == MODE_EXACT else MultiplierMode(int(code))


@dataclass(frozen=True)
class Instruction:
    """One instruction: a mnemonic and its operands in encoding order (validated on creation)."""

    op: str
    args: tuple[int, ...]

    def __post_init__(self) -> None:
        spec = OPS.get(self.op)
        if spec is None:
            raise BundleError(f"unknown instruction {self.op!r}")
        if len(self.args) != len(spec.fields):
            raise BundleError(f"{self.op} takes {len(spec.fields)} operands ({', '.join(spec.field_names)}), got {len(self.args)}")
        for field, value in zip(spec.fields, self.args, strict=True):
            if not isinstance(value, int) or isinstance(value, bool):
                raise BundleError(f"{self.op} operand {field.name} must be an integer, got {value!r}")
            if not field.lo <= value <= field.hi:
                raise BundleError(f"{self.op} operand {field.name}={value} outside its {field.bits}-bit range [{field.lo}, {field.hi}]")

    @classmethod
    def of(cls, op: str, **operands: int) -> "Instruction":
        """Build an instruction from named operands (all of them but those with a default, no others)."""
        spec = OPS.get(op)
        if spec is None:
            raise BundleError(f"unknown instruction {op!r}")
        missing = [f.name for f in spec.fields if f.name not in operands and f.default is None]
        extra = [n for n in operands if n not in spec.field_names]
        if missing or extra:
            raise BundleError(f"{op}: missing operands {missing}, unknown operands {extra}")
        return cls(op, tuple(int(operands[f.name]) if f.name in operands else int(f.default or 0) for f in spec.fields))

    @property
    def spec(self) -> OpSpec:
        return OPS[self.op]

    @property
    def kind(self) -> str:
        return OPS[self.op].kind

    def __getitem__(self, name: str) -> int:
        try:
            return self.args[OPS[self.op].field_names.index(name)]
        except ValueError:
            raise KeyError(f"{self.op} has no operand {name!r}") from None

    def operands(self) -> dict[str, int]:
        """The operands by name (a new dict each call: the caller may change it)."""
        return dict(zip(OPS[self.op].field_names, self.args, strict=True))

    def __str__(self) -> str:
        return " ".join([self.op, *(f"{n}={v}" for n, v in zip(OPS[self.op].field_names, self.args, strict=True))])



def _decoded(op: str, args: tuple[int, ...]) -> Instruction:
    """An :class:`Instruction` whose operands :func:`decode` took from their own bit fields: each is
    in its field's range by construction, so the checks of ``__post_init__`` (a third of decoding a
    5,000-instruction program) are not run again. The same object ``Instruction(op, args)`` gives."""
    instruction = object.__new__(Instruction)
    object.__setattr__(instruction, "op", op)
    object.__setattr__(instruction, "args", args)
    return instruction


# Per opcode: the spec and, per operand, (shift, mask, sign bit or 0): decode's inner loop reads
# these instead of the field specs' properties.
_DECODE: dict[int, tuple[OpSpec, tuple[tuple[int, int, int], ...], int]] = {}
for _spec in _SPECS:
    _layout, _shift = [], OPCODE_BITS
    for _field in _spec.fields:
        _layout.append((_shift, (1 << _field.bits) - 1, 1 << (_field.bits - 1) if _field.signed else 0))
        _shift += _field.bits
    _DECODE[_spec.opcode] = (_spec, tuple(_layout), _shift)


# ---------------------------------------------------------------------------------------------
# Binary encoding
# ---------------------------------------------------------------------------------------------


def encode(instruction: Instruction) -> bytes:
    """The 16-byte little-endian word of one instruction."""
    spec = instruction.spec
    word = spec.opcode
    shift = OPCODE_BITS
    for field, value in zip(spec.fields, instruction.args, strict=True):
        word |= (value & ((1 << field.bits) - 1)) << shift
        shift += field.bits
    return word.to_bytes(WORD_BYTES, "little")


def decode(word: bytes, index: int = 0) -> Instruction:
    """Decode one 16-byte word; an undecodable word raises BundleError naming ``index`` and why."""
    if len(word) != WORD_BYTES:
        raise BundleError(f"instruction {index}: {len(word)} bytes, expected {WORD_BYTES}")
    return _decode_value(int.from_bytes(word, "little"), index)


def _decode_value(value: int, index: int) -> Instruction:
    """:func:`decode` of the word read as one little-endian number."""
    entry = _DECODE.get(value & ((1 << OPCODE_BITS) - 1))
    if entry is None:
        raise BundleError(f"instruction {index}: unknown opcode 0x{value & ((1 << OPCODE_BITS) - 1):02x}")
    spec, layout, used = entry
    if value >> used:
        raise BundleError(f"instruction {index} ({spec.name}): reserved bits {used}..{WORD_BITS - 1} are not zero")
    args = []
    for shift, mask, sign in layout:
        raw = (value >> shift) & mask
        args.append(raw - (sign << 1) if raw & sign else raw)  # two's complement of a signed field
    return _decoded(spec.name, tuple(args))


def encode_program(program: Iterable[Instruction]) -> bytes:
    """Concatenated words of a program (what ``program.bin`` holds)."""
    return b"".join(encode(i) for i in program)


def decode_program(data: bytes) -> list[Instruction]:
    """Decode ``program.bin``; a size that is not a whole number of words is a BundleError."""
    if len(data) % WORD_BYTES:
        raise BundleError(f"program is {len(data)} bytes, not a multiple of the {WORD_BYTES}-byte instruction word")
    view = memoryview(data)
    return [_decode_value(int.from_bytes(view[i : i + WORD_BYTES], "little"), i // WORD_BYTES) for i in range(0, len(data), WORD_BYTES)]


# ---------------------------------------------------------------------------------------------
# Text: assembler and disassembler
# ---------------------------------------------------------------------------------------------

_OPERAND = re.compile(r"^([a-z][a-z0-9]*)=(-?(?:0x[0-9a-fA-F]+|\d+))$")


def parse_line(line: str, line_number: int = 1) -> Instruction | None:
    """One line of assembly -> an instruction (None for a blank or comment line)."""
    text = line.split(";", 1)[0].strip()
    if not text:
        return None
    mnemonic, *tokens = text.split()
    spec = OPS.get(mnemonic.upper())
    if spec is None:
        raise BundleError(f"line {line_number}: unknown instruction {mnemonic!r}")
    operands: dict[str, int] = {}
    for token in tokens:
        match = _OPERAND.match(token)
        if not match:
            raise BundleError(f"line {line_number}: bad operand {token!r} (expected name=value)")
        name, number = match.groups()
        if name in operands:
            raise BundleError(f"line {line_number}: operand {name} given twice")
        if len(number) > 24:  # no operand is wider than 32 bits; also keeps int() off huge literals
            raise BundleError(f"line {line_number}: operand {name} value {number[:12]}... is too long")
        operands[name] = int(number, 0)
    try:
        return Instruction.of(spec.name, **operands)
    except BundleError as exc:
        raise BundleError(f"line {line_number}: {exc}") from None


def parse_assembly(text: str) -> list[Instruction]:
    """Assembly text -> instructions."""
    program = []
    for number, line in enumerate(text.splitlines(), start=1):
        instruction = parse_line(line, number)
        if instruction is not None:
            program.append(instruction)
    return program


def assemble(text: str) -> bytes:
    """Assembly text -> ``program.bin`` bytes."""
    return encode_program(parse_assembly(text))


def disassemble(data: bytes) -> str:
    """``program.bin`` bytes -> canonical assembly text (one instruction per line)."""
    return "".join(f"{instruction}\n" for instruction in decode_program(data))


def listing(program: Sequence[Instruction], notes: Mapping[int, str] | None = None) -> str:
    """A readable listing (``program.asm``): canonical lines, with the index and optional notes as
    comments. It assembles back to the same binary (comments are ignored)."""
    notes = notes or {}
    lines = [f"; AxTrain FlexFlow ISA v{ISA_VERSION} program, {len(program)} instructions\n"]
    for index, instruction in enumerate(program):
        if index in notes:
            lines.append(f"; {notes[index]}\n")
        lines.append(f"{str(instruction):<96} ; {index}\n")
    return "".join(lines)


def count_by_kind(program: Iterable[Instruction]) -> dict[str, int]:
    """Instruction counts per mnemonic (stable order of the ISA table, zeros omitted)."""
    counts = {name: 0 for name in OPS}
    for instruction in program:
        counts[instruction.op] += 1
    return {name: n for name, n in counts.items() if n}


# ---------------------------------------------------------------------------------------------
# Static checks against an architecture
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Geometry:
    """The geometry registers set by CONV and read by DISTN."""

    c: int
    h: int
    w: int
    kh: int
    kw: int
    sh: int
    sw: int
    pt: int
    pl: int
    pb: int
    pr: int
    padv: int
    oh: int
    ow: int

    @property
    def fan_in(self) -> int:
        return self.c * self.kh * self.kw

    @property
    def positions(self) -> int:
        return self.oh * self.ow

    def window(self, p0: int, p: int, k0: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Neuron-buffer offsets (relative to the map's base) of a DISTN tile, vectorised.

        Row ``i`` is output position ``p0 + i``, column ``j`` the fan-in element ``k0 + j`` (channel,
        kernel row, kernel column). Returns ``(offsets [p, k], inside [p, k])``: offsets are clipped
        into the map, so they are valid addresses everywhere; ``inside`` is False where the window
        reads padding (the value ``padv``). The fast executor and the bulk cycle counter share this;
        the interpreter and the reference simulator keep their own obvious loops as the definition.

        A tile inside a geometry of at most :data:`WINDOW_TABLE_MAX` positions x fan-in is a
        read-only slice of the whole geometry's table, computed once (:func:`_window_table`):
        ResNet-8's 977 tiles of ~10 geometries cost a dozen small array operations each before.
        """
        if 0 <= p0 and p0 + p <= self.positions and 0 <= k0 and k0 + k <= self.fan_in and self.positions * self.fan_in <= WINDOW_TABLE_MAX:
            offsets, inside = _window_table(self)
            return offsets[p0 : p0 + p, k0 : k0 + k], inside[p0 : p0 + p, k0 : k0 + k]
        return _window_offsets(self, p0, p, k0, k)


WINDOW_TABLE_MAX = 1 << 18  # positions x fan-in of the largest geometry whose window table is kept (2.4 MB)


@lru_cache(maxsize=32)
def _window_table(g: Geometry) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_window_offsets` of every position and fan-in element of ``g``, read-only."""
    offsets, inside = _window_offsets(g, 0, g.positions, 0, g.fan_in)
    offsets.flags.writeable = False
    inside.flags.writeable = False
    return offsets, inside


def _window_offsets(g: Geometry, p0: int, p: int, k0: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """:meth:`Geometry.window` computed (see there)."""
    oy, ox = np.divmod(p0 + np.arange(p), g.ow)
    ci, rem = np.divmod(k0 + np.arange(k), g.kh * g.kw)
    ky, kx = np.divmod(rem, g.kw)
    iy = oy[:, None] * g.sh - g.pt + ky[None, :]
    ix = ox[:, None] * g.sw - g.pl + kx[None, :]
    inside = (iy >= 0) & (iy < g.h) & (ix >= 0) & (ix < g.w)
    offsets = ci[None, :] * (g.h * g.w) + np.clip(iy, 0, g.h - 1) * g.w + np.clip(ix, 0, g.w - 1)
    return offsets, inside


def conv_output_size(size: int, k: int, s: int, pad_before: int, pad_after: int) -> int:
    """Output extent of a ``k``-window, stride-``s`` convolution or pool over padded ``size`` (floor)."""
    return (size + pad_before + pad_after - k) // s + 1


def pool_output_size(size: int, k: int, s: int, pad_before: int = 0, pad_after: int = 0) -> int:
    """Output extent of a ``k``-window, stride-``s`` max pool (floor, as onnxruntime's ceil_mode 0)."""
    return conv_output_size(size, k, s, pad_before, pad_after)


def pool_output_shape(o: Mapping[str, int]) -> tuple[int, int]:
    """``(oh, ow)`` of a POOL instruction's operands."""
    return (pool_output_size(o["h"], o["kh"], o["sh"], o["pt"], o["pb"]), pool_output_size(o["w"], o["kw"], o["sw"], o["pl"], o["pr"]))


_TILE_OPS = frozenset(spec.name for spec in _SPECS if spec.kind in ("distribute", "compute", "activation", "requantize"))


def check_program(
    program: Sequence[Instruction],
    arch: MachineLimits,
    weight_words: int | None = None,
    bias_words: int | None = None,
    activation_words: int | None = None,
    requant_entries: int | None = None,
) -> None:
    """Check every operand of ``program`` against ``arch`` (and the DRAM image sizes if given).

    The checks are static: a program has no branches, so the geometry registers are tracked in
    order. Raises BundleError naming the first bad instruction.
    """
    pes = arch.pe_count
    local = min(arch.pe_weight_memory_words, arch.pe_neuron_memory_words)
    # The limits read once (each is a computed property: ~2,500 reads per 5,000 instructions).
    weight_buffer, neuron_buffer, bias_buffer, neuron_bits = arch.weight_buffer_words, arch.neuron_buffer_words, arch.bias_buffer_words, arch.neuron_word_bits
    geometry: Geometry | None = None
    ended = False

    def fail(index: int, ins: Instruction, reason: str) -> None:
        raise BundleError(f"instruction {index} ({ins.op}): {reason}")

    def within(index: int, ins: Instruction, what: str, start: int, length: int, size: int | None) -> None:
        if size is not None and length > 0 and start + length > size:
            fail(index, ins, f"{what} [{start}, {start + length}) exceeds its {size} words")

    for index, ins in enumerate(program):
        o = ins.operands()
        op = ins.op
        if ended:
            fail(index, ins, "instruction after END")
        if ins.op == "LDW":
            if o["rows"] > 1 and o["stride"] < o["cols"]:
                fail(index, ins, "stride smaller than cols (rows would overlap)")
            within(index, ins, "weight buffer range", o["wb"], o["rows"] * o["cols"], weight_buffer)
            within(index, ins, "DRAM weight range", o["dram"], (o["rows"] - 1) * o["stride"] + o["cols"] if o["rows"] else 0, weight_words)
        elif ins.op == "LDB":
            within(index, ins, "bias buffer range", o["bb"], o["count"], bias_buffer)
            within(index, ins, "DRAM bias range", o["dram"], o["count"], bias_words)
        elif ins.op == "LDQ":
            within(index, ins, "requant table range", o["qa"], o["count"], bias_buffer)
            within(index, ins, "DRAM requant range", o["dram"], o["count"], requant_entries)
        elif ins.op in ("LDN", "STN"):
            within(index, ins, "neuron buffer range", o["nb"], o["count"], neuron_buffer)
            within(index, ins, "DRAM activation range", o["dram"], o["count"], activation_words)
        elif ins.op == "MODE":
            if o["code"] > MAX_MODE_CODE:
                fail(index, ins, f"mode code {o['code']} is not 0 (exact) or 1..{MAX_MODE_CODE} (DRUM)")
            within(index, ins, "mode table range", o["mt"], o["count"], bias_buffer)
        elif ins.op == "CONV":
            g = Geometry(**o)
            if min(g.c, g.h, g.w, g.kh, g.kw, g.sh, g.sw) < 1:
                fail(index, ins, "c, h, w, kh, kw and the strides must be at least 1")
            oh = conv_output_size(g.h, g.kh, g.sh, g.pt, g.pb)
            ow = conv_output_size(g.w, g.kw, g.sw, g.pl, g.pr)
            if (g.oh, g.ow) != (oh, ow) or oh < 1 or ow < 1:
                fail(index, ins, f"output size {g.oh}x{g.ow} does not match the geometry ({oh}x{ow})")
            within(index, ins, "input map", 0, g.c * g.h * g.w, neuron_buffer)
            geometry = g
        elif op in _TILE_OPS:
            if not 1 <= o["m"] * o["p"] <= pes:
                fail(index, ins, f"tile of m*p = {o['m'] * o['p']} PEs outside [1, {pes}]")
            if ins.op in ("DISTW", "DISTN", "MAC") and not 1 <= o["k"] <= local:
                fail(index, ins, f"k={o['k']} outside [1, {local}] (PE local memory words)")
            if ins.op == "DISTW":
                within(index, ins, "weight buffer range", o["wb"], (o["m"] - 1) * o["stride"] + o["k"], weight_buffer)
            elif ins.op == "DISTN":
                if geometry is None:
                    fail(index, ins, "DISTN before any CONV set the geometry")
                assert geometry is not None
                if o["p0"] + o["p"] > geometry.positions:
                    fail(index, ins, f"positions [{o['p0']}, {o['p0'] + o['p']}) exceed the {geometry.positions} of the geometry")
                if o["k0"] + o["k"] > geometry.fan_in:
                    fail(index, ins, f"inputs [{o['k0']}, {o['k0'] + o['k']}) exceed the fan-in {geometry.fan_in}")
                within(index, ins, "input map", o["nb"], geometry.c * geometry.h * geometry.w, neuron_buffer)
            elif ins.op == "MAC":
                within(index, ins, "bias buffer range", o["bb"], o["m"], bias_buffer)
                within(index, ins, "mode table range", o["mt"], o["m"], bias_buffer)
            elif ins.op == "REQ":
                if not 2 <= o["bits"] <= neuron_bits - o["uns"]:
                    fail(index, ins, f"{'unsigned' if o['uns'] else 'signed'} output width {o['bits']} outside [2, {neuron_bits - o['uns']}] (neuron word)")
                if o["rq"]:
                    if o["shift"] != 0:
                        fail(index, ins, "shift must be 0 when the requant table scales (rq=1)")
                    within(index, ins, "requant table range", o["qa"], o["m"], bias_buffer)
                if o["m"] > 1 and o["ostride"] < o["p"]:
                    fail(index, ins, "ostride smaller than p (outputs would overlap)")
                within(index, ins, "neuron buffer range", o["nb"], (o["m"] - 1) * o["ostride"] + o["p"], neuron_buffer)
        elif ins.op == "ADD":
            if not 2 <= o["bits"] <= neuron_bits:
                fail(index, ins, f"output width {o['bits']} outside [2, {neuron_bits}] (neuron word)")
            for what in ("dst", "a", "b"):
                within(index, ins, f"map {what}", o[what], o["count"], neuron_buffer)
            for what in ("a", "b"):  # in place, or disjoint: a partial overlap would read written sums
                if o["dst"] != o[what] and o["dst"] < o[what] + o["count"] and o[what] < o["dst"] + o["count"]:
                    fail(index, ins, f"dst overlaps {what} without being equal to it")
        elif ins.op in ("POOL", "AVGPOOL"):
            if ins.op == "AVGPOOL" and not 2 <= o["bits"] <= neuron_bits:
                fail(index, ins, f"output width {o['bits']} outside [2, {neuron_bits}] (neuron word)")
            if min(o["c"], o["h"], o["w"], o["kh"], o["kw"], o["sh"], o["sw"]) < 1:
                fail(index, ins, "channels, sizes, window and strides must be at least 1")
            if max(o["pt"], o["pb"]) >= o["kh"] or max(o["pl"], o["pr"]) >= o["kw"]:
                fail(index, ins, "padding must be smaller than the window (every window holds a map position)")
            oh, ow = pool_output_shape(o)
            if oh < 1 or ow < 1:
                fail(index, ins, f"window {o['kh']}x{o['kw']} does not fit the padded {o['h']}x{o['w']} map")
            within(index, ins, "input map", o["src"], o["c"] * o["h"] * o["w"], neuron_buffer)
            within(index, ins, "output map", o["dst"], o["c"] * oh * ow, neuron_buffer)
        elif ins.op == "SYNC":
            if o["space"]:
                within(index, ins, "layer output in activation DRAM", o["nb"], o["count"], activation_words)
            else:
                within(index, ins, "layer output", o["nb"], o["count"], neuron_buffer)
        elif ins.op == "STA":
            if not 1 <= o["m"] * o["p"] <= pes:
                fail(index, ins, f"tile of m*p = {o['m'] * o['p']} PEs outside [1, {pes}]")
            if o["m"] > 1 and o["ostride"] < o["p"]:
                fail(index, ins, "ostride smaller than p (outputs would overlap)")
            within(index, ins, "DRAM activation range", o["dram"], (o["m"] - 1) * o["ostride"] + o["p"], activation_words)
        elif ins.op == "END":
            ended = True
    if not ended:
        raise BundleError("program does not end with END")


def iter_words(data: bytes) -> Iterator[bytes]:
    """The 16-byte words of a program image."""
    for i in range(0, len(data), WORD_BYTES):
        yield data[i : i + WORD_BYTES]
