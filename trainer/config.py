"""Training configuration: one frozen, typed record in documented groups, per-application defaults,
YAML/JSON files.

Groups (as aihwkit groups its device parameters): ``schedule`` (epochs, batch size, learning rates),
``hardware`` (the :class:`~axtrain.formats.target.HardwareTarget`: multiplier, SRAM voltage, bit
widths), ``act`` (the regulariser and axtrain's convergence rule), ``evaluation``; the rest (app,
method, seed, output layer, approxann start, threads, device) stays at the top.

Precedence, lowest first: the field defaults below, the application's defaults (:data:`APP_DEFAULTS`,
flat names, filled in by :meth:`TrainConfig.resolved`), a ``--config`` file, command-line options.
The resolved config (no ``None`` left) is what a run directory records in ``config.json``.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, Mapping, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from axtrain.datasets import APPLICATIONS, unknown_application_message
from axtrain.errors import ConfigError
from axtrain.formats.target import HardwareTarget
from axtrain.formats.yamltext import read_mapping
from axtrain.limits import TRAIN_CONFIG_BOUNDS

#: Per-application defaults for the fields left ``None``. Small UCI apps train in seconds; MNIST
#: gets fewer, larger epochs. ``epochs`` is the first phase (bp / act; for axtrain the act cap; for
#: pas the BP warm-up), ``pas_epochs`` the emulated phase. ``gamma_initial`` / ``gamma_step``: S is
#: ~10-600 on a trained UCI MLP and its batches are few (9-80 steps an epoch), so the paper's gamma
#: must start higher there than on MNIST (S ~2000, 470 steps an epoch) to cut S by an order of
#: magnitude within the default epochs at <= ~2 points of exact accuracy (measured on validation
#: splits, docs/trainer.md "Choosing gamma"); the step is gamma / 5.
APP_DEFAULTS: dict[str, dict[str, Any]] = {
    "breast-cancer": {"threads": 1, "epochs": 60, "pas_epochs": 10, "batch_size": 32, "lr": 1e-3, "gamma_initial": 3e-3, "gamma_step": 6e-4},
    "ionosphere": {"threads": 1, "epochs": 60, "pas_epochs": 10, "batch_size": 32, "lr": 1e-3, "gamma_initial": 3e-3, "gamma_step": 6e-4},
    "image-segmentation": {"threads": 1, "epochs": 60, "pas_epochs": 10, "batch_size": 64, "lr": 1e-3, "gamma_initial": 1e-3, "gamma_step": 2e-4},
    "satimage": {"threads": 1, "epochs": 60, "pas_epochs": 10, "batch_size": 64, "lr": 1e-3, "gamma_initial": 1e-3, "gamma_step": 2e-4},
    "mnist-mlp": {"epochs": 15, "pas_epochs": 5, "batch_size": 128, "lr": 1e-3},
    "mnist-cnn": {"epochs": 10, "pas_epochs": 3, "batch_size": 128, "lr": 1e-3},
}
#: Multiplier modes whose pas phase uses the full ``lr`` (the others lr / 10), chosen per mode on
#: validation splits of the UCI apps (examples/pas_lr_modes.py, docs/decisions.md 62).
PAS_FULL_LR_MODES: frozenset[str] = frozenset({"drum:1"})
_FALLBACK_DEFAULTS: dict[str, Any] = {
    "threads": 0, "epochs": 30, "pas_epochs": 5, "batch_size": 64, "lr": 1e-3, "gamma_initial": 1e-3, "gamma_step": 2e-4,
}


class Method(StrEnum):
    """The training methods (``--method``); ``trainer/methods.py`` maps each to its function."""

    BP = "bp"  # conventional back-propagation
    ACT = "act"  # AxTrain-act: E + gamma * S
    PAS = "pas"  # AxTrain-pas: a BP warm-up, then training through the emulated hardware
    AXTRAIN = "axtrain"  # act until converged, then pas
    APPROXANN = "approxann"  # ApproxAnn (Zhang et al., DATE 2015)


METHOD_NAMES: tuple[str, ...] = tuple(m.value for m in Method)


T = TypeVar("T")


def required(value: T | None, name: str) -> T:
    """A default that :meth:`TrainConfig.resolved` fills in (None before: a caller's mistake)."""
    if value is None:
        raise ConfigError(f"{name} is not set: use TrainConfig.resolved() before training")
    return value


class _Group(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class Schedule(_Group):
    """How long and how fast the run trains (``None``: the application's default, APP_DEFAULTS)."""

    epochs: int | None = Field(
        None, ge=0, description="epochs of the first phase: bp/act training; the act cap of axtrain; the BP warm-up of pas"
    )
    pas_epochs: int | None = Field(None, ge=0, description="epochs of emulated (pas) training, for pas and axtrain")
    batch_size: int | None = Field(None, ge=1, description="mini-batch size (samples)")
    lr: float | None = Field(None, gt=0, description="Adam learning rate of the bp/act phase")
    pas_lr: float | None = Field(None, gt=0, description="Adam learning rate of the pas phase (default: lr for K1 = drum:1 and when the target has NTV faults, sram_voltage < 1.1; lr / 10 for the other multiplier targets)")
    weight_decay: float = Field(0.0, ge=0, description="Adam L2 weight decay (0 = none)")


    def phase(self, which: Literal["first", "pas"]) -> tuple[int, float]:
        """``(epochs, lr)`` of the first phase (bp/act) or of the pas phase, once resolved."""
        epochs, lr = (self.epochs, self.lr) if which == "first" else (self.pas_epochs, self.pas_lr)
        return required(epochs, "epochs" if which == "first" else "pas_epochs"), required(lr, "lr" if which == "first" else "pas_lr")


class ActSettings(_Group):
    """AxTrain-act's sensitivity regulariser S and its weight gamma (paper 3.1), and axtrain's switch to pas."""

    gamma_initial: float | None = Field(
        None, ge=0, description="initial weight gamma of S in E + gamma*S (act); default per app (3e-3 breast-cancer/ionosphere, 1e-3 others)"
    )
    gamma_step: float | None = Field(
        None, ge=0, description="per-epoch change of gamma (paper 3.1.3); default per app (gamma_initial / 5)"
    )
    gamma_max: float | None = Field(None, gt=0, description="upper clamp of gamma (None: unbounded)")
    gamma_accuracy_bound: float | None = Field(
        None, ge=0, le=1, description="training accuracy above which gamma also increases (None: error rule only)"
    )
    sensitivity_form: Literal["per_sample", "batch"] = Field(
        "per_sample", description="how the batch enters S: per_sample (mean of per-sample S) or batch (S of the mean output)"
    )
    probe_samples: int = Field(256, ge=1, description="training samples on which S is measured every epoch")
    converge_tol: float = Field(
        0.01, ge=0, description="axtrain: act stops when E and S each changed by less than this fraction over converge_patience epochs"
    )
    converge_patience: int = Field(5, ge=1, description="axtrain: window (epochs) of the act convergence rule")


class Evaluation(_Group):
    """How the trained network is measured on the target hardware."""

    ntv_eval_runs: int = Field(10, ge=1, description="fault maps averaged when evaluating below nominal voltage")


#: The groups of TrainConfig and their record types, in file order.
GROUPS: dict[str, type[BaseModel]] = {"schedule": Schedule, "hardware": HardwareTarget, "act": ActSettings, "evaluation": Evaluation}
#: Where each grouped key lives: the flat name (old config files, command-line options) -> its group.
FLAT_KEYS: dict[str, str] = {name: group for group, model in GROUPS.items() for name in model.model_fields}


def nest(values: Mapping[str, Any], source: str = "config") -> dict[str, Any]:
    """``values`` with flat keys of a group (``epochs``, ``multiplier``, ...) moved into their group
    (``schedule.epochs``, ``hardware.multiplier``, ...). A key given both ways is a ConfigError."""
    out = {key: value for key, value in values.items() if key not in FLAT_KEYS}
    for key, value in values.items():
        if key not in FLAT_KEYS:
            continue
        group = FLAT_KEYS[key]
        current = out.get(group) or {}
        current = current.model_dump() if isinstance(current, BaseModel) else dict(current)
        if key in current:
            raise ConfigError(f"{source}: {key} is given twice, at the top level and in {group}")
        current[key] = value
        out[group] = current
    return out


class TrainConfig(BaseModel):
    """Everything that determines a training run, in documented groups. Frozen; unknown keys are errors.

    Files may also give a group's keys flat at the top level (the layout before the groups, and the
    names of the command-line options): they are moved into their group (docs/decisions.md 43).
    NaN, infinity and integers past :data:`axtrain.limits.TRAIN_CONFIG_BOUNDS` are errors too.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    app: str = Field(description="application name (axtrain.datasets.APPLICATIONS), e.g. 'breast-cancer'")
    method: Method = Field(Method.BP, description="training method: " + ", ".join(METHOD_NAMES))
    seed: int = Field(0, ge=0, description="seed of the data split, initial weights, shuffling and fault maps")
    output_layer: Literal["sigmoid", "softmax"] | None = Field(
        None,
        description="output layer: sigmoid (the paper's: Sigmoid outputs, MSE loss against one-hot targets, S on the Sigmoid outputs) or softmax (cross-entropy, S on the logits); default sigmoid for act, pas, axtrain and approxann from act, softmax for bp and approxann from bp (docs/decisions.md 60)",
    )
    approxann_start: Literal["bp", "act"] = Field("bp", description="approxann: train the starting network with bp or act")
    schedule: Schedule = Field(default_factory=Schedule, description="epochs, batch size, learning rates")
    hardware: HardwareTarget = Field(default_factory=HardwareTarget, description="the target: multiplier, weight-SRAM voltage, bit widths")
    act: ActSettings = Field(default_factory=ActSettings, description="act's regulariser and axtrain's convergence rule")
    evaluation: Evaluation = Field(default_factory=Evaluation, description="measuring the trained network")
    threads: int | None = Field(
        None, ge=0, description="CPU threads for torch during the run (0: every CPU the process may use, never OMP_NUM_THREADS; default 1 for the small UCI apps, whose tiny GEMMs only lose to threading overhead)"
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto picks cuda when available")

    @model_validator(mode="before")
    @classmethod
    def _nest_flat_keys(cls, data: Any) -> Any:
        return nest(data) if isinstance(data, Mapping) else data

    @field_validator("app")
    @classmethod
    def _known_app(cls, value: str) -> str:
        if value not in APPLICATIONS:
            raise ValueError(unknown_application_message(value))
        return value

    @model_validator(mode="after")
    def _bounded(self) -> "TrainConfig":
        # the bounds of axtrain.limits, by flat name; grouped fields are looked up in their group
        for name, limit in TRAIN_CONFIG_BOUNDS.items():
            holder = getattr(self, FLAT_KEYS[name]) if name in FLAT_KEYS else self
            value = getattr(holder, name)
            if value is not None and value > limit:
                raise ValueError(f"{name} = {value} exceeds the limit of {limit}")
        return self

    def resolved(self) -> "TrainConfig":
        """A copy with every ``None`` default filled from the application's defaults."""
        defaults = {**_FALLBACK_DEFAULTS, **APP_DEFAULTS.get(self.app, {})}
        values = self.model_dump()
        for key, value in defaults.items():
            target = values[FLAT_KEYS[key]] if key in FLAT_KEYS else values
            if target.get(key) is None:
                target[key] = value
        if values["output_layer"] is None:
            # The paper's methods train the paper's network; plain BP stays the conventional softmax
            # network (docs/decisions.md 60). Comparisons (reproduce) set it for every network.
            conventional = values["method"] == Method.BP or (values["method"] == Method.APPROXANN and values["approxann_start"] == "bp")
            values["output_layer"] = "softmax" if conventional else "sigmoid"
        schedule = values["schedule"]
        if schedule["pas_lr"] is None:
            # Chosen on validation splits (docs/decisions.md 32): fine-tuning through an approximate
            # multiplier wants a small step (lr / 10), training through fresh bit-flip maps every step
            # (much noisier gradients, larger moves needed) recovers far more at the full lr.
            # Chosen per mode the same way (decision 62): DRUM(1) moves the outputs far enough that the
            # full lr recovers more there; at k >= 2 lr / 10 is as good or better.
            aggressive = str(self.hardware.multiplier) in PAS_FULL_LR_MODES
            schedule["pas_lr"] = schedule["lr"] if self.hardware.faulty or aggressive else schedule["lr"] / 10
        return TrainConfig.model_validate(values)

    @property
    def outputs(self) -> Literal["sigmoid", "softmax"]:
        """The resolved output layer (``output_layer`` after :meth:`resolved`)."""
        return required(self.output_layer, "output_layer")

    def identity(self) -> dict[str, Any]:
        """The fields that decide the trained weights (``device`` excluded): resume needs them equal."""
        values = self.model_dump(mode="json")
        values.pop("device")
        return values


#: The ``source`` of values given as command-line options (errors then name the option, not a key).
OPTIONS_SOURCE = "options"


def _one_line(exc: ValidationError, source: str) -> str:
    first = exc.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "(top level)"
    message = str(first["msg"]).removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown key"
    elif first["type"] == "missing":
        message = "required key is missing"
    extra = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    if source == OPTIONS_SOURCE:
        # Values that came from the command line are named as the user typed them: --app, --pas-lr.
        option = "--" + str(first["loc"][-1]).replace("_", "-") if first["loc"] else "options"
        if first["type"] == "missing":
            return f"{option} is required{extra}"
        return f"{option}: {message}{extra}"
    return f"{source}: {key}: {message}{extra}"


def make_config(values: Mapping[str, Any], source: str = "config") -> TrainConfig:
    """Validate ``values`` into a TrainConfig; a bad key or value is one ConfigError line naming it."""
    try:
        return TrainConfig(**nest(values, source))
    except ValidationError as exc:
        raise ConfigError(_one_line(exc, source)) from None
    except TypeError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping stored in a JSON (``.json``) or YAML (other suffixes) config file."""
    return read_mapping(path, "config file")


def load_config(path: str | Path | None = None, **overrides: Any) -> TrainConfig:
    """File values (if any) overridden by the non-None ``overrides``; validated, not yet resolved."""
    values: dict[str, Any] = read_config_file(path) if path is not None else {}
    source = str(path) if path is not None else OPTIONS_SOURCE
    # Validate the file on its own first so that an error names the file's key, not an option.
    if path is not None:
        try:
            TrainConfig.model_validate(nest({"app": "breast-cancer", **values}, source))
        except ValidationError as exc:
            raise ConfigError(_one_line(exc, source)) from None
    values.update({k: v for k, v in overrides.items() if v is not None})
    return make_config(values, source)
