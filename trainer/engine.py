"""The training engine: phases of epochs, checkpoints after every epoch, bit-identical resume.

A method (``trainer/methods.py``) is a function of a :class:`Session` that calls
:meth:`Session.run_phase` one or more times (``bp``, ``act`` or ``pas`` epochs). Phases are numbered
in call order; the checkpoint records the phase number, the epochs done in it, the optimizer and
gamma state and every RNG state, so re-running the same method on a checkpointed run skips the
finished phases, restores the current one and continues exactly where it stopped.

Determinism: initial weights from ``torch.manual_seed(seed)``; shuffling and NTV fault maps from two
CPU ``torch.Generator`` s seeded from ``seed`` (device independent); deterministic algorithms on.
"""

from __future__ import annotations

import copy
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from axtrain.datasets import load
from axtrain.errors import ConfigError, RunError
from axtrain.hwmodels.layers import QuantizedLayer
from axtrain.hwmodels.multipliers import EXACT
from axtrain.hwmodels.ntv import NOMINAL_VOLTAGE
from axtrain.trainer.allocator import keep_freed_memory
from axtrain.trainer.config import TrainConfig, make_config, required
from axtrain.trainer.emulation import FaultSource, emulate, first_operands
from axtrain.trainer.evaluate import emulated_logits, evaluate, float_accuracy
from axtrain.trainer.gamma import AdaptiveGamma
from axtrain.trainer.hardware import calibrate
from axtrain.trainer.methods import METHODS
from axtrain.trainer.models import build_model, check_model, describe
from axtrain.trainer.outputs import task_loss
from axtrain.trainer.rundir import RunDir, load_layers, load_model
from axtrain.trainer.sensitivity import forward_with_sensitivity, sensitivity

PHASES = ("bp", "act", "pas")


@dataclass
class TrainResult:
    """What a finished run produced."""

    model: nn.Sequential
    layers: list[QuantizedLayer]
    config: TrainConfig
    history: list[dict[str, Any]]
    summary: dict[str, Any]
    run_dir: Path | None = None


@dataclass
class Tensors:
    """One application's data as tensors on the training device."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    @classmethod
    def from_split(cls, data: Any, device: torch.device) -> "Tensors":
        def as_x(a: Any) -> torch.Tensor:
            return torch.as_tensor(np.asarray(a), dtype=torch.float32).to(device)

        def as_y(a: Any) -> torch.Tensor:
            return torch.as_tensor(np.asarray(a), dtype=torch.long).to(device)

        return cls(as_x(data.x_train), as_y(data.y_train), as_x(data.x_test), as_y(data.y_test))


def pick_device(name: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; asking for cuda without one is a ConfigError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: cuda was requested but no CUDA device is available")
    return torch.device(name)


def converged(values: list[float], patience: int, tol: float) -> bool:
    """True when the last value differs from the one ``patience`` epochs earlier by less than ``tol`` (relative)."""
    if len(values) <= patience:
        return False
    old, new = values[-1 - patience], values[-1]
    return abs(new - old) <= tol * max(abs(old), 1e-12)


class Session:
    """One training run in progress: model, data, RNGs, history, checkpointing."""

    def __init__(
        self,
        config: TrainConfig,
        data: Tensors,
        model: nn.Sequential,
        device: torch.device,
        run: RunDir | None,
        progress: bool = True,
        stop_after_epochs: int | None = None,
    ) -> None:
        keep_freed_memory()  # a step's tensors stay mapped between steps (trainer/allocator.py)
        self.config = config
        self.data = data
        self.model = model
        self.device = device
        self.run = run
        self.progress = progress
        self.stop_after_epochs = stop_after_epochs  # testing hook: simulate an interruption
        self.history: list[dict[str, Any]] = []
        self.shuffle_gen = torch.Generator().manual_seed(config.seed)
        self.fault_gen = torch.Generator().manual_seed(config.seed + 1_000_003)
        self.final_layers: list[QuantizedLayer] | None = None
        self.extra_summary: dict[str, Any] = {}
        self._phase_calls = 0
        self._epochs_this_call = 0
        self._resume: tuple[dict[str, torch.Tensor], dict[str, Any]] | None = None
        if run is not None:
            self._resume = run.load_checkpoint()
            if self._resume is not None:
                tensors, progress_state = self._resume
                self.model.load_state_dict({k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")})
                self.shuffle_gen.set_state(tensors["rng.shuffle"])
                self.fault_gen.set_state(tensors["rng.fault"])
                torch.set_rng_state(tensors["rng.torch"])
                self.history = list(progress_state["history"])

    # -- phases ----------------------------------------------------------------------------

    def run_phase(self, kind: str, epochs: int, lr: float, until_converged: bool = False) -> None:
        """Train ``epochs`` epochs of ``kind`` (bp, act or pas); with ``until_converged`` stop early by
        the act convergence rule (``converge_tol`` over ``converge_patience`` epochs of E and S)."""
        if kind not in PHASES:
            raise ConfigError(f"unknown phase {kind!r}: expected one of {', '.join(PHASES)}")
        index = self._phase_calls
        self._phase_calls += 1
        optimizer = torch.optim.Adam(self.model.parameters(), lr=lr, weight_decay=self.config.schedule.weight_decay)
        gamma = self._new_gamma() if kind == "act" else None
        start = 0
        if self._resume is not None:
            tensors, state = self._resume
            if index < state["phase_index"] or (index == state["phase_index"] and state["phase_done"]):
                return  # finished before the interruption; the checkpoint holds its result
            if index == state["phase_index"]:
                start = state["phase_epoch"]
                self._load_optimizer(optimizer, tensors)
                if self.progress:
                    where = f" ({self.run.path})" if self.run is not None else ""
                    print(f"resuming {self.config.app} {kind} from epoch {start} of {epochs}: the checkpoint{where} holds epochs 1-{start}", file=sys.stderr)
                if gamma is not None and state.get("gamma") is not None:
                    gamma = AdaptiveGamma.from_state_dict(state["gamma"])
            self._resume = None
        if start >= epochs:
            return
        # One bar per phase counted in batches, so that it moves (and has an ETA) within an epoch:
        # an MNIST act epoch is minutes long. It starts at the resumed epoch, not at 0.
        per_epoch = -(-int(self.data.x_train.shape[0]) // required(self.config.schedule.batch_size, "batch_size"))
        bar = tqdm(
            total=epochs * per_epoch, initial=start * per_epoch, unit="batch", file=sys.stderr, disable=not self.progress, leave=False,
            desc=f"{self.config.app} {kind} epoch {start + 1}/{epochs}", smoothing=0.1,
        )
        phase_entries = [h for h in self.history if h.get("phase_index") == index]
        try:
            for epoch in range(start, epochs):
                bar.set_description(f"{self.config.app} {kind} epoch {epoch + 1}/{epochs}", refresh=False)
                entry = self._epoch(kind, index, epoch, optimizer, gamma, on_batch=bar.update)
                self.history.append(entry)
                phase_entries.append(entry)
                bar.set_postfix(loss=f"{entry['loss']:.4f}", S=_short(entry.get("sensitivity")), acc=f"{entry['test_accuracy']:.3f}")
                done = epoch + 1 >= epochs
                if until_converged and not done:
                    tol, patience = self.config.act.converge_tol, self.config.act.converge_patience
                    s_values = [h["sensitivity"] for h in phase_entries if h.get("sensitivity") is not None]
                    done = converged([h["loss"] for h in phase_entries], patience, tol) and converged(s_values, patience, tol)
                self._checkpoint(index, epoch + 1, done, optimizer, gamma)
                self._epochs_this_call += 1
                if self.stop_after_epochs is not None and self._epochs_this_call >= self.stop_after_epochs and not done:
                    raise _Interrupted()
                if done:
                    break
        finally:
            # closed before an error is printed, so that the error is a line of its own (the bar
            # is referenced by the traceback's frames and would otherwise outlive the message)
            bar.close()

    def _new_gamma(self):
        a = self.config.act
        return AdaptiveGamma(
            a.gamma_initial, a.gamma_step, maximum=math.inf if a.gamma_max is None else a.gamma_max, accuracy_bound=a.gamma_accuracy_bound
        )

    def _epoch(self, kind: str, index: int, epoch: int, optimizer: torch.optim.Optimizer, gamma, on_batch: Any = None) -> dict[str, Any]:
        c = self.config
        model, data = self.model, self.data
        model.train()
        n = data.x_train.shape[0]
        order = torch.randperm(n, generator=self.shuffle_gen).to(self.device)
        layers = self.target_layers() if kind == "pas" else None
        # The first layer's operands of the whole training split, quantised and transformed once for
        # the phase (decisions 199): a batch's are the same values as emulate would compute.
        firsts = first_operands(layers, data.x_train) if layers is not None else None
        faults = FaultSource(self.fault_gen)
        gamma_used = gamma.value if gamma is not None else None
        loss_sum, s_sum, correct, batches = 0.0, 0.0, 0, 0
        batch = required(c.schedule.batch_size, "batch_size")
        for start in range(0, n, batch):
            idx = order[start : start + batch]
            first = firsts[idx] if firsts is not None else None
            # With the first layer's operands at hand emulate reads those, not x: one gather of
            # the batch instead of two (x then only gives the batch size).
            x = data.x_train[idx] if first is None else first
            y = data.y_train[idx]
            optimizer.zero_grad(set_to_none=True)
            if kind == "act":
                assert gamma_used is not None  # act phases always carry a gamma
                out, s = forward_with_sensitivity(model, x, c.act.sensitivity_form, output_layer=c.outputs)
                loss = task_loss(out, y, c.outputs)
                (loss + gamma_used * s).backward()
                s_sum += float(s.detach())
            elif kind == "pas":
                assert layers is not None  # calibrated above for every pas epoch
                out = emulate(model, layers, x, faults=faults, first=first)
                loss = task_loss(out, y, c.outputs)
                loss.backward()
            else:
                out = model(x)
                loss = task_loss(out, y, c.outputs)
                loss.backward()
            optimizer.step()
            loss_sum += float(loss.detach()) * x.shape[0]
            correct += int((out.detach().argmax(1) == y).sum())
            batches += 1
            if on_batch is not None:
                on_batch(1)
        mean_loss = loss_sum / n
        train_acc = correct / n
        if not math.isfinite(mean_loss):
            raise RunError(f"training diverged in {kind} epoch {epoch + 1} (loss {mean_loss}); lower lr or gamma")
        if gamma is not None:
            gamma.update(mean_loss, train_acc)
        model.eval()
        entry: dict[str, Any] = {
            "epoch": len(self.history) + 1,
            "phase": kind,
            "phase_index": index,
            "phase_epoch": epoch + 1,
            "loss": mean_loss,
            "train_accuracy": train_acc,
            "test_accuracy": float_accuracy(model, data.x_test, data.y_test),
            "sensitivity": self.probe_sensitivity(),
            "gamma": gamma_used,
        }
        if kind == "act":
            entry["batch_sensitivity"] = s_sum / batches
        if kind == "pas":
            logits = emulated_logits(model, self.target_layers(nominal=True), data.x_test)
            entry["test_accuracy_target"] = float((logits.argmax(1).cpu() == data.y_test.cpu()).double().mean())
        return entry

    def probe_sensitivity(self) -> float | None:
        """S on the first ``probe_samples`` training samples (comparable across methods and epochs)."""
        with torch.no_grad():
            value = sensitivity(
                self.model, self.data.x_train[: self.config.act.probe_samples], self.config.act.sensitivity_form, output_layer=self.config.outputs
            )
        return float(value)

    def target_layers(self, nominal: bool = False, exact: bool = False) -> list[QuantizedLayer]:
        """The model calibrated on the training split for the target multiplier and voltage."""
        h = self.config.hardware
        return calibrate(
            self.model,
            self.data.x_train,
            h.bits_w,
            h.bits_a,
            multipliers=EXACT if exact else h.multiplier,
            sram_voltage=NOMINAL_VOLTAGE if nominal or exact else h.sram_voltage,
        )

    # -- checkpoints -----------------------------------------------------------------------

    def _checkpoint(self, index: int, phase_epoch: int, done: bool, optimizer: torch.optim.Optimizer, gamma) -> None:
        if self.run is None:
            return
        tensors: dict[str, torch.Tensor] = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        for p_index, state in optimizer.state_dict()["state"].items():
            for key, value in state.items():
                tensors[f"optim.{p_index}.{key}"] = torch.as_tensor(value)
        tensors["rng.shuffle"] = self.shuffle_gen.get_state()
        tensors["rng.fault"] = self.fault_gen.get_state()
        tensors["rng.torch"] = torch.get_rng_state()
        progress = {
            "phase_index": index,
            "phase_epoch": phase_epoch,
            "phase_done": done,
            "epochs_total": len(self.history),
            "gamma": gamma.state_dict() if gamma is not None else None,
            "history": self.history,
        }
        self.run.write_history(self.history)
        self.run.save_checkpoint(tensors, progress)

    def _load_optimizer(self, optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> None:
        state: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            if key.startswith("optim."):
                _, p_index, name = key.split(".", 2)
                state.setdefault(int(p_index), {})[name] = value
        optimizer.load_state_dict({"state": state, "param_groups": optimizer.state_dict()["param_groups"]})


class _Interrupted(Exception):
    """Raised by the ``stop_after_epochs`` testing hook."""


def _short(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def summarise(session: Session, layers: list[QuantizedLayer]) -> dict[str, Any]:
    """Final figures on the test split: float, exact fixed point, and the target hardware."""
    c, data, model = session.config, session.data, session.model
    model.eval()
    exact = evaluate(model, layers, data.x_test, data.y_test, multiplier="exact", sram_voltage=NOMINAL_VOLTAGE, output_layer=c.outputs)
    target = evaluate(model, layers, data.x_test, data.y_test, runs=c.evaluation.ntv_eval_runs, seed=c.seed, output_layer=c.outputs)
    return {
        "app": c.app,
        "method": c.method,
        "seed": c.seed,
        "epochs_trained": len(session.history),
        "test_accuracy_float": float_accuracy(model, data.x_test, data.y_test),
        "test_accuracy_fixed_exact": exact.accuracy,
        "output_layer": c.output_layer,
        "output_error_fixed_exact": exact.metrics,
        "test_accuracy_target": target.accuracy,
        "test_accuracy_target_std": target.accuracy_std,
        "output_error_target": target.metrics,
        "target": {"multiplier": str(c.hardware.multiplier), "sram_voltage": c.hardware.sram_voltage},
        "sensitivity": session.probe_sensitivity(),
        "torch_threads": torch.get_num_threads(),
        **session.extra_summary,
    }


def train(
    config: TrainConfig,
    out: str | Path | None = None,
    *,
    data: Any = None,
    model: nn.Sequential | None = None,
    force: bool = False,
    progress: bool = False,
    stop_after_epochs: int | None = None,
) -> TrainResult:
    """Train by ``config.method`` and, with ``out``, keep everything in a run directory.

    ``data``: a DataSplit-like object (``x_train, y_train, x_test, y_test``); default
    ``axtrain.datasets.load(config.app, config.seed)``. ``model``: a supported ``nn.Sequential`` to
    start from (copied); default the application's Table 1 network, seeded. An existing unfinished
    run with the same config resumes from its checkpoint; a finished one is returned as is unless
    ``force``. ``stop_after_epochs`` interrupts after that many epochs (tests of resume).
    """
    config = config.resolved()
    device = pick_device(config.device)
    run = RunDir(out) if out is not None else None
    if run is not None:
        if force:
            run.clear()
        elif run.file("config.json").is_file():
            # Read through make_config: a run recorded before the config's groups compares as equal.
            previous = _leaves(make_config(run.read_json("config.json"), str(run.file("config.json"))).identity())
            mine = _leaves(config.identity())
            differing = sorted(k for k in set(previous) | set(mine) if k != "device" and previous.get(k) != mine.get(k))
            if differing:
                raise RunError(
                    f"{run.path} holds a run with a different config ({', '.join(differing)} differ); use --force or another --out"
                )
            if run.finished:
                return load_result(run.path, config)
    if device.type == "cuda":
        # CPU kernels are deterministic already; importing this switch costs seconds (torch._inductor).
        torch.use_deterministic_algorithms(True, warn_only=True)
    saved_threads = torch.get_num_threads()
    torch.set_num_threads(run_threads(config.threads))
    try:
        return _train(config, device, run, data, model, progress, stop_after_epochs)
    finally:
        torch.set_num_threads(saved_threads)


def _leaves(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config dict as dotted keys (``schedule.epochs``), so a mismatch names the field."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(_leaves(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def run_threads(requested: int | None) -> int:
    """torch CPU threads for a run: ``requested``, or (0 / None) every CPU this process may use.

    Never torch's own default, which follows ``OMP_NUM_THREADS``: backward passes sum gradients in
    per-thread chunks, so the thread count changes the trained weights' last bits, and an
    environment variable must not do that silently. The count used is in ``summary.json``.
    """
    if requested:
        return int(requested)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _train(
    config: TrainConfig, device: torch.device, run: RunDir | None, data: Any, model: nn.Sequential | None, progress: bool, stop_after_epochs: int | None
) -> TrainResult:
    if data is None:
        data = load(config.app, config.seed)
    tensors = Tensors.from_split(data, device)
    torch.manual_seed(config.seed)
    net = build_model(config.app) if model is None else copy.deepcopy(check_model(model))
    net = net.to(device)
    if run is not None:
        run.start(config.model_dump(mode="json"), {"multiplier": str(config.hardware.multiplier), "sram_voltage": config.hardware.sram_voltage})
    session = Session(config, tensors, net, device, run, progress, stop_after_epochs)
    try:
        METHODS[config.method](session)
    except _Interrupted:
        return TrainResult(session.model, [], config, session.history, {"interrupted": True}, run.path if run else None)
    layers = session.final_layers if session.final_layers is not None else session.target_layers()
    summary = summarise(session, layers)
    if run is not None:
        metadata = {
            "app": config.app,
            "method": config.method,
            "seed": config.seed,
            "input_shape": list(tensors.x_train.shape[1:]),
            "n_classes": int(max(int(tensors.y_train.max()), int(tensors.y_test.max())) + 1),
            "multiplier": str(config.hardware.multiplier),
            "sram_voltage": config.hardware.sram_voltage,
            "output_layer": config.output_layer,
        }
        run.write_history(session.history)
        run.save_final(session.model, describe(session.model), layers, metadata, summary)
    return TrainResult(session.model, layers, config, session.history, summary, run.path if run else None)


def load_result(run_dir: str | Path, config: TrainConfig | None = None) -> TrainResult:
    """A finished run read back from its directory."""

    run = RunDir(run_dir)
    if not run.finished:
        raise RunError(f"{run.path}: the run is not finished (no summary.json)")
    cfg = config or make_config(run.read_json("config.json"), str(run.file("config.json")))
    layers, _ = load_layers(run.path)
    return TrainResult(load_model(run.path), layers, cfg, run.read_history(), run.read_json("summary.json"), run.path)


def summary_line(summary: dict[str, Any]) -> str:
    """The one-line report the CLI prints at the end of a run."""
    target = summary["target"]
    ntv = "" if target["sram_voltage"] >= NOMINAL_VOLTAGE else f" @ {target['sram_voltage']:g} V"
    std = f" +- {summary['test_accuracy_target_std']:.4f}" if summary.get("test_accuracy_target_std") else ""
    return (
        f"{summary['app']} {summary['method']}: test accuracy float {summary['test_accuracy_float']:.4f}, "
        f"fixed-point exact {summary['test_accuracy_fixed_exact']:.4f}, "
        f"target {target['multiplier']}{ntv} {summary['test_accuracy_target']:.4f}{std}"
    )
