"""Determinism: the same inputs and seed give byte-identical artifacts across two runs in one process
and across process restarts (sha256 of every file compared).

The second process differs in everything that must not matter: working directory, PYTHONHASHSEED
(set and dict-of-str order), BLAS/OpenMP thread counts and output folder names.

Budget: the fast tier runs ``axtrain pipeline`` (train, export, compile, verify, NTV simulation)
twice in one process and once in another, concurrently (~25 s of CPU); the slow tier runs each
command (``train``, ``export``, ``compile``, ``simulate --report`` with NTV runs and a multiplier
override, ``--dump-outputs``) as its own process on two sides.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path
from typing import IO, Sequence

import pytest
from _killer import PYTHON, assert_same_trees, axtrain_command, check_tree, child_env, tree_hashes

PIPELINE = ("pipeline", "--app", "breast-cancer", "--method", "axtrain", "--epochs", "3", "--runs", "4",
            "--multiplier", "K2", "--sram-voltage", "0.6", "--seed", "5", "--sim-seed", "9")
OTHER_ENV = {"PYTHONHASHSEED": "12345", "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2"}


def _in_process_twice(outs: Sequence[str]) -> list[str]:
    """A Python command that runs ``axtrain pipeline`` once per out folder, all in one process."""
    code = (
        "import sys\n"
        "from axtrain.cli import main\n"
        f"for out in {list(outs)!r}:\n"
        f"    main({list(PIPELINE)!r} + ['--out', out])\n"
    )
    return [PYTHON, "-c", code]


def _start(cmd: Sequence[str], cwd: Path, env: dict[str, str]) -> tuple[subprocess.Popen, IO[bytes]]:
    """Start ``cmd`` with its output in a temporary file (two children run at once: a pipe that
    nobody reads yet could fill up and block one)."""
    log = tempfile.TemporaryFile()
    return subprocess.Popen(list(cmd), cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT), log


def _wait(started: tuple[subprocess.Popen, IO[bytes]], what: str) -> None:
    proc, log = started
    code = proc.wait(timeout=900)
    log.seek(0)
    output = log.read().decode("utf-8", "replace")
    log.close()
    assert code == 0, f"{what} failed:\n{output[-3000:]}"


def test_pipeline_is_byte_identical_across_runs_and_processes(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "elsewhere").mkdir()
    one = _start(_in_process_twice(["first", "second"]), tmp_path / "a", child_env())
    other = _start(axtrain_command(*PIPELINE, "--out", "fresh"), tmp_path / "elsewhere", child_env(**OTHER_ENV))
    _wait(one, "two pipelines in one process")
    _wait(other, "the pipeline in a fresh process")

    first = tree_hashes(tmp_path / "a" / "first")
    # Every artifact the pipeline promises is there and whole (and so part of the comparison).
    for name in ("run/weights.safetensors", "run/layers.safetensors", "run/layers.json", "model.onnx",
                 "bundle/manifest.json", "bundle/weights.bin", "bundle/program.bin", "report.json", "summary.md", "pipeline.json"):
        assert name in first, name
    assert check_tree(tmp_path / "a" / "first")["bundles"] == 1
    assert_same_trees(first, tree_hashes(tmp_path / "a" / "second"), "second run in the same process")
    assert_same_trees(first, tree_hashes(tmp_path / "elsewhere" / "fresh"), "run in a fresh process with another environment")


# ---------------------------------------------------------------------------------------------
# Each command on its own, in fresh processes
# ---------------------------------------------------------------------------------------------

CHAIN: tuple[tuple[str, ...], ...] = (
    ("train", "--app", "ionosphere", "--method", "axtrain", "--epochs", "4", "--pas-epochs", "3",
     "--multiplier", "K3", "--sram-voltage", "0.7", "--seed", "2", "--out", "run", "--quiet"),
    ("export", "run", "--out", "model.onnx"),
    ("export", "run", "--out", "model-k1.onnx", "--multiplier", "K1", "--sram-voltage", "0.5"),
    ("compile", "model.onnx", "--out", "model.bundle"),
    ("compile", "model-k1.onnx", "--out", "model-k1.bundle"),
    ("simulate", "model.bundle", "--app", "ionosphere", "--runs", "5", "--seed", "4", "--report", "sim.json",
     "--dump-outputs", "outputs.npy"),
    ("simulate", "model-k1.bundle", "--app", "ionosphere", "--runs", "5", "--seed", "4", "--report", "sim-k1.json"),
    ("simulate", "model.bundle", "--app", "ionosphere", "--runs", "3", "--multiplier", "K1", "--sram-voltage", "0.45",
     "--report", "sim-override.json"),
)


def _chain_script(steps: Sequence[Sequence[str]]) -> list[str]:
    """One shell line running every step as its own process (stops at the first failure)."""
    import shlex

    return ["/bin/sh", "-c", " && ".join(shlex.join(axtrain_command(*step)) for step in steps)]


@pytest.mark.slow
def test_every_command_is_byte_identical_across_processes(tmp_path: Path) -> None:
    sides = {"a": child_env(), "b": child_env(**OTHER_ENV)}
    procs = {}
    for side, env in sides.items():
        (tmp_path / side).mkdir()
        procs[side] = _start(_chain_script(CHAIN), tmp_path / side, env)
    for side, proc in procs.items():
        _wait(proc, f"the command chain on side {side}")
    a, b = tree_hashes(tmp_path / "a"), tree_hashes(tmp_path / "b")
    for name in ("run/weights.safetensors", "run/layers.safetensors", "run/layers.json", "run/checkpoint.safetensors",
                 "run/history.jsonl", "run/summary.json", "model.onnx", "model-k1.onnx", "model.bundle/manifest.json",
                 "model-k1.bundle/weights.bin", "sim.json", "sim-k1.json", "sim-override.json", "outputs.npy"):
        assert name in a, name
    assert check_tree(tmp_path / "a")["bundles"] == 2
    assert_same_trees(a, b, "the command chain in two sets of fresh processes")



# ---------------------------------------------------------------------------------------------
# Thread counts: the trainer's default (threads = 0, the MNIST apps) must not follow the environment
# ---------------------------------------------------------------------------------------------

_THREADS_SCRIPT = """
import hashlib, types
import numpy as np
from axtrain.trainer.config import make_config
from axtrain.trainer.engine import train
rng = np.random.default_rng(0)
data = types.SimpleNamespace(x_train=rng.random((512, 784), dtype=np.float32), y_train=rng.integers(0, 10, 512),
                             x_test=rng.random((64, 784), dtype=np.float32), y_test=rng.integers(0, 10, 64))
config = make_config({"app": "mnist-mlp", "method": "bp", "epochs": 1, "device": "cpu", "ntv_eval_runs": 1}, "test")
assert config.resolved().threads == 0, "mnist-mlp no longer defaults to threads = 0: pick another app for this test"
result = train(config, data=data)
print(hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in result.model.parameters())).hexdigest())
"""


@pytest.mark.slow
def test_default_thread_count_does_not_follow_omp_num_threads(tmp_path: Path) -> None:
    # Backward passes sum gradients per thread chunk: 1 and 2 torch threads give different weights.
    # With threads = 0 the trainer must pick its count itself, the same whatever OMP_NUM_THREADS says.
    logs = []
    for count in ("1", "2"):
        log = tempfile.TemporaryFile()
        proc = subprocess.Popen([PYTHON, "-c", _THREADS_SCRIPT], cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
                                env=child_env(OMP_NUM_THREADS=count, MKL_NUM_THREADS=count))
        logs.append((proc, log))
    digests = []
    for proc, log in logs:
        code = proc.wait(timeout=600)
        log.seek(0)
        output = log.read().decode("utf-8", "replace").strip()
        assert code == 0, output[-3000:]
        digests.append(output.splitlines()[-1])
    assert digests[0] == digests[1]
