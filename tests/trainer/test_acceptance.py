"""Issue 3 acceptance: after training, AxTrain-act's S is lower than BP's by a margin on every MLP app.

Both networks of an app start from the same seed (same split, same initial weights, same shuffling)
and use the trainer's per-app defaults (``trainer/config.py``: gamma_initial 3e-3 on breast-cancer and ionosphere,
1e-3 on the others), with fewer epochs than the defaults so that the fast tier stays within its budget.
S (paper Eq. 5, per-sample form) is measured on the same held-out samples for both: the first 256
samples of the *test* split, which neither network trained on.

Margin: ``S_act <= 0.5 * S_bp`` on every app. Measured (seed 0, these epochs, one thread): the ratio
is 0.27-0.42 (breast-cancer 0.42 at 10 epochs, hence 15 here); the 0.5 bound leaves room for other
seeds and BLAS orders. A regulariser that merely collapsed the network would also pass a ratio test, so act's exact fixed-point accuracy must stay
within 5 points of BP's (measured: within ~2 points).

Both readings of S (``output_layer``, docs/act.md): the test was written for the softmax network
(S on the logits), which it pins; ``test_act_sensitivity_below_bp_sigmoid`` repeats it for the
paper's Sigmoid network (S on the Sigmoid outputs, MSE loss), where act's margin at these short
schedules is smaller: measured S_act / S_bp 0.78 (breast-cancer), 0.76 (image-segmentation), 0.82
(ionosphere), 0.94 (satimage, 3 epochs), with act's accuracy within 1 point of BP's; bound 0.9 on
the two apps it runs.

Budget: the four UCI apps ~20-40 s together on the shared 2-core machine (one torch thread);
mnist-mlp (two epochs each, ~5-10 min under load) is ``slow``.
"""

from __future__ import annotations

import pytest
import torch

from axtrain.datasets import load
from axtrain.trainer.config import make_config
from axtrain.trainer.engine import train
from axtrain.trainer.sensitivity import sensitivity

MARGIN = 0.5
ACCURACY_SLACK = 0.05
HELD_OUT = 256

#: Epochs per app for this test (the defaults are 60 / 15): enough optimizer steps for act's
#: regulariser to act (ionosphere has 9 batches an epoch, satimage 81).
FAST_EPOCHS = {"breast-cancer": 15, "ionosphere": 20, "image-segmentation": 20, "satimage": 3}


MARGIN_SIGMOID = 0.9
SIGMOID_APPS = ("breast-cancer", "image-segmentation")


def _sensitivities(app: str, epochs: int, output_layer: str = "softmax") -> dict[str, float]:
    data = load(app, 0)
    held_out = torch.as_tensor(data.x_test[:HELD_OUT])
    out: dict[str, float] = {}
    for method in ("bp", "act"):
        # probe_samples only sizes the per-epoch log; the measurement below is on the held-out samples.
        config = make_config(
            {"app": app, "method": method, "seed": 0, "epochs": epochs, "threads": 1, "probe_samples": 8, "output_layer": output_layer}
        )
        result = train(config, data=data)
        with torch.no_grad():
            out[method] = float(sensitivity(result.model.cpu(), held_out, output_layer=output_layer))
        out[f"{method}_accuracy"] = result.summary["test_accuracy_fixed_exact"]
    return out


def _check(app: str, epochs: int, output_layer: str = "softmax", margin: float = MARGIN) -> None:
    s = _sensitivities(app, epochs, output_layer)
    ratio = s["act"] / s["bp"]
    assert ratio <= margin, f"{app}: S_act {s['act']:.4g} vs S_bp {s['bp']:.4g} (ratio {ratio:.3f} > {margin})"
    assert s["act_accuracy"] >= s["bp_accuracy"] - ACCURACY_SLACK, (
        f"{app}: act accuracy {s['act_accuracy']:.4f} fell more than {ACCURACY_SLACK} below BP's {s['bp_accuracy']:.4f}"
    )


@pytest.mark.parametrize("app", sorted(FAST_EPOCHS))
def test_act_sensitivity_below_bp_uci(app: str) -> None:
    _check(app, FAST_EPOCHS[app])


@pytest.mark.parametrize("app", SIGMOID_APPS)
def test_act_sensitivity_below_bp_sigmoid(app: str) -> None:
    _check(app, FAST_EPOCHS[app], "sigmoid", MARGIN_SIGMOID)


@pytest.mark.slow
def test_act_sensitivity_below_bp_mnist_mlp() -> None:
    _check("mnist-mlp", 2)
