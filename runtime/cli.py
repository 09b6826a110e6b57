"""``axtrain verify`` and ``axtrain simulate`` (the checks themselves live in runtime/verify.py and runtime/report.py)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import numpy as np

from axtrain.cli_params import multiplier_option, sram_voltage_option
from axtrain.hwmodels.multipliers import MultiplierMode

if TYPE_CHECKING:
    from axtrain.formats.bundle import Bundle


@click.command("verify")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--against", "model", type=click.Path(dir_okay=False, path_type=Path), help="Also run the goldens and --extra inputs through this ONNX model in onnxruntime.")
@click.option("--extra", type=int, default=64, show_default=True, help="Extra seeded random inputs for --against.")
def verify_command(bundle: Path, model: Path | None, extra: int) -> None:
    """Check BUNDLE's hashes and replay its golden vectors through the reference interpreter
    (and, with --against, through onnxruntime on MODEL.onnx)."""
    from axtrain.compiler.cli import coverage_line
    from axtrain.formats.bundle import load_bundle
    from axtrain.runtime.verify import verify_bundle

    for line in verify_bundle(bundle).lines():
        click.echo(line)
    loaded = load_bundle(bundle)
    if model is not None:
        from axtrain.regress.against import verify_against

        for line in verify_against(loaded, model, extra):
            click.echo(line)
    click.echo(coverage_line(loaded))
    click.echo(f"verify: {bundle} OK")


@click.command("simulate")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--app", help="Feed the test split of this application (axtrain data list).")
@click.option("--inputs", "inputs_file", type=click.Path(dir_okay=False, path_type=Path), help="Feed a float32 .npy shaped [N, *input shape].")
@click.option("--labels", "labels_file", type=click.Path(dir_okay=False, path_type=Path), help="Integer class labels .npy [N] for --inputs.")
@multiplier_option("Override every layer's multiplier")
@sram_voltage_option("Override every layer's weight-SRAM voltage")
@click.option("--runs", type=int, default=1, show_default=True, help="Monte Carlo runs (one NTV fault map each).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the fault maps (run i: SeedSequence([seed, i])).")
@click.option("--split-seed", type=int, help="Seed of the --app data split (default: the bundle's training seed, else 0).")
@click.option("--report", "report_file", type=click.Path(dir_okay=False, path_type=Path), help="Write the JSON report here (docs/report-schema.md).")
@click.option("--dump-outputs", "dump_file", type=click.Path(dir_okay=False, path_type=Path), help="Write run 0's float32 outputs (.npy).")
@click.option("--tech", "tech_file", type=click.Path(dir_okay=False, path_type=Path), help="Technology table YAML/JSON (default: 65 nm table).")
@click.option("--fault-map-out", "fault_map_out", type=click.Path(dir_okay=False, path_type=Path), help="Write every run's NTV flip mask (.npy or .hex) for an RTL replay.")
@click.option("--fault-map-in", "fault_map_in", type=click.Path(dir_okay=False, path_type=Path), help="Replay the flip masks of this file (one run each) instead of drawing faults.")
def simulate(
    bundle: Path,
    app: str | None,
    inputs_file: Path | None,
    labels_file: Path | None,
    multiplier: MultiplierMode | None,
    sram_voltage: float | None,
    runs: int,
    seed: int,
    split_seed: int | None,
    report_file: Path | None,
    dump_file: Path | None,
    tech_file: Path | None,
    fault_map_out: Path | None,
    fault_map_in: Path | None,
) -> None:
    """Simulate BUNDLE: accuracy, latency and energy on the FlexFlow model."""
    from axtrain import atomic
    from axtrain.errors import ConfigError
    from axtrain.formats.bundle import load_bundle, npy_bytes, sha256_file
    from axtrain.formats.technology import load_table
    from axtrain.hwmodels.technology import DEFAULT_65NM
    from axtrain.limits import MAX_RUNS, MAX_SEED, check_range
    from axtrain.locks import output_locks
    from axtrain.runtime.report import format_summary, simulate_to_report

    if (app is None) == (inputs_file is None):
        raise ConfigError("give exactly one of --app APP or --inputs X.npy")
    if labels_file is not None and inputs_file is None:
        raise ConfigError("--labels goes with --inputs (--app brings its own labels)")
    if runs < 1:
        raise ConfigError(f"--runs must be at least 1, got {runs}")
    if seed < 0:
        raise ConfigError(f"--seed must be non-negative, got {seed}")
    check_range("--runs", runs, 1, MAX_RUNS)
    check_range("--seed", seed, 0, MAX_SEED)
    check_range("--split-seed", split_seed, 0, MAX_SEED)
    if report_file is not None and dump_file is not None and report_file.resolve() == dump_file.resolve():
        raise ConfigError(f"--report and --dump-outputs name the same file {report_file}; give each its own")
    tech = load_table(tech_file) if tech_file else DEFAULT_65NM
    technology = {"source": "default-65nm"} if tech_file is None else {"source": "file", "sha256": sha256_file(tech_file)}
    b = load_bundle(bundle)
    x, y, source = simulation_inputs(b, app, inputs_file, labels_file, split_seed)
    images, fault_map = None, None
    if fault_map_in is not None or fault_map_out is not None:
        from axtrain.runtime.faultmap import apply_masks, fault_map_bytes, flip_masks, read_fault_map
        from axtrain.runtime.faults import fault_regions

        regions = fault_regions(b.layers, sram_voltage)
        if fault_map_in is not None:
            masks = read_fault_map(fault_map_in, b, regions)
            if runs not in (1, len(masks)):
                raise ConfigError(f"--fault-map-in {fault_map_in} holds {len(masks)} runs, --runs is {runs}")
            runs = len(masks)
            images = apply_masks(b.weights, regions, masks)
            fault_map = {"source": "file", "sha256": sha256_file(fault_map_in), "runs": runs}
        else:
            masks = flip_masks(b, regions, seed, runs)
    with output_locks((report_file, False), (dump_file, False), (fault_map_out, False)):
        result, report = simulate_to_report(b, x, y, source, multiplier, sram_voltage, runs, seed, tech, technology, weight_images=images)
        if fault_map is not None:
            report["config"]["fault_map"] = fault_map
        # All or none: a full disk after the dump used to leave the dump without its report.
        outputs = []
        if dump_file is not None:
            outputs.append((dump_file, npy_bytes(result.outputs.astype(np.float32))))
        if report_file is not None:
            outputs.append((report_file, atomic.json_text(report, report_file).encode("utf-8")))
        if fault_map_out is not None:
            outputs.append((fault_map_out, fault_map_bytes(fault_map_out, masks, b.arch.weight_word_bits)))
        atomic.write_many(outputs)
    click.echo(format_summary(report))
    if report_file is not None:
        click.echo(f"report: {report_file}")


def simulation_inputs(
    b: Bundle, app: str | None, inputs_file: Path | None, labels_file: Path | None, split_seed: int | None
) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
    """The inputs, labels and source record of ``--app`` / ``--inputs`` / ``--labels`` (shared by
    ``simulate`` and ``check``)."""
    from axtrain.errors import ConfigError

    if (app is None) == (inputs_file is None):
        raise ConfigError("give exactly one of --app APP or --inputs X.npy")
    if labels_file is not None and inputs_file is None:
        raise ConfigError("--labels goes with --inputs (--app brings its own labels)")
    if app is not None:
        from axtrain.datasets import load

        if split_seed is None:
            split_seed = int(b.manifest.seed) if b.manifest.seed and b.manifest.seed.isdigit() else 0
        data = load(app, seed=split_seed)
        return data.x_test, data.y_test, {"source": f"app:{app} test split", "app": app, "split_seed": split_seed}
    assert inputs_file is not None
    x = _load_npy(inputs_file, "--inputs")
    y = _load_npy(labels_file, "--labels") if labels_file is not None else None
    return x, y, {"source": "file"}


def _load_npy(path: Path, option: str) -> np.ndarray:
    """A user's .npy array, read without pickles and with its declared size checked before allocation."""
    from axtrain.errors import BundleError, ConfigError
    from axtrain.formats.bundle import read_npy

    if not path.is_file():
        raise ConfigError(f"{option}: {path} does not exist")
    try:
        return read_npy(path)
    except BundleError as exc:
        raise ConfigError(f"{option}: {exc}") from None
