"""Reference (clock-stepping) and fast (closed-form) cycle simulators agree exactly.

Every case compares the complete Events (cycles, stalls, PE-cycles, per-op cycles, multiplies per
mode, every memory's reads and writes per voltage, DRAM bytes). Cases: compiled small networks on the
default and a tiny 2x3 array (tiles that do not divide the array, several chunks, weight reloads,
bias blocks), mode and voltage overrides, hand-written programs for edge cases, batches (resident
loads skipped after the first inference) and overlapping DRAM transfers, per layer and in total.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from axtrain.formats.arch import Architecture
from axtrain.formats.isa import check_program, parse_assembly
from axtrain.hwmodels.multipliers import parse_mode
from axtrain.runtime.events import instruction_context
from axtrain.runtime.simulator import simulate_fast, simulate_machine
from axtrain.runtime.simulator_reference import simulate_reference, simulate_reference_batch
from axtrain.runtime.timing import resident_loads

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
        CONV c=2 h=5 w=5 kh=3 kw=3 sh=2 sw=2 pt=2 pl=2 pb=2 pr=2 padv=0 oh=4 ow=4
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
        POOL dst=300 src=100 c=7 h=4 w=4 kh=2 kw=2 sh=2 sw=2 pt=0 pl=0 pb=0 pr=0
        SYNC layer=0 nb=300 count=28 space=0
        STN dram=60 nb=300 count=28
        END
    """,
    # ISA 2 (graphs): asymmetric pads and separate strides, a padded non-square max pool, an average
    # pool with padding not counted, residual ADDs (in place, with relu), a spill (STN, LDN back,
    # SYNC from activation DRAM).
    "graphs": """
        LDN nb=0 dram=0 count=60
        LDB bb=0 dram=0 count=3
        LDW wb=0 dram=0 rows=3 cols=12 stride=12
        CONV c=2 h=5 w=6 kh=3 kw=2 sh=2 sw=1 pt=0 pl=1 pb=1 pr=0 padv=0 oh=2 ow=6
        DISTW wb=0 stride=12 m=3 p=4 k=12
        DISTN nb=0 p0=0 m=3 p=4 k0=0 k=12
        MAC m=3 p=4 k=12 bb=0 mt=0 init=1
        REQ nb=100 ostride=12 m=3 p=4 shift=4 bits=8
        DISTN nb=0 p0=4 m=3 p=4 k0=0 k=12
        MAC m=3 p=4 k=12 bb=0 mt=0 init=1
        REQ nb=104 ostride=12 m=3 p=4 shift=4 bits=8
        DISTN nb=0 p0=8 m=3 p=4 k0=0 k=12
        MAC m=3 p=4 k=12 bb=0 mt=0 init=1
        REQ nb=108 ostride=12 m=3 p=4 shift=4 bits=8
        SYNC layer=0 nb=100 count=36 space=0
        STN dram=70 nb=100 count=36
        LDN nb=200 dram=70 count=36
        POOL dst=300 src=200 c=3 h=2 w=6 kh=2 kw=3 sh=1 sw=2 pt=1 pl=1 pb=0 pr=1
        SYNC layer=1 nb=70 count=36 space=1
        AVGPOOL dst=400 src=200 c=3 h=2 w=6 kh=2 kw=3 sh=2 sw=3 pt=1 pl=0 pb=1 pr=0 shift=1 bits=8
        ADD dst=200 a=100 b=200 count=36 sa=1 sb=0 shift=1 bits=8 relu=1
        ADD dst=500 a=100 b=200 count=30 sa=0 sb=2 shift=-1 bits=6 relu=0
        SYNC layer=2 nb=500 count=30 space=0
        STN dram=110 nb=500 count=30
        END
    """,
    "dense-single-pe": """
        LDN nb=0 dram=0 count=3
        CONV c=3 h=1 w=1 kh=1 kw=1 sh=1 sw=1 pt=0 pl=0 pb=0 pr=0 padv=0 oh=1 ow=1
        LDB bb=0 dram=0 count=1
        LDW wb=0 dram=0 rows=1 cols=3 stride=3
        DISTW wb=0 stride=3 m=1 p=1 k=3
        DISTN nb=0 p0=0 m=1 p=1 k0=0 k=3
        MAC m=1 p=1 k=3 bb=0 mt=0 init=1
        REQ nb=10 ostride=1 m=1 p=1 shift=0 bits=16
        SYNC layer=0 nb=10 count=1 space=0
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
        CONV c=2 h=3 w=3 kh=2 kw=2 sh=1 sw=1 pt=0 pl=0 pb=0 pr=0 padv=0 oh=2 ow=2
        DISTW wb=0 stride=8 m=3 p=4 k=8
        DISTN nb=0 p0=0 m=3 p=4 k0=0 k=8
        MAC m=3 p=4 k=8 bb=0 mt=0 init=1
        RELU m=3 p=4
        REQ nb=40 ostride=4 m=3 p=4 shift=0 bits=7 uns=1 rq=1 qa=0
        SYNC layer=0 nb=40 count=12 space=0
        STN dram=20 nb=40 count=12
        END
    """,
    # ISA 2: a float graph output: accumulators stored by STA (two rows apart), an accumulator SYNC.
    "accumulator-store": """
        LDN nb=0 dram=0 count=18
        LDB bb=0 dram=0 count=3
        LDW wb=0 dram=0 rows=3 cols=8 stride=8
        CONV c=2 h=3 w=3 kh=2 kw=2 sh=1 sw=1 pt=0 pl=0 pb=0 pr=0 padv=0 oh=2 ow=2
        DISTW wb=0 stride=8 m=3 p=4 k=8
        DISTN nb=0 p0=0 m=3 p=4 k0=0 k=8
        MAC m=3 p=4 k=8 bb=0 mt=0 init=1
        STA dram=20 ostride=5 m=3 p=4
        SYNC layer=0 nb=20 count=4 space=1
        END
    """,
}


def test_hand_counts_of_sta() -> None:
    program = parse_assembly(HAND_PROGRAMS["accumulator-store"])
    events = simulate_fast(program, ODD_ARCH)
    # 12 accumulators of 4 bytes = 48 B, on the bus as whole bursts, at 3 B/cycle; no STN.
    bus = -(-48 // ODD_ARCH.dram_burst_bytes) * ODD_ARCH.dram_burst_bytes
    assert events.cycles_by_op["STA"] == -(-bus // 3) and events.dram_write_bytes == bus and "STN" not in events.instructions


def test_hand_counts_of_the_requant_table() -> None:
    """LDQ moves 3 words (12 bytes) per entry into the bias-buffer-class table; a table-scaled REQ
    reads one entry per output neuron and multiplies once per output (docs/isa.md timing hints)."""
    program = parse_assembly(HAND_PROGRAMS["requant-table"])
    events = simulate_fast(program, ODD_ARCH)
    bus = -(-3 * 12 // ODD_ARCH.dram_burst_bytes) * ODD_ARCH.dram_burst_bytes  # 3 entries of 12 B, whole bursts
    assert events.instructions["LDQ"] == 2 and events.cycles_by_op["LDQ"] == -(-bus // 3)  # the empty LDQ moves nothing
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


HAND_ARCH = ODD_ARCH.model_copy(update={"dram_burst_bytes": 2, "pe_pipeline_fill_cycles": 1})


def test_hand_counts_of_a_single_pe_dense_layer() -> None:
    """Counts worked out by hand from the timing model in docs/runtime.md (not from the code):
    latency 7, 3 B/cycle, 2-byte bursts, fill 1, drain 1, 15 PEs."""
    program = parse_assembly(HAND_PROGRAMS["dense-single-pe"])
    events = simulate_fast(program, HAND_ARCH)
    # DMA (issues one request a cycle, data in order on the bus): LDN 6 B issued at 0, data [7, 9);
    # LDB 4 B issued at 1, data [9, 11); LDW 3 B -> 2 bursts = 4 B issued at 2, data [11, 13).
    # PE array: CONV [0, 1); DISTW waits for LDW: [13, 14); DISTN (3 words, 1 word/cycle) [14, 17);
    # MAC k=3 split over 3 PEs: fill 1 + 1 step + 2 tree levels = [17, 21); REQ [21, 22); SYNC [22, 23);
    # STN waits for REQ: issued at 22, data [29, 30); END waits for everything: [30, 31).
    assert events.cycles == 31
    assert events.compute_cycles == 1 + 1 + 3 + 4 + 1 + 1 + 1
    assert events.transfer_cycles == 2 + 2 + 2 + 1  # bus cycles while the PE array waits
    assert events.stall_cycles == 31 - 12 - 7
    assert events.active_pe_cycles == 3 and events.additions == 3 and events.partial_sum_additions == 2
    assert events.dram_read_bytes == 6 + 4 + 4 and events.dram_write_bytes == 2
    assert dict(events.multiplies) == {"exact@16": 3}


def test_hand_counts_of_pools_and_adds() -> None:
    """POOL, AVGPOOL and ADD counts worked out by hand from docs/isa.md's timing hints on ODD_ARCH
    (15 PEs, 3 B/cycle neuron buffer = 1 word per cycle)."""
    program = parse_assembly("""
        POOL dst=100 src=0 c=1 h=3 w=3 kh=2 kw=2 sh=2 sw=2 pt=1 pl=1 pb=0 pr=0
        AVGPOOL dst=200 src=0 c=1 h=3 w=3 kh=2 kw=2 sh=2 sw=2 pt=1 pl=1 pb=0 pr=0 shift=0 bits=8
        ADD dst=0 a=0 b=50 count=20 sa=0 sb=0 shift=0 bits=8 relu=1
        END
    """)
    events = simulate_fast(program, ODD_ARCH)
    # Windows of a 3x3 map, 2x2 window, stride 2, one padding row above and column left: 2x2 outputs
    # covering 1, 2, 2, 4 map positions = 9 reads, 9 - 4 = 5 combines; cycles max(9, ceil(5/15)) + 4.
    assert events.cycles_by_op["POOL"] == 9 + 4 and events.cycles_by_op["AVGPOOL"] == 9 + 4
    # ADD of 20 words: 40 reads at 1 word/cycle (the 20 sums fit 2 cycles of 15 PEs), then 20 writes.
    assert events.cycles_by_op["ADD"] == 40 + 20
    assert events.comparisons == 5 + 20  # the max pool's and the ADD's relu
    assert events.additions == 5 + 20 and events.requantizations == 4 + 20
    assert events.reads["neuron_buffer@1.100V"] == 9 + 9 + 40 and events.writes["neuron_buffer@1.100V"] == 4 + 4 + 20


def test_hand_counts_of_a_batch() -> None:
    """Batch of 3: LDW and LDB write words nothing else writes, so they run once; the later
    inferences take (by hand) LDN [0, 9) with data [7, 9), CONV [0, 1), DISTW [1, 2), DISTN [9, 12),
    MAC [12, 16), REQ [16, 17), SYNC [17, 18), STN issued 17, data [24, 25), END [25, 26)."""
    program = parse_assembly(HAND_PROGRAMS["dense-single-pe"])
    fast = simulate_machine(program, HAND_ARCH, batch=3)
    reference = simulate_reference_batch(program, HAND_ARCH, batch=3)
    assert fast == reference
    assert fast.first_inference_cycles == 31 and fast.total.cycles == 31 + 2 * 26
    assert fast.total.instructions["LDW"] == 1 and fast.total.instructions["LDB"] == 1 and fast.total.instructions["LDN"] == 3
    assert fast.total.dram_read_bytes == 14 + 2 * 6


@pytest.mark.parametrize("kind,arch_name", [("mlp", "tiny"), ("cnn", "tiny"), ("cnn", "default"), ("mixed", "default")])
def test_reference_and_fast_agree_on_batches(bundle_factory, kind, arch_name) -> None:
    """Every cycle and event count, per layer and in total, of a batch of 3 (resident loads skipped
    after the first inference, transfers overlapping compute)."""
    bundle, _ = bundle_factory(kind, arch_name)
    context = instruction_context(bundle.program, bundle.arch, bundle.layers, parse_mode("drum:2"), 0.7)
    reference = simulate_reference_batch(bundle.program, bundle.arch, context, 3)
    fast = simulate_machine(bundle.program, bundle.arch, context, 3)
    assert reference == fast
    total = fast.total
    assert total.cycles == total.compute_cycles + total.transfer_cycles + total.stall_cycles
    assert set(fast.layers) == set(range(len(bundle.layers))) | {-1}  # every layer has a SYNC; -1: prologue, epilogue
    assert total.macs == 3 * sum(layer.macs for layer in bundle.layers)


def test_transfers_overlap_compute(bundle_factory) -> None:
    """The tiny array streams its weights: some DRAM data moves while the PE array computes, so the
    inference is shorter than its PE-array cycles plus its bus cycles."""
    bundle, _ = bundle_factory("mlp", "tiny")
    events = simulate_fast(bundle.program, bundle.arch, instruction_context(bundle.program, bundle.arch, bundle.layers))
    a = bundle.arch
    bus_cycles = (events.dram_read_bytes + events.dram_write_bytes + a.dram_bandwidth - 1) // a.dram_bandwidth
    assert events.transfer_cycles < bus_cycles - len([i for i in bundle.program if i.op in ("LDW", "LDB", "LDN", "STN")])
    assert events.cycles < events.compute_cycles + bus_cycles + events.stall_cycles


def test_synapse_parallelism_uses_free_pes() -> None:
    """A 1x1-PE tile of k = 11 on 15 PEs splits over 11 PEs: 1 step and 4 tree levels instead of 11
    steps; 10 partial-sum adds per dot product; products, additions and PE-cycles unchanged."""
    program = parse_assembly(HAND_PROGRAMS["dense-single-pe"].replace("count=3\n", "count=11\n").replace("c=3", "c=11").replace("cols=3 stride=3", "cols=11 stride=11").replace("k=3", "k=11"))
    check_program(program, ODD_ARCH)
    on = simulate_fast(program, ODD_ARCH)
    off = simulate_fast(program, ODD_ARCH.model_copy(update={"synapse_parallelism": False}))
    assert off.cycles_by_op["MAC"] - on.cycles_by_op["MAC"] == 11 - (1 + 4)
    assert on.partial_sum_additions == 10 and off.partial_sum_additions == 0
    assert (on.macs, on.additions, on.active_pe_cycles) == (off.macs, off.additions, off.active_pe_cycles) == (11, 11, 11)


def test_cycles_do_not_depend_on_modes_or_voltages(bundle_factory) -> None:
    bundle, _ = bundle_factory("cnn", "tiny")
    base = simulate_fast(bundle.program, bundle.arch, instruction_context(bundle.program, bundle.arch, bundle.layers))
    other = simulate_fast(bundle.program, bundle.arch, instruction_context(bundle.program, bundle.arch, bundle.layers, parse_mode("K1"), 0.4))
    assert base.cycles == other.cycles and base.cycles_by_op == other.cycles_by_op
    assert base.macs == other.macs and set(other.multiplies) == {"drum:1@8"}


def test_a_load_that_another_overwrites_is_not_resident() -> None:
    """Two LDWs into the same words (a streamed layer's staging region) run every inference; a LDB
    whose words nothing else writes runs once per batch."""
    program = parse_assembly("""
        LDB bb=0 dram=0 count=2
        LDW wb=0 dram=0 rows=1 cols=4 stride=4
        LDW wb=2 dram=4 rows=1 cols=4 stride=4
        END
    """)
    assert resident_loads(program) == frozenset({0})
    fast = simulate_machine(program, HAND_ARCH, batch=4)
    assert fast == simulate_reference_batch(program, HAND_ARCH, batch=4)
    assert fast.total.instructions == {"LDB": 1, "LDW": 8, "END": 4}


def _qdq_bundle(tmp: Path, nb_words: int, builder: str = "residual_toy", **kwargs: object):
    """A graph of tests/compiler/mlperf_tiny.py compiled for a neuron buffer of ``nb_words``."""
    import onnx

    from axtrain.compiler.pipeline import compile_to_bundle
    from axtrain.formats.bundle import load_bundle

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "compiler"))
    import mlperf_tiny  # noqa: PLC0415 - the test helper that builds the QDQ graphs

    onnx.save(getattr(mlperf_tiny, builder)(**kwargs), tmp / "m.onnx")
    return load_bundle(compile_to_bundle(tmp / "m.onnx", tmp / "m", Architecture(neuron_buffer_bytes=2 * nb_words), golden_count=1))


# The toy's maps are 144 words: the shortcut kept in the buffer (3 maps fit), stored to DRAM.A and
# loaded back (2 fit), and convs, add and average pool in bands (fewer than 2 fit).
@pytest.mark.parametrize("nb_words,transfers", [(448, 1), (320, 2), (160, None)])
def test_reference_and_fast_agree_on_kept_and_spilled_maps(tmp_path: Path, nb_words: int, transfers: int | None) -> None:
    """Residual maps kept in the neuron buffer across layers and the spill bands of adds and average
    pools (decisions 190-192): every cycle and event count, per layer and in total, one inference and
    a batch of 2 (docs/runtime.md's conflict rule on the kept words)."""
    bundle = _qdq_bundle(tmp_path, nb_words)
    program = bundle.program
    ops = [ins.op for ins in program]
    if transfers is not None:  # the input and output, plus the shortcut's STN / LDN pair when it does not fit
        assert ops.count("LDN") == ops.count("STN") == transfers
    else:
        assert sum(ins.op == "ADD" for ins in program) == 2 and sum(ins.op == "AVGPOOL" for ins in program) >= 2  # bands
    context = instruction_context(program, bundle.arch, bundle.layers, parse_mode("drum:2"), 0.7)
    assert simulate_reference(program, bundle.arch, context).as_dict() == simulate_fast(program, bundle.arch, context).as_dict()
    assert simulate_reference_batch(program, bundle.arch, context, 2) == simulate_machine(program, bundle.arch, context, 2)


@pytest.mark.parametrize("pool", ["global", "max"])
def test_reference_and_fast_agree_on_pools_spilled_over_channel_groups(tmp_path: Path, pool: str) -> None:
    bundle = _qdq_bundle(tmp_path, 256, "pooled_toy", pool=pool)
    program = bundle.program
    op = "AVGPOOL" if pool == "global" else "POOL"
    assert max(ins["c"] for ins in program if ins.op == op) < 16  # groups of channels (decision 191)
    context = instruction_context(program, bundle.arch, bundle.layers)
    assert simulate_reference(program, bundle.arch, context).as_dict() == simulate_fast(program, bundle.arch, context).as_dict()
    assert simulate_reference_batch(program, bundle.arch, context, 2) == simulate_machine(program, bundle.arch, context, 2)


def test_reference_and_fast_agree_on_spilled_dense_layers(tmp_path: Path) -> None:
    """96-300-200-10 on 256 words (decision 192): bands of neurons above a whole input vector, and
    bands whose accumulators carry the sum across pieces of the input loaded between their MACs."""
    bundle = _qdq_bundle(tmp_path, 256, "mlp", sizes=(96, 300, 200, 10))
    program = bundle.program
    assert sum(ins.op == "LDN" for ins in program) == 1 + 6 + 1  # layer 0 loads the input itself (no prologue); 2 bands x 3 pieces; layer 2's input
    context = instruction_context(program, bundle.arch, bundle.layers)
    assert simulate_reference(program, bundle.arch, context).as_dict() == simulate_fast(program, bundle.arch, context).as_dict()
    assert simulate_reference_batch(program, bundle.arch, context, 2) == simulate_machine(program, bundle.arch, context, 2)
