"""runtime/timing.py: the structure both cycle simulators share (units, footprints, conflicts,
residency, synapse split), checked against facts worked out by hand."""

from __future__ import annotations

from axtrain.formats.arch import Architecture
from axtrain.formats.isa import Instruction, parse_assembly
from axtrain.runtime.timing import conflicts, footprint, footprints, mac_cycles, resident_loads, synapse_split, tree_depth, unit_of


def test_units_and_footprints() -> None:
    program = parse_assembly("""
        LDW wb=10 dram=0 rows=2 cols=3 stride=3
        CONV c=2 h=4 w=4 kh=3 kw=3 sh=1 sw=1 pt=1 pl=1 pb=1 pr=1 padv=0 oh=4 ow=4
        DISTW wb=10 stride=3 m=2 p=4 k=3
        DISTN nb=100 p0=0 m=2 p=4 k0=0 k=3
        MAC m=2 p=4 k=3 bb=5 mt=5 init=1
        REQ nb=300 ostride=16 m=2 p=4 shift=0 bits=8
        STN dram=0 nb=300 count=20
        END
    """)
    assert [unit_of(i.op) for i in program] == ["dma", "pe", "pe", "pe", "pe", "pe", "dma", "pe"]
    fp = footprints(program)
    assert fp[0].writes == (("WB", 10, 16),)
    assert fp[2].reads == (("WB", 10, 16),)  # rows 0 and 1 of stride 3, k = 3
    assert fp[3].reads == (("NB", 100, 132),)  # the whole 2x4x4 input map
    assert fp[4].reads == (("BB", 5, 7),)
    assert fp[5].writes == (("NB", 300, 320),)  # (m - 1) * ostride + p
    assert fp[6].reads == (("NB", 300, 320),)
    assert fp[7].barrier and not fp[5].barrier
    assert conflicts(fp[0], fp[2]) and conflicts(fp[5], fp[6])  # RAW
    assert not conflicts(fp[0], fp[3])  # different buffers
    assert conflicts(fp[2], footprint(Instruction.of("LDW", wb=15, dram=0, rows=1, cols=1, stride=1), None))  # WAR
    assert not conflicts(fp[2], footprint(Instruction.of("LDW", wb=16, dram=0, rows=1, cols=1, stride=1), None))
    assert not conflicts(footprint(Instruction.of("LDB", bb=5, dram=0, count=0), None), fp[4])  # an empty span touches nothing


def test_resident_loads_and_the_synapse_split() -> None:
    program = parse_assembly("""
        LDW wb=0 dram=0 rows=1 cols=4 stride=4
        LDW wb=4 dram=4 rows=1 cols=4 stride=4
        LDW wb=6 dram=8 rows=1 cols=4 stride=4
        LDB bb=0 dram=0 count=3
        END
    """)
    assert resident_loads(program) == frozenset({0, 3})  # the second and third overlap at words 6, 7
    arch = Architecture(pe_rows=4, pe_cols=4)
    assert [synapse_split(m, 1, 64, arch) for m in (1, 5, 8, 16)] == [16, 3, 2, 1]
    assert synapse_split(1, 1, 5, arch) == 5  # never more parts than products
    assert synapse_split(1, 1, 64, arch.model_copy(update={"synapse_parallelism": False})) == 1
    assert [tree_depth(s) for s in (1, 2, 3, 4, 5, 16)] == [0, 1, 2, 2, 3, 4]
    assert mac_cycles(5, 1, 64, arch) == 2 + 22 + 2  # fill 2, ceil(64 / 3) steps, 2 tree levels
