"""`simulate --fault-map-out/--fault-map-in`: an NTV run's flip masks written and replayed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "bringup"))

from nets import cnn_layers, compile_bundle, export  # noqa: E402

from axtrain.cli import main  # noqa: E402
from axtrain.formats.bundle import Bundle, load_bundle  # noqa: E402
from axtrain.runtime.faultmap import apply_masks, flip_masks  # noqa: E402
from axtrain.runtime.faults import fault_regions, run_image  # noqa: E402


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    root = tmp_path_factory.mktemp("faultmap")
    layers, shape = cnn_layers()
    return load_bundle(compile_bundle(export(layers, shape, root / "m.onnx"), root / "b"))


def run(args: list, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as stop:
        code = int(stop.code or 0)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_masks_reproduce_the_drawn_images(bundle: Bundle) -> None:
    regions = fault_regions(bundle.layers, 0.5)
    masks = flip_masks(bundle, regions, seed=7, runs=3)
    assert masks.any() and not (masks >> 8).any()  # weights are stored in 8 bits: nothing above flips
    images = apply_masks(bundle.weights, regions, masks)
    for r in range(3):
        assert np.array_equal(images[r], run_image(bundle.weights, regions, 7, r))


@pytest.mark.parametrize("suffix", [".npy", ".hex"])
def test_replay_gives_the_same_runs(bundle: Bundle, suffix: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.uniform(-8, 8, size=(40, 2, 9, 9)).astype(np.float32))
    np.save(tmp_path / "y.npy", rng.integers(0, 7, size=40))
    common = [bundle.path, "--inputs", tmp_path / "x.npy", "--labels", tmp_path / "y.npy", "--sram-voltage", "0.5"]
    fm = tmp_path / f"map{suffix}"
    code, out = run(["simulate", *common, "--runs", "4", "--seed", "3", "--fault-map-out", fm, "--report", tmp_path / "a.json"], capsys)
    assert code == 0, out
    if suffix == ".hex":
        assert len(fm.read_text().splitlines()) == 4 * bundle.weights.size
    code, out = run(["simulate", *common, "--fault-map-in", fm, "--report", tmp_path / "b.json"], capsys)
    assert code == 0, out
    a, b = (json.loads((tmp_path / n).read_text()) for n in ("a.json", "b.json"))
    assert b["config"]["runs"] == 4 and b["config"]["fault_map"]["source"] == "file"
    assert a["accuracy"]["per_run"] == b["accuracy"]["per_run"]
    assert len(set(a["accuracy"]["per_run"])) > 1  # the runs really are different chips


def test_bad_maps_are_refused(bundle: Bundle, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    np.save(tmp_path / "x.npy", np.zeros((2, 2, 9, 9), np.float32))
    masks = np.zeros((1, bundle.weights.size), np.int64)
    masks[0, 5] = 0x100  # bit 8 of an 8-bit stored weight
    np.save(tmp_path / "m.npy", masks)
    code, out = run(["simulate", bundle.path, "--inputs", tmp_path / "x.npy", "--fault-map-in", tmp_path / "m.npy"], capsys)
    assert code == 2 and "run 0 word 5 flips bits 0x100 outside the stored bits (mask 0xff)" in out
    np.save(tmp_path / "m.npy", np.zeros((2, bundle.weights.size), np.int64))
    code, out = run(["simulate", bundle.path, "--inputs", tmp_path / "x.npy", "--fault-map-in", tmp_path / "m.npy", "--runs", "3"], capsys)
    assert code == 2 and "holds 2 runs, --runs is 3" in out
