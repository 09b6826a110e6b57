"""Every --help shows its defaults, and the seeds have one meaning (docs/decisions.md 91, 92)."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from axtrain.cli import COMMANDS, LazyGroup, cli
from axtrain.trainer.config import APP_DEFAULTS


def _commands() -> list[tuple[str, click.Command]]:
    out = []
    ctx = click.Context(cli)
    for name in COMMANDS:
        command = LazyGroup.get_command(cli, ctx, name)  # type: ignore[arg-type]
        assert command is not None
        if isinstance(command, click.Group):
            out += [(f"{name} {sub}", c) for sub, c in command.commands.items()]
        else:
            out.append((name, command))
    return out


@pytest.mark.parametrize(("name", "command"), _commands(), ids=lambda v: v if isinstance(v, str) else "")
def test_options_with_a_default_show_it(name: str, command: click.Command) -> None:
    text = CliRunner().invoke(cli, [*name.split(), "--help"], terminal_width=400).output
    for param in command.params:
        if not isinstance(param, click.Option) or param.hidden or param.is_flag or param.required or param.name == "help":
            continue
        if param.get_default(click.Context(command)) in (None, getattr(click.core, "UNSET", None)):  # no default (click 8.3 says UNSET)
            continue
        # the option's entry: its line in the Options list, with its wrapped continuation lines
        lines = text.split("Options:", 1)[1].splitlines()
        start = next(i for i, line in enumerate(lines) if line.lstrip().startswith(param.opts[0]) or f", {param.opts[0]}" in line)
        end = next((i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("-")), len(lines))
        line = " ".join(lines[start:end])
        assert "[default:" in line or "default" in line, f"{name} {param.opts[0]}: {line}"


def test_train_help_states_the_defaults_that_apply() -> None:
    text = " ".join(CliRunner().invoke(cli, ["train", "--help"], terminal_width=400).output.split())
    assert "[default: bp]" in text
    assert f"mnist-mlp {APP_DEFAULTS['mnist-mlp']['epochs']}" in text
    assert "[default: 0]" in text and "MNIST-MLP epoch" in text


def test_pipeline_help_states_its_method_default() -> None:
    text = " ".join(CliRunner().invoke(cli, ["pipeline", "--help"], terminal_width=400).output.split())
    assert "[default: axtrain]" in text
    assert "--fault-seed" in text and "--sim-seed" not in text  # the old spelling is hidden


def test_simulate_seed_is_a_deprecated_alias_of_fault_seed(tiny_bundle: Path) -> None:
    runner = CliRunner()
    old = runner.invoke(cli, ["simulate", str(tiny_bundle), "--app", "breast-cancer", "--sram-voltage", "0.6", "--runs", "2", "--seed", "3"])
    new = runner.invoke(cli, ["simulate", str(tiny_bundle), "--app", "breast-cancer", "--sram-voltage", "0.6", "--runs", "2", "--fault-seed", "3"])
    assert old.exit_code == 0 and new.exit_code == 0, old.output + new.output
    assert "note: --seed is deprecated; use --fault-seed (same meaning)" in old.stderr
    assert old.stdout == new.stdout and "2 / 3" in new.stdout
    both = runner.invoke(cli, ["simulate", str(tiny_bundle), "--app", "breast-cancer", "--seed", "1", "--fault-seed", "3"])
    assert both.exit_code == 2
