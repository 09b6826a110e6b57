"""Bit-identity check of the trainer across a code change (issue 15: speed-ups must not move bits).

Trains bp, act, pas and axtrain with short schedules on breast-cancer (the whole split) and on
MNIST-MLP (the first ``--mnist-samples`` training samples, the whole test split), one torch
thread, a DRUM target multiplier, at nominal voltage and at 0.66 V (fresh NTV fault maps every
step), and records the SHA-256 of every file a finished run keeps the trained network in
(``weights.safetensors``, ``layers.safetensors``, ``layers.json``) and of its ``summary.json``.

    python benchmarks/train_identity.py --write before.json   # on the old code
    python benchmarks/train_identity.py --check before.json   # on the new code: exit 1 on any difference

Not part of ``python -m benchmarks`` (it times nothing); a few minutes of CPU on one thread.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

if __package__ in (None, ""):  # run as `python benchmarks/train_identity.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

#: (app, method, multiplier, sram_voltage, epochs, pas_epochs)
CASES: tuple[tuple[str, str, str, float, int, int], ...] = (
    ("breast-cancer", "bp", "drum:2", 1.1, 4, 2),
    ("breast-cancer", "act", "drum:2", 1.1, 4, 2),
    ("breast-cancer", "pas", "drum:2", 1.1, 3, 3),
    ("breast-cancer", "pas", "drum:3", 0.66, 3, 3),
    ("breast-cancer", "axtrain", "drum:2", 0.66, 3, 2),
    ("mnist-mlp", "bp", "drum:2", 1.1, 1, 1),
    ("mnist-mlp", "act", "drum:2", 1.1, 1, 1),
    ("mnist-mlp", "pas", "drum:2", 1.1, 1, 1),
    ("mnist-mlp", "pas", "drum:2", 0.66, 1, 1),
    ("mnist-mlp", "axtrain", "drum:4", 1.1, 1, 1),
)
FILES = ("weights.safetensors", "layers.safetensors", "layers.json", "summary.json")


def fingerprints(mnist_samples: int) -> dict[str, dict[str, str]]:
    """``{case: {file: sha256}}`` for every case of :data:`CASES`."""
    from axtrain.datasets import load
    from axtrain.trainer.config import TrainConfig
    from axtrain.trainer.engine import train

    data = {"breast-cancer": load("breast-cancer", 0)}
    mnist = load("mnist-mlp", 0)
    data["mnist-mlp"] = replace(mnist, x_train=mnist.x_train[:mnist_samples], y_train=mnist.y_train[:mnist_samples])
    found: dict[str, dict[str, str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for app, method, multiplier, voltage, epochs, pas_epochs in CASES:
            name = f"{app}/{method}/{multiplier}@{voltage}"
            config = TrainConfig(app=app, method=method, multiplier=multiplier, sram_voltage=voltage,
                                 epochs=epochs, pas_epochs=pas_epochs, threads=1, seed=0)
            out = Path(tmp) / name.replace("/", "_").replace(":", "").replace("@", "_")
            train(config, out, data=data[app])
            found[name] = {f: hashlib.sha256((out / f).read_bytes()).hexdigest() for f in FILES}
            print(f"{name}: {found[name]['weights.safetensors'][:16]}", file=sys.stderr, flush=True)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--write", type=Path, help="record the fingerprints in this JSON file")
    group.add_argument("--check", type=Path, help="compare against the fingerprints in this JSON file")
    parser.add_argument("--mnist-samples", type=int, default=6000, help="MNIST training samples (default 6000)")
    args = parser.parse_args(argv)
    found = fingerprints(args.mnist_samples)
    if args.write is not None:
        args.write.write_text(json.dumps(found, indent=1, sort_keys=True) + "\n")
        print(f"wrote {len(found)} runs' fingerprints to {args.write}")
        return 0
    expected = json.loads(args.check.read_text())
    differing = [f"{case}: {f}" for case in sorted(set(expected) | set(found)) for f in FILES
                 if expected.get(case, {}).get(f) != found.get(case, {}).get(f)]
    for line in differing:
        print(f"DIFFERENT {line}")
    print(f"{len(found)} runs, {len(found) * len(FILES)} files: {'all identical' if not differing else f'{len(differing)} differ'}")
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
