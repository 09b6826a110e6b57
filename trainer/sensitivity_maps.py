"""Sensitivity maps of the last layer (paper Fig. 4): which weights the outputs are sensitive to.

For each weight ``w_ji`` of the last Linear layer, ``R_ji = |w_ji| * mean_n sum_k |dO_nk/dw_ji|``
(the per-sample form of S, trainer/sensitivity.py; for the last layer ``dO_nk/dw_ji = 1[k=j] a_ni``
so ``R_ji = |w_ji| * mean_n |a_ni|``; with the paper's Sigmoid outputs, ``O = sigmoid(z)``,
``R_ji = |w_ji| * mean_n sigmoid'(z_nj) |a_ni|``: a weight counts less where its output saturates), divided by the largest ``R`` of that network so the map lies in
``[0, 1]``. The maps of several networks (BP, act, pas) are drawn side by side, each on the same
``[0, 1]`` colour scale, rows = output neurons, columns = the last layer's inputs. The sensitivity is
that of the float network (the pas network's float weights, too), measured on the data given.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
from torch import nn

from axtrain.atomic import write_bytes
from axtrain.errors import ConfigError
from axtrain.trainer.sensitivity import weight_sensitivities


def last_layer_sensitivity(model: nn.Sequential, x: torch.Tensor, relative: bool = True, output_layer: str = "softmax") -> np.ndarray:
    """``R`` of the last Linear layer, shape ``[out, in]`` (float64); ``relative``: divided by its max.
    ``output_layer``: ``"sigmoid"`` takes the outputs as ``sigmoid(z)``, ``"softmax"`` as the logits."""
    if not isinstance(model, nn.Sequential) or not isinstance(model[-1], nn.Linear):
        raise ConfigError("sensitivity map: the network must be an nn.Sequential ending in nn.Linear")
    with torch.no_grad():  # the Jacobian sweep is explicit: no autograd needed for a map
        maps = weight_sensitivities(model, x, "per_sample", output_layer=output_layer)
    r = maps[-1].detach().to("cpu", torch.float64).numpy()
    if relative:
        top = r.max()
        r = r / top if top > 0 else np.zeros_like(r)
    return r


def render_maps(maps: Mapping[str, np.ndarray], title: str | None = None) -> bytes:
    """PNG bytes: one heatmap per named map, side by side, shared ``[0, 1]`` colour scale."""
    if not maps:
        raise ConfigError("sensitivity map: nothing to draw (no networks given)")
    # matplotlib loads only when a map is drawn, and its backend must be chosen before pyplot
    import matplotlib

    matplotlib.use("Agg")  # no display on servers; must precede pyplot
    # after matplotlib.use: pyplot must not pick a display backend
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    names = list(maps)
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.2), squeeze=False, constrained_layout=True)
    image = None
    for ax, name in zip(axes[0], names, strict=True):
        # viridis: perceptually uniform and readable in grey, unlike jet's false bands.
        image = ax.imshow(np.asarray(maps[name]), vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto", interpolation="nearest")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # rows are neurons: whole numbers only
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(name)
        ax.set_xlabel("input of the last layer")
        ax.set_ylabel("output neuron")
    assert image is not None  # at least one map was drawn (checked above)
    fig.colorbar(image, ax=axes[0].tolist(), label="relative sensitivity |w| |dO/dw|")
    if title:
        fig.suptitle(title)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, metadata={"Software": None})  # no version stamp: reproducible bytes
    plt.close(fig)
    return buffer.getvalue()


def save_sensitivity_maps(
    models: Mapping[str, nn.Sequential], x: torch.Tensor, path: str | os.PathLike[str], title: str | None = None
) -> dict[str, np.ndarray]:
    """Compute each network's relative last-layer map on ``x``, save them as one PNG at ``path``
    (atomically), and return the arrays (e.g. to save beside the image)."""
    maps = {name: last_layer_sensitivity(model, x) for name, model in models.items()}
    shapes = {m.shape for m in maps.values()}
    if len(shapes) > 1:
        raise ConfigError(f"sensitivity map: the networks' last layers differ in shape: {sorted(shapes)}")
    write_bytes(Path(path), render_maps(maps, title))
    return maps
