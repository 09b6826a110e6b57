"""Pass 4, allocate: lay out the DRAM images, the neuron buffer and the activations kept in DRAM.

- Weight image: each weighted layer's matrix ``[m, k]`` (row-major, ``k`` in ONNX order
  ``c*kh*kw``), layers back to back. Bias image likewise. These are what the runtime faults (weights)
  and what RTL test benches load.
- DRAM activations: the network input at word 0, the network output right after it, then the maps
  that live in DRAM, each in a region first fitted among the regions still in use (a region is free
  once the last layer that reads its map has run).
- Neuron buffer: the input map of the network at word 0; each layer writes its output at the other
  end of the buffer from its input (bottom <-> top), so a layer's input and output never overlap
  and the buffer needs only ``max(input + output)`` words. Flatten moves no data. A map that a
  later layer other than the next one reads (a residual shortcut) stays where its layer wrote it
  until its last reader has run, the layers between placed in the free words beside it; when one
  does not fit, the kept map read last is stored to DRAM first and loaded back by its reader
  (decision 190). A residual add writes its sum in place over an addend no later layer reads.
- Activation spill: a convolution, max or average pool whose input and output maps do not fit the
  buffer together is *spilled*: its input lives in activation DRAM (stored there first if its
  producer left it in the buffer), and it runs in bands of output rows, each band's input rows (with
  the window's halo) loaded to word 0 and its output rows computed above them and stored to DRAM. A
  grouped convolution's bands are a group's channels. Bands hold as many rows as fit; a pool of
  which not even one output row of every channel fits runs over groups of channels. A residual add
  whose two addends do not fit runs in bands of words (both addends' words side by side, the sum
  over the first); a dense layer whose input and output do not fit keeps its input vector at word 0
  and computes its outputs in bands of neurons above it (decisions 191-192).
- Weight and bias buffers (:func:`buffer_regions`): layers whose whole weight matrix fits get their
  own weight-buffer region, so the weights stay resident across the inferences of a batch (the
  runtime loads a region nobody overwrites once per batch, docs/runtime.md); the other layers share
  a staging region above them, split into two slots when two blocks fit (double buffering: the next
  block loads while the PEs use the current one). Biases (and the mode table beside them) likewise.
"""

from __future__ import annotations

import dataclasses
import math

from axtrain.compiler.ir import Allocation, CompilerIR, LayerPlacement, LayerSchedule, Transfer
from axtrain.errors import ConfigError
from axtrain.hwmodels.layers import QuantizedLayer


def band_window(layer: QuantizedLayer) -> tuple[int, int, int, int]:
    """``(kh, sh, pt, pb)``: the vertical window of a spillable layer (conv or max pool)."""
    kh = layer.weight.shape[2] if layer.op == "conv" and layer.weight is not None else layer.window_hw[0]
    pt, _, pb, _ = layer.pads_tlbr
    return kh, layer.stride_hw[0], pt, pb


def band_input_rows(layer: QuantizedLayer, height: int, oy0: int, oy1: int) -> tuple[int, int, int, int]:
    """Input rows ``[r0, r1)`` that output rows ``[oy0, oy1)`` read, and the band's own top and
    bottom padding (the rows of the window outside the map)."""
    kh, sh, pt, _ = band_window(layer)
    lo, hi = oy0 * sh - pt, (oy1 - 1) * sh - pt + kh
    r0, r1 = max(lo, 0), min(hi, height)
    return r0, r1, r0 - lo, hi - r1


def band_channels(layer: QuantizedLayer, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> tuple[int, int]:
    """Input and output channels of one band: a group's for a grouped conv."""
    groups = layer.groups if layer.op == "conv" else 1
    return in_shape[0] // groups, out_shape[0] // groups


def _band_rows(layer: QuantizedLayer, in_shape: tuple[int, ...], out_shape: tuple[int, ...], nb_words: int, channels: int = 0) -> int:
    """The most output rows per band whose input rows and output rows fit the buffer (0: none do),
    evened out over the bands; ``channels``: a pool's band of that many channels (0: all)."""
    kh, sh, _, _ = band_window(layer)
    c, m = (channels, channels) if channels else band_channels(layer, in_shape, out_shape)
    h, w = in_shape[1:]
    oh, ow = out_shape[1:]
    best = 0
    for rows in range(1, oh + 1):
        if c * min(h, (rows - 1) * sh + kh) * w + m * rows * ow > nb_words:
            break
        best = rows
    return -(-oh // -(-oh // best)) if best else 0


class _DramRegions:
    """First-fit regions of activation DRAM above ``base``, each free after the layer ``until``."""

    def __init__(self, base: int) -> None:
        self.base = base
        self.top = base
        self.live: list[list[int]] = []  # [start, size, until]

    def take(self, size: int, now: int, until: int) -> int:
        self.live = [r for r in self.live if r[2] >= now]
        start = self.base
        for r0, rsize, _ in sorted(self.live):
            if start + size <= r0:
                break
            start = max(start, r0 + rsize)
        self.live.append([start, size, until])
        self.top = max(self.top, start + size)
        return start

    def extend(self, start: int, until: int) -> None:
        for region in self.live:
            if region[0] == start:
                region[2] = max(region[2], until)


def _fit(occupied: list[tuple[int, int]], size: int, words: int, high: bool) -> int | None:
    """The lowest (or, ``high``, highest) start of ``size`` free words among ``occupied`` ``(start,
    size)`` ranges of a ``words``-word buffer; None when no gap is large enough."""
    gaps, cursor = [], 0
    for start, length in sorted(occupied):
        if start > cursor:
            gaps.append((cursor, start))
        cursor = max(cursor, start + length)
    if cursor < words:
        gaps.append((cursor, words))
    fitting = [(lo, hi) for lo, hi in gaps if hi - lo >= size]
    if not fitting:
        return None
    return fitting[-1][1] - size if high else fitting[0][0]


def _pool_channel_bands(layer: QuantizedLayer, in_shape: tuple[int, ...], out_shape: tuple[int, ...], nb_words: int) -> tuple[int, int]:
    """``(channels, rows)`` per band of a pool of which not even one output row of every channel fits:
    the most channels of which one row fits, evened out over the channel groups, and the rows that
    fit for them (0, 0: not even one channel's row). A pool's channels are independent
    (GlobalAveragePool's one output row needs the whole map of each channel)."""
    c = in_shape[0]
    for channels in range(c - 1, 0, -1):
        if _band_rows(layer, in_shape, out_shape, nb_words, channels):
            even = _band_words(c, channels)
            return even, _band_rows(layer, in_shape, out_shape, nb_words, even)
    return 0, 0


def _spills(layer: QuantizedLayer, sources: tuple[int, ...], in_size: int, out_size: int, nb_words: int, dies_here: bool) -> bool:
    """Whether a layer runs in bands through activation DRAM: its maps do not fit the buffer together,
    however empty. An add's sum goes in place over an addend whose last reader it is
    (``dies_here``), so then it needs its distinct addends only, else one more map."""
    if layer.op == "add":
        return (len(set(sources)) + (0 if dies_here else 1)) * in_size > nb_words
    return layer.op in ("conv", "maxpool", "avgpool", "dense") and in_size + out_size > nb_words


class _NeuronBuffer:
    """The maps in the neuron buffer while the layers are laid out: ``live[t] = (start, size)``.

    A map stays where its layer wrote it until its last reader has run (decision 190). A layer that
    does not fit beside the maps kept for later layers stores the one read last (Belady) to
    activation DRAM first, unless it has a copy there, and its reader loads it back."""

    def __init__(self, words: int) -> None:
        self.words = words
        self.live: dict[int, tuple[int, int]] = {}

    def occupied(self) -> list[tuple[int, int]]:
        return list(self.live.values())

    def expire(self, now: int, last_use: dict[int, int]) -> None:
        self.live = {t: r for t, r in self.live.items() if last_use[t] >= now}


def allocate(ir: CompilerIR) -> CompilerIR:
    """Assign every address; a layer whose maps cannot be placed is a ConfigError naming it."""
    assert ir.layers is not None and ir.shapes is not None
    arch = ir.arch
    nb_words = arch.neuron_buffer_words
    layers = ir.layers
    count = len(layers)
    sizes = [math.prod(s) for s in ir.shapes]  # sizes[t + 1]: tensor t (-1: the network input)
    consumers: dict[int, list[int]] = {t: [] for t in range(-1, count)}
    for i in range(count):
        for t in ir.sources(i):
            consumers[t].append(i)
    last_use = {t: max(users, default=t) for t, users in consumers.items()}
    spill = [
        _spills(layer, ir.sources(i), sizes[ir.sources(i)[0] + 1], sizes[i + 1], nb_words, any(last_use[t] == i for t in ir.sources(i)))
        for i, layer in enumerate(layers)
    ]
    if not spill[0] and sizes[0] > nb_words:
        raise ConfigError(f"the network input ({sizes[0]} words) does not fit the neuron buffer ({nb_words} words)")
    in_dram, out_dram = 0, sizes[0]
    regions = _DramRegions(sizes[0] + sizes[-1])
    buffer = _NeuronBuffer(nb_words)
    if not spill[0]:
        buffer.live[-1] = (0, sizes[0])
    dram_at: dict[int, int] = {-1: in_dram}  # maps with a copy in activation DRAM
    weight_offset = bias_offset = 0
    placements = []

    def next_use(t: int, now: int) -> int:
        return min((c for c in consumers[t] if c > now), default=count)

    def evict(t: int, now: int, stores: list[Transfer]) -> None:
        start, size = buffer.live.pop(t)
        if t not in dram_at:
            dram_at[t] = regions.take(size, now, last_use[t])
            stores.append(("STN", dram_at[t], start, size))

    for index, layer in enumerate(layers):
        label = ir.layer_label(index)
        sources = ir.sources(index)
        src = sources[0]
        in_size, out_size = sizes[src + 1], sizes[index + 1]
        buffer.expire(index, last_use)
        stores: list[Transfer] = []
        loads: list[Transfer] = []
        band_rows = band_words = piece_words = band_channels_ = 0
        dram_input = dram_other = dram_output = None
        nb_in = nb_out = nb_other = 0
        if layer.op == "flatten":  # moves no data: the same words under a new name
            if src in buffer.live:
                nb_in = nb_out = buffer.live[src][0]
                buffer.live[index] = buffer.live[src]
                if consumers[src] == [index]:
                    del buffer.live[src]
            if src in dram_at:
                dram_at[index] = dram_at[src]
                regions.extend(dram_at[src], last_use[index])
                if index not in buffer.live:
                    dram_output = dram_at[src]
        elif spill[index]:
            # Bands use the whole buffer: every map still needed later leaves it (stored if need be).
            for t in sorted(buffer.live, key=lambda t: buffer.live[t]):
                if last_use[t] > index or t in sources:
                    evict(t, index, stores)
            buffer.live.clear()
            dram_input = dram_at[src]
            if layer.op == "add":
                a, b = sources
                band_words = _band_words(in_size, nb_words if a == b else nb_words // 2)
                if not band_words:
                    raise ConfigError(f"{label}: a residual add does not fit even one word per addend in the neuron buffer ({nb_words} words)")
                dram_other = dram_at[b]
                nb_other = 0 if a == b else band_words
            elif layer.op == "dense":
                band_words, piece_words = _dense_bands(ir, index, in_size, out_size, nb_words)
                nb_out = piece_words or in_size
            else:
                band_rows = _band_rows(layer, ir.shapes[src + 1], ir.shapes[index + 1], nb_words)
                if not band_rows and layer.op in ("maxpool", "avgpool"):
                    band_channels_, band_rows = _pool_channel_bands(layer, ir.shapes[src + 1], ir.shapes[index + 1], nb_words)
                if not band_rows:
                    raise ConfigError(f"{label}: even one output row with its input rows does not fit the neuron buffer ({nb_words} words); raise neuron_buffer_bytes")
                c = band_channels_ or band_channels(layer, ir.shapes[src + 1], ir.shapes[index + 1])[0]
                kh, sh, _, _ = band_window(layer)
                _, h, w = ir.shapes[src + 1]
                nb_out = c * min(h, (band_rows - 1) * sh + kh) * w
            dram_output = dram_at[index] = regions.take(out_size, index, last_use[index])
        else:
            unique = list(dict.fromkeys(sources))
            while True:
                placed = _place(layer, unique, in_size, out_size, buffer, last_use, index)
                if placed is not None:
                    break
                # Make room: the map read last leaves first; then the layer's own inputs (reloaded).
                others = [t for t in buffer.live if t not in unique]
                victims = others or [t for t in buffer.live if t in unique]
                assert victims, f"{label}: placement failed in an empty buffer"
                evict(max(victims, key=lambda t: (next_use(t, index), buffer.live[t][1], t)), index, stores)
            at, nb_out = placed
            for t in unique:
                if t not in buffer.live:
                    loads.append(("LDN", at[t], dram_at[t], sizes[t + 1]))
                    buffer.live[t] = (at[t], sizes[t + 1])
            nb_in = at[src]
            if layer.op == "add":
                nb_other = at[sources[1]]
            for t, (start, size) in list(buffer.live.items()):  # the output's words are overwritten
                if start < nb_out + out_size and nb_out < start + size:
                    del buffer.live[t]
            buffer.live[index] = (nb_out, out_size)
        weight_dram = bias_dram = None
        if layer.has_weights:
            assert layer.weight is not None
            weight_dram, bias_dram = weight_offset, bias_offset
            weight_offset += int(layer.weight.size)
            bias_offset += layer.out_features
        placements.append(LayerPlacement(
            weight_dram, bias_dram, nb_in, nb_out, spilled=spill[index], band_rows=band_rows, dram_input=dram_input,
            dram_output=dram_output, before=tuple(stores + loads), nb_other=nb_other, dram_other=dram_other, band_words=band_words,
            piece_words=piece_words, band_channels=band_channels_,
        ))
    last = placements[-1]
    output_dram = last.dram_output if last.dram_output is not None else out_dram
    allocation = Allocation(
        layers=buffer_regions(ir, tuple(placements)),
        weight_words=weight_offset,
        bias_words=bias_offset,
        input_dram=in_dram,
        output_dram=output_dram,
        activation_words=max(regions.top, sizes[0] + sizes[-1]),
        nb_network_input=0,
    )
    return ir.update(allocation=allocation)


def _dense_bands(ir: CompilerIR, index: int, in_size: int, out_size: int, nb_words: int) -> tuple[int, int]:
    """``(band_words, piece_words)`` of a spilled dense layer: bands of output neurons above the whole
    input vector when a tile's worth of neurons fits beside it (pieces 0), else bands of one m-block
    above pieces of the input, whole local-memory chunks each (decision 192)."""
    schedule = ir.schedule[index] if ir.schedule is not None else None
    m_tile, k_chunk = (schedule.m_tile, schedule.k_chunk) if schedule is not None else (1, 1)
    free = nb_words - in_size
    if free >= min(m_tile, out_size):
        return _band_words(out_size, free // m_tile * m_tile or free), 0
    band = _band_words(out_size, min(m_tile, nb_words // 2))
    piece = (nb_words - band) // k_chunk * k_chunk
    if not piece:
        raise ConfigError(f"{ir.layer_label(index)}: a dense layer's piece of {k_chunk} inputs and its outputs do not fit the neuron buffer ({nb_words} words); raise neuron_buffer_bytes")
    return band, piece


def _band_words(total: int, limit: int) -> int:
    """Words per band of a spilled add: at most ``limit``, evened out (0: not even one word)."""
    return -(-total // -(-total // limit)) if limit >= 1 else 0


def _place(
    layer: QuantizedLayer, sources: list[int], in_size: int, out_size: int, buffer: _NeuronBuffer, last_use: dict[int, int], now: int
) -> tuple[dict[int, int], int] | None:
    """Addresses of a layer's inputs (where they are, or where they are loaded) and of its output,
    beside the maps kept for later layers; None when they do not fit.

    Inputs that are loaded go to the end of the free space opposite the first input already in the
    buffer, the output to the end opposite the (first) input: for a chain the output alternates
    between the bottom and the top of the buffer, as it always has. An add writes its sum in place
    over an addend that no later layer reads (the one already in the buffer, else the first)."""
    occupied = buffer.occupied()
    at: dict[int, int] = {t: buffer.live[t][0] for t in sources if t in buffer.live}
    anchor_low = True
    if at:
        first = at[next(t for t in sources if t in at)]
        anchor_low = first + in_size / 2 < buffer.words / 2
    for t in sources:
        if t in at:
            continue
        start = _fit(occupied, in_size, buffer.words, high=bool(at) and anchor_low)
        if start is None:
            return None
        at[t] = start
        occupied.append((start, in_size))
        if len(at) == 1:
            anchor_low = start + in_size / 2 < buffer.words / 2
    if layer.op == "add":
        resident = [t for t in sources if t in buffer.live]
        for t in resident + [t for t in sources if t not in resident]:
            start = at[t]
            shared = any(u != t and last_use[u] > now and s < start + in_size and start < s + n for u, (s, n) in buffer.live.items())
            if last_use[t] == now and not shared:
                return at, start
    first_src = at[sources[0]]
    start = _fit(occupied, out_size, buffer.words, high=first_src + in_size / 2 < buffer.words / 2)
    return None if start is None else (at, start)


def _weight_footprint(s: LayerSchedule) -> int:
    """Weight-buffer words one LDW group of the layer occupies (the whole layer, a block or a chunk)."""
    if s.weights_resident == "layer":
        return s.m * s.k
    if s.weights_resident == "block":
        return s.m_tile * s.k
    return s.m_tile * s.k_chunk


def _resident(sizes: dict[int, int], streamed: dict[int, int], capacity: int) -> dict[int, int]:
    """Bases of the layers given their own region: smallest first, while what is left still holds the
    largest footprint of the layers that load into the shared staging region (decision 130)."""
    bases: dict[int, int] = {}
    used = 0
    pending = dict(sizes)
    for index in sorted(sizes, key=lambda i: (sizes[i], i)):
        del pending[index]
        staging = max([*pending.values(), *streamed.values(), 0])
        if used + sizes[index] + staging <= capacity:
            bases[index] = used
            used += sizes[index]
        else:
            streamed[index] = sizes[index]
    return bases


def buffer_regions(ir: CompilerIR, placements: tuple[LayerPlacement, ...]) -> tuple[LayerPlacement, ...]:
    """Weight- and bias-buffer regions of every compute layer (resident regions, then staging); an IR
    without a schedule (the neuron-buffer layout alone) keeps word 0 for every layer."""
    if ir.schedule is None:
        return placements
    arch = ir.arch
    compute = {i: s for i, s in enumerate(ir.schedule) if s.kind == "compute"}
    whole = {i: s.m * s.k for i, s in compute.items() if s.weights_resident == "layer"}
    streamed = {i: _weight_footprint(s) for i, s in compute.items() if s.weights_resident != "layer"}
    wb_bases = _resident(whole, streamed, arch.weight_buffer_words)
    wb_staging = sum(whole[i] for i in wb_bases)
    bias_whole = {i: s.m for i, s in compute.items() if s.bias_resident == "layer"}
    bias_streamed = {i: s.m_tile for i, s in compute.items() if s.bias_resident != "layer"}
    bb_bases = _resident(bias_whole, bias_streamed, arch.bias_buffer_words)
    bb_staging = sum(bias_whole[i] for i in bb_bases)
    out = []
    for index, place in enumerate(placements):
        if index in compute:
            free = arch.weight_buffer_words - wb_staging
            foot = streamed.get(index, 0)
            slots = 2 if index not in wb_bases and compute[index].weights_resident != "layer" and 2 * foot <= free else 1
            place = dataclasses.replace(
                place,
                wb_base=wb_bases.get(index, wb_staging),
                bb_base=bb_bases.get(index, bb_staging if bias_streamed.get(index, 0) <= arch.bias_buffer_words - bb_staging else 0),
                wb_slots=slots,
                wb_slot_words=foot if slots == 2 else 0,
            )
        out.append(place)
    return tuple(out)
