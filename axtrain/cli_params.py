"""Click parameter types shared by every command: text from the command line becomes typed values here.

``--multiplier`` yields a :class:`~axtrain.hwmodels.multipliers.MultiplierMode`, ``--sram-voltage``
a float inside the NTV model's range, ``--modes`` / ``--voltages`` tuples of them; a bad value is a
usage error (one line, exit 2) naming the option. The commands pass the typed values on, so no
library function below the CLI parses a mode or a voltage given on the command line again.
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

import click

from axtrain.errors import AxTrainError
from axtrain.hwmodels.multipliers import MultiplierMode, parse_mode
from axtrain.hwmodels.ntv import MIN_VOLTAGE, NOMINAL_VOLTAGE, bit_error_rate

F = TypeVar("F", bound=Callable[..., Any])


class MultiplierType(click.ParamType):
    """``exact``, ``drum:K`` (K in 1..16) or the paper's ``K1``..``K4`` -> MultiplierMode."""

    name = "MODE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> MultiplierMode:
        try:
            return parse_mode(value)
        except AxTrainError as exc:
            self.fail(str(exc), param, ctx)


class VoltageType(click.ParamType):
    """A weight-SRAM supply voltage in volts inside the NTV model's range -> float."""

    name = "VOLTS"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        try:
            volts = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a voltage in volts", param, ctx)
        try:
            bit_error_rate(volts)
        except AxTrainError as exc:
            self.fail(str(exc), param, ctx)
        return volts


class ListType(click.ParamType):
    """A comma-separated list of distinct ``item`` values -> tuple, in the order given."""

    def __init__(self, item: click.ParamType, what: str) -> None:
        self.item, self.what = item, what
        self.name = f"{item.name},..."

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[Any, ...]:
        if isinstance(value, tuple):
            return value
        items = [part.strip() for part in str(value).split(",") if part.strip()]
        if not items:
            self.fail(f"expected a comma-separated list of {self.what}, got {value!r}", param, ctx)
        values = tuple(self.item.convert(item, param, ctx) for item in items)
        if len(set(values)) != len(values):
            self.fail(f"must list distinct {self.what}, got {value}", param, ctx)
        return values


MULTIPLIER = MultiplierType()
SRAM_VOLTAGE = VoltageType()
MODE_LIST = ListType(MULTIPLIER, "multiplier modes")
VOLTAGE_LIST = ListType(SRAM_VOLTAGE, "voltages")

VOLTAGE_RANGE = f"{MIN_VOLTAGE:.2f}..{NOMINAL_VOLTAGE:.2f} V"


def multiplier_option(help_text: str) -> Callable[[F], F]:
    """``--multiplier MODE`` (typed; None when not given)."""
    return click.option("--multiplier", type=MULTIPLIER, help=f"{help_text} (exact, drum:K or K1..K4).")


def sram_voltage_option(help_text: str, name: str = "--sram-voltage", required: bool = False) -> Callable[[F], F]:
    """``--sram-voltage VOLTS`` (typed, inside the NTV model; None when not given)."""
    return click.option(name, type=SRAM_VOLTAGE, required=required, help=f"{help_text} (volts, {VOLTAGE_RANGE}).")
