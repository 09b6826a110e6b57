"""Trainer benchmarks: the DRUM forward against the exact forward of the same fixed-point layer, and
one AxTrain-act step against one BP step (ratios measured in the same process).

1. ``drum:2`` vs ``exact`` forward of one emulated fixed-point dense layer on a 10000x784 input with
   784x128 weights (MNIST-MLP's first layer over the test set), evaluation mode (bit-exact path).
   The drum path is transform + GEMM; the limit is 1.3x.
2. One act training step (forward, S, double backward, Adam) vs one BP step on MNIST-MLP, batch 128.
   Limit 3x.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python benchmarks/bench_trainer.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.common import Result, best_time, format_table


def _layer_case(mode: str, include_input_quantisation: bool = True):
    from axtrain.trainer.emulation import _mac_layer, emulate, quantize_real
    from axtrain.trainer.hardware import calibrate

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, 128), nn.ReLU())
    x = torch.randn(10000, 784)
    layers = calibrate(model, x, multipliers=mode)
    if include_input_quantisation:
        return lambda: emulate(model, layers, x, exact=True)
    a = quantize_real(x, layers[0].input_format)  # the layer's integer input, already quantised
    return lambda: _mac_layer(model[0], layers[0], a, True, None)


def _steps():
    from axtrain.trainer.models import mlp
    from axtrain.trainer.sensitivity import forward_with_sensitivity

    torch.manual_seed(0)
    model = mlp((784, 128, 128, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(128, 784)
    y = torch.randint(0, 10, (128,))

    def bp_step() -> None:
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()

    def act_step() -> None:
        optimizer.zero_grad()
        out, s = forward_with_sensitivity(model, x)
        (F.cross_entropy(out, y) + 1e-3 * s).backward()
        optimizer.step()

    return bp_step, act_step


def run(quick: bool = False) -> list[Result]:
    """The trainer's benchmark figures."""
    repeat = 3 if quick else 7
    exact = best_time(_layer_case("exact"), repeat=repeat)
    drum = best_time(_layer_case("drum:2"), repeat=repeat)
    exact_mac = best_time(_layer_case("exact", False), repeat=repeat)
    drum_mac = best_time(_layer_case("drum:2", False), repeat=repeat)
    results = [
        Result("emulated dense 10000x784@784x128, drum:2", drum, "same layer, exact multiplier", exact, 1.3, "incl. input quantisation"),
        Result("  same, MAC layer only (quantised input)", drum_mac, "same layer, exact multiplier", exact_mac, 1.3, "transform+GEMM+requant"),
    ]
    try:
        bp_step, act_step = _steps()
    except ImportError as exc:  # trainer/sensitivity.py not in this build
        results.append(Result("act step (skipped)", 0.0, "bp step", 1.0, None, str(exc)))
        return results
    bp = best_time(bp_step, repeat=repeat * 5)
    act = best_time(act_step, repeat=repeat * 5)
    results.append(Result("act step, mnist-mlp batch 128", act, "bp step, same model and batch", bp, 3.0))
    return results


if __name__ == "__main__":
    print(format_table(run()))
