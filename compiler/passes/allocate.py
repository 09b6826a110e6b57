"""Pass 4, allocate: lay out the DRAM images and the neuron buffer.

- Weight image: each weighted layer's matrix ``[m, k]`` (row-major, ``k`` in ONNX order
  ``c*kh*kw``), layers back to back. Bias image likewise. These are what the runtime faults (weights)
  and what RTL test benches load.
- DRAM activations: the network input at word 0, the network output right after it.
- Neuron buffer: the input map of the network at word 0; each layer writes its output at the other
  end of the buffer from its input (bottom <-> top), so a layer's input and output never overlap
  and the buffer needs only ``max(input + output)`` words. Flatten moves no data.
- The weight buffer is staging space reused by every layer from word 0 (tile_schedule sized it).
"""

from __future__ import annotations

import math

from axtrain.compiler.ir import Allocation, CompilerIR, LayerPlacement
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
        layers=tuple(placements),
        weight_words=weight_offset,
        bias_words=bias_offset,
        input_dram=0,
        output_dram=sizes[0],
        activation_words=sizes[0] + sizes[-1],
        nb_network_input=0,
    )
    return ir.update(allocation=allocation)
