"""The fast executor's typed plan: named pure passes, and a checker that refuses malformed plans."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from axtrain.formats.arch import Architecture
from axtrain.formats.isa import parse_assembly
from axtrain.runtime.plan import (
    PASSES,
    Fused,
    Gather,
    Load,
    Mac,
    Plan,
    PlanError,
    Pool,
    Relu,
    Requantize,
    Store,
    Sync,
    affine,
    build_plan,
    check_plan,
    expand,
    run_plan_passes,
    trace,
)

PASS_NAMES = tuple(name for name, _ in PASSES)

# Two chunks of one dense dot product (fusable), then a ReLU, a requantisation, a pool and the store.
PROGRAM = parse_assembly("""
    LDN nb=0 dram=0 count=8
    CONV c=8 h=1 w=1 kh=1 kw=1 sh=1 sw=1 pt=0 pl=0 pb=0 pr=0 padv=0 oh=1 ow=1
    LDB bb=0 dram=0 count=2
    MODE mt=0 count=1 code=0
    MODE mt=1 count=1 code=2
    LDW wb=0 dram=0 rows=2 cols=8 stride=8
    DISTW wb=0 stride=8 m=2 p=1 k=4
    DISTN nb=0 p0=0 m=2 p=1 k0=0 k=4
    MAC m=2 p=1 k=4 bb=0 mt=0 init=1
    DISTW wb=4 stride=8 m=2 p=1 k=4
    DISTN nb=0 p0=0 m=2 p=1 k0=4 k=4
    MAC m=2 p=1 k=4 bb=0 mt=0 init=0
    RELU m=2 p=1
    REQ nb=8 ostride=1 m=2 p=1 shift=2 bits=8
    SYNC layer=0 nb=8 count=2 space=0
    POOL dst=10 src=8 c=1 h=1 w=2 kh=1 kw=1 sh=1 sw=1 pt=0 pl=0 pb=0 pr=0
    SYNC layer=1 nb=10 count=2 space=0
    STN dram=8 nb=10 count=2
    END
""")
ARCH = Architecture(pe_rows=2, pe_cols=2)


def _numbers(plan: Plan, kind: type) -> list[int]:
    return [number for number, step in enumerate(plan.steps) if isinstance(step, kind)]


def test_build_plan_runs_every_pass_in_order() -> None:
    plan = build_plan(PROGRAM, ARCH)
    assert plan.fast, plan.reason
    assert plan.passes == ("trace", *PASS_NAMES)
    assert [step.op for step in plan.steps] == ["LDN", "DISTN", "MAC", "DISTN", "MAC", "RELU", "REQ", "SYNC", "POOL", "SYNC", "STN"]
    assert plan.codes == (0, 2)
    head, tail = (plan.steps[n] for n in _numbers(plan, Mac))
    assert isinstance(head, Mac) and isinstance(tail, Mac)
    assert head.fused is not None and (head.fused.macs, head.fused.start, head.fused.k) == ((2, 4), 0, 8)
    assert tail.fused_into == 2 and head.chain == tail.chain == 0
    ldn = plan.steps[0]
    assert isinstance(ldn, Load) and ldn.shared and ldn.transform_any and ldn.view == (0, (8,), (1,))
    assert head.shared_input  # the inputs are the same in every Monte Carlo run
    req = plan.steps[6]
    assert isinstance(req, Requantize) and req.layout == (2, 1) and not req.shared
    assert int(plan.zero_rows[-1]) == plan.nb_words  # the padding word


def test_passes_are_pure() -> None:
    """A pass returns a new plan and leaves its input as it was."""
    plan = trace(PROGRAM, ARCH)
    snapshot = [(type(s), dict(vars(s))) for s in plan.steps]
    for name, plan_pass in PASSES:
        after = plan_pass(plan)
        assert after is not plan, name
        assert [(type(s), dict(vars(s))) for s in plan.steps] == snapshot, f"{name} changed its input"
        plan = replace(after, passes=(*plan.passes, name))
        snapshot = [(type(s), dict(vars(s))) for s in plan.steps]
    # The steps are frozen: a later stage cannot mutate an earlier one in place either.
    with pytest.raises(AttributeError):
        plan.steps[0].shared = False  # type: ignore[misc]


def test_affine_patterns() -> None:
    idx = np.arange(12).reshape(3, 4) * np.array([[1]]) + 5
    assert affine(idx) == (5, (3, 4), (4, 1))
    assert np.array_equal(expand(5, (3, 4), (4, 1)), idx)
    assert affine(np.array([3, 4, 6])) is None  # not one stride
    assert affine(np.array([4, 3])) is None  # negative stride
    assert affine(np.zeros(0, dtype=np.intp)) is None


def test_programs_outside_the_plan_fall_back_and_stop_the_passes() -> None:
    program = parse_assembly("""
        LDN nb=0 dram=0 count=2
        MAC m=1 p=1 k=2 bb=0 mt=0 init=1
        END
    """)
    plan = build_plan(program, ARCH)
    assert not plan.fast and "MAC before DISTN/DISTW" in plan.reason and plan.passes == ("trace",)
    reshaped = parse_assembly("""
        LDN nb=0 dram=0 count=4
        CONV c=4 h=1 w=1 kh=1 kw=1 sh=1 sw=1 pt=0 pl=0 pb=0 pr=0 padv=0 oh=1 ow=1
        DISTW wb=0 stride=4 m=2 p=2 k=2
        DISTN nb=0 p0=0 m=2 p=2 k0=0 k=2
        MAC m=2 p=2 k=2 bb=0 mt=0 init=1
        MAC m=1 p=2 k=2 bb=0 mt=0 init=0
        END
    """)
    plan = build_plan(reshaped, Architecture(pe_rows=2, pe_cols=2))
    assert not plan.fast and "different tile shape" in plan.reason and plan.passes == ("trace", "chain_accumulators")


def _break(plan: Plan, number: int, **changes) -> Plan:
    steps = list(plan.steps)
    steps[number] = replace(steps[number], **changes)
    return replace(plan, steps=tuple(steps))


GOOD = build_plan(PROGRAM, ARCH)
N_GATHER, N_MAC, N_MAC2 = _numbers(GOOD, Gather)[0], _numbers(GOOD, Mac)[0], _numbers(GOOD, Mac)[1]
N_RELU, N_REQ, N_POOL = _numbers(GOOD, Relu)[0], _numbers(GOOD, Requantize)[0], _numbers(GOOD, Pool)[0]
N_SYNC, N_STORE = _numbers(GOOD, Sync)[0], _numbers(GOOD, Store)[0]

MALFORMED = {
    "gather index past the pad": (lambda p: _break(p, N_GATHER, idx=p.steps[N_GATHER].idx + p.nb_words + 1, view=None), "outside the"),
    "gather of the wrong size": (lambda p: _break(p, N_GATHER, idx=p.steps[N_GATHER].idx[:-1], view=None), "indices, expected"),
    "view that lies": (lambda p: _break(p, 0, view=(1, (8,), (1,))), "strided view differs"),
    "store to the pad word": (lambda p: _break(p, N_STORE, idx=np.full(2, p.nb_words), view=None), "outside the"),
    "weights of the wrong shape": (lambda p: _break(p, N_MAC, w_src=p.steps[N_MAC].sources()[:, :2], w_view=None), "weight sources"),
    "weight pattern of the wrong shape": (lambda p: _break(p, N_MAC, w_src=None, w_view=(0, (2, 3), (4, 1))), "weight sources"),
    "weight pattern of unwritten words": (lambda p: _break(p, N_MAC, w_src=None, w_view=(-1, (2, 4), (4, 1))), "not of written words"),
    "weights as an array and a pattern": (lambda p: _break(p, N_MAC, w_src=p.steps[N_MAC].sources()), "as an array and as a pattern"),
    "no weight sources": (lambda p: _break(p, N_MAC, w_src=None, w_view=None), "no weight sources"),
    "bias not one per row": (lambda p: _break(p, N_MAC, bias_src=np.zeros(3, dtype=np.int64)), "bias sources"),
    "mode groups missing a row": (lambda p: _break(p, N_MAC, groups=p.steps[N_MAC].groups[:1]), "cover each row"),
    "unknown mode code": (lambda p: _break(p, N_MAC, groups=((0, np.array([0])), (7, np.array([1])))), "mode code missing"),
    "chain numbering broken": (lambda p: _break(p, N_MAC2, chain=5), "chain"),
    "layout of another tile": (lambda p: _break(p, N_RELU, layout=(1, 1)), "layout does not cover"),
    "fused into a non-head": (lambda p: _break(p, N_MAC2, fused_into=N_RELU), "fused"),
    "fused depth wrong": (lambda p: _break(p, N_MAC, fused=Fused((N_MAC, N_MAC2), 0, 9)), "fused depth"),
    "empty saturation range": (lambda p: _break(p, N_REQ, qmin=5, qmax=5), "saturation"),
    "pool output of the wrong size": (lambda p: _break(p, N_POOL, dst=p.steps[N_POOL].dst[:1], dst_view=None), "indices, expected"),
    "transform selection out of range": (lambda p: _break(p, 0, transform_sel=np.array([99])), "transform selection"),
    "mirrored write that is not shared": (lambda p: _break(p, N_REQ, mirror=True), "mirrored"),
    "zero rows without the pad": (lambda p: replace(p, zero_rows=np.zeros(0, dtype=np.intp)), "zero rows"),
    "interpreter plan without a reason": (lambda p: replace(p, fast=False, reason=""), "must say why"),
    "a step that is not a step": (lambda p: replace(p, steps=(*p.steps, "LDN")), "not a plan step"),
}


def test_the_good_plan_passes_the_checker() -> None:
    check_plan(GOOD)
    assert isinstance(GOOD.steps[N_SYNC], Sync)


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_checker_refuses_malformed_plans(name: str) -> None:
    breaker, message = MALFORMED[name]
    with pytest.raises(PlanError, match=message) as info:
        check_plan(breaker(GOOD))
    assert str(info.value).startswith(f"plan after {PASS_NAMES[-1]}:")


def test_a_pass_that_breaks_the_plan_is_named() -> None:
    def broken(plan: Plan) -> Plan:
        return _break(plan, N_GATHER, idx=plan.steps[N_GATHER].idx[:1], view=None)

    with pytest.raises(PlanError, match=r"^plan after broken: step 1 \(instruction 7, Gather\)"):
        run_plan_passes(trace(PROGRAM, ARCH), (*PASSES[:2], ("broken", broken), *PASSES[2:]))


def test_plans_of_compiled_bundles_pass_every_check(bundle_factory) -> None:
    for kind, arch_name in (("cnn", "tiny"), ("mixed", "default"), ("mlp", "tiny")):
        bundle, _ = bundle_factory(kind, arch_name)
        plan = build_plan(bundle.program, bundle.arch, check_each=True)
        assert plan.fast and plan.passes == ("trace", *PASS_NAMES), plan.reason
        assert sum(isinstance(step, Mac) for step in plan.steps) == sum(ins.op == "MAC" for ins in bundle.program)


def test_a_padded_gather_of_padv_records_where_it_reads_the_padding() -> None:
    """A CONV with padv != 0 (decision 185): its gathers carry padv and the positions reading the
    padding word, checked against their indices; a chain reading padv is not fused."""
    from .test_cycles import HAND_PROGRAMS, ODD_ARCH

    plan = build_plan(parse_assembly(HAND_PROGRAMS["geometry"]), ODD_ARCH)
    assert plan.fast, plan.reason
    gathers = [step for step in plan.steps if isinstance(step, Gather)]
    assert [g.padv for g in gathers] == [-5, -5]
    first = gathers[0]
    assert np.array_equal(first.pad_at, np.flatnonzero(first.idx == plan.nb_words)) and first.pad_at.size > 0
    number = plan.steps.index(first)
    for broken in (first.pad_at[1:], np.concatenate([first.pad_at, [int(np.flatnonzero(first.idx != plan.nb_words)[0])]])):
        with pytest.raises(PlanError, match="pad_at is not where it reads the padding word"):
            check_plan(_break(plan, number, pad_at=broken))


def test_steps_a_pass_kept_are_checked_again_when_what_they_are_checked_against_changes() -> None:
    """The checks of one pipeline skip a step a pass kept as it was, but not when the plan's mode
    codes changed (the MAC's codes are checked against them), nor a kept MAC whose chain numbering
    an earlier step's change broke."""

    def drop_codes(plan: Plan) -> Plan:
        return replace(plan, codes=())  # every step kept, the codes gone

    with pytest.raises(PlanError, match=r"^plan after drop_codes: step \d+ \(instruction \d+, Mac\): a mode code missing"):
        run_plan_passes(trace(PROGRAM, ARCH), (*PASSES[:2], ("drop_codes", drop_codes), *PASSES[2:]))

    def shrink_first_tile(plan: Plan) -> Plan:
        mac = plan.steps[N_MAC]  # a well-formed one-row init MAC: the kept MAC after it accumulates onto 2 rows
        return _break(plan, N_MAC, m=1, w_src=mac.sources()[:1], w_view=None, bias_src=mac.bias_src[:1], groups=((mac.groups[0][0], np.array([0])),))

    with pytest.raises(PlanError, match=rf"^plan after shrink_first_tile: step {N_MAC2} \(instruction \d+, Mac\): chain 0, expected 0 on one tile shape"):
        run_plan_passes(trace(PROGRAM, ARCH), (*PASSES[:2], ("shrink_first_tile", shrink_first_tile), *PASSES[2:]))


def test_the_executor_s_plan_is_the_plan_checked_after_every_pass(bundle_factory) -> None:
    """build_plan checks only the final plan by default (decision 203): the same steps as the
    pipeline checked after every pass, field for field."""
    bundle, _ = bundle_factory("cnn", "tiny")
    lean, checked = build_plan(bundle.program, bundle.arch), build_plan(bundle.program, bundle.arch, check_each=True)
    assert lean.passes == checked.passes and len(lean.steps) == len(checked.steps)
    for a, b in zip(lean.steps, checked.steps, strict=True):
        assert type(a) is type(b) and vars(a).keys() == vars(b).keys()
        for name, value in vars(a).items():
            other = vars(b)[name]
            assert np.array_equal(value, other) if isinstance(value, np.ndarray) else repr(value) == repr(other), name


def test_the_final_check_still_refuses_a_broken_pass() -> None:
    def broken(plan: Plan) -> Plan:
        return _break(plan, N_GATHER, idx=plan.steps[N_GATHER].idx[:1], view=None)

    with pytest.raises(PlanError, match=r"^plan after mark_shared: step 1 \(instruction 7, Gather\)"):
        run_plan_passes(trace(PROGRAM, ARCH), (*PASSES[:2], ("broken", broken), *PASSES[2:]), check_each=False)


def test_gathers_of_the_same_words_share_one_read_only_index_array() -> None:
    program = parse_assembly("""
        LDN nb=0 dram=0 count=4
        CONV c=4 h=1 w=1 kh=1 kw=1 sh=1 sw=1 pt=0 pl=0 pb=0 pr=0 padv=0 oh=1 ow=1
        DISTW wb=0 stride=4 m=1 p=1 k=4
        DISTN nb=0 p0=0 m=1 p=1 k0=0 k=4
        MAC m=1 p=1 k=4 bb=0 mt=0 init=1
        DISTW wb=4 stride=4 m=1 p=1 k=4
        DISTN nb=0 p0=0 m=1 p=1 k0=0 k=4
        MAC m=1 p=1 k=4 bb=1 mt=1 init=1
        DISTN nb=0 p0=0 m=1 p=1 k0=1 k=3
        END
    """)
    gathers = [step for step in trace(program, ARCH).steps if isinstance(step, Gather)]
    assert gathers[0].idx is gathers[1].idx and not gathers[0].idx.flags.writeable
    assert gathers[2].idx is not gathers[0].idx and np.array_equal(gathers[2].idx, gathers[0].idx[1:])


# Two rows of weights loaded as an affine block of the weight image (words 10-13 and 16-19), and
# the first DISTW's sources over them: the head of the two programs below.
_WEIGHT_BLOCK = """
        LDN nb=0 dram=0 count=4
        LDW wb=0 dram=10 rows=2 cols=4 stride=6
        CONV c=4 h=1 w=1 kh=1 kw=1 sh=1 sw=1 pt=0 pl=0 pb=0 pr=0 padv=0 oh=1 ow=1
        DISTW wb=0 stride=4 m=2 p=1 k=4
        DISTN nb=0 p0=0 m=2 p=1 k0=0 k=4
"""


def test_affine_weight_sources_are_kept_as_a_pattern() -> None:
    """A DISTW whose sources are an affine block of weight-image words (a dense layer) gives its
    MACs a ``w_view`` pattern, not an array; the words it stands for are what the weight buffer
    holds, and a block with an unwritten word stays an array (its -1 reads 0)."""
    program = parse_assembly(_WEIGHT_BLOCK + """
        MAC m=2 p=1 k=3 bb=0 mt=0 init=1
        DISTW wb=4 stride=8 m=2 p=1 k=4
        MAC m=2 p=1 k=4 bb=0 mt=0 init=1
        END
    """)
    first, second = (step for step in build_plan(program, ARCH, check_each=True).steps if isinstance(step, Mac))
    assert first.w_src is None and first.w_view == (10, (2, 3), (6, 1))
    assert np.array_equal(first.sources(), [[10, 11, 12], [16, 17, 18]])
    assert second.w_view is None and np.array_equal(second.w_src, [[16, 17, 18, 19], [-1, -1, -1, -1]])


def test_a_mac_s_corner_of_a_pattern_has_no_step_along_a_length_one_axis() -> None:
    program = parse_assembly(_WEIGHT_BLOCK + """
        MAC m=1 p=1 k=1 bb=0 mt=0 init=1
        END
    """)
    (mac,) = [step for step in build_plan(program, ARCH, check_each=True).steps if isinstance(step, Mac)]
    assert mac.w_view == (10, (1, 1), (0, 0)) == affine(mac.sources()) and mac.sources().tolist() == [[10]]
