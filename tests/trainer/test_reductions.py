"""trainer/reductions.py: the one-pass max |t| against its definition, abs().max()."""

from __future__ import annotations

import math

import pytest
import torch

from axtrain.trainer.reductions import max_abs


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(1,), (7,), (300, 17), (4, 3, 5, 5)])
def test_max_abs_equals_abs_max(shape: tuple[int, ...], dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(sum(shape))
    for scale in (1e-30, 1.0, 1e30):
        t = (torch.randn(shape, generator=g, dtype=dtype) * scale)
        assert max_abs(t) == float(t.abs().max())  # the same float, exactly
        assert max_abs(-t) == float(t.abs().max())


def test_max_abs_special_values() -> None:
    assert max_abs(torch.zeros(0)) == 0.0
    assert max_abs(torch.tensor([-0.0, 0.0])) == 0.0
    assert max_abs(torch.tensor([1.0, -float("inf")])) == math.inf
    assert max_abs(torch.tensor([-3.0, -2.0])) == 3.0  # all negative: the answer is -min
    assert math.isnan(max_abs(torch.tensor([1.0, float("nan"), -5.0])))
    assert math.isnan(float(torch.tensor([1.0, float("nan"), -5.0]).abs().max()))  # the definition agrees
