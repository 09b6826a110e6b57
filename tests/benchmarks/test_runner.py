"""``python -m benchmarks``: one failing benchmark module is reported and the others still run; each
module runs in a fresh process of its own unless ``--in-process``."""

from __future__ import annotations

import importlib
import json
import os
import sys
import types
from pathlib import Path

import pytest

from benchmarks.common import Result


def test_runner_reports_a_failing_module_and_continues(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    runner = importlib.import_module("benchmarks.__main__")
    good = types.ModuleType("benchmarks.bench_zz_good")
    good.run = lambda quick=False: [Result("good thing", 0.5, "base", 1.0, limit=1.0)]  # type: ignore[attr-defined]
    broken = types.ModuleType("benchmarks.bench_zz_broken")

    def explode(quick: bool = False) -> list[Result]:
        raise RuntimeError("boom\nsecond line")

    broken.run = explode  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "benchmarks.bench_zz_good", good)
    monkeypatch.setitem(sys.modules, "benchmarks.bench_zz_broken", broken)
    monkeypatch.setattr(runner, "discover", lambda directory=None: ["zz_broken", "zz_good"])

    out = tmp_path / "results.json"
    status = runner.main(["--quick", "--in-process", "--out", str(out)])
    printed = capsys.readouterr().out
    assert status == 1  # a module failed
    assert "zz_broken (FAILED)" in printed and "good thing" in printed and "RuntimeError: boom second line" in printed
    data = json.loads(out.read_text())
    assert data["failed"] == {"zz_broken": "RuntimeError: boom second line"}
    names = [row["name"] for row in data["results"]]
    assert names == ["zz_broken (FAILED)", "good thing"]
    assert data["results"][0]["measured_s"] is None and data["results"][1]["ratio"] == 0.5

    assert runner.main(["--only", "bench_zz_good", "--in-process", "--out", str(out)]) == 0
    assert [row["name"] for row in json.loads(out.read_text())["results"]] == ["good thing"]
    assert "met    good thing: 0.50 (limit 1)" in capsys.readouterr().out
    # A missed limit is a printed verdict, not a failure (a loaded machine must not fail `make bench`).
    good.run = lambda quick=False: [Result("slow thing", 2.0, "base", 1.0, limit=1.5)]  # type: ignore[attr-defined]
    assert runner.main(["--only", "zz_good", "--in-process", "--out", str(out)]) == 0
    assert "MISSED slow thing: 2.00 (limit 1.5)" in capsys.readouterr().out
    assert json.loads(out.read_text())["results"][0]["ok"] is False
    assert runner.main(["--only", "nope", "--out", str(out)]) == 2


# Three real module files for the isolated runs: the first leaves state behind in a module every
# benchmark imports, the second reports whether it sees that state, the third dies without reporting.
_MODULES = {
    "bench_a_leaves_state.py": """
import benchmarks.common as common
from benchmarks.common import Result

def run(quick=False):
    common.LEFT_BEHIND = True
    return [Result("a ran", 1.0, "base", 2.0, limit=1.0, note="quick" if quick else "full")]
""",
    "bench_b_reads_state.py": """
import os
import benchmarks.common as common
from benchmarks.common import Result

def run(quick=False):
    seen = getattr(common, "LEFT_BEHIND", False)
    return [Result("b saw state" if seen else "b saw a fresh process", 3.0, "base", 1.0, note=str(os.getpid()))]
""",
    "bench_c_dies.py": """
import os

def run(quick=False):
    os._exit(7)
""",
}


def test_each_module_runs_in_a_fresh_process(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runner = importlib.import_module("benchmarks.__main__")
    modules = tmp_path / "modules"
    modules.mkdir()
    for name, text in _MODULES.items():
        (modules / name).write_text(text)
    out = tmp_path / "results.json"

    status = runner.main(["--quick", "--modules-dir", str(modules), "--out", str(out)])
    printed = capsys.readouterr().out
    assert status == 1  # bench_c died
    rows = json.loads(out.read_text())["results"]
    assert [row["name"] for row in rows] == ["a ran", "b saw a fresh process", "c_dies (FAILED)"]
    assert rows[0]["note"] == "quick" and rows[0]["ratio"] == 0.5 and rows[0]["ok"] is True
    assert rows[1]["ratio"] == 3.0 and rows[1]["ok"] is None
    assert int(rows[1]["note"]) != os.getpid()  # measured in another process
    assert rows[2]["measured_s"] is None and "exited with status 7 before reporting" in rows[2]["note"]
    assert "met    a ran: 0.50 (limit 1)" in printed

    # The same modules in this process: the second sees what the first left behind (what the
    # isolation removes), and the runner itself survives only because bench_c is left out.
    common = importlib.import_module("benchmarks.common")
    try:
        assert runner.main(["--in-process", "--modules-dir", str(modules), "--only", "a_leaves_state", "--only", "b_reads_state", "--out", str(out)]) == 0
        assert [row["name"] for row in json.loads(out.read_text())["results"]] == ["a ran", "b saw state"]
    finally:
        if hasattr(common, "LEFT_BEHIND"):
            delattr(common, "LEFT_BEHIND")
