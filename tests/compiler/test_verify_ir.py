"""compiler/verify_ir.py: the neuron-buffer replay after ``allocate`` (decision 190) catches a layer
that writes over a map kept for a later layer, and accepts what ``allocate`` lays out."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import mlperf_tiny
import onnx
import pytest

from axtrain.compiler.pipeline import compile_model
from axtrain.compiler.verify_ir import IRVerificationError, verify_ir
from axtrain.formats.arch import Architecture

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_a_layer_writing_over_a_kept_shortcut_is_caught(tmp_path: Path) -> None:
    path = tmp_path / "toy.onnx"
    onnx.save(mlperf_tiny.residual_toy(), path)
    ir = compile_model(path, Architecture(neuron_buffer_bytes=2 * 448), stop_after="allocate")
    assert ir.allocation is not None and ir.layers is not None
    verify_ir(ir, "allocate")  # what allocate made is consistent
    places = list(ir.allocation.layers)
    stem, second = places[0], places[2]  # the stem's map is kept for the add (layer 3) across layers 1 and 2
    assert ir.sources(3) == (0, 2) and not places[1].before and not second.before
    # Layer 2 writes its output over the stem's map (disjoint from its own input): the add would read garbage.
    places[2] = dataclasses.replace(second, nb_output=stem.nb_output)
    broken = ir.update(allocation=dataclasses.replace(ir.allocation, layers=tuple(places)))
    with pytest.raises(IRVerificationError, match="layer 3 reads layer 0's map where it was left or loaded"):
        verify_ir(broken, "allocate")
