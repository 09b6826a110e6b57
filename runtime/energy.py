"""Pricing: event counts of one inference -> joules, by a pure function of (events, table, arch).

``price`` never looks at data or the bundle: the same events and table always give the same
breakdown. Categories (docs/runtime.md):

* compute: multipliers (per mode and operand width, ``TechnologyTable.multiplier_energy``) and
  adders (accumulator additions at ``accumulator_bits``; ReLU/max-pool comparisons and requantising
  shifts priced as adds at the neuron word width); ``adder_tree``: the partial-sum additions of dot
  products split over several PEs (synapse parallelism), at ``accumulator_bits``;
  ``requant_multipliers``: a table-scaled REQ's multiply by its 31-bit multiplier, priced as one
  exact 32x32-bit multiply (our choice: the technology table has no 48x31 multiplier);
* storage: weight buffer (SRAM, dynamic energy ~V^2 at the weight-SRAM voltage of each access),
  neuron buffer (SRAM, nominal), bias buffer (register file), PE weight and neuron local memories,
  DRAM bytes;
* leakage: every on-chip memory's capacity leaks for the whole inference, the weight buffer at the
  weight-SRAM voltage in effect during each cycle, everything else at nominal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from axtrain.formats.arch import Architecture
from axtrain.formats.isa import BIAS_WORD_BITS
from axtrain.hwmodels.technology import TechnologyTable
from axtrain.runtime.events import Events, split_access_key, split_multiply_key


@dataclass(frozen=True)
class EnergyBreakdown:
    """Joules of one inference by category, with the parts that make them up."""

    compute: dict[str, float]  # "multipliers:<mode>@<bits>", "adders"
    storage: dict[str, float]  # memory -> dynamic joules, "dram"
    leakage: dict[str, float]  # memory -> joules
    seconds: float  # latency of the inference
    utilization: float  # active PE-cycles / (PEs x cycles)

    @property
    def compute_joules(self) -> float:
        return float(sum(self.compute.values()))

    @property
    def multiplier_joules(self) -> float:
        return float(sum(v for k, v in self.compute.items() if k.startswith("multipliers")))

    @property
    def storage_joules(self) -> float:
        return float(sum(self.storage.values()))

    @property
    def sram_joules(self) -> float:
        """Dynamic plus leakage energy of the weight and neuron SRAM buffers."""
        names = ("weight_buffer", "neuron_buffer")
        return float(sum(self.storage.get(n, 0.0) + self.leakage.get(n, 0.0) for n in names))

    @property
    def leakage_joules(self) -> float:
        return float(sum(self.leakage.values()))

    @property
    def total_joules(self) -> float:
        return self.compute_joules + self.storage_joules + self.leakage_joules

    @property
    def power_watts(self) -> float:
        return self.total_joules / self.seconds if self.seconds > 0 else 0.0

    def scaled(self, factor: float) -> "EnergyBreakdown":
        """Every joule and the seconds times ``factor`` (a batch's breakdown per inference: 1 / batch)."""

        def times(parts: dict[str, float]) -> dict[str, float]:
            return {k: v * factor for k, v in parts.items()}

        return EnergyBreakdown(times(self.compute), times(self.storage), times(self.leakage), self.seconds * factor, self.utilization)

    def as_dict(self) -> dict[str, Any]:
        return {
            "joules_per_inference": self.total_joules,
            "compute_joules": self.compute_joules,
            "storage_joules": self.storage_joules,
            "leakage_joules": self.leakage_joules,
            "breakdown": {
                "compute": dict(sorted(self.compute.items())),
                "storage": dict(sorted(self.storage.items())),
                "leakage": dict(sorted(self.leakage.items())),
            },
        }


def _word_bits(memory: str, arch: Architecture) -> int:
    return {
        "weight_buffer": arch.weight_word_bits,
        "weight_local": arch.weight_word_bits,
        "neuron_buffer": arch.neuron_word_bits,
        "neuron_local": arch.neuron_word_bits,
        "bias_buffer": BIAS_WORD_BITS,
    }[memory]


def memory_capacity_bits(arch: Architecture) -> dict[str, int]:
    """Bits stored by each on-chip memory (what leaks)."""
    return {
        "weight_buffer": arch.weight_buffer_bytes * 8,
        "neuron_buffer": arch.neuron_buffer_bytes * 8,
        "bias_buffer": arch.bias_buffer_words * BIAS_WORD_BITS,
        "weight_local": arch.pe_count * arch.pe_weight_memory_bytes * 8,
        "neuron_local": arch.pe_count * arch.pe_neuron_memory_bytes * 8,
    }


def price(events: Events, tech: TechnologyTable, arch: Architecture) -> EnergyBreakdown:
    """Joules of the inference whose events are ``events`` (a pure function)."""
    compute: dict[str, float] = {}
    for key, count in events.multiplies.items():
        mode, bits = split_multiply_key(key)
        compute[f"multipliers:{key}"] = count * tech.multiplier_energy(mode, bits)
    # The table's adder is linear in width and defined up to 32 bits; the accumulator may be wider.
    per_bit = tech.adder_energy(32) / 32
    if events.requant_multiplies:  # only then: power-of-two bundles keep their breakdown keys
        compute["requant_multipliers"] = events.requant_multiplies * tech.multiplier_energy("exact", 32)
    compute["adders"] = per_bit * (events.additions * arch.accumulator_bits + (events.comparisons + events.requantizations) * arch.neuron_word_bits)
    if events.partial_sum_additions:
        compute["adder_tree"] = per_bit * events.partial_sum_additions * arch.accumulator_bits
    storage: dict[str, float] = {}
    for counter, is_read in ((events.reads, True), (events.writes, False)):
        for key, words in counter.items():
            memory, voltage = split_access_key(key)
            bits = words * _word_bits(memory, arch)
            if memory in ("weight_buffer", "neuron_buffer"):
                joules = tech.sram_read_energy(bits, voltage) if is_read else tech.sram_write_energy(bits, voltage)
            elif memory == "bias_buffer":
                joules = tech.register_energy(bits)
            else:
                joules = tech.local_memory_energy(bits)
            storage[memory] = storage.get(memory, 0.0) + joules
    storage["dram"] = tech.dram_energy(events.dram_read_bytes + events.dram_write_bytes)
    seconds = events.cycles / arch.clock_hz
    capacity = memory_capacity_bits(arch)
    leakage: dict[str, float] = {}
    for memory, bits in capacity.items():
        if memory == "weight_buffer":
            leakage[memory] = sum(tech.sram_leakage_energy(bits, cycles / arch.clock_hz, float(v)) for v, cycles in events.cycles_by_voltage.items())
        else:
            leakage[memory] = tech.sram_leakage_energy(bits, seconds, tech.nominal_voltage_v)
    utilization = events.active_pe_cycles / (arch.pe_count * events.cycles) if events.cycles else 0.0
    return EnergyBreakdown(compute, storage, leakage, seconds, utilization)
