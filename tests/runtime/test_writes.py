"""Which copies of its words each fast-plan write stores (runtime/writes.py), and that no step
reads a word the batch did not write: stale buffers (a reused workspace, skipped stores) never
reach a result."""

from __future__ import annotations

import numpy as np
import pytest

from axtrain.runtime import execute
from axtrain.runtime.execute import FastExecutor, Workspace, place_inputs
from axtrain.runtime.faults import fault_regions, run_images
from axtrain.runtime.interpreter import run_program
from axtrain.runtime.plan import Pool, Requantize, Sync
from axtrain.runtime.writes import needed_copies

from .conftest import random_inputs


def test_a_drum_cnn_stores_the_values_a_pool_reads_and_the_transforms_a_distn_reads(bundle_factory) -> None:
    """conv -> maxpool -> conv under DRUM: the first conv's REQs feed only the pool (values, no
    transforms), the pool feeds only the second conv's DISTNs (transforms; values only when the
    layer outputs are collected: its SYNC reads them)."""
    bundle, _ = bundle_factory("cnn", "tiny", modes=("drum:2",))
    plan = FastExecutor(bundle.program, bundle.arch).plan
    steps = plan.steps
    pool = next(number for number, step in enumerate(steps) if isinstance(step, Pool))
    first_reqs = [number for number, step in enumerate(steps[:pool]) if isinstance(step, Requantize)]
    assert first_reqs and plan.codes == (2,)
    need = needed_copies(plan, collect=False)
    assert all(number in need.values and number not in need.transforms for number in first_reqs)
    assert pool in need.transforms and pool not in need.values
    collected = needed_copies(plan, collect=True)
    assert pool in collected.values and any(isinstance(step, Sync) for step in steps)
    assert need.values <= collected.values and need.transforms == collected.transforms


@pytest.mark.parametrize("kind, modes", [("cnn", ("drum:2",)), ("cnn", ("exact",)), ("mixed", ("exact",)), ("mlp", ("drum:3",))])
@pytest.mark.parametrize("collect", [False, True])
def test_poisoned_reused_buffers_give_the_interpreters_integers(bundle_factory, kind: str, modes: tuple[str, ...], collect: bool) -> None:
    """A workspace's buffers filled with NaN before the batch: any word read that the batch did not
    write (a store skipped for a form no one reads, or an earlier batch's word) would turn into a
    wrong integer. Two faulted runs, so that the shared and per-run buffers both hold words."""
    bundle, _ = bundle_factory(kind, "tiny", modes=modes, v=0.7)
    m = bundle.manifest
    dram = place_inputs(random_inputs(bundle, 9), m.input.format, m.input.dram, m.activation_words)
    images = run_images(bundle.weights, fault_regions(bundle.layers), 5, range(2))
    executor = FastExecutor(bundle.program, bundle.arch)
    assert executor.plan.fast
    prepared = executor.prepare(images, bundle.bias)
    space = Workspace()
    execute.run_plan(executor.plan, prepared, dram, bundle.arch, collect, workspace=space)  # the buffers exist
    space.fill(np.nan)
    stores, layers = execute.run_plan(executor.plan, prepared, dram, bundle.arch, collect, workspace=space)
    for run in range(2):
        reference = run_program(bundle.program, bundle.arch, images[run], bundle.bias, dram)
        final = dram.astype(np.int64).copy()
        for address, values in stores:
            final[:, address : address + values.shape[2]] = values[run]
        assert np.array_equal(final, reference.dram_a)
        if collect:
            assert layers.keys() == reference.layer_outputs.keys()
            assert all(np.array_equal(layers[key][run], reference.layer_outputs[key]) for key in layers)
