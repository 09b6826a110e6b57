"""Pass ``emit`` (compiler/passes/emit.py): the ISA program and memory images.

The execution check runs the emitted program through the runtime's reference interpreter and
compares the outputs with onnxruntime on the source model, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from execution import compare_execution, execution_hook
from onnx_graphs import Spec, build_model, mlp_specs, random_conv, random_dense

from axtrain.compiler.passes.emit import mode_runs
from axtrain.compiler.pipeline import compile_model
from axtrain.formats.arch import Architecture
from axtrain.formats.isa import mode_code, mode_of_code
from axtrain.hwmodels.multipliers import EXACT, MultiplierMode

TINY = Architecture(pe_rows=2, pe_cols=3, weight_buffer_bytes=96, bias_buffer_words=4, pe_weight_memory_bytes=16, pe_neuron_memory_bytes=16)


def test_mode_runs_and_codes() -> None:
    modes = (EXACT, EXACT, MultiplierMode(2), MultiplierMode(2), MultiplierMode(2), EXACT, MultiplierMode(16))
    assert mode_runs(modes) == [(0, 2, 0), (2, 3, 2), (5, 1, 0), (6, 1, 16)]
    assert all(mode_of_code(mode_code(m)) == m for m in modes)


@pytest.mark.parametrize("arch", [Architecture(), TINY], ids=["default", "tiny"])
def test_program_executes_like_onnxruntime(arch: Architecture, save_model, rng: np.random.Generator) -> None:
    specs = [random_conv(rng, 3, 1, 3, pad=1, fw=7, fo=1, relu=True), Spec("maxpool", kernel=2, stride=2), Spec("flatten"), random_dense(rng, 5, 12, fw=7, fo=0, relu=True), random_dense(rng, 3, 5, fw=7, fo=1)]
    specs[3].metadata = {"axtrain.multiplier": "drum:2"}  # a DRUM layer: the program's MODE table is exercised too
    path = save_model(build_model(specs, ["N", 1, 4, 4]))
    x = rng.uniform(-6, 6, size=(10, 1, 4, 4)).astype(np.float32)
    seen: list[str] = []
    ir = compile_model(path, arch, after=execution_hook(path, x, seen))
    assert seen == ["fold_qdq", "emit"]
    syncs = [ins["layer"] for ins in ir.emitted.program if ins.op == "SYNC"]
    assert syncs == [0, 1, 2, 3, 4] and ir.emitted.program[-1].op == "END"
    assert ir.emitted.weight_image.size == ir.allocation.weight_words == 27 + 60 + 15


def test_an_emit_bug_would_be_caught(save_model, rng: np.random.Generator) -> None:
    # Not vacuous: flip one weight word in the emitted image and the execution check must fail.
    path = save_model(build_model(mlp_specs(rng, [6, 4, 3]), ["N", 6]))
    ir = compile_model(path)
    image = ir.emitted.weight_image.copy()
    image[0] += 7
    broken = ir.update(emitted=type(ir.emitted)(ir.emitted.program, ir.emitted.layer_ranges, image, ir.emitted.bias_image))
    x = rng.uniform(-6, 6, size=(32, 6)).astype(np.float32)
    compare_execution(ir, "emit", path, x)
    with pytest.raises(AssertionError, match="differs from onnxruntime"):
        compare_execution(broken, "emit", path, x)
