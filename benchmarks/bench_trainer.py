"""Trainer benchmark: the DRUM forward against the exact forward of the same fixed-point layer
(ratios measured in the same process).

``drum:2`` vs ``exact`` forward of one emulated fixed-point dense layer on a 10000x784 input with
784x128 weights (MNIST-MLP's first layer over the test set), evaluation mode (bit-exact path): input
quantisation, transform + GEMM, requantisation. Issue 3's limit, 1.3x, applies to this layer forward.
The second row times the MAC part alone (input already quantised) for information: there the exact
side is a bare float32 GEMM and the transform's elementwise passes weigh more.
The AxTrain-act step vs BP step figure lives in bench_act.py (CPU time at one thread, and wall time).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python benchmarks/bench_trainer.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
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


def run(quick: bool = False) -> list[Result]:
    """The trainer's benchmark figures."""
    repeat = 3 if quick else 7
    exact = best_time(_layer_case("exact"), repeat=repeat)
    drum = best_time(_layer_case("drum:2"), repeat=repeat)
    exact_mac = best_time(_layer_case("exact", False), repeat=repeat)
    drum_mac = best_time(_layer_case("drum:2", False), repeat=repeat)
    results = [
        Result("emulated dense 10000x784@784x128, drum:2", drum, "same layer, exact multiplier", exact, 1.3, "incl. input quantisation"),
        Result("  same, MAC part only (quantised input)", drum_mac, "same part, exact multiplier", exact_mac, None, "information"),
    ]
    return results


if __name__ == "__main__":
    print(format_table(run()))
