"""The ``axtrain`` command line.

Subcommands live beside the code they drive (``axtrain/datasets/cli.py``, ``compiler/cli.py``, ...;
the hardware-model queries in ``axtrain/cli_hw.py``, since hwmodels/ is the ground floor)
and are imported only when invoked, so ``axtrain compile`` and ``axtrain simulate`` never import
torch and ``axtrain --help`` stays fast.

Errors: an :class:`~axtrain.errors.AxTrainError` or a usage error prints one line and exits with 2;
so does an ``OSError`` (a full disk, a read-only folder, a deleted working directory: the machine's
fault, worded by :func:`axtrain.atomic.output_error`). ``--debug`` shows the traceback instead.
Ctrl-C (SIGINT) and SIGTERM end every command with one line and exit 130 / 143, leaving no
partial output (:mod:`axtrain.interrupts`). Anything else is a bug in axtrain and exits with 1.
"""

from __future__ import annotations

import importlib
import signal
import sys
from typing import Any

import click

from axtrain import __version__, interrupts
from axtrain.errors import AxTrainError, one_line

# name -> (module, attribute, one-line help). Order is the order shown by --help.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "data": ("axtrain.datasets.cli", "data", "Inspect the bundled data sets of the paper's applications."),
    "hw": ("axtrain.cli_hw", "hw", "Query the hardware models (multipliers, NTV SRAM, energy)."),
    "train": ("axtrain.trainer.cli", "train", "Train a network (bp, act, pas, axtrain, approxann) into a run directory."),
    "export": ("axtrain.trainer.cli", "export", "Export a run as annotated dynamic-fixed-point ONNX."),
    "compile": ("axtrain.compiler.cli", "compile_command", "Compile an ONNX model into a FlexFlow bundle."),
    "inspect": ("axtrain.compiler.cli", "inspect_command", "Summarise a bundle (layers, instructions, memory, modes)."),
    "verify": ("axtrain.runtime.cli", "verify_command", "Check a bundle's hashes and replay its golden vectors."),
    "diff": ("axtrain.regress.cli", "diff", "Compare two bundles semantically (exit 0 when equivalent)."),
    "check": ("axtrain.regress.cli", "check", "Simulate a bundle and check pinned accuracy, cycles and energy with tolerances."),
    "trace": ("axtrain.bringup.cli", "trace_command", "Trace one input through a bundle: per-instruction writes and cycle timeline (text, csv, vcd)."),
    "compare": ("axtrain.bringup.cli", "compare", "Compare an RTL dump of layer outputs (hex or npy) with a bundle's goldens."),
    "hdl": ("axtrain.bringup.cli", "hdl", "Generate a SystemVerilog package, C header and testbench from the ISA and a bundle."),
    "simulate": ("axtrain.runtime.cli", "simulate", "Simulate a bundle: accuracy, latency and energy."),
    "pipeline": ("axtrain.pipeline.cli", "pipeline", "Train, export, compile, verify and simulate in one command."),
    "reproduce": ("axtrain.reproduce.cli", "reproduce", "Reproduce the paper's Figures 4 and 6-9 (cached cells, CSVs, plots, REPORT.md)."),
    "explore": ("axtrain.explore.cli", "explore", "Search per-layer multiplier modes and SRAM voltage for the lowest energy within an accuracy budget."),
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module_name, attribute, _ = COMMANDS[name]
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("axtrain"):
                raise click.UsageError(f"'{name}' is not available in this build of axtrain") from None
            raise
        command: click.Command = getattr(module, attribute)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Show the help line without importing every subcommand's module (and torch with it).
        rows = [(name, help_line) for name, (_, _, help_line) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="axtrain")
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """AxTrain: train networks for approximate hardware, export, compile and simulate them.

    \b
    Typical flow:
      axtrain data list                         the six applications of the paper
      axtrain train --app breast-cancer --method axtrain --out runs/bc
      axtrain export runs/bc --out bc.onnx
      axtrain compile bc.onnx --out bc.bundle
      axtrain simulate bc.bundle --app breast-cancer --multiplier drum:2
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def main(argv: list[str] | None = None) -> Any:
    """Console-script entry point: runs the CLI and maps errors to one line and an exit code."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    if hasattr(signal, "SIGXFSZ"):
        # A file-size limit (ulimit -f) then fails the write with EFBIG, a one-line error, instead
        # of killing the process with SIGXFSZ halfway through an output.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    # Run as the process (the console script, argv None) the handlers stay in place to the end.
    with interrupts.installed(restore=argv is not None):
        return _main(args, debug)


def _main(args: list[str], debug: bool) -> Any:
    try:
        return cli.main(args=args, prog_name="axtrain", standalone_mode=False)
    except click.exceptions.Exit as stop:
        sys.exit(stop.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.UsageError as exc:
        if debug:
            raise
        # One line: the problem, then where to read more (click's default adds a usage block).
        where = f"axtrain {exc.ctx.command_path.split(' ', 1)[1]} --help" if exc.ctx and " " in exc.ctx.command_path else "axtrain --help"
        click.echo(f"error: {one_line(exc.format_message())} (see '{where}')", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        if debug:
            raise
        click.echo(f"error: {one_line(exc.format_message())}", err=True)
        sys.exit(2)
    except AxTrainError as exc:
        if debug:
            raise
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except OSError as exc:
        if debug:
            raise
        from axtrain.atomic import output_error

        click.echo(f"error: {output_error(exc, action='cannot access')}", err=True)
        sys.exit(2)
    except Exception as exc:  # noqa: BLE001 - the last line of defence
        if debug:
            raise
        first = " ".join(str(exc).split())
        click.echo(
            f"internal error: {type(exc).__name__}: {first} (this is a bug in axtrain; rerun with --debug)",
            err=True,
        )
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
