"""Interrupted work loses nothing: SIGKILL ``axtrain train``, ``compile`` and ``reproduce`` (and the
pipeline) at seeded random moments, check after every kill that no final-named artifact is partial,
then re-run the same command and check the result is byte-identical to an uninterrupted run.

Kills land where work happens, not during imports: the kill clock starts when the command first
touches its output (``newer_than``) or, for compile, when its temporary bundle appears (the write
itself) or at launch. A launch that finishes before its kill is not counted; a campaign goes on until
it has its number of real kills. Each uninterrupted reference runs beside the kill campaign (the
machine has 2 cores; the pytest process only waits).

Budget: the fast tier (one kill per command plus one hand-built kill; ~50 s of CPU, ~40 s wall on
an idle 2-core machine, more under the shared machine's load) runs by default; ``slow`` campaigns
do 6-16 kills per command (~8 min).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import pytest
from _killer import (
    Outcome,
    assert_same_trees,
    axtrain_command,
    check_tree,
    child_env,
    launch_and_kill,
    lenet_onnx,
    newer_than,
    temp_appears,
    tree_hashes,
)

TRAIN = ("train", "--app", "breast-cancer", "--method", "axtrain", "--epochs", "6", "--pas-epochs", "4",
         "--multiplier", "K2", "--sram-voltage", "0.66", "--seed", "3", "--out", "run", "--quiet")
COMPILE = ("compile", "lenet.onnx", "--out", "lenet.bundle", "--force")
REPRODUCE = ("reproduce", "fig4", "--quick", "--apps", "breast-cancer", "--runs", "2", "--jobs", "1", "--out", "rep")
REPRODUCE_POOL = ("reproduce", "fig4", "--quick", "--apps", "ionosphere", "--runs", "2", "--jobs", "2", "--out", "rep")
LENET_SEED = 7
PIPELINE = ("pipeline", "--app", "ionosphere", "--method", "axtrain", "--epochs", "4", "--runs", "3",
            "--multiplier", "K3", "--sram-voltage", "0.7", "--out", "pipe")


class Reference:
    """An uninterrupted run of ``args`` in ``cwd``, started at once in the background (it runs beside
    the kill campaign); :meth:`ready` waits for it and returns ``cwd``."""

    def __init__(self, args: Sequence[str], cwd: Path) -> None:
        cwd.mkdir(parents=True, exist_ok=True)
        self.cwd = cwd
        self.started = time.monotonic()
        self.seconds = 0.0  # wall time of the uninterrupted run, known after ready()
        self.log = tempfile.TemporaryFile()  # not a pipe: nobody reads it until ready(), and a full pipe blocks
        self.proc: subprocess.Popen | None = subprocess.Popen(
            axtrain_command(*args), cwd=cwd, env=child_env(), stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: close() ends pool workers too
        )

    def ready(self) -> Path:
        if self.proc is not None:
            code, self.proc = self.proc.wait(timeout=900), None
            self.seconds = time.monotonic() - self.started
            self.log.seek(0)
            output = self.log.read().decode("utf-8", "replace")
            assert code == 0, f"uninterrupted reference run failed:\n{output[-3000:]}"
        return self.cwd

    def close(self) -> None:
        """End the reference if a test failed while it ran (nothing to do once it finished)."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            self.proc = None
        self.log.close()


@pytest.fixture(scope="module")
def train_reference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Reference]:
    reference = Reference(TRAIN, tmp_path_factory.mktemp("train-reference"))
    yield reference
    reference.close()


@pytest.fixture(scope="module")
def compile_reference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Reference]:
    cwd = tmp_path_factory.mktemp("compile-reference")
    lenet_onnx(cwd / "lenet.onnx", seed=LENET_SEED)
    reference = Reference(COMPILE, cwd)
    yield reference
    reference.close()


@pytest.fixture(scope="module")
def reproduce_reference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Reference]:
    reference = Reference(REPRODUCE, tmp_path_factory.mktemp("reproduce-reference"))
    yield reference
    reference.close()


def _campaign(
    args: Sequence[str],
    cwd: Path,
    out: str,
    kills: int,
    rng: np.random.Generator,
    plan: Callable[[int, np.random.Generator, Path], tuple[float, Callable[[], bool] | None]],
    restart_when_finished: bool = True,
    poll: float = 0.005,
) -> list[Outcome]:
    """Launch ``args`` in ``cwd`` and SIGKILL it ``kills`` times, checking ``cwd/out`` after each
    launch; a launch that finishes is checked too and (with ``restart_when_finished``) its output
    removed so the next kills hit fresh work. ``plan(i, rng, cwd)`` gives the i-th delay and trigger."""
    cwd.mkdir(parents=True, exist_ok=True)
    outcomes: list[Outcome] = []
    cmd = axtrain_command(*args)
    while sum(o.killed for o in outcomes) < kills:
        assert len(outcomes) < 4 * kills + 4, f"only {sum(o.killed for o in outcomes)} of {len(outcomes)} launches were killed in time"
        delay, trigger = plan(len(outcomes), rng, cwd)
        outcome = launch_and_kill(cmd, cwd, delay, trigger, poll=poll)
        outcomes.append(outcome)
        check_tree(cwd / out)  # after every launch: no final name holds a partial artifact
        if not outcome.killed:
            assert outcome.returncode == 0, f"{' '.join(args)} exited with {outcome.returncode} (not killed)"
            if restart_when_finished:
                shutil.rmtree(cwd / out)
    temporaries = check_tree(cwd)["temporaries"]
    print(f"\n{args[0]}: {sum(o.killed for o in outcomes)} kills in {len(outcomes)} launches "
          f"({sum(o.killed and o.triggered for o in outcomes)} after the trigger), {temporaries} temporaries left behind")
    return outcomes


def _resume_and_compare(args: Sequence[str], cwd: Path, ref: Path, out: str, keep: Callable[[Path], bool] = lambda p: True) -> None:
    """Re-run the same command to the end, then: every artifact whole, and byte-identical to ``ref``."""
    from _killer import run_to_end

    run_to_end(axtrain_command(*args), cwd)
    check_tree(cwd / out)
    expected = tree_hashes(ref / out, keep)
    assert expected, f"the reference run left nothing under {out}"
    assert_same_trees(expected, tree_hashes(cwd / out, keep), f"{out} after kills and resume")


def _after_start(high: float) -> Callable[[int, np.random.Generator, Path], tuple[float, Callable[[], bool] | None]]:
    """Kill uniformly within ``high`` s after the command first writes under its output."""

    def plan(i: int, rng: np.random.Generator, cwd: Path) -> tuple[float, Callable[[], bool] | None]:
        return float(rng.uniform(0.0, high)), newer_than(cwd, time.time_ns())

    return plan


# ---------------------------------------------------------------------------------------------
# train
# ---------------------------------------------------------------------------------------------


def _train(reference: Reference, tmp_path: Path, kills: int, seed: int) -> list[Outcome]:
    outcomes = _campaign(TRAIN, tmp_path, "run", kills, np.random.default_rng(seed), _after_start(3.0))
    _resume_and_compare(TRAIN, tmp_path, reference.ready(), "run")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["epochs_trained"] >= 2  # the run really trained (act may converge before its cap)
    return outcomes


def test_train_killed_once_resumes_identically(train_reference: Reference, tmp_path: Path) -> None:
    assert sum(o.killed for o in _train(train_reference, tmp_path, kills=1, seed=101)) == 1


def test_train_killed_between_the_last_checkpoints_two_writes(train_reference: Reference, tmp_path: Path) -> None:
    """The narrowest window, built by hand: the last epoch's checkpoint is written but its readable
    copy (checkpoint.json) is still the previous epoch's, and no final file exists yet. The resume
    has no epoch left to train; it must still leave every file as the uninterrupted run did."""
    reference = train_reference.ready()
    shutil.copytree(reference / "run", tmp_path / "run")
    for name in ("summary.json", "weights.safetensors", "layers.safetensors", "layers.json"):
        (tmp_path / "run" / name).unlink()
    stale = json.loads((tmp_path / "run" / "checkpoint.json").read_text())
    stale.update(phase_epoch=stale["phase_epoch"] - 1, phase_done=False, epochs_total=stale["epochs_total"] - 1)
    (tmp_path / "run" / "checkpoint.json").write_text(json.dumps(stale))
    _resume_and_compare(TRAIN, tmp_path, reference, "run")


@pytest.mark.slow
def test_train_killed_many_times_resumes_identically(train_reference: Reference, tmp_path: Path) -> None:
    assert sum(o.killed for o in _train(train_reference, tmp_path, kills=16, seed=202)) == 16


# ---------------------------------------------------------------------------------------------
# compile
# ---------------------------------------------------------------------------------------------


def _compile_plan(seconds: float) -> Callable[[int, np.random.Generator, Path], tuple[float, Callable[[], bool] | None]]:
    """Even kills: anywhere in the last two thirds of an uninterrupted compile's ``seconds`` on the
    launch clock (the first third is imports); odd kills: within 10 ms of a *new* temporary bundle
    appearing (inside the write itself, or between the renames of --force's replacement)."""

    def plan(i: int, rng: np.random.Generator, cwd: Path) -> tuple[float, Callable[[], bool] | None]:
        if i % 2 == 0:
            return float(rng.uniform(seconds / 3, seconds)), None
        return float(rng.uniform(0.0, 0.01)), temp_appears(cwd)

    return plan


def _compile(reference: Reference, tmp_path: Path, kills: int, seed: int) -> list[Outcome]:
    lenet_onnx(tmp_path / "lenet.onnx", seed=LENET_SEED)
    reference.ready()
    # --force: every launch rewrites the bundle, so kills also land in the replacement of a
    # finished one (the old bundle moved aside, the new one renamed in).
    outcomes = _campaign(COMPILE, tmp_path, "lenet.bundle", kills, np.random.default_rng(seed), _compile_plan(reference.seconds),
                         restart_when_finished=False, poll=0.001)
    _resume_and_compare(COMPILE, tmp_path, reference.ready(), "lenet.bundle")
    return outcomes


def test_compile_killed_once_resumes_identically(compile_reference: Reference, tmp_path: Path) -> None:
    assert sum(o.killed for o in _compile(compile_reference, tmp_path, kills=1, seed=303)) == 1


@pytest.mark.slow
def test_compile_killed_many_times_resumes_identically(compile_reference: Reference, tmp_path: Path) -> None:
    outcomes = _compile(compile_reference, tmp_path, kills=16, seed=404)
    assert sum(o.killed and o.triggered for o in outcomes) >= 4  # some kills inside the write itself


# ---------------------------------------------------------------------------------------------
# reproduce
# ---------------------------------------------------------------------------------------------


def _reproducible(relative: Path) -> bool:
    """What a resumed reproduction must reproduce byte for byte: the figures' CSVs and PNGs and every
    cell's artifacts. Cell records (compared apart, without their wall time), REPORT.md and
    sections/ describe the run itself (wall times, cells computed versus reused)."""
    if relative.suffix in (".csv", ".png") and len(relative.parts) == 1:
        return True
    return relative.parts[0] == "cells" and len(relative.parts) > 2


def _cell_records(root: Path) -> dict[str, dict]:
    records = {}
    for path in sorted((root / "cells").glob("*.json")):
        record = json.loads(path.read_text())
        record.pop("wall_s")
        records[path.name] = record
    return records


def _reproduce(reference: Reference, tmp_path: Path, args: Sequence[str], kills: int, seed: int, high: float) -> list[Outcome]:
    outcomes = _campaign(args, tmp_path, "rep", kills, np.random.default_rng(seed), _after_start(high))
    ref = reference.ready()
    _resume_and_compare(args, tmp_path, ref, "rep", _reproducible)
    expected, actual = _cell_records(ref / "rep"), _cell_records(tmp_path / "rep")
    assert expected and actual == expected
    return outcomes


def test_reproduce_killed_once_resumes_identically(reproduce_reference: Reference, tmp_path: Path) -> None:
    assert sum(o.killed for o in _reproduce(reproduce_reference, tmp_path, REPRODUCE, kills=1, seed=505, high=5.0)) == 1


@pytest.mark.slow
def test_reproduce_killed_many_times_resumes_identically(reproduce_reference: Reference, tmp_path: Path) -> None:
    assert sum(o.killed for o in _reproduce(reproduce_reference, tmp_path, REPRODUCE, kills=12, seed=606, high=6.0)) == 12


@pytest.mark.slow
def test_reproduce_with_a_process_pool_killed_resumes_identically(tmp_path: Path) -> None:
    # The whole process group dies (driver and pool workers), as when a job is killed.
    reference = Reference(REPRODUCE_POOL, tmp_path / "ref")
    try:
        outcomes = _reproduce(reference, tmp_path / "killed", REPRODUCE_POOL, kills=6, seed=707, high=6.0)
    finally:
        reference.close()
    assert sum(o.killed for o in outcomes) == 6


# ---------------------------------------------------------------------------------------------
# pipeline (train -> export -> compile -> verify -> simulate, with its ledger)
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_pipeline_killed_many_times_resumes_identically(tmp_path: Path) -> None:
    reference = Reference(PIPELINE, tmp_path / "ref")
    try:
        outcomes = _campaign(PIPELINE, tmp_path / "killed", "pipe", 10, np.random.default_rng(808), _after_start(4.0))
        _resume_and_compare(PIPELINE, tmp_path / "killed", reference.ready(), "pipe")
    finally:
        reference.close()
    assert sum(o.killed for o in outcomes) == 10
