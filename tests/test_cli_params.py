"""axtrain/cli_params.py: --multiplier / --sram-voltage (and explore's lists) become typed values at the edge."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from axtrain.cli import main
from axtrain.cli_params import MODE_LIST, MULTIPLIER, SRAM_VOLTAGE, VOLTAGE_LIST, multiplier_option, sram_voltage_option
from axtrain.hwmodels.multipliers import EXACT, MultiplierMode


@pytest.mark.parametrize("text, mode", [("exact", EXACT), ("drum:3", MultiplierMode(3)), ("K1", MultiplierMode(1)), ("drum(16)", MultiplierMode(16))])
def test_multiplier_text_becomes_a_mode(text: str, mode: MultiplierMode) -> None:
    assert MULTIPLIER.convert(text, None, None) == mode


def test_voltages_become_floats_inside_the_model() -> None:
    assert SRAM_VOLTAGE.convert("0.66", None, None) == 0.66
    assert VOLTAGE_LIST.convert("1.1, 0.5", None, None) == (1.1, 0.5)
    assert MODE_LIST.convert("exact,K2", None, None) == (EXACT, MultiplierMode(2))
    for bad, message in (("0.39", "outside"), ("1.2", "outside"), ("nan", "outside"), ("x", "not a voltage")):
        with pytest.raises(click.BadParameter, match=message):
            SRAM_VOLTAGE.convert(bad, None, None)
    with pytest.raises(click.BadParameter, match="distinct"):
        MODE_LIST.convert("K2,drum:2", None, None)  # the same mode twice, under two names
    with pytest.raises(click.BadParameter, match="comma-separated"):
        VOLTAGE_LIST.convert(" , ", None, None)


def test_a_command_receives_typed_values() -> None:
    seen: list[object] = []

    @click.command()
    @multiplier_option("m")
    @sram_voltage_option("v")
    def probe(multiplier: MultiplierMode | None, sram_voltage: float | None) -> None:
        seen.extend([multiplier, sram_voltage])

    assert CliRunner().invoke(probe, ["--multiplier", "K4", "--sram-voltage", "0.85"]).exit_code == 0
    assert seen == [MultiplierMode(4), 0.85]
    assert CliRunner().invoke(probe, []).exit_code == 0 and seen[2:] == [None, None]


@pytest.mark.parametrize("command", [["train", "--app", "breast-cancer", "--out", "x"], ["export", "run", "--out", "m.onnx"], ["simulate", "b", "--app", "breast-cancer"], ["pipeline", "--app", "breast-cancer", "--out", "x"]])
@pytest.mark.parametrize("option, value, message", [("--multiplier", "drum:0", "DRUM k must be"), ("--multiplier", "fancy", "unknown multiplier mode"), ("--sram-voltage", "0.2", "outside")])
def test_every_command_refuses_bad_targets_in_one_line(command: list[str], option: str, value: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main([*command, option, value])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and len(err.strip().splitlines()) == 1
    assert f"Invalid value for '{option}'" in err and message in err, err
