"""Functional reference interpreter of the AxTrain FlexFlow ISA (the living definition, docs/isa.md).

Slow and obvious on purpose: it keeps every piece of machine state (DRAM images, buffers, each PE's
local memories and accumulator) and executes one instruction at a time, looping over PEs. Only the
image axis (a batch of inputs) and the words of one PE are vectorised. It counts nothing: cycles
and events belong to the simulator, which must agree with this interpreter bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

import numpy as np

from axtrain.errors import BundleError
from axtrain.formats.arch import Architecture
from axtrain.formats.isa import ACC_OUT_WORD_BITS, Geometry, Instruction, mode_of_code, pool_output_shape
from axtrain.hwmodels.fixedpoint import FixedPointFormat, requantize, requantize_multiplier_reference, saturation_bounds
from axtrain.hwmodels.multipliers import MultiplierMode, multiply
from axtrain.hwmodels.pooling import residual_add, scaled_average
from axtrain.limits import MAX_INTERPRETER_STATE_BYTES
from axtrain.runtime.executor import DEFAULT_CHUNK, Executor, ExecutorResult, region_bounds
from axtrain.runtime.overrides import override_program

if TYPE_CHECKING:  # annotations only: the bundle reader is not needed to interpret a program
    from axtrain.formats.bundle import Bundle


@dataclass
class MachineState:
    """Everything an ISA program can read or write, for a batch of ``n`` images."""

    arch: Architecture
    dram_w: np.ndarray  # [weight words] shared
    dram_b: np.ndarray  # [bias words] shared
    dram_a: np.ndarray  # [n, activation words]
    dram_q: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), dtype=np.int64))  # [entries, (M, n, z)] shared
    wb: np.ndarray = field(init=False)
    nb: np.ndarray = field(init=False)
    bb: np.ndarray = field(init=False)
    mt: np.ndarray = field(init=False)
    rq: np.ndarray = field(init=False)  # the requant table: [bias_buffer_words, (M, n, z)]
    wlm: np.ndarray = field(init=False)
    nlm: np.ndarray = field(init=False)
    acc: np.ndarray = field(init=False)
    geometry: Geometry | None = None
    local_words: int | None = None  # PE local memory words to model (None: the architecture's)

    def __post_init__(self) -> None:
        a, n = self.arch, self.dram_a.shape[0]
        self.wb = np.zeros(a.weight_buffer_words, dtype=np.int64)
        self.nb = np.zeros((n, a.neuron_buffer_words), dtype=np.int64)
        self.bb = np.zeros(a.bias_buffer_words, dtype=np.int64)
        self.mt = np.zeros(a.bias_buffer_words, dtype=np.int64)
        self.rq = np.zeros((a.bias_buffer_words, 3), dtype=np.int64)
        self.wlm = np.zeros((a.pe_count, self.local_words or a.pe_weight_memory_words), dtype=np.int64)
        self.nlm = np.zeros((n, a.pe_count, self.local_words or a.pe_neuron_memory_words), dtype=np.int64)
        self.acc = np.zeros((n, a.pe_count), dtype=np.int64)


def local_words_used(program: Sequence[Instruction]) -> int:
    """The most PE local-memory words any instruction touches (its ``k``); words beyond it are never
    read or written, so the interpreter need not hold them."""
    return max((ins["k"] for ins in program if ins.op in ("DISTW", "DISTN", "MAC")), default=1)


def batch_size(arch: Architecture, local_words: int, activation_words: int, image_words: int) -> int:
    """Images per batch that keep the machine state within :data:`MAX_INTERPRETER_STATE_BYTES`
    (int64 words); a BundleError if even one image does not fit (a hostile architecture)."""
    shared = arch.weight_buffer_words + 2 * arch.bias_buffer_words + arch.pe_count * local_words + image_words
    per_image = arch.neuron_buffer_words + arch.pe_count * (local_words + 1) + activation_words
    room = MAX_INTERPRETER_STATE_BYTES // 8 - shared
    if room < per_image:
        raise BundleError(
            f"the reference interpreter would need {(shared + per_image) * 8 >> 20} MiB of machine state for one image on this "
            f"architecture, more than its limit of {MAX_INTERPRETER_STATE_BYTES >> 20} MiB"
        )
    return room // per_image


def requant_table(image: np.ndarray | None) -> np.ndarray:
    """DRAM.Q as ``[entries, 3]`` int64 (multiplier, shift, zero point); None is the empty image.
    A flat image of 3 words per entry (what ``requant.bin`` holds) is reshaped."""
    if image is None:
        return np.zeros((0, 3), dtype=np.int64)
    table = np.asarray(image, dtype=np.int64)
    if table.ndim == 1:
        if table.size % 3:
            raise BundleError(f"the requant image holds {table.size} words, not 3 per entry")
        table = table.reshape(-1, 3)
    if table.ndim != 2 or table.shape[1] != 3:
        raise BundleError(f"the requant image has shape {list(table.shape)}, expected [entries, 3]")
    return table


@dataclass
class InterpreterResult:
    """What a run produced: each SYNC's layer output ``[n, count]`` and the final DRAM activations."""

    layer_outputs: dict[int, np.ndarray]
    dram_a: np.ndarray


def _gather_input(state: MachineState, nb: int, q: int, k0: int, k: int) -> np.ndarray:
    """``X(q, k0 .. k0+k)`` of DISTN for every image: ``[n, k]``, ``padv`` outside the map."""
    g = state.geometry
    assert g is not None
    oy, ox = divmod(q, g.ow)
    j = np.arange(k0, k0 + k)
    ci, rem = np.divmod(j, g.kh * g.kw)
    ky, kx = np.divmod(rem, g.kw)
    iy = oy * g.sh - g.pt + ky
    ix = ox * g.sw - g.pl + kx
    inside = (iy >= 0) & (iy < g.h) & (ix >= 0) & (ix < g.w)
    address = nb + ci * g.h * g.w + np.clip(iy, 0, g.h - 1) * g.w + np.clip(ix, 0, g.w - 1)
    return np.where(inside[None, :], state.nb[:, address], g.padv)


def step(state: MachineState, ins: Instruction, index: int, outputs: dict[int, np.ndarray]) -> bool:
    """Execute one instruction; returns False at END."""
    o = ins.operands()
    op = ins.op
    if op == "LDW":
        for r in range(o["rows"]):
            src = o["dram"] + r * o["stride"]
            state.wb[o["wb"] + r * o["cols"] : o["wb"] + (r + 1) * o["cols"]] = state.dram_w[src : src + o["cols"]]
    elif op == "LDB":
        state.bb[o["bb"] : o["bb"] + o["count"]] = state.dram_b[o["dram"] : o["dram"] + o["count"]]
    elif op == "LDQ":
        state.rq[o["qa"] : o["qa"] + o["count"]] = state.dram_q[o["dram"] : o["dram"] + o["count"]]
    elif op == "LDN":
        state.nb[:, o["nb"] : o["nb"] + o["count"]] = state.dram_a[:, o["dram"] : o["dram"] + o["count"]]
    elif op == "STN":
        state.dram_a[:, o["dram"] : o["dram"] + o["count"]] = state.nb[:, o["nb"] : o["nb"] + o["count"]]
    elif op == "MODE":
        state.mt[o["mt"] : o["mt"] + o["count"]] = o["code"]
    elif op == "CONV":
        state.geometry = Geometry(**o)
    elif op == "DISTW":
        for e in range(o["m"] * o["p"]):
            start = o["wb"] + (e // o["p"]) * o["stride"]
            state.wlm[e, : o["k"]] = state.wb[start : start + o["k"]]
    elif op == "DISTN":
        for e in range(o["m"] * o["p"]):
            state.nlm[:, e, : o["k"]] = _gather_input(state, o["nb"], o["p0"] + e % o["p"], o["k0"], o["k"])
    elif op == "MAC":
        limit = 1 << (state.arch.accumulator_bits - 1)
        for e in range(o["m"] * o["p"]):
            r = e // o["p"]
            mode = mode_of_code(int(state.mt[o["mt"] + r]))
            products = multiply(state.nlm[:, e, : o["k"]], state.wlm[e, : o["k"]][None, :], mode)
            base = state.bb[o["bb"] + r] if o["init"] else state.acc[:, e]
            state.acc[:, e] = base + products.sum(axis=1)
            if np.any(np.abs(state.acc[:, e]) >= limit):
                raise BundleError(f"instruction {index} (MAC): accumulator of PE {e} overflows {state.arch.accumulator_bits} bits")
    elif op == "RELU":
        count = o["m"] * o["p"]
        state.acc[:, :count] = np.maximum(state.acc[:, :count], 0)
    elif op == "REQ":
        fmt = FixedPointFormat(o["bits"], 0, signed=not o["uns"])
        for e in range(o["m"] * o["p"]):
            address = o["nb"] + (e // o["p"]) * o["ostride"] + e % o["p"]
            if o["rq"]:
                # The definition in Python integers, image by image (the fast path is numpy's).
                m, n, z = (int(v) for v in state.rq[o["qa"] + e // o["p"]])
                qmin, qmax = saturation_bounds(o["bits"], not o["uns"])
                state.nb[:, address] = [requantize_multiplier_reference(int(a), m, n, z, qmin, qmax) for a in state.acc[:, e]]
            else:
                # requantize(acc, acc_frac=shift, <bits>.0) is the rounding shift by `shift`, saturated.
                state.nb[:, address] = requantize(state.acc[:, e], o["shift"], fmt)
    elif op == "POOL":
        c, h, w = o["c"], o["h"], o["w"]
        oh, ow = pool_output_shape(o)
        source = state.nb[:, o["src"] : o["src"] + c * h * w].reshape(-1, c, h, w)
        result = np.empty((source.shape[0], c, oh, ow), dtype=np.int64)
        for oy in range(oh):  # each window clipped to the map: padding positions take no part
            y0, y1 = max(oy * o["sh"] - o["pt"], 0), min(oy * o["sh"] - o["pt"] + o["kh"], h)
            for ox in range(ow):
                x0, x1 = max(ox * o["sw"] - o["pl"], 0), min(ox * o["sw"] - o["pl"] + o["kw"], w)
                result[:, :, oy, ox] = source[:, :, y0:y1, x0:x1].max(axis=(2, 3))
        state.nb[:, o["dst"] : o["dst"] + c * oh * ow] = result.reshape(result.shape[0], -1)
    elif op == "STA":
        limit = 1 << (ACC_OUT_WORD_BITS - 1)
        for e in range(o["m"] * o["p"]):
            address = o["dram"] + (e // o["p"]) * o["ostride"] + e % o["p"]
            state.dram_a[:, address] = np.clip(state.acc[:, e], -limit, limit - 1)  # saturated to 32 bits
    elif op == "AVGPOOL":
        c, h, w = o["c"], o["h"], o["w"]
        oh, ow = pool_output_shape(o)
        source = state.nb[:, o["src"] : o["src"] + c * h * w].reshape(-1, c, h, w)
        result = np.empty((source.shape[0], c, oh, ow), dtype=np.int64)
        fmt = FixedPointFormat(o["bits"], 0)
        for oy in range(oh):  # each window clipped to the map: padding positions add nothing
            y0, y1 = max(oy * o["sh"] - o["pt"], 0), min(oy * o["sh"] - o["pt"] + o["kh"], h)
            for ox in range(ow):
                x0, x1 = max(ox * o["sw"] - o["pl"], 0), min(ox * o["sw"] - o["pl"] + o["kw"], w)
                total = source[:, :, y0:y1, x0:x1].sum(axis=(2, 3))
                count = o["kh"] * o["kw"] if o["cip"] else (y1 - y0) * (x1 - x0)  # cip: the padding is counted
                result[:, :, oy, ox] = scaled_average(total, np.full(total.shape, count), o["shift"], fmt)
        state.nb[:, o["dst"] : o["dst"] + c * oh * ow] = result.reshape(result.shape[0], -1)
    elif op == "ADD":
        count = o["count"]
        a = state.nb[:, o["a"] : o["a"] + count]
        b = state.nb[:, o["b"] : o["b"] + count]
        state.nb[:, o["dst"] : o["dst"] + count] = residual_add(a, b, o["sa"], o["sb"], o["shift"], FixedPointFormat(o["bits"], 0), bool(o["relu"]))
    elif op == "SYNC":
        space = state.dram_a if o["space"] else state.nb
        outputs[o["layer"]] = space[:, o["nb"] : o["nb"] + o["count"]].copy()
    elif op == "END":
        return False
    else:  # pragma: no cover - every opcode of the ISA is handled above
        raise BundleError(f"instruction {index}: the interpreter does not know {op}")
    return True


def run_program(
    program: Sequence[Instruction],
    arch: Architecture,
    weight_image: np.ndarray,
    bias_image: np.ndarray,
    dram_activations: np.ndarray,
    mode_override: MultiplierMode | None = None,
    requant_image: np.ndarray | None = None,
) -> InterpreterResult:
    """Execute ``program`` for a batch: ``dram_activations`` is ``[n, words]`` with the quantised
    inputs already placed at their DRAM address. ``mode_override`` rewrites every MODE instruction's
    code first (runtime/overrides.py); the machine itself only reads its mode table.

    Images are independent, so a large batch runs in slices that keep the machine state within
    :data:`~axtrain.limits.MAX_INTERPRETER_STATE_BYTES`; the results are the same. ``requant_image``
    is DRAM.Q, ``[entries, 3]`` (multiplier, shift, zero point), for programs that LDQ."""
    program = override_program(program, mode_override)
    weights = np.asarray(weight_image, dtype=np.int64)
    bias = np.asarray(bias_image, dtype=np.int64)
    requant = requant_table(requant_image)
    dram_all = np.array(dram_activations, dtype=np.int64, copy=True)
    local = local_words_used(program)
    step_images = batch_size(arch, local, dram_all.shape[1] if dram_all.ndim == 2 else 0, weights.size + bias.size)
    slices: list[InterpreterResult] = []
    for start in range(0, max(dram_all.shape[0], 1), step_images):
        state = MachineState(arch, weights, bias, dram_all[start : start + step_images], requant, local_words=local)
        outputs: dict[int, np.ndarray] = {}
        for index, ins in enumerate(program):
            if not step(state, ins, index, outputs):
                break
        else:
            raise BundleError("program ran off its end without END")
        slices.append(InterpreterResult(outputs, state.dram_a))
    if len(slices) == 1:
        return slices[0]
    layers = {key: np.concatenate([part.layer_outputs[key] for part in slices]) for key in slices[0].layer_outputs}
    return InterpreterResult(layers, np.concatenate([part.dram_a for part in slices]))


class ReferenceExecutor(Executor):
    """The interpreter behind the :class:`~axtrain.runtime.executor.Executor` interface (the
    definition the fast executor is checked against, and its fallback)."""

    def __init__(self, program: Sequence[Instruction], arch: Architecture, mode_override: MultiplierMode | None = None) -> None:
        self.program = override_program(program, mode_override)
        self.arch = arch

    def prepare(self, weight_image: np.ndarray, bias_image: np.ndarray, requant_image: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The weight images as ``[runs, words]``, the bias image and the requant table, as int64."""
        images = np.asarray(weight_image, dtype=np.int64)
        return (images if images.ndim == 2 else images[None], np.asarray(bias_image, dtype=np.int64), requant_table(requant_image))

    def run_many(
        self, prepared: tuple[np.ndarray, np.ndarray, np.ndarray], dram_a: np.ndarray, collect: bool = False, chunk: int | None = DEFAULT_CHUNK, region: tuple[int, int] | None = None
    ) -> ExecutorResult:
        """One :func:`run_program` per weight image (``chunk`` is ignored: the interpreter slices the
        batch by its own state limit)."""
        images, bias, requant = prepared
        dram_a = np.asarray(dram_a)
        lo, hi = region_bounds(dram_a, region)
        final = np.empty((images.shape[0], dram_a.shape[0], hi - lo), dtype=np.int64)
        per_run = []
        for run in range(images.shape[0]):
            result = run_program(self.program, self.arch, images[run], bias, dram_a, requant_image=requant)
            final[run] = result.dram_a[:, lo:hi]
            per_run.append(result.layer_outputs)
        layers = {key: np.stack([outputs[key] for outputs in per_run]) for key in per_run[0]} if collect and per_run else {}
        return final, layers


def run_bundle(bundle: Bundle, inputs: np.ndarray, mode_override: MultiplierMode | None = None) -> list[np.ndarray]:
    """Quantise float ``inputs`` (shaped like the model input, batch first), run the bundle's program,
    and return every layer's integer output shaped ``[n, *layer output shape]``."""
    from axtrain.hwmodels.fixedpoint import quantize

    manifest = bundle.manifest
    raw = np.asarray(inputs)
    if raw.dtype.kind not in "biuf" or raw.ndim < 1:
        raise BundleError(f"inputs must be a batch of real numbers, got a {raw.dtype} array of shape {list(raw.shape)}")
    x = raw.astype(np.float32)
    expected = tuple(manifest.input.shape)
    if x.shape[1:] != expected:
        raise BundleError(f"inputs have shape {x.shape[1:]} per sample, the bundle expects {expected}")
    if not np.all(np.isfinite(x)):
        raise BundleError("inputs hold NaN or infinite values")
    if manifest.input.dram < 0 or manifest.input.dram + math.prod(expected) > manifest.activation_words:
        raise BundleError(f"manifest input placement [{manifest.input.dram}, {manifest.input.dram + math.prod(expected)}) lies outside the {manifest.activation_words} activation words")
    q = quantize(x, manifest.input.fixed_point).reshape(x.shape[0], -1)
    program = override_program(bundle.program, mode_override)  # once, not once per slice
    # The activation DRAM of every image is allocated up front: run in slices of images so that it
    # stays within the interpreter's state limit whatever the batch.
    per_slice = max(1, MAX_INTERPRETER_STATE_BYTES // 8 // max(manifest.activation_words, 1))
    parts: list[InterpreterResult] = []
    for start in range(0, max(x.shape[0], 1), per_slice):
        chunk = q[start : start + per_slice]
        dram = np.zeros((chunk.shape[0], manifest.activation_words), dtype=np.int64)
        dram[:, manifest.input.dram : manifest.input.dram + q.shape[1]] = chunk
        parts.append(run_program(program, bundle.arch, bundle.weights, bundle.bias, dram, requant_image=bundle.requant))
    result = parts[0] if len(parts) == 1 else InterpreterResult(
        {key: np.concatenate([p.layer_outputs[key] for p in parts]) for key in parts[0].layer_outputs},
        np.concatenate([p.dram_a for p in parts]),
    )
    layers = []
    for index, layer in enumerate(bundle.layers):
        if index not in result.layer_outputs:
            raise BundleError(f"layer {index} ({layer.name}): the program never SYNCs its output")
        produced = result.layer_outputs[index].shape[1]
        if produced != math.prod(layer.output_shape) or min(layer.output_shape, default=1) < 0:
            raise BundleError(f"layer {index} ({layer.name}): the program SYNCs {produced} values, layers.json says output shape {layer.output_shape}")
        layers.append(result.layer_outputs[index].reshape((x.shape[0], *layer.output_shape)))
    return layers
