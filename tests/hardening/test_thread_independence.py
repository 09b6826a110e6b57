"""Every stage gives the same bytes with 1 and with 2 threads: ``OMP_NUM_THREADS`` (and MKL's and
OpenBLAS's) 1 versus 2, and the trainer's torch thread setting (``threads`` in the config) 1 versus 2.

The issue saw one early ``train`` + ``simulate`` pair differ between ``OMP_NUM_THREADS=1`` and 2,
with no cause pinned down; this test makes the property a check at every stage, so a dependence is
caught where it starts: train (axtrain: act, then pas with DRUM and NTV faults), export, compile,
simulate with NTV faults and a DRUM multiplier (report and output dump), explore (plan bundle and
report). Each side runs the whole chain in one fresh process (imports paid once: the test stays in
the default tier at about 20 s of CPU per side).

What may differ, by design: ``config.json`` records ``threads`` and ``summary.json`` records
``torch_threads``; those two are compared with those keys removed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from _killer import assert_same_trees, child_env, tree_hashes

STEPS = [
    ["train", "--app", "breast-cancer", "--method", "axtrain", "--epochs", "3", "--pas-epochs", "1", "--multiplier", "K2",
     "--sram-voltage", "0.7", "--config", "threads.yaml", "--out", "run", "--quiet"],
    ["export", "run", "--out", "model.onnx"],
    ["compile", "model.onnx", "--out", "model.bundle"],
    ["simulate", "model.bundle", "--app", "breast-cancer", "--runs", "4", "--seed", "2", "--multiplier", "K1", "--sram-voltage", "0.6",
     "--report", "sim.json", "--dump-outputs", "outputs.npy"],
    ["explore", "model.bundle", "--app", "breast-cancer", "--out", "plan.bundle", "--modes", "exact,drum:2,drum:1",
     "--voltages", "1.1,0.7", "--runs", "2", "--report", "explore.json"],
]

_CHAIN = """
import json, sys
from axtrain.cli import main
for step in json.loads(sys.argv[1]):
    try:
        main(step)
    except SystemExit as stop:
        if stop.code not in (0, None):
            sys.exit(f"step {step[0]} exited with {stop.code}")
"""

_THREAD_KEYS = {"config.json": "threads", "summary.json": "torch_threads"}


def _side(root: Path, threads: int) -> subprocess.Popen:
    root.mkdir()
    (root / "threads.yaml").write_text(f"threads: {threads}\n")
    env = child_env(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads))
    return subprocess.Popen([sys.executable, "-c", _CHAIN, json.dumps(STEPS)], cwd=root, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_every_stage_gives_the_same_bytes_with_one_and_two_threads(tmp_path):
    procs = {threads: _side(tmp_path / f"t{threads}", threads) for threads in (1, 2)}
    for threads, proc in procs.items():
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"{threads} thread(s): {err[-2000:]}"
    one, two = tmp_path / "t1", tmp_path / "t2"
    hashes = {}
    for side in (one, two):
        hashes[side] = {k: v for k, v in tree_hashes(side).items() if Path(k).name not in _THREAD_KEYS and k != "threads.yaml"}
    for expected in ("run/weights.safetensors", "run/checkpoint.safetensors", "run/history.jsonl", "model.onnx",
                     "model.bundle/weights.bin", "sim.json", "outputs.npy", "plan.bundle/manifest.json", "explore.json"):
        assert expected in hashes[one], expected
    assert_same_trees(hashes[one], hashes[two], "1 versus 2 threads")
    for name, key in _THREAD_KEYS.items():
        a, b = (json.loads((side / "run" / name).read_text()) for side in (one, two))
        assert (a.get(key), b.get(key)) == (1, 2), (name, a.get(key), b.get(key))  # the setting took effect
        a.pop(key), b.pop(key)
        assert a == b, name
