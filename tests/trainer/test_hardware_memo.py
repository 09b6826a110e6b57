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





def test_the_input_maximum_is_remembered_for_the_same_data_only() -> None:
    """A new calibration of changed weights on the same data reuses the data's max |x| and gives
    what a calibration from scratch (of a copy, on a copy of the data) gives; data changed in
    place is measured again."""
    import copy

    model, _ = _counted()
    x = torch.randn(50, 6)
    reads = [0]
    real = hardware.max_abs

    def counting(t: torch.Tensor) -> float:
        reads[0] += 1
        return real(t)

    hardware.max_abs = counting  # type: ignore[assignment]
    try:
        layer_ranges(model, x)
        assert reads[0] == 3  # the input and the two layers' outputs, one batch
        model[0].weight.data.add_(0.25)  # new weights: a fresh calibration, but the same data
        again = layer_ranges(model, x)
        assert reads[0] == 5  # the layers' outputs measured again, the input not
        snapshot = copy.deepcopy(model), x.clone()
        x.mul_(4.0)  # the data changed in place: its maximum is measured again
        changed = layer_ranges(model, x)
        assert reads[0] == 5 + 3
    finally:
        hardware.max_abs = real  # type: ignore[assignment]
    assert again == _fresh(*snapshot)  # a copy of the data: nothing remembered applies to it
    assert changed == _fresh(copy.deepcopy(model), x.clone())
    assert changed[0] == float(x.abs().max()) == 4.0 * again[0]
