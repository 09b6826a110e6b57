"""Networks the trainer accepts: plain float ``nn.Sequential`` models of a few layer types.

A network is an ``nn.Sequential`` of ``nn.Linear``, ``nn.Conv2d``, ``nn.ReLU``, ``nn.MaxPool2d`` and
``nn.Flatten``, nothing else: exactly what the fixed-point hardware runs (docs/numerics.md). The
float model is the thing that trains; its fixed-point view (``hardware.calibrate``) and its emulated
forward (``emulation``) are derived from it. :func:`build_model` gives the paper's Table 1 topologies;
:func:`describe` / :func:`from_description` turn any supported model into JSON and back so a run
directory can rebuild a user's own network.
"""

from __future__ import annotations

import itertools
from typing import Any, Sequence

import torch
from torch import nn

from axtrain.datasets import APPLICATIONS, unknown_application_message
from axtrain.errors import ConfigError

SUPPORTED = (nn.Linear, nn.Conv2d, nn.ReLU, nn.MaxPool2d, nn.Flatten)


def mlp(sizes: Sequence[int]) -> nn.Sequential:
    """A fully connected network ``sizes[0] -> ... -> sizes[-1]`` with ReLU after every hidden layer."""
    if len(sizes) < 2 or any(int(s) < 1 for s in sizes):
        raise ConfigError(f"an MLP topology needs at least two positive layer sizes, got {list(sizes)}")
    layers: list[nn.Module] = []
    for index, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(int(fan_in), int(fan_out)))
        if index < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def lenet5(n_classes: int = 10, in_channels: int = 1) -> nn.Sequential:
    """LeNet-5 for 28x28 inputs: conv1 pads by 2 so the classic 32x32 geometry (16x5x5 = 400) holds."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 6, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120),
        nn.ReLU(),
        nn.Linear(120, 84),
        nn.ReLU(),
        nn.Linear(84, n_classes),
    )


def build_model(app: str, seed: int | None = None) -> nn.Sequential:
    """The Table 1 network of application ``app`` (float32, PyTorch's default initialisation).

    With ``seed`` the initial weights come from that seed without touching the global RNG stream
    any further than ``torch.manual_seed`` does.
    """

    if app not in APPLICATIONS:
        raise ConfigError(unknown_application_message(app))
    spec = APPLICATIONS[app]
    if seed is not None:
        torch.manual_seed(seed)
    if spec.kind == "cnn":
        channels = int(spec.input_shape[0]) if len(spec.input_shape) == 3 else 1
        return lenet5(int(spec.n_classes), channels)
    return mlp([int(s) for s in spec.topology])


def check_model(model: nn.Module) -> nn.Sequential:
    """Return ``model`` if the fixed-point hardware can run it, else raise ConfigError naming the layer."""
    if not isinstance(model, nn.Sequential):
        raise ConfigError(f"a network must be an nn.Sequential, got {type(model).__name__}")
    if len(model) == 0:
        raise ConfigError("the network is an empty nn.Sequential")
    previous: nn.Module | None = None
    for index, layer in enumerate(model):
        where = f"layer {index} ({type(layer).__name__})"
        if not isinstance(layer, SUPPORTED):
            names = ", ".join(t.__name__ for t in SUPPORTED)
            raise ConfigError(f"{where} is not supported: a network may only use {names}")
        if isinstance(layer, nn.ReLU) and not isinstance(previous, (nn.Linear, nn.Conv2d)):
            # The hardware folds ReLU into the MAC layer before it (docs/numerics.md).
            raise ConfigError(f"{where} must directly follow an nn.Linear or nn.Conv2d")
        if isinstance(layer, nn.Conv2d):
            if layer.groups != 1 or layer.dilation != (1, 1):
                raise ConfigError(f"{where}: grouped or dilated convolutions are not supported")
            if isinstance(layer.padding, str) or layer.padding[0] != layer.padding[1] or layer.padding_mode != "zeros":
                raise ConfigError(f"{where}: only equal zero padding on every side is supported")
            if layer.stride[0] != layer.stride[1]:
                raise ConfigError(f"{where}: only equal strides are supported")
        if isinstance(layer, nn.MaxPool2d):
            kernel, stride = _pair(layer.kernel_size), _pair(layer.stride)
            if kernel[0] != kernel[1] or stride[0] != stride[1]:
                raise ConfigError(f"{where}: only square max-pool windows and equal strides are supported")
            if _pair(layer.padding) != (0, 0) or _pair(layer.dilation) != (1, 1) or layer.ceil_mode:
                raise ConfigError(f"{where}: max-pool padding, dilation and ceil_mode are not supported")
        if isinstance(layer, nn.Flatten) and (layer.start_dim != 1 or layer.end_dim != -1):
            raise ConfigError(f"{where}: only nn.Flatten() (start_dim=1) is supported")
        previous = layer
    return model


def _pair(value: Any) -> tuple[int, int]:
    return (int(value), int(value)) if isinstance(value, int) else (int(value[0]), int(value[1]))


def describe(model: nn.Sequential) -> list[dict[str, Any]]:
    """A JSON description of a supported model's architecture (no weights)."""
    check_model(model)
    spec: list[dict[str, Any]] = []
    for layer in model:
        if isinstance(layer, nn.Linear):
            spec.append({"type": "linear", "in": layer.in_features, "out": layer.out_features, "bias": layer.bias is not None})
        elif isinstance(layer, nn.Conv2d):
            spec.append(
                {
                    "type": "conv2d",
                    "in": layer.in_channels,
                    "out": layer.out_channels,
                    "kernel": list(layer.kernel_size),
                    "stride": layer.stride[0],
                    "padding": layer.padding[0],
                    "bias": layer.bias is not None,
                }
            )
        elif isinstance(layer, nn.ReLU):
            spec.append({"type": "relu"})
        elif isinstance(layer, nn.MaxPool2d):
            spec.append({"type": "maxpool2d", "kernel": _pair(layer.kernel_size)[0], "stride": _pair(layer.stride)[0]})
        else:
            spec.append({"type": "flatten"})
    return spec


def from_description(spec: Sequence[dict[str, Any]]) -> nn.Sequential:
    """Rebuild the (untrained) model that :func:`describe` described."""
    layers: list[nn.Module] = []
    try:
        for item in spec:
            kind = item["type"]
            if kind == "linear":
                layers.append(nn.Linear(item["in"], item["out"], bias=item.get("bias", True)))
            elif kind == "conv2d":
                layers.append(
                    nn.Conv2d(item["in"], item["out"], tuple(item["kernel"]), stride=item["stride"], padding=item["padding"], bias=item.get("bias", True))
                )
            elif kind == "relu":
                layers.append(nn.ReLU())
            elif kind == "maxpool2d":
                layers.append(nn.MaxPool2d(item["kernel"], item["stride"]))
            elif kind == "flatten":
                layers.append(nn.Flatten())
            else:
                raise ConfigError(f"unknown layer type {kind!r} in a model description")
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"malformed model description: {exc}") from None
    return check_model(nn.Sequential(*layers))
