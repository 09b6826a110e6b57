"""One writer per output (axtrain/locks.py): a second command on a held output is refused with one
line naming the holder, a stale lock (its process died) is taken over, and locks go away on exit.

The holder here is a real ``flock`` taken by this test process on the lock file, with the record a
running command writes into it: the kernel's answer to the second command is the same as when
another ``axtrain`` holds it (``test_two_concurrent_trainings...`` runs two real processes).
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from _killer import axtrain_command, child_env, tree_hashes
from machine import cli

from axtrain.locks import LOCK_NAME, lock_path

HOLDER = {"pid": 4242, "host": "bench-7", "command": "axtrain train --out elsewhere"}

# name -> (arguments, output, whether the lock lives inside the output)
COMMANDS = {
    "train": (lambda c: ["train", "--app", "breast-cancer", "--method", "bp", "--epochs", "2", "--out", "run", "--quiet"], "run", True),
    "export": (lambda c: ["export", str(c.run), "--out", "model.onnx"], "model.onnx", False),
    "compile": (lambda c: ["compile", str(c.onnx), "--out", "model.bundle"], "model.bundle", False),
    "simulate": (lambda c: ["simulate", str(c.bundle), "--app", "breast-cancer", "--report", "report.json",
                            "--dump-outputs", "outputs.npy"], "outputs.npy", False),
    "explore": (lambda c: ["explore", str(c.bundle), "--app", "breast-cancer", "--out", "plan.bundle", "--modes", "exact,drum:2",
                           "--voltages", "1.1", "--runs", "1"], "plan.bundle", False),
    "pipeline": (lambda c: ["pipeline", "--app", "breast-cancer", "--method", "bp", "--epochs", "1", "--runs", "1", "--out", "pipe"], "pipe", True),
    "reproduce": (lambda c: ["reproduce", "fig6", "--quick", "--apps", "breast-cancer", "--runs", "1", "--jobs", "1", "--out", "rep"], "rep", True),
}


def _hold(path: Path, record: dict) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.pwrite(fd, json.dumps(record).encode(), 0)
    return fd


@pytest.mark.parametrize("name", list(COMMANDS))
def test_a_held_output_is_refused_naming_its_holder(name, tiny_chain, tmp_path):
    build, out, inside = COMMANDS[name]
    lock = lock_path(tmp_path / out, inside)
    fd = _hold(lock, HOLDER)
    try:
        before = sorted(p.name for p in tmp_path.rglob("*"))
        code, _, err = cli(build(tiny_chain), cwd=tmp_path)
        line = err.strip().splitlines()[-1]
        assert code == 2 and line.startswith("error: "), err
        assert "is in use by another axtrain command" in line or "another 'axtrain reproduce' is running" in line, line
        assert "pid 4242 on bench-7: axtrain train --out elsewhere" in line, line
        assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written beside the lock
    finally:
        os.close(fd)


@pytest.mark.parametrize("name", ["train", "compile", "simulate"])
def test_a_stale_lock_of_a_dead_process_is_taken_over_and_removed(name, tiny_chain, tmp_path):
    build, out, inside = COMMANDS[name]
    lock = lock_path(tmp_path / out, inside)
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(json.dumps(HOLDER))  # what a killed holder leaves: its record, no flock
    code, _, err = cli(build(tiny_chain), cwd=tmp_path)
    assert code == 0, err
    assert not lock.exists()


def test_locks_are_released_on_failure_too(tiny_chain, tmp_path):
    code, _, err = cli(["simulate", str(tiny_chain.bundle), "--app", "no-such-app", "--report", "r.json"], cwd=tmp_path)
    assert code == 2, err
    assert list(tmp_path.iterdir()) == []  # no lock, no report


def test_a_lock_left_by_sigkill_is_taken_over(tmp_path):
    """A training killed mid-run leaves its lock file; the next run sees the flock free, takes over,
    resumes, and leaves no lock."""
    args = ["train", "--app", "breast-cancer", "--method", "bp", "--epochs", "12", "--out", "run", "--quiet"]
    proc = subprocess.Popen(axtrain_command(*args), cwd=tmp_path, env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    checkpoint = tmp_path / "run" / "checkpoint.safetensors"
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (tmp_path / "run" / LOCK_NAME).exists(), "the kill came too late to leave a lock"
    code, _, err = cli(args, cwd=tmp_path)
    assert code == 0, err
    assert not (tmp_path / "run" / LOCK_NAME).exists()


def test_two_concurrent_trainings_with_different_configs_never_mix_a_folder(tmp_path):
    """The issue's race: 5 and 9 epochs on one --out. The second is refused with one line (the lock,
    or, if the first already finished, its different config); the folder holds the first run whole."""
    first = ["train", "--app", "breast-cancer", "--method", "bp", "--epochs", "9", "--out", "run", "--quiet"]
    second = ["train", "--app", "breast-cancer", "--method", "bp", "--epochs", "5", "--out", "run", "--quiet"]
    a = subprocess.Popen(axtrain_command(*first), cwd=tmp_path, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (tmp_path / "run" / LOCK_NAME).exists() and a.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    b = subprocess.run(axtrain_command(*second), cwd=tmp_path, env=child_env(), capture_output=True, text=True, timeout=300)
    out_a, err_a = a.communicate(timeout=300)
    assert a.returncode == 0, err_a
    lines = b.stderr.strip().splitlines()
    assert b.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), b.stderr
    assert f"pid {a.pid}" in lines[0] or "different" in lines[0] or "--force" in lines[0], lines[0]
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    history = (tmp_path / "run" / "history.jsonl").read_text().splitlines()
    assert config["schedule"]["epochs"] == 9 and len(history) == 9
    assert not (tmp_path / "run" / LOCK_NAME).exists()
    assert "checkpoint.safetensors" in tree_hashes(tmp_path / "run")


def test_two_concurrent_compiles_of_one_output(tiny_chain, tmp_path):
    """The issue's race (one exited 1 with FileExistsError): one writes the bundle, the other is
    refused with one line, by the lock or, if the first already finished, by the existing bundle."""
    args = axtrain_command("compile", str(tiny_chain.onnx), "--out", "model.bundle")
    procs = [subprocess.Popen(args, cwd=tmp_path, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    refused = next(err for code, err in results if code == 2).strip().splitlines()
    assert len(refused) == 1 and ("is in use by another axtrain command" in refused[0] or "already exists" in refused[0]), refused
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.bundle"]
