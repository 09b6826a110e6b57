"""The five stages of ``axtrain pipeline`` and their reuse rules.

Layout of the output directory::
    DIR/run/          the training run (trainer run directory; resumes from its own checkpoint)
    DIR/model.onnx    the annotated dynamic-fixed-point ONNX export
    DIR/bundle/       the compiled FlexFlow bundle
    DIR/verify.txt    the verification log (hashes + golden vectors through the reference interpreter)
    DIR/report.json   the simulation report (docs/report-schema.md)
    DIR/summary.md    a short human summary
    DIR/pipeline.json the stage ledger (axtrain/pipeline/ledger.py)

A stage is skipped when its key (parameters + input hashes) matches the ledger and its outputs are
intact, unless ``force``. Every artifact is written under a temporary name and renamed, and the
ledger entry is written only after the stage's outputs exist, so an interrupted pipeline resumes at
the first unfinished stage (training resumes mid-run from its checkpoint).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from axtrain import atomic
from axtrain.errors import ConfigError
from axtrain.formats.arch import DEFAULT_ARCH, load_arch
from axtrain.formats.target import HardwareTarget
from axtrain.limits import MAX_RUNS, MAX_SEED, check_range
from axtrain.pipeline.ledger import Ledger, stage_key
from axtrain.pipeline.summary import write_summary
from axtrain.trainer.config import load_config

STAGES = ("train", "export", "compile", "verify", "simulate")
RUN_FILES = ("run/weights.safetensors", "run/layers.safetensors", "run/layers.json", "run/summary.json")


@dataclass(frozen=True)
class PipelineOptions:
    """Everything that decides the pipeline's artifacts (echoed in the summary and the report)."""
    app: str
    method: str = "axtrain"
    out: Path = Path("out/pipeline")
    target: HardwareTarget | None = None  # of training and the default annotation; None: the config file's, else the trainer's default
    runs: int = 50
    seed: int = 0
    sim_seed: int = 0
    epochs: int | None = None
    config_file: Path | None = None
    arch_file: Path | None = None
    force: bool = False
    progress: bool = False


@dataclass
class PipelineResult:
    """What a pipeline run produced and which stages it actually ran."""
    out: Path
    ran: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)
    train_summary: dict[str, Any] = field(default_factory=dict)


def _train_config(options: PipelineOptions) -> Any:
    overrides: dict[str, Any] = {"app": options.app, "method": options.method, "seed": options.seed}
    if options.epochs is not None:
        overrides["epochs"] = options.epochs
    if options.target is not None:
        t = options.target
        overrides.update(multiplier=t.multiplier, sram_voltage=t.sram_voltage, bits_w=t.bits_w, bits_a=t.bits_a)
    return load_config(options.config_file, **overrides).resolved()


def _remove_tree(path: Path) -> None:
    """Delete a directory as one step: renamed aside (atomic), then removed. A kill during the
    removal leaves an ``.old-*`` folder, never a half-emptied run or bundle under its real name."""
    if not path.exists():
        return
    aside = path.with_name(f".old-{path.name}-{os.getpid()}")
    shutil.rmtree(aside, ignore_errors=True)
    os.replace(path, aside)
    shutil.rmtree(aside, ignore_errors=True)


def validate_options(options: PipelineOptions) -> tuple[Any, str]:
    """Every input checked before the first stage (a bad ``--arch`` used to fail after training):
    returns the resolved training config and the architecture file's text ("" for the default)."""
    if options.runs < 1:
        raise ConfigError(f"--runs must be at least 1, got {options.runs}")
    check_range("--runs", options.runs, 1, MAX_RUNS)
    check_range("--sim-seed", options.sim_seed, 0, MAX_SEED)
    config = _train_config(options)
    if options.arch_file:
        load_arch(options.arch_file)
    arch_text = options.arch_file.read_text(encoding="utf-8") if options.arch_file else ""
    return config, arch_text


def run_pipeline(options: PipelineOptions, log: Callable[[str], None] = lambda line: None) -> PipelineResult:
    """Run (or resume) every stage for ``options``; returns what ran, what was reused and the report."""
    config, arch_text = validate_options(options)
    arch = load_arch(options.arch_file) if options.arch_file else DEFAULT_ARCH
    root = Path(options.out)
    if options.force and (root / "pipeline.json").exists():
        # Each output disappears whole; the ledger goes last, so a forced rerun interrupted here is
        # still recognised as a pipeline directory and cleaned again.
        for name in ("run", "bundle"):
            _remove_tree(root / name)
        for name in ("model.onnx", "verify.txt", "report.json", "summary.md", "pipeline.json"):
            (root / name).unlink(missing_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    ledger = Ledger(root)
    result = PipelineResult(out=root)

    def stage(name: str, params: dict[str, Any], inputs: dict[str, str], outputs: list[str], work: Callable[[], None]) -> None:
        key = stage_key(name, params, inputs)
        if ledger.is_done(name, key):
            result.reused.append(name)
            log(f"[{name}] reused (unchanged inputs)")
            return
        log(f"[{name}] running")
        start = time.perf_counter()
        work()
        result.seconds[name] = time.perf_counter() - start
        ledger.complete(name, key, outputs)
        result.ran.append(name)
        log(f"[{name}] done in {result.seconds[name]:.1f} s")

    # 1. train ----------------------------------------------------------------------------------

    def train() -> None:
        # the stage imports its tool when it runs: a resumed pipeline past training never loads torch
        from axtrain.trainer.engine import train as train_run

        run_dir = root / "run"
        # A run directory from another config (the key changed) is replaced; an unfinished one
        # with this config resumes from its checkpoint inside the trainer.
        previous = ledger.records.get("train")
        force = previous is not None and previous.get("key") != stage_key("train", config.identity(), {})
        train_run(config, run_dir, force=force, progress=options.progress)

    stage("train", config.identity(), {}, list(RUN_FILES), train)
    weights_hash = ledger.output_hash("train", "run/weights.safetensors") + ledger.output_hash("train", "run/layers.safetensors")

    # 2. export ---------------------------------------------------------------------------------
    def export() -> None:
        # onnx and the exporter load only if this stage runs
        from axtrain.trainer.export import export_run

        export_run(root / "run", root / "model.onnx")

    stage("export", {}, {"run": weights_hash}, ["model.onnx"], export)

    # 3. compile --------------------------------------------------------------------------------
    def compile_() -> None:
        # the compiler (and onnx) load only if this stage runs
        from axtrain.compiler.pipeline import compile_to_bundle

        compile_to_bundle(root / "model.onnx", root / "bundle", arch, overwrite=True)

    stage("compile", {"arch": arch_text}, {"onnx": ledger.output_hash("export", "model.onnx")}, ["bundle"], compile_)
    bundle_hash = ledger.output_hash("compile", "bundle")

    # 4. verify ---------------------------------------------------------------------------------
    def verify() -> None:
        # the runtime loads only if this stage runs
        from axtrain.runtime.verify import verify_bundle

        lines = verify_bundle(root / "bundle").lines()
        atomic.write_text(root / "verify.txt", "\n".join(lines) + "\nverify: OK\n")

    stage("verify", {}, {"bundle": bundle_hash}, ["verify.txt"], verify)

    # 5. simulate -------------------------------------------------------------------------------
    sim_params = {"app": options.app, "runs": options.runs, "seed": options.sim_seed, "split_seed": options.seed}

    def simulate() -> None:
        # the runtime and the data sets load only if this stage runs
        from axtrain.pipeline.simulate import simulate_app

        report = simulate_app(root / "bundle", options.app, split_seed=options.seed, runs=options.runs, seed=options.sim_seed)
        atomic.write_json(root / "report.json", report)

    stage("simulate", sim_params, {"bundle": bundle_hash}, ["report.json"], simulate)

    result.report = json.loads((root / "report.json").read_text())
    result.train_summary = json.loads((root / "run" / "summary.json").read_text())

    write_summary(root, options, config, result)
    return result
