"""pas learning rate for NTV targets, chosen on a validation split carved from the training split.

For each seed: a stratified 20 % validation part of the training split; act and BP trained on the
rest; then 20 epochs of pas at the app's aggressive Table 1 voltage from each, for pas_lr 1e-4,
3e-4 and 1e-3; printed: validation accuracy at exact and under the voltage's fault maps (the
trainer's summary). docs/decisions.md item 32 quotes its output.

    python examples/pas_lr_ntv.py breast-cancer      # ~1 min; satimage ~5 min
"""
import sys
import tempfile
import warnings

warnings.simplefilter("ignore")
from pathlib import Path
from types import SimpleNamespace

from axtrain.datasets import load, split_validation
from axtrain.trainer.config import make_config
from axtrain.trainer.engine import train

VOLT = {"breast-cancer": 0.4, "image-segmentation": 0.66, "ionosphere": 0.66, "satimage": 0.66}
app = sys.argv[1]
for seed in range(3):
    full = load(app, seed)
    x_tr, y_tr, x_val, y_val = split_validation(full.x_train, full.y_train, 0.2, seed)
    dev = SimpleNamespace(x_train=x_tr, y_train=y_tr, x_test=x_val, y_test=y_val)
    with tempfile.TemporaryDirectory() as t:
        base = {"app": app, "seed": seed, "threads": 1, "device": "cpu"}
        act = train(make_config({**base, "method": "act"}, "exp").resolved(), out=Path(t) / "act", data=dev)
        bp = train(make_config({**base, "method": "bp"}, "exp").resolved(), out=Path(t) / "bp", data=dev)
        for start_name, start in (("act", act), ("bp", bp)):
            for pas_lr in (1e-4, 3e-4, 1e-3):
                cfg = make_config({**base, "method": "pas", "epochs": 0, "pas_epochs": 20, "sram_voltage": VOLT[app], "pas_lr": pas_lr}, "exp").resolved()
                r = train(cfg, out=Path(t) / f"pas{start_name}{pas_lr}", model=start.model, data=dev)
                s = r.summary
                print(app, VOLT[app], f"s{seed}", start_name, pas_lr, f"val exact {s['test_accuracy_fixed_exact']:.3f} target {s['test_accuracy_target']:.3f} +- {s['test_accuracy_target_std']:.3f}", flush=True)
