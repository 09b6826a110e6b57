"""The simulator against the trainer's torch emulation (the AxTrain-pas forward), bit for bit.

Closes the chain trainer emulation == hwmodels.forward == bundle execution directly, for drum:1..4
on two applications' topologies (and exact), with and without a fixed NTV fault map. Needs torch,
which the runtime itself never imports.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the trainer's emulation is written in torch; the runtime is not")

from axtrain.formats.bundle import load_bundle  # noqa: E402
from axtrain.runtime.execute import FastExecutor, output_integers, place_inputs  # noqa: E402

TOPOLOGIES = {"breast-cancer": (30, 64, 64, 2), "satimage": (36, 64, 64, 7)}


def _bundle_of(layers, shape, path: Path):
    from .conftest import compile_layers  # noqa: PLC0415

    return load_bundle(compile_layers(layers, shape, path))


def _execute(bundle, x: np.ndarray, image=None) -> np.ndarray:
    m = bundle.manifest
    executor = FastExecutor(bundle.program, bundle.arch)
    dram = place_inputs(x, m.input.format, m.input.dram, m.activation_words)
    final, _ = executor.run(executor.prepare(bundle.weights if image is None else image, bundle.bias), dram)
    return output_integers(bundle, final)


@pytest.mark.parametrize("app", sorted(TOPOLOGIES))
@pytest.mark.parametrize("mode", ["exact", "drum:1", "drum:2", "drum:3", "drum:4"])
def test_bundle_equals_trainer_emulation(app: str, mode: str, tmp_path: Path) -> None:
    from axtrain.trainer.emulation import emulate_integers
    from axtrain.trainer.hardware import calibrate
    from axtrain.trainer.models import mlp

    torch.manual_seed(7)
    model = mlp(TOPOLOGIES[app])
    x = torch.randn(200, TOPOLOGIES[app][0]) * 1.5
    layers = calibrate(model, x, multipliers=mode)
    bundle = _bundle_of(layers, (TOPOLOGIES[app][0],), tmp_path / "b")
    expected = emulate_integers(model, layers, x)[-1]
    got = _execute(bundle, x.numpy())
    assert np.array_equal(got, expected.reshape(got.shape))


def test_bundle_equals_trainer_emulation_with_faults(tmp_path: Path) -> None:
    """The same fault map applied to the bundle's weight image and in the emulation."""
    from axtrain.trainer.emulation import draw_fault_masks, emulate_integers, flip_bits
    from axtrain.trainer.hardware import calibrate
    from axtrain.trainer.models import lenet5

    torch.manual_seed(8)
    model = lenet5()
    x = torch.randn(6, 1, 28, 28)
    layers = calibrate(model, x, multipliers="drum:2", sram_voltage=0.5)
    bundle = _bundle_of(layers, (1, 28, 28), tmp_path / "lenet")
    weighted = [layer for layer in layers if layer.has_weights]
    masks = [draw_fault_masks(layer.weight.shape, layer.weight_format.bits, 0.05, torch.Generator().manual_seed(i)) for i, layer in enumerate(weighted)]

    class Fixed:
        def masks_for(self, layer):
            return masks[weighted.index(layer)]

    expected = emulate_integers(model, layers, x, faults=Fixed())[-1]
    image = bundle.weights.copy()
    records = [r for r in bundle.layers if r.weights is not None]
    for layer, mask, record in zip(weighted, masks, records):
        flipped = flip_bits(torch.tensor(layer.weight, dtype=torch.float32), mask, layer.weight_format.bits).numpy().astype(np.int64)
        image[record.weights.dram : record.weights.dram + record.weights.count] = flipped.reshape(-1)
    assert not np.array_equal(image, bundle.weights)
    got = _execute(bundle, x.numpy(), image)
    assert np.array_equal(got, expected.reshape(got.shape))
