"""The fast executor's plan: a typed, data-independent analysis of an ISA program.

:func:`trace` walks the instruction stream symbolically (no data): it tracks where every
weight-buffer, bias-buffer and PE-weight-memory word comes from in the DRAM images, the mode table,
the geometry registers and the neuron-buffer words each DISTN gathers. What remains are the
data-dependent steps, one frozen dataclass per kind (:class:`Load`, :class:`Gather`, :class:`Mac`,
:class:`Relu`, :class:`Requantize`, :class:`Pool`, :class:`AvgPool`, :class:`Add`, :class:`Copy`, :class:`Sync`,
:class:`Store`). Then an ordered
list of named, pure passes (``Plan -> Plan``) adds what the runner needs, with :func:`check_plan`
after the trace and after every pass, as ``compiler/pipeline.py`` does for the compiler IR, when
asked for (``check_each``: tests); the executor checks the final plan (decision 203):

    trace -> chain_accumulators -> strided_views -> transform_targets -> fuse_dense_chains -> mark_shared

A pass that finds a program outside the plan's assumptions (a MAC whose PEs were not filled by the
latest DISTN/DISTW, an accumulator chain that changes tile shape) returns a plan with ``fast=False``
and a reason; the program then runs on the reference interpreter (same integers, slower).

Neuron-buffer words are addressed compactly: only the words the program touches get a column, and
column ``nb_words`` is the padding word (reads of zero padding gather it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable, ClassVar, Sequence, TypeVar, Union

import numpy as np

from axtrain.formats.arch import Architecture
from axtrain.formats.isa import Geometry, Instruction, pool_output_shape
from axtrain.hwmodels.fixedpoint import FixedPointFormat, saturation_bounds

Pattern = tuple[int, tuple[int, ...], tuple[int, ...]]  # (base, shape, steps): idx[i...] == base + sum(i_d * steps_d)
EMPTY = np.zeros(0, dtype=np.intp)


class PlanError(Exception):
    """A plan broke an invariant after a pass (a bug in a pass or a hand-made plan, not a user error)."""


@dataclass(frozen=True, eq=False)
class Load:
    """LDN: ``count`` activation words from DRAM address ``dram`` into neuron-buffer words ``idx``."""

    op: ClassVar[str] = "LDN"  # the instruction it executes
    index: int  # instruction index
    idx: np.ndarray
    dram: int
    count: int
    view: Pattern | None = None  # strided_views: ``idx`` as an affine pattern (no index copy)
    transform_sel: np.ndarray | None = None  # transform_targets: which of ``idx`` a DISTN reads (None: all)
    transform_any: bool = False  # transform_targets: whether any of them is
    shared: bool = True  # mark_shared: inputs are the same in every Monte Carlo run
    mirror: bool = False  # mark_shared: also written to the per-run buffer (a later per-run read sees them)


@dataclass(frozen=True, eq=False)
class Gather:
    """DISTN: the ``[k, p]`` activations of a tile, ``idx`` k-major (``idx[i*p + e]`` = word of PE
    position ``e``, input ``i``; ``nb_words`` where the window reads padding). The padding word holds
    0; a CONV with ``padv != 0`` (an input zero point) gives its gathers ``padv`` and ``pad_at``, the
    positions of ``idx`` that read padding, which the runner sets to ``padv`` (its DRUM transform for
    an approximate mode) after the gather."""

    op: ClassVar[str] = "DISTN"  # the instruction it executes
    index: int
    idx: np.ndarray
    p: int
    k: int
    view: Pattern | None = None  # strided_views: shape (k, p)
    shared: bool = False  # mark_shared: every word read is run-invariant
    padv: int = 0  # CONV.padv where the tile reads padding (0: the padding word's 0 as it is)
    pad_at: np.ndarray = field(default_factory=lambda: EMPTY)  # positions of idx that read padding (padv != 0)


@dataclass(frozen=True, eq=False)
class Fused:
    """A chain of MACs that is one dense dot product cut into local-memory chunks (fuse_dense_chains):
    the head runs all of it as one GEMM over neuron-buffer words ``[start, start + k)``."""

    macs: tuple[int, ...]  # step numbers of the chain's MACs, head first
    start: int
    k: int


@dataclass(frozen=True, eq=False)
class Mac:
    """MAC: rows ``m`` x positions ``p`` x ``k`` products onto the accumulators.

    The weight sources ``[m, k]`` are weight-image word addresses (-1: a word no LDW wrote, which
    reads 0): ``w_src``, or, when they are an affine pattern of addresses (a dense layer's block
    as the compiler lays it out), ``w_view`` ``(base, (m, k), (row step, column step))`` and
    ``w_src`` None (784-4096-4096-10's sources were 160 MB of int64); :meth:`sources` gives them
    as an array either way. ``bias_src [m]`` bias-image addresses when the MAC starts from the bias
    (``init``), else None; ``groups`` the rows per multiplier mode code (after any override:
    runtime/overrides.py)."""

    op: ClassVar[str] = "MAC"  # the instruction it executes
    index: int
    m: int
    p: int
    k: int
    w_src: np.ndarray | None
    bias_src: np.ndarray | None
    groups: tuple[tuple[int, np.ndarray], ...]
    chain: int = -1  # chain_accumulators: which accumulator chain (an init MAC starts one)
    fused: Fused | None = None  # fuse_dense_chains: set on a fused chain's head
    fused_into: int | None = None  # fuse_dense_chains: the head's step number, on the other MACs
    shared_input: bool = False  # mark_shared: its activations are run-invariant (one GEMM for all runs)
    w_view: Pattern | None = None  # trace: the weight sources as an affine pattern (then w_src is None)

    def sources(self) -> np.ndarray:
        """The weight sources ``[m, k]`` as an array (``w_src``, or the addresses ``w_view`` stands for)."""
        if self.w_src is not None:
            return self.w_src
        assert self.w_view is not None  # check_plan: one of the two
        return expand(*self.w_view)


@dataclass(frozen=True, eq=False)
class Relu:
    """RELU over the ``count`` accumulators of the latest tile."""

    op: ClassVar[str] = "RELU"  # the instruction it executes
    index: int
    count: int
    layout: tuple[int, int] | None = None  # chain_accumulators: the tile's (m, p)


@dataclass(frozen=True, eq=False)
class Requantize:
    """REQ: the ``count`` accumulators, shifted, rounded and saturated, into neuron-buffer words ``idx``.

    ``rq_src`` (REQ with ``rq=1``): per accumulator, the DRAM.Q entry its requant table entry was
    loaded from (-1: an entry no LDQ wrote, which reads as multiplier 0, shift 0, zero point 0);
    None: the power-of-two ``shift``."""

    op: ClassVar[str] = "REQ"  # the instruction it executes
    index: int
    idx: np.ndarray
    count: int
    shift: int
    qmin: int
    qmax: int
    rq_src: np.ndarray | None = None
    layout: tuple[int, int] | None = None  # chain_accumulators
    view: Pattern | None = None  # strided_views: shape ``layout``
    transform_sel: np.ndarray | None = None
    transform_any: bool = False
    shared: bool = False  # results differ per run (each run has its own weights)
    mirror: bool = False


@dataclass(frozen=True, eq=False)
class Pool:
    """POOL: ``kernel`` window, ``strides`` max pooling of map ``src`` (``shape`` c, h, w) with
    ``pads`` (top, left, bottom, right; padding positions take no part) into ``dst``."""

    op: ClassVar[str] = "POOL"  # the instruction it executes
    index: int
    src: np.ndarray
    dst: np.ndarray
    shape: tuple[int, int, int]
    out: tuple[int, int]
    kernel: tuple[int, int]
    strides: tuple[int, int]
    pads: tuple[int, int, int, int]
    src_view: Pattern | None = None
    dst_view: Pattern | None = None
    transform_sel: np.ndarray | None = None
    transform_any: bool = False
    shared: bool = False  # mark_shared: its input words are run-invariant
    mirror: bool = False


@dataclass(frozen=True, eq=False)
class AvgPool:
    """AVGPOOL: like :class:`Pool`, each window's in-map positions averaged (``count_include_pad``:
    their sum divided by the whole window), scaled by ``2**shift``, rounded half to even and
    saturated to ``[qmin, qmax]`` (hwmodels/pooling.py)."""

    op: ClassVar[str] = "AVGPOOL"  # the instruction it executes
    index: int
    src: np.ndarray
    dst: np.ndarray
    shape: tuple[int, int, int]
    out: tuple[int, int]
    kernel: tuple[int, int]
    strides: tuple[int, int]
    pads: tuple[int, int, int, int]
    shift: int
    qmin: int
    qmax: int
    src_view: Pattern | None = None
    dst_view: Pattern | None = None
    transform_sel: np.ndarray | None = None
    transform_any: bool = False
    shared: bool = False
    mirror: bool = False
    count_include_pad: bool = False  # AVGPOOL cip=1


@dataclass(frozen=True, eq=False)
class Add:
    """ADD: words ``a`` and ``b`` aligned (``<< sa``, ``<< sb``), summed, [clamped at 0,] shifted
    right by ``shift`` with rounding half to even and saturated, into words ``dst``."""

    op: ClassVar[str] = "ADD"  # the instruction it executes
    index: int
    a: np.ndarray
    b: np.ndarray
    dst: np.ndarray
    sa: int
    sb: int
    shift: int
    qmin: int
    qmax: int
    relu: bool
    a_view: Pattern | None = None
    b_view: Pattern | None = None
    dst_view: Pattern | None = None
    transform_sel: np.ndarray | None = None
    transform_any: bool = False
    shared: bool = False
    mirror: bool = False


@dataclass(frozen=True, eq=False)
class Copy:
    """Activation spill (docs/compiler.md): an STN's words copied into the activation-DRAM columns
    of the plan's buffer, or an LDN's words copied back from them (words a program stored and
    reads again). ``src`` and ``dst`` are compact columns."""

    op: ClassVar[str] = "COPY"  # what it does (LDN or STN of spilled words)
    index: int
    src: np.ndarray
    dst: np.ndarray
    src_view: Pattern | None = None
    dst_view: Pattern | None = None
    transform_sel: np.ndarray | None = None
    transform_any: bool = False
    transforms_copied: bool = False  # transform_targets: the source words' transforms are current: copied, not recomputed
    shared: bool = False  # mark_shared: its source words are run-invariant
    mirror: bool = False


@dataclass(frozen=True, eq=False)
class Sync:
    """SYNC: layer ``layer``'s output is neuron-buffer words ``idx`` (``acc_range``: instead the
    DRAM.A words ``[start, start + count)`` that STA stored, and ``idx`` is empty)."""

    op: ClassVar[str] = "SYNC"  # the instruction it executes
    index: int
    idx: np.ndarray
    layer: int
    view: Pattern | None = None
    shared: bool = False
    acc_range: tuple[int, int] | None = None


@dataclass(frozen=True, eq=False)
class StoreAcc:
    """STA: the tile's accumulators, saturated to 32 bits, to DRAM.A: ``runs`` of ``(dram address,
    first accumulator of the tile, words)`` (contiguous pieces, in tile order)."""

    op: ClassVar[str] = "STA"  # the instruction it executes
    index: int
    count: int
    runs: tuple[tuple[int, int, int], ...]
    layout: tuple[int, int] | None = None  # chain_accumulators


@dataclass(frozen=True, eq=False)
class Store:
    """STN: neuron-buffer words ``idx`` to activation DRAM address ``dram``."""

    op: ClassVar[str] = "STN"  # the instruction it executes
    index: int
    idx: np.ndarray
    dram: int
    count: int
    view: Pattern | None = None
    shared: bool = False


Step = Union[Load, Gather, Mac, Relu, Requantize, Pool, AvgPool, Add, Copy, Sync, Store, StoreAcc]
Write = Union[Load, Requantize, Pool, AvgPool, Add, Copy]  # steps that write neuron-buffer words


@dataclass(frozen=True, eq=False)
class Plan:
    """The data-independent analysis of a program (see the module docstring)."""

    steps: tuple[Step, ...]
    nb_words: int  # compact words in use: neuron buffer, then spilled activation DRAM (column nb_words is the zero pad)
    codes: tuple[int, ...]  # mode codes used by MACs
    fast: bool  # False: the program is executed by the interpreter
    reason: str = ""
    max_req_bits: int = 0
    zero_rows: np.ndarray = field(default_factory=lambda: EMPTY)  # mark_shared: words read before written (must hold 0)
    passes: tuple[str, ...] = ()  # the stages applied so far, "trace" first


def written(step: Write) -> np.ndarray:
    """The neuron-buffer words a writing step writes."""
    return step.dst if isinstance(step, (Pool, AvgPool, Add, Copy)) else step.idx


def fallback(plan: Plan, reason: str) -> Plan:
    """``plan`` marked for the interpreter, with the reason."""
    return replace(plan, fast=False, reason=reason)


_FIELDS: dict[type, frozenset[str]] = {}
S = TypeVar("S")


def with_fields(step: S, **changes: Any) -> S:
    """``dataclasses.replace(step, **changes)`` for the plan's frozen steps (no ``__post_init__``),
    without calling ``__init__`` again: the passes replace ~5,500 steps of ResNet-8's plan, and
    ``replace`` was a fifth of their time. Unknown field names are refused, as ``replace`` does."""
    kind = type(step)
    names = _FIELDS.get(kind)
    if names is None:
        names = _FIELDS[kind] = frozenset(f.name for f in fields(kind))  # type: ignore[arg-type]
    if not changes.keys() <= names:
        raise TypeError(f"{kind.__name__} has no field {sorted(changes.keys() - names)[0]!r}")
    current = step.__dict__
    if all(current[name] is value for name, value in changes.items()):
        return step  # nothing changes (a flag set to what it was): the step itself, it is immutable
    new = object.__new__(kind)
    new.__dict__.update(step.__dict__)
    new.__dict__.update(changes)
    return new


# ---------------------------------------------------------------------------------------------
# trace: the symbolic pass
# ---------------------------------------------------------------------------------------------


def _used_words(program: Sequence[Instruction], arch: Architecture, operands: Sequence[dict[str, int]] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Which neuron-buffer words the program touches, and which activation-DRAM words it stores
    and loads or syncs again (a spilled activation). ``operands``: each instruction's
    ``operands()``, when the caller has them already."""
    used = np.zeros(arch.neuron_buffer_words, dtype=bool)
    stored: set[int] = set()
    reread: set[int] = set()
    geometry: Geometry | None = None
    for ins, o in zip(program, [ins.operands() for ins in program] if operands is None else operands, strict=True):
        if ins.op == "LDN" or (ins.op == "SYNC" and o["space"]):
            reread.update(range(o["dram"] if ins.op == "LDN" else o["nb"], (o["dram"] if ins.op == "LDN" else o["nb"]) + o["count"]))
        if ins.op in ("LDN", "STN") or (ins.op == "SYNC" and not o["space"]):
            used[o["nb"] : o["nb"] + o["count"]] = True
            if ins.op == "STN":
                stored.update(range(o["dram"], o["dram"] + o["count"]))
        elif ins.op == "CONV":
            geometry = Geometry(**o)
        elif ins.op == "DISTN" and geometry is not None:
            used[o["nb"] : o["nb"] + geometry.c * geometry.h * geometry.w] = True
        elif ins.op == "REQ":
            for r in range(o["m"]):
                used[o["nb"] + r * o["ostride"] : o["nb"] + r * o["ostride"] + o["p"]] = True
        elif ins.op in ("POOL", "AVGPOOL"):
            oh, ow = pool_output_shape(o)
            used[o["src"] : o["src"] + o["c"] * o["h"] * o["w"]] = True
            used[o["dst"] : o["dst"] + o["c"] * oh * ow] = True
        elif ins.op == "ADD":
            for what in ("a", "b", "dst"):
                used[o[what] : o[what] + o["count"]] = True
    return used, np.array(sorted(stored & reread), dtype=np.int64)


def _mac_groups(codes: np.ndarray, single: dict[tuple[int, int], tuple[tuple[int, np.ndarray], ...]] | None = None) -> tuple[tuple[int, np.ndarray], ...]:
    """The rows of a tile per mode code. One mode for the tile (the common case) needs no unique();
    its groups are kept in ``single`` per (code, rows) and shared by the tiles alike (read-only), so
    that the checker and fuse_dense_chains compare them once, not once per MAC."""
    if codes.size and codes.min() == codes.max():
        key = (int(codes[0]), int(codes.size))
        groups = None if single is None else single.get(key)
        if groups is None:
            rows = np.arange(codes.size)
            rows.flags.writeable = False
            groups = ((key[0], rows),)
            if single is not None:
                single[key] = groups
        return groups
    return tuple((int(c), np.flatnonzero(codes == c)) for c in np.unique(codes))


def block_view(words: np.ndarray, start: int, rows: int, stride: int, count: int) -> np.ndarray:
    """The read-only view ``words[start + r * stride + c]`` (``r < rows``, ``c < count``) of a
    contiguous 1-D array, the block in range (the caller checks, :func:`block_in_range`): made as an
    ndarray on the buffer, a tenth of ``as_strided``'s call cost (868 DISTWs of ResNet-8)."""
    assert words.ndim == 1 and words.flags.c_contiguous
    item = words.itemsize
    view = np.ndarray((rows, count), words.dtype, words, start * item, (stride * item, item))
    view.flags.writeable = False
    return view


def block_in_range(size: int, start: int, rows: int, stride: int, count: int) -> bool:
    """Whether a non-empty block ``start + r * stride + c`` (``r < rows``, ``c < count``, steps >= 0)
    lies in ``[0, size)``."""
    return bool(rows and count and 0 <= start and stride >= 0 and start + (rows - 1) * stride + count <= size)


def _strided_rows(words: np.ndarray, start: int, rows: int, stride: int, count: int) -> np.ndarray:
    """A copy of ``words[start + r * stride + c]`` for ``r < rows``, ``c < count`` (a strided view, not a gather)."""
    if block_in_range(words.size, start, rows, stride, count):
        return block_view(words, start, rows, stride, count).copy()
    gathered: np.ndarray = words[start + np.arange(rows)[:, None] * stride + np.arange(count)[None, :]]
    return gathered.copy()


def _distw_sources(words: np.ndarray, start: int, rows: int, stride: int, count: int, ramps: dict[Any, np.ndarray]) -> np.ndarray | Pattern:
    """The weight sources of a DISTW, ``words[start + r * stride + c]`` for ``r < rows``, ``c < count``:
    their affine pattern ``(base, (rows, count), (row step, column step))`` when they are one (every
    word written, steps >= 0; checked word for word against the pattern's offsets from its base,
    kept in ``ramps`` per shape and steps: a dense layer's DISTWs share them), else a copy."""
    if block_in_range(words.size, start, rows, stride, count):
        view = block_view(words, start, rows, stride, count)
        base = int(view[0, 0])
        steps = (int(view[1, 0]) - base if rows > 1 else 0, int(view[0, 1]) - base if count > 1 else 0)
        if base >= 0 and min(steps) >= 0:
            key = (rows, count, steps)
            ramp = ramps.get(key)
            if ramp is None:
                ramp = ramps[key] = expand(0, (rows, count), steps)
            if bool((view - base == ramp).all()):
                return base, (rows, count), steps
        return view.copy()
    return _strided_rows(words, start, rows, stride, count)


def trace(program: Sequence[Instruction], arch: Architecture) -> Plan:
    """Trace ``program`` symbolically (no data) into the typed steps the fast executor runs.

    The program is the run's (runtime/overrides.py applied any multiplier override to its MODE
    codes); MACs read the mode table their MODE instructions wrote."""
    named = [ins.operands() for ins in program]  # read by both walks over the program
    used, stored = _used_words(program, arch, named)
    compact = np.cumsum(used) - 1
    nb_used = int(used.sum())
    nb_words = nb_used + int(stored.size)  # spilled DRAM words get the columns after the buffer's
    pad = nb_words
    dram_written = np.zeros(int(stored.max()) + 1 if stored.size else 0, dtype=bool)

    def cidx(addresses: np.ndarray) -> np.ndarray:
        result: np.ndarray = compact[addresses].astype(np.intp)
        return result

    def didx(addresses: np.ndarray) -> np.ndarray:
        """Compact columns of stored activation-DRAM words."""
        result: np.ndarray = (nb_used + np.searchsorted(stored, addresses)).astype(np.intp)
        return result

    sta_words: set[int] = set()  # activation-DRAM words an STA stored

    def spilled(dram: int, count: int) -> bool | None:
        """Whether words ``[dram, dram + count)`` were all stored by an earlier STN (None: some were)."""
        seen = dram_written[dram : dram + count]
        hits = int(seen.sum())
        return True if hits == count else False if hits == 0 else None

    wb_src = np.full(arch.weight_buffer_words, -1, dtype=np.int64)
    bb_src = np.full(arch.bias_buffer_words, -1, dtype=np.int64)
    mt = np.zeros(arch.bias_buffer_words, dtype=np.int64)
    rq_src = np.full(arch.bias_buffer_words, -1, dtype=np.int64)  # requant table entry -> DRAM.Q entry
    distw: tuple[int, int, int, np.ndarray | Pattern] | None = None  # m, p, k, source rows [m, k] or their affine pattern
    distn: tuple[int, int, int] | None = None
    steps: list[Step] = []
    codes_used: set[int] = set()
    max_req_bits = 0
    geometry: Geometry | None = None
    # A DISTN of the same words as an earlier one (the same geometry, base and tile: each row tile
    # of a layer gathers the same inputs) gets the same read-only index array: 1,219 of the 1,296
    # gathers of 784-4096-4096-10, 192 of ResNet-8's 977.
    gathers: dict[tuple[Any, ...], tuple[np.ndarray, np.ndarray | None]] = {}
    ramps: dict[Any, np.ndarray] = {}  # _distw_sources' offset blocks
    single_groups: dict[tuple[int, int], tuple[tuple[int, np.ndarray], ...]] = {}  # _mac_groups' shared one-mode groups
    for index, (ins, o) in enumerate(zip(program, named, strict=True)):
        op = ins.op
        if op == "LDW":  # a block of rows x cols words, written through a view (no index arrays)
            block = wb_src[o["wb"] : o["wb"] + o["rows"] * o["cols"]].reshape(o["rows"], o["cols"])
            np.add(o["dram"] + np.arange(o["rows"])[:, None] * o["stride"], np.arange(o["cols"])[None, :], out=block)
        elif op == "LDB":
            bb_src[o["bb"] : o["bb"] + o["count"]] = o["dram"] + np.arange(o["count"])
        elif op == "MODE":
            mt[o["mt"] : o["mt"] + o["count"]] = o["code"]
        elif op == "LDQ":
            rq_src[o["qa"] : o["qa"] + o["count"]] = o["dram"] + np.arange(o["count"])
        elif op == "CONV":
            geometry = Geometry(**o)
        elif op == "DISTW":
            distw = (o["m"], o["p"], o["k"], _distw_sources(wb_src, o["wb"], o["m"], o["stride"], o["k"], ramps))
        elif op == "DISTN":
            assert geometry is not None  # check_program refuses a DISTN before any CONV
            distn = (o["m"], o["p"], o["k"])
            key = (geometry, o["nb"], o["p0"], o["p"], o["k0"], o["k"])
            known = gathers.get(key)
            if known is None:
                offsets, inside = geometry.window(o["p0"], o["p"], o["k0"], o["k"])
                gather = np.where(inside, cidx(o["nb"] + offsets), pad)  # [p, k]
                # Gathered activations are kept as [k, p, n] (batch innermost): k-major indices.
                flat = np.ascontiguousarray(gather.T).ravel()
                pad_at = np.flatnonzero(~inside.T.ravel()) if geometry.padv and not bool(inside.all()) else None
                flat.flags.writeable = False  # shared by the gathers of the same words (below)
                known = gathers[key] = (flat, pad_at)
            flat, pad_at = known
            if pad_at is not None:  # padding that reads the zero point, not 0
                steps.append(Gather(index, flat, o["p"], o["k"], padv=geometry.padv, pad_at=pad_at))
            else:
                steps.append(Gather(index, flat, o["p"], o["k"]))
        elif op == "MAC":
            m, p, k = o["m"], o["p"], o["k"]
            if distn is None or distw is None:
                return Plan((), nb_words, (), False, f"instruction {index}: MAC before DISTN/DISTW", passes=("trace",))
            if not (distn[1] == p == distw[1] and m <= distn[0] and m <= distw[0] and k <= distn[2] and k <= distw[2]):
                return Plan((), nb_words, (), False, f"instruction {index}: MAC tile {m}x{p}x{k} not filled by the latest DISTN/DISTW", passes=("trace",))
            groups = _mac_groups(mt[o["mt"] : o["mt"] + m], single_groups)
            codes_used.update(code for code, _ in groups)
            bias_src = bb_src[o["bb"] : o["bb"] + m].copy() if o["init"] else None
            sources = distw[3]
            if isinstance(sources, tuple):  # an affine pattern: the MAC's corner of it (a step of 0 along a length-1 axis, as affine() writes it)
                corner = (sources[0], (m, k), (sources[2][0] if m > 1 else 0, sources[2][1] if k > 1 else 0))
                steps.append(Mac(index, m, p, k, None, bias_src, groups, w_view=corner))
            else:  # the DISTW's own (fresh, never modified) array when the MAC takes all of it
                steps.append(Mac(index, m, p, k, sources if sources.shape == (m, k) else sources[:m, :k].copy(), bias_src, groups))
        elif op == "RELU":
            steps.append(Relu(index, o["m"] * o["p"]))
        elif op == "REQ":
            e = np.arange(o["m"] * o["p"])
            address = o["nb"] + (e // o["p"]) * o["ostride"] + e % o["p"]
            qmin, qmax = saturation_bounds(o["bits"], not o["uns"])
            max_req_bits = max(max_req_bits, o["bits"])
            entries = rq_src[o["qa"] + e // o["p"]].copy() if o["rq"] else None
            steps.append(Requantize(index, cidx(address), int(e.size), o["shift"], qmin, qmax, entries))
        elif op == "POOL":
            c, h, w = o["c"], o["h"], o["w"]
            oh, ow = pool_output_shape(o)
            steps.append(Pool(
                index, cidx(o["src"] + np.arange(c * h * w)), cidx(o["dst"] + np.arange(c * oh * ow)), (c, h, w), (oh, ow),
                (o["kh"], o["kw"]), (o["sh"], o["sw"]), (o["pt"], o["pl"], o["pb"], o["pr"]),
            ))
        elif op == "AVGPOOL":
            c, h, w = o["c"], o["h"], o["w"]
            oh, ow = pool_output_shape(o)
            fmt = FixedPointFormat(o["bits"], 0)
            max_req_bits = max(max_req_bits, o["bits"])
            steps.append(AvgPool(
                index, cidx(o["src"] + np.arange(c * h * w)), cidx(o["dst"] + np.arange(c * oh * ow)), (c, h, w), (oh, ow),
                (o["kh"], o["kw"]), (o["sh"], o["sw"]), (o["pt"], o["pl"], o["pb"], o["pr"]), o["shift"], fmt.qmin, fmt.qmax,
                count_include_pad=bool(o["cip"]),
            ))
        elif op == "ADD":
            words = np.arange(o["count"])
            fmt = FixedPointFormat(o["bits"], 0)
            max_req_bits = max(max_req_bits, o["bits"])
            steps.append(Add(index, cidx(o["a"] + words), cidx(o["b"] + words), cidx(o["dst"] + words), o["sa"], o["sb"], o["shift"], fmt.qmin, fmt.qmax, bool(o["relu"])))
        elif op == "LDN":
            from_spill = spilled(o["dram"], o["count"])
            if from_spill is None:
                return Plan((), nb_words, (), False, f"instruction {index}: LDN of words partly stored by the program", passes=("trace",))
            target = cidx(o["nb"] + np.arange(o["count"]))
            if from_spill:
                steps.append(Copy(index, didx(o["dram"] + np.arange(o["count"])), target))
            else:
                steps.append(Load(index, target, o["dram"], o["count"]))
        elif op == "STN":
            source = cidx(o["nb"] + np.arange(o["count"]))
            steps.append(Store(index, source, o["dram"], o["count"]))
            addresses = o["dram"] + np.arange(o["count"])
            kept = np.isin(addresses, stored)  # the words the program reads back
            if kept.any():
                steps.append(Copy(index, source[kept], didx(addresses[kept])))
                dram_written[addresses[kept]] = True
        elif op == "SYNC":
            if o["space"] and sta_words.issuperset(range(o["nb"], o["nb"] + o["count"])):
                # The accumulator words STA stored (a float graph output): read from the stores.
                steps.append(Sync(index, EMPTY, o["layer"], acc_range=(o["nb"], o["count"])))
            elif o["space"]:
                if spilled(o["nb"], o["count"]) is not True:
                    return Plan((), nb_words, (), False, f"instruction {index}: SYNC of activation DRAM words the program did not store", passes=("trace",))
                steps.append(Sync(index, didx(o["nb"] + np.arange(o["count"])), o["layer"]))
            else:
                steps.append(Sync(index, cidx(o["nb"] + np.arange(o["count"])), o["layer"]))
        elif op == "STA":
            rows, per_row, ostride = o["m"], o["p"], o["ostride"]
            pieces = ((o["dram"], 0, rows * per_row),) if ostride == per_row or rows == 1 else tuple((o["dram"] + r * ostride, r * per_row, per_row) for r in range(rows))
            steps.append(StoreAcc(index, rows * per_row, pieces))
            for first_word, _, piece_words in pieces:
                sta_words.update(range(first_word, first_word + piece_words))
        elif op == "END":
            break
    return Plan(tuple(steps), nb_words, tuple(sorted(codes_used)), True, max_req_bits=max_req_bits, passes=("trace",))


# ---------------------------------------------------------------------------------------------
# The passes
# ---------------------------------------------------------------------------------------------


def chain_accumulators(plan: Plan) -> Plan:
    """Number the accumulator chains (an init MAC starts one; the MACs after it accumulate onto the
    same tile) and give RELU/REQ the ``(m, p)`` layout of the tile they read.

    Falls back when a MAC accumulates onto a different tile shape, or a RELU/REQ reads a tile no MAC
    chain produced."""
    chain = -1
    layout: tuple[int, int] | None = None
    steps: list[Step] = []
    for step in plan.steps:
        if isinstance(step, Mac):
            if step.bias_src is not None:
                chain += 1
                layout = (step.m, step.p)
            elif layout != (step.m, step.p):
                return fallback(plan, f"instruction {step.index}: MAC accumulates onto a different tile shape")
            steps.append(with_fields(step, chain=chain))
        elif isinstance(step, (Relu, Requantize, StoreAcc)):
            if layout is None or layout[0] * layout[1] != step.count:
                kind = step.op
                return fallback(plan, f"instruction {step.index}: {kind} on a tile no MAC chain produced")
            steps.append(with_fields(step, layout=layout))
        else:
            steps.append(step)
    return replace(plan, steps=tuple(steps))


def affine(idx: np.ndarray) -> Pattern | None:
    """``(base, shape, steps)`` when ``idx[i0, i1, ...] == base + sum(i_d * steps_d)`` with steps
    >= 0, else None."""
    idx = np.asarray(idx)
    if idx.size == 0:
        return None
    shape = tuple(idx.shape)
    flat = idx.reshape(-1)
    base = int(flat[0])
    # The step of each axis: the element one along it from the first, in the row-major flat order
    # (no np.take per axis: ResNet-8's plan asks for 1,347 patterns).
    steps, after = [], 1
    for size in reversed(shape):
        steps.append(int(flat[after]) - base if size > 1 else 0)
        after *= size
    steps.reverse()
    if any(step < 0 for step in steps) or not bool((expand(base, shape, tuple(steps)) == idx).all()):  # the same shape: no array_equal
        return None
    return base, shape, tuple(steps)


def _ramp(start: int, size: int, step: int) -> np.ndarray:
    return np.arange(start, start + size * step, step, dtype=np.int64) if step else np.full(size, start, dtype=np.int64)


def expand(base: int, shape: tuple[int, ...], steps: tuple[int, ...]) -> np.ndarray:
    """The index array an affine pattern stands for."""
    if len(shape) == 1:
        return _ramp(base, shape[0], steps[0])
    if len(shape) == 2:  # one broadcast sum of two ramps (half the time of the general loop)
        out2: np.ndarray = _ramp(base, shape[0], steps[0])[:, None] + _ramp(0, shape[1], steps[1])[None, :]
        return out2
    out = np.full(shape, base, dtype=np.int64)
    for axis, (size, step) in enumerate(zip(shape, steps, strict=True)):
        if step:
            out += np.arange(0, size * step, step, dtype=np.int64).reshape([-1 if a == axis else 1 for a in range(len(shape))])
    return out


def strided_views(plan: Plan) -> Plan:
    """Affine index patterns, so that the runner reads and writes strided views instead of copying
    through index arrays: gathers as ``[k, p]``, requantised tiles as their ``(m, p)`` layout (the
    accumulators are ``[runs, m, p, n]``, row-major tile, batch innermost), the rest as runs of words."""
    steps: list[Step] = []
    known: dict[tuple[int, int, int], Pattern | None] = {}  # gathers sharing one index array (trace) share its pattern
    for step in plan.steps:
        if isinstance(step, Gather):
            key = (id(step.idx), step.k, step.p)  # the arrays live in ``plan`` while this runs: ids are not reused
            if key not in known:
                known[key] = affine(step.idx.reshape(step.k, step.p))
            step = with_fields(step, view=known[key])
        elif isinstance(step, Requantize):
            assert step.layout is not None
            step = with_fields(step, view=affine(step.idx.reshape(step.layout)))
        elif isinstance(step, (Load, Store, Sync)):
            step = with_fields(step, view=affine(step.idx))
        elif isinstance(step, (Pool, AvgPool, Copy)):
            step = with_fields(step, src_view=affine(step.src), dst_view=affine(step.dst))
        elif isinstance(step, Add):
            step = with_fields(step, a_view=affine(step.a), b_view=affine(step.b), dst_view=affine(step.dst))
        steps.append(step)
    return replace(plan, steps=tuple(steps))


def transform_targets(plan: Plan) -> Plan:
    """Which written words need DRUM-transformed copies per mode: those any DISTN reads, and the
    source words of a spill copy whose target words need them (to a fixpoint: an STN into the
    activation-DRAM columns, then an LDN back). Every write of such a word writes its transforms,
    and a word read before any write holds 0 in every buffer (DRUM(0) = 0), so a copy that
    transforms can copy its source's transforms instead of computing them again
    (``transforms_copied``): ResNet-8's spills of its residual shortcuts took ~20 % of its numerics
    recomputing DRUM of words whose transforms were in the buffer already."""
    needed = np.zeros(plan.nb_words + 1, dtype=bool)
    for step in plan.steps:
        if isinstance(step, Gather):
            needed[step.idx] = True
    needed[plan.nb_words] = False
    copies = [step for step in plan.steps if isinstance(step, Copy)]
    changed = bool(copies)
    while changed:
        changed = False
        for copy in copies:
            more = copy.src[needed[copy.dst] & ~needed[copy.src]]
            if more.size:
                needed[more] = changed = True
    needed[plan.nb_words] = False  # the padding word is never written
    steps: list[Step] = []
    for step in plan.steps:
        if isinstance(step, (Load, Requantize, Pool, AvgPool, Add, Copy)):
            target = written(step)
            sel = np.flatnonzero(needed[target])
            changes: dict[str, Any] = {"transform_sel": None if sel.size in (0, target.size) else sel, "transform_any": bool(sel.size)}
            if isinstance(step, Copy):
                changes["transforms_copied"] = bool(sel.size) and bool(needed[step.src[sel]].all())
            step = with_fields(step, **changes)
        steps.append(step)
    return replace(plan, steps=tuple(steps))


def _same_groups(a: tuple[tuple[int, np.ndarray], ...], b: tuple[tuple[int, np.ndarray], ...]) -> bool:
    return a is b or (len(a) == len(b) and all(c0 == c1 and np.array_equal(r0, r1) for (c0, r0), (c1, r1) in zip(a, b, strict=True)))


def fuse_dense_chains(plan: Plan) -> Plan:
    """Mark chains that are one dense dot product split into local-memory chunks.

    A chain fuses when its DISTNs read consecutive, contiguous runs of one neuron-buffer row (p = 1),
    nothing but its own DISTN/MAC steps lies between its first DISTN and its last MAC (so every
    chunk sees the same neuron buffer), and all its MACs have the same rows per mode. The head MAC
    then runs the whole chain as one GEMM over ``K = sum k`` (same integers: the chain's bound is
    checked the same way), and the other MACs of the chain do nothing.
    """
    chains: dict[int, list[int]] = {}
    for number, step in enumerate(plan.steps):
        if isinstance(step, Mac):
            chains.setdefault(step.chain, []).append(number)
    steps = list(plan.steps)
    for chain, macs in chains.items():
        if len(macs) < 2:
            continue
        first_distn = macs[0] - 1
        if first_distn < 0 or not isinstance(steps[first_distn], Gather):
            continue
        spans: list[tuple[int, int]] = []
        ok = True
        for number in range(first_distn, macs[-1] + 1):
            step = steps[number]
            if isinstance(step, Mac):
                ok = ok and step.chain == chain
            elif isinstance(step, Gather):
                view = step.view
                if view is None or step.p != 1 or (step.k > 1 and view[2][0] != 1) or step.padv:
                    ok = False  # not one contiguous run of words
                else:
                    spans.append((view[0], step.k))
            else:
                ok = False
        heads = [steps[number] for number in macs]
        assert all(isinstance(mac, Mac) for mac in heads)
        chain_macs: list[Mac] = [mac for mac in heads if isinstance(mac, Mac)]
        ks = [mac.k for mac in chain_macs]
        if not ok or len(spans) != len(macs) or any(k_mac != k_gather for k_mac, (_, k_gather) in zip(ks, spans, strict=True)):
            continue
        if any(spans[i][0] + spans[i][1] != spans[i + 1][0] for i in range(len(spans) - 1)):
            continue
        if not all(_same_groups(mac.groups, chain_macs[0].groups) for mac in chain_macs):
            continue
        steps[macs[0]] = with_fields(chain_macs[0], fused=Fused(tuple(macs), spans[0][0], sum(ks)))
        for number, mac in zip(macs[1:], chain_macs[1:], strict=True):
            steps[number] = with_fields(mac, fused_into=macs[0])
    return replace(plan, steps=tuple(steps))


def mark_shared(plan: Plan) -> Plan:
    """Mark which steps touch run-invariant data (the same in every Monte Carlo run).

    Words written by LDN (the inputs) are the same in every run; a MAC's results are not (each run has
    its own weights). A read whose words are all run-invariant at that point (``shared``) reads the
    shared buffer ``[words, n]`` once for all runs; the other reads use the per-run buffer
    ``[runs, words, n]``. A shared write (LDN, or POOL of shared words) also goes to the per-run buffer
    (``mirror``) only when a later per-run read sees the words it wrote. Words read before any write
    (the padding word) are ``zero_rows``: the runner zeroes only those.
    """
    words = plan.nb_words + 1
    varying = np.zeros(words, dtype=bool)
    last_writer = np.full(words, -1, dtype=np.int64)
    zero = np.zeros(words, dtype=bool)
    zero[plan.nb_words] = True  # the padding word
    shared: dict[int, bool] = {}  # step number -> its read (or write) is run-invariant
    shared_write = np.zeros(len(plan.steps), dtype=bool)  # the same, for the writing steps, as an array
    mirror: set[int] = set()

    def read(idx: np.ndarray) -> bool:
        writers = last_writer[idx]
        zero[idx[writers < 0]] = True  # read before any write: must hold 0
        invariant = not bool(varying[idx].any())
        if not invariant:
            # The shared writers of a per-run read are mirrored (most per-run reads have none: their
            # words were written by REQs; no np.unique of every writer, 936 reads of ResNet-8).
            seen = writers[writers >= 0]
            seen = seen[shared_write[seen]]
            if seen.size:
                mirror.update(int(w) for w in np.unique(seen))
        return invariant

    latest = False
    for number, step in enumerate(plan.steps):
        if isinstance(step, Gather):
            shared[number] = latest = read(step.idx)
        elif isinstance(step, Mac):
            if step.fused is not None:
                latest = read(np.arange(step.fused.start, step.fused.start + step.fused.k))
            shared[number] = latest
        elif isinstance(step, (Store, Sync)):
            shared[number] = read(step.idx)
        elif isinstance(step, (Pool, AvgPool, Copy)):
            shared[number] = shared_write[number] = read(step.src)
            varying[step.dst] = not shared[number]
            last_writer[step.dst] = number
        elif isinstance(step, Add):
            both = np.concatenate([step.a, step.b])  # read as one: a per-run read needs both in the per-run buffer
            shared[number] = shared_write[number] = read(both)
            varying[step.dst] = not shared[number]
            last_writer[step.dst] = number
        elif isinstance(step, Load):
            shared[number] = shared_write[number] = True
            varying[step.idx] = False
            last_writer[step.idx] = number
        elif isinstance(step, Requantize):
            shared[number] = False
            varying[step.idx] = True
            last_writer[step.idx] = number
    steps: list[Step] = []
    for number, step in enumerate(plan.steps):
        if isinstance(step, Mac):
            step = with_fields(step, shared_input=shared[number])
        elif isinstance(step, (Load, Requantize, Pool, AvgPool, Add, Copy)):
            step = with_fields(step, shared=shared[number], mirror=number in mirror)
        elif isinstance(step, (Gather, Store, Sync)):
            step = with_fields(step, shared=shared[number])
        steps.append(step)
    return replace(plan, steps=tuple(steps), zero_rows=np.flatnonzero(zero))


PlanPass = Callable[[Plan], Plan]

PASSES: tuple[tuple[str, PlanPass], ...] = (
    ("chain_accumulators", chain_accumulators),
    ("strided_views", strided_views),
    ("transform_targets", transform_targets),
    ("fuse_dense_chains", fuse_dense_chains),
    ("mark_shared", mark_shared),
)


def run_plan_passes(plan: Plan, passes: tuple[tuple[str, PlanPass], ...] = PASSES, check_each: bool = True) -> Plan:
    """Apply the passes in order; a fallen-back plan stops there.

    ``check_each``: check the plan after the trace and after every pass (a broken invariant is
    named with the pass that broke it); False: check the final plan only (:func:`build_plan`'s
    default for the executor, decision 203). Either way the plan that is returned has passed
    :func:`check_plan` at its stage."""
    memo: dict[tuple[Any, ...], Any] = {}  # checks of arrays a pass kept as they were are not repeated
    if check_each:
        check_plan(plan, memo)
    for name, plan_pass in passes:
        if not plan.fast:
            break
        plan = plan_pass(plan)
        plan = replace(plan, passes=(*plan.passes, name))
        if check_each:
            check_plan(plan, memo)
    if not check_each:
        check_plan(plan, memo)
    return plan


def build_plan(program: Sequence[Instruction], arch: Architecture, check_each: bool = False) -> Plan:
    """The complete plan of ``program``: :func:`trace`, then every pass of :data:`PASSES`.

    The executor checks the final plan only (``check_each=False``: the checks after the trace and
    each pass were a fifth of planning ResNet-8; decision 203); tests and tools that want a
    broken invariant named with its pass ask for ``check_each=True``."""
    return run_plan_passes(trace(program, arch), check_each=check_each)


# ---------------------------------------------------------------------------------------------
# The checker
# ---------------------------------------------------------------------------------------------


class _StepName:
    """``step N (instruction I, Kind)``, formatted only when a message needs it."""

    def __init__(self, number: int, step: Any) -> None:
        self.number, self.step = number, step

    def __str__(self) -> str:
        return f"step {self.number} (instruction {self.step.index}, {type(self.step).__name__})"


def check_plan(plan: Plan, memo: dict[tuple[Any, ...], Any] | None = None) -> None:
    """Check the invariants of ``plan`` at its stage (``plan.passes``); a PlanError names the first
    broken one. Every stage: indices in range, sizes consistent with the operands, MAC weights and mode
    groups well formed, every strided view equal to its index array. After each pass, what it adds.

    ``memo`` (shared by the checks of one pipeline, :func:`run_plan_passes`) records the per-array
    checks that passed, keyed by the array's identity and what was checked; it keeps the arrays
    alive, so an identity is never reused while it holds them. Passes replace steps but keep the
    arrays they do not change: without it, six checks of 784-4096-4096-10's plan took 0.8 s."""
    stage = plan.passes[-1] if plan.passes else "trace"

    def require(condition: bool, message: str | Callable[[], str]) -> None:
        # Messages may be given as a callable: formatted only when a check fails (a plan of 2,662
        # steps is checked six times; formatting every message every time cost more than the checks).
        if not condition:
            raise PlanError(f"plan after {stage}: {message if isinstance(message, str) else message()}")

    if not plan.fast:
        require(bool(plan.reason), "a plan for the interpreter must say why")
        return
    done = set(plan.passes)
    words = plan.nb_words

    checked = {} if memo is None else memo  # (kind, id(array), what else was checked) -> the array

    def indices(what: object, idx: np.ndarray, size: int, pad: bool = False) -> None:
        require(idx.ndim == 1 and idx.size == size, lambda: f"{what}: {idx.size} indices, expected {size}")
        require(idx.dtype.kind in "iu", lambda: f"{what}: indices are not integers")  # np.issubdtype, at a tenth of its cost
        key = ("range", id(idx), words, pad)
        if idx.size and key not in checked:
            top = words if pad else words - 1
            require(int(idx.min()) >= 0 and int(idx.max()) <= top, lambda: f"{what}: index outside the {words} neuron-buffer words")
            checked[key] = idx

    def view_matches(what: object, view: Pattern | None, idx: np.ndarray) -> None:
        key = ("view", id(idx), view)
        if view is not None and key not in checked:
            base, shape, steps = view
            require(math.prod(shape) == idx.size and bool((expand(base, shape, steps).ravel() == idx).all()), lambda: f"{what}: strided view differs from its indices")
            checked[key] = idx

    def write_targets(what: object, step: Write) -> None:
        target = written(step)
        if step.transform_sel is not None:
            require(step.transform_any and step.transform_sel.size > 0, lambda: f"{what}: a transform selection without transformed words")
            require(int(step.transform_sel.max()) < target.size and int(step.transform_sel.min()) >= 0, lambda: f"{what}: transform selection outside its words")
        if "mark_shared" in done:
            require(not step.mirror or step.shared, lambda: f"{what}: only a shared write is mirrored")

    codes = set(plan.codes)
    chain = -1
    chain_layout: tuple[int, int] | None = None

    def follow_chain(what: object, step: Mac) -> None:
        """The accumulator chain numbering, which depends on every MAC before ``step``."""
        nonlocal chain, chain_layout
        if "chain_accumulators" in done:
            if step.bias_src is not None:
                chain += 1
                chain_layout = (step.m, step.p)
            require(step.chain == chain and chain_layout == (step.m, step.p), lambda: f"{what}: chain {step.chain}, expected {chain} on one tile shape")

    def check_step(number: int, step: Step) -> None:
        # One function per step, so that the lazy messages close over its own arguments.
        what = _StepName(number, step)
        if isinstance(step, Load):
            indices(what, step.idx, step.count)
            view_matches(what, step.view, step.idx)
            write_targets(what, step)
        elif isinstance(step, (Store, Sync)):
            require(not isinstance(step, Sync) or step.acc_range is None or step.idx.size == 0, lambda: f"{what}: an accumulator SYNC reads no neuron-buffer words")
            indices(what, step.idx, step.count if isinstance(step, Store) else step.idx.size)
            view_matches(what, step.view, step.idx)
        elif isinstance(step, Gather):
            require(step.p >= 1 and step.k >= 1, lambda: f"{what}: empty tile")
            indices(what, step.idx, step.p * step.k, pad=True)
            view_matches(what, step.view, step.idx)
            if step.padv:
                require(step.pad_at.size > 0 and bool(np.all(step.idx[step.pad_at] == words)) and int(np.count_nonzero(step.idx == words)) == step.pad_at.size,
                        lambda: f"{what}: pad_at is not where it reads the padding word")
        elif isinstance(step, Mac):
            require(step.m >= 1 and step.p >= 1 and step.k >= 1, lambda: f"{what}: empty tile")
            if step.w_src is not None:
                sources = step.w_src
                require(step.w_view is None, lambda: f"{what}: weight sources given as an array and as a pattern")
                require(sources.shape == (step.m, step.k), lambda: f"{what}: weight sources {sources.shape}, expected {(step.m, step.k)}")
            else:
                require(step.w_view is not None, lambda: f"{what}: no weight sources")
                assert step.w_view is not None
                base, shape, steps = step.w_view
                require(shape == (step.m, step.k), lambda: f"{what}: weight sources {shape}, expected {(step.m, step.k)}")
                require(base >= 0 and len(steps) == 2 and min(steps) >= 0, lambda: f"{what}: weight source pattern {step.w_view} is not of written words")
            require(step.bias_src is None or step.bias_src.shape == (step.m,), lambda: f"{what}: bias sources are not one per row")
            key = ("groups", id(step.groups), step.m)
            if key not in checked:
                rows = np.concatenate([r for _, r in step.groups]) if step.groups else EMPTY
                require(np.array_equal(np.sort(rows), np.arange(step.m)), lambda: f"{what}: mode groups do not cover each row once")
                checked[key] = step.groups
            require(all(code in codes for code, _ in step.groups), lambda: f"{what}: a mode code missing from the plan's codes")
            follow_chain(what, step)
            if step.fused is not None:
                heads = [plan.steps[n] for n in step.fused.macs]
                require(step.fused.macs[0] == number, lambda: f"{what}: a fused chain's first MAC is its head")
                require(all(isinstance(h, Mac) and h.chain == step.chain for h in heads), lambda: f"{what}: fused steps are MACs of its chain")
                require(all(isinstance(h, Mac) and h.fused_into == number for h in heads[1:]), lambda: f"{what}: fused MACs point at their head")
                require(step.fused.k == sum(h.k for h in heads if isinstance(h, Mac)), lambda: f"{what}: fused depth is not the sum of its MACs'")
                require(0 <= step.fused.start and step.fused.start + step.fused.k <= words, lambda: f"{what}: fused words outside the neuron buffer")
            if step.fused_into is not None:
                head = plan.steps[step.fused_into] if 0 <= step.fused_into < len(plan.steps) else None
                require(isinstance(head, Mac) and head.fused is not None and number in head.fused.macs, lambda: f"{what}: fused into a step that is not its chain's head")
        elif isinstance(step, StoreAcc):
            require(step.count >= 1 and sum(words for _, _, words in step.runs) == step.count, lambda: f"{what}: pieces do not cover its {step.count} accumulators")
        elif isinstance(step, (Relu, Requantize)):
            require(step.count >= 1, lambda: f"{what}: empty tile")
            if "chain_accumulators" in done:
                require(step.layout is not None and step.layout[0] * step.layout[1] == step.count, lambda: f"{what}: layout does not cover its {step.count} accumulators")
            if isinstance(step, Requantize):
                indices(what, step.idx, step.count)
                require(step.qmin < step.qmax, lambda: f"{what}: empty saturation range")
                require(step.rq_src is None or step.rq_src.shape == (step.count,), lambda: f"{what}: requant sources are not one per accumulator")
                view_matches(what, step.view, step.idx)
                write_targets(what, step)
        elif isinstance(step, Pool):
            c, h, w = step.shape
            indices(what, step.src, c * h * w)
            indices(what, step.dst, c * step.out[0] * step.out[1])
            view_matches(what, step.src_view, step.src)
            view_matches(what, step.dst_view, step.dst)
            write_targets(what, step)
        elif isinstance(step, AvgPool):
            c, h, w = step.shape
            indices(what, step.src, c * h * w)
            indices(what, step.dst, c * step.out[0] * step.out[1])
            require(step.qmin < step.qmax, f"{what}: empty saturation range")
            view_matches(what, step.src_view, step.src)
            view_matches(what, step.dst_view, step.dst)
            write_targets(what, step)
        elif isinstance(step, Add):
            size = step.dst.size
            indices(what, step.a, size)
            indices(what, step.b, size)
            indices(what, step.dst, size)
            require(step.qmin < step.qmax and step.sa >= 0 and step.sb >= 0, f"{what}: empty saturation range or negative alignment")
            for name, view, idx in (("a", step.a_view, step.a), ("b", step.b_view, step.b), ("dst", step.dst_view, step.dst)):
                view_matches(f"{what} {name}", view, idx)
            write_targets(what, step)
        elif isinstance(step, Copy):
            require(step.src.size == step.dst.size, f"{what}: {step.src.size} source words for {step.dst.size} targets")
            require(not step.transforms_copied or step.transform_any, lambda: f"{what}: copies transforms but writes none")
            indices(what, step.src, step.src.size)
            indices(what, step.dst, step.dst.size)
            view_matches(what, step.src_view, step.src)
            view_matches(what, step.dst_view, step.dst)
            write_targets(what, step)
        else:
            require(False, lambda: f"step {number}: {type(step).__name__} is not a plan step")

    # A step a pass kept as it was (the same object at the same place) passes the same checks at a
    # stage with the same flags again: only its MAC chain numbering, which depends on the steps
    # before it, is followed (and a fused MAC, whose checks read other steps, is checked again).
    # About 40 % of the step checks of ResNet-8's six, at stages strided_views to fuse_dense_chains.
    flags = ("step", "chain_accumulators" in done, "mark_shared" in done, words, plan.codes)
    for number, step in enumerate(plan.steps):
        key = (*flags, id(step), number)
        if key in checked and not (isinstance(step, Mac) and (step.fused is not None or step.fused_into is not None)):
            if isinstance(step, Mac):
                follow_chain(_StepName(number, step), step)
            continue
        check_step(number, step)
        checked[key] = step  # held, so that its identity is not reused while the memo lives
    if "mark_shared" in done:
        zero = plan.zero_rows
        require(zero.size > 0 and int(zero.max()) == words and int(zero.min()) >= 0, "zero rows must include the padding word and stay in range")
