"""``axtrain reproduce``: the paper's Figures 4 and 6-9, ours beside the paper's (docs/reproduce.md)."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

import click

from axtrain.reproduce.executor import EXECUTORS
from axtrain.reproduce.run import FIGURES

CHOICES = (*FIGURES, "all")


@click.command("reproduce")
@click.argument("figure", nargs=-1, required=True, metavar="{" + ",".join(CHOICES) + "}...")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Folder for cells, CSVs, PNGs and REPORT.md.")
@click.option("--apps", multiple=True, help="Applications (repeat, or comma-separated); default: the profile's.")
@click.option("--seeds", type=int, default=None, help="Seeds per application (default: 4 UCI / 1 MNIST in full, 1 in quick).")
@click.option("--max-seeds", type=int, default=None, help="At most this many seeds per application (caps the profile's; --seeds sets every app's).")
@click.option("--runs", type=int, default=None, help="NTV Monte Carlo runs per setting (default: 50 full, 10 quick).")
@click.option("--quick", is_flag=True, help="Reduced run (four UCI apps, fewer epochs/runs/seeds): a smoke test in under 10 minutes.")
@click.option(
    "--output-layer", type=click.Choice(["sigmoid", "softmax"]), default=None,
    help="Output layer of every network, BP included (default sigmoid: the paper's network).",
)
@click.option(
    "--output-metric", type=click.Choice(["mse", "ce", "brier", "error_rate"]), default=None,
    help="Fig. 6's output error, normalised to BP's exact-multiplier error (default mse; the others stay in the CSV).",
)
@click.option("--k-map", default=None, help="DRUM k of K1..K4, comma-separated (default 1,2,3,4: K_i = DRUM(k=i)); see docs/hwmodels.md.")
@click.option("--jobs", type=int, default=None, help="Cells in parallel (default: the number of CPU cores; 1 runs in this process).")
@click.option("--executor", type=click.Choice(EXECUTORS), default="local", show_default=True, help="local process pool, or Ray tasks.")
@click.option("--address", default=None, help="Ray cluster address (with --executor ray; default: start a local instance).")
def reproduce(
    figure: tuple[str, ...], out: Path, apps: tuple[str, ...], seeds: int | None, max_seeds: int | None, runs: int | None, quick: bool,
    output_layer: str | None, output_metric: str | None, k_map: str | None, jobs: int | None, executor: str, address: str | None,
) -> None:
    """Reproduce FIGURE (fig4, fig6, fig7, fig8, fig9 or all; several may be given) into OUT.

    Work is split into cached cells (OUT/cells): rerunning resumes an interrupted reproduction and
    reuses finished cells. Writes OUT/<fig>.csv, OUT/<fig>.png and OUT/REPORT.md.
    """
    import signal

    from axtrain.errors import ConfigError

    # `kill` (SIGTERM) stops like Ctrl-C: the pool's workers are terminated with the command.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    from axtrain.reproduce.profile import profile
    from axtrain.reproduce.run import reproduce as run

    for name in figure:
        if name not in CHOICES:
            raise ConfigError(f"unknown figure {name!r}; expected one of {', '.join(CHOICES)}")
    from axtrain.limits import MAX_RUNS, MAX_THREADS, check_range

    check_range("--seeds", seeds, 1, 1000)
    check_range("--runs", runs, 1, MAX_RUNS)
    check_range("--jobs", jobs, 1, MAX_THREADS)
    if address is not None and executor != "ray":
        raise ConfigError("--address is only meaningful with --executor ray")
    app_list = tuple(a.strip() for item in apps for a in item.split(",") if a.strip())
    chosen = profile(quick).with_options(
        apps=app_list or None, seeds=seeds, max_seeds=max_seeds, runs=runs, output_layer=output_layer, output_metric=output_metric, k_map=k_map
    )
    figures = list(FIGURES) if "all" in figure else [f for f in FIGURES if f in figure]
    command = "axtrain " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv and "reproduce" in sys.argv else f"axtrain reproduce {' '.join(figure)}"
    result = run(
        figures, out, chosen, jobs=jobs or os.cpu_count() or 1, executor=executor, address=address,
        progress=lambda line: click.echo(line, err=True), command=command,
    )
    c = result["cells"]
    click.echo(
        f"{', '.join(figures)}: {c['total']} cells ({c['ran']} computed, {c['cached']} reused) in {result['wall_s']:.0f} s; "
        f"report: {out / 'REPORT.md'}"
    )
