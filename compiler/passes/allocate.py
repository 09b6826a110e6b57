"""Pass 4, allocate: lay out the DRAM images and the neuron buffer.

- Weight image: each weighted layer's matrix ``[m, k]`` (row-major, ``k`` in ONNX order
  ``c*kh*kw``), layers back to back. Bias image likewise. These are what the runtime faults (weights)
  and what RTL test benches load.
- DRAM activations: the network input at word 0, the network output right after it.
- Neuron buffer: the input map of the network at word 0; each layer writes its output at the other
  end of the buffer from its input (bottom <-> top), so a layer's input and output never overlap
  and the buffer needs only ``max(input + output)`` words. Flatten moves no data.
- Weight and bias buffers (:func:`buffer_regions`): layers whose whole weight matrix fits get their
  own weight-buffer region, so the weights stay resident across the inferences of a batch (the
  runtime loads a region nobody overwrites once per batch, docs/runtime.md); the other layers share
  a staging region above them, split into two slots when two blocks fit (double buffering: the next
  block loads while the PEs use the current one). Biases (and the mode table beside them) likewise.
"""

from __future__ import annotations

import dataclasses
import math

from axtrain.compiler.ir import Allocation, CompilerIR, LayerPlacement, LayerSchedule
from axtrain.errors import ConfigError


def allocate(ir: CompilerIR) -> CompilerIR:
    """Assign every address; a model whose maps do not fit the neuron buffer is a ConfigError."""
    assert ir.layers is not None and ir.shapes is not None
    arch = ir.arch
    nb_words = arch.neuron_buffer_words
    sizes = [math.prod(s) for s in ir.shapes]
    if sizes[0] > nb_words:
        raise ConfigError(f"the network input ({sizes[0]} words) does not fit the neuron buffer ({nb_words} words)")
    weight_offset = bias_offset = 0
    nb_in = 0
    placements = []
    for index, layer in enumerate(ir.layers):
        in_size, out_size = sizes[index], sizes[index + 1]
        if layer.op == "flatten":
            nb_out = nb_in
        else:
            if in_size + out_size > nb_words:
                raise ConfigError(
                    f"{ir.layer_label(index)}: input ({in_size} words) and output ({out_size} words) do not fit the "
                    f"neuron buffer ({nb_words} words) together; raise neuron_buffer_bytes"
                )
            nb_out = nb_words - out_size if nb_in == 0 else 0
        weight_dram = bias_dram = None
        if layer.has_weights:
            assert layer.weight is not None
            weight_dram, bias_dram = weight_offset, bias_offset
            weight_offset += int(layer.weight.size)
            bias_offset += layer.out_features
        placements.append(LayerPlacement(weight_dram, bias_dram, nb_in, nb_out))
        nb_in = nb_out
    allocation = Allocation(
        layers=buffer_regions(ir, tuple(placements)),
        weight_words=weight_offset,
        bias_words=bias_offset,
        input_dram=0,
        output_dram=sizes[0],
        activation_words=sizes[0] + sizes[-1],
        nb_network_input=0,
    )
    return ir.update(allocation=allocation)


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
