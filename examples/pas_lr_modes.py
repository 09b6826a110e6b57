"""pas learning rate for multiplier targets K1..K4, chosen on a validation split of the training split.

For each app and seed: a stratified 20 % validation part carved from the training split (the test
split is never looked at); AxTrain-act (the paper's Sigmoid network, the trainer's defaults, 60
epochs) trained on the rest; then 20 epochs of pas at each of K1..K4 from it (AxTrain, as
``axtrain reproduce`` builds it), for pas_lr = lr / 10 (1e-4) and lr (1e-3). Printed per line: the
validation output error (mse of the Sigmoid outputs against one-hot targets, Fig. 6's metric) and
accuracy under that K. docs/decisions.md item 62 quotes its output.

    python examples/pas_lr_modes.py breast-cancer ionosphere --seeds 0 1     # a few minutes per app
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path
from types import SimpleNamespace

import torch

from axtrain.datasets import load, split_validation
from axtrain.trainer.config import make_config
from axtrain.trainer.engine import train
from axtrain.trainer.evaluate import evaluate

MODES = ("K1", "K2", "K3", "K4")
LRS = (1e-4, 1e-3)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("apps", nargs="+")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    for app in args.apps:
        for seed in args.seeds:
            full = load(app, seed)
            x_tr, y_tr, x_val, y_val = split_validation(full.x_train, full.y_train, 0.2, seed)
            dev = SimpleNamespace(x_train=x_tr, y_train=y_tr, x_test=x_val, y_test=y_val)
            xv, yv = torch.as_tensor(x_val, dtype=torch.float32), torch.as_tensor(y_val, dtype=torch.long)
            base = {"app": app, "seed": seed, "threads": 1, "device": "cpu", "output_layer": "sigmoid"}
            with tempfile.TemporaryDirectory() as tmp:
                act = train(make_config({**base, "method": "act", "epochs": 60}, "exp").resolved(), out=Path(tmp) / "act", data=dev)
                for mode in MODES:
                    start = evaluate(act.model, act.layers, xv, yv, multiplier=mode, sram_voltage=1.1, output_layer="sigmoid")
                    line = [f"{app} s{seed} {mode} act: mse {start.metrics['mse']:.4f} acc {start.accuracy:.3f}"]
                    for lr in LRS:
                        cfg = make_config({**base, "method": "pas", "epochs": 0, "pas_epochs": 20, "multiplier": mode, "pas_lr": lr}, "exp").resolved()
                        r = train(cfg, out=Path(tmp) / f"pas{mode}{lr}", model=act.model, data=dev)
                        e = evaluate(r.model, r.layers, xv, yv, multiplier=mode, sram_voltage=1.1, output_layer="sigmoid")
                        line.append(f"lr {lr:g}: mse {e.metrics['mse']:.4f} acc {e.accuracy:.3f}")
                    print(" | ".join(line), flush=True)


if __name__ == "__main__":
    main()
