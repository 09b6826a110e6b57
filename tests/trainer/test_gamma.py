"""AdaptiveGamma against sequences worked out by hand from the rule in trainer/gamma.py."""

from __future__ import annotations

import json
import math

import pytest

from axtrain.errors import ConfigError
from axtrain.trainer.gamma import AdaptiveGamma


def test_error_rule_by_hand() -> None:
    g = AdaptiveGamma(initial=1.0, step=0.5)
    # epoch 1: no earlier epoch -> unchanged
    assert g.update(1.0) == 1.0
    # epoch 2: reference 0.5*1.0 = 0.5; 0.25 < 0.5 -> up
    assert g.update(0.25) == 1.5
    # epoch 3: reference 0.5*0.25 + 0.25*1.0 = 0.375; 0.25 < 0.375 -> up
    assert g.update(0.25) == 2.0
    # epoch 4: reference 0.5*0.25 + 0.25*0.25 + 0.125*1.0 = 0.3125; 0.3125 is not < 0.3125 -> down
    assert g.update(0.3125) == 1.5
    # epoch 5: reference 0.5*0.3125 + 0.25*0.25 + 0.125*0.25 + 0.0625*1.0 = 0.3125; 0.3 < 0.3125 -> up
    assert g.reference() == 0.3125
    assert g.update(0.3) == 2.0
    # epoch 6: reference 0.15 + 0.078125 + 0.03125 + 0.015625 + 0.03125 = 0.30625; 0.5 -> down
    assert g.reference() == pytest.approx(0.30625, rel=1e-15)
    assert g.update(0.5) == 1.5
    assert g.value == 1.5


def test_clamped_to_minimum_and_maximum() -> None:
    g = AdaptiveGamma(initial=0.25, step=0.5, minimum=0.0, maximum=1.0)
    assert g.update(1.0) == 0.25  # first epoch: unchanged
    assert g.update(1.0) == 0.0  # reference 0.5: not below -> 0.25 - 0.5 clamped to 0
    assert g.update(1.0) == 0.0  # reference 0.75: not below -> stays at the minimum
    assert g.update(0.1) == 0.5  # reference 0.875 -> up
    assert g.update(0.01) == 1.0  # reference 0.05 + 0.25 + 0.125 + 0.0625 -> up
    assert g.update(0.001) == 1.0  # up again, clamped to the maximum


def test_accuracy_bound_raises_gamma() -> None:
    g = AdaptiveGamma(initial=1.0, step=0.25, accuracy_bound=0.9)
    assert g.update(1.0, accuracy=0.95) == 1.25  # first epoch, but accuracy 0.95 > 0.9 -> up
    assert g.update(1.0, accuracy=0.9) == 1.0  # 0.9 is not > 0.9; reference 0.5 not beaten -> down
    assert g.update(2.0, accuracy=0.91) == 1.25  # error rose, accuracy above the bound -> up
    assert g.update(2.0) == 1.0  # no accuracy given: error rule only; reference 1.25 -> down


def test_state_round_trip_continues_identically() -> None:
    a = AdaptiveGamma(initial=0.5, step=0.125, accuracy_bound=0.8)
    for e in (1.0, 0.3, 0.2):
        a.update(e, accuracy=0.5)
    b = AdaptiveGamma.from_state_dict(json.loads(json.dumps(a.state_dict(), allow_nan=False)))
    for e, acc in ((0.19, 0.6), (0.5, 0.85), (0.4, None)):
        assert a.update(e, acc) == b.update(e, acc)
    assert a.state_dict() == b.state_dict()
    assert b.maximum == math.inf


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial": -1.0, "step": 0.1},
        {"initial": 1.0, "step": -0.1},
        {"initial": 1.0, "step": math.nan},
        {"initial": 2.0, "step": 0.1, "maximum": 1.0},
        {"initial": 0.1, "step": 0.1, "minimum": 0.5},
        {"initial": 0.1, "step": 0.1, "accuracy_bound": 1.5},
    ],
)
def test_bad_settings_raise_config_error(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        AdaptiveGamma(**kwargs)


def test_diverged_error_raises() -> None:
    with pytest.raises(ConfigError, match="nan"):
        AdaptiveGamma(1.0, 0.1).update(math.nan)
    with pytest.raises(ConfigError, match="incomplete"):
        AdaptiveGamma.from_state_dict({"value": 1.0})
