"""``python -m benchmarks``: one failing benchmark module is reported and the others still run."""

from __future__ import annotations

import importlib
import json
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
    monkeypatch.setattr(runner, "discover", lambda: ["zz_broken", "zz_good"])

    out = tmp_path / "results.json"
    status = runner.main(["--quick", "--out", str(out)])
    printed = capsys.readouterr().out
    assert status == 1  # a module failed
    assert "zz_broken (FAILED)" in printed and "good thing" in printed and "RuntimeError: boom second line" in printed
    data = json.loads(out.read_text())
    assert data["failed"] == {"zz_broken": "RuntimeError: boom second line"}
    names = [row["name"] for row in data["results"]]
    assert names == ["zz_broken (FAILED)", "good thing"]
    assert data["results"][0]["measured_s"] is None and data["results"][1]["ratio"] == 0.5

    assert runner.main(["--only", "bench_zz_good", "--out", str(out)]) == 0
    assert [row["name"] for row in json.loads(out.read_text())["results"]] == ["good thing"]
    assert "met    good thing: 0.50 (limit 1)" in capsys.readouterr().out
    # A missed limit is a printed verdict, not a failure (a loaded machine must not fail `make bench`).
    good.run = lambda quick=False: [Result("slow thing", 2.0, "base", 1.0, limit=1.5)]  # type: ignore[attr-defined]
    assert runner.main(["--only", "zz_good", "--out", str(out)]) == 0
    assert "MISSED slow thing: 2.00 (limit 1.5)" in capsys.readouterr().out
    assert json.loads(out.read_text())["results"][0]["ok"] is False
    assert runner.main(["--only", "nope", "--out", str(out)]) == 2
