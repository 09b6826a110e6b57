"""The FlexFlow architecture a bundle is compiled for (``--arch FILE``, ``arch.json`` in a bundle).

Every field carries its unit and where its default comes from. The defaults follow the FlexFlow
configuration evaluated by Lu et al. (HPCA 2017): a 16x16 PE array of 16-bit fixed-point MAC units at
1 GHz in 65 nm. The paper does not publish every buffer size in a form we could check, so the memory
sizes and bandwidths below are our own choices, sized so that every network of the AxTrain paper
(the largest activation map is LeNet-5's first convolution, 6x28x28 words) runs without spilling
activations to DRAM, and stated as such. Users override any of them with a YAML or JSON file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from axtrain.errors import ConfigError
from axtrain.formats.isa import operand_range
from axtrain.formats.yamltext import read_mapping

# Field widths of ISA v2 bound what an architecture may declare (derived from the ISA's field specs).
MAX_PES = operand_range("MAC", "m")[1]  # a tile of m x p PEs; m and p share one width
MAX_BUFFER_WORDS = min(operand_range("LDN", "nb")[1], operand_range("LDW", "wb")[1])  # buffer addresses
MAX_LOCAL_WORDS = operand_range("MAC", "k")[1]  # words per PE local memory
MAX_BIAS_WORDS = min(operand_range("LDB", "bb")[1], operand_range("MODE", "mt")[1])  # bias buffer / mode table addresses


class Architecture(BaseModel):
    """A FlexFlow instance: PE array, on-chip memories, bandwidths, clock and word widths.
    NaN and infinity are refused (``clock_hz: .inf`` once priced leakage as infinite joules)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    pe_rows: int = Field(16, ge=1, le=64, description="PE array rows. FlexFlow's evaluated array is 16x16 (Lu et al., HPCA 2017).")
    pe_cols: int = Field(16, ge=1, le=64, description="PE array columns (see pe_rows).")
    clock_hz: float = Field(1.0e9, gt=0, description="Clock frequency in Hz. FlexFlow runs at 1 GHz in TSMC 65 nm (Lu et al., HPCA 2017).")
    weight_word_bits: int = Field(
        16, description="Width of one weight word in DRAM, the weight buffer and PE weight memories, in bits. FlexFlow's datapath is 16-bit fixed point; narrower weights are sign-extended into a word."
    )
    neuron_word_bits: int = Field(16, description="Width of one neuron (activation) word in bits. 16 as FlexFlow's datapath.")
    accumulator_bits: int = Field(
        48, ge=32, le=64, description="PE accumulator width in bits. Our choice: 784 products of two 16-bit operands plus an int32 bias need < 41 bits; 48 leaves headroom."
    )
    weight_buffer_bytes: int = Field(
        131072, gt=0, description="Weight (kernel) buffer capacity in bytes. 128 KiB, the size of ShiDianNao's synapse buffer (Du et al., ISCA 2015, 65 nm): holds all of LeNet-5's 16-bit weights, so they stay resident across a batch; larger layers are streamed block by block (double-buffered)."
    )
    neuron_buffer_bytes: int = Field(
        65536, gt=0, description="Neuron buffer capacity in bytes. Our choice (64 KiB = 32 Ki 16-bit words): holds the input and output maps of any layer of the paper's networks at once."
    )
    bias_buffer_words: int = Field(
        1024, ge=1, le=MAX_BIAS_WORDS, description="Bias register file entries (int32 words, nominal voltage, docs/numerics.md). The multiplier mode table has as many entries (one per output neuron). Our choice: 4 KiB."
    )
    pe_weight_memory_bytes: int = Field(
        128, gt=0, description="Weight local memory of each PE in bytes (64 16-bit words): the longest dot-product chunk a PE holds. Our choice; enough for a 5x5 kernel over 2 channels."
    )
    pe_neuron_memory_bytes: int = Field(128, gt=0, description="Neuron local memory of each PE in bytes (see pe_weight_memory_bytes).")
    weight_buffer_bandwidth: int = Field(
        32, gt=0, description="Weight buffer read/write bandwidth in bytes per cycle (16 words: one per PE row per cycle at 16 rows). Our choice."
    )
    neuron_buffer_bandwidth: int = Field(32, gt=0, description="Neuron buffer read/write bandwidth in bytes per cycle (16 words, one per PE column). Our choice.")
    dram_bandwidth: int = Field(
        16, gt=0, description="Off-chip DRAM bandwidth in bytes per cycle (16 GB/s at 1 GHz, an LPDDR3/DDR3 single-channel class figure). Our choice."
    )
    dram_latency_cycles: int = Field(100, ge=0, description="Cycles from a DRAM request to its first data word (~100 ns at 1 GHz, typical DDR3 access). Our choice.")
    dram_burst_bytes: int = Field(
        64, ge=1, le=4096, description="Bytes of one DRAM burst, the unit the bus moves (a transfer is rounded up to whole bursts, in time and energy). 64 B: DDR3's burst of 8 on a 64-bit channel (JEDEC JESD79-3)."
    )
    pe_pipeline_fill_cycles: int = Field(
        2, ge=0, le=64, description="Cycles a MAC instruction spends filling the PE pipeline before its first product accumulates (operand registers, then the multiplier's output register). Our choice."
    )
    pipeline_drain_cycles: int = Field(
        1, ge=1, le=64, description="Cycles SYNC and END take to drain the PE array's pipeline (ISA v1's one cycle). Our choice."
    )
    synapse_parallelism: bool = Field(
        True, description="Split a MAC tile's dot products over the PEs the tile leaves free, with an adder tree for the partial sums (FlexFlow's synapse parallelism, Lu et al., HPCA 2017). Cycles and adds only: integer sums are exact, so outputs do not change."
    )

    @model_validator(mode="after")
    def _check(self) -> "Architecture":
        for name in ("weight_word_bits", "neuron_word_bits"):
            if getattr(self, name) not in (8, 16, 32):
                raise ValueError(f"{name} must be 8, 16 or 32, got {getattr(self, name)}")
        if self.pe_count > MAX_PES:
            raise ValueError(f"pe_rows * pe_cols = {self.pe_count} exceeds ISA v2's limit of {MAX_PES} PEs")
        for name, words, limit in (
            ("weight_buffer_bytes", self.weight_buffer_words, MAX_BUFFER_WORDS),
            ("neuron_buffer_bytes", self.neuron_buffer_words, MAX_BUFFER_WORDS),
            ("pe_weight_memory_bytes", self.pe_weight_memory_words, MAX_LOCAL_WORDS),
            ("pe_neuron_memory_bytes", self.pe_neuron_memory_words, MAX_LOCAL_WORDS),
        ):
            if not 1 <= words <= limit:
                raise ValueError(f"{name} gives {words} words, outside ISA v2's range [1, {limit}]")
        return self

    @property
    def pe_count(self) -> int:
        """Number of PEs in the array."""
        return self.pe_rows * self.pe_cols

    @property
    def weight_word_bytes(self) -> int:
        return self.weight_word_bits // 8

    @property
    def neuron_word_bytes(self) -> int:
        return self.neuron_word_bits // 8

    @property
    def weight_buffer_words(self) -> int:
        """Weight buffer capacity in weight words."""
        return self.weight_buffer_bytes // self.weight_word_bytes

    @property
    def neuron_buffer_words(self) -> int:
        """Neuron buffer capacity in neuron words."""
        return self.neuron_buffer_bytes // self.neuron_word_bytes

    @property
    def pe_weight_memory_words(self) -> int:
        return self.pe_weight_memory_bytes // self.weight_word_bytes

    @property
    def pe_neuron_memory_words(self) -> int:
        return self.pe_neuron_memory_bytes // self.neuron_word_bytes

    def to_json(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict (what ``arch.json`` holds)."""
        return self.model_dump(mode="json")


DEFAULT_ARCH = Architecture()


def _one_line(exc: ValidationError, source: str) -> str:
    problems = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "architecture"
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown key"
        problems.append(f"{where}: {message}")
    return f"{source}: " + "; ".join(problems)


def arch_from_dict(data: Any, source: str = "architecture") -> Architecture:
    """Validate a mapping into an :class:`Architecture`; any problem -> one-line ConfigError."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of architecture fields, got {type(data).__name__}")
    try:
        return Architecture.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_one_line(exc, source)) from None


def load_arch(path: str | Path) -> Architecture:
    """Read an architecture from a YAML or JSON file; unknown keys -> ConfigError."""
    return arch_from_dict(read_mapping(path, "architecture file"), str(path))
