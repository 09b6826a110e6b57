"""Fast numeric execution of a bundle's instruction stream, batched over images with numpy.

The functional reference is :mod:`axtrain.runtime.interpreter` (every PE, one instruction at a time).
This module executes the same program and produces the same integers (tests require bit identity),
but splits the work in two:

* **Plan** (once per program, data independent): a symbolic pass over the instruction stream tracks
  where every weight-buffer, bias-buffer and PE-weight-memory word comes from in the DRAM images,
  the mode table, the geometry registers and the neuron-buffer addresses each DISTN gathers. What
  remains are the data-dependent steps (LDN, DISTN, MAC, RELU, REQ, POOL, SYNC, STN), each with
  precomputed index arrays.
* **Run** (per weight image and image batch): each remaining instruction is one numpy operation
  over the whole batch. A DISTN gathers ``[n, p, k]`` activations once (a tile's ``m`` rows share
  them); a MAC is one GEMM ``[n*p, k] @ [k, m]`` per multiplier mode in the tile.

Exactness: activations and weights are integers carried in float32 (or float64); a GEMM runs in
float32 only when ``k * max|a| * max|w| < 2**24`` proves every partial sum exact, else in float64
(exact below ``2**53``), else in int64. Requantisation is ``rint(acc * 2**-shift)`` (exact scaling
by a power of two, round half to even) followed by saturation, which equals
``hwmodels.fixedpoint.requantize``. DRUM is a per-operand transform, so a DRUM MAC is an exact GEMM
of transformed operands; transformed copies of the neuron buffer are kept for the addresses DISTN
reads.

A program whose tiles do not have the shape this plan assumes (a MAC whose PEs were not filled by
the latest DISTN/DISTW with the same positions per row) is executed by the interpreter instead:
slower, same result.
"""

from __future__ import annotations

import contextlib
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from axtrain.errors import BundleError
from axtrain.formats.arch import Architecture
from axtrain.formats.isa import Geometry, Instruction, pool_output_size
from axtrain.hwmodels.fixedpoint import FixedPointFormat, dequantize, quantize
from axtrain.hwmodels.multipliers import MultiplierMode, drum_transform
from axtrain.runtime.blas import blas_threads, default_threads
from axtrain.runtime.interpreter import run_program

F32_EXACT = 1 << 24
F64_EXACT = 1 << 53
BIG_GEMM = 1 << 26  # multiply-adds from which a GEMM runs with the default BLAS threads
DEFAULT_CHUNK: int | None = None  # images per batch step; None: about 32 MiB of neuron buffer per step
CHUNK_WORDS = 1 << 23
CONSTANT_ROWS_MIN_K = 64  # shared GEMMs this deep and large look for activation rows constant over the batch
CONSTANT_ROWS_MIN_MACS = 1 << 22
WORKERS = default_threads()  # image chunks executed in parallel threads (runtime/blas.py: numpy's BLAS threads)


def _code(mode: MultiplierMode) -> int:
    return 0 if mode.is_exact else int(mode.k)  # type: ignore[arg-type]


@dataclass
class _Step:
    """One data-dependent instruction with its precomputed indices."""

    op: str
    index: int
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class Plan:
    """The data-independent analysis of a program (see the module docstring)."""

    steps: list[_Step]
    nb_words: int  # compact neuron-buffer words in use (column nb_words is the zero pad)
    codes: tuple[int, ...]  # mode codes used by MACs (after any override)
    fast: bool  # False: the program is executed by the interpreter
    reason: str = ""
    max_req_bits: int = 0
    zero_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.intp))  # words read before written


def _mac_groups(codes: np.ndarray) -> list[tuple[int, np.ndarray]]:
    return [(int(c), np.flatnonzero(codes == c)) for c in np.unique(codes)]


def build_plan(program: Sequence[Instruction], arch: Architecture, mode_override: MultiplierMode | None = None) -> Plan:
    """Trace ``program`` symbolically (no data) into the steps the fast executor runs."""
    # 1. Compact neuron-buffer addressing: only words the program touches get a column.
    used = np.zeros(arch.neuron_buffer_words, dtype=bool)
    geometry: Geometry | None = None
    for ins in program:
        o = ins.operands()
        if ins.op in ("LDN", "STN", "SYNC"):
            used[o["nb"] : o["nb"] + o["count"]] = True
        elif ins.op == "CONV":
            geometry = Geometry(**o)
        elif ins.op == "DISTN" and geometry is not None:
            used[o["nb"] : o["nb"] + geometry.c * geometry.h * geometry.w] = True
        elif ins.op == "REQ":
            for r in range(o["m"]):
                used[o["nb"] + r * o["ostride"] : o["nb"] + r * o["ostride"] + o["p"]] = True
        elif ins.op == "POOL":
            oh, ow = pool_output_size(o["h"], o["k"], o["s"]), pool_output_size(o["w"], o["k"], o["s"])
            used[o["src"] : o["src"] + o["c"] * o["h"] * o["w"]] = True
            used[o["dst"] : o["dst"] + o["c"] * oh * ow] = True
    compact = np.cumsum(used) - 1
    nb_words = int(used.sum())
    pad = nb_words

    def cidx(addresses: np.ndarray) -> np.ndarray:
        return compact[addresses].astype(np.intp)

    # 2. Symbolic machine state.
    wb_src = np.full(arch.weight_buffer_words, -1, dtype=np.int64)
    bb_src = np.full(arch.bias_buffer_words, -1, dtype=np.int64)
    mt = np.zeros(arch.bias_buffer_words, dtype=np.int64)
    distw: tuple[int, int, int, np.ndarray] | None = None  # m, p, k, source rows [m, k]
    distn: tuple[int, int, int] | None = None
    steps: list[_Step] = []
    codes_used: set[int] = set()
    max_req_bits = 0
    geometry = None
    for index, ins in enumerate(program):
        o = ins.operands()
        op = ins.op
        if op == "LDW":
            r = np.arange(o["rows"])[:, None]
            c = np.arange(o["cols"])[None, :]
            wb_src[(o["wb"] + r * o["cols"] + c).ravel()] = (o["dram"] + r * o["stride"] + c).ravel()
        elif op == "LDB":
            bb_src[o["bb"] : o["bb"] + o["count"]] = o["dram"] + np.arange(o["count"])
        elif op == "MODE":
            mt[o["mt"] : o["mt"] + o["count"]] = o["code"]
        elif op == "CONV":
            geometry = Geometry(**o)
        elif op == "DISTW":
            rows = o["wb"] + np.arange(o["m"])[:, None] * o["stride"] + np.arange(o["k"])[None, :]
            distw = (o["m"], o["p"], o["k"], wb_src[rows].copy())
        elif op == "DISTN":
            assert geometry is not None
            offsets, inside = geometry.window(o["p0"], o["p"], o["k0"], o["k"])
            address = o["nb"] + offsets
            gather = np.where(inside, cidx(address), pad)
            distn = (o["m"], o["p"], o["k"])
            steps.append(_Step("DISTN", index, {"idx": gather.ravel(), "p": o["p"], "k": o["k"]}))
        elif op == "MAC":
            m, p, k = o["m"], o["p"], o["k"]
            if distn is None or distw is None:
                return Plan([], nb_words, (), False, f"instruction {index}: MAC before DISTN/DISTW")
            if not (distn[1] == p == distw[1] and m <= distn[0] and m <= distw[0] and k <= distn[2] and k <= distw[2]):
                return Plan([], nb_words, (), False, f"instruction {index}: MAC tile {m}x{p}x{k} not filled by the latest DISTN/DISTW")
            codes = np.full(m, _code(mode_override)) if mode_override is not None else mt[o["mt"] : o["mt"] + m].copy()
            codes_used.update(int(c) for c in np.unique(codes))
            args = {
                "m": m, "p": p, "k": k,
                "w_src": distw[3][:m, :k].copy(),
                "bias_src": bb_src[o["bb"] : o["bb"] + m].copy() if o["init"] else None,
                "groups": _mac_groups(codes),
            }
            steps.append(_Step("MAC", index, args))
        elif op == "RELU":
            steps.append(_Step("RELU", index, {"count": o["m"] * o["p"]}))
        elif op == "REQ":
            e = np.arange(o["m"] * o["p"])
            address = o["nb"] + (e // o["p"]) * o["ostride"] + e % o["p"]
            fmt = FixedPointFormat(o["bits"], 0)
            max_req_bits = max(max_req_bits, o["bits"])
            steps.append(_Step("REQ", index, {"idx": cidx(address), "count": e.size, "shift": o["shift"], "qmin": fmt.qmin, "qmax": fmt.qmax}))
        elif op == "POOL":
            c, h, w, k, s = o["c"], o["h"], o["w"], o["k"], o["s"]
            oh, ow = pool_output_size(h, k, s), pool_output_size(w, k, s)
            steps.append(_Step("POOL", index, {
                "src": cidx(o["src"] + np.arange(c * h * w)), "dst": cidx(o["dst"] + np.arange(c * oh * ow)),
                "shape": (c, h, w), "out": (oh, ow), "k": k, "s": s,
            }))
        elif op == "LDN":
            steps.append(_Step("LDN", index, {"idx": cidx(o["nb"] + np.arange(o["count"])), "dram": o["dram"], "count": o["count"]}))
        elif op == "STN":
            steps.append(_Step("STN", index, {"idx": cidx(o["nb"] + np.arange(o["count"])), "dram": o["dram"], "count": o["count"]}))
        elif op == "SYNC":
            steps.append(_Step("SYNC", index, {"idx": cidx(o["nb"] + np.arange(o["count"])), "layer": o["layer"]}))
        elif op == "END":
            break
    return finish_plan(Plan(steps, nb_words, tuple(sorted(codes_used)), True, max_req_bits=max_req_bits))


def _affine(idx: np.ndarray) -> tuple[int, tuple[int, ...], tuple[int, ...]] | None:
    """``(base, shape, steps)`` when ``idx[i0, i1, ...] == base + sum(i_d * steps_d)``, else None."""
    idx = np.asarray(idx)
    if idx.size == 0:
        return None
    base = int(idx.flat[0])
    steps = []
    for axis, size in enumerate(idx.shape):
        if size == 1:
            steps.append(0)
            continue
        first = np.take(idx, [0], axis=axis)
        second = np.take(idx, [1], axis=axis)
        steps.append(int((second - first).flat[0]))
    expected = base + sum(np.arange(size).reshape([-1 if a == d else 1 for a in range(idx.ndim)]) * step for d, (size, step) in enumerate(zip(idx.shape, steps)))
    if not np.array_equal(expected, idx) or any(step < 0 for step in steps):
        return None
    return base, tuple(idx.shape), tuple(steps)


def _view(buffer: np.ndarray, pattern: tuple[int, tuple[int, ...], tuple[int, ...]]) -> np.ndarray:
    """A strided view ``[n, *shape]`` of a ``[n, words]`` buffer for an affine index pattern."""
    base, shape, steps = pattern
    item = buffer.strides[1]
    return np.lib.stride_tricks.as_strided(buffer[:, base:], (buffer.shape[0], *shape), (buffer.strides[0], *(st * item for st in steps)))


def finish_plan(plan: Plan) -> Plan:
    """Second static pass: accumulator chains, tile layouts and strided views (no data)."""
    chain = -1
    layout: tuple[int, int] | None = None
    chains: dict[int, list[int]] = {}
    for number, step in enumerate(plan.steps):
        a = step.args
        if step.op == "MAC":
            if a["bias_src"] is not None:
                chain += 1
                layout = (a["m"], a["p"])
                chains[chain] = []
            elif layout != (a["m"], a["p"]):
                plan.fast, plan.reason = False, f"instruction {step.index}: MAC accumulates onto a different tile shape"
                return plan
            a["chain"] = chain
            chains[chain].append(number)
        elif step.op in ("RELU", "REQ"):
            m_p = a["count"]
            if layout is None or layout[0] * layout[1] != m_p:
                plan.fast, plan.reason = False, f"instruction {step.index}: {step.op} on a tile no MAC chain produced"
                return plan
            a["layout"] = layout
            if step.op == "REQ":
                # The accumulators are kept as [runs, m, p, n] (row-major tile, batch innermost): the
                # target addresses are already in that order.
                a["idx_view"] = _affine(a["idx"].reshape(layout))
        if step.op == "DISTN":
            # Gathered activations are kept as [k, p, n] (batch innermost): reorder to k-major.
            km = a["idx"].reshape(a["p"], a["k"]).T.copy()
            a["idx"] = km.ravel()
            a["idx_view"] = _affine(km)
        if step.op in ("LDN", "STN", "SYNC") or (step.op == "POOL"):
            for key in ("idx", "src", "dst"):
                if key in a:
                    a[key + "_view"] = _affine(a[key])
    # Which written words does any DISTN read? Only those need DRUM-transformed copies.
    read_by_distn = np.zeros(plan.nb_words + 1, dtype=bool)
    for step in plan.steps:
        if step.op == "DISTN":
            read_by_distn[step.args["idx"]] = True
    read_by_distn[plan.nb_words] = False
    for step in plan.steps:
        if step.op in ("REQ", "POOL", "LDN"):
            target = step.args["dst"] if step.op == "POOL" else step.args["idx"]
            sel = np.flatnonzero(read_by_distn[target])
            step.args["t_sel"] = None if sel.size == target.size else sel
            step.args["t_any"] = bool(sel.size)
    _fuse_dense_chains(plan, chains)
    _mark_shared(plan)
    return plan


def _mark_shared(plan: Plan) -> None:
    """Mark which steps touch run-invariant data (the same in every Monte Carlo run).

    Words written by LDN (the inputs) are the same in every run; a MAC's results are not (each run has
    its own weights). A read whose words are all run-invariant at that point (``shared``) reads the
    shared buffer ``[words, n]`` once for all runs; the other reads use the per-run buffer
    ``[runs, words, n]``. A shared write (LDN, or POOL of shared words) also goes to the per-run buffer
    (``mirror``) only when a later per-run read sees the words it wrote.
    """
    words = plan.nb_words + 1
    varying = np.zeros(words, dtype=bool)
    last_writer = np.full(words, -1, dtype=np.int64)
    zero = np.zeros(words, dtype=bool)
    zero[plan.nb_words] = True  # the padding word

    def read(idx: np.ndarray) -> bool:
        zero[idx[last_writer[idx] < 0]] = True  # read before any write: must hold 0
        shared = not bool(varying[idx].any())
        if not shared:
            for writer in np.unique(last_writer[idx]):
                if writer >= 0 and plan.steps[writer].args["shared"]:
                    plan.steps[writer].args["mirror"] = True
        return shared

    latest = False
    for number, step in enumerate(plan.steps):
        a = step.args
        if step.op == "DISTN":
            a["shared"] = latest = read(a["idx"])
        elif step.op == "MAC" and "fused" in a:
            a["fused"]["shared"] = latest = read(np.arange(a["fused"]["start"], a["fused"]["start"] + a["fused"]["k"]))
            a["shared_input"] = latest
        elif step.op == "MAC":
            a["shared_input"] = latest
        elif step.op in ("STN", "SYNC"):
            a["shared"] = read(a["idx"])
        elif step.op == "POOL":
            a["shared"] = read(a["src"])
            a["mirror"] = False
            varying[a["dst"]] = not a["shared"]
            last_writer[a["dst"]] = number
        elif step.op == "LDN":
            a["shared"], a["mirror"] = True, False
            varying[a["idx"]] = False
            last_writer[a["idx"]] = number
        elif step.op == "REQ":
            a["shared"], a["mirror"] = False, False
            varying[a["idx"]] = True
            last_writer[a["idx"]] = number
    plan.zero_rows = np.flatnonzero(zero)


def _fuse_dense_chains(plan: Plan, chains: dict[int, list[int]]) -> None:
    """Mark chains that are one dense dot product split into local-memory chunks.

    A chain fuses when its DISTNs read consecutive, contiguous runs of one neuron-buffer row (p = 1),
    nothing but its own DISTN/MAC steps lies between its first DISTN and its last MAC (so every
    chunk sees the same neuron buffer), and all its MACs have the same rows per mode. The init MAC
    then runs the whole chain as one GEMM over ``K = sum k`` (same integers: the chain's bound is
    checked the same way), and the other MACs of the chain do nothing.
    """
    for chain, macs in chains.items():
        if len(macs) < 2:
            continue
        first_distn = macs[0] - 1
        if first_distn < 0 or plan.steps[first_distn].op != "DISTN":
            continue
        spans, ok = [], True
        for number in range(first_distn, macs[-1] + 1):
            step = plan.steps[number]
            if step.op == "MAC":
                if step.args.get("chain") != chain:
                    ok = False
            elif step.op == "DISTN":
                view = step.args.get("idx_view")
                if view is None or step.args["p"] != 1 or (step.args["k"] > 1 and view[2][0] != 1):
                    ok = False  # not one contiguous run of words
                else:
                    spans.append((view[0], step.args["k"], step.args["k"]))
            else:
                ok = False
        ks = [plan.steps[number].args["k"] for number in macs]
        if not ok or len(spans) != len(macs) or any(k_mac != k_distn for k_mac, (_, k_distn, _) in zip(ks, spans)):
            continue
        if any(spans[i][0] + spans[i][1] != spans[i + 1][0] for i in range(len(spans) - 1)):
            continue
        groups = [plan.steps[number].args["groups"] for number in macs]
        if any(len(g) != len(groups[0]) or any(c0 != c1 or not np.array_equal(r0, r1) for (c0, r0), (c1, r1) in zip(g, groups[0])) for g in groups):
            continue
        head = plan.steps[macs[0]].args
        head["fused"] = {"macs": macs, "start": spans[0][0], "k": sum(ks)}
        for number in macs[1:]:
            plan.steps[number].args["fused_into"] = macs[0]


@dataclass
class PreparedWeights:
    """The weights of ``runs`` weight images (one per Monte Carlo run), stacked per MAC and mode group.

    ``tiles[step]`` lists ``(code, rows, W [runs, rows, k], max|W|)`` (``W [k, runs*rows]`` for a MAC
    whose activations are the same in every run, see :func:`_gemm`); ``bias[step]`` is
    ``[runs, m]``; the bounds are maxima over the runs (they only choose an exact dtype).
    """

    runs: int
    tiles: dict[int, list[tuple[int, np.ndarray, np.ndarray, float]]]
    bias: dict[int, np.ndarray]  # init step -> bias [runs, m]
    chain_weight_bound: dict[int, float]  # chain -> sum over its MACs of k * max|W|
    chain_bias_bound: dict[int, float]


def prepare_weights(plan: Plan, weight_images: np.ndarray | Sequence[np.ndarray], bias_image: np.ndarray) -> PreparedWeights:
    """Gather and transform every MAC's weights from one or several (possibly faulted) weight images.

    ``weight_images`` is one image ``[words]`` or a stack ``[runs, words]``.
    """
    images = np.asarray(weight_images, dtype=np.int64)
    if images.ndim == 1:
        images = images[None]
    runs = images.shape[0]
    image = np.concatenate([images, np.zeros((runs, 1), dtype=np.int64)], axis=1)  # index -1 -> the zero word
    bias = np.append(np.asarray(bias_image, dtype=np.int64), 0)
    transformed: dict[int, np.ndarray] = {}
    for code in plan.codes:
        transformed[code] = image if code == 0 else drum_transform(image, code)
        transformed[code][:, -1] = 0
    tiles: dict[int, list[tuple[int, np.ndarray, np.ndarray, float]]] = {}
    biases: dict[int, np.ndarray] = {}
    wbound: dict[int, float] = {}
    bbound: dict[int, float] = {}
    for number, step in enumerate(plan.steps):
        if step.op != "MAC":
            continue
        a = step.args
        group = []
        for code, rows in a["groups"]:
            w = transformed[code][:, a["w_src"][rows]]  # [runs, rows, k]
            wmax = float(np.abs(w).max(initial=0))
            # Weight words are at most 32 bits: exact in float64; in float32 when below 2**24.
            group.append((code, rows, np.ascontiguousarray(w, dtype=np.float32 if wmax < F32_EXACT else np.float64), wmax))
        tiles[number] = group
        wbound[a["chain"]] = wbound.get(a["chain"], 0.0) + a["k"] * max((g[3] for g in group), default=0.0)
        if a["bias_src"] is not None:
            b = np.broadcast_to(bias[a["bias_src"]], (runs, a["m"]))
            biases[number] = b
            bbound[a["chain"]] = float(np.abs(b).max(initial=0))
    for number, step in enumerate(plan.steps):
        fused = step.args.get("fused") if step.op == "MAC" else None
        if fused:  # one weight matrix [runs, rows, K] per mode group, chunks side by side in order
            parts = [tiles[m] for m in fused["macs"]]
            stacked = []
            for g, (code, rows, _, _) in enumerate(parts[0]):
                wmax = max(part[g][3] for part in parts)
                dtype = np.float32 if wmax < F32_EXACT else np.float64
                stacked.append((code, rows, np.ascontiguousarray(np.concatenate([part[g][2].astype(dtype) for part in parts], axis=2)), wmax))
            tiles[number] = stacked
            for m in fused["macs"][1:]:
                del tiles[m]
    for number, group in tiles.items():
        if plan.steps[number].args["shared_input"]:  # one GEMM for all runs: W as [k, runs*rows]
            tiles[number] = [(code, rows, np.ascontiguousarray(w.transpose(2, 0, 1)).reshape(w.shape[2], -1), wmax) for code, rows, w, wmax in group]
    return PreparedWeights(runs, tiles, biases, wbound, bbound)


def _transform_values(values: np.ndarray, code: int, bound: float) -> np.ndarray:
    """DRUM(code) of integer-valued floats with |values| <= bound (a lookup table when small)."""
    limit = int(bound)
    if limit <= (1 << 16):
        table = drum_transform(np.arange(-limit, limit + 1, dtype=np.int64), code).astype(values.dtype)
        return table[values.astype(np.int32) + limit]
    return drum_transform(values.astype(np.int64), code).astype(values.dtype)


def _transformed_bound(amax: float, code: int) -> float:
    """An upper bound of |DRUM(code)(v)| over |v| <= amax (exact: amax itself)."""
    if code == 0 or amax == 0:
        return amax
    return float(2 ** math.frexp(amax)[1])  # DRUM keeps the bit length: |t(v)| < 2**bitlength(v)


def _rows(buffer: np.ndarray, pattern: tuple[int, tuple[int, ...], tuple[int, ...]]) -> np.ndarray:
    """A strided view ``[..., *shape, n]`` of the word axis (second to last) of ``[..., words, n]``."""
    base, shape, steps = pattern
    sub = buffer[..., base:, :]
    st = sub.strides
    return np.lib.stride_tricks.as_strided(sub, (*sub.shape[:-2], *shape, sub.shape[-1]), (*st[:-2], *(s * st[-2] for s in steps), st[-1]))


def _read(buffer: np.ndarray, idx: np.ndarray, pattern: Any) -> np.ndarray:
    """Words ``idx`` of a ``[..., words, n]`` buffer: ``[..., len(idx), n]`` (a view when affine)."""
    if pattern is not None:
        view = _rows(buffer, pattern)
        return view.reshape(*buffer.shape[:-2], -1, buffer.shape[-1])
    return np.take(buffer, idx, axis=-2)


def _gemm(w: np.ndarray, x: np.ndarray, bound: float, shared: bool, runs: int, threads: int = 1) -> np.ndarray:
    """Stacked weights times activations, exact (dtype chosen by ``bound``): ``[runs, rows, cols]``.

    Per run (``shared`` False): ``W [runs, rows, k] @ x [runs, k, cols]``. Shared activations: one
    GEMM for every run, ``W [k, runs*rows]`` transposed ``@ x [k, cols]``; rows of ``x`` that are
    constant over the batch (e.g. an image's background pixels) leave the GEMM and are added as one
    matrix-vector product (same integers: every partial sum of either part is exact).
    """
    if bound < F32_EXACT:
        dtype: Any = np.float32
    elif bound < F64_EXACT:
        dtype = np.float64
    else:
        dtype = np.int64
    w = w.astype(dtype, copy=False)
    x = x.astype(dtype, copy=False)
    k, cols = x.shape[-2:]
    macs = w.size * cols
    big = threads > 1 and dtype is np.float32 and macs >= BIG_GEMM
    # The caller runs BLAS single-threaded (thin tile GEMMs); large GEMMs may use `threads`.
    with blas_threads(threads) if big else contextlib.nullcontext():
        if shared:
            if k >= CONSTANT_ROWS_MIN_K and cols > 1 and macs >= CONSTANT_ROWS_MIN_MACS:
                low = x.min(axis=1)
                constant = low == x.max(axis=1)
                count = int(constant.sum())
                if count * 8 >= k:  # worth the copy of the other weight rows
                    varying = ~constant
                    out = w[varying].T @ x[varying]
                    out += (w[constant].T @ low[constant])[:, None]
                    return out.reshape(runs, -1, cols)
            return (w.T @ x).reshape(runs, -1, cols)
        if runs == 1:
            return (w[0] @ x[0])[None]
        # One BLAS call per run: np.matmul on a stack of strided (non-contiguous) slices does not use BLAS.
        out = np.empty((runs, w.shape[1], cols), dtype=np.result_type(w, x))
        for run in range(runs):
            np.matmul(w[run], x[run], out=out[run])
        return out


def run_plan(
    plan: Plan,
    weights: PreparedWeights,
    dram_a: np.ndarray,
    arch: Architecture,
    collect: bool = False,
    profile: dict[str, float] | None = None,
    threads: int = 1,
) -> tuple[list[tuple[int, np.ndarray]], dict[int, np.ndarray]]:
    """Execute the plan's steps over one batch for every run of ``weights``.

    ``dram_a`` is ``[n, words]`` (integer values, any numeric dtype; it is not modified). Returns the
    STN stores ``(dram address, [runs, n, count] int64)`` in program order and, if ``collect``, each
    SYNC's layer output ``[runs, n, count]`` (int64). GEMMs of ``BIG_GEMM`` multiply-adds or more use
    ``threads`` BLAS threads, the others one.

    Layout: the neuron buffer is word-major with the batch innermost, ``[runs, words, n]`` per mode
    code (plus a shared ``[words, n]`` copy for run-invariant words, see :func:`_mark_shared`), so a
    DISTN gathers whole rows of ``n`` values and a MAC is ``W [rows, k] @ G [k, p*n]``.
    """
    n = dram_a.shape[0]
    runs = weights.runs
    input_max = float(np.abs(dram_a).max(initial=0))
    wide = plan.max_req_bits > 24 or input_max >= F32_EXACT
    dtype = np.float64 if wide else np.float32
    stores: list[tuple[int, np.ndarray]] = []
    codes = (0, *(code for code in plan.codes if code != 0))
    # Every other word is written before it is read (_mark_shared): only these need zeroing.
    per_run = {code: np.empty((runs, plan.nb_words + 1, n), dtype=dtype) for code in codes}
    shared_nb = {code: np.empty((plan.nb_words + 1, n), dtype=dtype) for code in codes}
    for buffer in (*per_run.values(), *shared_nb.values()):
        buffer[..., plan.zero_rows, :] = 0
    amax = {code: 0.0 for code in codes}  # running bound of |(transformed) neuron buffer|
    acc = np.zeros((0, 0, 0, 0))
    check_overflow = False
    gathered: dict[int, np.ndarray] = {}
    gathered_shared = False
    gathered_bound: dict[int, float] = {}
    outputs: dict[int, np.ndarray] = {}
    limit = float(1 << (arch.accumulator_bits - 1))

    def put(buffers: dict[int, np.ndarray], code: int, target: np.ndarray, pattern: Any, values: np.ndarray) -> None:
        buffer = buffers[code]
        if pattern is not None:
            view = _rows(buffer, pattern)
            view[...] = values.reshape(*values.shape[:-2], *pattern[1], n)
        else:
            buffer[..., target, :] = values

    def write(step: _Step, key: str, values: np.ndarray, bound: float, pattern: Any, shared: bool) -> None:
        """Store ``values`` (``[count, n]`` when ``shared``, else ``[runs, count, n]``) at ``key``."""
        a = step.args
        target = a[key]
        places = [shared_nb, per_run] if shared and a["mirror"] else [shared_nb] if shared else [per_run]
        for buffers in places:
            put(buffers, 0, target, pattern, values)
        amax[0] = max(amax[0], bound)
        if a["t_any"]:
            sel = a["t_sel"]
            sub_target = target if sel is None else target[sel]
            sub_values = values if sel is None else values[..., sel, :]
            for code in codes[1:]:
                transformed = _transform_values(sub_values, code, bound)
                for buffers in places:
                    buffers[code][..., sub_target, :] = transformed
                amax[code] = max(amax[code], _transformed_bound(bound, code))

    def _run_step(number: int, step: _Step) -> None:
        nonlocal acc, check_overflow, gathered, gathered_bound, gathered_shared
        a = step.args
        op = step.op
        if op == "MAC":
            if "fused_into" in a:
                return  # computed with the chain's first MAC
            m, p, k = a["m"], a["p"], a["k"]
            chain = a["chain"]
            if "fused" in a:
                k = a["fused"]["k"]
                start = a["fused"]["start"]
                gathered_shared = a["fused"]["shared"]
                source = shared_nb if gathered_shared else per_run
                gathered = {code: source[code][..., start : start + k, None, :] for code in plan.codes}
            a_bound = max(gathered_bound[code] for code, _, _, _ in weights.tiles[number])
            total = a_bound * weights.chain_weight_bound[chain] + weights.chain_bias_bound.get(chain, 0.0)
            fresh = False
            if a["bias_src"] is not None:
                acc_dtype = np.float32 if total < F32_EXACT else np.float64
                fresh = True  # the first GEMM result becomes the accumulator, then the bias is added
                check_overflow = total >= limit
            elif acc.dtype == np.float32 and total >= F32_EXACT:
                acc = acc.astype(np.float64)  # exact so far; the rest of the chain needs float64
                check_overflow = total >= limit
            for code, rows, w, wmax in weights.tiles[number]:
                x = gathered[code][..., :k, :, :]
                x = x.reshape(*x.shape[:-3], k, p * n)
                part = _gemm(w, x, k * gathered_bound[code] * wmax, gathered_shared, runs, threads)
                if fresh and rows.size == m:
                    acc = part.reshape(runs, m, p, n).astype(acc_dtype, copy=False)
                elif fresh:
                    acc = np.zeros((runs, m, p, n), dtype=acc_dtype)
                    acc[:, rows] = part.reshape(runs, rows.size, p, n)
                elif rows.size == m:
                    acc += part.reshape(runs, m, p, n)
                else:
                    acc[:, rows] += part.reshape(runs, rows.size, p, n)
                fresh = False
            if a["bias_src"] is not None:
                acc += weights.bias[number].astype(acc.dtype)[:, :, None, None]  # exact: |bias| is inside the chain bound
            if check_overflow and np.abs(acc).max(initial=0) >= limit:
                raise BundleError(f"instruction {step.index} (MAC): accumulator overflows {arch.accumulator_bits} bits")
        elif op == "DISTN":
            gathered_shared = a["shared"]
            source = shared_nb if gathered_shared else per_run
            shape = (a["k"], a["p"], n)
            gathered = {}
            for code in plan.codes:
                buffer = source[code]
                if a["idx_view"] is not None:  # an affine run of words (dense layers): no copy
                    gathered[code] = _rows(buffer, a["idx_view"])
                else:
                    gathered[code] = np.take(buffer, a["idx"], axis=-2).reshape(*buffer.shape[:-2], *shape)
            gathered_bound = dict(amax)
        elif op == "RELU":
            np.maximum(acc, 0, out=acc)
        elif op == "REQ":
            np.multiply(acc, acc.dtype.type(math.ldexp(1.0, -a["shift"])), out=acc)  # exact: a power of two
            np.rint(acc, out=acc)
            np.clip(acc, a["qmin"], a["qmax"], out=acc)
            out = acc.astype(dtype, copy=False).reshape(runs, -1, n)
            write(step, "idx", out, float(max(-a["qmin"], a["qmax"])), a["idx_view"], False)
        elif op == "LDN":
            values = np.ascontiguousarray(dram_a[:, a["dram"] : a["dram"] + a["count"]].T, dtype=dtype)
            write(step, "idx", values, float(np.abs(values).max(initial=0)), a["idx_view"], True)
        elif op == "POOL":
            c, h, w = a["shape"]
            oh, ow = a["out"]
            k, s = a["k"], a["s"]
            shared = a["shared"]
            source = shared_nb[0] if shared else per_run[0]
            src = _read(source, a["src"], a["src_view"])
            src = src.reshape(*src.shape[:-2], c, h, w, n)
            result = None
            for ky in range(k):
                for kx in range(k):
                    window = src[..., ky : ky + s * (oh - 1) + 1 : s, kx : kx + s * (ow - 1) + 1 : s, :]
                    result = window.copy() if result is None else np.maximum(result, window, out=result)
            assert result is not None
            write(step, "dst", result.reshape(*result.shape[:-4], -1, n), amax[0], a["dst_view"], shared)
        elif op in ("STN", "SYNC"):
            if op == "SYNC" and not collect:
                return
            source = shared_nb[0] if a["shared"] else per_run[0]
            values = _read(source, a["idx"], a["idx_view"])
            values = np.broadcast_to(values, (runs, *values.shape[-2:])).astype(np.int64).transpose(0, 2, 1)
            if op == "STN":
                stores.append((a["dram"], values))
            else:
                outputs[a["layer"]] = values

    clock = time.perf_counter
    for number, step in enumerate(plan.steps):
        if profile is not None:  # seconds per instruction kind (benchmarks and tuning only)
            started = clock()
            _run_step(number, step)
            profile[step.op] = profile.get(step.op, 0.0) + clock() - started
        else:
            _run_step(number, step)
    return stores, outputs


class FastExecutor:
    """Executes one program over batches of images and weight images (see the module docstring)."""

    def __init__(self, program: Sequence[Instruction], arch: Architecture, mode_override: MultiplierMode | None = None) -> None:
        self.program = list(program)
        self.arch = arch
        self.mode_override = mode_override
        self.plan = build_plan(self.program, arch, mode_override)

    def prepare(self, weight_image: np.ndarray, bias_image: np.ndarray) -> Any:
        """Per weight image work (gather and transform weight tiles); pass the result to :meth:`run`.

        ``weight_image`` may also be a stack ``[runs, words]`` (one image per Monte Carlo run), for
        :meth:`run_many`."""
        images = np.asarray(weight_image, dtype=np.int64)
        if not self.plan.fast:
            return (images if images.ndim == 2 else images[None], np.asarray(bias_image, dtype=np.int64))
        return prepare_weights(self.plan, images, bias_image)

    def run(
        self, prepared: Any, dram_a: np.ndarray, collect: bool = False, chunk: int | None = DEFAULT_CHUNK, region: tuple[int, int] | None = None
    ) -> tuple[np.ndarray, dict[int, np.ndarray]]:
        """The final activation DRAM ``[n, words]`` (int64), or only its words ``[start, start+count)``
        if ``region`` is given, and, if ``collect``, every SYNC's output ``[n, count]`` (one weight image)."""
        final, layers = self.run_many(prepared, dram_a, collect, chunk, region)
        return final[0], {key: value[0] for key, value in layers.items()}

    def run_many(
        self, prepared: Any, dram_a: np.ndarray, collect: bool = False, chunk: int | None = DEFAULT_CHUNK, region: tuple[int, int] | None = None
    ) -> tuple[np.ndarray, dict[int, np.ndarray]]:
        """Like :meth:`run` for every weight image of ``prepared``: ``[runs, n, words]`` and
        ``[runs, n, count]``. The runs share the work that does not depend on the weights."""
        dram_a = np.asarray(dram_a)
        runs = prepared.runs if self.plan.fast else prepared[0].shape[0]
        if chunk is None:  # about CHUNK_WORDS words of per-run neuron buffer per step
            chunk = max(64, min(16384, CHUNK_WORDS // ((self.plan.nb_words + 1) * runs)))
        return self._run(prepared, runs, dram_a, collect, chunk, region)

    def _run(self, prepared: Any, runs: int, dram_a: np.ndarray, collect: bool, chunk: int, region: tuple[int, int] | None) -> tuple[np.ndarray, dict[int, np.ndarray]]:
        lo, hi = (0, dram_a.shape[1]) if region is None else (region[0], region[0] + region[1])
        final = np.empty((runs, dram_a.shape[0], hi - lo), dtype=np.int64)
        starts = list(range(0, dram_a.shape[0], chunk))
        workers = min(WORKERS, len(starts)) if self.plan.fast else 1

        def one(start: int) -> dict[int, np.ndarray]:
            batch = dram_a[start : start + chunk]
            rows = slice(start, start + len(batch))
            final[:, rows] = batch[None, :, lo:hi]
            if not self.plan.fast:
                images, bias = prepared
                per_run = []
                for run in range(runs):
                    result = run_program(self.program, self.arch, images[run], bias, batch, self.mode_override)
                    final[run, rows] = result.dram_a[:, lo:hi]
                    per_run.append(result.layer_outputs)
                return {key: np.stack([r[key] for r in per_run]) for key in per_run[0]}
            stores, layers = run_plan(self.plan, prepared, batch, self.arch, collect, threads=1 if workers > 1 else default_threads())
            for address, values in stores:  # apply the stores that touch the region, in order
                a0, a1 = max(address, lo), min(address + values.shape[2], hi)
                if a0 < a1:
                    final[:, rows, a0 - lo : a1 - lo] = values[:, :, a0 - address : a1 - address]
            return layers

        if workers > 1:
            # Image chunks in parallel threads (numpy and BLAS release the GIL), each BLAS call on one
            # thread: no BLAS threads spinning between thin GEMMs, and a fair share of a busy machine.
            with blas_threads(1), ThreadPoolExecutor(workers) as pool:
                collected = list(pool.map(one, starts))
        else:
            with blas_threads(1):
                collected = [one(start) for start in starts]
        layers_out = {key: np.concatenate([c[key] for c in collected], axis=1) for key in (collected[0] if collected else {})}
        return final, layers_out


def quantize_float32(x: np.ndarray, fmt: FixedPointFormat) -> np.ndarray:
    """``hwmodels.fixedpoint.quantize`` computed in float32, for formats of at most 24 bits.

    Same integers: multiplying a float32 by ``2**frac`` is exact unless the product overflows (then
    it saturates either way) or falls below the normal range (then it is below 1/2 and rounds to 0
    either way); ``rint`` and the clip to bounds below ``2**24`` are exact in float32.
    """
    if fmt.bits > 24:
        raise ValueError(f"{fmt}: wider than float32's exact integers")
    with np.errstate(over="ignore"):  # an overflow to +-inf saturates below, as it should
        values = np.asarray(x, dtype=np.float32) * np.float32(math.ldexp(1.0, fmt.frac))
    np.rint(values, out=values)
    np.clip(values, np.float32(fmt.qmin), np.float32(fmt.qmax), out=values)
    return values


def place_inputs(inputs: np.ndarray, input_format: str, input_dram: int, activation_words: int, dtype: Any = np.int64) -> np.ndarray:
    """Quantise float inputs (batch first) and place them in a zeroed activation DRAM ``[n, words]``.

    ``dtype=np.float32`` gives the same integers as float32 values (quantised in float32, ~10x
    faster) when the format and every activation word fit float32's exact integers, else int64.
    """
    x = np.asarray(inputs, dtype=np.float32)
    fmt = FixedPointFormat.parse(input_format)
    if np.dtype(dtype) == np.float32 and fmt.bits <= 24:
        q = quantize_float32(x, fmt).reshape(x.shape[0], -1)
    else:
        q = quantize(x, fmt).reshape(x.shape[0], -1)
        dtype = np.int64
    dram = np.zeros((x.shape[0], activation_words), dtype=dtype)
    dram[:, input_dram : input_dram + q.shape[1]] = q
    return dram


def output_integers(bundle: Any, dram: np.ndarray) -> np.ndarray:
    """The network's integer outputs ``[n, count]`` read from the activation DRAM."""
    count = int(np.prod(bundle.manifest.output.shape))
    start = bundle.manifest.output.dram
    return dram[:, start : start + count]


def output_floats(bundle: Any, q: np.ndarray) -> np.ndarray:
    """float32 outputs exactly as the ONNX model's final DequantizeLinear produces them."""
    return dequantize(q, FixedPointFormat.parse(bundle.manifest.output.format)).reshape(q.shape[0], *bundle.manifest.output.shape)
