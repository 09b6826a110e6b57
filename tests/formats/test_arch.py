"""Architecture config: defaults, file round trip, one-line refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from axtrain.errors import ConfigError
from axtrain.formats.arch import DEFAULT_ARCH, Architecture, arch_from_dict, load_arch


def test_defaults_match_flexflow_evaluated_config() -> None:
    assert (DEFAULT_ARCH.pe_rows, DEFAULT_ARCH.pe_cols, DEFAULT_ARCH.clock_hz) == (16, 16, 1e9)
    assert DEFAULT_ARCH.pe_count == 256
    assert DEFAULT_ARCH.neuron_buffer_words == 65536 // 2
    for name, field in Architecture.model_fields.items():
        assert field.description, f"{name} has no documentation"


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_save_load_round_trip(tmp_path: Path, suffix: str) -> None:
    arch = Architecture(pe_rows=4, pe_cols=8, weight_buffer_bytes=2048, dram_latency_cycles=7)
    path = tmp_path / f"arch{suffix}"
    path.write_text(json.dumps(arch.to_json()))  # JSON is valid YAML
    assert load_arch(path) == arch


def test_partial_yaml_keeps_defaults(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_text("pe_rows: 8\npe_cols: 4\n")
    arch = load_arch(path)
    assert (arch.pe_rows, arch.pe_cols, arch.neuron_buffer_bytes) == (8, 4, DEFAULT_ARCH.neuron_buffer_bytes)


@pytest.mark.parametrize(
    "data, message",
    [
        ({"pe_rowz": 3}, "pe_rowz: unknown key"),
        ({"pe_rows": 0}, "pe_rows: Input should be greater than or equal to 1"),
        ({"weight_word_bits": 12}, "weight_word_bits must be 8, 16 or 32"),
        ({"pe_rows": 64, "pe_cols": 64}, "exceeds ISA v2's limit of 4095 PEs"),
        ({"neuron_buffer_bytes": 1 << 22}, "outside ISA v2's range"),
        ([1, 2], "expected a mapping"),
    ],
)
def test_bad_values_are_one_line_config_errors(data: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        arch_from_dict(data, "arch.yaml")
    assert "\n" not in str(info.value) and str(info.value).startswith("arch.yaml")


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read architecture file"):
        load_arch(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(ConfigError, match="is not valid JSON"):
        load_arch(bad)
