"""Simulate a bundle: numerics over many images and Monte Carlo runs, cycles, events and energy.

    >>> from axtrain.formats.bundle import load_bundle
    >>> from axtrain.runtime.simulation import simulate
    >>> result = simulate(load_bundle("bc.bundle"), x_test, y_test, multiplier="drum:2", sram_voltage=0.66, runs=50)
    >>> result.accuracy_mean, result.energy.total_joules, result.events.cycles

Numerics execute the bundle's instruction stream over its memory images (runtime/execute.py), never
the ONNX graph. Run ``i`` draws its NTV fault map from ``SeedSequence([seed, i])``
(runtime/faults.py). Cycles and events do not depend on data, so they are computed once
(runtime/simulator.py) and priced once (runtime/energy.py).
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from axtrain.errors import BundleError, ConfigError
from axtrain.formats.arch import Architecture
from axtrain.formats.bundle import Bundle
from axtrain.hwmodels.multipliers import MultiplierMode
from axtrain.hwmodels.ntv import bit_error_rate
from axtrain.hwmodels.technology import DEFAULT_65NM, TechnologyTable
from axtrain.runtime.beside import beside
from axtrain.runtime.energy import EnergyBreakdown, price
from axtrain.runtime.events import Events, plan_context
from axtrain.runtime.execute import DEFAULT_CHUNK, WORKERS, Executor, FastExecutor, output_floats, place_inputs
from axtrain.runtime.faults import FaultRegion, fault_regions, has_faults, run_image, run_images
from axtrain.runtime.host_tail import apply_tail, output_metrics_runs, tail_ops
from axtrain.runtime.overrides import Overrides, RunPlan, bundle_plan
from axtrain.runtime.simulator import simulate_fast, simulate_machine
from axtrain.runtime.timing import MachineRun


@dataclass(frozen=True)
class SimulationResult:
    """What :func:`simulate` measured."""

    outputs: np.ndarray  # float32 outputs of run 0, one row per input (the ONNX model's values, host tail applied)
    predictions: np.ndarray  # [runs, n] argmax class per run
    per_run_accuracy: tuple[float, ...] | None  # None without labels
    events: Events  # the whole batch (one inference at batch 1)
    energy: EnergyBreakdown  # per inference at the batch (the batch's joules / batch)
    mode_override: MultiplierMode | None
    sram_voltage: float | None
    regions: tuple[FaultRegion, ...]
    runs: int
    seed: int
    per_run_output_error: tuple[dict[str, float], ...] | None = None  # None without labels (runtime/host_tail.py)
    machine: MachineRun | None = None  # the batch's events per layer and first-inference latency (runtime/timing.py)

    @property
    def accuracy_mean(self) -> float | None:
        return None if self.per_run_accuracy is None else float(np.mean(self.per_run_accuracy))


def check_inputs(bundle: Bundle, inputs: np.ndarray, labels: np.ndarray | None = None, where: str = "inputs") -> tuple[np.ndarray, np.ndarray | None]:
    """Inputs as float32 shaped ``[n, *input shape]`` and labels as int64 ``[n]`` (one-line errors)."""
    x = np.asarray(inputs)
    expected = tuple(bundle.manifest.input.shape)
    if not np.issubdtype(x.dtype, np.floating):
        raise ConfigError(f"{where}: expected float32 values, got dtype {x.dtype}")
    if x.ndim == len(expected):  # a single sample
        x = x[None]
    if tuple(x.shape[1:]) != expected or x.shape[0] == 0:
        built = f" (the bundle was built for {bundle.manifest.app})" if bundle.manifest.app else ""
        raise ConfigError(f"{where}: shape {tuple(x.shape)} does not match the bundle's input shape [N, {', '.join(map(str, expected))}]{built}")
    if not np.all(np.isfinite(x)):
        raise ConfigError(f"{where}: contains NaN or infinite values")
    y = None
    if labels is not None:
        y = np.asarray(labels)
        if y.ndim != 1 or y.shape[0] != x.shape[0] or not np.issubdtype(y.dtype, np.integer):
            raise ConfigError(f"labels: expected {x.shape[0]} integer class indices, got dtype {y.dtype} shape {tuple(y.shape)}")
        y = y.astype(np.int64)
        n_classes = int(np.prod(bundle.manifest.output.shape))
        if y.size and (int(y.min()) < 0 or int(y.max()) >= n_classes):
            raise ConfigError(f"labels: class indices must lie in [0, {n_classes - 1}] (the bundle has {n_classes} outputs), got {int(y.min())}..{int(y.max())}")
    return x.astype(np.float32, copy=False), y


def parse_override(multiplier: str | MultiplierMode | None, sram_voltage: float | None) -> tuple[MultiplierMode | None, float | None]:
    """Validate the overrides (unknown mode or voltage outside the NTV model -> one-line error);
    the typed values of :meth:`Overrides.parse`."""
    overrides = Overrides.parse(multiplier, sram_voltage)
    return overrides.multiplier, overrides.sram_voltage


def plan_events(plan: RunPlan, arch: Architecture) -> Events:
    """Cycle and event counts of one inference of a run plan (data independent)."""
    return simulate_fast(plan.program, arch, plan_context(plan, arch))


def plan_machine(plan: RunPlan, arch: Architecture, batch: int = 1) -> MachineRun:
    """Cycle and event counts of a batch of a run plan, per layer and in total (data independent)."""
    return simulate_machine(plan.program, arch, plan_context(plan, arch), batch)


def bundle_events(bundle: Bundle, mode: MultiplierMode | None, sram_voltage: float | None) -> Events:
    """Cycle and event counts of one inference of ``bundle`` under the given overrides."""
    return plan_events(bundle_plan(bundle, Overrides(mode, sram_voltage)), bundle.arch)


#: Programs from this many instructions run their machine model in a forked child, beside the
#: numerics (ResNet-8's 3,399 take ~0.16-0.2 CPU s; a fork and its copy-on-write faults ~0.05-0.1 s).
BESIDE_MIN_INSTRUCTIONS = 1000

RUN_WEIGHT_WORDS = 1 << 24  # weight words (all runs of one pass together) held as float32 at once


def runs_per_pass(weight_words: int, runs: int) -> int:
    """How many Monte Carlo runs one executor pass takes (their stacked weights stay ~64 MiB)."""
    return max(1, min(runs, RUN_WEIGHT_WORDS // max(1, weight_words)))


#: Runs whose metrics are computed together. One: a run's class-major float64 temporaries (~0.8 MB
#: for 10,000 inputs of 10 classes) stay in L2; eight runs' did not and cost 2x a run.
METRIC_RUNS = 1


def _classes_and_metrics(bundle: Bundle, q: np.ndarray, labels: np.ndarray | None, tail: list[str], predictions: np.ndarray) -> list[dict[str, float]]:
    """The decided class of every run and input of a pass (``q`` ``[runs, n, outputs]``), written to
    ``predictions`` ``[runs, n]``, and with labels each run's output-error metrics, in run order:
    :func:`~axtrain.runtime.host_tail.output_metrics_runs` on groups of :data:`METRIC_RUNS` runs, the
    groups in the executor's worker threads (numpy releases the GIL; a 10-class argmax over 10,000
    inputs costs ~0.4 ms a run). The floats are those of one ``output_metrics`` call per run
    (tests/runtime/test_multirun.py)."""
    starts = range(0, q.shape[0], METRIC_RUNS)

    def group(start: int) -> list[dict[str, float]]:
        part = q[start : start + METRIC_RUNS].reshape(-1, q.shape[1], q.shape[-1])
        predictions[start : start + METRIC_RUNS] = np.argmax(part, axis=2)
        if labels is None:
            return []
        z = output_floats(bundle, part.reshape(-1, q.shape[-1]))
        return output_metrics_runs(z.reshape(part.shape), labels, tail)

    if WORKERS > 1 and len(starts) > 1:
        with ThreadPoolExecutor(min(WORKERS, len(starts))) as pool:
            return [metrics for part in pool.map(group, starts) for metrics in part]
    return [metrics for start in starts for metrics in group(start)]


def simulate(
    bundle: Bundle,
    inputs: np.ndarray,
    labels: np.ndarray | None = None,
    multiplier: str | MultiplierMode | None = None,
    sram_voltage: float | None = None,
    runs: int = 1,
    seed: int = 0,
    tech: TechnologyTable = DEFAULT_65NM,
    chunk: int | None = DEFAULT_CHUNK,
    weight_images: np.ndarray | None = None,
    batch: int = 1,
) -> SimulationResult:
    """Run the bundle over ``inputs`` ``runs`` times (one NTV fault map per run) and account for it.

    ``weight_images`` (``[runs, weight words]``) replaces the drawn fault maps: a replayed chip
    (runtime/faultmap.py, ``simulate --fault-map-in``). ``batch``: inferences the machine runs back to
    back with resident weights loaded once (latency, events and energy per inference at that batch;
    the outputs do not depend on it)."""
    if not isinstance(runs, int) or runs < 1:
        raise ConfigError(f"--runs must be a positive integer, got {runs!r}")
    if not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"--seed must be a non-negative integer, got {seed!r}")
    x, y = check_inputs(bundle, inputs, labels)
    overrides = Overrides.parse(multiplier, sram_voltage)  # the API's edge: text becomes typed values
    plan = bundle_plan(bundle, overrides)  # the one rewrite; everything below reads only the plan
    regions = tuple(fault_regions(plan.layers))
    if not isinstance(batch, int) or batch < 1:
        raise ConfigError(f"--batch must be a positive integer, got {batch!r}")
    # The machine model (cycles, events) depends on the program only: it runs in a forked child on
    # the other core while this process builds the plan and runs the numerics (runtime/beside.py,
    # decision 180); a small program's machine model costs less than the fork, so it runs here.
    fork = None if len(plan.program) >= BESIDE_MIN_INSTRUCTIONS else False
    with beside(lambda: plan_machine(plan, bundle.arch, batch), "the machine model (cycles and events)", fork) as machine_job:
        first_outputs, predictions, output_error, faulty = _numerics(bundle, plan, x, y, regions, runs, seed, chunk, weight_images)
        machine = machine_job.result()
    events = machine.total
    energy = price(events, tech, bundle.arch).scaled(1.0 / batch)
    if not faulty:
        predictions = np.broadcast_to(predictions, (runs, x.shape[0]))
    pred = predictions
    per_run = None if y is None else tuple(float(np.mean(p == y)) for p in pred)
    per_run_error = None if y is None else tuple(output_error if faulty else output_error * runs)
    return SimulationResult(
        first_outputs, pred, per_run, events, energy, overrides.multiplier, overrides.sram_voltage, regions, runs, seed, per_run_error, machine
    )


def _numerics(
    bundle: Bundle,
    plan: RunPlan,
    x: np.ndarray,
    y: np.ndarray | None,
    regions: tuple[FaultRegion, ...],
    runs: int,
    seed: int,
    chunk: int | None,
    weight_images: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, list[dict[str, float]], bool]:
    """The outputs of run 0 (host tail applied), the class index per distinct run and input, the
    output metrics per run (with labels) and whether any run has faults (else one run stands for all)."""
    m = bundle.manifest
    executor: Executor = FastExecutor(plan.program, bundle.arch)
    # float32 when exact (it is for inputs of at most 24 bits): converted once, not once per run.
    dram = place_inputs(x, m.input.format, m.input.dram, m.activation_words, dtype=np.float32)
    region = (m.output.dram, int(np.prod(m.output.shape)))
    faulty = has_faults(regions) or weight_images is not None
    if weight_images is not None and weight_images.shape != (runs, bundle.weights.size):
        raise ConfigError(f"replayed weight images have shape {list(weight_images.shape)}, expected [{runs}, {bundle.weights.size}]")
    distinct = runs if faulty else 1  # no bit can flip: every run is the same chip, computed once
    # What grows with the runs is this one class index per run and input, so it is kept small (one
    # byte for up to 256 classes); everything else runs in passes of bounded size.
    classes = int(np.prod(m.output.shape))
    predictions = np.empty((distinct, x.shape[0]), dtype=np.uint8 if classes <= 256 else np.int64)
    first_outputs = None
    tail = tail_ops(bundle)
    output_error: list[dict[str, float]] = []
    group = runs_per_pass(bundle.weights.size, distinct)
    for first in range(0, distinct, group):
        # Several runs at once: their weight images stacked, the run-invariant work (the first
        # layer's activations) shared, the first layer one GEMM for all of them (runtime/execute.py).
        count = min(group, distinct - first)
        if weight_images is not None:
            images = weight_images[first : first + count]
        elif count == 1:  # one run: the image itself, no copy
            images = run_image(bundle.weights, regions, seed, first)[None]
        else:  # drawn in threads, straight into one stacked array
            images = run_images(bundle.weights, regions, seed, range(first, first + count), WORKERS)
        q, _ = executor.run_many(executor.prepare(images, bundle.bias, bundle.requant), dram, chunk=chunk, region=region)
        if first_outputs is None:
            first_outputs = apply_tail(tail, output_floats(bundle, q[0]))
        output_error.extend(_classes_and_metrics(bundle, q, y, tail, predictions[first : first + count]))
    assert first_outputs is not None
    return first_outputs, predictions, output_error, faulty


def array_sha256(array: np.ndarray) -> str:
    """sha256 of an array's dtype, shape and bytes (identifies inputs without naming files)."""
    a = np.ascontiguousarray(array)
    digest = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    digest.update(a.tobytes())
    return digest.hexdigest()


def _modes_summary(multipliers: Sequence[str]) -> str | list[str]:
    modes = sorted(set(multipliers))
    return modes[0] if len(modes) == 1 else modes


def layer_settings(bundle: Bundle, mode: MultiplierMode | None, voltage: float | None) -> list[dict[str, Any]]:
    """Per compute layer: the multiplier(s) and weight-SRAM voltage in effect, beside the bundle's."""
    plan = bundle_plan(bundle, Overrides(mode, voltage))
    rows = []
    for own, layer in zip(bundle.layers, plan.layers, strict=True):
        if layer.weights is None:
            continue
        rows.append({
            "layer": layer.name,
            "multiplier": _modes_summary(layer.multipliers),
            "bundle_multiplier": _modes_summary(own.multipliers),
            "sram_voltage": layer.sram_voltage,
            "bundle_sram_voltage": own.sram_voltage,
            "bit_error_rate": bit_error_rate(layer.sram_voltage),
        })
    return rows


def check_bundle_runnable(bundle: Bundle) -> None:
    """A bundle the runtime can simulate has at least one layer and a known output placement."""
    if not bundle.layers:
        raise BundleError(f"{bundle.path}: the layer table is empty")
