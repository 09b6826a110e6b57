"""`axtrain data list` and `axtrain data show`."""

from __future__ import annotations

import json
import subprocess
import sys

from click.testing import CliRunner

from axtrain.cli import cli
from axtrain.datasets import APPLICATIONS


def test_data_list_table() -> None:
    result = CliRunner().invoke(cli, ["data", "list"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 2 + 6  # header, rule, six applications
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert set(rows) == set(APPLICATIONS)
    # samples, features, classes, train, test
    assert rows["satimage"][1:7] == ["6435", "36", "6", "5148", "1287", "36-64-64-7"]
    assert rows["mnist-cnn"][1:7] == ["70000", "784", "10", "60000", "10000", "LeNet-5"]


def test_data_list_json() -> None:
    result = CliRunner().invoke(cli, ["data", "list", "--json"])
    assert result.exit_code == 0
    rows = json.loads(result.output)
    assert [r["app"] for r in rows] == list(APPLICATIONS)
    assert rows[0]["topology"] == [30, 64, 64, 2] and rows[0]["sram_voltages_mv"]["aggressive"] == 400


def test_data_show_counts_add_up() -> None:
    result = CliRunner().invoke(cli, ["data", "show", "breast-cancer", "--json", "--seed", "3"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    counts = info["class_counts"]
    assert {name: c["train"] + c["test"] for name, c in counts.items()} == {"B": 357, "M": 212}
    assert sum(c["test"] for c in counts.values()) == info["test"] == 114


def test_unknown_app_exits_2_with_one_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "axtrain.cli", "data", "show", "no-such-app"], capture_output=True, text=True
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "no-such-app" in lines[0] and "breast-cancer" in lines[0]
