"""The ApproxAnn baseline (Zhang et al., DATE 2015) as the AxTrain paper uses it (Fig. 8).

Starting from a trained float network and its calibrated fixed-point records
(:func:`axtrain.trainer.hardware.calibrate`), ApproxAnn greedily moves output neurons (dense) or
output channels (conv), hidden and output layers alike, from the exact multiplier to one
approximate mode, least critical first, retraining in between, for as long as the accuracy of the
deployed network stays within ``budget`` of the all-exact fixed-point network:

1. ``acc_exact``: accuracy of the exact fixed-point network (bit-exact emulation) on a validation
   split carved from the *training* data (the test split is never seen); ``bound = acc_exact - budget``
   (``budget`` in absolute accuracy, 0.02 = two percentage points).
2. Rank the neurons still exact by criticality, measured on the float network on the training part:
   ``c_j = mean_n |dE_n/dz_nj| * (|W| |a_n|)_j`` (for conv summed over the output positions). DRUM's
   error is relative in each operand, so a neuron's product errors scale with ``sum_i |w_ji a_i|``;
   times ``|dE/dz_j|`` this is the first-order change of the loss when that neuron turns approximate
   (Zhang et al. rank by the same back-propagated error sensitivity ``|dE/dy|``; the magnitude factor
   makes the measure match a multiplier with relative error).
3. Switch the ``chunk`` least critical to ``mode``. If the validation accuracy is within the bound,
   accept; else retrain ``retrain_epochs`` epochs through the emulated forward (straight-through
   estimator, trainer/emulation.py) and check again; accept or undo (weights and modes) and halve
   ``chunk``. Stop when every neuron is approximate, ``chunk`` reaches 0, or ``max_rounds``.

Counting: the paper counts multipliers assigned the approximate mode with one multiplier per neuron,
so ``n_approx`` is the number of approximate neurons (conv: channels); ``approx_mac_fraction`` (the
share of one inference's multiplications done approximately) is reported beside it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import nn

from axtrain.datasets.split import split_validation
from axtrain.errors import ConfigError
from axtrain.hwmodels.fixedpoint import FixedPointFormat, quantize
from axtrain.hwmodels.layers import QuantizedLayer
from axtrain.hwmodels.multipliers import EXACT, MultiplierMode, parse_mode
from axtrain.trainer.emulation import emulate
from axtrain.trainer.outputs import task_loss


class ApproxAnnConfig(BaseModel):
    """Knobs of the ApproxAnn search (defaults follow the AxTrain paper's use of it)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    budget: float = Field(0.02, ge=0.0, le=1.0, description="allowed accuracy loss vs the exact fixed-point network (absolute, 0.02 = 2 points)")
    val_fraction: float = Field(0.2, gt=0.0, lt=1.0, description="share of the training data held out to check the budget")
    initial_fraction: float = Field(0.25, gt=0.0, le=1.0, description="first chunk, as a share of all neurons")
    retrain_epochs: int = Field(2, ge=0, description="epochs of emulated (STE) retraining after a switch that breaks the budget")
    lr: float = Field(1e-4, gt=0.0, description="Adam learning rate of the retraining")
    batch_size: int = Field(128, ge=1, description="retraining mini-batch size")
    max_rounds: int = Field(64, ge=1, description="upper bound on switch attempts")
    eval_batch: int = Field(4096, ge=1, description="samples per batch of the exact (float64) evaluation")
    output_layer: Literal["sigmoid", "softmax"] = Field(
        "softmax", description="the network's output layer: its task loss drives criticality and retraining (trainer.outputs)"
    )


@dataclass(frozen=True)
class ApproxAnnRound:
    """One switch attempt: how many neurons were tried, whether it was kept, and the accuracy after."""

    chunk: int
    retrained: bool
    accepted: bool
    accuracy: float
    n_approx: int


@dataclass(frozen=True, eq=False)
class ApproxAnnResult:
    """What ApproxAnn ended with. ``layers`` carry the final per-neuron modes and the integer weights
    of the retrained ``model`` (the formats are the input records'); ``modes[i]`` is ``layers[i]``'s
    per-neuron mode tuple (empty for max-pool / flatten)."""

    model: nn.Sequential
    layers: list[QuantizedLayer]
    modes: list[tuple[MultiplierMode, ...]]
    mode: MultiplierMode
    n_approx: int
    n_neurons: int
    approx_mac_fraction: float
    exact_accuracy: float
    accuracy: float
    bound: float
    rounds: list[ApproxAnnRound] = field(default_factory=list)

    def summary(self) -> dict:
        """A JSON-ready digest for a run directory's history."""
        return {
            "mode": str(self.mode), "n_approx": self.n_approx, "n_neurons": self.n_neurons,
            "approx_fraction": self.n_approx / self.n_neurons if self.n_neurons else 0.0,
            "approx_mac_fraction": self.approx_mac_fraction, "exact_accuracy": self.exact_accuracy,
            "accuracy": self.accuracy, "bound": self.bound,
            "rounds": [r.__dict__ for r in self.rounds],
        }


# ---------------------------------------------------------------------------------------------
# Criticality
# ---------------------------------------------------------------------------------------------


def criticality(
    model: nn.Sequential, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024, output_layer: str = "softmax"
) -> list[torch.Tensor]:
    """Per output neuron (channel) of every Linear/Conv2d, in module order:
    ``mean_n sum_positions |dE_n/dz| * (|W| |a_n|)``, ``E_n`` the per-sample task loss of the
    network's output layer (cross-entropy for softmax, the squared error of the Sigmoid outputs).
    """
    weighted = [i for i, m in enumerate(model) if isinstance(m, (nn.Linear, nn.Conv2d))]
    totals = []
    for i in weighted:
        module = model[i]
        assert isinstance(module, (nn.Linear, nn.Conv2d))
        totals.append(torch.zeros(module.weight.shape[0], dtype=torch.float64))
    n_total = x.shape[0]
    for start in range(0, n_total, batch_size):
        h = x[start : start + batch_size]
        zs: list[torch.Tensor] = []
        magnitudes: list[torch.Tensor] = []
        with torch.enable_grad():
            for module in model:
                if isinstance(module, nn.Linear):
                    magnitudes.append(h.abs() @ module.weight.abs().T)
                elif isinstance(module, nn.Conv2d):
                    magnitudes.append(F.conv2d(h.abs(), module.weight.abs(), None, module.stride, module.padding, module.dilation))
                h = module(h)
                if isinstance(module, (nn.Linear, nn.Conv2d)):
                    zs.append(h)
            loss = task_loss(h, y[start : start + batch_size], output_layer) * h.shape[0]  # the per-sample sum
            grads = torch.autograd.grad(loss, zs)
        for index, (g, mag) in enumerate(zip(grads, magnitudes, strict=True)):
            c = (g.abs() * mag.detach())
            c = c.sum(dim=tuple(range(2, c.dim()))) if c.dim() > 2 else c
            totals[index] += c.sum(0).to(torch.float64)
    return [t / n_total for t in totals]


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def _with_modes(layers: Sequence[QuantizedLayer], modes: Sequence[tuple[MultiplierMode, ...]]) -> list[QuantizedLayer]:
    return [layer.with_changes(multipliers=m) if layer.has_weights else layer for layer, m in zip(layers, modes, strict=True)]


def requantized(model: nn.Sequential, layers: Sequence[QuantizedLayer]) -> list[QuantizedLayer]:
    """``layers`` with integer weights and biases re-derived from ``model``'s float weights (same formats),
    so the records compute exactly what :func:`emulate` computes for the model."""
    out = []
    for layer in layers:
        if not layer.has_weights:
            out.append(layer)
            continue
        assert layer.weight_format is not None
        module = model[layer.meta["module_index"]]
        assert isinstance(module, (nn.Linear, nn.Conv2d))  # the layer has weights
        w = module.weight.detach().to("cpu", torch.float32).numpy()
        b = module.bias.detach().to("cpu", torch.float32).numpy() if module.bias is not None else np.zeros(w.shape[0], np.float32)
        out.append(layer.with_changes(weight=quantize(w, layer.weight_format), bias=quantize(b, FixedPointFormat(32, layer.accumulator_frac))))
    return out


@torch.no_grad()
def accuracy(model: nn.Sequential, layers: Sequence[QuantizedLayer], x: torch.Tensor, y: torch.Tensor, batch: int = 4096) -> float:
    """Classification accuracy of the deployed network (bit-exact float64 emulation)."""
    correct = 0
    for start in range(0, x.shape[0], batch):
        out = emulate(model, layers, x[start : start + batch], exact=True)
        correct += int((out.argmax(1).cpu() == y[start : start + batch].cpu()).sum())
    return correct / max(1, x.shape[0])


def _retrain(model: nn.Sequential, layers: Sequence[QuantizedLayer], x: torch.Tensor, y: torch.Tensor,
             cfg: ApproxAnnConfig, generator: torch.Generator) -> None:
    """A few epochs of Adam through the emulated approximate forward (STE), in place."""
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    model.train()
    for _ in range(cfg.retrain_epochs):
        order = torch.randperm(x.shape[0], generator=generator)
        for start in range(0, x.shape[0], cfg.batch_size):
            index = order[start : start + cfg.batch_size]
            opt.zero_grad(set_to_none=True)
            out = emulate(model, layers, x[index], exact=False)
            task_loss(out, y[index], cfg.output_layer).backward()
            opt.step()


def _mac_counts(model: nn.Sequential, layers: Sequence[QuantizedLayer], sample: torch.Tensor) -> list[int]:
    """Multiplications per inference of each output neuron (channel) of each record (0 without weights)."""
    counts: list[int] = []
    h = sample[:1]
    with torch.no_grad():
        outputs = {}
        for index, module in enumerate(model):
            h = module(h)
            outputs[index] = h
    for layer in layers:
        if not layer.has_weights:
            counts.append(0)
            continue
        assert layer.weight is not None
        fan_in = int(np.prod(layer.weight.shape[1:]))
        out = outputs[layer.meta["module_index"]]
        positions = int(np.prod(out.shape[2:])) if out.dim() > 2 else 1
        counts.append(fan_in * positions)
    return counts


# ---------------------------------------------------------------------------------------------
# The search
# ---------------------------------------------------------------------------------------------


def run_approxann(
    model: nn.Sequential,
    layers: Sequence[QuantizedLayer],
    data: object,
    mode: str | MultiplierMode = "K1",
    budget: float | None = None,
    seed: int = 0,
    config: ApproxAnnConfig | None = None,
) -> ApproxAnnResult:
    """ApproxAnn on a trained ``model`` (BP or act) with calibrated ``layers`` (see the module docstring).

    ``data``: a :class:`axtrain.datasets.DataSplit` (only ``x_train``/``y_train`` are used) or a pair
    ``(x_train, y_train)``. ``mode``: the approximate multiplier (``K1``/``K2``/``drum:k``).
    ``budget`` overrides ``config.budget``. The caller's ``model`` is not modified; the retrained copy
    is ``result.model``. The layers' own multiplier modes are ignored: the search starts all exact.
    """
    cfg = config or ApproxAnnConfig()
    if budget is not None:
        try:
            cfg = ApproxAnnConfig(**{**cfg.model_dump(), "budget": budget})
        except ValidationError as exc:
            first = exc.errors()[0]
            raise ConfigError(f"approxann budget: {first['msg']} (got {budget!r})") from None
    target = parse_mode(mode)
    if target.is_exact:
        raise ConfigError("approxann: the approximate mode must not be 'exact'")
    if hasattr(data, "x_train"):
        x_all, y_all = np.asarray(data.x_train), np.asarray(data.y_train)  # type: ignore[attr-defined]
    else:
        try:
            x_all, y_all = (np.asarray(a) for a in data)  # type: ignore[attr-defined]  # data: object, any (x, y) pair
        except (TypeError, ValueError):
            raise ConfigError("approxann: data must be a DataSplit or an (x_train, y_train) pair") from None
    x_tr, y_tr, x_val, y_val = split_validation(x_all, y_all, cfg.val_fraction, seed)

    device = next(model.parameters()).device
    work = copy.deepcopy(model)
    xt = torch.as_tensor(x_tr, dtype=torch.float32, device=device)
    yt = torch.as_tensor(y_tr, dtype=torch.long, device=device)
    xv = torch.as_tensor(x_val, dtype=torch.float32, device=device)
    yv = torch.as_tensor(y_val, dtype=torch.long, device=device)
    generator = torch.Generator().manual_seed(seed)

    modes = [tuple([EXACT] * layer.out_features) if layer.has_weights else () for layer in layers]
    weighted = [i for i, layer in enumerate(layers) if layer.has_weights]
    n_neurons = sum(len(modes[i]) for i in weighted)
    exact_acc = accuracy(work, _with_modes(layers, modes), xv, yv, cfg.eval_batch)
    bound = exact_acc - cfg.budget
    current_acc = exact_acc
    chunk = max(1, round(cfg.initial_fraction * n_neurons))
    rounds: list[ApproxAnnRound] = []

    def n_approx_of(ms: Sequence[tuple[MultiplierMode, ...]]) -> int:
        return sum(1 for i in weighted for m in ms[i] if not m.is_exact)

    while len(rounds) < cfg.max_rounds and chunk > 0:
        scores = criticality(work, xt, yt, output_layer=cfg.output_layer)  # in module order == order of `weighted`
        ranked = sorted(
            ((float(scores[w_pos][j]), i, j) for w_pos, i in enumerate(weighted) for j in range(len(modes[i])) if modes[i][j].is_exact)
        )
        if not ranked:
            break
        chunk = min(chunk, len(ranked))
        tried = chunk
        trial = [list(m) for m in modes]
        for _, i, j in ranked[:chunk]:
            trial[i][j] = target
        trial_modes = [tuple(m) for m in trial]
        trial_layers = _with_modes(layers, trial_modes)
        acc = accuracy(work, trial_layers, xv, yv, cfg.eval_batch)
        retrained = False
        snapshot = None
        if acc < bound and cfg.retrain_epochs > 0:
            snapshot = copy.deepcopy(work.state_dict())
            _retrain(work, trial_layers, xt, yt, cfg, generator)
            retrained = True
            acc = accuracy(work, trial_layers, xv, yv, cfg.eval_batch)
        accepted = acc >= bound
        if accepted:
            modes, current_acc = trial_modes, acc
        else:
            if snapshot is not None:
                work.load_state_dict(snapshot)
            chunk //= 2
        rounds.append(ApproxAnnRound(tried, retrained, accepted, acc, n_approx_of(modes)))

    final_layers = requantized(work, _with_modes(layers, modes))
    macs = _mac_counts(work, layers, xv[:1] if xv.shape[0] else xt[:1])
    total_macs = sum(macs[i] * len(modes[i]) for i in weighted)
    approx_macs = sum(macs[i] * sum(1 for m in modes[i] if not m.is_exact) for i in weighted)
    return ApproxAnnResult(
        model=work, layers=final_layers, modes=modes, mode=target, n_approx=n_approx_of(modes), n_neurons=n_neurons,
        approx_mac_fraction=approx_macs / total_macs if total_macs else 0.0, exact_accuracy=exact_acc,
        accuracy=current_acc, bound=bound, rounds=rounds,
    )
