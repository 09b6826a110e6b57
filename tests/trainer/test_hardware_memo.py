"""layer_ranges remembers its latest result only while the weights and the data are unchanged
(issue 15: a pas epoch calibrates the same network twice); any change is seen and recomputed."""

from __future__ import annotations

import torch
from torch import nn

from axtrain.trainer import hardware
from axtrain.trainer.hardware import layer_ranges


def _counted() -> tuple[nn.Sequential, list[int]]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    calls = [0]
    model[0].register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return model, calls


def _fresh(model: nn.Sequential, x: torch.Tensor) -> tuple[float, list[float]]:
    with torch.no_grad():
        return hardware._layer_ranges(model, x, 4096)


def test_the_same_weights_and_data_are_not_run_twice() -> None:
    model, calls = _counted()
    x = torch.randn(50, 6)
    first = layer_ranges(model, x)
    assert calls[0] == 1 and layer_ranges(model, x) == first and calls[0] == 1
    assert first == _fresh(model, x)


def test_every_kind_of_change_is_recomputed() -> None:
    model, calls = _counted()
    x = torch.randn(50, 6)
    layer_ranges(model, x)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.5)
    model(x).sum().backward()
    optimiser.step()  # in place, torch's version counters move
    got = layer_ranges(model, x)
    assert calls[0] == 3  # the first calibration, the training forward, this one
    assert got == _fresh(model, x)
    model[2].weight.data.mul_(3.0)  # .data: no version counter moves, the parameter copy sees it
    assert layer_ranges(model, x) == _fresh(model, x)
    before = calls[0]
    x.mul_(2.0)  # the data changed in place
    assert layer_ranges(model, x) == _fresh(model, x) and calls[0] > before
    y = x.clone()  # equal content, another tensor: recomputed (matched by identity)
    before = calls[0]
    assert layer_ranges(model, y) == layer_ranges(model, x) and calls[0] == before + 2


def test_the_memo_keeps_nothing_alive() -> None:
    import gc
    import weakref

    model, _ = _counted()
    x = torch.randn(20, 6)
    layer_ranges(model, x)
    refs = weakref.ref(model), weakref.ref(x)
    del model, x
    gc.collect()
    assert refs[0]() is None and refs[1]() is None
