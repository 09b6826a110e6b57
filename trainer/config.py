"""Training configuration: one frozen, typed record, per-application defaults, YAML/JSON files.

Precedence, lowest first: the field defaults below, the application's defaults (:data:`APP_DEFAULTS`,
filled in by :meth:`TrainConfig.resolved`), a ``--config`` file, command-line options. The resolved
config (no ``None`` left) is what a run directory records in ``config.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from axtrain.errors import AxTrainError, ConfigError
from axtrain.formats.yamltext import read_mapping
from axtrain.hwmodels.multipliers import parse_mode
from axtrain.hwmodels.ntv import NOMINAL_VOLTAGE, bit_error_rate

Method = Literal["bp", "act", "pas", "axtrain", "approxann"]
METHOD_NAMES: tuple[str, ...] = ("bp", "act", "pas", "axtrain", "approxann")

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


class TrainConfig(BaseModel):
    """Everything that determines a training run. Frozen; unknown keys are errors."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    app: str = Field(description="application name (axtrain.datasets.APPLICATIONS), e.g. 'breast-cancer'")
    method: Method = Field("bp", description="training method: bp, act, pas, axtrain or approxann")
    seed: int = Field(0, ge=0, description="seed of the data split, initial weights, shuffling and fault maps")
    epochs: int | None = Field(
        None, ge=0, description="epochs of the first phase: bp/act training; the act cap of axtrain; the BP warm-up of pas"
    )
    pas_epochs: int | None = Field(None, ge=0, description="epochs of emulated (pas) training, for pas and axtrain")
    batch_size: int | None = Field(None, ge=1, description="mini-batch size (samples)")
    lr: float | None = Field(None, gt=0, description="Adam learning rate of the bp/act phase")
    pas_lr: float | None = Field(None, gt=0, description="Adam learning rate of the pas phase (default: lr for K1 = drum:1 and when the target has NTV faults, sram_voltage < 1.1; lr / 10 for the other multiplier targets)")
    weight_decay: float = Field(0.0, ge=0, description="Adam L2 weight decay (0 = none)")
    bits_w: int = Field(8, ge=4, le=16, description="weight width in bits (dynamic fixed point)")
    bits_a: int = Field(8, ge=4, le=16, description="activation width in bits (dynamic fixed point)")
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
    output_layer: Literal["sigmoid", "softmax"] | None = Field(
        None,
        description="output layer: sigmoid (the paper's: Sigmoid outputs, MSE loss against one-hot targets, S on the Sigmoid outputs) or softmax (cross-entropy, S on the logits); default sigmoid for act, pas, axtrain and approxann from act, softmax for bp and approxann from bp (docs/decisions.md 60)",
    )
    sensitivity_form: Literal["per_sample", "batch"] = Field(
        "per_sample", description="how the batch enters S: per_sample (mean of per-sample S) or batch (S of the mean output)"
    )
    converge_tol: float = Field(
        0.01, ge=0, description="axtrain: act stops when E and S each changed by less than this fraction over converge_patience epochs"
    )
    converge_patience: int = Field(5, ge=1, description="axtrain: window (epochs) of the act convergence rule")
    multiplier: str = Field("exact", description="target multiplier: exact, drum:K, or K1..K4 (pas trains with it)")
    sram_voltage: float = Field(NOMINAL_VOLTAGE, description="target weight-SRAM supply voltage in volts (0.4..1.1)")
    ntv_eval_runs: int = Field(10, ge=1, description="fault maps averaged when evaluating below nominal voltage")
    probe_samples: int = Field(256, ge=1, description="training samples on which S is measured every epoch")
    approxann_start: Literal["bp", "act"] = Field("bp", description="approxann: train the starting network with bp or act")
    threads: int | None = Field(
        None, ge=0, description="CPU threads for torch during the run (0: every CPU the process may use, never OMP_NUM_THREADS; default 1 for the small UCI apps, whose tiny GEMMs only lose to threading overhead)"
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto picks cuda when available")

    @field_validator("app")
    @classmethod
    def _known_app(cls, value: str) -> str:
        from axtrain.datasets import APPLICATIONS, unknown_application_message

        if value not in APPLICATIONS:
            raise ValueError(unknown_application_message(value))
        return value

    @field_validator("multiplier")
    @classmethod
    def _mode(cls, value: str) -> str:
        try:
            return str(parse_mode(value))
        except AxTrainError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("sram_voltage")
    @classmethod
    def _voltage(cls, value: float) -> float:
        try:
            bit_error_rate(value)
        except AxTrainError as exc:
            raise ValueError(str(exc)) from None
        return float(value)

    def resolved(self) -> "TrainConfig":
        """A copy with every ``None`` default filled from the application's defaults."""
        defaults = {**_FALLBACK_DEFAULTS, **APP_DEFAULTS.get(self.app, {})}
        values = self.model_dump()
        for key, value in defaults.items():
            if values.get(key) is None:
                values[key] = value
        if values["output_layer"] is None:
            # The paper's methods train the paper's network; plain BP stays the conventional softmax
            # network (docs/decisions.md 60). Comparisons (reproduce) set it for every network.
            conventional = values["method"] == "bp" or (values["method"] == "approxann" and values["approxann_start"] == "bp")
            values["output_layer"] = "softmax" if conventional else "sigmoid"
        if values["pas_lr"] is None:
            # Chosen on validation splits (docs/decisions.md 32): fine-tuning through an approximate
            # multiplier wants a small step (lr / 10), training through fresh bit-flip maps every step
            # (much noisier gradients, larger moves needed) recovers far more at the full lr.
            # Chosen per mode the same way (decision 62): DRUM(1) moves the outputs far enough that the
            # full lr recovers more there; at k >= 2 lr / 10 is as good or better.
            faulty = values["sram_voltage"] < NOMINAL_VOLTAGE
            aggressive = values["multiplier"] in PAS_FULL_LR_MODES
            values["pas_lr"] = values["lr"] if faulty or aggressive else values["lr"] / 10
        return TrainConfig(**values)

    def identity(self) -> dict[str, Any]:
        """The fields that decide the trained weights (``device`` excluded): resume needs them equal."""
        values = self.model_dump()
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
        return TrainConfig(**dict(values))
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
            TrainConfig.model_validate({"app": "breast-cancer", **values})
        except ValidationError as exc:
            raise ConfigError(_one_line(exc, source)) from None
    values.update({k: v for k, v in overrides.items() if v is not None})
    return make_config(values, source)
