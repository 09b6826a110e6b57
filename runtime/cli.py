"""``axtrain verify`` and ``axtrain simulate`` (the checks themselves live in runtime/verify.py and runtime/report.py)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import numpy as np

from axtrain.cli_params import deprecated_alias, multiplier_option, sram_voltage_option, take_alias
from axtrain.hwmodels.multipliers import MultiplierMode

if TYPE_CHECKING:
    from axtrain.formats.bundle import Bundle


@click.command("verify")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--against", "model", type=click.Path(dir_okay=False, path_type=Path), help="Also run the goldens and --extra inputs through this ONNX model in onnxruntime.")
@click.option("--extra", type=int, default=64, show_default=True, help="Extra seeded random inputs for --against.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object (ok, layers, output; with --against its lines) instead of text; exit 2 when a check fails.")
def verify_command(bundle: Path, model: Path | None, extra: int, as_json: bool) -> None:
    """Check BUNDLE's hashes and replay its golden vectors through the reference interpreter
    (and, with --against, through onnxruntime on MODEL.onnx)."""
    import json

    from axtrain.compiler.cli import coverage_line
    from axtrain.errors import BundleError
    from axtrain.formats.bundle import load_bundle
    from axtrain.runtime.verify import check_bundle, verify_bundle

    if as_json:
        result = check_bundle(bundle)  # a bundle that fails its hashes still raises: one line, exit 2
        facts = verify_dict(result)
        facts["coverage"] = coverage_line(load_bundle(bundle))
        if model is not None and result.ok:
            from axtrain.regress.against import verify_against

            facts["against"] = list(verify_against(load_bundle(bundle), model, extra))
        click.echo(json.dumps(facts, indent=2))
        if not result.ok:
            raise BundleError(result.failures()[0])
        return
    for line in verify_bundle(bundle).lines():
        click.echo(line)
    loaded = load_bundle(bundle)
    if model is not None:
        from axtrain.regress.against import verify_against

        for line in verify_against(loaded, model, extra):
            click.echo(line)
    click.echo(coverage_line(loaded))
    click.echo(f"verify: {bundle} OK")


def verify_dict(result: Any) -> dict[str, Any]:
    """``verify --json``'s object: every check with its outcome (mismatches -1: shapes differ)."""
    import dataclasses

    return {
        "bundle": str(result.bundle), "ok": result.ok, "hashes": "ok",
        "layers": [{**dataclasses.asdict(layer), "ok": layer.ok} for layer in result.layers],
        "output": {**dataclasses.asdict(result.output), "ok": result.output.ok},
    }


@click.command("simulate")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--app", help="Feed the test split of this application (axtrain data list).")
@click.option("--inputs", "inputs_file", type=click.Path(dir_okay=False, path_type=Path), help="Feed a float32 .npy shaped [N, *input shape].")
@click.option("--labels", "labels_file", type=click.Path(dir_okay=False, path_type=Path), help="Integer class labels .npy [N] for --inputs.")
@multiplier_option("Override every layer's multiplier")
@sram_voltage_option("Override every layer's weight-SRAM voltage")
@click.option("--runs", type=int, default=1, show_default=True, help="Monte Carlo runs (one NTV fault map each).")
@click.option("--batch", type=int, default=100, show_default=True, help="Inferences the machine runs back to back, resident weights loaded once: latency, throughput and energy per inference at this batch (outputs do not depend on it).")
@click.option("--per-layer", "per_layer", is_flag=True, help="Also print the per-layer table: cycles (compute / transfer / stall), PE utilisation, bytes per memory level, energy per component.")
@click.option("--fault-seed", "seed", type=int, help="Seed of the NTV fault maps (run i: SeedSequence([seed, i])); as pipeline's --fault-seed.  [default: 0]")
@deprecated_alias("--seed", "--fault-seed")
@click.option("--split-seed", type=int, help="Seed of the --app data split (default: the bundle's training seed, else 0).")
@click.option("--report", "report_file", type=click.Path(dir_okay=False, path_type=Path), help="Write the JSON report here (docs/report-schema.md).")
@click.option("--dump-outputs", "dump_file", type=click.Path(dir_okay=False, path_type=Path), help="Write run 0's float32 outputs (.npy).")
@click.option("--tech", "tech_file", type=click.Path(dir_okay=False, path_type=Path), help="Technology table YAML/JSON (default: 65 nm table).")
@click.option("--force", is_flag=True, help="Replace an existing --report, --dump-outputs or --fault-map-out file.")
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
    batch: int,
    per_layer: bool,
    seed: int | None,
    seed_alias: int | None,
    split_seed: int | None,
    report_file: Path | None,
    dump_file: Path | None,
    tech_file: Path | None,
    fault_map_out: Path | None,
    fault_map_in: Path | None,
    force: bool,
) -> None:
    """Simulate BUNDLE: accuracy, latency and energy on the FlexFlow model.

    The files the simulation reads (manifest, architecture, layers, program and binary images)
    are hashed and checked, the content hash included; the text twins and goldens are not
    (`axtrain verify BUNDLE` checks every file).

    Large jobs run their big 8-bit GEMMs on onnxruntime's integer kernels: the same integers,
    checked on the machine before first use (docs/runtime.md). AXTRAIN_INT8_GEMM=0 in the
    environment keeps them on numpy's float GEMMs.
    """
    seed = take_alias(seed, seed_alias, "--seed", "--fault-seed")
    seed = 0 if seed is None else seed
    from axtrain import atomic
    from axtrain.errors import ConfigError
    from axtrain.formats.bundle import load_bundle, npy_bytes, sha256_file
    from axtrain.formats.technology import load_table
    from axtrain.hwmodels.technology import DEFAULT_65NM
    from axtrain.limits import MAX_RUNS, MAX_SEED, check_range
    from axtrain.locks import output_locks
    from axtrain.runtime.per_layer import format_per_layer, per_layer_csv
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
    check_range("--batch", batch, 1, MAX_BATCH)
    check_range("--seed", seed, 0, MAX_SEED)
    check_range("--split-seed", split_seed, 0, MAX_SEED)
    if report_file is not None and dump_file is not None and report_file.resolve() == dump_file.resolve():
        raise ConfigError(f"--report and --dump-outputs name the same file {report_file}; give each its own")
    from axtrain.overwrite import check_file_output

    csv_file = None if report_file is None else layer_csv_path(report_file)
    for path, option in ((report_file, "--report"), (csv_file, "--report's per-layer CSV"), (dump_file, "--dump-outputs"), (fault_map_out, "--fault-map-out")):
        if path is not None:
            check_file_output(path, force, option)
    tech = load_table(tech_file) if tech_file else DEFAULT_65NM
    technology = {"source": "default-65nm"} if tech_file is None else {"source": "file", "sha256": sha256_file(tech_file)}
    b = load_bundle(bundle, twins=False)  # the text twins and goldens are verify's (decision 204)
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
    with output_locks((report_file, False), (csv_file, False), (dump_file, False), (fault_map_out, False)):
        result, report = simulate_to_report(b, x, y, source, multiplier, sram_voltage, runs, seed, tech, technology, weight_images=images, batch=batch)
        if fault_map is not None:
            report["config"]["fault_map"] = fault_map
        # All or none: a full disk after the dump used to leave the dump without its report.
        outputs = []
        if dump_file is not None:
            outputs.append((dump_file, npy_bytes(result.outputs.astype(np.float32))))
        if report_file is not None and csv_file is not None:
            outputs.append((report_file, atomic.json_text(report, report_file).encode("utf-8")))
            outputs.append((csv_file, per_layer_csv(report["per_layer"], batch).encode("utf-8")))
        if fault_map_out is not None:
            outputs.append((fault_map_out, fault_map_bytes(fault_map_out, masks, b.arch.weight_word_bits)))
        atomic.write_many(outputs)
    click.echo(format_summary(report))
    if per_layer:
        click.echo(format_per_layer(report["per_layer"], batch))
    if report_file is not None:
        click.echo(f"report: {report_file}  (per-layer CSV: {csv_file})")


MAX_BATCH = 1_000_000  # the batch only scales counts; a bound keeps a typo from printing nonsense


def layer_csv_path(report_file: Path) -> Path:
    """The per-layer CSV written beside a report: ``r.json`` -> ``r.layers.csv``."""
    return report_file.with_name(report_file.stem + ".layers.csv")


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
