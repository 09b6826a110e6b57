"""The compiler IR as text, for people debugging a graph (``axtrain compile --dump-ir DIR``).

:func:`describe_ir` is a JSON-ready summary of every part of the IR that is present: the graph's
nodes, the layers (formats, shapes, modes, voltage, weight shape and sha256), the schedule, the
allocation and the emitted program (as its listing). :func:`dump_ir` writes one file per stage,
``NN-<stage>.json`` (and ``NN-<stage>.asm`` once a program exists), atomically. Pure apart from that.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from axtrain.atomic import write_json, write_text
from axtrain.compiler.ir import CompilerIR
from axtrain.compiler.package import listing_notes
from axtrain.formats.isa import listing


def _array(values: np.ndarray) -> dict[str, Any]:
    data = np.ascontiguousarray(values, dtype=np.int64)
    return {"shape": list(data.shape), "sha256": hashlib.sha256(data.tobytes()).hexdigest(), "min": int(data.min(initial=0)), "max": int(data.max(initial=0))}


def describe_ir(ir: CompilerIR) -> dict[str, Any]:
    """Every present part of ``ir`` as plain JSON values (arrays by shape, range and sha256)."""
    out: dict[str, Any] = {"source": ir.source_name, "source_sha256": ir.source_sha256, "model_info": dict(ir.model_info)}
    if ir.graph is not None:
        g = ir.graph
        out["graph"] = {
            "opset": g.opset,
            "inputs": [list(map(str, i[:2])) + [list(i[2])] for i in g.inputs],
            "outputs": [list(o) for o in g.outputs],
            "nodes": [{"name": n.name, "op": n.op, "inputs": list(n.inputs), "outputs": list(n.outputs), "metadata": dict(n.metadata)} for n in g.nodes],
            "initializers": {name: {"dtype": str(a.dtype), "shape": list(a.shape)} for name, a in g.initializers.items()},
        }
    if ir.layers is not None:
        assert ir.shapes is not None
        out["input_format"] = str(ir.input_format)
        out["layers"] = []
        for index, layer in enumerate(ir.layers):
            row: dict[str, Any] = {
                "index": index, "name": layer.name, "op": layer.op, "input_shape": list(ir.input_shape(index)), "output_shape": list(ir.shapes[index + 1]),
                "input_format": str(layer.input_format), "output_format": str(layer.output_format), "relu": layer.relu,
                "multipliers": sorted({str(m) for m in layer.multipliers}), "sram_voltage": layer.sram_voltage,
                "stride": layer.stride, "padding": layer.padding,
            }
            if layer.has_weights:
                assert layer.weight is not None and layer.bias is not None
                row.update(weight_format=str(layer.weight_format), weight=_array(layer.weight), bias=_array(layer.bias))
            out["layers"].append(row)
    if ir.schedule is not None:
        out["schedule"] = [dataclasses.asdict(s) for s in ir.schedule]
    if ir.allocation is not None:
        out["allocation"] = dataclasses.asdict(ir.allocation)
    if ir.emitted is not None:
        e = ir.emitted
        out["emitted"] = {"instructions": len(e.program), "layer_ranges": [list(r) for r in e.layer_ranges], "weight_image": _array(e.weight_image), "bias_image": _array(e.bias_image)}
    return out


def dump_ir(ir: CompilerIR, stage: str, index: int, directory: str | Path) -> list[Path]:
    """Write ``ir`` after ``stage`` (the ``index``-th stage) into ``directory``; returns the files."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    base = f"{index:02d}-{stage}"
    files = [write_json(root / f"{base}.json", describe_ir(ir))]
    if ir.emitted is not None and ir.layers is not None:
        notes = listing_notes([(layer.name, layer.op) for layer in ir.layers], ir.emitted.layer_ranges)
        files.append(write_text(root / f"{base}.asm", listing(ir.emitted.program, notes)))
    return files
