"""``axtrain pipeline --config pipeline.yaml``: one file for the whole flow (docs/pipeline.md).

The file has four groups, one per tool, and two top-level keys::

    app: breast-cancer
    out: out/bc
    train:    {method: axtrain, seed: 0, epochs: 60, multiplier: K2, sram_voltage: 0.66}  # any train config key
    export:   {multiplier: K2, sram_voltage: 0.66}   # the ONNX annotation (default: the training target)
    compile:  {arch: arch.yaml}                      # relative paths are relative to the file
    simulate: {runs: 50, fault_seed: 0}

Strict (no type coercion) and closed (an unknown key is an error). Options given on the command line
override the file's values. Every error is one line naming the file and the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from axtrain.errors import ConfigError
from axtrain.formats.target import HardwareTarget
from axtrain.formats.yamltext import read_mapping
from axtrain.pipeline.run import PipelineOptions

DEFAULT_METHOD = "axtrain"  # pipeline's default method (train's is bp): docs/decisions.md 92


class _Group(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)


class ExportGroup(_Group):
    """How the ONNX file is annotated (None: the training target)."""

    multiplier: str | None = Field(None, description="annotated multiplier mode (exact, drum:K, K1..K4)")
    sram_voltage: float | None = Field(None, description="annotated weight-SRAM voltage (V)")


class CompileGroup(_Group):
    """The compiler's input besides the model."""

    arch: str | None = Field(None, description="architecture file (YAML/JSON), relative to this file")


class SimulateGroup(_Group):
    """The simulation of the app's test split."""

    runs: int = Field(50, ge=1, description="Monte Carlo runs (one NTV fault map each)")
    fault_seed: int = Field(0, ge=0, description="seed of the fault maps")


class PipelineFile(_Group):
    """The pipeline file (docs/pipeline.md)."""

    app: str | None = None
    out: str | None = None
    train: dict[str, Any] = Field(default_factory=dict, description="train config keys (docs/trainer.md), flat or grouped")
    export: ExportGroup = Field(default_factory=ExportGroup)
    compile: CompileGroup = Field(default_factory=CompileGroup)
    simulate: SimulateGroup = Field(default_factory=SimulateGroup)


#: command-line / API names -> (group, key) in the file
GIVEN_KEYS: dict[str, tuple[str | None, str]] = {
    "app": (None, "app"), "out": (None, "out"),
    "method": ("train", "method"), "seed": ("train", "seed"), "epochs": ("train", "epochs"),
    "multiplier": ("train", "multiplier"), "sram_voltage": ("train", "sram_voltage"),
    "arch": ("compile", "arch"), "runs": ("simulate", "runs"), "fault_seed": ("simulate", "fault_seed"),
}


def _one_line(exc: ValidationError, source: str) -> str:
    first = exc.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "(top level)"
    message = {"extra_forbidden": "unknown key", "missing": "required key is missing"}.get(first["type"], str(first["msg"]).removeprefix("Value error, "))
    extra = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    return f"{source}: {key}: {message}{extra}"


GROUPS = ("train", "export", "compile", "simulate")


def read_pipeline_file(path: Path) -> PipelineFile:
    """The validated file (one ConfigError line naming the file and the key).

    A file without any group and without ``out`` that holds other keys than ``app`` is a training config of the
    form ``axtrain train --config`` reads (what ``pipeline --config`` took before the pipeline file):
    it is read as the ``train`` group (its ``app``, if any, as the top-level app)."""
    raw = read_mapping(path, "pipeline file")
    if not set(raw) & {*GROUPS, "out"} and set(raw) - {"app"}:
        raw = {**({"app": raw.pop("app")} if "app" in raw else {}), "train": raw}
    try:
        return PipelineFile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_one_line(exc, str(path))) from None


def merged(file: PipelineFile | None, given: Mapping[str, Any]) -> dict[str, Any]:
    """The file's values (JSON form) with ``given`` (command-line options, API keywords) on top."""
    # Python mode, not JSON: JSON mode would turn an infinite lr into None, hiding it from validation.
    values: dict[str, Any] = (file if file is not None else PipelineFile()).model_dump()
    for name, value in given.items():
        if name not in GIVEN_KEYS:
            raise ConfigError(f"unknown pipeline setting {name!r}; expected one of {', '.join(GIVEN_KEYS)}")
        group, key = GIVEN_KEYS[name]
        value = str(value) if name in ("out", "arch", "multiplier") else value
        if group is None:
            values[key] = value
        else:
            values[group][key] = value
    return values


def options_from(path: Path | None, given: Mapping[str, Any], force: bool = False, progress: bool = False) -> PipelineOptions:
    """PipelineOptions from the file at ``path`` (if any) and the ``given`` overrides."""
    file = read_pipeline_file(path) if path is not None else None
    values = merged(file, given)
    where = str(path) if path is not None else "options"
    for key, option in (("app", "--app"), ("out", "--out")):
        if values[key] is None:
            raise ConfigError(f"{option} is required" + (f" (or '{key}:' in {path})" if path is not None else ""))
    train = dict(values["train"])
    method = train.pop("method", DEFAULT_METHOD)
    seed = train.pop("seed", 0)
    base = Path(path).parent if path is not None else Path(".")
    arch = values["compile"]["arch"]
    arch_file = None if arch is None else (Path(arch) if Path(arch).is_absolute() or "arch" in given else base / arch)
    export = values["export"]
    export_target = None
    if export["multiplier"] is not None or export["sram_voltage"] is not None:
        try:
            export_target = HardwareTarget.model_validate({k: v for k, v in export.items() if v is not None})
        except ValidationError as exc:
            raise ConfigError(_one_line(exc, f"{where}: export")) from None
    return PipelineOptions(
        app=values["app"], method=method, out=Path(values["out"]), target=None, runs=values["simulate"]["runs"], seed=seed,
        sim_seed=values["simulate"]["fault_seed"], epochs=None, config_file=None, arch_file=arch_file, force=force, progress=progress,
        train_settings=train, train_source=f"{where}: train" if path is not None else "options",
        # Recorded without `out`: the folder's own name is not part of its config, and the
        # determinism tests compare pipelines written to different folders byte for byte.
        export_target=export_target, recorded={"file": str(path) if path is not None else None, **{k: v for k, v in values.items() if k != "out"}},
    )
