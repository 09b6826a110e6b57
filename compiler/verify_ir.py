"""Invariants of the compiler IR, checked after every pass.

A failure here is a bug in a pass (the user's input was already accepted), so it raises
:class:`IRVerificationError`, which the CLI reports as an internal error, not a user error.
"""

from __future__ import annotations

import math

import numpy as np

from axtrain.compiler.ir import CompilerIR
from axtrain.errors import BundleError
from axtrain.formats.isa import check_program


class IRVerificationError(Exception):
    """The IR broke an invariant after a pass (a compiler bug)."""


def _require(condition: bool, stage: str, message: str) -> None:
    if not condition:
        raise IRVerificationError(f"after {stage}: {message}")


def _verify_graph(ir: CompilerIR, stage: str) -> None:
    """The graph the normalisation passes hand on is well formed: unique node indices, every tensor
    produced once, every input defined before it is read, the graph output produced."""
    graph = ir.graph
    assert graph is not None
    indices = [node.index for node in graph.nodes]
    _require(len(set(indices)) == len(indices), stage, "node indices are unique")
    defined = set(graph.initializers) | {name for name, *_ in graph.inputs}
    for node in graph.nodes:
        for name in node.inputs:
            if name and name not in defined:  # messages built only on failure (this runs after every pass)
                _require(False, stage, f"{node.label} reads '{name}', which nothing before it defines")
        for name in node.outputs:
            if name:
                if name in defined:
                    _require(False, stage, f"{node.label} redefines '{name}'")
                defined.add(name)
    for name, _ in graph.outputs:
        _require(name in defined, stage, f"graph output '{name}' is produced")


def verify_ir(ir: CompilerIR, stage: str) -> None:
    """Check every part of ``ir`` that is present."""
    _require(ir.graph is not None, stage, "no graph")
    if ir.layers is None:
        _verify_graph(ir, stage)
    if ir.layers is not None:
        _require(ir.shapes is not None and len(ir.shapes) == len(ir.layers) + 1, stage, "one shape per layer boundary")
        assert ir.shapes is not None
        _require(ir.input_format is not None and ir.layers[0].input_format == ir.input_format, stage, "first layer reads the input format")
        for i, layer in enumerate(ir.layers):
            sources = ir.sources(i)
            _require(all(-1 <= j < i for j in sources) and len(sources) == (2 if layer.op == "add" else 1), stage, f"layer {i} reads earlier layers (topological order)")
            formats = [ir.input_format if j < 0 else ir.layers[j].output_format for j in sources]
            _require(layer.input_format == formats[0], stage, f"layer {i} input format follows layer {sources[0]}")
            if layer.op == "add":
                _require(layer.other_format == formats[1] and ir.shapes[sources[0] + 1] == ir.shapes[sources[1] + 1] == ir.shapes[i + 1], stage, f"layer {i} adds two maps of its shape")
                continue
            if layer.has_weights:
                assert layer.weight is not None and layer.bias is not None and layer.weight_format is not None
                _require(layer.weight.dtype == np.int64 and layer.bias.dtype == np.int64, stage, f"layer {i} holds int64 arrays")
                _require(layer.bias.shape == (layer.out_features,), stage, f"layer {i} bias has one value per output")
                _require(len(layer.multipliers) in (1, layer.out_features), stage, f"layer {i} modes: one or one per neuron")
                fan_in = math.prod(layer.weight.shape[1:])
                expected_in = ir.input_shape(i)[0] // layer.groups * (layer.weight.shape[2] * layer.weight.shape[3] if layer.op == "conv" else 1)
                _require(fan_in == expected_in, stage, f"layer {i} weight fan-in matches its input")
                fmt = layer.weight_format
                _require(bool(layer.weight.min() >= fmt.qmin and layer.weight.max() <= fmt.qmax), stage, f"layer {i} weights fit {fmt}")
            elif layer.op != "avgpool":
                _require(layer.input_format == layer.output_format, stage, f"layer {i} ({layer.op}) keeps its format")
    if ir.schedule is not None:
        assert ir.layers is not None
        _require(len(ir.schedule) == len(ir.layers), stage, "one schedule per layer")
        arch = ir.arch
        for i, s in enumerate(ir.schedule):
            if s.kind != "compute":
                continue
            _require(1 <= s.m_tile * s.p_tile <= arch.pe_count, stage, f"layer {i} tile fits the PE array")
            _require(1 <= s.k_chunk <= min(arch.pe_weight_memory_words, arch.pe_neuron_memory_words), stage, f"layer {i} chunk fits local memory")
            need = {"layer": s.m * s.k, "block": s.m_tile * s.k, "chunk": s.m_tile * s.k_chunk}[s.weights_resident]
            _require(need <= arch.weight_buffer_words, stage, f"layer {i} weights fit the weight buffer")
            _require(s.m_tile <= arch.bias_buffer_words, stage, f"layer {i} biases fit the bias buffer")
    if ir.allocation is not None:
        assert ir.layers is not None and ir.shapes is not None
        nb = ir.arch.neuron_buffer_words
        for i, place in enumerate(ir.allocation.layers):
            size_in, size_out = math.prod(ir.input_shape(i)), math.prod(ir.shapes[i + 1])
            if place.spilled and ir.layers[i].op == "add":  # bands of words: both addends' words, the sum over the first
                apart = place.nb_other in (0, place.band_words)
                _require(place.band_words >= 1 and apart and place.nb_other + place.band_words <= nb and place.dram_other is not None, stage, f"layer {i} adds in bands inside the neuron buffer")
                _require(place.nb_input == place.nb_output == 0 and place.dram_input is not None and place.dram_output is not None, stage, f"layer {i} spills to DRAM in bands")
                continue
            if place.spilled and ir.layers[i].op == "dense":  # bands of neurons above the whole input vector
                below = place.piece_words or size_in  # the input vector, or one piece of it
                pieces_ok = place.piece_words == 0 or (place.piece_words < size_in and place.piece_words % ir.schedule[i].k_chunk == 0) if ir.schedule else True
                _require(place.nb_input == 0 and place.nb_output == below and below + place.band_words <= nb and place.band_words >= 1 and pieces_ok, stage, f"layer {i} bands map inside the neuron buffer")
                _require(place.dram_input is not None and place.dram_output is not None, stage, f"layer {i} spills to DRAM in bands")
                continue
            if place.spilled:  # row bands: the band's input rows below its output rows
                _require(place.band_rows >= 1 and place.dram_input is not None and place.dram_output is not None, stage, f"layer {i} spills to DRAM in bands")
                band_out = (place.band_channels or ir.shapes[i + 1][0] // ir.layers[i].groups) * place.band_rows * ir.shapes[i + 1][2]
                _require(place.nb_input == 0 and place.nb_output + band_out <= nb, stage, f"layer {i} bands map inside the neuron buffer")
                continue
            in_nb = place.nb_input + size_in <= nb and place.nb_other + size_in <= nb
            _require(in_nb and (place.nb_output + size_out <= nb or place.dram_output is not None), stage, f"layer {i} maps inside the neuron buffer")
            if ir.layers[i].op == "add":  # in place over one addend (or beside both), the addends apart
                a, b, o = place.nb_input, place.nb_other, place.nb_output
                beside = (o + size_out <= a or a + size_in <= o) and (o + size_out <= b or b + size_in <= o)
                _require((o in (a, b) or beside) and (a == b or a + size_in <= b or b + size_in <= a), stage, f"layer {i} adds in place, addends apart")
            elif ir.layers[i].op != "flatten":
                disjoint = place.nb_input + size_in <= place.nb_output or place.nb_output + size_out <= place.nb_input
                _require(disjoint, stage, f"layer {i} input and output maps do not overlap")
            loads = [t for t in place.before if t[0] == "LDN"]
            src = ir.sources(i)[0]
            previous = ir.allocation.layers[i - 1] if i else None
            if not loads and previous is not None and src == i - 1 and ir.layers[i].op != "add" and place.dram_output is None:
                _require(place.nb_input == previous.nb_output and previous.dram_output is None, stage, f"layer {i} reads where layer {i - 1} wrote")
        _verify_neuron_buffer(ir, stage)
    if ir.emitted is not None:
        assert ir.allocation is not None and ir.layers is not None
        e = ir.emitted
        _require(e.weight_image.size == ir.allocation.weight_words, stage, "weight image size matches the allocation")
        _require(e.bias_image.size == ir.allocation.bias_words, stage, "bias image size matches the allocation")
        try:
            check_program(e.program, ir.arch, e.weight_image.size, e.bias_image.size, ir.allocation.activation_words, int(e.requant_image.shape[0]))
        except BundleError as exc:
            raise IRVerificationError(f"after {stage}: emitted program fails its static check: {exc}") from None
        syncs = [ins["layer"] for ins in e.program if ins.op == "SYNC"]
        _require(syncs == list(range(len(ir.layers))), stage, "one SYNC per layer, in order")


def _verify_neuron_buffer(ir: CompilerIR, stage: str) -> None:
    """Every layer reads each input where its producer (or an LDN of the layer's own) left it, and
    nothing wrote over those words since: the maps kept in the neuron buffer for later layers
    (residual shortcuts) are never clobbered. A banded layer uses the whole buffer."""
    assert ir.allocation is not None and ir.layers is not None and ir.shapes is not None
    nb = ir.arch.neuron_buffer_words
    places = ir.allocation.layers
    garbage, loaded = -3, -2
    owner = np.full(nb, garbage, dtype=np.int64)
    if not places[0].spilled:
        owner[ir.allocation.nb_network_input : ir.allocation.nb_network_input + math.prod(ir.shapes[0])] = -1

    def producer(t: int) -> int:  # a flatten's output is its input's words
        while t >= 0 and ir.layers is not None and ir.layers[t].op == "flatten":
            t = ir.sources(t)[0]
        return t

    for i, place in enumerate(places):
        layer = ir.layers[i]
        loads = set()
        for kind, first, _, count in place.before:
            if kind == "LDN":
                owner[first : first + count] = loaded
                loads.add((first, count))
        if place.spilled:
            owner[:] = garbage
            continue
        if layer.op == "flatten" and place.dram_output is not None:  # a map in activation DRAM only
            continue
        sources = ir.sources(i)
        size_in = math.prod(ir.input_shape(i))
        addresses = (place.nb_input, place.nb_other)[: len(sources)]
        for t, at in zip(sources, addresses, strict=True):
            words = owner[at : at + size_in]
            kept = bool(np.all(words == producer(t)))
            _require(kept or ((at, size_in) in loads and bool(np.all(words == loaded))), stage, f"layer {i} reads layer {t}'s map where it was left or loaded")
            owner[at : at + size_in] = producer(t)  # loaded words hold the map from now on, for later readers too
        if layer.op != "flatten":
            owner[place.nb_output : place.nb_output + math.prod(ir.shapes[i + 1])] = i
