"""What each kind of cell does. ``TASKS[kind](ctx) -> result`` (a JSON-ready dict).

Results hold paths relative to the reproduction folder, so the folder can be moved. The trainer,
exporter, compiler and runtime are used through their public APIs only:

* ``train``: :func:`axtrain.trainer.engine.train` into ``<cell>/run`` (resumes from its checkpoint
  if the cell was interrupted), started from a dep's weights when the cell has one;
* ``evaluate``: :func:`axtrain.trainer.evaluate.evaluate` per multiplier mode (Fig. 6's output error);
* ``approxann``: :func:`axtrain.trainer.approxann.run_approxann` with the profile's retraining budget,
  its per-neuron-mode network exported with :func:`axtrain.trainer.export.export_layers`;
* ``bundle``: :func:`axtrain.trainer.export.export_run` + :func:`axtrain.compiler.pipeline.compile_to_bundle`;
* ``simulate``: :func:`axtrain.runtime.simulation.simulate` (accuracy over NTV runs, energy, power);
* ``sensitivity``: :func:`axtrain.trainer.sensitivity_maps.last_layer_sensitivity` (Fig. 4);
* ``explore``: :func:`axtrain.explore.search.explore` (Fig. 9's per-layer plans).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from axtrain.hwmodels.ntv import NOMINAL_VOLTAGE
from axtrain.reproduce.cells import Cell, CellStore


@dataclass
class TaskContext:
    """A cell being run: its definition, its deps' results (in ``cell.deps`` order) and the store."""

    cell: Cell
    deps: list[dict[str, Any]]
    store: CellStore

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.cell.params)

    @property
    def workdir(self) -> Path:
        return self.store.workdir(self.cell.key)

    def path(self, relative: str) -> Path:
        return self.store.absolute(relative)


def _subset(n: int, keep: int | None, seed: int, salt: int) -> np.ndarray | None:
    """Sorted indices of a seeded subset of ``keep`` of ``n`` rows (None: keep all)."""
    if keep is None or keep >= n:
        return None
    return np.sort(np.random.default_rng([seed, salt]).permutation(n)[:keep])


def _data(app: str, seed: int, data: dict[str, Any] | None = None, test: bool = False):
    """The split of (app, seed), subsampled as the profile says: ``train_subset`` always,
    ``test_subset`` only where ``test`` (runtime simulations)."""
    # a worker loads only the tools of the task it runs; the driver never imports torch
    from types import SimpleNamespace

    # a worker loads only the tools of the task it runs; the driver never imports torch
    from axtrain.datasets import load

    split = load(app, seed)
    data = data or {}
    train_idx = _subset(len(split.y_train), data.get("train_subset"), seed, 1)
    test_idx = _subset(len(split.y_test), data.get("test_subset"), seed, 2) if test else None
    if train_idx is None and test_idx is None:
        return split
    x_train, y_train = np.asarray(split.x_train), np.asarray(split.y_train)
    x_test, y_test = np.asarray(split.x_test), np.asarray(split.y_test)
    if train_idx is not None:
        x_train, y_train = x_train[train_idx], y_train[train_idx]
    if test_idx is not None:
        x_test, y_test = x_test[test_idx], y_test[test_idx]
    return SimpleNamespace(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)


def _load_network(ctx: TaskContext, dep: dict[str, Any]):
    # a worker loads only the tools of the task it runs; the driver never imports torch
    from axtrain.trainer.engine import load_result

    return load_result(ctx.path(dep["run"]))


def train_task(ctx: TaskContext) -> dict[str, Any]:
    # a worker loads only the tools of the task it runs; the driver never imports torch
    from axtrain.trainer.config import make_config
    from axtrain.trainer.engine import train
    from axtrain.trainer.rundir import load_model

    config = make_config(ctx.params["config"], f"cell {ctx.cell.name}")
    start = load_model(ctx.path(ctx.deps[0]["run"])) if ctx.deps else None
    run = ctx.workdir / "run"
    data = _data(config.app, config.seed, ctx.params.get("data"))
    result = train(config, out=run, model=start, data=data)
    return {"run": ctx.store.relative(run), "summary": result.summary, "epochs": len(result.history)}


def evaluate_task(ctx: TaskContext) -> dict[str, Any]:
    # a worker loads only the tools of the task it runs; the driver never imports torch
    import torch

    # a worker loads only the tools of the task it runs; the driver never imports torch
    from axtrain.trainer.evaluate import evaluate

    p = ctx.params
    network = _load_network(ctx, ctx.deps[0])
    data = _data(p["app"], p["seed"], p.get("data"))
    x = torch.as_tensor(np.asarray(data.x_test), dtype=torch.float32)
    y = torch.as_tensor(np.asarray(data.y_test), dtype=torch.long)
    out = {}
    for mode in p["modes"]:
        multiplier = p.get("multipliers", {}).get(mode, mode)  # a --k-map maps K names to other DRUM k
        e = evaluate(network.model, network.layers, x, y, multiplier=multiplier, sram_voltage=NOMINAL_VOLTAGE, output_layer=network.config.output_layer)
        out[mode] = {"accuracy": e.accuracy, "output_error": e.output_error, "metrics": e.metrics}
    return {"modes": out, "n_test": int(y.shape[0]), "output_layer": network.config.output_layer}


def approxann_task(ctx: TaskContext) -> dict[str, Any]:
    # a worker loads only the tools of the task it runs; the driver never imports torch
    import torch

    # a worker loads only the tools of the task it runs; the driver never imports torch
    from axtrain.trainer.approxann import ApproxAnnConfig, run_approxann
    from axtrain.trainer.evaluate import evaluate
    from axtrain.trainer.export import export_layers, save_model
    from axtrain.trainer.hardware import calibrate

    p = ctx.params
    network = _load_network(ctx, ctx.deps[0])
    c = network.config
    data = _data(p["app"], p["seed"], p.get("data"))
    x_train = torch.as_tensor(np.asarray(data.x_train), dtype=torch.float32)
    layers = calibrate(network.model, x_train, c.hardware.bits_w, c.hardware.bits_a, multipliers="exact")
    cfg = ApproxAnnConfig(budget=p["budget"], retrain_epochs=p["retrain_epochs"], max_rounds=p["max_rounds"], output_layer=c.output_layer)
    result = run_approxann(network.model, layers, data, mode=p["mode"], seed=p["seed"], config=cfg)
    x = torch.as_tensor(np.asarray(data.x_test), dtype=torch.float32)
    y = torch.as_tensor(np.asarray(data.y_test), dtype=torch.long)
    test = evaluate(result.model, result.layers, x, y, output_layer=c.output_layer)
    test_exact = evaluate(network.model, layers, x, y, multiplier="exact", output_layer=c.output_layer)
    onnx_path = ctx.workdir / "model.onnx"
    metadata = {"app": p["app"], "method": f"approxann-{c.method}", "seed": p["seed"]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # precision notes are recorded in the ONNX file itself
        save_model(export_layers(result.layers, tuple(x.shape[1:]), metadata, output_layer=c.output_layer), onnx_path)
    summary = result.summary()
    summary.pop("rounds")
    return {
        **summary,
        "rounds": len(result.rounds),
        "test_accuracy": test.accuracy,
        "test_accuracy_start_exact": test_exact.accuracy,
        "onnx": ctx.store.relative(onnx_path),
    }


def bundle_task(ctx: TaskContext) -> dict[str, Any]:
    # a worker loads only the tools of the task it runs; the driver never imports torch
    from axtrain.compiler.pipeline import compile_to_bundle
    from axtrain.trainer.export import export_run

    dep = ctx.deps[0]
    if "onnx" in dep:
        onnx_path = ctx.path(dep["onnx"])
    else:
        onnx_path = ctx.workdir / "model.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            export_run(ctx.path(dep["run"]), onnx_path)
    bundle = compile_to_bundle(onnx_path, ctx.workdir / "bundle", overwrite=True)
    return {"bundle": ctx.store.relative(bundle), "onnx": ctx.store.relative(onnx_path)}


def power_summary(result: Any) -> dict[str, Any]:
    """Accuracy, cycles, energy and the power Fig. 9 plots, from one :class:`SimulationResult`."""
    per_run = np.asarray(result.per_run_accuracy, dtype=np.float64)
    e = result.energy
    seconds = e.seconds
    # Storage power = the on-chip SRAM buffers (weight + neuron buffer, dynamic + leakage): what NTV
    # scaling acts on, as in the paper. DRAM and PE local memories are in the breakdown, not in it.
    storage = e.sram_joules
    return {
        "accuracy_mean": float(per_run.mean()),
        "accuracy_std": float(per_run.std()),  # over the NTV runs (ddof=0)
        "accuracy_per_run": [float(a) for a in per_run],
        "runs": int(len(per_run)),
        "cycles": int(result.events.cycles),
        "seconds": seconds,
        "energy": {
            "compute_j": e.compute_joules,
            "multiplier_j": e.multiplier_joules,
            "storage_dynamic_j": e.storage_joules,
            "leakage_j": e.leakage_joules,
            "sram_j": storage,
            "dram_j": e.storage.get("dram", 0.0),
            "total_j": e.total_joules,
        },
        "breakdown": e.as_dict()["breakdown"],
        "compute_power_w": e.compute_joules / seconds if seconds else 0.0,
        "storage_power_w": storage / seconds if seconds else 0.0,
        "power_w": e.power_watts,
    }


def simulate_task(ctx: TaskContext) -> dict[str, Any]:
    # a worker loads only the tools of the task it runs; the driver never imports torch
    from axtrain.formats.bundle import load_bundle
    from axtrain.runtime.simulation import simulate

    p = ctx.params
    bundle = load_bundle(ctx.path(ctx.deps[0]["bundle"]))
    data = _data(p["app"], p["seed"], p.get("data"), test=True)
    x = np.asarray(data.x_test, dtype=np.float32)
    y = np.asarray(data.y_test, dtype=np.int64)
    result = simulate(bundle, x, y, multiplier=p["multiplier"], sram_voltage=p["sram_voltage"], runs=p["runs"], seed=p["seed"])
    return power_summary(result)


def sensitivity_task(ctx: TaskContext) -> dict[str, Any]:
    # a worker loads only the tools of the task it runs; the driver never imports torch
    import torch

    # a worker loads only the tools of the task it runs; the driver never imports torch
    from axtrain.trainer.sensitivity_maps import last_layer_sensitivity

    p = ctx.params
    data = _data(p["app"], p["seed"], p.get("data"))
    x = torch.as_tensor(np.asarray(data.x_train), dtype=torch.float32)[:1024]
    maps = {}
    for name, dep in zip(p["names"], ctx.deps, strict=True):
        network = _load_network(ctx, dep)
        # The raw |w| |dO/dw| (not divided by its own maximum): Fig. 4 draws every map on one shared
        # scale, so the maps' magnitudes can be compared, and the relative shape is one division away.
        raw = last_layer_sensitivity(network.model, x, relative=False, output_layer=network.config.output_layer)
        maps[name] = raw.tolist()
    return {"maps": maps, "samples": int(x.shape[0]), "scale": "absolute"}


def explore_task(ctx: TaskContext) -> dict[str, Any]:
    """Fig. 9's heterogeneous plan: :func:`axtrain.explore.search.explore` on deps[0]'s bundle.

    Selection data: a stratified validation part of the (subsampled) training split, as
    ``axtrain explore`` uses, capped at ``selection_cap`` samples; the budget is ``max_loss`` below
    the exact, nominal accuracy of deps[1]'s bundle (BP's) on the same selection data. The chosen plan
    and the best uniform plan are then measured once on the test split like a ``simulate`` cell.
    """
    # a worker loads only the tools of the task it runs; the driver never imports torch
    from axtrain.compiler.replan import apply_plan
    from axtrain.datasets.split import split_validation
    from axtrain.explore.search import explore
    from axtrain.formats.bundle import load_bundle
    from axtrain.runtime.simulation import simulate

    p = ctx.params
    bundle = load_bundle(ctx.path(ctx.deps[0]["bundle"]))
    reference = load_bundle(ctx.path(ctx.deps[1]["bundle"]))
    data = _data(p["app"], p["seed"], p.get("data"), test=True)
    _, _, x_sel, y_sel = split_validation(np.asarray(data.x_train), np.asarray(data.y_train), p["selection_fraction"], p["seed"])
    keep = _subset(len(y_sel), p.get("selection_cap"), p["seed"], 3)
    if keep is not None:
        x_sel, y_sel = x_sel[keep], y_sel[keep]
    x_sel, y_sel = np.asarray(x_sel, dtype=np.float32), np.asarray(y_sel, dtype=np.int64)
    reference_accuracy = simulate(reference, x_sel, y_sel, multiplier="exact", sram_voltage=NOMINAL_VOLTAGE, runs=1, seed=p["seed"]).accuracy_mean
    assert reference_accuracy is not None  # labelled selection data: an accuracy exists
    result = explore(
        bundle, x_sel, y_sel, max_loss=p["max_loss"], modes=p["modes"], voltages=p["voltages"], runs=p["runs"], seed=p["seed"],
        reference_accuracy=float(reference_accuracy), confidence_z=float(p.get("confidence_z", 0.0)),
    )
    x_test, y_test = np.asarray(data.x_test, dtype=np.float32), np.asarray(data.y_test, dtype=np.int64)
    test = {}
    for name, point in (("chosen", result.chosen), ("best_uniform", result.best_uniform)):
        r = simulate(apply_plan(bundle, point.plan), x_test, y_test, runs=p["runs"], seed=p["seed"])
        test[name] = {"plan": point.plan.label(), "modes": [str(mode) for mode in point.plan.modes], **power_summary(r)}
    search = result.as_dict()
    return {
        "selection": {"samples": int(len(y_sel)), "reference_accuracy": float(reference_accuracy)},
        "search": {key: search[key] for key in (
            "threshold", "within_budget", "baseline", "chosen", "best_uniform", "saving_vs_uniform", "evaluations", "confidence_z", "chosen_loss_bound",
        )},
        "test": test,
    }


TASKS: dict[str, Callable[[TaskContext], dict[str, Any]]] = {
    "train": train_task,
    "evaluate": evaluate_task,
    "approxann": approxann_task,
    "bundle": bundle_task,
    "simulate": simulate_task,
    "sensitivity": sensitivity_task,
    "explore": explore_task,
}
