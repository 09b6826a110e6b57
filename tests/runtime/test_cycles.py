"""Reference (clock-stepping) and fast (closed-form) cycle simulators agree exactly.

Every case compares the complete Events (cycles, stalls, PE-cycles, per-op cycles, multiplies per
mode, every memory's reads and writes per voltage, DRAM bytes). Cases: compiled small networks on the
default and a tiny 2x3 array (tiles that do not divide the array, several chunks, weight reloads,
bias blocks), mode and voltage overrides, and hand-written programs for edge cases.
"""

from __future__ import annotations

import pytest

from axtrain.formats.arch import Architecture
from axtrain.formats.isa import check_program, parse_assembly
from axtrain.hwmodels.multipliers import parse_mode
from axtrain.runtime.events import instruction_context
from axtrain.runtime.simulator import simulate_fast
from axtrain.runtime.simulator_reference import simulate_reference

CASES = [
    ("mlp", "default", None, None),
    ("mlp", "tiny", "drum:2", 0.66),
    ("cnn", "default", None, None),
    ("cnn", "tiny", None, 0.4),
    ("cnn", "tiny", "K1", None),
    ("mixed", "tiny", None, None),
    ("mixed", "default", None, 0.85),
]


@pytest.mark.parametrize("kind,arch_name,mode,voltage", CASES)
def test_reference_and_fast_agree_on_compiled_bundles(bundle_factory, kind, arch_name, mode, voltage) -> None:
    bundle, _ = bundle_factory(kind, arch_name)
    override = parse_mode(mode) if mode else None
    context = instruction_context(bundle.program, bundle.arch, bundle.layers, override, voltage)
    reference = simulate_reference(bundle.program, bundle.arch, context)
    fast = simulate_fast(bundle.program, bundle.arch, context)
    assert reference.as_dict() == fast.as_dict()
    assert reference.cycles > 0 and reference.macs == sum(layer.macs for layer in bundle.layers)
    ops = {ins.op for ins in bundle.program}
    assert set(reference.instructions) == ops


ODD_ARCH = Architecture(pe_rows=3, pe_cols=5, weight_buffer_bandwidth=5, neuron_buffer_bandwidth=3, dram_bandwidth=3, dram_latency_cycles=7, weight_word_bits=8, neuron_word_bits=16)

HAND_PROGRAMS = {
    # Every instruction kind, an empty bias load, mixed modes in one tile, a tile of 14 of 15 PEs,
    # padding-only positions, k that divides nothing, a stride-2 pool.
    "all-kinds": """
        LDN nb=0 dram=0 count=50
        LDB bb=0 dram=0 count=0
        LDB bb=0 dram=0 count=7
        MODE mt=0 count=3 code=0
        MODE mt=3 count=4 code=2
        LDW wb=0 dram=0 rows=7 cols=18 stride=18
        CONV c=2 h=5 w=5 kh=3 kw=3 stride=2 pad=2 oh=4 ow=4
        DISTW wb=0 stride=18 m=7 p=2 k=11
        DISTN nb=0 p0=0 m=7 p=2 k0=0 k=11
        MAC m=7 p=2 k=11 bb=0 mt=0 init=1
        DISTW wb=11 stride=18 m=7 p=2 k=7
        DISTN nb=0 p0=0 m=7 p=2 k0=11 k=7
        MAC m=7 p=2 k=7 bb=0 mt=0 init=0
        RELU m=7 p=2
        REQ nb=100 ostride=16 m=7 p=2 shift=5 bits=8
        DISTN nb=0 p0=14 m=7 p=2 k0=0 k=11
        MAC m=7 p=2 k=11 bb=0 mt=0 init=1
        REQ nb=114 ostride=16 m=7 p=2 shift=-2 bits=6
        POOL dst=300 src=100 c=7 h=4 w=4 k=2 s=2
        SYNC layer=0 nb=300 count=28
        STN dram=60 nb=300 count=28
        END
    """,
    "dense-single-pe": """
        LDN nb=0 dram=0 count=3
        CONV c=3 h=1 w=1 kh=1 kw=1 stride=1 pad=0 oh=1 ow=1
        LDB bb=0 dram=0 count=1
        LDW wb=0 dram=0 rows=1 cols=3 stride=3
        DISTW wb=0 stride=3 m=1 p=1 k=3
        DISTN nb=0 p0=0 m=1 p=1 k0=0 k=3
        MAC m=1 p=1 k=3 bb=0 mt=0 init=1
        REQ nb=10 ostride=1 m=1 p=1 shift=0 bits=16
        SYNC layer=0 nb=10 count=1
        STN dram=3 nb=10 count=1
        END
    """,
    # ISA 2: requant table entries loaded by LDQ, table-scaled REQs (signed and unsigned), a conv tile.
    "requant-table": """
        LDN nb=0 dram=0 count=18
        LDQ qa=0 dram=0 count=0
        LDQ qa=0 dram=1 count=3
        LDB bb=0 dram=0 count=3
        LDW wb=0 dram=0 rows=3 cols=8 stride=8
        CONV c=2 h=3 w=3 kh=2 kw=2 stride=1 pad=0 oh=2 ow=2
        DISTW wb=0 stride=8 m=3 p=4 k=8
        DISTN nb=0 p0=0 m=3 p=4 k0=0 k=8
        MAC m=3 p=4 k=8 bb=0 mt=0 init=1
        RELU m=3 p=4
        REQ nb=40 ostride=4 m=3 p=4 shift=0 bits=7 uns=1 rq=1 qa=0
        SYNC layer=0 nb=40 count=12
        STN dram=20 nb=40 count=12
        END
    """,
    # ISA 2: a float graph output: accumulators stored by STA (two rows apart), an accumulator SYNC.
    "accumulator-store": """
        LDN nb=0 dram=0 count=18
        LDB bb=0 dram=0 count=3
        LDW wb=0 dram=0 rows=3 cols=8 stride=8
        CONV c=2 h=3 w=3 kh=2 kw=2 stride=1 pad=0 oh=2 ow=2
        DISTW wb=0 stride=8 m=3 p=4 k=8
        DISTN nb=0 p0=0 m=3 p=4 k0=0 k=8
        MAC m=3 p=4 k=8 bb=0 mt=0 init=1
        STA dram=20 ostride=5 m=3 p=4
        SYNC layer=0 nb=20 count=14 acc=1
        END
    """,
}


def test_hand_counts_of_sta() -> None:
    program = parse_assembly(HAND_PROGRAMS["accumulator-store"])
    events = simulate_fast(program, ODD_ARCH)
    assert events.cycles_by_op["STA"] == 7 + 12 * 4 // 3 and events.dram_write_bytes == 48  # 12 words of 4 bytes at 3 B/cycle


def test_hand_counts_of_the_requant_table() -> None:
    """LDQ moves 3 words (12 bytes) per entry into the bias-buffer-class table; a table-scaled REQ
    reads one entry per output neuron and multiplies once per output (docs/isa.md timing hints)."""
    program = parse_assembly(HAND_PROGRAMS["requant-table"])
    events = simulate_fast(program, ODD_ARCH)
    assert events.instructions["LDQ"] == 2 and events.cycles_by_op["LDQ"] == 1 + (7 + 3 * 12 // 3)  # empty: 1 issue cycle; 36 B at 3 B/cycle
    assert events.requant_multiplies == 12 and events.requantizations == 12
    assert events.writes["bias_buffer@1.100V"] == 3 * 3 + 3  # LDQ entries + LDB words
    assert events.reads["bias_buffer@1.100V"] == 3 * 3 + 3  # REQ: 3 entries of 3 words; MAC init: 3 biases


@pytest.mark.parametrize("name", sorted(HAND_PROGRAMS))
@pytest.mark.parametrize("mode", [None, "drum:3"])
def test_reference_and_fast_agree_on_hand_programs(name: str, mode: str | None) -> None:
    program = parse_assembly(HAND_PROGRAMS[name])
    check_program(program, ODD_ARCH)
    context = instruction_context(program, ODD_ARCH, (), parse_mode(mode) if mode else None, 0.5)
    reference = simulate_reference(program, ODD_ARCH, context)
    fast = simulate_fast(program, ODD_ARCH, context)
    assert reference.as_dict() == fast.as_dict()


def test_hand_counts_of_a_single_pe_dense_layer() -> None:
    """Counts worked out by hand from the timing model in docs/runtime.md (not from the code)."""
    program = parse_assembly(HAND_PROGRAMS["dense-single-pe"])
    events = simulate_fast(program, ODD_ARCH)
    # LDN: 3 words x 2 B = 6 B -> 7 + ceil(6/3) = 9; CONV 1; LDB: 4 B -> 7 + 2 = 9; LDW: 3 x 1 B -> 7 + 1 = 8;
    # DISTW: 3 words at 5 words/cycle -> 1; DISTN: 3 distinct words at 3/2 = 1 word/cycle -> 3; MAC: k = 3;
    # REQ: 1; SYNC 1; STN: 2 B -> 7 + 1 = 8; END 1.
    assert events.cycles == 9 + 1 + 9 + 8 + 1 + 3 + 3 + 1 + 1 + 8 + 1
    assert events.stall_cycles == 4 * 7
    assert events.active_pe_cycles == 3
    assert events.dram_read_bytes == 6 + 4 + 3 and events.dram_write_bytes == 2
    assert dict(events.multiplies) == {"exact@16": 3}


def test_cycles_do_not_depend_on_modes_or_voltages(bundle_factory) -> None:
    bundle, _ = bundle_factory("cnn", "tiny")
    base = simulate_fast(bundle.program, bundle.arch, instruction_context(bundle.program, bundle.arch, bundle.layers))
    other = simulate_fast(bundle.program, bundle.arch, instruction_context(bundle.program, bundle.arch, bundle.layers, parse_mode("K1"), 0.4))
    assert base.cycles == other.cycles and base.cycles_by_op == other.cycles_by_op
    assert base.macs == other.macs and set(other.multiplies) == {"drum:1@8"}
