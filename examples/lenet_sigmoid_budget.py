"""Is the full profile's LeNet-5 (MNIST-CNN) undertrained with the paper's Sigmoid output and MSE loss?

Trains BP (Sigmoid network) on the full profile's seeded 20000-sample subset of the MNIST training
split (the reproduction's cells use the same subset) for each training setting given, and prints the
per-epoch training loss, training accuracy and the accuracy on 5000 *other* training-split samples
(seeded; neither the subset nor the test split). docs/decisions.md 153 quotes its output. A
setting may name a method and act's initial gamma (``lr:batch:method:gamma``; the step stays
gamma / 5), which is how decision 176 chose LeNet-5's gamma.

    python examples/lenet_sigmoid_budget.py --epochs 2 --settings 1e-3:128 3e-3:128 1e-3:32
    python examples/lenet_sigmoid_budget.py --epochs 4 --settings 1e-3:32:act:1e-3 1e-3:32:act:3e-4
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from axtrain.datasets import load
from axtrain.reproduce.profile import FULL
from axtrain.trainer.config import make_config
from axtrain.trainer.engine import train

APP = "mnist-cnn"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: the trainer's)")
    parser.add_argument(
        "--settings", nargs="+", default=["1e-3:128", "3e-3:128", "1e-3:32"], help="lr:batch_size[:method[:gamma_initial]]"
    )
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    split = load(APP, args.seed)
    x, y = np.asarray(split.x_train), np.asarray(split.y_train)
    keep = FULL.app(APP).train_subset
    # the profile's subset (axtrain.reproduce.tasks._subset: seeded permutation, salt 1), the rest held out
    order = np.random.default_rng([args.seed, 1]).permutation(len(y))
    subset, rest = np.sort(order[:keep]), order[keep:]
    held = np.sort(np.random.default_rng([args.seed, 9]).permutation(rest)[:5000])
    data = SimpleNamespace(x_train=x[subset], y_train=y[subset], x_test=x[held], y_test=y[held])
    for setting in args.settings:
        lr, batch, *rest = setting.split(":")
        method = rest[0] if rest else "bp"
        values = {
            **FULL.train_overrides(APP), "app": APP, "method": method, "seed": args.seed, "epochs": args.epochs,
            "lr": float(lr), "batch_size": int(batch),
        }
        if args.threads is not None:
            values["threads"] = args.threads
        if len(rest) > 1:
            values["gamma_initial"] = float(rest[1])
            values["gamma_step"] = float(rest[1]) / 5
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            result = train(make_config(values, "exp").resolved(), out=Path(tmp) / "run", data=data)
        epochs = " | ".join(
            f"e{h['epoch']} loss {h['loss']:.3f} train {h['train_accuracy']:.3f} held-out {h['test_accuracy']:.3f}"
            + (f" S {h['sensitivity']:.2f}" if h.get("sensitivity") is not None else "")
            for h in result.history
        )
        print(f"{setting}: {epochs} | {time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
