"""Re-plan a compiled bundle: new per-layer multiplier modes and weight-SRAM voltages, same network.

A :class:`Plan` names one multiplier mode and one weight-SRAM voltage per compute (weighted) layer.
:func:`replan_files` turns a bundle plus a plan into the files of a new bundle (docs/explore.md):

* ``program.bin`` / ``program.asm``: every ``MODE`` instruction inside a layer's program range gets
  the plan's mode code. Operands ``mt``/``count`` are kept, so the instruction count, every layer's
  ``program`` range and the schedule are unchanged (the runs of the old table still cover every
  output neuron, now all with one code);
* ``layers.json``: ``multipliers`` (one entry per output neuron) and ``sram_voltage``;
* ``manifest.json``: the per-layer summary (the hash list is recomputed by ``write_bundle``);
* ``golden/``: the layer outputs recomputed by :func:`axtrain.hwmodels.layers.forward` on the integer
  layers rebuilt from the bundle's own images under the new modes, so ``axtrain verify`` checks the
  re-planned program against an independent computation, as it does for a compiled bundle.

Weights, biases, architecture and golden inputs are copied byte for byte. Voltages change no golden
vector: verify replays the program without NTV faults. The listing notes, the manifest's per-layer
summary, the golden files and the MODE codes come from the same functions the compiler packages a
fresh bundle with (compiler/package.py, compiler/passes/emit.py). ``axtrain explore`` (the search)
uses this module; it lives in the compiler because it writes bundles. Never imports torch.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from axtrain.compiler.package import golden_files, listing_notes, manifest_layers
from axtrain.errors import ConfigError
from axtrain.formats import bundle as fmt
from axtrain.formats.bundle import Bundle, LayerRecord
from axtrain.formats.isa import Instruction, encode_program, listing, mode_code
from axtrain.formats.target import HardwareTarget, Mode, Volts
from axtrain.hwmodels.fixedpoint import FixedPointFormat
from axtrain.hwmodels.layers import QuantizedLayer
from axtrain.hwmodels.multipliers import MultiplierMode


class Plan(BaseModel):
    """One multiplier mode and one weight-SRAM voltage per compute layer (in layer order).

    The fields are ``HardwareTarget``'s types: modes are typed (text is accepted and parsed once, at
    construction), voltages are checked against the NTV model. Frozen and hashable (the search
    caches by plan)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    modes: tuple[Mode, ...]
    voltages: tuple[Volts, ...]

    def __init__(self, modes: Sequence[Any], voltages: Sequence[float]) -> None:
        try:
            super().__init__(modes=tuple(modes), voltages=tuple(voltages))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise ConfigError(f"plan {where}: {str(first['msg']).removeprefix('Value error, ')}") from None

    @classmethod
    def uniform(cls, layers: int, mode: MultiplierMode | str, voltage: float) -> "Plan":
        """The same mode and voltage for ``layers`` compute layers."""
        return cls((mode,) * layers, (voltage,) * layers)

    @classmethod
    def of_target(cls, layers: int, target: HardwareTarget) -> "Plan":
        """Every compute layer at ``target``'s multiplier and SRAM voltage."""
        return cls.uniform(layers, target.multiplier, target.sram_voltage)

    def target(self, layer: int) -> HardwareTarget:
        """Compute layer ``layer``'s multiplier and voltage as a target (default bit widths)."""
        return HardwareTarget(multiplier=self.modes[layer], sram_voltage=self.voltages[layer])

    @property
    def is_uniform(self) -> bool:
        """Whether every compute layer has the same mode and the same voltage."""
        return len(set(self.modes)) <= 1 and len(set(self.voltages)) <= 1

    def label(self) -> str:
        """Short text: ``drum:2,exact@0.66V`` (one voltage) or ``drum:2@0.66V,exact@1.10V``."""
        if len(set(self.voltages)) == 1:
            return f"{','.join(map(str, self.modes))}@{self.voltages[0]:.2f}V"
        return ",".join(f"{m}@{v:.2f}V" for m, v in zip(self.modes, self.voltages, strict=True))

    def as_dict(self) -> dict[str, Any]:
        """JSON form: modes as text, voltages, label."""
        return {"modes": [str(m) for m in self.modes], "voltages": list(self.voltages), "label": self.label()}


def compute_layers(bundle: Bundle) -> list[LayerRecord]:
    """The layers a plan speaks about: those with weights, in order."""
    return [layer for layer in bundle.layers if layer.weights is not None]


def bundle_plan(bundle: Bundle) -> Plan | None:
    """The plan the bundle carries now, or None when some layer mixes modes across its neurons."""
    modes, voltages = [], []
    for layer in compute_layers(bundle):
        distinct = set(layer.modes)
        if len(distinct) != 1:
            return None
        modes.append(distinct.pop())
        voltages.append(float(layer.sram_voltage))
    return Plan(tuple(modes), tuple(voltages))


def check_plan(bundle: Bundle, plan: Plan) -> tuple[tuple[MultiplierMode, ...], tuple[float, ...]]:
    """The modes and voltages of ``plan`` for ``bundle`` (wrong length -> one-line ConfigError; the
    modes and voltages themselves were checked when the plan was made)."""
    n = len(compute_layers(bundle))
    if len(plan.modes) != n or len(plan.voltages) != n:
        raise ConfigError(f"plan gives {len(plan.modes)} modes and {len(plan.voltages)} voltages; {bundle.path} has {n} compute layers")
    return plan.modes, plan.voltages


def _layer_voltages(bundle: Bundle, voltages: Sequence[float]) -> list[float]:
    """A voltage for every layer of the table. Layers without weights (pool, flatten) store nothing
    in the weight SRAM; they take the voltage of the compute layer before them (the first compute
    layer's for leading ones), so a plan with one voltage puts the whole table at that voltage."""
    out: list[float] = []
    compute = iter(voltages)
    current: float | None = None
    pending = 0
    for layer in bundle.layers:
        if layer.weights is not None:
            current = next(compute)
            out.extend([current] * (pending + 1))
            pending = 0
        elif current is None:
            pending += 1
        else:
            out.append(current)
    out.extend([current if current is not None else float(bundle.layers[0].sram_voltage)] * pending)
    return out


def planned_program(bundle: Bundle, modes: Sequence[MultiplierMode]) -> list[Instruction]:
    """The program with every MODE instruction of compute layer ``i`` set to ``modes[i]``."""
    program = list(bundle.program)
    for layer, mode in zip(compute_layers(bundle), modes, strict=True):
        first, end = layer.program
        for index in range(first, end):
            ins = program[index]
            if ins.op == "MODE":
                program[index] = Instruction.of("MODE", mt=ins["mt"], count=ins["count"], code=mode_code(mode))
    return program


def planned_layers(bundle: Bundle, modes: Sequence[MultiplierMode], voltages: Sequence[float]) -> list[LayerRecord]:
    """The layer table under the plan."""
    per_layer_v = _layer_voltages(bundle, voltages)
    modes_iter = iter(modes)
    rows = []
    for layer, v in zip(bundle.layers, per_layer_v, strict=True):
        changes: dict[str, Any] = {"sram_voltage": v}
        if layer.weights is not None:
            changes["multipliers"] = [str(next(modes_iter))] * len(layer.multipliers)
        rows.append(layer.model_copy(update=changes))
    return rows


def apply_plan(bundle: Bundle, plan: Plan) -> Bundle:
    """The bundle under ``plan``, in memory only (what the search simulates; nothing is written).

    The manifest's hash list then describes the source files, so this object is for simulation, not
    for writing: :func:`write_replanned` writes a consistent bundle."""
    modes, voltages = check_plan(bundle, plan)
    program = planned_program(bundle, modes)
    return dataclasses.replace(bundle, program=program, program_bytes=encode_program(program), layers=planned_layers(bundle, modes, voltages))


def integer_layers(bundle: Bundle) -> list[QuantizedLayer]:
    """The network's integer layers rebuilt from the bundle's images and layer table (inverse of the
    compiler's packaging: weights ``[out, fan_in]`` row-major, conv ``fan_in`` in ``c*kh*kw`` order)."""
    out = []
    for layer in bundle.layers:
        fin, fout, fw, _ = layer.formats
        graph: dict[str, Any] = {
            "sources": tuple(layer.sources), "strides": tuple(layer.strides), "pads": tuple(layer.pads), "groups": layer.groups,
            "other_format": None if layer.other_format is None else FixedPointFormat.parse(layer.other_format),
        }
        if layer.op in ("maxpool", "avgpool"):
            kh, kw = (int(v) for v in layer.kernel)
            window: tuple[int, int] | tuple[()] = (kh, kw) if kh != kw else ()
            out.append(QuantizedLayer(
                layer.name, layer.op, fin, fout, kernel=kh, window=window, stride=layer.stride, padding=layer.padding,
                sram_voltage=layer.sram_voltage, count_include_pad=layer.count_include_pad, **graph,
            ))
            continue
        if layer.op in ("flatten", "add"):
            out.append(QuantizedLayer(layer.name, layer.op, fin, fout, relu=layer.relu, sram_voltage=layer.sram_voltage, **graph))
            continue
        assert layer.weights is not None and layer.bias is not None and fw is not None
        w = bundle.weights[layer.weights.dram : layer.weights.dram + layer.weights.count].reshape(layer.weights.shape)
        if layer.op == "conv":
            w = w.reshape(w.shape[0], layer.input_shape[0] // layer.groups, *layer.kernel)
        b = bundle.bias[layer.bias.dram : layer.bias.dram + layer.bias.count]
        out.append(QuantizedLayer(
            layer.name, layer.op, fin, fout,
            weight=w.astype(np.int64), weight_format=fw, bias=b.astype(np.int64),
            relu=layer.relu, multipliers=layer.modes,
            sram_voltage=layer.sram_voltage, stride=layer.stride, padding=layer.padding, **graph,
        ))
    return out


def replan_files(bundle: Bundle, plan: Plan) -> tuple[dict[str, bytes], dict[str, Any]]:
    """Every file of the re-planned bundle (name -> bytes) and its manifest without the hash list.

    Pure: reads ``bundle`` (already loaded and verified by ``load_bundle``), writes nothing."""
    planned = apply_plan(bundle, plan)
    files: dict[str, bytes] = {}
    for name in bundle.manifest.files:
        files[name] = (bundle.path / name).read_bytes()
    files[fmt.PROGRAM_BIN] = planned.program_bytes
    notes = listing_notes([(layer.name, layer.op) for layer in planned.layers], [(layer.program[0], layer.program[1]) for layer in planned.layers])
    files[fmt.PROGRAM_ASM] = listing(planned.program, notes).encode("utf-8")
    files[fmt.LAYERS] = fmt.json_bytes([layer.model_dump(mode="json") for layer in planned.layers])
    # Golden vectors under the new modes (integer reference, not the interpreter verify replays).
    qlayers = integer_layers(planned)
    files.update(golden_files(qlayers, bundle.golden_inputs(), bundle.manifest.input.fixed_point))
    manifest = json.loads((bundle.path / fmt.MANIFEST).read_text(encoding="utf-8"))
    manifest.pop("files", None)
    manifest["layers"] = manifest_layers(
        (layer.name, layer.op, layer.multipliers if layer.weights is not None else None, layer.sram_voltage) for layer in planned.layers
    )
    from axtrain.compiler.package import finish_format_1_1  # format 1.1 twins, coverage, content hash

    return finish_format_1_1(files, manifest, qlayers, bundle.arch), manifest


def write_replanned(bundle: Bundle, plan: Plan, out: str | Path, overwrite: bool = False) -> Path:
    """Write ``bundle`` under ``plan`` to ``out`` atomically (docs/bundle.md layout)."""
    files, manifest = replan_files(bundle, plan)
    return fmt.write_bundle(out, files, manifest, overwrite=overwrite)
