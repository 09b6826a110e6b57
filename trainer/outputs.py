"""The network's output layer (paper Section 2.2) and the output-error metrics every report uses.

A trained network is an ``nn.Sequential`` ending in its last ``nn.Linear`` / ``nn.Conv2d``: its
outputs ``z`` are the *pre-activations* of the output layer. What turns them into the network's
outputs ``O`` is the run's ``output_layer`` (:data:`OUTPUT_LAYERS`):

* ``"sigmoid"`` (the paper's network, the default): ``O = sigmoid(z)``, trained with the MSE
  ``mean_n sum_k (O_nk - t_nk)^2`` against one-hot targets ``t``; AxTrain-act's S(w) (Eq. 5) is
  taken on these ``O``.
* ``"softmax"``: ``O = softmax(z)``, trained with cross-entropy; S(w) on the logits ``z`` (the
  reading of the first versions of this project; docs/decisions.md 60).

The decision is ``argmax_k z_k`` either way (both maps are monotone), so accuracy and the
fixed-point hardware do not depend on the output layer; the exported ONNX ends with a ``Sigmoid``
for sigmoid networks (a host-side tail op of the bundle, docs/bundle.md).

Output-error metrics (:func:`output_metrics`, on dequantised fixed-point outputs ``z``):

* ``mse``: ``mean_n sum_k (O_nk - t_nk)^2`` of the network's own outputs ``O`` (Fig. 6's default);
* ``brier``: the same on the class distribution ``p`` (softmax: ``p = O``; sigmoid:
  ``p = O / sum_k O_k``), so it equals ``mse`` for a softmax network;
* ``ce``: ``-mean_n log p_{n, y_n}`` (``p`` as for brier, floored at 1e-12);
* ``error_rate``: ``1 - accuracy`` (ties of ``argmax`` go to the lowest index, as everywhere).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from axtrain.errors import ConfigError

OutputLayer = Literal["sigmoid", "softmax"]
OUTPUT_LAYERS: tuple[str, ...] = ("sigmoid", "softmax")
DEFAULT_OUTPUT_LAYER = "sigmoid"
#: Output-error metrics, in report order; each is a key of :func:`output_metrics`' result.
METRICS: tuple[str, ...] = ("mse", "ce", "brier", "error_rate")
_P_FLOOR = 1e-12


def check(output_layer: str) -> str:
    """``output_layer`` if known, else a one-line ConfigError."""
    if output_layer not in OUTPUT_LAYERS:
        raise ConfigError(f"output layer {output_layer!r} is unknown; use one of {', '.join(OUTPUT_LAYERS)}")
    return output_layer


def outputs(z: torch.Tensor, output_layer: str) -> torch.Tensor:
    """The network's outputs ``O`` from the output layer's pre-activations ``z`` ([N, K])."""
    if check(output_layer) == "sigmoid":
        return torch.sigmoid(z)
    return torch.softmax(z, dim=1)


def task_loss(z: torch.Tensor, y: torch.Tensor, output_layer: str) -> torch.Tensor:
    """The task loss E: sigmoid -> ``mean_n sum_k (sigmoid(z) - onehot(y))^2``; softmax -> cross-entropy."""
    if check(output_layer) == "sigmoid":
        onehot = F.one_hot(y.to(torch.long), z.shape[1]).to(z.dtype)
        return ((torch.sigmoid(z) - onehot) ** 2).sum(dim=1).mean()
    return F.cross_entropy(z, y)


def class_distribution(z: torch.Tensor, output_layer: str) -> torch.Tensor:
    """``p``: the outputs as a distribution over classes (softmax; sigmoid outputs renormalised)."""
    o = outputs(z, output_layer)
    if output_layer == "sigmoid":
        return o / o.sum(dim=1, keepdim=True).clamp_min(_P_FLOOR)
    return o


def per_sample_metrics(z: torch.Tensor, y: torch.Tensor, output_layer: str) -> dict[str, torch.Tensor]:
    """Each metric of :data:`METRICS` per sample ([N] float64 tensors; error_rate is 0/1)."""
    z = z.to(torch.float64)
    y = y.to(torch.long).cpu()
    z = z.cpu()
    onehot = F.one_hot(y, z.shape[1]).to(z.dtype)
    o = outputs(z, output_layer)
    p = class_distribution(z, output_layer)
    return {
        "mse": ((o - onehot) ** 2).sum(dim=1),
        "ce": -torch.log(p.gather(1, y[:, None]).squeeze(1).clamp_min(_P_FLOOR)),
        "brier": ((p - onehot) ** 2).sum(dim=1),
        "error_rate": (z.argmax(1) != y).to(torch.float64),
    }


def output_metrics(z: torch.Tensor, y: torch.Tensor, output_layer: str) -> dict[str, float]:
    """The mean of each metric of :data:`METRICS` over the samples."""
    return {k: float(v.mean()) for k, v in per_sample_metrics(z, y, output_layer).items()}
