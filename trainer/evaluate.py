"""Accuracy and output error of a network on given hardware (multiplier mode, SRAM voltage).

**Fig. 6's output error is the classification error rate** ``1 - accuracy`` of the bit-exact
fixed-point network (:attr:`Evaluation.error_rate`), reported normalised to the BP network's error
rate under the exact multiplier (docs/trainer.md, docs/decisions.md). The six applications are
classifiers, whose output is the decided class; the paper normalises to the exact-multiplier error,
which must therefore be non-zero (a deviation from the exact hardware's outputs would be 0 there);
and the error rate does not move when the logits are merely rescaled. That matters because
DRUM(1) keeps only each operand's leading one: every product shrinks (by ~half on average), so the
logits shrink with the depth, and a softmax-based error rewards a shrunken, less confident output.

``output_error`` is kept as a diagnostic: the Brier score of the same outputs,
``mean_n sum_k (softmax(o_n)_k - [y_n = k])**2`` (0 perfect, 2 worst). It is *not* Fig. 6's
metric: under K1 it follows the logits' scale, whatever happens to the decisions: it can fall
(an over-confident network shrinks towards calibration; breast-cancer BP, seed 0: 0.099 exact, 0.079
K1 at the same accuracy) or rise (small logits shrink towards a uniform softmax). The outputs are the dequantised logits of the bit-exact emulation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from axtrain.hwmodels.layers import QuantizedLayer
from axtrain.hwmodels.ntv import bit_error_rate
from axtrain.trainer.emulation import FaultSource, emulate
from axtrain.trainer.hardware import ModeSpec, with_target


@dataclass(frozen=True)
class Evaluation:
    """Accuracy (fraction correct) and Brier score ``output_error``; ``runs`` fault maps averaged.

    :attr:`error_rate` (``1 - accuracy``) is the output error of the paper's Fig. 6.
    """

    accuracy: float
    output_error: float
    accuracy_std: float = 0.0
    runs: int = 1

    @property
    def error_rate(self) -> float:
        """Classification error rate ``1 - accuracy``: Fig. 6's output error (module docstring)."""
        return 1.0 - self.accuracy


#: Name of the Evaluation attribute that is Fig. 6's output error.
FIG6_METRIC = "error_rate"


def output_error(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sample squared distance of ``softmax(logits)`` from the one-hot ``labels``."""
    probs = torch.softmax(logits.to(torch.float64), dim=1)
    onehot = torch.nn.functional.one_hot(labels.to(torch.long), probs.shape[1]).to(probs.dtype)
    return ((probs - onehot) ** 2).sum(dim=1)


@torch.no_grad()
def emulated_logits(
    model: nn.Sequential, layers: Sequence[QuantizedLayer], x: torch.Tensor, faults: FaultSource | None = None, batch: int = 4096
) -> torch.Tensor:
    """Bit-exact fixed-point outputs over ``x`` in batches (one fault map per batch if ``faults``)."""
    device = next(model.parameters()).device
    parts = [emulate(model, layers, x[i : i + batch].to(device), exact=True, faults=faults) for i in range(0, x.shape[0], batch)]
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
) -> Evaluation:
    """Accuracy and output error of the fixed-point network under ``multiplier`` / ``sram_voltage``.

    ``None`` keeps the layers' own modes / voltages. Below nominal voltage the figures are the mean
    over ``runs`` fault maps (one per run, each covering the whole of ``x``, as one chip would) drawn
    from ``seed``; ``accuracy_std`` is their standard deviation.
    """
    target = with_target(layers, multiplier, sram_voltage)
    y = y.cpu()
    faulty = any(layer.has_weights and bit_error_rate(layer.sram_voltage) > 0 for layer in target)
    if not faulty:
        logits = emulated_logits(model, target, x).cpu()
        return Evaluation(float((logits.argmax(1) == y).double().mean()), float(output_error(logits, y).mean()))
    accuracies, errors = [], []
    generator = torch.Generator().manual_seed(seed)
    for _ in range(runs):
        # One chip = one fault map for every sample: draw it once and reuse it for each batch.
        fixed = _FrozenFaults(FaultSource(generator), target)
        logits = emulated_logits(model, target, x, faults=fixed).cpu()
        accuracies.append(float((logits.argmax(1) == y).double().mean()))
        errors.append(float(output_error(logits, y).mean()))
    acc = torch.tensor(accuracies, dtype=torch.float64)
    return Evaluation(float(acc.mean()), float(torch.tensor(errors).mean()), float(acc.std(unbiased=False)), runs)


class _FrozenFaults(FaultSource):
    """A fault source that returns the same map for a layer every time (one chip)."""

    def __init__(self, source: FaultSource, layers: Sequence[QuantizedLayer]) -> None:
        super().__init__(source.generator)
        self._masks = {layer.name: source.masks_for(layer) for layer in layers if layer.has_weights}

    def masks_for(self, layer: QuantizedLayer) -> torch.Tensor | None:
        return self._masks.get(layer.name)
