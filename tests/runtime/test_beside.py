"""runtime/beside.py: a computation in a forked child gives what it gives in process, and its
failures surface here as one readable error (decision 180)."""

from __future__ import annotations

import json
import os
import signal
import time

import numpy as np
import pytest

from axtrain.errors import ConfigError
from axtrain.runtime import simulation
from axtrain.runtime.beside import FORK_AVAILABLE, BesideError, beside
from axtrain.runtime.report import build_report

from .conftest import random_inputs

needs_fork = pytest.mark.skipif(not FORK_AVAILABLE, reason="no os.fork or a single usable CPU: beside() runs in process there")


class TwoArguments(Exception):
    """An exception pickle cannot rebuild (its constructor takes two arguments, args holds one)."""

    def __init__(self, first: str, second: int) -> None:
        super().__init__(f"{first} / {second}")


def _assert_reaped(pid: int) -> None:
    with pytest.raises(ChildProcessError):  # no such child left: it was waited for
        os.waitpid(pid, os.WNOHANG)


@needs_fork
def test_the_value_comes_from_another_process_unchanged() -> None:
    values = {"counts": np.arange(10, dtype=np.int64) * 3, "name": "x", "cycles": 2**40 + 7, "ratio": 1 / 3}
    with beside(lambda: (os.getpid(), values), "a test computation") as job:
        pid, got = job.result()
        assert job.result()[0] == pid  # a second call returns the same outcome
    assert pid != os.getpid() and job.pid == pid
    assert got["name"] == "x" and got["cycles"] == 2**40 + 7 and got["ratio"] == 1 / 3
    assert got["counts"].dtype == np.int64 and np.array_equal(got["counts"], values["counts"])
    _assert_reaped(pid)


def test_without_fork_the_computation_runs_here_first() -> None:
    order: list[str] = []
    with beside(lambda: order.append("computed") or os.getpid(), "a test computation", fork=False) as job:
        order.append("body")
        assert job.result() == os.getpid() and job.pid is None
    assert order == ["computed", "body"]
    with pytest.raises(ConfigError, match="^bad value$"):  # raised at the start, as sequential code did
        beside(lambda: (_ for _ in ()).throw(ConfigError("bad value")), "a test computation", fork=False)


@needs_fork
def test_an_error_in_the_child_is_raised_here_as_itself() -> None:
    def fail() -> None:
        raise ConfigError("arch: neuron buffer of 0 words")

    with pytest.raises(ConfigError) as caught, beside(fail, "the machine model", fork=True) as job:
        job.result()
    assert str(caught.value) == "arch: neuron buffer of 0 words"
    assert any("raised in the child process" in note and "in fail" in note for note in caught.value.__notes__)
    _assert_reaped(job.pid)


@needs_fork
def test_an_error_pickle_cannot_rebuild_is_one_line_naming_it() -> None:
    def fail() -> None:
        raise TwoArguments("plan", 3)

    with pytest.raises(BesideError) as caught, beside(fail, "the machine model", fork=True) as job:
        job.result()
    message = str(caught.value)
    assert "\n" not in message and message.startswith("the machine model: ") and "TwoArguments: plan / 3" in message


@needs_fork
def test_a_killed_child_is_one_line_with_its_signal() -> None:
    with pytest.raises(BesideError, match=r"^the machine model: its child process \(pid \d+\) ended without a result \(killed by signal SIGKILL\)$"):
        with beside(lambda: os.kill(os.getpid(), signal.SIGKILL), "the machine model", fork=True) as job:
            job.result()
    _assert_reaped(job.pid)


@needs_fork
def test_the_childs_error_wins_over_an_error_of_the_callers_work() -> None:
    def fail() -> None:
        raise ConfigError("the child's error")

    with pytest.raises(ConfigError) as caught, beside(fail, "the machine model", fork=True):
        raise ValueError("the caller's error")
    assert str(caught.value) == "the child's error"
    assert isinstance(caught.value.__context__, ValueError)  # kept, as the context
    with pytest.raises(ValueError, match="^the caller's error$"), beside(lambda: 1, "the machine model", fork=True):
        raise ValueError("the caller's error")  # the child succeeded: the caller's error stands


@needs_fork
def test_leaving_early_stops_and_reaps_the_child() -> None:
    started = time.monotonic()
    with beside(lambda: time.sleep(60), "a slow computation", fork=True) as job:
        pass  # no result() asked for
    assert time.monotonic() - started < 30
    _assert_reaped(job.pid)
    with pytest.raises(BesideError, match="stopped before it finished"):
        job.result()


@pytest.mark.parametrize("kind,arch_name", [("cnn", "tiny"), ("mlp", "default")])
def test_simulate_reports_the_same_bytes_forked_and_in_process(bundle_factory, monkeypatch, kind, arch_name) -> None:
    bundle, _ = bundle_factory(kind, arch_name, modes=("drum:2",))
    x = random_inputs(bundle, 20)
    y = np.arange(20) % int(np.prod(bundle.manifest.output.shape))
    reports, machines = [], []
    for threshold in (0, 10**9):  # every program forks / none does
        monkeypatch.setattr(simulation, "BESIDE_MIN_INSTRUCTIONS", threshold)
        result = simulation.simulate(bundle, x, y, multiplier="drum:1", sram_voltage=0.66, runs=3, seed=5, batch=4)
        machines.append(result.machine)
        reports.append(json.dumps(build_report(bundle, result, {"source": "test"}, {"source": "default-65nm"}), sort_keys=True))
    assert machines[0] == machines[1] and machines[0] is not None and machines[0].total.cycles > 0
    assert reports[0] == reports[1]


@needs_fork
def test_simulate_surfaces_a_machine_model_error_from_the_child(bundle_factory, monkeypatch) -> None:
    bundle, _ = bundle_factory("mlp")

    def broken(*args: object, **kwargs: object) -> None:
        raise ConfigError("machine model: an instruction it cannot time")

    monkeypatch.setattr(simulation, "BESIDE_MIN_INSTRUCTIONS", 0)
    monkeypatch.setattr(simulation, "simulate_machine", broken)
    with pytest.raises(ConfigError) as caught:
        simulation.simulate(bundle, random_inputs(bundle, 4))
    assert str(caught.value) == "machine model: an instruction it cannot time"  # the CLI's one line
