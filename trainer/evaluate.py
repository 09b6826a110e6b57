"""Accuracy and output error of a network on given hardware (multiplier mode, SRAM voltage).

**Fig. 6's output error** is, by default, the ``mse`` of the bit-exact fixed-point network's outputs
against one-hot targets, ``mean_n sum_k (O_nk - t_nk)^2`` with ``O`` the outputs of the run's output
layer (``sigmoid(z)`` for the paper's Sigmoid network, ``softmax(z)`` for a softmax one), reported
normalised to the BP network's error under the exact multiplier, as the paper normalises
(docs/trainer.md "Evaluation", docs/decisions.md 61). :attr:`Evaluation.metrics` holds every metric
of :data:`~axtrain.trainer.outputs.METRICS` (``mse``, ``ce``, ``brier``, ``error_rate``; definitions
in :mod:`axtrain.trainer.outputs`); ``reproduce --output-metric`` picks another for the figure.

The error rate alone is too coarse on these applications to show what act does: DRUM k >= 3 barely
moves it, and one ionosphere test sample is 1.4 points. A Sigmoid output's MSE moves with every
output, and it does not reward a network for shrinking its outputs: DRUM(1) shrinks products (by
about half), which pulls a sigmoid output towards 0.5, away from its 0/1 target.

``output_error`` (kept for old callers) is the Brier score, ``metrics["brier"]``. The outputs are
the dequantised pre-activations of the bit-exact emulation, mapped by the output layer in float64.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import nn

from axtrain.hwmodels.layers import QuantizedLayer
from axtrain.hwmodels.ntv import bit_error_rate
from axtrain.trainer.emulation import FaultSource, emulate, first_operands
from axtrain.trainer.hardware import ModeSpec, with_target
from axtrain.trainer.outputs import output_metrics


@dataclass(frozen=True)
class Evaluation:
    """Accuracy (fraction correct) and the output-error ``metrics``; ``runs`` fault maps averaged
    (each metric is the mean over the runs). ``output_error`` is the Brier score (old name)."""

    accuracy: float
    output_error: float
    accuracy_std: float = 0.0
    runs: int = 1
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def error_rate(self) -> float:
        """Classification error rate ``1 - accuracy``."""
        return 1.0 - self.accuracy


#: The metric Fig. 6 reports by default (``reproduce --output-metric`` chooses another).
FIG6_METRIC = "mse"


def output_error(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sample Brier score: squared distance of ``softmax(logits)`` from the one-hot ``labels``."""
    probs = torch.softmax(logits.to(torch.float64), dim=1)
    onehot = torch.nn.functional.one_hot(labels.to(torch.long), probs.shape[1]).to(probs.dtype)
    return ((probs - onehot) ** 2).sum(dim=1)


@torch.no_grad()
def emulated_logits(
    model: nn.Sequential, layers: Sequence[QuantizedLayer], x: torch.Tensor, faults: FaultSource | None = None, batch: int = 4096
) -> torch.Tensor:
    """Bit-exact fixed-point outputs over ``x`` in batches (one fault map per batch if ``faults``).

    The first layer's operands come from :func:`~axtrain.trainer.emulation.first_operands` when ``x``
    is on the model's device (the test split of a training run: every epoch evaluates it again).
    """
    device = next(model.parameters()).device
    firsts = first_operands(layers, x) if x.device == device else None
    parts = [
        emulate(model, layers, x[i : i + batch].to(device), exact=True, faults=faults, first=None if firsts is None else firsts[i : i + batch])
        for i in range(0, x.shape[0], batch)
    ]
    return torch.cat(parts).to(torch.float64)


@torch.no_grad()
def float_accuracy(model: nn.Sequential, x: torch.Tensor, y: torch.Tensor, batch: int = 8192) -> float:
    """Accuracy of the float network (no quantisation)."""
    device = next(model.parameters()).device
    correct = 0
    for i in range(0, x.shape[0], batch):
        correct += int((model(x[i : i + batch].to(device)).argmax(1).cpu() == y[i : i + batch].cpu()).sum())
    return correct / max(1, x.shape[0])


def evaluate(
    model: nn.Sequential,
    layers: Sequence[QuantizedLayer],
    x: torch.Tensor,
    y: torch.Tensor,
    multiplier: ModeSpec | None = None,
    sram_voltage: float | None = None,
    runs: int = 10,
    seed: int = 0,
    output_layer: str = "softmax",
) -> Evaluation:
    """Accuracy and output error of the fixed-point network under ``multiplier`` / ``sram_voltage``.

    ``None`` keeps the layers' own modes / voltages. Below nominal voltage the figures are the mean
    over ``runs`` fault maps (one per run, each covering the whole of ``x``, as one chip would) drawn
    from ``seed``; ``accuracy_std`` is their standard deviation. ``output_layer`` (the run's
    ``TrainConfig.output_layer``) maps the outputs for the metrics; accuracy does not depend on it.
    """
    target = with_target(layers, multiplier, sram_voltage)
    y = y.cpu()
    faulty = any(layer.has_weights and bit_error_rate(layer.sram_voltage) > 0 for layer in target)
    if not faulty:
        logits = emulated_logits(model, target, x).cpu()
        metrics = output_metrics(logits, y, output_layer)
        return Evaluation(float((logits.argmax(1) == y).double().mean()), metrics["brier"], metrics=metrics)
    accuracies, per_run = [], []
    generator = torch.Generator().manual_seed(seed)
    for _ in range(runs):
        # One chip = one fault map for every sample: draw it once and reuse it for each batch.
        fixed = _FrozenFaults(FaultSource(generator), target)
        logits = emulated_logits(model, target, x, faults=fixed).cpu()
        accuracies.append(float((logits.argmax(1) == y).double().mean()))
        per_run.append(output_metrics(logits, y, output_layer))
    acc = torch.tensor(accuracies, dtype=torch.float64)
    metrics = {k: float(sum(m[k] for m in per_run) / len(per_run)) for k in per_run[0]}
    return Evaluation(float(acc.mean()), metrics["brier"], float(acc.std(unbiased=False)), runs, metrics)


class _FrozenFaults(FaultSource):
    """A fault source that returns the same map for a layer every time (one chip)."""

    def __init__(self, source: FaultSource, layers: Sequence[QuantizedLayer]) -> None:
        super().__init__(source.generator)
        self._masks = {layer.name: source.masks_for(layer) for layer in layers if layer.has_weights}

    def masks_for(self, layer: QuantizedLayer) -> torch.Tensor | None:
        return self._masks.get(layer.name)
