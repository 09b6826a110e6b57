"""The whole artifact chain on trained networks of every application.

train (tiny) -> export -> onnx.checker -> compile -> verify -> ISA round trip -> simulate, and the
three implementations of the numerics compared on the whole test split:
- exact mode: the simulator's dumped outputs == onnxruntime running the exported ONNX, bit for bit;
- approximate modes: the simulator == the trainer's torch emulation with the same mode, bit for bit.

The four UCI applications run in the default suite; the two MNIST ones are slow-marked (10,000
test images each). Training is one epoch: the chain's numerics do not depend on how good a network is.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch", reason="the trainer side of the chain needs torch")

from axtrain.compiler.pipeline import compile_to_bundle  # noqa: E402
from axtrain.datasets import load  # noqa: E402
from axtrain.formats.bundle import load_bundle  # noqa: E402
from axtrain.formats.isa import assemble, disassemble  # noqa: E402
from axtrain.runtime.simulation import simulate  # noqa: E402
from axtrain.runtime.verify import verify_bundle  # noqa: E402
from axtrain.trainer.config import load_config  # noqa: E402
from axtrain.trainer.emulation import emulate  # noqa: E402
from axtrain.trainer.engine import train  # noqa: E402
from axtrain.trainer.export import bit_exact_session, export_run  # noqa: E402
from axtrain.trainer.hardware import with_target  # noqa: E402
from axtrain.trainer.rundir import load_layers, load_model  # noqa: E402

UCI = ["breast-cancer", "image-segmentation", "ionosphere", "satimage"]
MNIST = [pytest.param(app, marks=pytest.mark.slow) for app in ("mnist-mlp", "mnist-cnn")]
APPROX_APPS = ["breast-cancer", "satimage"]


def _chain(app: str, root: Path) -> tuple[Path, Path]:
    """Train one epoch, export and compile; returns (onnx path, bundle path)."""
    run = root / "run"
    train(load_config(None, app=app, method="bp", epochs=1, seed=0), run)
    model_path = export_run(run, root / "model.onnx")
    bundle = compile_to_bundle(model_path, root / "bundle")
    return model_path, bundle


@pytest.mark.parametrize("app", UCI + MNIST)
def test_chain_exact_mode_is_bit_identical_to_onnxruntime(app: str, tmp_path: Path) -> None:
    model_path, bundle_path = _chain(app, tmp_path)
    onnx.checker.check_model(onnx.load(str(model_path)), full_check=True)
    assert verify_bundle(bundle_path).output.ok
    program = (bundle_path / "program.bin").read_bytes()
    assert assemble(disassemble(program)) == program

    data = load(app, seed=0)
    ours = simulate(load_bundle(bundle_path), data.x_test, data.y_test, multiplier="exact").outputs
    theirs = bit_exact_session(model_path).run(None, {"input": data.x_test})[0]
    assert ours.dtype == theirs.dtype == np.float32
    assert ours.shape == theirs.shape
    mismatches = int(np.count_nonzero(ours.view(np.int32) != theirs.view(np.int32)))
    print(f"{app}: {ours.size} output values compared over {len(data.x_test)} test samples, {mismatches} mismatches")
    assert mismatches == 0


@pytest.mark.parametrize("app", APPROX_APPS)
def test_chain_approximate_modes_match_the_trainer_emulation(app: str, tmp_path: Path) -> None:
    _, bundle_path = _chain(app, tmp_path)
    bundle = load_bundle(bundle_path)
    layers, _ = load_layers(tmp_path / "run")
    model = load_model(tmp_path / "run")
    data = load(app, seed=0)
    for k in (1, 2, 3, 4):
        mode = f"drum:{k}"
        ours = simulate(bundle, data.x_test, data.y_test, multiplier=mode).outputs
        emulated = emulate(model, with_target(layers, mode), torch.from_numpy(data.x_test), exact=True).numpy()
        assert np.array_equal(ours, emulated.astype(np.float32)), mode
