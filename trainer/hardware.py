"""The hardware target of a float network: per-layer fixed-point formats and approximation modes.

:func:`calibrate` turns a float ``nn.Sequential`` into the list of
:class:`~axtrain.hwmodels.layers.QuantizedLayer` records the rest of the toolchain consumes
(docs/numerics.md):

- weight formats from ``max |w|`` of each layer (``choose_frac``);
- the network input format from the input range, each layer's output format from the largest
  magnitude of that layer's float output over the calibration data (the training split);
- integer weights by ``quantize``; the bias as int32 at fractional length ``fa + fw``;
- ReLU folded into the dense/conv layer before it; max-pool and flatten are their own records and
  keep their input format;
- every weighted layer carries its multiplier mode(s) (one per layer, or one per output neuron)
  and the SRAM voltage of its weights.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any, Literal, Sequence

import numpy as np
import torch
from torch import nn

from axtrain.errors import ConfigError, HardwareModelError
from axtrain.hwmodels.fixedpoint import FixedPointFormat, choose_frac, quantize
from axtrain.hwmodels.layers import QuantizedLayer
from axtrain.hwmodels.multipliers import EXACT, MultiplierMode, parse_mode
from axtrain.hwmodels.ntv import NOMINAL_VOLTAGE, bit_error_rate
from axtrain.trainer.models import check_model
from axtrain.trainer.reductions import data_state, max_abs

MIN_BITS, MAX_BITS = 4, 16
BIAS_BITS = 32  # the bias lives at accumulator precision, stored as int32 (docs/numerics.md)

ModeSpec = str | MultiplierMode | Sequence[str | MultiplierMode]


@dataclass(frozen=True)
class Group:
    """Which modules of the ``nn.Sequential`` one QuantizedLayer stands for."""

    index: int  # the Linear / Conv2d / MaxPool2d / Flatten module
    relu: bool  # a ReLU module follows at index + 1 and is folded in


def groups(model: nn.Sequential) -> list[Group]:
    """The hardware layers of a supported model, in order (ReLU folded into its MAC layer)."""
    check_model(model)
    found: list[Group] = []
    modules = list(model)
    for index, module in enumerate(modules):
        if isinstance(module, nn.ReLU):
            continue
        relu = isinstance(module, (nn.Linear, nn.Conv2d)) and index + 1 < len(modules) and isinstance(modules[index + 1], nn.ReLU)
        found.append(Group(index, relu))
    return found


def check_bits(bits: int, what: str) -> int:
    """Validate a configurable fixed-point width (4..16 bits)."""
    if not isinstance(bits, int) or not MIN_BITS <= bits <= MAX_BITS:
        raise ConfigError(f"{what} must be an integer from {MIN_BITS} to {MAX_BITS} bits, got {bits!r}")
    return bits


def _modes_for(spec: ModeSpec | None, n_out: int, name: str) -> tuple[MultiplierMode, ...]:
    if spec is None:
        return (EXACT,)
    if isinstance(spec, (str, MultiplierMode)):
        return (parse_mode(spec),)
    modes = tuple(parse_mode(m) for m in spec)
    if len(modes) not in (1, n_out):
        raise ConfigError(f"layer {name!r} has {n_out} output neurons but {len(modes)} multiplier modes were given")
    return modes


class _RangesMemo:
    """The latest :func:`layer_ranges` result, reused while nothing it depends on has changed.

    A pas epoch calibrates the same weights on the same training split twice (the training target,
    then the nominal target of the test evaluation) and the ranges depend on neither target: each
    call is a float forward pass over the whole split. The memo holds weak references only (no data
    is kept alive) and a copy of the parameters, compared exactly, so an in-place update however
    made (optimizer step, ``load_state_dict``, ``.data``) is seen; the data is matched by identity,
    storage, shape and torch's version counter of in-place changes.
    """

    def __init__(self) -> None:
        self.entry: tuple[Any, ...] | None = None

    @staticmethod
    def _data_key(x: torch.Tensor, batch_size: int) -> tuple[Any, ...]:
        return (*data_state(x), batch_size)

    def get(self, model: nn.Sequential, x: torch.Tensor, batch_size: int) -> tuple[float, list[float]] | None:
        if self.entry is None:
            return None
        model_ref, x_ref, structure, data_key, params, result = self.entry
        if model_ref() is not model or x_ref() is not x or structure != tuple(map(id, model)) or data_key != self._data_key(x, batch_size):
            return None
        current = list(model.parameters())
        if len(current) != len(params) or not all(a.shape == b.shape and torch.equal(a.detach(), b) for a, b in zip(current, params, strict=True)):
            return None
        return result[0], list(result[1])

    def put(self, model: nn.Sequential, x: torch.Tensor, batch_size: int, result: tuple[float, list[float]]) -> None:
        params = [p.detach().clone() for p in model.parameters()]
        self.entry = (weakref.ref(model), weakref.ref(x), tuple(map(id, model)), self._data_key(x, batch_size), params, (result[0], list(result[1])))


_RANGES = _RangesMemo()


class _InputMaxMemo:
    """``max |x|`` of the latest calibration data, kept while the data is unchanged.

    The training split does not change during a run, but every fresh calibration (one per pas
    epoch) read all of it again for this one number: 28 ms of a ~200 ms MNIST calibration at one
    thread. Matched as :class:`_RangesMemo` matches the data (a weak reference, storage, shape and
    torch's version counter of in-place changes); the weights do not enter.
    """

    def __init__(self) -> None:
        self.entry: tuple[Any, ...] | None = None

    def get(self, x: torch.Tensor, batch_size: int) -> float | None:
        if self.entry is None:
            return None
        x_ref, data_key, value = self.entry
        return value if x_ref() is x and data_key == _RangesMemo._data_key(x, batch_size) else None

    def put(self, x: torch.Tensor, batch_size: int, value: float) -> None:
        self.entry = (weakref.ref(x), _RangesMemo._data_key(x, batch_size), value)


_INPUT_MAX = _InputMaxMemo()


@torch.no_grad()
def layer_ranges(model: nn.Sequential, x_calib: torch.Tensor, batch_size: int = 4096) -> tuple[float, list[float]]:
    """``max |x|`` of the input and of every hardware layer's float output over ``x_calib``
    (the previous call's result when the weights and the data are the same, see :class:`_RangesMemo`)."""
    remembered = _RANGES.get(model, x_calib, batch_size)
    if remembered is not None:
        return remembered
    result = _layer_ranges(model, x_calib, batch_size)
    _RANGES.put(model, x_calib, batch_size, result)
    return result


def _layer_ranges(model: nn.Sequential, x_calib: torch.Tensor, batch_size: int) -> tuple[float, list[float]]:
    model_groups = groups(model)
    out_max = [0.0] * len(model_groups)
    in_max = 0.0
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    known = _INPUT_MAX.get(x_calib, batch_size)
    for start in range(0, x_calib.shape[0], batch_size):
        h = x_calib[start : start + batch_size].to(device=device, dtype=torch.float32)
        if known is None:
            in_max = max(in_max, max_abs(h))
        for g_index, group in enumerate(model_groups):
            h = model[group.index](h)
            if group.relu:
                h = torch.relu(h)
            out_max[g_index] = max(out_max[g_index], max_abs(h))
    if known is None:
        _INPUT_MAX.put(x_calib, batch_size, in_max)
    else:
        in_max = known
    return in_max, out_max


@torch.no_grad()
def calibrate(
    model: nn.Sequential,
    x_calib: torch.Tensor,
    bits_w: int = 8,
    bits_a: int = 8,
    multipliers: ModeSpec | Sequence[ModeSpec | None] | None = None,
    sram_voltage: float | Sequence[float] = NOMINAL_VOLTAGE,
) -> list[QuantizedLayer]:
    """The fixed-point records of ``model`` (see the module docstring).

    ``multipliers``: one mode for every weighted layer (``"drum:2"``), or a list with one entry per
    weighted layer, each a mode or a per-output-neuron list of modes. ``sram_voltage``: one voltage
    (volts) or one per weighted layer.
    """
    check_bits(bits_w, "weight width")
    check_bits(bits_a, "activation width")
    model_groups = groups(model)
    weighted = [g for g in model_groups if isinstance(model[g.index], (nn.Linear, nn.Conv2d))]
    per_layer_modes = _spread(multipliers, len(weighted), "multiplier", single=lambda m: isinstance(m, (str, MultiplierMode)) or m is None)
    voltages = _spread(sram_voltage, len(weighted), "sram_voltage", single=lambda v: isinstance(v, (int, float)))
    for v in voltages:
        bit_error_rate(v)  # raises a one-line HardwareModelError outside the model's range

    in_max, out_max = layer_ranges(model, x_calib)
    current = FixedPointFormat(bits_a, choose_frac(in_max, bits_a))
    records: list[QuantizedLayer] = []
    w_index = 0
    counters = {"dense": 0, "conv": 0, "maxpool": 0, "flatten": 0}
    for g_index, group in enumerate(model_groups):
        module = model[group.index]
        meta = {"module_index": group.index}
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            op: Literal["dense", "conv"] = "dense" if isinstance(module, nn.Linear) else "conv"
            counters[op] += 1
            name = f"{'fc' if op == 'dense' else 'conv'}{counters[op]}"
            w = module.weight.detach().to("cpu", torch.float32)
            w_fmt = FixedPointFormat(bits_w, choose_frac(max_abs(w), bits_w))
            out_fmt = FixedPointFormat(bits_a, choose_frac(out_max[g_index], bits_a))
            acc_frac = current.frac + w_fmt.frac
            bias = module.bias.detach().to("cpu", torch.float32).numpy() if module.bias is not None else np.zeros(w.shape[0], np.float32)
            try:
                bias_fmt = FixedPointFormat(BIAS_BITS, acc_frac)
            except HardwareModelError:
                raise ConfigError(f"layer {name!r}: accumulator fractional length {acc_frac} is outside [-64, 64]") from None
            records.append(
                QuantizedLayer(
                    name=name,
                    op=op,
                    input_format=current,
                    output_format=out_fmt,
                    weight=quantize(w.numpy(), w_fmt),
                    weight_format=w_fmt,
                    bias=quantize(bias, bias_fmt),
                    relu=group.relu,
                    multipliers=_modes_for(per_layer_modes[w_index], w.shape[0], name),
                    sram_voltage=float(voltages[w_index]),
                    stride=int(module.stride[0]) if isinstance(module, nn.Conv2d) else 1,
                    padding=int(module.padding[0]) if isinstance(module, nn.Conv2d) else 0,
                    meta=meta,
                )
            )
            w_index += 1
            current = out_fmt
        elif isinstance(module, nn.MaxPool2d):
            counters["maxpool"] += 1
            kernel = module.kernel_size if isinstance(module.kernel_size, int) else module.kernel_size[0]
            stride = module.stride if isinstance(module.stride, int) else module.stride[0]
            records.append(
                QuantizedLayer(f"pool{counters['maxpool']}", "maxpool", current, current, kernel=int(kernel), stride=int(stride), meta=meta)
            )
        else:
            counters["flatten"] += 1
            records.append(QuantizedLayer(f"flatten{counters['flatten']}", "flatten", current, current, meta=meta))
    return records


def _spread(value, count: int, what: str, single) -> list:
    """One value for every weighted layer, or a list with exactly one per weighted layer."""
    if single(value):
        return [value] * count
    values = list(value)
    if len(values) != count:
        raise ConfigError(f"{what}: the network has {count} weighted layers but {len(values)} values were given")
    return values


def with_target(
    layers: Sequence[QuantizedLayer], multiplier: ModeSpec | None = None, sram_voltage: float | None = None
) -> list[QuantizedLayer]:
    """Copies of ``layers`` with every weighted layer set to ``multiplier`` and/or ``sram_voltage``.

    ``None`` keeps what each layer has. Formats and integers are untouched.
    """
    out: list[QuantizedLayer] = []
    for layer in layers:
        if not layer.has_weights:
            out.append(layer)
            continue
        changes: dict = {}
        if multiplier is not None:
            changes["multipliers"] = _modes_for(multiplier, layer.out_features, layer.name)
        if sram_voltage is not None:
            bit_error_rate(sram_voltage)
            changes["sram_voltage"] = float(sram_voltage)
        out.append(layer.with_changes(**changes) if changes else layer)
    return out
