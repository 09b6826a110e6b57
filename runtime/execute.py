"""Fast numeric execution of a bundle's instruction stream, batched over images with numpy.

The functional reference is :mod:`axtrain.runtime.interpreter` (every PE, one instruction at a time).
This module executes the same program and produces the same integers (tests require bit identity),
but splits the work in two:

* **Plan** (once per program, data independent, :mod:`axtrain.runtime.plan`): a symbolic trace of
  the instruction stream into typed steps (LDN, DISTN, MAC, RELU, REQ, POOL, SYNC, STN), each with
  precomputed index arrays, then named plan passes with a checker after each.
* **Run** (per weight image and image batch): each step is one numpy operation over the whole batch.
  A DISTN gathers ``[k, p, n]`` activations once (a tile's ``m`` rows share them); a MAC is one GEMM
  ``W [m, k] @ G [k, p*n]`` per multiplier mode in the tile.

Exactness: activations and weights are integers carried in float32 (or float64); a GEMM runs in
float32 only when ``k * max|a| * max|w| < 2**24`` proves every partial sum exact, else in float64
(exact below ``2**53``), else in int64. Requantisation is ``rint(acc * 2**-shift)`` (exact scaling
by a power of two, round half to even) followed by saturation, which equals
``hwmodels.fixedpoint.requantize``. DRUM is a per-operand transform, so a DRUM MAC is an exact GEMM
of transformed operands; transformed copies of the neuron buffer are kept for the addresses DISTN
reads.

A program whose tiles do not have the shape the plan assumes (a MAC whose PEs were not filled by
the latest DISTN/DISTW with the same positions per row) is executed by the reference interpreter
instead (:class:`~axtrain.runtime.interpreter.ReferenceExecutor`): slower, same result.
"""

from __future__ import annotations

import contextlib
import functools
import math
import queue
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Sequence

import numpy as np

from axtrain.errors import BundleError
from axtrain.formats.arch import Architecture
from axtrain.formats.isa import ACC_OUT_WORD_BITS, Instruction
from axtrain.hwmodels.fixedpoint import FixedPointFormat, dequantize, quantize, requantize_multiplier
from axtrain.hwmodels.multipliers import MultiplierMode, drum_transform, drum_transform_float
from axtrain.hwmodels.pooling import scaled_average, window_counts, window_sums
from axtrain.runtime import int8gemm
from axtrain.runtime.beside import FORK_AVAILABLE, beside
from axtrain.runtime.blas import blas_threads, default_threads
from axtrain.runtime.executor import DEFAULT_CHUNK, Executor, ExecutorResult, region_bounds
from axtrain.runtime.gemm import exact_matmul, plan_pieces
from axtrain.runtime.interpreter import ReferenceExecutor, requant_table
from axtrain.runtime.overrides import override_program
from axtrain.runtime.plan import (
    Add,
    AvgPool,
    Copy,
    Gather,
    Load,
    Mac,
    Pattern,
    Plan,
    Pool,
    Relu,
    Requantize,
    Step,
    Store,
    StoreAcc,
    Sync,
    Write,
    block_in_range,
    block_view,
    build_plan,
    expand,
    written,
)
from axtrain.runtime.writes import Needed, needed_copies

__all__ = [
    "DEFAULT_CHUNK", "Executor", "FastExecutor", "Plan", "PreparedWeights", "WeightTile", "Workspace", "balanced_chunk", "build_plan", "output_floats",
    "output_integers", "place_inputs", "prepare_weights", "quantize_float32", "run_plan",
]

F32_EXACT = 1 << 24
F64_EXACT = 1 << 53
BIG_GEMM = 1 << 26  # multiply-adds from which a GEMM runs with the default BLAS threads
CHUNK_WORDS = 1 << 23
CONSTANT_ROWS_MIN_K = 64  # shared GEMMs this deep and large look for activation rows constant over the batch
CONSTANT_ROWS_MIN_MACS = 1 << 22
WORKERS = default_threads()  # image chunks executed in parallel threads (runtime/blas.py: numpy's BLAS threads)
FORKS = True  # run_many may run its chunks in forked processes (FastExecutor._forks)
FORK_MIN_STEPS = 1000  # plan steps from which the chunks run in forked processes instead of threads
FORK_MAX_WORDS = 1 << 24  # result words (int64) a forked run may send back


class WeightTile(NamedTuple):
    """One mode group of a MAC's weights: mode ``code``, its tile ``rows``, ``w`` ``[runs, rows, k]``
    (``[k, runs*rows]`` for a MAC whose activations are the same in every run, see :func:`_gemm`) and
    ``wmax = max|w|`` over the runs (it only chooses an exact dtype)."""

    code: int
    rows: np.ndarray
    w: np.ndarray
    wmax: float


@dataclass
class PreparedWeights:
    """The weights of ``runs`` weight images (one per Monte Carlo run), stacked per MAC and mode group.

    ``tiles[step]`` lists the MAC's :class:`WeightTile` per mode group; ``bias[step]`` is
    ``[runs, m]``; the bounds are maxima over the runs (they only choose an exact dtype).
    """

    runs: int
    tiles: dict[int, list[WeightTile]]
    bias: dict[int, np.ndarray]  # init step -> bias [runs, m]
    chain_weight_bound: dict[int, float]  # chain -> sum over its MACs of k * max|W|
    chain_bias_bound: dict[int, float]
    requant: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)  # REQ step -> (M, n, z) [count]


def prepare_weights(
    plan: Plan, weight_images: np.ndarray | Sequence[np.ndarray], bias_image: np.ndarray, requant_image: np.ndarray | None = None
) -> PreparedWeights:
    """Gather and transform every MAC's weights from one or several (possibly faulted) weight images,
    and every table-scaled REQ's (multiplier, shift, zero point) from the requant image.

    ``weight_images`` is one image ``[words]`` or a stack ``[runs, words]``.

    Each (transformed) image is converted to its exact float dtype once, and each tile is gathered
    from it once, straight into the layout its GEMM reads: a fused chain's chunks by one gather over
    their concatenated sources, a shared-input tile (one GEMM for all runs) as ``[k, runs*rows]``.
    (Gathering int64 per chunk, then converting, concatenating and transposing cost 0.7 s of a
    784-4096-4096-10 simulation; the values and bounds are the same.)
    """
    images = np.asarray(weight_images, dtype=np.int64)
    if images.ndim == 1:
        images = images[None]
    runs = images.shape[0]
    bias = np.append(np.asarray(bias_image, dtype=np.int64), 0)
    transformed: dict[int, np.ndarray] = {}
    for code in plan.codes:
        image = images if code == 0 else drum_transform(images, code)
        # Weight words are at most 32 bits: exact in float64; in float32 when below 2**24. The
        # float32 copy decides: rounding to float32 is monotone and 2**24 is a float32, so its
        # max |word| is below 2**24 exactly when the integers' is (a pass over 80 MB of float32
        # instead of two over 160 MB of int64 for 784-4096-4096-10); else it is made again in float64.
        exact = _padded_image(image, np.float32)
        if max(float(exact.max()), -float(exact.min())) >= F32_EXACT:
            exact = _padded_image(image, np.float64)
        transformed[code] = exact
    tiles: dict[int, list[WeightTile]] = {}
    biases: dict[int, np.ndarray] = {}
    wbound: dict[int, float] = {}
    bbound: dict[int, float] = {}
    macs = {number: step for number, step in enumerate(plan.steps) if isinstance(step, Mac)}
    for number, mac in macs.items():
        if mac.bias_src is not None:
            b = np.broadcast_to(bias[mac.bias_src], (runs, mac.m))
            biases[number] = b
            bbound[mac.chain] = float(np.abs(b).max(initial=0))
        if mac.fused_into is not None:
            continue  # gathered with its chain's head
        parts = [macs[m] for m in mac.fused.macs] if mac.fused is not None else [mac]
        cuts = np.cumsum([0] + [part.k for part in parts])
        part_max = np.zeros(len(parts))  # per MAC of the chain: max |w| over its mode groups
        group = []
        for code, rows in mac.groups:
            image = transformed[code]
            every = rows.size == mac.m  # the tile's rows are all of them: index the sources as they are
            view = _image_view(image[0], parts, cuts) if runs == 1 and every else None
            if view is not None:  # the tile is a block of the image: no gather, BLAS reads it in place
                for i in range(len(parts)):
                    block = view[:, cuts[i] : cuts[i + 1]]
                    part_max[i] = max(part_max[i], max(float(block.max()), -float(block.min())) if block.size else 0.0)
                top = float(part_max.max(initial=0.0))  # the tile's max |w|: its parts' (one pass over the tile, not two)
                group.append(WeightTile(code, rows, view.T if mac.shared_input else view[None], top))
                continue
            # Each MAC's sources are gathered straight into its k-range of the tile (no concatenated
            # index array): a shared-input tile (one GEMM for all runs) as W [K, runs*rows].
            w = np.empty((int(cuts[-1]), runs * rows.size) if mac.shared_input else (runs, rows.size, int(cuts[-1])), dtype=image.dtype)
            tile_max = 0.0
            for i, part in enumerate(parts):
                sources = part.sources()
                src = sources if every else sources[rows]
                if mac.shared_input:
                    block = w[cuts[i] : cuts[i + 1]]
                    if runs == 1:
                        np.take(image[0], src.T, out=block)
                    else:  # one gather per run straight into its columns (half the time of gather then transpose)
                        columns = block.reshape(part.k, runs, rows.size)
                        for run in range(runs):
                            np.take(image[run], src.T, out=columns[:, run, :])
                else:
                    block = w[:, :, cuts[i] : cuts[i + 1]]
                    block[...] = image[:, src]
                if block.size:
                    top = max(float(block.max()), -float(block.min()))
                    part_max[i], tile_max = max(part_max[i], top), max(tile_max, top)
            group.append(WeightTile(code, rows, w, tile_max))
        tiles[number] = group
        for part, top in zip(parts, part_max, strict=True):
            wbound[mac.chain] = wbound.get(mac.chain, 0.0) + part.k * float(top)
    table = np.concatenate([requant_table(requant_image), np.zeros((1, 3), dtype=np.int64)])  # index -1 -> (0, 0, 0)
    requant: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for number, step in enumerate(plan.steps):
        if isinstance(step, Requantize) and step.rq_src is not None:
            rows = table[step.rq_src]
            requant[number] = (rows[:, 0].copy(), rows[:, 1].copy(), rows[:, 2].copy())
    return PreparedWeights(runs, tiles, biases, wbound, bbound, requant)


def _padded_image(image: np.ndarray, dtype: Any) -> np.ndarray:
    """``image [runs, words]`` in ``dtype`` with the zero word appended (index -1 reads 0)."""
    padded = np.empty((image.shape[0], image.shape[1] + 1), dtype=dtype)
    padded[:, :-1] = image
    padded[:, -1] = 0
    return padded


def _image_view(image: np.ndarray, parts: Sequence[Mac], cuts: np.ndarray) -> np.ndarray | None:
    """The tile ``[rows, K]`` of a chain's MACs (sources side by side) as a read-only view of
    ``image`` when the sources are one block of it (``base + row * stride + column``, as the compiler
    lays out a dense layer's weights), else None. Sources given as an affine pattern (the plan's
    ``w_view``, checked word for word when it was traced) are compared pattern to pattern; arrays
    word for word."""
    rows, total = parts[0].m, int(cuts[-1])
    if rows == 0 or total == 0:
        return None
    patterns = all(part.w_view is not None for part in parts)
    if patterns:
        views = [part.w_view for part in parts if part.w_view is not None]
        base = views[0][0]
        stride = views[0][2][0] if rows > 1 else total
    else:
        first = parts[0].sources()
        base = int(first[0, 0])
        stride = int(first[1, 0]) - base if rows > 1 else total
    # Rows side by side without overlap, inside the image but its last word (the zero pad).
    if stride < total or not block_in_range(image.size - 1, base, rows, stride, total):
        return None
    if patterns:
        if not all(view == (base + int(cuts[i]), (rows, part.k), (stride if rows > 1 else 0, 1 if part.k > 1 else 0))
                   for i, (view, part) in enumerate(zip(views, parts, strict=True))):
            return None
    else:
        offsets = np.arange(rows)[:, None] * stride
        for i, part in enumerate(parts):
            if not np.array_equal(part.sources(), base + int(cuts[i]) + offsets + np.arange(part.k)[None, :]):
                return None
    return block_view(image, base, rows, stride, total)


def _transform_values(values: np.ndarray, code: int, bound: float) -> np.ndarray:
    """DRUM(code) of integer-valued floats with |values| <= bound (on the float bit pattern when
    the dtype holds every integer up to ``bound``, else a lookup table when small)."""
    if (values.dtype == np.float32 and bound < F32_EXACT) or (values.dtype == np.float64 and bound < F64_EXACT):
        return drum_transform_float(values, code)
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


def _rows(buffer: np.ndarray, pattern: Pattern) -> np.ndarray:
    """A strided view ``[..., *shape, n]`` of the word axis (second to last) of ``[..., words, n]``."""
    base, shape, steps = pattern
    sub = buffer[..., base:, :]
    st = sub.strides
    return np.lib.stride_tricks.as_strided(sub, (*sub.shape[:-2], *shape, sub.shape[-1]), (*st[:-2], *(s * st[-2] for s in steps), st[-1]))


@functools.lru_cache(maxsize=4096)
def _distinct_words(pattern: Pattern) -> bool:
    """Whether an affine pattern names every word once. A malformed program may write one word
    twice in a tile; such a REQ keeps write()'s assignment instead of rounding into a view that
    overlaps itself (numpy leaves the order of such writes open)."""
    words = expand(*pattern)
    return bool(np.unique(words).size == words.size)


def _int8_gemm(cache: int8gemm.WeightCache, w: np.ndarray, x: np.ndarray, shared: bool, runs: int, wide: bool) -> np.ndarray | None:
    """:func:`_gemm` of one weight matrix (``shared``, or a single run) on onnxruntime's int8 kernels
    (runtime/int8gemm.py), ``[runs, rows, cols]``, or None where the operands do not fit them or the
    product would not gain; ``wide``: sums past float32's exact integers (a float64 result)."""
    single_run = not shared
    x2 = x[0] if single_run else x  # [k, cols]
    k, cols = x2.shape
    if not int8gemm.worth(k, w.shape[-2] if single_run else w.shape[1], cols) or not int8gemm.depth_fits(k):
        return None
    if wide and not int8gemm.wide_available():
        return None
    zero = int8gemm.zero_point(float(x2.min()), float(x2.max()))
    if zero is None:
        return None
    w8 = cache.get(w, single_run)
    if w8 is None:
        return None
    out = int8gemm.product(x2, w8, zero, wide)
    return out[None] if single_run else out.reshape(runs, -1, cols)


def _gemm(
    w: np.ndarray, x: np.ndarray, bound: float, shared: bool, runs: int, threads: int = 1, int8: int8gemm.WeightCache | None = None
) -> np.ndarray:
    """Stacked weights times activations, exact (dtype chosen by ``bound``): ``[runs, rows, cols]``.

    Per run (``shared`` False): ``W [runs, rows, k] @ x [runs, k, cols]``. Shared activations: one
    GEMM for every run, ``W [k, runs*rows]`` transposed ``@ x [k, cols]``; rows of ``x`` that are
    constant over the batch (e.g. an image's background pixels) leave the GEMM and are added as one
    matrix-vector product (same integers: every partial sum of either part is exact). ``int8`` (a
    simulation's weight cache): a GEMM of one weight matrix (shared, or a single run) whose sums
    stay below ``2**31`` runs on onnxruntime's int8 kernels where its operands fit and it gains
    (:func:`_int8_gemm`; the same integers). Its shared path takes all rows, constant ones too:
    dropping them would cost a copy of the int8 weights that the cheap product does not repay.
    """
    if int8 is not None and bound < int8gemm.INT32_EXACT and (shared or runs == 1) and w.dtype == x.dtype == np.float32:
        # Past 2**24 (784-4096-4096-10's hidden layers) the int32 sums replace the float32 pieces.
        on_int8 = _int8_gemm(int8, w, x, shared, runs, wide=bound >= F32_EXACT)
        if on_int8 is not None:
            return on_int8
    if bound >= F32_EXACT and plan_pieces(x.shape[-2], bound) is not None:
        return _gemm_pieces(w, x, bound, shared, runs, threads)
    if bound < F32_EXACT:
        dtype: Any = np.float32
    elif bound < F64_EXACT:
        dtype = np.float64
    else:
        dtype = np.int64
    if w.dtype != dtype:  # (astype(copy=False) of the right dtype still costs ~3 us a call, twice per MAC)
        w = w.astype(dtype)
    if x.dtype != dtype:
        x = x.astype(dtype)
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
                    # Only the non-zero constant rows add anything (MNIST's background is 0): gathering
                    # the weight rows of all constant rows cost about as much as the GEMM's own copy.
                    offset = np.flatnonzero(constant & (low != 0))
                    if offset.size:
                        out += (w[offset].T @ low[offset])[:, None]
                    result: np.ndarray = out.reshape(runs, -1, cols)
                    return result
            result = (w.T @ x).reshape(runs, -1, cols)
            return result
        if runs == 1:
            result = (w[0] @ x[0])[None]
            return result
        # One BLAS call per run: np.matmul on a stack of strided (non-contiguous) slices does not use BLAS.
        out = np.empty((runs, w.shape[1], cols), dtype=np.result_type(w, x))
        for run in range(runs):
            np.matmul(w[run], x[run], out=out[run])
        return out


def _gemm_pieces(w: np.ndarray, x: np.ndarray, bound: float, shared: bool, runs: int, threads: int) -> np.ndarray:
    """:func:`_gemm` for products too deep for one exact float32 GEMM but not for float32 pieces
    (runtime/gemm.py: each piece exact in float32, the pieces summed in float64): ``[runs, rows, cols]``
    float64, the same integers as one float64 GEMM at about half its cost.

    One BLAS thread (``threads`` is not used): on the shared 2-core machine, at load average 7-10,
    784-4096-4096-10 over 1,000 inputs took 1.8 s with single-threaded pieces, 7.2 s with two
    threads per piece and 2.7 s as one single-threaded float64 GEMM (docs/decisions.md 84)."""
    del threads
    cols = x.shape[-1]
    if shared:
        return exact_matmul(w.T, x, bound).reshape(runs, -1, cols)
    out = np.empty((runs, w.shape[1], cols), dtype=np.float64)
    for run in range(runs):
        out[run] = exact_matmul(w[run], x[run], bound)
    return out


def residual_sum(a: np.ndarray, b: np.ndarray, step: Add, bound: float) -> np.ndarray:
    """ADD's result (``step``'s shifts, ReLU and saturation) of integer-valued ``a`` and ``b`` with
    ``|a|, |b| <= bound``, in float64, or in float32 (a third of the passes' memory traffic, issue
    16's ResNet-8) when that is exact: non-negative shifts keep the aligned operands integers and
    ``bound * (2**sa + 2**sb) < 2**24`` keeps them and their sum exact.

    Four passes and one temporary instead of seven: each operand is scaled by ``2**(s - shift)``
    at once (a power of two: exact, far above the subnormals), and their sum is then exactly the
    aligned integer sum times ``2**-shift`` (representable, so rounding leaves it alone); an operand
    whose factor is 1 is added as it is. ``rint`` rounds half to even, and the ReLU is folded into
    the saturation as at a REQ: clip(rint(max(s, 0) * f), lo, hi) = clip(rint(s * f), max(lo, 0), hi)."""
    narrow = a.dtype == np.float32 and b.dtype == np.float32 and step.sa >= 0 and step.sb >= 0
    if narrow and bound * (math.ldexp(1.0, step.sa) + math.ldexp(1.0, step.sb)) < F32_EXACT:
        kind: Any = np.float32
    else:
        kind = np.float64  # exact: |a|, |b| < 2**16, shifts < 32
    fa, fb = math.ldexp(1.0, step.sa - step.shift), math.ldexp(1.0, step.sb - step.shift)
    if fb == 1.0:
        a, b, fa, fb = b, a, fb, fa  # the operand with factor 1 (if any) is the one added as it is
    total: np.ndarray
    if fa == fb == 1.0:
        total = np.add(a, b, dtype=kind)
    else:
        total = np.multiply(b, kind(fb), dtype=kind)
        if fa == 1.0:
            np.add(total, a, out=total)
        else:
            total += np.multiply(a, kind(fa), dtype=kind)
    np.rint(total, out=total)
    np.clip(total, max(step.qmin, 0) if step.relu else step.qmin, step.qmax, out=total)
    return total


ADD_BLOCK = 1 << 17  # values per block of a blocked ADD (512 KB of float32: its operands and temporaries stay in L2)


def add_blocks(step: Add, columns: int) -> list[tuple[int, int]] | None:
    """Word ranges ``[first, last)`` an ADD runs in (``columns`` values per word), or None for the
    whole ADD at once: when it is small, when a pattern is not one run of words, when words are
    selected for transforms, or when its result overwrites words a later block still reads (a
    result over an addend is safe only at the addend's own words)."""
    views = (step.a_view, step.b_view, step.dst_view)
    count = len(step.dst)
    if step.transform_sel is not None or count * columns < 2 * ADD_BLOCK or any(v is None or len(v[1]) != 1 or v[2] != (1,) for v in views):
        return None
    assert step.a_view is not None and step.b_view is not None and step.dst_view is not None
    dst = step.dst_view[0]
    for base in (step.a_view[0], step.b_view[0]):
        if base != dst and base < dst + count and dst < base + count:
            return None
    words = max(1, ADD_BLOCK // columns)
    return [(first, min(first + words, count)) for first in range(0, count, words)]


def _block(pattern: Pattern, first: int, last: int) -> Pattern:
    """Words ``[first, last)`` of a one-dimensional run of words ``pattern``."""
    return (pattern[0] + first, (last - first,), pattern[2])


def run_plan(
    plan: Plan,
    weights: PreparedWeights,
    dram_a: np.ndarray,
    arch: Architecture,
    collect: bool = False,
    profile: dict[str, float] | None = None,
    threads: int = 1,
    region: tuple[int, int] | None = None,
    workspace: Workspace | None = None,
    int8: int8gemm.WeightCache | None = None,
) -> tuple[list[tuple[int, np.ndarray]], dict[int, np.ndarray]]:
    """Execute the plan's steps over one batch for every run of ``weights``.

    ``dram_a`` is ``[n, words]`` (integer values, any numeric dtype; it is not modified). Returns the
    STN stores ``(dram address, [runs, n, count] int64)`` in program order and, if ``collect``, each
    SYNC's layer output ``[runs, n, count]`` (int64). GEMMs of ``BIG_GEMM`` multiply-adds or more use
    ``threads`` BLAS threads, the others one. ``region`` (``[lo, hi)`` activation words, without
    ``collect``): an STN wholly outside it is not read out (ResNet-8's five residual spills: 16,384
    words each as int64, ~6 % of its numerics, for stores nobody reads). ``workspace``: the neuron
    buffers of an earlier batch of the same shape (one thread's :class:`Workspace`). ``int8``: the
    simulation's int8 weight copies, for its large GEMMs (:func:`_gemm`); None: float GEMMs only.

    Layout: the neuron buffer is word-major with the batch innermost, ``[runs, words, n]`` per mode
    code (plus a shared ``[words, n]`` copy for run-invariant words, see :func:`~axtrain.runtime.plan.mark_shared`), so a
    DISTN gathers whole rows of ``n`` values and a MAC is ``W [rows, k] @ G [k, p*n]``.
    """
    n = dram_a.shape[0]
    runs = weights.runs
    input_max = float(np.abs(dram_a).max(initial=0))
    wide = plan.max_req_bits > 24 or input_max >= F32_EXACT
    dtype = np.float64 if wide else np.float32
    stores: list[tuple[int, np.ndarray]] = []
    codes = (0, *(code for code in plan.codes if code != 0))
    # Every other word is written before it is read (plan.mark_shared): only these need zeroing, and
    # a workspace's buffers may hold an earlier batch's words.
    space = Workspace() if workspace is None else workspace
    per_run = {code: space.buffer(("run", code), (runs, plan.nb_words + 1, n), dtype) for code in codes}
    shared_nb = {code: space.buffer(("shared", code), (plan.nb_words + 1, n), dtype) for code in codes}
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
    needed = space.needed(plan, collect)
    needed_values = {plan.steps[number] for number in needed.values}  # a plan's steps hash by identity
    needed_transforms = {plan.steps[number] for number in needed.transforms}

    view_of = space.rows

    def read(buffer: np.ndarray, idx: np.ndarray, pattern: Pattern | None) -> np.ndarray:
        """Words ``idx`` of a ``[..., words, n]`` workspace buffer: ``[..., len(idx), n]`` (a view,
        made once, when affine)."""
        if pattern is not None:
            return view_of(buffer, pattern).reshape(*buffer.shape[:-2], -1, n)
        return np.take(buffer, idx, axis=-2)

    def put(buffers: dict[int, np.ndarray], code: int, target: np.ndarray, pattern: Pattern | None, values: np.ndarray) -> None:
        buffer = buffers[code]
        if pattern is not None:
            view = view_of(buffer, pattern)
            view[...] = values.reshape(*values.shape[:-2], *pattern[1], n)
        else:
            buffer[..., target, :] = values

    def grow_bounds(bound: float, modes: Sequence[int]) -> None:
        """Words up to ``bound`` were written: the running bounds of the plain words and of their
        ``modes``' DRUM forms grow (whether or not a form is stored, so every dtype choice holds)."""
        amax[0] = max(amax[0], bound)
        for code in modes:
            amax[code] = max(amax[code], _transformed_bound(bound, code))

    def write(
        step: Write, values: np.ndarray, bound: float, pattern: Pattern | None, shared: bool, transformed: dict[int, np.ndarray] | None = None
    ) -> None:
        """Store ``values`` (``[count, n]`` when ``shared``, else ``[runs, count, n]``) at the words
        ``step`` writes, and their DRUM transforms where a DISTN reads them (``transformed``: the
        transforms of the selected words per code, already at hand)."""
        target = written(step)
        places: list[dict[int, np.ndarray]] = [shared_nb, per_run] if shared and step.mirror else [shared_nb] if shared else [per_run]
        # The transforms are taken before anything is stored: ``values`` may be a view of words the
        # stores overwrite (a COPY), and so needs no copy of its own. A form no later step reads
        # before the words are written again is not stored (runtime/writes.py); the bounds grow as
        # if it were, so every dtype choice stays the same.
        sel = step.transform_sel
        modes = tuple(transformed) if transformed is not None else codes[1:] if step.transform_any else ()
        if step not in needed_transforms:
            transformed = {}
        elif transformed is None:
            transformed = {code: _transform_values(values if sel is None else values[..., sel, :], code, bound) for code in modes}
        if step in needed_values:
            for buffers in places:
                put(buffers, 0, target, pattern, values)
        grow_bounds(bound, modes)
        for code, words in transformed.items():
            for buffers in places:
                if sel is None:  # the same words as the values: through their strided view when affine
                    put(buffers, code, target, pattern, words)
                else:
                    buffers[code][..., target[sel], :] = words

    def mac(number: int, step: Mac) -> None:
        nonlocal acc, check_overflow, gathered, gathered_shared
        if step.fused_into is not None:
            return  # computed with the chain's head
        m, p, k = step.m, step.p, step.k
        if step.fused is not None:
            k, start = step.fused.k, step.fused.start
            gathered_shared = step.shared_input
            source = shared_nb if gathered_shared else per_run
            gathered = {code: source[code][..., start : start + k, None, :] for code in plan.codes}
        a_bound = max(gathered_bound[tile.code] for tile in weights.tiles[number])
        total = a_bound * weights.chain_weight_bound[step.chain] + weights.chain_bias_bound.get(step.chain, 0.0)
        fresh = False
        if step.bias_src is not None:
            acc_dtype = np.float32 if total < F32_EXACT else np.float64
            fresh = True  # the first GEMM result becomes the accumulator, then the bias is added
            check_overflow = total >= limit
        elif acc.dtype == np.float32 and total >= F32_EXACT:
            acc = acc.astype(np.float64)  # exact so far; the rest of the chain needs float64
            check_overflow = total >= limit
        for code, rows, w, wmax in weights.tiles[number]:
            x = gathered[code][..., :k, :, :]
            x = x.reshape(*x.shape[:-3], k, p * n)
            part = _gemm(w, x, k * gathered_bound[code] * wmax, gathered_shared, runs, threads, int8)
            if fresh and rows.size == m:
                acc = part.reshape(runs, m, p, n)
                if acc.dtype != acc_dtype:  # (astype(copy=False) itself costs ~3 us a call)
                    acc = acc.astype(acc_dtype)
            elif fresh:
                acc = np.zeros((runs, m, p, n), dtype=acc_dtype)
                acc[:, rows] = part.reshape(runs, rows.size, p, n)
            elif rows.size == m:
                acc += part.reshape(runs, m, p, n)
            else:
                acc[:, rows] += part.reshape(runs, rows.size, p, n)
            fresh = False
        if step.bias_src is not None:
            acc += space.bias(weights, number, acc.dtype)  # exact: |bias| is inside the chain bound
        if check_overflow and np.abs(acc).max(initial=0) >= limit:
            raise BundleError(f"instruction {step.index} (MAC): accumulator overflows {arch.accumulator_bits} bits")

    def gather(step: Gather) -> None:
        nonlocal gathered, gathered_bound, gathered_shared
        gathered_shared = step.shared
        source = shared_nb if gathered_shared else per_run
        gathered = {}
        for code in plan.codes:
            buffer = source[code]
            if step.view is not None:  # an affine run of words (dense layers): no copy
                gathered[code] = view_of(buffer, step.view)
            else:
                gathered[code] = buffer.take(step.idx, axis=-2).reshape(*buffer.shape[:-2], step.k, step.p, n)
        gathered_bound = amax.copy()
        if step.padv:  # CONV.padv (an input zero point): the padding positions read it, transformed per mode
            for code in plan.codes:
                value = int(drum_transform(np.array([step.padv], dtype=np.int64), code)[0]) if code else step.padv
                tile = gathered[code] if step.view is None else gathered[code].copy()  # never write through a view
                tile.reshape(*tile.shape[:-3], step.k * step.p, n)[..., step.pad_at, :] = value
                gathered[code] = tile
                gathered_bound[code] = max(gathered_bound[code], float(abs(value)))

    # A RELU right before the REQ of its tile is folded into the REQ's saturation: scaling by a power
    # of two and rint keep the sign and map 0 to 0, so clip(rint(max(a, 0) * s), lo, hi) equals
    # clip(rint(a * s), max(lo, 0), hi) (same integers, one pass less over the accumulators).
    folded = {number for number, step in enumerate(plan.steps[:-1]) if isinstance(step, Relu) and isinstance(plan.steps[number + 1], Requantize)}

    def requantize(number: int, step: Requantize, after_relu: bool) -> None:
        nonlocal acc
        if step.rq_src is not None:
            # Table-scaled: the integer definition (hwmodels.fixedpoint), on the exact accumulators.
            assert step.layout is not None
            if after_relu:
                np.maximum(acc, 0, out=acc)
            m_, n_, z_ = (v.reshape(1, *step.layout, 1) for v in weights.requant[number])
            scaled = requantize_multiplier(acc.astype(np.int64), m_, n_, z_, step.qmin, step.qmax)
            write(step, scaled.astype(dtype).reshape(runs, -1, n), float(max(-step.qmin, step.qmax)), step.view, False)
            return
        np.multiply(acc, acc.dtype.type(math.ldexp(1.0, -step.shift)), out=acc)  # exact: a power of two
        low, bound = max(step.qmin, 0) if after_relu else step.qmin, float(max(-step.qmin, step.qmax))
        if (acc.dtype == dtype and step.view is not None and step in needed_values and not (step.transform_any and step in needed_transforms)
                and _distinct_words(step.view)):
            # Only the plain words are stored, at an affine run of distinct words: rounded straight
            # into the neuron buffer and saturated there (the same integers as write(); one pass
            # less over the accumulators, ~5 % of the 50-run MNIST simulation).
            target = view_of(per_run[0], step.view)
            np.rint(acc.reshape(target.shape), out=target)
            target.clip(low, step.qmax, out=target)
            grow_bounds(bound, codes[1:] if step.transform_any else ())
            return
        np.rint(acc, out=acc)
        acc.clip(low, step.qmax, out=acc)
        out = (acc if acc.dtype == dtype else acc.astype(dtype)).reshape(runs, -1, n)
        write(step, out, bound, step.view, False)

    def pool(step: Pool) -> None:
        c, h, w = step.shape
        oh, ow = step.out
        kh, kw = step.kernel
        sh, sw = step.strides
        pt, pl, pb, pr = step.pads
        source = shared_nb[0] if step.shared else per_run[0]
        src = read(source, step.src, step.src_view)
        src = src.reshape(*src.shape[:-2], c, h, w, n)
        if pt or pl or pb or pr:  # padding positions take no part: they hold -inf
            padded = np.full((*src.shape[:-3], h + pt + pb, w + pl + pr, n), -np.inf, dtype=src.dtype)
            padded[..., pt : pt + h, pl : pl + w, :] = src
            src = padded
        result = None
        for ky in range(kh):
            for kx in range(kw):
                window = src[..., ky : ky + sh * (oh - 1) + 1 : sh, kx : kx + sw * (ow - 1) + 1 : sw, :]
                result = window.copy() if result is None else np.maximum(result, window, out=result)
        assert result is not None
        write(step, result.reshape(*result.shape[:-4], -1, n), amax[0], step.dst_view, step.shared)

    def avgpool(step: AvgPool) -> None:
        c, h, w = step.shape
        source = shared_nb[0] if step.shared else per_run[0]
        src = read(source, step.src, step.src_view)
        src = np.moveaxis(src.reshape(*src.shape[:-2], c, h, w, n), -1, -4)  # [..., n, c, h, w]
        # The window sums in float32 when every one is exact there (ResNet-8's 8x8 global pool:
        # 64 x 128 < 2**24): no int64 copy of the whole map, only of the sums.
        narrow = src.dtype == np.float32 and amax[0] * step.kernel[0] * step.kernel[1] < F32_EXACT
        total = window_sums(src if narrow else src.astype(np.int64), step.kernel, step.strides, step.pads, step.out).astype(np.int64)
        count = window_counts(h, w, step.kernel, step.strides, step.pads, step.out, step.count_include_pad)
        value = scaled_average(total, count, step.shift, FixedPointFormat(16, 0))  # exact integers
        value = np.clip(value, step.qmin, step.qmax).astype(dtype)
        value = np.moveaxis(value, -4, -1)
        write(step, value.reshape(*value.shape[:-4], -1, n), float(max(-step.qmin, step.qmax)), step.dst_view, step.shared)

    def add(step: Add) -> None:
        source = shared_nb[0] if step.shared else per_run[0]
        bound, out_bound = amax[0], float(max(-step.qmin, step.qmax))
        blocks = add_blocks(step, n * (1 if step.shared else runs))
        if blocks is None:
            total = residual_sum(read(source, step.a, step.a_view), read(source, step.b, step.b_view), step, bound)
            write(step, total.astype(dtype, copy=False), out_bound, step.dst_view, step.shared)
            return
        # Block by block (decision 211): every pass of the sum, its store, its DRUM transform and
        # that store over ~1 MB that stays in L2, instead of each pass over the whole 16K-word map.
        # The input bound is the one before the ADD for every block, so each block's dtype is the
        # one the whole ADD would take.
        assert step.a_view is not None and step.b_view is not None and step.dst_view is not None
        for first, last in blocks:
            a = view_of(source, _block(step.a_view, first, last)).reshape(*source.shape[:-2], last - first, n)
            b = view_of(source, _block(step.b_view, first, last)).reshape(*source.shape[:-2], last - first, n)
            total = residual_sum(a, b, step, bound)
            write(step, total.astype(dtype, copy=False), out_bound, _block(step.dst_view, first, last), step.shared)

    def copy(step: Copy) -> None:
        sources = shared_nb if step.shared else per_run
        # A view, no copy, when the words are stored once: write() transforms them before it stores
        # anything, and numpy's assignment copes with overlapping source and target words. Stored
        # twice (shared and mirrored), the second store must not read words the first overwrote.
        twice = step.shared and step.mirror
        values = read(sources[0], step.src, step.src_view)
        transformed = None
        if step.transforms_copied:  # the source words' transforms are current (plan.transform_targets)
            sel = step.transform_sel
            src, view = (step.src, step.src_view) if sel is None else (step.src[sel], None)
            transformed = {code: read(sources[code], src, view) for code in codes[1:]}
            if twice:
                transformed = {code: np.array(words) for code, words in transformed.items()}
        write(step, np.array(values) if twice else values, amax[0], step.dst_view, step.shared, transformed)

    def read_out(step: Store | Sync) -> np.ndarray:
        source = shared_nb[0] if step.shared else per_run[0]
        values = read(source, step.idx, step.view)
        return np.broadcast_to(values, (runs, *values.shape[-2:])).astype(np.int64).transpose(0, 2, 1)

    def run_step(number: int, step: Step) -> None:
        if isinstance(step, Mac):
            mac(number, step)
        elif isinstance(step, Gather):
            gather(step)
        elif isinstance(step, Relu):
            if number not in folded:
                np.maximum(acc, 0, out=acc)
        elif isinstance(step, Requantize):
            requantize(number, step, number - 1 in folded)
        elif isinstance(step, Load):
            values = np.ascontiguousarray(dram_a[:, step.dram : step.dram + step.count].T, dtype=dtype)
            write(step, values, float(np.abs(values).max(initial=0)), step.view, True)
        elif isinstance(step, Pool):
            pool(step)
        elif isinstance(step, Copy):
            copy(step)
        elif isinstance(step, AvgPool):
            avgpool(step)
        elif isinstance(step, Add):
            add(step)
        elif isinstance(step, Store):
            if region is None or collect or (step.dram < region[1] and step.dram + step.count > region[0]):
                stores.append((step.dram, read_out(step)))
        elif isinstance(step, StoreAcc):
            limit = float(1 << (ACC_OUT_WORD_BITS - 1))
            values = np.clip(acc, -limit, limit - 1).astype(np.int64).reshape(runs, -1, n).transpose(0, 2, 1)  # [runs, n, m*p]
            for address, first, words in step.runs:
                stores.append((address, values[:, :, first : first + words]))
        elif isinstance(step, Sync) and step.acc_range is not None:
            if collect:  # the DRAM.A words STA stored, as the stores so far left them
                start, count = step.acc_range
                out = np.zeros((runs, n, count), dtype=np.int64)
                for address, values in stores:
                    a0, a1 = max(address, start), min(address + values.shape[2], start + count)
                    if a0 < a1:
                        out[:, :, a0 - start : a1 - start] = values[:, :, a0 - address : a1 - address]
                outputs[step.layer] = out
        elif isinstance(step, Sync):
            if collect:
                outputs[step.layer] = read_out(step)

    clock = time.perf_counter
    for number, step in enumerate(plan.steps):
        if profile is not None:  # seconds per step kind (benchmarks and tuning only)
            started = clock()
            run_step(number, step)
            profile[step.op] = profile.get(step.op, 0.0) + clock() - started
        else:
            run_step(number, step)
    return stores, outputs


class Workspace:
    """What one thread (or forked process) keeps between the batches it runs (:func:`run_plan`,
    decision 209): the neuron buffers and their strided views, the MAC biases in the accumulators'
    dtype, and which forms of its words each write stores (runtime/writes.py, found once per plan).

    A fresh ``[runs, words, n]`` buffer per batch is fresh memory: ResNet-8's 24.5 MB buffers cost
    ~5,600 page faults (~0.025 CPU s of system time, an eighth of the chunk's numerics) for every
    125-image chunk. Not thread safe: one per thread at a time."""

    def __init__(self) -> None:
        self._buffers: dict[tuple[Any, ...], np.ndarray] = {}
        self._needed: tuple[Plan, bool, Needed] | None = None
        self._views: dict[tuple[int, Pattern], np.ndarray] = {}
        self._bias: tuple[PreparedWeights, dict[tuple[int, np.dtype[Any]], np.ndarray]] | None = None

    def buffer(self, name: tuple[Any, ...], shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        """The uninitialised buffer ``name`` of ``shape`` and ``dtype`` (the same array as last time
        when they match; a buffer of another shape or dtype replaces it)."""
        kept = self._buffers.get(name)
        if kept is None or kept.shape != shape or kept.dtype != np.dtype(dtype):
            kept = self._buffers[name] = np.empty(shape, dtype=dtype)
            self._views.clear()  # they may name the replaced buffer
        return kept

    def rows(self, buffer: np.ndarray, pattern: Pattern) -> np.ndarray:
        """:func:`_rows` of one of this workspace's buffers, made once per buffer and pattern
        (``as_strided`` is ~5-10 us of Python; ResNet-8 asks for ~750 views per batch)."""
        key = (id(buffer), pattern)  # the workspace keeps the buffer, so its id stays its own
        view = self._views.get(key)
        if view is None:
            view = self._views[key] = _rows(buffer, pattern)
        return view

    def fill(self, value: float) -> None:
        """Overwrite every kept buffer with ``value`` (a word read before this batch wrote it shows)."""
        for kept in self._buffers.values():
            kept.fill(value)

    def bias(self, weights: PreparedWeights, number: int, dtype: Any) -> np.ndarray:
        """MAC ``number``'s bias ``[runs, m, 1, 1]`` in ``dtype``, converted once per prepared weights."""
        if self._bias is None or self._bias[0] is not weights:
            self._bias = (weights, {})
        key = (number, np.dtype(dtype))
        kept = self._bias[1].get(key)
        if kept is None:
            kept = self._bias[1][key] = weights.bias[number].astype(dtype)[:, :, None, None]
        return kept

    def needed(self, plan: Plan, collect: bool) -> Needed:
        """Which writes of ``plan`` store values and which transforms (runtime/writes.py)."""
        if self._needed is None or self._needed[0] is not plan or self._needed[1] != collect:
            self._needed = (plan, collect, needed_copies(plan, collect))
        return self._needed[2]


class FastExecutor(Executor):
    """Executes one program over batches of images and weight images (see the module docstring).

    ``mode_override`` rewrites the program's MODE codes first (runtime/overrides.py); the plan is
    traced from the rewritten program."""

    def __init__(self, program: Sequence[Instruction], arch: Architecture, mode_override: MultiplierMode | None = None) -> None:
        self.program = override_program(program, mode_override)
        self.arch = arch
        self.plan = build_plan(self.program, arch)
        self.reference = None if self.plan.fast else ReferenceExecutor(self.program, arch)

    def prepare(self, weight_image: np.ndarray, bias_image: np.ndarray, requant_image: np.ndarray | None = None) -> Any:
        """Per weight image work (gather and transform weight tiles); pass the result to :meth:`run`.

        ``weight_image`` may also be a stack ``[runs, words]`` (one image per Monte Carlo run), for
        :meth:`run_many`."""
        if self.reference is not None:
            return self.reference.prepare(weight_image, bias_image, requant_image)
        return prepare_weights(self.plan, np.asarray(weight_image, dtype=np.int64), bias_image, requant_image)

    def run_many(
        self, prepared: Any, dram_a: np.ndarray, collect: bool = False, chunk: int | None = DEFAULT_CHUNK, region: tuple[int, int] | None = None
    ) -> ExecutorResult:
        """See :meth:`Executor.run_many`. The runs share the work that does not depend on the weights;
        ``chunk=None`` takes about ``CHUNK_WORDS`` words of per-run neuron buffer per batch step."""
        if self.reference is not None:
            return self.reference.run_many(prepared, dram_a, collect, chunk, region)
        dram_a = np.asarray(dram_a)
        runs = prepared.runs
        if chunk is None:
            chunk = balanced_chunk(dram_a.shape[0], max(64, min(16384, CHUNK_WORDS // ((self.plan.nb_words + 1) * runs))), WORKERS)
        lo, hi = region_bounds(dram_a, region)
        final = np.empty((runs, dram_a.shape[0], hi - lo), dtype=np.int64)
        starts = list(range(0, dram_a.shape[0], chunk))
        workers = min(WORKERS, len(starts))
        int8 = int8gemm.WeightCache(pack=dram_a.shape[0] >= int8gemm.PACK_MIN_IMAGES) if _int8_pays(self.plan, dram_a.shape[0], runs) else None
        spaces: queue.SimpleQueue[Workspace] = queue.SimpleQueue()  # one per thread at a time, reused by its next chunk

        def one(start: int) -> dict[int, np.ndarray]:
            batch = dram_a[start : start + chunk]
            rows = slice(start, start + len(batch))
            final[:, rows] = batch[None, :, lo:hi]
            try:
                space = spaces.get_nowait()
            except queue.Empty:
                space = Workspace()
            threads = 1 if workers > 1 else default_threads()
            stores, layers = run_plan(self.plan, prepared, batch, self.arch, collect, threads=threads, region=(lo, hi), workspace=space, int8=int8)
            spaces.put(space)
            for address, values in stores:  # apply the stores that touch the region, in order
                a0, a1 = max(address, lo), min(address + values.shape[2], hi)
                if a0 < a1:
                    final[:, rows, a0 - lo : a1 - lo] = values[:, :, a0 - address : a1 - address]
            return layers

        if workers > 1 and self._forks(collect, final.size, len(starts)):
            # Groups of chunks in forked children, the last group here: no GIL shared between them
            # (decision 208). Each child sends back its rows of ``final``; the children's results are
            # taken in chunk order, so the first chunk's error is the one raised, as in sequence.
            groups = [starts[i * len(starts) // workers : (i + 1) * len(starts) // workers] for i in range(workers)]

            def rows_of(group: list[int]) -> Callable[[], np.ndarray]:
                def compute() -> np.ndarray:
                    for start in group:
                        one(start)
                    return final[:, group[0] : group[-1] + chunk]

                return compute

            with blas_threads(1), contextlib.ExitStack() as children:
                jobs = [children.enter_context(beside(rows_of(group), "the numerics of image chunks")) for group in groups[:-1]]
                for start in groups[-1]:
                    one(start)
                for group, job in zip(groups[:-1], jobs, strict=True):
                    final[:, group[0] : group[-1] + chunk] = job.result()
            collected = []
        elif workers > 1:
            # Image chunks in parallel threads (numpy and BLAS release the GIL), each BLAS call on one
            # thread: no BLAS threads spinning between thin GEMMs, and a fair share of a busy machine.
            with blas_threads(1), ThreadPoolExecutor(workers) as pool:
                collected = list(pool.map(one, starts))
        else:
            with blas_threads(1):
                collected = [one(start) for start in starts]
        layers_out = {key: np.concatenate([c[key] for c in collected], axis=1) for key in (collected[0] if collected else {})}
        return final, layers_out

    def _forks(self, collect: bool, words: int, chunks: int) -> bool:
        """Whether :meth:`run_many` runs its chunks in forked processes instead of threads: a long
        plan (its per-step Python holds the GIL for a fifth of a chunk), one chunk per worker at
        least, and a result that is cheap to send back (no layer outputs, at most ``FORK_MAX_WORDS``)."""
        return FORK_AVAILABLE and FORKS and not collect and len(self.plan.steps) >= FORK_MIN_STEPS and chunks >= WORKERS and words <= FORK_MAX_WORDS


def _int8_pays(plan: Plan, images: int, runs: int) -> bool:
    """Whether a simulation of ``images`` inputs and ``runs`` weight images has enough multiply-adds
    in GEMMs that onnxruntime's int8 kernels can take (:func:`_gemm`: one weight matrix, float32, deep
    and wide enough) to pay back their import and session (runtime/int8gemm.py). Decided from the
    plan alone, before anything is imported; a GEMM whose operands turn out not to fit int8 still
    takes the float path."""
    eligible = 0
    for step in plan.steps:
        if not isinstance(step, Mac) or step.fused_into is not None:
            continue
        k = step.fused.k if step.fused is not None else step.k
        rows = step.m * runs if step.shared_input else step.m if runs == 1 else 0
        if int8gemm.depth_fits(k) and int8gemm.worth(k, rows, step.p * images):
            eligible += step.m * k * step.p * images * (runs if step.shared_input else 1)
    return eligible >= int8gemm.MIN_TOTAL_MACS and int8gemm.enabled()


def balanced_chunk(n: int, cap: int, workers: int) -> int:
    """Images per chunk for ``n`` images: at most ``cap``, and, when they take several chunks, a
    multiple of ``workers`` chunks of nearly equal size. (ResNet-8's 1,000 images at 146 a chunk
    were 7 chunks on 2 threads: one thread idle for a seventh of the numerics; now 8 of 125.)"""
    count = -(-n // cap)
    if count <= 1 or workers <= 1:
        return cap
    count = -(-count // workers) * workers
    return -(-n // count)


def quantize_float32(x: np.ndarray, fmt: FixedPointFormat) -> np.ndarray:
    """``hwmodels.fixedpoint.quantize`` computed in float32, for formats of at most 24 bits.

    Same integers: multiplying a float32 by ``2**frac`` is exact unless the product overflows (then
    it saturates either way) or falls below the normal range (then it is below 1/2 and rounds to 0
    either way); ``rint`` and the clip to bounds below ``2**24`` are exact in float32.
    """
    if fmt.bits > 24 or not fmt.power_of_two:
        raise ValueError(f"{fmt}: wider than float32's exact integers, or not a power-of-two scale")
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
    if np.dtype(dtype) == np.float32 and fmt.bits <= 24 and fmt.power_of_two and not fmt.zero_point:
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
    return dequantize(q, bundle.manifest.output.fixed_point).reshape(q.shape[0], *bundle.manifest.output.shape)
