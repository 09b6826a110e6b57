"""The run directory: everything a training run leaves behind, written atomically, never pickled.

Layout (docs/trainer.md)::

    config.json              the resolved TrainConfig
    versions.json            axtrain.provenance.versions()
    target.json              the hardware the network is trained for (multiplier, sram_voltage)
    history.jsonl            one JSON object per finished epoch
    checkpoint.safetensors   model + optimizer tensors + RNG states; metadata = progress (resume)
    checkpoint.json          a readable copy of the checkpoint's metadata
    weights.safetensors      final float weights; metadata = model description (rebuild)
    layers.safetensors       final integer weights/biases of the QuantizedLayers
    layers.json              their formats, modes, voltages, geometry + run metadata
    summary.json             final accuracies; written last: its presence marks a finished run

Every file goes through :mod:`axtrain.atomic`. The checkpoint's progress lives in the safetensors
metadata itself, so tensors and progress can never disagree after a crash between two writes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.numpy import load as np_load_bytes, save as np_save_bytes
from safetensors.torch import load as torch_load_bytes, save as torch_save_bytes
from torch import nn

from axtrain import atomic
from axtrain.errors import RunError
from axtrain.hwmodels.fixedpoint import FixedPointFormat
from axtrain.hwmodels.layers import QuantizedLayer
from axtrain.hwmodels.multipliers import parse_mode
from axtrain.provenance import versions
from axtrain.trainer.models import from_description

LAYERS_FORMAT_VERSION = 1
CHECKPOINT_FORMAT_VERSION = 1

CONFIG, VERSIONS, TARGET, HISTORY = "config.json", "versions.json", "target.json", "history.jsonl"
CHECKPOINT, CHECKPOINT_JSON = "checkpoint.safetensors", "checkpoint.json"
WEIGHTS, LAYERS, LAYERS_JSON, SUMMARY = "weights.safetensors", "layers.safetensors", "layers.json", "summary.json"


# ---------------------------------------------------------------------------------------------
# Layer records
# ---------------------------------------------------------------------------------------------


def layers_to_files(layers: Sequence[QuantizedLayer], metadata: dict[str, Any]) -> tuple[bytes, dict[str, Any]]:
    """The safetensors bytes (integer tensors) and the JSON document describing ``layers``."""
    tensors: dict[str, np.ndarray] = {}
    records = []
    for layer in layers:
        entry: dict[str, Any] = {
            "name": layer.name,
            "op": layer.op,
            "input_format": str(layer.input_format),
            "output_format": str(layer.output_format),
            "relu": layer.relu,
            "stride": layer.stride,
            "padding": layer.padding,
            "kernel": layer.kernel,
            "meta": layer.meta,
        }
        if layer.has_weights:
            assert layer.weight is not None and layer.bias is not None and layer.weight_format is not None
            tensors[f"{layer.name}.weight"] = np.ascontiguousarray(layer.weight, dtype=np.int64)
            tensors[f"{layer.name}.bias"] = np.ascontiguousarray(layer.bias, dtype=np.int64)
            entry.update(
                weight_format=str(layer.weight_format),
                multipliers=[str(m) for m in layer.multipliers],
                sram_voltage=layer.sram_voltage,
            )
        records.append(entry)
    document = {"format_version": LAYERS_FORMAT_VERSION, "metadata": metadata, "layers": records}
    return np_save_bytes(tensors) if tensors else np_save_bytes({"_empty": np.zeros(0, np.int64)}), document


def layers_from_files(tensor_bytes: bytes, document: dict[str, Any], where: str = "layers") -> tuple[list[QuantizedLayer], dict[str, Any]]:
    """Inverse of :func:`layers_to_files`."""
    if document.get("format_version") != LAYERS_FORMAT_VERSION:
        raise RunError(f"{where}: unknown layers format version {document.get('format_version')!r} (this axtrain reads {LAYERS_FORMAT_VERSION})")
    try:
        tensors = np_load_bytes(tensor_bytes)
    except (SafetensorError, ValueError) as exc:
        raise RunError(f"{where}: unreadable layer tensors ({exc})") from None
    layers: list[QuantizedLayer] = []
    try:
        for entry in document["layers"]:
            common = dict(
                name=entry["name"],
                op=entry["op"],
                input_format=FixedPointFormat.parse(entry["input_format"]),
                output_format=FixedPointFormat.parse(entry["output_format"]),
                relu=bool(entry["relu"]),
                stride=int(entry["stride"]),
                padding=int(entry["padding"]),
                kernel=int(entry["kernel"]),
                meta=dict(entry.get("meta", {})),
            )
            if entry["op"] in ("dense", "conv"):
                layers.append(
                    QuantizedLayer(
                        **common,
                        weight=tensors[f"{entry['name']}.weight"].astype(np.int64),
                        weight_format=FixedPointFormat.parse(entry["weight_format"]),
                        bias=tensors[f"{entry['name']}.bias"].astype(np.int64),
                        multipliers=tuple(parse_mode(m) for m in entry["multipliers"]),
                        sram_voltage=float(entry["sram_voltage"]),
                    )
                )
            else:
                layers.append(QuantizedLayer(**common))
    except KeyError as exc:
        raise RunError(f"{where}: missing entry {exc} in the layer description") from None
    return layers, dict(document.get("metadata", {}))


def load_layers(run_dir: str | Path) -> tuple[list[QuantizedLayer], dict[str, Any]]:
    """The calibrated QuantizedLayers of a finished run and its metadata (app, method, seed,
    input_shape, n_classes, multiplier, sram_voltage, ...)."""
    root = Path(run_dir)
    tensor_file, json_file = root / LAYERS, root / LAYERS_JSON
    if not tensor_file.is_file() or not json_file.is_file():
        raise RunError(f"{root}: no {LAYERS} / {LAYERS_JSON} (not a finished training run?)")
    try:
        document = json.loads(json_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise RunError(f"{json_file}: not valid JSON ({exc})") from None
    return layers_from_files(tensor_file.read_bytes(), document, str(root))


# ---------------------------------------------------------------------------------------------
# The run directory
# ---------------------------------------------------------------------------------------------


class RunDir:
    """Reads and writes one run directory (see the module docstring)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def finished(self) -> bool:
        return self.file(SUMMARY).is_file()

    def read_json(self, name: str) -> Any:
        try:
            return json.loads(self.file(name).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RunError(f"{self.path}: {name} is missing") from None
        except json.JSONDecodeError as exc:
            raise RunError(f"{self.file(name)}: not valid JSON ({exc})") from None

    def start(self, config: dict[str, Any], target: dict[str, Any]) -> None:
        """Record the run's identity (config, versions, target) at its start."""
        self.path.mkdir(parents=True, exist_ok=True)
        atomic.write_json(self.file(CONFIG), config)
        atomic.write_json(self.file(VERSIONS), versions())
        atomic.write_json(self.file(TARGET), target)

    def clear(self) -> None:
        """Remove the files of an earlier run (``--force``); other files are left alone.

        Order matters when a kill interrupts it: the finished marker goes first and the checkpoint
        next (so a half-cleared run is never "finished" and never resumes the old run's state), the
        config last (so until the end a non-forced rerun with another config is still refused)."""
        for name in (SUMMARY, CHECKPOINT, CHECKPOINT_JSON, WEIGHTS, LAYERS, LAYERS_JSON, HISTORY, TARGET, VERSIONS, CONFIG):
            self.file(name).unlink(missing_ok=True)

    def write_history(self, history: Sequence[dict[str, Any]]) -> None:
        atomic.write_text(self.file(HISTORY), "".join(json.dumps(h, sort_keys=True, allow_nan=False) + "\n" for h in history))

    def read_history(self) -> list[dict[str, Any]]:
        path = self.file(HISTORY)
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

    # -- checkpoint ------------------------------------------------------------------------

    def save_checkpoint(self, tensors: dict[str, torch.Tensor], progress: dict[str, Any]) -> None:
        """One atomic file holding tensors and progress; a readable copy of the progress beside it."""
        progress = {"format_version": CHECKPOINT_FORMAT_VERSION, **progress}
        payload = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
        atomic.write_bytes(self.file(CHECKPOINT), torch_save_bytes(payload, metadata={"progress": json.dumps(progress)}))
        atomic.write_json(self.file(CHECKPOINT_JSON), _readable_progress(progress))

    def load_checkpoint(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
        """``(tensors, progress)`` of the last checkpoint, or None if there is none."""
        path = self.file(CHECKPOINT)
        if not path.is_file():
            return None
        data = path.read_bytes()
        try:
            tensors = torch_load_bytes(data)
            header_len = int.from_bytes(data[:8], "little")
            header = json.loads(data[8 : 8 + header_len])
            progress = json.loads(header["__metadata__"]["progress"])
        except (SafetensorError, ValueError, KeyError, json.JSONDecodeError) as exc:
            raise RunError(f"{path}: unreadable checkpoint ({exc}); rerun with --force to start over") from None
        if progress.get("format_version") != CHECKPOINT_FORMAT_VERSION:
            raise RunError(f"{path}: unknown checkpoint format {progress.get('format_version')!r}; rerun with --force")
        # A kill between the two writes of save_checkpoint leaves the readable copy one epoch behind,
        # and a resume with no epoch left to train would never rewrite it: repair it from the truth.
        readable = _readable_progress(progress)
        if self._read_json_or_none(CHECKPOINT_JSON) != readable:
            atomic.write_json(self.file(CHECKPOINT_JSON), readable)
        return tensors, progress

    def _read_json_or_none(self, name: str) -> Any:
        try:
            return json.loads(self.file(name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    # -- final artifacts -------------------------------------------------------------------

    def save_final(
        self,
        model: nn.Sequential,
        description: list[dict[str, Any]],
        layers: Sequence[QuantizedLayer],
        metadata: dict[str, Any],
        summary: dict[str, Any],
    ) -> None:
        """Weights, layers and summary (last: it marks the run finished)."""
        state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
        atomic.write_bytes(self.file(WEIGHTS), torch_save_bytes(state, metadata={"model": json.dumps(description)}))
        tensor_bytes, document = layers_to_files(layers, metadata)
        atomic.write_bytes(self.file(LAYERS), tensor_bytes)
        atomic.write_json(self.file(LAYERS_JSON), document)
        atomic.write_json(self.file(SUMMARY), summary)


def _readable_progress(progress: dict[str, Any]) -> dict[str, Any]:
    """``checkpoint.json``: the checkpoint's progress without the (long) history."""
    return {k: v for k, v in progress.items() if k != "history"}


def load_model(run_dir: str | Path) -> nn.Sequential:
    """The trained float network of a finished run (architecture from the weights' metadata)."""

    path = Path(run_dir) / WEIGHTS
    if not path.is_file():
        raise RunError(f"{run_dir}: no {WEIGHTS} (not a finished training run?)")
    data = path.read_bytes()
    try:
        header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])
        description = json.loads(header["__metadata__"]["model"])
        state = torch_load_bytes(data)
    except (SafetensorError, ValueError, KeyError, json.JSONDecodeError) as exc:
        raise RunError(f"{path}: unreadable weights ({exc})") from None
    model = from_description(description)
    model.load_state_dict(state)
    return model
