"""The technology table: what one event of the accelerator costs, in joules and watts.

The runtime counts events (multiplies per mode, adds, buffer and local-memory accesses, DRAM bytes,
cycles); :class:`TechnologyTable` prices them. Fields hold the raw figures in convenient units
(pJ, pW, Hz, V), each with its source; methods return SI units (J, W, s) so that sums are plain.

Default: :data:`DEFAULT_65NM`, a documented 65 nm-class estimate at the nominal 1.1 V (see
docs/hwmodels.md for the derivations). Logic figures come from Horowitz, "Computing's energy
problem (and what we can do about it)", ISSCC 2014 (45 nm, 0.9 V), scaled to 65 nm / 1.1 V by
``(65/45) * (1.1/0.9)**2 = 2.16`` (capacitance ~ feature size, dynamic energy ~ C V^2).

Multiplier energy per mode comes from a gate-count model (:meth:`TechnologyTable.multiplier_gates`)
in NAND2 gate equivalents (GE), scaled so that an exact 8-bit multiplier costs the calibrated figure:
    exact, n-bit operands:  cell * n^2                       (array multiplier: n^2 AND + adder cells)
    DRUM(k), n-bit:         cell * k^2                       (the k x k core)
                          + 2 * lod * n                      (two leading-one detectors)
                          + 2 * mux * k * ceil(log2 n)       (two operand steering shifters, k bits out)
                          + mux * 2n * ceil(log2 n)          (product shifter, 2k bits into 2n)
                          + 2 * cell * ceil(log2 n)          (adder of the two shift amounts)
                          + xor * 4n                         (sign handling: conditional complement of
                                                              both inputs and the 2n-bit product)
An operand that fits in k bits needs no approximation: DRUM(k) with k >= n costs the exact multiplier.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field

from axtrain.errors import HardwareModelError
from axtrain.hwmodels import ntv
from axtrain.hwmodels.multipliers import MultiplierMode, parse_mode

PJ = 1e-12
PW = 1e-12

# 45 nm / 0.9 V (Horowitz 2014) -> 65 nm / 1.1 V: capacitance ~ feature size, energy ~ C V^2.
HOROWITZ_TO_65NM = (65.0 / 45.0) * (1.1 / 0.9) ** 2

_HOROWITZ = "Horowitz, 'Computing's energy problem', ISSCC 2014, 45 nm 0.9 V"
_SCALED = "scaled x2.16 to 65 nm / 1.1 V (C ~ feature size, E ~ C V^2)"
_GE = "NAND2 gate equivalents, typical static-CMOS standard cell (Weste & Harris, CMOS VLSI Design, 4th ed.)"


class TechnologyTable(BaseModel):
    """Energy per operation, storage leakage and clock of the accelerator (frozen, strict keys).

    Every field is a float with its unit in its name and its source in its description. Load a
    user's own table with :func:`axtrain.formats.technology.load_table`; keys it omits keep the default.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)  # an infinite energy is not a price

    nominal_voltage_v: float = Field(
        ntv.NOMINAL_VOLTAGE, gt=0, description="Nominal supply voltage, V. 65 nm-class nominal; the NTV SRAM model's error-free point (hwmodels.ntv)."
    )
    clock_frequency_hz: float = Field(
        1.0e9, gt=0, description="Clock frequency, Hz. DianNao (Chen et al., ASPLOS 2014) runs at 0.98 GHz in 65 nm; rounded to 1 GHz."
    )
    multiplier_exact_8bit_pj: float = Field(
        0.2 * HOROWITZ_TO_65NM,
        gt=0,
        description=f"Energy of one exact 8x8-bit integer multiply, pJ. {_HOROWITZ}: 0.2 pJ; {_SCALED}. "
        "Calibrates the gate-count model (its n^2 law matches Horowitz's 32-bit 3.1 pJ within 3 %).",
    )
    gate_cell_ge: float = Field(
        8.0, gt=0, description=f"One array-multiplier cell (AND2 + full adder), GE. {_GE}: FA ~6.7 GE + AND2 ~1.3 GE."
    )
    gate_mux2_ge: float = Field(2.33, gt=0, description=f"One 2:1 multiplexer (a shifter stage bit), GE. {_GE}.")
    gate_xor2_ge: float = Field(2.33, gt=0, description=f"One XOR2 (conditional complement for sign-magnitude), GE. {_GE}.")
    gate_lod_ge_per_bit: float = Field(
        2.0, gt=0, description=f"Leading-one detector per operand bit (priority chain + encoder), GE. {_GE}; estimate."
    )
    adder_32bit_pj: float = Field(
        0.1 * HOROWITZ_TO_65NM,
        gt=0,
        description=f"Energy of one 32-bit integer add (the accumulator), pJ. {_HOROWITZ}: 0.1 pJ; {_SCALED}. Other widths scale linearly.",
    )
    register_pj_per_bit: float = Field(
        6.0 * 0.2 * HOROWITZ_TO_65NM / (8.0 * 64),
        gt=0,
        description="Energy to clock one bit into a pipeline register, pJ/bit. A D flip-flop ~6 GE (Weste & Harris) times the "
        "energy per GE implied by the multiplier calibration (0.43 pJ / 512 GE).",
    )
    local_memory_pj_per_bit: float = Field(
        0.12,
        gt=0,
        description="Energy of one PE local-memory (register-file) access, pJ/bit. Eyeriss (Chen et al., ISCA 2016, 65 nm): "
        "a 0.5 kB RF access costs ~1x a 16-bit MAC (~1.95 pJ here) per 16-bit word.",
    )
    sram_read_pj_per_bit: float = Field(
        20.0 / 64 * HOROWITZ_TO_65NM,
        gt=0,
        description=f"Energy of reading one bit of the on-chip weight/neuron buffer at nominal voltage, pJ/bit. {_HOROWITZ}: "
        f"32 kB SRAM, 20 pJ per 64-bit read; {_SCALED}. Agrees with Eyeriss's global buffer (6x MAC ~ 0.73 pJ/bit).",
    )
    sram_write_pj_per_bit: float = Field(
        20.0 / 64 * HOROWITZ_TO_65NM,
        gt=0,
        description="Energy of writing one buffer bit at nominal voltage, pJ/bit. Assumed equal to the read (Horowitz gives one "
        "figure per access).",
    )
    sram_leakage_pw_per_bit: float = Field(
        50.0,
        gt=0,
        description="Leakage power of one stored SRAM bit at nominal voltage, pW/bit. Estimate for a 65 nm low-power 6T cell "
        "(tens of pW/bit; cf. Calhoun & Chandrakasan, JSSC 2007, 65 nm 256 kb SRAM).",
    )
    sram_leakage_decades_per_volt: float = Field(
        1.0,
        ge=0,
        description="Leakage current reduction with supply, decades/V (DIBL: eta ~0.1 over a ~100 mV/decade subthreshold "
        "slope). Leakage power = P_nom * (V/V_nom) * 10**(d*(V - V_nom)); Calhoun, Wang & Chandrakasan, JSSC 2005.",
    )
    dram_pj_per_byte: float = Field(
        200.0,
        gt=0,
        description="Energy of moving one byte from or to off-chip DRAM, pJ/B. Horowitz 2014: 1.3-2.6 nJ per 64-bit access "
        "(160-325 pJ/B); Eyeriss: DRAM ~200x a 16-bit MAC (~195 pJ/B). Independent of the logic node.",
    )

    # -- the gate-count model ---------------------------------------------------------------------

    def multiplier_gates(self, mode: MultiplierMode | str, bits: int) -> float:
        """Gate equivalents of a ``bits`` x ``bits`` multiplier of ``mode`` (see the module docstring)."""
        mode = parse_mode(mode)
        _check_bits(bits)
        exact = self.gate_cell_ge * bits * bits
        k = mode.k
        if k is None or k >= bits:
            return exact
        stages = math.ceil(math.log2(bits))
        return (
            self.gate_cell_ge * k * k
            + 2 * self.gate_lod_ge_per_bit * bits
            + 2 * self.gate_mux2_ge * k * stages
            + self.gate_mux2_ge * 2 * bits * stages
            + 2 * self.gate_cell_ge * stages
            + self.gate_xor2_ge * 4 * bits
        )

    # -- energies (J), powers (W), times (s) ---------------------------------------------------------

    def multiplier_energy(self, mode: MultiplierMode | str, bits: int) -> float:
        """Energy of one multiply of ``bits``-bit operands under ``mode``, J."""
        per_gate = self.multiplier_exact_8bit_pj * PJ / (self.gate_cell_ge * 64)
        return per_gate * self.multiplier_gates(mode, bits)

    def adder_energy(self, bits: int = 32) -> float:
        """Energy of one ``bits``-bit add, J (linear in width)."""
        _check_bits(bits)
        return self.adder_32bit_pj * PJ * bits / 32

    def register_energy(self, bits: int) -> float:
        """Energy of clocking ``bits`` bits into registers, J."""
        return self.register_pj_per_bit * PJ * _count(bits, "bits")

    def local_memory_energy(self, bits: int) -> float:
        """Energy of reading or writing ``bits`` bits of a PE's local memory, J."""
        return self.local_memory_pj_per_bit * PJ * _count(bits, "bits")

    def sram_read_energy(self, bits: int, voltage: float | None = None) -> float:
        """Energy of reading ``bits`` buffer bits at supply ``voltage`` (default nominal), J; ~V^2."""
        return self.sram_read_pj_per_bit * PJ * _count(bits, "bits") * self._dynamic_scale(voltage)

    def sram_write_energy(self, bits: int, voltage: float | None = None) -> float:
        """Energy of writing ``bits`` buffer bits at supply ``voltage`` (default nominal), J; ~V^2."""
        return self.sram_write_pj_per_bit * PJ * _count(bits, "bits") * self._dynamic_scale(voltage)

    def sram_leakage_power(self, bits_stored: int, voltage: float | None = None) -> float:
        """Leakage power of ``bits_stored`` SRAM bits at supply ``voltage``, W."""
        v = self._voltage(voltage)
        scale = (v / self.nominal_voltage_v) * 10.0 ** (self.sram_leakage_decades_per_volt * (v - self.nominal_voltage_v))
        return float(self.sram_leakage_pw_per_bit * PW * _count(bits_stored, "bits_stored") * scale)

    def sram_leakage_energy(self, bits_stored: int, seconds: float, voltage: float | None = None) -> float:
        """Leakage energy of ``bits_stored`` bits held for ``seconds`` at ``voltage``, J."""
        if not seconds >= 0:
            raise HardwareModelError(f"leakage time must be non-negative seconds, got {seconds!r}")
        return self.sram_leakage_power(bits_stored, voltage) * seconds

    def dram_energy(self, n_bytes: int) -> float:
        """Energy of moving ``n_bytes`` bytes between DRAM and the chip, J."""
        return self.dram_pj_per_byte * PJ * _count(n_bytes, "n_bytes")

    @property
    def clock_period_s(self) -> float:
        """One clock cycle, s."""
        return 1.0 / self.clock_frequency_hz

    def cycles_to_seconds(self, cycles: int) -> float:
        """Wall time of ``cycles`` clock cycles, s."""
        return _count(cycles, "cycles") / self.clock_frequency_hz

    # -- helpers ------------------------------------------------------------------------------------

    def _voltage(self, voltage: float | None) -> float:
        if voltage is None:
            return self.nominal_voltage_v
        v = float(voltage)
        if not ntv.MIN_VOLTAGE - 1e-12 <= v <= self.nominal_voltage_v + 1e-12:
            raise HardwareModelError(
                f"SRAM voltage {voltage!r} V is outside the technology table's range [{ntv.MIN_VOLTAGE}, {self.nominal_voltage_v}] V"
            )
        return v

    def _dynamic_scale(self, voltage: float | None) -> float:
        return (self._voltage(voltage) / self.nominal_voltage_v) ** 2

    def describe(self) -> list[tuple[str, float, str]]:
        """``(field, value, description)`` for every field, in declaration order (for printing)."""
        return [(name, getattr(self, name), info.description or "") for name, info in type(self).model_fields.items()]


def _check_bits(bits: int) -> None:
    if not isinstance(bits, int) or not 2 <= bits <= 32:
        raise HardwareModelError(f"operand width must be an integer in [2, 32] bits, got {bits!r}")


def _count(value: int | float, what: str) -> float:
    if not value >= 0:
        raise HardwareModelError(f"{what} must be a non-negative count, got {value!r}")
    return float(value)


DEFAULT_65NM = TechnologyTable()
"""The default table: a 65 nm-class estimate at 1.1 V (sources in each field's description)."""
