"""The compiler: an ordered list of named, pure passes with a verifier after each.

    import_onnx -> [normalisation: fold_constants -> lower_qonnx -> flatten_shapes -> canonical_qdq
    -> drop_identity] -> host_tail -> validate -> fold_qdq -> float32_bound -> tile_schedule
    -> allocate -> emit -> (bundle writer)

The normalisation passes rewrite what real quantizers export into the dialect validate and fold_qdq
read (docs/importing.md); on the compiler's own exporter's graphs they change nothing.

``run_passes`` takes an ``after(stage, ir)`` hook, called with the verified IR after import and
after every pass (``axtrain compile --dump-ir`` writes it; tests compare its execution with
onnxruntime), and ``stop_after`` to end the list early (``--stop-after``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from axtrain.compiler.host_tail import host_tail
from axtrain.compiler.ir import CompilerIR
from axtrain.compiler.onnx_import import import_onnx
from axtrain.compiler.package import write_compiled_bundle
from axtrain.compiler.passes.allocate import allocate
from axtrain.compiler.passes.canonical_qdq import canonical_qdq
from axtrain.compiler.passes.drop_identity import drop_identity
from axtrain.compiler.passes.emit import emit
from axtrain.compiler.passes.flatten_shapes import flatten_shapes
from axtrain.compiler.passes.float32_bound import float32_bound
from axtrain.compiler.passes.fold_constants import fold_constants
from axtrain.compiler.passes.fold_qdq import fold_qdq
from axtrain.compiler.passes.lower_qonnx import lower_qonnx
from axtrain.compiler.passes.tile_schedule import tile_schedule
from axtrain.compiler.passes.validate import validate
from axtrain.compiler.verify_ir import verify_ir
from axtrain.formats.arch import DEFAULT_ARCH, Architecture

Pass = Callable[[CompilerIR], CompilerIR]
Hook = Callable[[str, CompilerIR], None]

NORMALISATION: tuple[tuple[str, Pass], ...] = (
    ("fold_constants", fold_constants),
    ("lower_qonnx", lower_qonnx),
    ("flatten_shapes", flatten_shapes),
    ("canonical_qdq", canonical_qdq),
    ("drop_identity", drop_identity),
)

PASSES: tuple[tuple[str, Pass], ...] = (
    *NORMALISATION,
    ("host_tail", host_tail),
    ("validate", validate),
    ("fold_qdq", fold_qdq),
    ("float32_bound", float32_bound),
    ("tile_schedule", tile_schedule),
    ("allocate", allocate),
    ("emit", emit),
)


STAGES: tuple[str, ...] = ("import",) + tuple(name for name, _ in PASSES)


def run_passes(
    ir: CompilerIR, passes: tuple[tuple[str, Pass], ...] = PASSES, after: Hook | None = None, stop_after: str | None = None
) -> CompilerIR:
    """Apply the passes in order, verifying the IR after each; ``after(stage, ir)`` sees every
    verified IR (``import`` first); the list ends after the stage named ``stop_after``."""
    names = ("import",) + tuple(name for name, _ in passes)
    if stop_after is not None and stop_after not in names:
        raise ValueError(f"unknown compiler stage {stop_after!r}; stages: {', '.join(names)}")
    verify_ir(ir, "import")
    if after is not None:
        after("import", ir)
    if stop_after == "import":
        return ir
    for name, compiler_pass in passes:
        ir = compiler_pass(ir)
        verify_ir(ir, name)
        if after is not None:
            after(name, ir)
        if name == stop_after:
            break
    return ir


def compile_model(
    model_path: str | Path,
    arch: Architecture = DEFAULT_ARCH,
    after: Hook | None = None,
    stop_after: str | None = None,
    max_elements: int | None = None,
) -> CompilerIR:
    """ONNX file -> the compiled IR (program, images, layer table inputs), or the IR after
    ``stop_after``; ``after`` as in :func:`run_passes`. ``max_elements`` raises the model-size limits
    (:func:`axtrain.limits.model_element_limits`)."""
    return run_passes(import_onnx(model_path, arch, max_elements), after=after, stop_after=stop_after)


def compile_to_bundle(
    model_path: str | Path,
    out: str | Path,
    arch: Architecture = DEFAULT_ARCH,
    overwrite: bool = False,
    golden_count: int = 8,
    max_elements: int | None = None,
) -> Path:
    """ONNX file -> bundle directory (written atomically). Returns the bundle path."""

    return write_compiled_bundle(compile_model(model_path, arch, max_elements=max_elements), out, overwrite=overwrite, golden_count=golden_count)
