"""ISA v2: encoding layout, exact round trips (hypothesis), and one-line refusals."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from axtrain.errors import BundleError
from axtrain.formats.isa import (
    OPS,
    WINDOW_TABLE_MAX,
    WORD_BYTES,
    Geometry,
    Instruction,
    assemble,
    decode,
    decode_program,
    disassemble,
    encode,
    encode_program,
    listing,
    parse_assembly,
    parse_line,
)


@st.composite
def instructions(draw: st.DrawFn) -> Instruction:
    spec = draw(st.sampled_from(list(OPS.values())))
    return Instruction(spec.name, tuple(draw(st.integers(f.lo, f.hi)) for f in spec.fields))


@settings(max_examples=400, deadline=None)
@given(instructions())
def test_encode_decode_and_text_round_trip(instruction: Instruction) -> None:
    word = encode(instruction)
    assert len(word) == WORD_BYTES
    assert decode(word) == instruction
    assert parse_assembly(str(instruction)) == [instruction]


@settings(max_examples=100, deadline=None)
@given(st.lists(instructions(), min_size=0, max_size=30))
def test_assemble_disassemble_round_trip(program: list[Instruction]) -> None:
    binary = encode_program(program)
    assert assemble(disassemble(binary)) == binary
    assert decode_program(binary) == program
    # The commented listing assembles to the same binary too.
    assert assemble(listing(program, {0: "a note"})) == binary


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=WORD_BYTES, max_size=WORD_BYTES))
def test_any_word_decodes_canonically_or_is_refused(word: bytes) -> None:
    try:
        instruction = decode(word, index=7)
    except BundleError as exc:
        assert "instruction 7" in str(exc)
        return
    assert encode(instruction) == word
    # decode skips the creation checks (its operands come from their bit fields): they would pass.
    assert Instruction(instruction.op, instruction.args) == instruction
    assert hash(Instruction(instruction.op, instruction.args)) == hash(instruction)


def test_field_layout_is_little_endian_lsb_first() -> None:
    # RELU: opcode 0x0A in bits 0..7, m (12 bits) from bit 8, p (12 bits) from bit 20.
    word = encode(Instruction.of("RELU", m=1, p=2))
    assert word == bytes([0x0A, 0x01, 0x20]) + bytes(13)
    # REQ's signed shift: -1 is eight one bits right after nb(20) ostride(20) m(12) p(12) = bit 72.
    value = int.from_bytes(encode(Instruction.of("REQ", nb=0, ostride=0, m=0, p=0, shift=-1, bits=0)), "little")
    assert value == 0x0B | (0xFF << 72)
    assert encode(Instruction.of("END")) == bytes([0x0E]) + bytes(15)


@pytest.mark.parametrize(
    "word, reason",
    [
        (bytes(16), "unknown opcode 0x00"),
        (bytes([0xEE]) + bytes(15), "unknown opcode 0xee"),
        (bytes([0x0E, 0x01]) + bytes(14), "reserved bits 8..127 are not zero"),
        (bytes([0x0A]) + bytes(14) + bytes([0x80]), "reserved bits 32..127"),
    ],
)
def test_undecodable_words_name_index_and_reason(word: bytes, reason: str) -> None:
    program = encode_program([Instruction.of("END")]) * 2 + word
    with pytest.raises(BundleError, match=rf"instruction 2 .*{reason}|instruction 2: {reason}"):
        decode_program(program)


def test_program_size_must_be_whole_words() -> None:
    with pytest.raises(BundleError, match="not a multiple of the 16-byte"):
        decode_program(bytes(17))


@pytest.mark.parametrize(
    "text, message",
    [
        ("FOO m=1", "line 1: unknown instruction 'FOO'"),
        ("RELU m=1", r"line 1: .*missing operands \['p'\]"),
        ("RELU m=1 p=2 q=3", r"unknown operands \['q'\]"),
        ("RELU m=4096 p=1", "m=4096 outside its 12-bit range"),
        ("REQ nb=0 ostride=0 m=1 p=1 shift=-129 bits=8", "shift=-129 outside"),
        ("\nRELU m=1 p", "line 2: bad operand 'p'"),
        ("RELU m=1 m=2 p=1", "operand m given twice"),
    ],
)
def test_assembler_errors_are_one_line(text: str, message: str) -> None:
    with pytest.raises(BundleError, match=message) as info:
        assemble(text)
    assert "\n" not in str(info.value)


def test_text_accepts_any_operand_order_hex_and_comments() -> None:
    text = "; header\nRELU p=0x10 m=3 ; trailing\n\n"
    assert parse_assembly(text) == [Instruction.of("RELU", m=3, p=16)]


# ---------------------------------------------------------------------------------------------
# The encodings the ISA owns: mode codes, operand ranges, the bias word
# ---------------------------------------------------------------------------------------------


def test_mode_codes_and_their_inverse() -> None:
    from axtrain.errors import HardwareModelError
    from axtrain.formats.isa import MAX_MODE_CODE, MODE_EXACT, mode_code, mode_of_code
    from axtrain.hwmodels.multipliers import EXACT, MAX_DRUM_K, MultiplierMode

    assert mode_code(EXACT) == MODE_EXACT == 0 and mode_of_code(0) == EXACT
    for k in range(1, MAX_DRUM_K + 1):  # docs/isa.md: code k is DRUM(k)
        assert mode_code(MultiplierMode(k)) == k and mode_of_code(k) == MultiplierMode(k)
    assert MAX_MODE_CODE == MAX_DRUM_K <= OPS["MODE"].field("code").hi
    with pytest.raises(HardwareModelError):
        mode_of_code(MAX_MODE_CODE + 1)
    program = parse_assembly(f"MODE mt=0 count=1 code={MAX_MODE_CODE + 1}\nEND")
    from axtrain.formats.arch import Architecture
    from axtrain.formats.isa import check_program

    with pytest.raises(BundleError, match="mode code 17"):
        check_program(program, Architecture())


def test_operand_ranges_come_from_the_field_widths() -> None:
    """Widths as docs/isa.md states them; the limits other modules use are derived from them."""
    from axtrain.compiler.passes import emit, tile_schedule
    from axtrain.formats import arch
    from axtrain.formats.isa import operand_range

    assert operand_range("LDW", "rows") == (0, (1 << 12) - 1)
    assert operand_range("REQ", "shift") == (-128, 127)
    assert operand_range("CONV", "kh") == (0, 31)
    with pytest.raises(KeyError, match="LDW has no operand 'nope'"):
        operand_range("LDW", "nope")
    assert emit.MAX_LDW_ROWS == OPS["LDW"].field("rows").hi
    assert tile_schedule.SHIFT_RANGE == (OPS["REQ"].field("shift").lo, OPS["REQ"].field("shift").hi)
    assert arch.MAX_PES == OPS["MAC"].field("m").hi == OPS["MAC"].field("p").hi
    assert arch.MAX_LOCAL_WORDS == OPS["DISTN"].field("k").hi
    assert arch.MAX_BUFFER_WORDS == OPS["DISTN"].field("nb").hi == OPS["LDW"].field("wb").hi
    assert arch.MAX_BIAS_WORDS == OPS["LDB"].field("bb").hi == OPS["MAC"].field("mt").hi


def test_schedule_refuses_geometry_beyond_the_conv_fields() -> None:
    """A 33x33 kernel does not fit CONV's 5-bit kh/kw: refused by name with the field's limit."""
    import numpy as np

    from axtrain.compiler.ir import CompilerIR
    from axtrain.compiler.passes.tile_schedule import tile_schedule
    from axtrain.errors import ConfigError
    from axtrain.formats.arch import Architecture
    from axtrain.hwmodels.fixedpoint import FixedPointFormat as F
    from axtrain.hwmodels.layers import QuantizedLayer

    layer = QuantizedLayer("big", "conv", F(8, 4), F(8, 2), np.ones((1, 1, 33, 33), dtype=np.int64), F(8, 7), np.zeros(1, dtype=np.int64), False, padding=0)
    ir = CompilerIR("big.onnx", "0" * 64, Architecture(), layers=(layer,), shapes=((1, 40, 40), (1, 8, 8)))
    with pytest.raises(ConfigError, match="kh=33 exceeds ISA v2's limit of 31"):
        tile_schedule(ir)


def test_bias_word_width_is_the_isa_s() -> None:
    from axtrain.formats import bundle
    from axtrain.formats.arch import Architecture
    from axtrain.formats.isa import BIAS_WORD_BITS, BIAS_WORD_BYTES
    from axtrain.runtime import energy
    from axtrain.runtime.simulator import dram_cycles, simulate_fast

    assert BIAS_WORD_BITS == 32 and BIAS_WORD_BYTES == 4  # docs/isa.md: DRAM.B and BB are 32-bit
    assert bundle.BIAS_WORD_BITS is BIAS_WORD_BITS and energy.BIAS_WORD_BITS is BIAS_WORD_BITS
    arch = Architecture(dram_bandwidth=3, dram_latency_cycles=7, dram_burst_bytes=4)  # bursts of one bias word
    events = simulate_fast(parse_assembly("LDB bb=0 dram=0 count=5\nEND"), arch)
    assert events.dram_read_bytes == 5 * 4 and events.cycles == dram_cycles(20, arch) + 1 == 7 + 7 + 1


def test_isa_2_req_fields_and_ldq_layout() -> None:
    # REQ: after bits(6) at bit 80 come uns(1) at 86, rq(1) at 87, qa(16) from 88.
    value = int.from_bytes(encode(Instruction.of("REQ", nb=0, ostride=0, m=0, p=0, shift=0, bits=0, uns=1, rq=1, qa=0xABCD)), "little")
    assert value == 0x0B | (1 << 86) | (1 << 87) | (0xABCD << 88)
    # The new operands default to 0: an ISA 1-style line assembles to the power-of-two, signed REQ.
    old_style = Instruction.of("REQ", nb=1, ostride=1, m=1, p=1, shift=3, bits=8)
    assert (old_style["uns"], old_style["rq"], old_style["qa"]) == (0, 0, 0)
    assert str(old_style).endswith("uns=0 rq=0 qa=0") and parse_line(str(old_style)) == old_style
    # LDQ 0x0F: qa(16) from bit 8, dram(32) from 24, count(16) from 56.
    value = int.from_bytes(encode(Instruction.of("LDQ", qa=3, dram=5, count=7)), "little")
    assert value == 0x0F | (3 << 8) | (5 << 24) | (7 << 56)
    with pytest.raises(BundleError, match=r"missing operands \['dram'\]"):
        Instruction.of("LDQ", qa=0, count=1)


@pytest.mark.parametrize("line, reason", [
    ("REQ nb=0 ostride=1 m=1 p=1 shift=0 bits=16 uns=1", r"unsigned output width 16 outside \[2, 15\]"),
    ("REQ nb=0 ostride=1 m=1 p=1 shift=2 bits=8 rq=1", "shift must be 0 when the requant table scales"),
    ("REQ nb=0 ostride=1 m=2 p=1 shift=0 bits=8 rq=1 qa=1023", r"requant table range \[1023, 1025\) exceeds its 1024 words"),
    ("LDQ qa=0 dram=3 count=2", r"DRAM requant range \[3, 5\) exceeds its 4 words"),
])
def test_isa_2_static_checks(line: str, reason: str) -> None:
    from axtrain.formats.arch import Architecture
    from axtrain.formats.isa import check_program

    program = [parse_line(line), Instruction.of("END")]
    with pytest.raises(BundleError, match=reason):
        check_program([i for i in program if i is not None], Architecture(), requant_entries=4)


def _window_loops(g: Geometry, p0: int, p: int, k0: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The obvious loops of a DISTN window (docs/isa.md): offset of input ``(c, y, x)`` clipped into
    the map, and whether it lies inside."""
    offsets, inside = np.zeros((p, k), dtype=np.int64), np.zeros((p, k), dtype=bool)
    for i in range(p):
        oy, ox = divmod(p0 + i, g.ow)
        for j in range(k):
            c, rest = divmod(k0 + j, g.kh * g.kw)
            ky, kx = divmod(rest, g.kw)
            y, x = oy * g.sh - g.pt + ky, ox * g.sw - g.pl + kx
            inside[i, j] = 0 <= y < g.h and 0 <= x < g.w
            offsets[i, j] = c * g.h * g.w + min(max(y, 0), g.h - 1) * g.w + min(max(x, 0), g.w - 1)
    return offsets, inside


@pytest.mark.parametrize("c, h, w, kh, kw, s, pt, pb, p0, p, k0, k", [
    (6, 1, 1, 1, 1, 1, 0, 0, 0, 1, 2, 3),  # a dense tile
    (6, 1, 1, 1, 1, 1, 0, 1, 0, 2, 0, 6),  # a 1x1 map padded below: two positions, one of padding
    (6, 1, 1, 1, 1, 1, 0, 1, 1, 1, 0, 6),  # the padded position alone
    (2, 5, 4, 3, 2, 2, 1, 2, 1, 5, 1, 9),
    (3, 4, 4, 3, 3, 1, 1, 1, 0, 16, 0, 27),
    (64, 32, 32, 3, 3, 1, 1, 1, 990, 34, 570, 6),  # a geometry too large for a kept table: computed
])
def test_window_matches_the_loops(c: int, h: int, w: int, kh: int, kw: int, s: int, pt: int, pb: int, p0: int, p: int, k0: int, k: int) -> None:
    oh, ow = (h + pt + pb - kh) // s + 1, (w + pt + pb - kw) // s + 1
    g = Geometry(c, h, w, kh, kw, s, s, pt, pt, pb, pb, 0, oh, ow)
    offsets, inside = g.window(p0, p, k0, k)
    want_offsets, want_inside = _window_loops(g, p0, p, k0, k)
    assert offsets.shape == inside.shape == (p, k)
    assert np.array_equal(offsets, want_offsets) and np.array_equal(inside, want_inside)
    assert (g.positions * g.fan_in <= WINDOW_TABLE_MAX) == (not offsets.flags.writeable)  # a slice of the kept table
