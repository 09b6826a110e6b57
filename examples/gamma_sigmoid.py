"""gamma of AxTrain-act for the paper's Sigmoid network, chosen on a validation split of the training split.

The per-app gamma defaults (docs/decisions.md 30) were chosen on the softmax networks, with S on the
logits and a cross-entropy loss. With the Sigmoid reading (decision 60) S is taken on the Sigmoid
outputs (``sigmoid'(z) <= 1/4`` scales every term down) and the task loss is the MSE, so the balance
``E + gamma * S`` moved. For each app and seed: a stratified 20 % validation part carved from the
training split (the test split is never looked at); BP and act (Sigmoid network, the trainer's
defaults, 60 epochs) trained on the rest, act for each gamma of the grid (``gamma_step`` = gamma / 5).
Printed per network: validation accuracy (exact multipliers) and the output MSE of the Sigmoid
outputs under exact, K1, K2, K3 normalised to BP's exact MSE (Fig. 6's quantity), and S at the end
of training. docs/decisions.md 152 quotes its output.

    python examples/gamma_sigmoid.py breast-cancer ionosphere --seeds 0 1      # ~1 min per app at load 2
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import torch

from axtrain.datasets import load, split_validation
from axtrain.trainer.config import make_config
from axtrain.trainer.engine import train
from axtrain.trainer.evaluate import evaluate

MODES = ("exact", "K1", "K2", "K3")
GAMMAS = (3e-4, 1e-3, 3e-3, 1e-2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("apps", nargs="+")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--gammas", type=float, nargs="+", default=list(GAMMAS))
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    for app in args.apps:
        for seed in args.seeds:
            full = load(app, seed)
            x_tr, y_tr, x_val, y_val = split_validation(full.x_train, full.y_train, 0.2, seed)
            dev = SimpleNamespace(x_train=x_tr, y_train=y_tr, x_test=x_val, y_test=y_val)
            xv, yv = torch.as_tensor(x_val, dtype=torch.float32), torch.as_tensor(y_val, dtype=torch.long)
            base = {"app": app, "seed": seed, "threads": 1, "device": "cpu", "output_layer": "sigmoid", "epochs": 60}
            runs = [("BP", {"method": "bp"})] + [(f"act {g:g}", {"method": "act", "gamma_initial": g, "gamma_step": g / 5}) for g in args.gammas]
            with tempfile.TemporaryDirectory() as tmp:
                reference = None
                for name, changes in runs:
                    start = time.perf_counter()
                    r = train(make_config({**base, **changes}, "exp").resolved(), out=Path(tmp) / name.replace(" ", "_"), data=dev)
                    e = {m: evaluate(r.model, r.layers, xv, yv, multiplier=m, sram_voltage=1.1, output_layer="sigmoid") for m in MODES}
                    if reference is None:
                        reference = e["exact"].metrics["mse"]
                    rel = " / ".join(f"{e[m].metrics['mse'] / reference:.3f}" for m in MODES)
                    s = r.summary.get("final_sensitivity", r.summary.get("sensitivity"))
                    s_text = f"{s:.3g}" if isinstance(s, (int, float)) else "-"
                    print(
                        f"{app} s{seed} {name:10s} acc {e['exact'].accuracy:.3f} | mse/BP-exact exact/K1/K2/K3 {rel} | "
                        f"S {s_text} | {time.perf_counter() - start:.0f} s",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
