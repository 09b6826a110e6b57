"""The output layer's task loss and the output-error metrics (trainer/outputs.py), by hand."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from axtrain.errors import ConfigError
from axtrain.trainer.outputs import output_metrics, task_loss


def test_sigmoid_loss_is_the_summed_squared_error_of_the_sigmoid_outputs() -> None:
    z = torch.tensor([[0.0, 2.0, -1.0], [1.0, -3.0, 0.5]], dtype=torch.float64)
    y = torch.tensor([1, 0])
    s = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    by_hand = ((s(0) - 0) ** 2 + (s(2) - 1) ** 2 + (s(-1) - 0) ** 2 + (s(1) - 1) ** 2 + (s(-3) - 0) ** 2 + (s(0.5) - 0) ** 2) / 2
    assert float(task_loss(z, y, "sigmoid")) == pytest.approx(by_hand, rel=1e-12)
    assert float(task_loss(z, y, "softmax")) == pytest.approx(float(F.cross_entropy(z, y)), rel=1e-12)


def test_metrics_by_hand() -> None:
    z = torch.tensor([[0.0, 0.0], [3.0, -3.0]], dtype=torch.float64)
    y = torch.tensor([1, 1])
    m = output_metrics(z, y, "sigmoid")
    s3 = 1 / (1 + math.exp(-3))
    assert m["mse"] == pytest.approx(((0.5 ** 2 + 0.5 ** 2) + (s3 ** 2 + (1 - (1 - s3)) ** 2)) / 2, rel=1e-12)
    # p = O / sum O: sample 0 -> (0.5, 0.5); sample 1 -> (s3, 1 - s3) (they sum to 1)
    assert m["brier"] == pytest.approx(((0.5 ** 2 + 0.5 ** 2) + (s3 ** 2 + s3 ** 2)) / 2, rel=1e-12)
    assert m["ce"] == pytest.approx((-math.log(0.5) - math.log(1 - s3)) / 2, rel=1e-12)
    # argmax ties go to the lowest index: sample 0 decides class 0 (wrong), sample 1 class 0 (wrong)
    assert m["error_rate"] == 1.0
    soft = output_metrics(z, y, "softmax")
    assert soft["mse"] == pytest.approx(soft["brier"], rel=1e-15)


def test_unknown_output_layer() -> None:
    with pytest.raises(ConfigError, match="output layer 'relu'"):
        task_loss(torch.zeros(1, 2), torch.zeros(1, dtype=torch.long), "relu")
