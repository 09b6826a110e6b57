"""The per-layer table of a simulation: where the cycles, the bytes and the joules go.

One row per layer of the bundle's layer table plus one for the instructions outside every layer
(``io``: the input load, the output store, END). Cycles, bytes and MACs are the whole batch's
integers; ``cycles_per_inference`` and the energies are per inference at the batch (docs/runtime.md
"Per-layer report", docs/report-schema.md ``per_layer``). The rows' cycles add up to the batch's
cycles and their energies to the energy per inference, because every cycle and every event is
charged to exactly one instruction (runtime/timing.py).
"""

from __future__ import annotations

import csv
import io
from typing import Any, Sequence

from axtrain.formats.arch import Architecture
from axtrain.formats.bundle import LayerRecord
from axtrain.formats.isa import BIAS_WORD_BYTES
from axtrain.hwmodels.technology import TechnologyTable
from axtrain.runtime.energy import price
from axtrain.runtime.events import Events, split_access_key
from axtrain.runtime.timing import MachineRun

MEMORY_LEVELS = ("dram", "weight_buffer", "neuron_buffer", "bias_buffer", "weight_local", "neuron_local")
ENERGY_PARTS = ("compute", "weight_buffer", "neuron_buffer", "bias_buffer", "local", "dram", "leakage")


def _word_bytes(memory: str, arch: Architecture) -> int:
    if memory in ("weight_buffer", "weight_local"):
        return arch.weight_word_bytes
    if memory == "bias_buffer":
        return BIAS_WORD_BYTES
    return arch.neuron_word_bytes


def bytes_moved(events: Events, arch: Architecture) -> dict[str, int]:
    """Bytes read plus written at each memory level (DRAM: whole bursts on the bus)."""
    out = dict.fromkeys(MEMORY_LEVELS, 0)
    out["dram"] = events.dram_read_bytes + events.dram_write_bytes
    for counter in (events.reads, events.writes):
        for key, words in counter.items():
            memory, _ = split_access_key(key)
            out[memory] += words * _word_bytes(memory, arch)
    return out


def energy_parts(events: Events, tech: TechnologyTable, arch: Architecture, batch: int) -> dict[str, float]:
    """Joules per inference of ``events`` (a batch's), by component."""
    e = price(events, tech, arch).scaled(1.0 / batch)
    parts = {
        "compute": e.compute_joules,
        "weight_buffer": e.storage.get("weight_buffer", 0.0),
        "neuron_buffer": e.storage.get("neuron_buffer", 0.0),
        "bias_buffer": e.storage.get("bias_buffer", 0.0),
        "local": e.storage.get("weight_local", 0.0) + e.storage.get("neuron_local", 0.0),
        "dram": e.storage.get("dram", 0.0),
        "leakage": e.leakage_joules,
    }
    parts["total"] = e.total_joules
    return parts


def per_layer_rows(layers: Sequence[LayerRecord], machine: MachineRun, tech: TechnologyTable, arch: Architecture) -> list[dict[str, Any]]:
    """The table's rows, in program order (layers by index, then ``io``)."""
    rows = []
    for key in sorted(machine.layers, key=lambda k: (k < 0, k)):
        ev = machine.layers[key]
        name, op = ("io", "io") if key < 0 else (layers[key].name, layers[key].op)
        rows.append({
            "layer": key,
            "name": name,
            "op": op,
            "cycles": {"total": ev.cycles, "compute": ev.compute_cycles, "transfer": ev.transfer_cycles, "stall": ev.stall_cycles},
            "cycles_per_inference": ev.cycles / machine.batch,
            "pe_utilization": ev.active_pe_cycles / (arch.pe_count * ev.cycles) if ev.cycles else 0.0,
            "macs": ev.macs,
            "bytes": bytes_moved(ev, arch),
            "energy": energy_parts(ev, tech, arch, machine.batch),
        })
    return rows


def _si(value: float, unit: str) -> str:
    for scale, prefix in ((1.0, ""), (1e-3, "m"), (1e-6, "u"), (1e-9, "n"), (1e-12, "p")):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {prefix}{unit}"
    return f"0 {unit}" if value == 0 else f"{value:.2g} {unit}"


def format_per_layer(rows: Sequence[dict[str, Any]], batch: int) -> str:
    """The table for the terminal: per inference at the batch (cycles, bytes, joules)."""
    head = ["layer", "op", "cycles", "compute", "transfer", "stall", "PE util", "DRAM B", "WB B", "NB B", "local B",
            "E compute", "E WB", "E NB", "E local", "E DRAM", "E leak", "E total"]
    body = []
    for r in rows:
        c, b, e = r["cycles"], r["bytes"], r["energy"]
        body.append([
            f"{r['layer']} {r['name']}" if r["layer"] >= 0 else "io", r["op"],
            f"{c['total'] / batch:.0f}", f"{c['compute'] / batch:.0f}", f"{c['transfer'] / batch:.0f}", f"{c['stall'] / batch:.0f}",
            f"{100 * r['pe_utilization']:.1f} %", f"{b['dram'] / batch:.0f}", f"{b['weight_buffer'] / batch:.0f}", f"{b['neuron_buffer'] / batch:.0f}",
            f"{(b['weight_local'] + b['neuron_local']) / batch:.0f}",
            _si(e["compute"], "J"), _si(e["weight_buffer"], "J"), _si(e["neuron_buffer"], "J"), _si(e["local"], "J"), _si(e["dram"], "J"),
            _si(e["leakage"], "J"), _si(e["total"], "J"),
        ])
    widths = [max(len(head[i]), *(len(row[i]) for row in body)) for i in range(len(head))]
    lines = [f"per layer, per inference at batch {batch} (cycles, bytes and joules of one inference; B = bytes)"]
    lines.append("  ".join(h.rjust(w) if i >= 2 else h.ljust(w) for i, (h, w) in enumerate(zip(head, widths, strict=True))))
    for row in body:
        lines.append("  ".join(v.rjust(w) if i >= 2 else v.ljust(w) for i, (v, w) in enumerate(zip(row, widths, strict=True))))
    return "\n".join(lines)


def per_layer_csv(rows: Sequence[dict[str, Any]], batch: int) -> str:
    """The rows as CSV for spreadsheets: cycles and bytes of the whole batch (integers), energies per inference (J)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["layer", "name", "op", "batch", "cycles", "compute_cycles", "transfer_cycles", "stall_cycles", "pe_utilization", "macs",
                     *(f"bytes_{m}" for m in MEMORY_LEVELS), *(f"joules_{p}" for p in (*ENERGY_PARTS, "total"))])
    for r in rows:
        c = r["cycles"]
        writer.writerow([r["layer"], r["name"], r["op"], batch, c["total"], c["compute"], c["transfer"], c["stall"], repr(r["pe_utilization"]), r["macs"],
                         *(r["bytes"][m] for m in MEMORY_LEVELS), *(repr(r["energy"][p]) for p in (*ENERGY_PARTS, "total"))])
    return out.getvalue()
