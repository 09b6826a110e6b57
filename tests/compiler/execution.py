"""Execution checks for the compiler's IR (as FINN's ``compare_execution``): the IR after a pass,
run by its reference, equals onnxruntime on the source model, bit for bit.

Opt-in: pass :func:`execution_hook` as ``after=`` to ``compile_model`` / ``run_passes``. It checks
after ``fold_qdq`` (the integer layers through ``hwmodels.layers.forward``) and after ``emit`` (the
program through the runtime's reference interpreter); other stages pass through. onnxruntime
computes the exact network, so the IR runs with exact multipliers here (a DRUM layer's program,
mode table included, still runs; its approximate values are checked by ``axtrain verify``'s golden
vectors, which come from hwmodels).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import onnxruntime as ort

from axtrain.compiler.ir import CompilerIR
from axtrain.hwmodels.fixedpoint import dequantize, quantize
from axtrain.hwmodels.layers import forward
from axtrain.hwmodels.multipliers import EXACT
from axtrain.runtime.interpreter import run_program

CHECKED_STAGES = ("fold_qdq", "emit")


def ort_outputs(path: Path, x: np.ndarray) -> np.ndarray:
    """onnxruntime's float32 outputs, with the QDQ fusions off (docs/onnx-schema.md)."""
    options = ort.SessionOptions()
    options.add_session_config_entry("session.disable_quant_qdq", "1")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def execute_ir(ir: CompilerIR, stage: str, x: np.ndarray) -> np.ndarray:
    """The float outputs of ``ir`` (after ``stage``) on float inputs ``x``, by the stage's reference."""
    assert ir.layers is not None and ir.input_format is not None and ir.shapes is not None
    q = quantize(x, ir.input_format)
    if stage == "fold_qdq":
        exact = [layer.with_changes(multipliers=(EXACT,)) if layer.has_weights else layer for layer in ir.layers]
        last = forward(exact, q)[-1]
    elif stage == "emit":
        assert ir.emitted is not None and ir.allocation is not None
        alloc = ir.allocation
        dram = np.zeros((x.shape[0], alloc.activation_words), dtype=np.int64)
        flat = q.reshape(x.shape[0], -1)
        dram[:, alloc.input_dram : alloc.input_dram + flat.shape[1]] = flat
        result = run_program(ir.emitted.program, ir.arch, ir.emitted.weight_image, ir.emitted.bias_image, dram, EXACT)
        last = result.layer_outputs[len(ir.layers) - 1].reshape((x.shape[0], *ir.shapes[-1]))
    else:
        raise ValueError(f"no execution reference for stage {stage!r}")
    return dequantize(last, ir.layers[-1].output_format)


def compare_execution(ir: CompilerIR, stage: str, model_path: Path, x: np.ndarray) -> None:
    """Assert the IR after ``stage`` computes exactly what onnxruntime computes for the model."""
    got = execute_ir(ir, stage, x)
    expected = ort_outputs(model_path, x).reshape(got.shape)
    np.testing.assert_array_equal(got, expected, err_msg=f"IR after {stage} differs from onnxruntime")


def execution_hook(model_path: Path, x: np.ndarray, seen: list[str] | None = None) -> Callable[[str, CompilerIR], None]:
    """An ``after(stage, ir)`` hook that runs :func:`compare_execution` after fold_qdq and emit;
    ``seen`` collects the stages it checked."""

    def after(stage: str, ir: CompilerIR) -> None:
        if stage in CHECKED_STAGES:
            compare_execution(ir, stage, model_path, x)
            if seen is not None:
                seen.append(stage)

    return after
