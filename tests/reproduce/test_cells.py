"""Cells: stable, definition-sensitive keys; cache reuse; failures isolated (no torch training here)."""

from __future__ import annotations

import hashlib
import json

import pytest

from axtrain import __version__
from axtrain.errors import RunError
from axtrain.reproduce import tasks
from axtrain.reproduce.cells import Cell, CellStore, closure, model_generations
from axtrain.reproduce.executor import run_cells


def test_key_is_sha256_of_the_canonical_definition():
    dep = Cell("train", {"config": {"app": "ionosphere", "seed": 1}})
    cell = Cell("simulate", {"runs": 50, "sram_voltage": 0.66}, (dep,), label="not hashed")
    text = json.dumps(
        {
            "axtrain": __version__,
            "deps": [dep.key],
            "kind": "simulate",
            "models": {"bundle": "2.0", "report": "axtrain-simulation-report/2", "results": "2"},
            "params": {"runs": 50, "sram_voltage": 0.66},
        },
        sort_keys=True, separators=(",", ":"),
    )
    assert cell.key == hashlib.sha256(text.encode()).hexdigest()
    # dict order and the label do not matter; a copy through JSON gives the same key
    same = Cell("simulate", {"sram_voltage": 0.66, "runs": 50}, (Cell("train", {"config": {"seed": 1, "app": "ionosphere"}}),))
    assert same.key == cell.key
    assert Cell.from_json(json.loads(json.dumps(cell.to_json()))).key == cell.key


@pytest.mark.parametrize(
    "change",
    [
        lambda: Cell("simulate", {"runs": 49, "sram_voltage": 0.66}, (Cell("train", {"config": {"app": "ionosphere", "seed": 1}}),)),
        lambda: Cell("simulate", {"runs": 50, "sram_voltage": 0.85}, (Cell("train", {"config": {"app": "ionosphere", "seed": 1}}),)),
        lambda: Cell("evaluate", {"runs": 50, "sram_voltage": 0.66}, (Cell("train", {"config": {"app": "ionosphere", "seed": 1}}),)),
        # a change upstream (the training config) changes the key downstream
        lambda: Cell("simulate", {"runs": 50, "sram_voltage": 0.66}, (Cell("train", {"config": {"app": "ionosphere", "seed": 2}}),)),
        lambda: Cell("simulate", {"runs": 50, "sram_voltage": 0.66}),
    ],
)
def test_key_changes_with_any_part_of_the_definition(change):
    base = Cell("simulate", {"runs": 50, "sram_voltage": 0.66}, (Cell("train", {"config": {"app": "ionosphere", "seed": 1}}),))
    assert change().key != base.key


def test_key_depends_on_the_axtrain_version(monkeypatch):
    before = Cell("train", {"x": 1}).key
    monkeypatch.setattr("axtrain.reproduce.cells.__version__", "999.0")
    assert Cell("train", {"x": 1}).key != before


@pytest.mark.parametrize("part", ["bundle", "report", "results"])
def test_key_depends_on_the_model_generations(monkeypatch, part):
    """A cell computed under ISA 1 or machine model v1 is not reused after them (decision 175)."""
    before = Cell("train", {"x": 1}).key
    changed = {**model_generations(), part: "999"}
    monkeypatch.setattr("axtrain.reproduce.cells.model_generations", lambda: changed)
    assert Cell("train", {"x": 1}).key != before


def test_network_cells_are_shared_and_config_sensitive():
    from dataclasses import replace

    from axtrain.reproduce import networks as nets
    from axtrain.reproduce.profile import QUICK

    # The BP network of (app, seed) is one cell whichever figure asks for it.
    sim = nets.simulate(QUICK, nets.bp(QUICK, "ionosphere", 0), "ionosphere", 0, "exact", 0.66)
    assert sim.deps[0].deps[0] == nets.bp(QUICK, "ionosphere", 0)
    assert nets.evaluate(QUICK, nets.bp(QUICK, "ionosphere", 0), "ionosphere", 0, ("K1",)).deps[0] == nets.bp(QUICK, "ionosphere", 0)
    other = replace(QUICK, settings={a: replace(s, epochs=s.epochs + 1) for a, s in QUICK.settings.items()})
    assert nets.bp(other, "ionosphere", 0).key != nets.bp(QUICK, "ionosphere", 0).key
    assert nets.bp(QUICK, "ionosphere", 1).key != nets.bp(QUICK, "ionosphere", 0).key
    # AxTrain networks: one per K, all from the same act network
    ax1, ax2 = nets.axtrain(QUICK, "ionosphere", 0, "K1"), nets.axtrain(QUICK, "ionosphere", 0, "K2")
    assert ax1.key != ax2.key and ax1.deps == ax2.deps == (nets.act(QUICK, "ionosphere", 0),)


def test_closure_orders_dependencies_first_and_once():
    a = Cell("t", {"n": "a"})
    b = Cell("t", {"n": "b"}, (a,))
    c = Cell("t", {"n": "c"}, (a, b))
    order = closure([c, b, a])
    assert [x.params["n"] for x in order] == ["a", "b", "c"]


@pytest.fixture
def counting_task(monkeypatch, tmp_path):
    """A cell kind 'count' that records each execution and adds its deps' values."""
    log = tmp_path / "executions.log"

    def count(ctx):
        with log.open("a") as handle:
            handle.write(ctx.cell.params["name"] + "\n")
        if ctx.cell.params.get("fail"):
            raise RuntimeError("boom in " + ctx.cell.params["name"])
        return {"value": ctx.cell.params["value"] + sum(d["value"] for d in ctx.deps)}

    monkeypatch.setitem(tasks.TASKS, "count", count)
    return log


def _runs(log):
    return log.read_text().split() if log.exists() else []


def test_second_run_reuses_every_cell(tmp_path, counting_task):
    store = CellStore(tmp_path / "out")
    a = Cell("count", {"name": "a", "value": 1})
    b = Cell("count", {"name": "b", "value": 10}, (a,))
    c = Cell("count", {"name": "c", "value": 100}, (a, b))
    first = run_cells([c], store)
    assert (first["ran"], first["cached"], first["total"]) == (3, 0, 3)
    assert store.result(c) == {"value": 100 + 1 + 11}
    assert sorted(_runs(counting_task)) == ["a", "b", "c"]
    assert store.record_path(c.key).name == f"{c.key}.json"
    second = run_cells([c], store)
    assert (second["ran"], second["cached"]) == (0, 3)
    assert len(_runs(counting_task)) == 3  # nothing executed again
    # a new cell that needs finished ones runs alone
    d = Cell("count", {"name": "d", "value": 1000}, (c,))
    third = run_cells([d], store)
    assert (third["ran"], third["cached"]) == (1, 3)
    assert _runs(counting_task)[-1] == "d"


def test_failed_cell_skips_dependants_and_keeps_the_rest(tmp_path, counting_task):
    store = CellStore(tmp_path / "out")
    good = Cell("count", {"name": "good", "value": 1})
    bad = Cell("count", {"name": "bad", "value": 2, "fail": True}, label="the bad cell")
    after = Cell("count", {"name": "after", "value": 3}, (bad,))
    with pytest.raises(RunError, match=r"1 cell\(s\) failed and 1 were skipped.*first: the bad cell: RuntimeError: boom in bad$"):
        run_cells([good, after], store)
    assert store.has(good) and not store.has(bad) and not store.has(after)
    assert "after" not in _runs(counting_task)


def test_corrupt_record_is_a_one_line_error(tmp_path):
    store = CellStore(tmp_path)
    cell = Cell("count", {"name": "x", "value": 0})
    store.cells.mkdir(parents=True)
    store.record_path(cell.key).write_text("{not json")
    with pytest.raises(RunError, match="corrupt cell record"):
        store.result(cell)


def test_bad_executor_and_jobs_are_config_errors(tmp_path):
    from axtrain.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown executor"):
        run_cells([], CellStore(tmp_path), executor="slurm")
    with pytest.raises(ConfigError, match="--jobs"):
        run_cells([], CellStore(tmp_path), jobs=0)


def test_a_second_reproduction_on_the_same_folder_is_refused(tmp_path):
    import fcntl

    from axtrain.reproduce.profile import QUICK
    from axtrain.reproduce.run import reproduce

    with open(tmp_path / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # what a running reproduction holds
        with pytest.raises(RunError, match="another 'axtrain reproduce' is running"):
            reproduce(["fig6"], tmp_path, QUICK)
    assert not (tmp_path / "cells").exists()
