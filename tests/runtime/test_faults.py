"""NTV Monte Carlo seeding and fault-map placement."""

from __future__ import annotations

import numpy as np

from axtrain.hwmodels.fixedpoint import FixedPointFormat
from axtrain.runtime.faults import fault_regions, has_faults, run_image
from axtrain.runtime.simulation import simulate


def _labelled(bundle, n=40, seed=2):
    fmt = FixedPointFormat.parse(bundle.manifest.input.format)
    rng = np.random.default_rng(seed)
    x = rng.uniform(fmt.qmin * fmt.scale, fmt.qmax * fmt.scale, size=(n, *bundle.manifest.input.shape)).astype(np.float32)
    return x, rng.integers(0, bundle.manifest.output.shape[0], size=n)


def test_same_seed_same_runs_and_run_i_independent_of_n(bundle_factory) -> None:
    bundle, _ = bundle_factory("mlp", "default")
    x, y = _labelled(bundle)
    five = simulate(bundle, x, y, sram_voltage=0.5, runs=5, seed=11)
    again = simulate(bundle, x, y, sram_voltage=0.5, runs=5, seed=11)
    three = simulate(bundle, x, y, sram_voltage=0.5, runs=3, seed=11)
    other = simulate(bundle, x, y, sram_voltage=0.5, runs=3, seed=12)
    assert np.array_equal(five.predictions, again.predictions) and five.per_run_accuracy == again.per_run_accuracy
    assert np.array_equal(five.predictions[:3], three.predictions)
    assert np.array_equal(five.outputs, three.outputs)
    assert not np.array_equal(three.predictions, other.predictions)
    assert len({tuple(p) for p in five.predictions}) > 1  # runs are different chips


def test_fault_maps_stay_inside_each_layers_words_and_format(bundle_factory) -> None:
    bundle, _ = bundle_factory("cnn", "default")
    regions = fault_regions(bundle.layers, 0.4)
    image = run_image(bundle.weights, regions, seed=0, run=0)
    changed = np.flatnonzero(image != bundle.weights)
    assert changed.size > 0
    for region in regions:
        words = image[region.start : region.start + region.count]
        low, high = -(1 << (region.bits - 1)), (1 << (region.bits - 1)) - 1
        assert words.min() >= low and words.max() <= high  # only the format's b stored bits flip
    covered = np.zeros(image.size, dtype=bool)
    for region in regions:
        covered[region.start : region.start + region.count] = True
    assert covered[changed].all()
    # Rate check: 10 % per stored bit at 0.4 V; > 3000 bits here, so within 5 standard deviations.
    bits = sum(r.count * r.bits for r in regions)
    flips = int(np.unpackbits(((image ^ bundle.weights) & 0xFF).astype(np.uint8)).sum())  # the 8 stored bits
    assert abs(flips - 0.1 * bits) < 5 * np.sqrt(bits * 0.1 * 0.9)


def test_nominal_voltage_has_no_faults_and_runs_are_identical(bundle_factory) -> None:
    bundle, _ = bundle_factory("mlp", "default")
    regions = fault_regions(bundle.layers)
    assert not has_faults(regions)
    assert np.array_equal(run_image(bundle.weights, regions, 3, 4), bundle.weights)
    x, y = _labelled(bundle)
    result = simulate(bundle, x, y, runs=4)
    assert len(set(result.per_run_accuracy)) == 1 and result.predictions.shape == (4, len(x))


def test_run_images_in_threads_equal_run_image_per_run(bundle_factory) -> None:
    """The stacked, threaded draw gives every run's image bit for bit (any worker count, any first
    run), and the clean image per row when nothing can flip."""
    from axtrain.runtime.faults import run_images

    bundle, _ = bundle_factory("cnn", "default")
    regions = fault_regions(bundle.layers, 0.45)
    expected = np.stack([run_image(bundle.weights, regions, 5, run) for run in range(3, 10)])
    assert len({row.tobytes() for row in expected}) == 7
    for workers in (1, 2, 3):
        got = run_images(bundle.weights, regions, 5, range(3, 10), workers)
        assert got.dtype == np.int64 and np.array_equal(got, expected), workers
    clean = run_images(bundle.weights, fault_regions(bundle.layers), 5, range(2), 2)
    assert np.array_equal(clean, np.stack([bundle.weights, bundle.weights]))
