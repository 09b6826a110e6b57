"""AxTrain-act step cost versus a plain BP step (issue 3: limit 3x on MNIST-MLP, batch 128, Adam).

Three steps on the same 784-128-128-10 MLP and the same batch, float32 on the CPU:
* BP: forward, cross-entropy, backward, Adam step (the baseline);
* act: the closed-form per-sample S (trainer/sensitivity.py) added to the loss, one shared forward;
* act-batch / naive: the batch form, closed form and the naive double backward (reference only).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

if __package__ in (None, ""):  # run as `python benchmarks/bench_act.py`: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from axtrain.trainer.sensitivity import forward_with_sensitivity, sensitivity_reference
from benchmarks.common import Result, best_time, format_table

GAMMA = 0.01


def _setup(batch: int = 128, seed: int = 0) -> tuple[nn.Sequential, torch.optim.Optimizer, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10)
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.rand(batch, 784)
    y = torch.randint(0, 10, (batch,))
    return model, opt, x, y


def run(quick: bool = False) -> list[Result]:
    """Time one training step of each kind; ratios against the BP step measured here."""
    repeat = 5 if quick else 30
    model, opt, x, y = _setup()
    loss_fn = nn.CrossEntropyLoss()

    def bp_step() -> None:
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()

    def act_step(form: str) -> None:
        opt.zero_grad(set_to_none=True)
        out, s = forward_with_sensitivity(model, x, form)  # type: ignore[arg-type]
        (loss_fn(out, y) + GAMMA * s).backward()
        opt.step()

    def naive_step() -> None:
        opt.zero_grad(set_to_none=True)
        s = sensitivity_reference(model, x, "batch")
        (loss_fn(model(x), y) + GAMMA * s).backward()
        opt.step()

    bp = best_time(bp_step, repeat=repeat, warmup=3)
    act = best_time(lambda: act_step("per_sample"), repeat=repeat, warmup=3)
    act_batch = best_time(lambda: act_step("batch"), repeat=max(3, repeat // 3), warmup=1)
    naive = best_time(naive_step, repeat=max(3, repeat // 5), warmup=1)
    base = "bp step (mnist-mlp, b128)"
    return [
        Result("act step, per-sample closed form", act, base, bp, limit=3.0,
               note="trainer.sensitivity default"),
        Result("act step, batch form closed form", act_batch, base, bp),
        Result("act step, naive batch double backward", naive, base, bp, note="reference only"),
    ]


if __name__ == "__main__":
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(format_table(run()))
