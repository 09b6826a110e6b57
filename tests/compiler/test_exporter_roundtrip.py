"""The exporter's ONNX (trainer/export.py) compiles back into the very layer records it was built from,
including narrow formats (Clip), per-neuron modes and voltages; the bundle verifies."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from axtrain.compiler.package import write_compiled_bundle
from axtrain.compiler.pipeline import compile_model
from axtrain.hwmodels.fixedpoint import FixedPointFormat as F
from axtrain.hwmodels.layers import QuantizedLayer
from axtrain.hwmodels.multipliers import parse_mode
from axtrain.runtime.verify import verify_bundle
from axtrain.trainer.export import export_layers, save_model


def test_exported_layers_round_trip(tmp_path: Path, rng: np.random.Generator) -> None:
    modes = tuple(parse_mode(m) for m in ["drum:2"] * 3 + ["exact"] * 4)
    layers = [
        QuantizedLayer("conv", "conv", F(6, 3), F(6, 1), rng.integers(-32, 32, (4, 2, 3, 3)), F(6, 5), rng.integers(-300, 300, 4), relu=True, padding=1, sram_voltage=0.85),
        QuantizedLayer("pool", "maxpool", F(6, 1), F(6, 1), kernel=2, stride=2),
        QuantizedLayer("flat", "flatten", F(6, 1), F(6, 1)),
        QuantizedLayer("fc", "dense", F(6, 1), F(8, -1), rng.integers(-32, 32, (7, 4 * 3 * 3)), F(6, 5), rng.integers(-300, 300, 7), multipliers=modes, sram_voltage=0.66),
    ]
    path = tmp_path / "m.onnx"
    save_model(export_layers(layers, (2, 6, 7), {"app": "demo", "method": "axtrain", "seed": 4}), path)
    ir = compile_model(path)
    assert len(ir.layers) == len(layers)
    for original, imported in zip(layers, ir.layers):
        assert (imported.op, imported.input_format, imported.output_format, imported.relu) == (original.op, original.input_format, original.output_format, original.relu)
        assert (imported.stride, imported.padding, imported.sram_voltage) == (original.stride, original.padding, original.sram_voltage)
        if original.has_weights:
            assert imported.weight_format == original.weight_format
            np.testing.assert_array_equal(imported.weight, original.weight)
            np.testing.assert_array_equal(imported.bias, original.bias)
            assert imported.neuron_modes() == original.neuron_modes()
        else:
            assert imported.kernel == original.kernel or imported.op == "flatten"
    write_compiled_bundle(ir, tmp_path / "b")
    assert verify_bundle(tmp_path / "b").ok
    assert ir.model_info["app"] == "demo" and ir.model_info["schema"] == "1"
