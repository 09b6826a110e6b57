"""The loader's shortcut for ``program.asm``: the compiler's canonical listing is accepted without
parsing; anything else is parsed, so equivalent text is accepted and different text refused."""

from __future__ import annotations

from axtrain.formats.bundle import listing_is_canonical
from axtrain.formats.isa import Instruction, listing, parse_assembly

PROGRAM = [
    Instruction.of("LDN", nb=0, dram=0, count=10),
    Instruction.of("REQ", nb=4, ostride=1, m=2, p=3, shift=-2, bits=8),
    Instruction.of("END"),
]


def test_the_compilers_listing_is_canonical() -> None:
    text = listing(PROGRAM, {1: "layer 0 fc1 (dense)"})
    assert listing_is_canonical(text, PROGRAM)
    assert parse_assembly(text) == PROGRAM  # what the shortcut stands for


def test_equivalent_but_different_text_is_not_canonical_yet_parses_the_same() -> None:
    text = "LDN count=10 dram=0 nb=0\n\n  REQ nb=4 ostride=1 m=2 p=3 shift=-2 bits=8 ; moved\nend\n"
    assert not listing_is_canonical(text, PROGRAM)
    assert parse_assembly(text) == PROGRAM


def test_a_changed_missing_or_extra_instruction_is_not_canonical() -> None:
    text = listing(PROGRAM)
    assert not listing_is_canonical(text.replace("shift=-2", "shift=-3"), PROGRAM)
    assert not listing_is_canonical(text.replace("END", "; END"), PROGRAM)
    assert not listing_is_canonical(text + "END\n", PROGRAM)
