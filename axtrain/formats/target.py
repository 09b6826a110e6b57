"""The hardware a network is trained for, annotated with and simulated on: one typed record.

:class:`HardwareTarget` (multiplier mode, weight-SRAM voltage, weight and activation bit widths) is
what ``TrainConfig``, ``PipelineOptions`` and the explore ``Plan`` carry. The field types below are
the one place where text becomes a mode, a voltage or a fixed-point format in a record; every other
module receives the typed values:

* :data:`Mode` -- a :class:`~axtrain.hwmodels.multipliers.MultiplierMode`; accepts ``exact``,
  ``drum:K``, ``K1``..``K4`` or a mode; serialised as its canonical text (``drum:2``);
* :data:`Volts` -- a weight-SRAM voltage inside the NTV model's range (``hwmodels.ntv``);
* :data:`ModeText`, :data:`FormatText` -- canonical, validated text for file records that keep
  strings on disk (``layers.json``), with typed accessors on the record.

Command-line text enters through ``axtrain/cli_params.py`` (the click types), ONNX metadata through
``formats/onnx_schema.py``; both use the parsers of ``hwmodels`` directly.
"""

from __future__ import annotations

from typing import Annotated, Any, Iterable

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, PlainValidator, WithJsonSchema

from axtrain.errors import AxTrainError
from axtrain.hwmodels.fixedpoint import FixedPointFormat
from axtrain.hwmodels.multipliers import EXACT, MultiplierMode, parse_mode
from axtrain.hwmodels.ntv import NOMINAL_VOLTAGE, bit_error_rate

MIN_TRAIN_BITS, MAX_TRAIN_BITS = 4, 16  # weight and activation widths the trainer supports


def _mode(value: Any) -> MultiplierMode:
    try:
        return parse_mode(value)
    except AxTrainError as exc:
        raise ValueError(str(exc)) from None


def _volts(value: float) -> float:
    try:
        bit_error_rate(value)  # raises outside the calibrated range
    except AxTrainError as exc:
        raise ValueError(str(exc)) from None
    return float(value)


def _format_text(value: str) -> str:
    try:
        return str(FixedPointFormat.parse(value))
    except AxTrainError as exc:
        raise ValueError(str(exc)) from None


Mode = Annotated[
    MultiplierMode,
    PlainValidator(_mode),
    PlainSerializer(str, return_type=str),
    WithJsonSchema({"type": "string", "description": "exact, drum:K (K in 1..16) or K1..K4"}),
]
Volts = Annotated[float, AfterValidator(_volts)]
ModeText = Annotated[str, BeforeValidator(lambda value: str(_mode(value)))]  # text or a mode in, canonical text kept
FormatText = Annotated[str, AfterValidator(_format_text)]


class HardwareTarget(BaseModel):
    """Multiplier mode, weight-SRAM voltage and bit widths of the target hardware. Frozen."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    multiplier: Mode = Field(EXACT, description="target multiplier: exact, drum:K, or K1..K4 (pas trains with it)")
    sram_voltage: Volts = Field(NOMINAL_VOLTAGE, description="target weight-SRAM supply voltage in volts (0.4..1.1)")
    bits_w: int = Field(8, ge=MIN_TRAIN_BITS, le=MAX_TRAIN_BITS, description="weight width in bits (dynamic fixed point)")
    bits_a: int = Field(8, ge=MIN_TRAIN_BITS, le=MAX_TRAIN_BITS, description="activation width in bits (dynamic fixed point)")

    @property
    def faulty(self) -> bool:
        """Whether the weight SRAM runs below nominal voltage (NTV bit flips)."""
        return self.sram_voltage < NOMINAL_VOLTAGE

    def label(self) -> str:
        """Short text, e.g. ``drum:2@0.66V``."""
        return f"{self.multiplier}@{self.sram_voltage:.2f}V"


def modes_of(values: Iterable[Any]) -> tuple[MultiplierMode, ...]:
    """Typed modes from text or modes (a list read from a cell's parameters or a file); an unknown
    name raises a one-line HardwareModelError."""
    return tuple(parse_mode(value) for value in values)


def voltages_of(values: Iterable[Any]) -> tuple[float, ...]:
    """Voltages checked against the NTV model (a list read from a cell's parameters or a file); one
    outside it raises a one-line HardwareModelError."""
    out = []
    for value in values:
        bit_error_rate(value)
        out.append(float(value))
    return tuple(out)
