"""Why act can make a network more fragile to NTV bit flips: weights, formats and logit margins.

Reads the BP and act networks of a reproduction folder (``axtrain reproduce ... --out DIR``) and
prints, per application and seed: the mean |w| and the share of weights below 0.01, the largest |w|
of each layer (it sets the layer's dynamic fixed-point format, so the size of a flipped bit) and the
median logit margin (top-1 minus top-2 logit) on the test split. docs/results/REPORT.md (Fig. 7)
quotes its output.

    python examples/act_ntv_margins.py out/full [--apps breast-cancer,satimage] [--seeds 2]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from axtrain.datasets import load
from axtrain.trainer.rundir import load_model


def _runs(folder: Path) -> dict[str, Path]:
    """Cell label -> run directory, for every finished training cell."""
    out = {}
    for record in (folder / "cells").glob("*.json"):
        data = json.loads(record.read_text(encoding="utf-8"))
        if data["definition"]["kind"] == "train":
            out[data["label"]] = folder / data["result"]["run"]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a reproduction folder (it has cells/)")
    parser.add_argument("--apps", default="breast-cancer,image-segmentation,satimage")
    parser.add_argument("--seeds", type=int, default=2)
    args = parser.parse_args(argv)
    if not (args.folder / "cells").is_dir():
        print(f"error: {args.folder} has no cells/ folder (run axtrain reproduce first)", file=sys.stderr)
        return 2
    runs = _runs(args.folder)
    print(f"{'app':20} seed net  mean|w|  |w|<0.01  max|w| per layer      median margin")
    for app in args.apps.split(","):
        for seed in range(args.seeds):
            x = torch.as_tensor(np.asarray(load(app, seed).x_test), dtype=torch.float32)
            for name in ("bp", "act"):
                label = f"train {name} {app} s{seed}"
                if label not in runs:
                    print(f"error: no cell '{label}' in {args.folder}", file=sys.stderr)
                    return 2
                model = load_model(runs[label])
                weights = [p.detach().abs() for n, p in model.named_parameters() if n.endswith("weight")]
                flat = torch.cat([w.flatten() for w in weights])
                with torch.no_grad():
                    top = model(x).topk(2, dim=1).values
                margin = float((top[:, 0] - top[:, 1]).median())
                peaks = " ".join(f"{float(w.max()):.3f}" for w in weights)
                print(f"{app:20} {seed:4} {name:4} {float(flat.mean()):7.4f}  {float((flat < 0.01).float().mean()):8.2f}  {peaks:21} {margin:8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
