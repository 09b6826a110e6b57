"""Weight- and bias-buffer regions (compiler/passes/allocate.py ``buffer_regions``): layers whose
weights fit get their own regions (resident across a batch), the others share a staging region above
them, double-buffered when two blocks fit; the program still computes what onnxruntime computes."""

from __future__ import annotations

import numpy as np
from execution import execution_hook
from onnx_graphs import build_model, random_dense

from axtrain.compiler.pipeline import compile_model
from axtrain.formats.arch import Architecture
from axtrain.runtime.timing import resident_loads

# 200 weight words: a 5x12 (60) and a 3x5 (15) layer fit whole; a 12x30 layer (360) does not and is
# streamed block by block (2 PEs' rows x 30 = 60 words a block: two blocks fit above the 75 resident words).
ARCH = Architecture(pe_rows=1, pe_cols=2, weight_buffer_bytes=400, bias_buffer_words=20, pe_weight_memory_bytes=64, pe_neuron_memory_bytes=64)


def test_resident_layers_get_their_own_regions_and_streamed_blocks_alternate(save_model, rng: np.random.Generator) -> None:
    specs = [random_dense(rng, 12, 30, fw=7, fo=1, relu=True), random_dense(rng, 5, 12, fw=7, fo=1, relu=True), random_dense(rng, 3, 5, fw=7, fo=1)]
    path = save_model(build_model(specs, ["N", 30]))
    x = rng.uniform(-6, 6, size=(8, 30)).astype(np.float32)
    seen: list[str] = []
    ir = compile_model(path, ARCH, after=execution_hook(path, x, seen))
    assert seen == ["fold_qdq", "emit"]  # bit-identical to onnxruntime after emit, as before
    assert ir.schedule is not None and ir.allocation is not None and ir.emitted is not None
    assert [s.weights_resident for s in ir.schedule] == ["block", "layer", "layer"]
    big, mid, small = ir.allocation.layers
    assert (small.wb_base, mid.wb_base) == (0, 15)  # smallest first
    assert big.wb_base == 75 and (big.wb_slots, big.wb_slot_words) == (2, 60)
    program = ir.emitted.program
    layer0 = program[ir.emitted.layer_ranges[0][0] : ir.emitted.layer_ranges[0][1]]
    assert [ins["wb"] for ins in layer0 if ins.op == "LDW"] == [75, 135, 75, 135, 75, 135]
    # What the machine keeps resident: the two small layers' weights and every layer's biases (20 bias words).
    resident = {program[i]["wb"] for i in resident_loads(program) if program[i].op == "LDW"}
    assert resident == {0, 15}
    assert sum(1 for i in resident_loads(program) if program[i].op == "LDB") == 3
