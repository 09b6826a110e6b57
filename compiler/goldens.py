"""Golden inputs chosen for coverage, and the coverage they achieve (docs/bundle.md, docs/bringup.md).

A golden vector only checks a weight word if it exercises it: the word must meet a nonzero neuron
operand at an output the layer does not clamp (a ReLU output of 0 hides any change of its
accumulator). Eight uniform draws left words unexercised (issue 17: a weight edit passed ``verify``
because its input was always 0 where its neuron fired), so the compiler now draws a pool of
candidates (uniform, one-sided, saturating sign corners, and for the first compute layer inputs
aimed at each output neuron), measures per candidate which weight words it exercises with the
integer reference model (``hwmodels.layers.forward``, never the ISA interpreter), and picks the
goldens greedily for the most new words. The first golden stays the input of exact rounding ties.

Everything is seeded (:data:`GOLDEN_SEED`): the same model gets the same goldens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from axtrain.formats.isa import Instruction
from axtrain.hwmodels.fixedpoint import FixedPointFormat, quantize
from axtrain.hwmodels.layers import QuantizedLayer, accumulate, forward, im2col

GOLDEN_SEED = 20170204  # fixed: the same model always gets the same golden inputs
LEGACY_COUNT = 8  # the golden count (and draws) of bundle format 1: reported for comparison
MAX_POOL = 512  # candidates at most
POOL_WEIGHT_BYTES = 1 << 26  # per-candidate coverage bits held at once (bool bytes)
CHUNK = 32  # candidates run through the reference model at once
POOL_MACS = 1 << 31  # multiply-accumulates of the reference model over the whole pool at most (a
# ResNet-8 has 12.5 M per input: 171 candidates instead of 512, compile 3x faster; LeNet-5 is unchanged)

CRITERION = (
    "weight word: multiplied by a nonzero neuron operand at an output its layer does not clamp "
    "(ReLU layers: output > 0); instruction: moves or computes at least one nonzero value "
    "(MODE, CONV and END carry no data and are not counted)"
)


def legacy_inputs(shape: Sequence[int], fmt: FixedPointFormat, count: int = LEGACY_COUNT) -> tuple[np.ndarray, np.random.Generator]:
    """The draws of format 1 (uniform over the format's range and 10 % beyond, the first one made of
    exact rounding ties), and the generator to continue from."""
    rng = np.random.default_rng(GOLDEN_SEED)
    low, high = fmt.qmin * fmt.scale * 1.1, fmt.qmax * fmt.scale * 1.1
    x = rng.uniform(low, high, size=(count, *shape))
    ties = (rng.integers(fmt.qmin, fmt.qmax, size=tuple(shape)) + 0.5) * fmt.scale
    x[0] = ties
    return x.astype(np.float32), rng


def _aimed(layer: QuantizedLayer, shape: Sequence[int], fmt: FixedPointFormat) -> list[np.ndarray]:
    """For the first compute layer: per output neuron, the saturating input that drives it hardest
    (the sign of its weights at every input; a conv kernel's signs tiled over the map)."""
    assert layer.weight is not None
    top, bottom = fmt.qmax * fmt.scale * 1.1, fmt.qmin * fmt.scale * 1.1
    out = []
    for row in layer.weight[:MAX_POOL // 4]:
        if layer.op == "dense":
            sign = np.sign(row).reshape(shape)
        else:
            c, h, w = shape
            kh, kw = row.shape[1:]
            reps = (layer.groups, -(-h // kh), -(-w // kw))  # a grouped conv: the kernel's signs on every group
            sign = np.tile(np.sign(row), reps)[:, :h, :w]
        out.append(np.where(sign > 0, top, np.where(sign < 0, bottom, 0.0)))
    return out


def candidate_pool(layers: Sequence[QuantizedLayer], shape: Sequence[int], fmt: FixedPointFormat, size: int) -> np.ndarray:
    """``size`` float32 candidates; the first :data:`LEGACY_COUNT` are format 1's goldens."""
    legacy, rng = legacy_inputs(shape, fmt)
    low, high = fmt.qmin * fmt.scale * 1.1, fmt.qmax * fmt.scale * 1.1
    aimed = next((_aimed(layer, shape, fmt) for layer in layers if layer.has_weights), [])
    rest = max(0, size - LEGACY_COUNT - len(aimed))
    quarter = -(-rest // 4)
    extra = [
        rng.uniform(low, high, size=(quarter, *shape)),
        rng.uniform(0.0, high, size=(quarter, *shape)),
        rng.uniform(low, 0.0, size=(quarter, *shape)),
        np.where(rng.random((quarter, *shape)) < 0.5, low, high),
    ]
    pool = np.concatenate([legacy, np.array(aimed).reshape(-1, *shape), *extra])[:size]
    return pool.astype(np.float32)


def exercised(layers: Sequence[QuantizedLayer], q_input: np.ndarray) -> np.ndarray:
    """Per input image, which words of the weight image it exercises: bool ``[n, weight words]``
    (compute layers' ``[out, fan_in]`` matrices back to back, as the weight image)."""
    outputs = forward(layers, q_input)
    inputs = layer_inputs(layers, q_input, outputs)
    parts = []
    for layer, a, out in zip(layers, inputs, outputs, strict=True):
        if not layer.has_weights:
            continue
        assert layer.weight is not None
        n = a.shape[0]
        live = out > 0 if layer.relu else np.ones(out.shape, dtype=bool)
        if layer.op == "dense":
            nz = (a != 0).astype(np.float32)  # [n, k]
            cov = np.einsum("nj,nk->njk", live.astype(np.float32), nz) > 0
        else:
            _, _, kh, kw = layer.weight.shape
            g, cg, mg = layer.groups, a.shape[1] // layer.groups, out.shape[1] // layer.groups
            covs = []
            for group in range(g):  # a grouped conv: each group's rows see its own channels
                nz = (im2col(a[:, group * cg : (group + 1) * cg], kh, kw, layer.stride_hw, layer.pads_tlbr, layer.pad_value) != 0).astype(np.float32)  # [n, Q, k]
                rows = live[:, group * mg : (group + 1) * mg].reshape(n, mg, -1).astype(np.float32)
                covs.append(np.einsum("njq,nqk->njk", rows, nz) > 0)
            cov = np.concatenate(covs, axis=1)
        parts.append(cov.reshape(n, -1))
    return np.concatenate(parts, axis=1) if parts else np.zeros((q_input.shape[0], 0), dtype=bool)


def reference_macs(layers: Sequence[QuantizedLayer], shape: Sequence[int]) -> int:
    """Multiply-accumulates of one input through the integer reference model."""
    q = np.zeros((1, *shape), dtype=np.int64)
    outputs = forward(layers, q)
    total = 0
    for layer, out in zip(layers, outputs, strict=True):
        if layer.weight is not None:
            total += int(layer.weight[0].size) * int(out[0].size)
    return total


def layer_inputs(layers: Sequence[QuantizedLayer], q_input: np.ndarray, outputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Each layer's (first) input map, from its source (the network input or an earlier layer)."""
    net = np.asarray(q_input, dtype=np.int64)
    return [net if layer.source_layers(i)[0] < 0 else outputs[layer.source_layers(i)[0]] for i, layer in enumerate(layers)]


@dataclass(frozen=True)
class Selection:
    """The chosen goldens and what they exercise."""

    inputs: np.ndarray  # float32 [count, *shape]
    covered: np.ndarray  # bool [weight words]: exercised by some golden
    legacy_covered: int  # words format 1's eight draws exercise
    pool: int  # candidates considered


def select_goldens(layers: Sequence[QuantizedLayer], shape: Sequence[int], fmt: FixedPointFormat, count: int) -> Selection:
    """Pick ``count`` goldens from the candidate pool, greedily for the most newly exercised weight
    words (ties: the earlier candidate); once nothing new is exercised, the rest are the next
    candidates in pool order (format 1's draws first). Candidate 0 (rounding ties) is always first."""
    words = sum(int(layer.weight.size) for layer in layers if layer.weight is not None)
    macs = reference_macs(layers, shape)
    floor = max(count, LEGACY_COUNT)
    size = int(min(MAX_POOL, max(floor, POOL_WEIGHT_BYTES // max(words, 1)), max(floor, POOL_MACS // max(macs, 1))))
    pool = candidate_pool(layers, shape, fmt, size)
    q = quantize(pool, fmt)
    cover = np.concatenate([exercised(layers, q[i : i + CHUNK]) for i in range(0, len(q), CHUNK)])
    legacy = int(cover[:LEGACY_COUNT].any(axis=0).sum())
    chosen = [0]
    covered = cover[0].copy()
    while len(chosen) < min(count, len(pool)):
        gain = (cover & ~covered).sum(axis=1)
        gain[chosen] = -1
        best = int(np.argmax(gain))
        if gain[best] <= 0:
            break
        chosen.append(best)
        covered |= cover[best]
    for index in range(len(pool)):
        if len(chosen) >= count:
            break
        if index not in chosen:
            chosen.append(index)
    inputs = pool[chosen]
    if len(chosen) < count:  # more goldens asked for than candidates: fresh uniform draws
        rng = np.random.default_rng([GOLDEN_SEED, count])
        low, high = fmt.qmin * fmt.scale * 1.1, fmt.qmax * fmt.scale * 1.1
        inputs = np.concatenate([inputs, rng.uniform(low, high, size=(count - len(chosen), *shape)).astype(np.float32)])
    return Selection(inputs.astype(np.float32), covered, legacy, len(pool))


def layer_coverage(layers: Sequence[QuantizedLayer], covered: np.ndarray) -> list[dict[str, Any]]:
    """Per compute layer: its weight words and how many the goldens exercise, and the first word
    left unexercised (``[row, col]`` of its ``[out, fan_in]`` matrix) if any."""
    rows, start = [], 0
    for index, layer in enumerate(layers):
        if layer.weight is None:
            continue
        m = layer.weight.shape[0]
        k = layer.weight.size // m
        part = covered[start : start + m * k]
        missing = np.flatnonzero(~part)
        rows.append({
            "layer": index,
            "name": layer.name,
            "weight_words": int(m * k),
            "exercised": int(part.sum()),
            "first_unexercised": None if missing.size == 0 else [int(missing[0] // k), int(missing[0] % k)],
        })
        start += m * k
    return rows


def instruction_coverage(layers: Sequence[QuantizedLayer], records: Sequence[Any], program: Sequence[Instruction], weights: np.ndarray, bias: np.ndarray, q_input: np.ndarray) -> tuple[int, int, list[int]]:
    """How many data-carrying instructions move or compute a nonzero value on some golden.

    Computed from the compiler's side, on the integer reference model (the ISA interpreter is the
    runtime's; tests/compiler/test_goldens.py checks this against it instruction by instruction):
    each instruction is mapped to what it touches through its operands and the layer table (a
    tile's rows from its LDB and MAC, its positions and inputs from its DISTN). ``records`` are the
    ``layers.json`` rows, ``q_input`` the quantised goldens ``[n, *input shape]``. Returns
    (exercised, counted, first unexercised indices, at most 16)."""
    n = q_input.shape[0]
    outputs = forward(layers, q_input)
    inputs = layer_inputs(layers, q_input, outputs)
    owner = {}
    for record in records:
        for index in range(*record["program"]):
            owner[index] = record["index"]
    patches: dict[tuple[int, int], np.ndarray] = {}
    accs: dict[int, np.ndarray] = {}

    def layer_data(i: int, row: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Layer ``i``'s input patches ``[n, positions, fan_in]`` (of the channel group of output
        neuron ``row``) and pre-ReLU accumulators ``[n, out, positions]``."""
        layer, a = layers[i], inputs[i]
        assert layer.weight is not None
        group = row // (layer.weight.shape[0] // layer.groups)
        if (i, group) not in patches:
            if layer.op == "dense":
                patches[i, group] = a.reshape(n, 1, -1)
            else:
                kh, kw = layer.weight.shape[2:]
                cg = a.shape[1] // layer.groups
                patches[i, group] = im2col(a[:, group * cg : (group + 1) * cg], kh, kw, layer.stride_hw, layer.pads_tlbr, layer.pad_value)
        if i not in accs:
            accs[i] = accumulate(layer, a).reshape(n, layer.weight.shape[0], -1)
        return patches[i, group], accs[i]

    def nonzero(values: np.ndarray) -> bool:
        return bool(np.any(values != 0))

    counted = hit = 0
    missed: list[int] = []
    block_row = 0  # first output neuron of the current bias block (from LDB)
    group_row = 0
    tile: dict[str, int] = {}
    for index, ins in enumerate(program):
        o = ins.operands()
        op = ins.op
        value: bool | None = None  # None: carries no data (MODE, CONV, END)
        li = owner.get(index)
        record = records[li] if li is not None else None
        if op == "LDW":
            block = np.arange(o["rows"])[:, None] * o["stride"] + np.arange(o["cols"])[None, :]
            value = nonzero(weights[o["dram"] + block])
        elif op == "LDB":
            value = nonzero(bias[o["dram"] : o["dram"] + o["count"]])
            if record is not None and record["bias"] is not None:
                block_row = o["dram"] - record["bias"]["dram"] - o["bb"]
                group_row = o["dram"] - record["bias"]["dram"]  # a row of the loaded block: names a grouped conv's group
        elif op == "LDN" and li is not None:  # a map kept in DRAM loaded back (per layer map, not per band)
            value = any(nonzero(q_input if j < 0 else outputs[j]) for j in layers[li].source_layers(li))
        elif op == "STN" and li is not None:  # a spilled or kept map stored (per layer map)
            value = nonzero(outputs[li]) or nonzero(inputs[li])
        elif op == "LDN":
            value = nonzero(q_input)  # the prologue: the network input
        elif op == "STN":
            value = nonzero(outputs[-1])
        elif op in ("DISTW", "DISTN", "MAC", "RELU", "REQ", "STA") and li is not None and layers[li].weight is not None:
            x, acc = layer_data(li, group_row)
            w2 = layers[li].weight.reshape(layers[li].weight.shape[0], -1)
            if op == "DISTN":
                tile.update(p0=o["p0"], p=o["p"], k0=o["k0"], k=o["k"])
                value = nonzero(x[:, o["p0"] : o["p0"] + o["p"], o["k0"] : o["k0"] + o["k"]])
            elif op == "DISTW":
                # Its chunk's inputs are named by the DISTN that follows it.
                following = program[index + 1].operands() if index + 1 < len(program) and program[index + 1].op == "DISTN" else {"k0": 0}
                tile["pending_distw"], tile["distw_k0"], tile["distw_k"] = index, following["k0"], o["k"]
                value = None  # counted at the MAC, which names the tile's rows
            elif op == "MAC":
                rows = slice(block_row + o["bb"], block_row + o["bb"] + o["m"])
                ks = slice(tile["k0"], tile["k0"] + tile["k"])
                w_nz = w2[rows, ks] != 0
                x_nz = np.any(x[:, tile["p0"] : tile["p0"] + tile["p"], ks] != 0, axis=(0, 1))
                value = bool(np.any(w_nz & x_nz[None, :]))
                if "pending_distw" in tile:  # the DISTW of this chunk: its rows are this MAC's
                    distw = bool(np.any(w2[rows, tile["distw_k0"] : tile["distw_k0"] + tile["distw_k"]] != 0))
                    counted += 1
                    hit += int(distw)
                    if not distw and len(missed) < 16:
                        missed.append(tile["pending_distw"])
                    del tile["pending_distw"]
                tile["rows0"], tile["rows1"] = rows.start, rows.stop
            elif op == "RELU":
                value = bool(np.any(acc[:, tile["rows0"] : tile["rows1"], tile["p0"] : tile["p0"] + tile["p"]] > 0))  # after max(., 0)
            else:  # REQ, or STA (the accumulators, which forward() gives as the layer's 32-bit output)
                out = outputs[li].reshape(n, layers[li].weight.shape[0], -1)
                value = nonzero(out[:, tile["rows0"] : tile["rows1"], tile["p0"] : tile["p0"] + tile["p"]])
        elif op in ("POOL", "AVGPOOL", "ADD", "SYNC") and li is not None:
            value = nonzero(outputs[li])
        if value is not None:
            counted += 1
            hit += int(value)
            if not value and len(missed) < 16:
                missed.append(index)
    return hit, counted, sorted(missed)
