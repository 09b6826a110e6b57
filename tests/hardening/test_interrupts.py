"""Ctrl-C: every command ends with one line (``interrupted``), exit 130, and no partial output; the
rerun gives the bytes of an uninterrupted run (axtrain/interrupts.py).

SIGINT goes to the command's process, as ``kill -INT`` or a terminal's Ctrl-C would deliver it, at
seeded moments after the CLI has installed its handler (most land in the imports of torch, onnx and
onnxruntime, where the issue's failures were) or after the command first touches its output.
The issue's failures were exit 0 with ``KeyboardInterrupt:`` printed (an interrupt landing in a
``__del__``) and, under CPU load, aborts from pybind11 (one landing in a callback from C++): the
handler never raises into the interrupted code, so neither can happen; the slow campaign repeats
the issue's measurement under load.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _killer import axtrain_command, check_tree, child_env, tree_hashes


def _handler_installed(pid: int) -> bool:
    """Whether the CLI's handler is in place: it catches SIGTERM, which Python itself does not. (A
    signal before that lands in the interpreter's own start-up, where no program has a say.)"""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True  # gone already, or no /proc: do not wait
    caught = next(int(line.split()[1], 16) for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(caught & (1 << (signal.SIGTERM - 1)))


def _interrupt(args: list[str], cwd: Path, delay: float, watch: Path | None = None) -> tuple[int, str]:
    """Start ``axtrain ARGS``, wait until its handler is installed and ``watch`` exists (if given),
    then ``delay`` s more, send SIGINT; returns the exit code and stderr."""
    proc = subprocess.Popen(axtrain_command(*args), cwd=cwd, env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while proc.poll() is None and not _handler_installed(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.002)
    while watch is not None and not watch.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err.decode()


def _assert_interrupted(code: int, err: str, root: Path, finals: tuple[str, ...]) -> None:
    if code == 0:
        return  # it finished before the signal: nothing to check but the outputs, which are whole
    assert code == 130, (code, err[-1500:])
    assert err.strip().splitlines()[-1] == "interrupted" and "Traceback" not in err and "KeyboardInterrupt" not in err, err[-1500:]
    counts = check_tree(root)  # every final-named file whole
    assert counts["temporaries"] == 0, sorted(p.name for p in root.rglob("*"))
    for name in finals:  # written only on success
        assert not (root / name).exists(), name
    assert not [p for p in root.rglob("*.lock")], "a lock survived the interrupt"


def test_export_interrupted_ends_with_one_line_and_130(tiny_chain, tmp_path):
    rng = random.Random(18)
    codes = []
    for trial in range(2):
        where = tmp_path / str(trial)
        where.mkdir()
        code, err = _interrupt(["export", str(tiny_chain.run), "--out", "model.onnx"], where, rng.uniform(0.3, 1.5))
        _assert_interrupted(code, err, where, ("model.onnx",))
        codes.append(code)
    assert 130 in codes, f"every export finished before its SIGINT: {codes}"


def test_training_interrupted_resumes_to_the_bytes_of_an_uninterrupted_run(tmp_path):
    # 40 + 20 epochs (about 3 s of training here): with 4 + 2 the run ended within the 0.2 s after
    # its first checkpoint on CI's faster machine, and the SIGINT arrived after exit 0.
    args = ["train", "--app", "breast-cancer", "--method", "axtrain", "--epochs", "40", "--pas-epochs", "20",
            "--multiplier", "K2", "--out", "run", "--quiet"]
    reference = tmp_path / "reference"
    reference.mkdir()
    ref = subprocess.Popen(axtrain_command(*args), cwd=reference, env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    work = tmp_path / "work"
    work.mkdir()
    code, err = _interrupt(args, work, 0.05, watch=work / "run" / "checkpoint.safetensors")
    assert code == 130, "the training finished before its SIGINT"
    _assert_interrupted(code, err, work, ("run/summary.json",))
    assert ref.wait(timeout=300) == 0, ref.stderr.read() if ref.stderr else ""
    done = subprocess.run(axtrain_command(*args), cwd=work, env=child_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert tree_hashes(work) == tree_hashes(reference)


@pytest.mark.parametrize("command", ["compile", "simulate"])
def test_compile_and_simulate_interrupted_leave_no_output(command, tiny_chain, tmp_path):
    args = {
        "compile": ["compile", str(tiny_chain.onnx), "--out", "model.bundle"],
        # 10,000 Monte Carlo runs (the --runs limit): long enough that the signal lands mid-run even
        # on a fast, quiet machine (200 runs finished before a 0.3 s delay once simulate got faster).
        "simulate": ["simulate", str(tiny_chain.bundle), "--app", "breast-cancer", "--runs", "10000", "--sram-voltage", "0.6",
                     "--report", "report.json", "--dump-outputs", "outputs.npy"],
    }[command]
    rng = random.Random(command)
    codes = []
    for trial in range(2):
        where = tmp_path / str(trial)
        where.mkdir()
        code, err = _interrupt(args, where, rng.uniform(0.05, 0.4))
        _assert_interrupted(code, err, where, ("model.bundle", "report.json", "outputs.npy"))
        codes.append(code)
    assert 130 in codes, f"every {command} finished before its SIGINT: {codes}"


def _time_to_finish(args: list[str], cwd: Path) -> float:
    """Seconds from the CLI's handler being installed to ``axtrain ARGS`` exiting, uninterrupted."""
    proc = subprocess.Popen(axtrain_command(*args), cwd=cwd, env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while proc.poll() is None and not _handler_installed(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.002)
    started = time.monotonic()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()[-1500:]
    return time.monotonic() - started


@pytest.mark.slow
def test_many_interrupts_under_cpu_load(tiny_chain, tmp_path):
    """The issue measured 3 aborts in ~150 SIGINTs to ``export`` under load; here 60 must all end
    with 130 (or 0 when too late), one line, no partial output. The moments are drawn over the
    command's own measured duration under the same load (a fixed 0-6 s left fewer than half inside
    it whenever the machine ran faster: 26 of 60 once), so most land while it runs."""
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(max(1, (os.cpu_count() or 2) // 2))]
    try:
        rng = random.Random(150)
        args = ["export", str(tiny_chain.run), "--out", "model.onnx"]
        (tmp_path / "timed").mkdir()
        span = 1.2 * _time_to_finish(args, tmp_path / "timed")
        outcomes = {0: 0, 130: 0}
        for trial in range(60):
            where = tmp_path / str(trial)
            where.mkdir()
            code, err = _interrupt(args, where, rng.uniform(0.0, span))
            _assert_interrupted(code, err, where, ("model.onnx",))
            outcomes[code] += 1
        print(f"SIGINT under load: {outcomes[130]} of 60 ended with 130, {outcomes[0]} finished first (moments over {span:.2f} s)")
        assert outcomes[130] >= 30, outcomes
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()


def test_the_console_script_ignores_signals_once_its_command_is_over():
    """A SIGINT that lands while the interpreter shuts down after a finished command must not turn
    into a KeyboardInterrupt (Python then dies by SIGINT, exit -2, as seen under load): the process
    entry point leaves both signals ignored; an in-process caller gets its own handlers back."""
    from axtrain import interrupts

    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with interrupts.installed(restore=False):
            assert signal.getsignal(signal.SIGINT) is interrupts.handler
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
        with interrupts.installed():
            assert signal.getsignal(signal.SIGTERM) is interrupts.handler
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN  # restored to what it was
    finally:
        for sig, old in before.items():
            signal.signal(sig, old)
