"""Technology table files (axtrain/formats/technology.py): YAML/JSON round trip, defaults kept, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from axtrain.errors import ConfigError
from axtrain.formats.technology import load_table, save_table
from axtrain.hwmodels.technology import DEFAULT_65NM


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_save_load_round_trip(tmp_path: Path, suffix: str) -> None:
    table = DEFAULT_65NM.model_copy(update={"dram_pj_per_byte": 123.5, "clock_frequency_hz": 5e8})
    path = save_table(table, tmp_path / f"tech{suffix}")
    assert load_table(path) == table
    assert load_table(path) != DEFAULT_65NM


def test_partial_file_keeps_defaults(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("dram_pj_per_byte: 100\n")
    table = load_table(path)
    assert table.dram_pj_per_byte == 100.0 and table.adder_32bit_pj == DEFAULT_65NM.adder_32bit_pj


def test_load_errors_are_one_line_naming_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"dram_pj_per_byte": 100, "sram_pj": 1}))
    with pytest.raises(ConfigError) as info:
        load_table(path)
    message = str(info.value)
    assert "sram_pj" in message and str(path) in message and "unknown key" in message and "\n" not in message
    path.write_text(json.dumps({"clock_frequency_hz": "fast"}))
    with pytest.raises(ConfigError, match="clock_frequency_hz"):
        load_table(path)
    path.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="mapping"):
        load_table(path)
    yaml_path = tmp_path / "bad.yaml"
    yaml_path.write_text("a: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_table(yaml_path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_table(tmp_path / "missing.yaml")
