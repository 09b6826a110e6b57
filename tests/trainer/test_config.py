"""TrainConfig.resolved: the defaults that depend on other fields."""

from __future__ import annotations

import pytest

from axtrain.trainer.config import make_config


@pytest.mark.parametrize(
    ("voltage", "multiplier", "factor"),
    [(1.1, "exact", 0.1), (1.1, "K1", 1.0), (1.1, "drum:2", 0.1), (1.1, "K3", 0.1), (1.1, "K4", 0.1), (0.85, "exact", 1.0), (0.4, "K2", 1.0)],
)
def test_pas_lr_default_follows_the_target(voltage: float, multiplier: str, factor: float) -> None:
    """lr / 10 for K2..K4 and exact, the full lr for K1 (decision 62) and when training through bit flips (decision 32)."""
    config = make_config({"app": "breast-cancer", "method": "pas", "lr": 2e-3, "sram_voltage": voltage, "multiplier": multiplier}, "test").resolved()
    assert config.pas_lr == pytest.approx(2e-3 * factor, rel=1e-12)


def test_an_explicit_pas_lr_is_kept() -> None:
    config = make_config({"app": "ionosphere", "method": "pas", "pas_lr": 5e-5, "sram_voltage": 0.66}, "test").resolved()
    assert config.pas_lr == 5e-5


@pytest.mark.parametrize(
    ("method", "start", "expected"),
    [("bp", "bp", "softmax"), ("act", "bp", "sigmoid"), ("pas", "bp", "sigmoid"), ("axtrain", "bp", "sigmoid"),
     ("approxann", "bp", "softmax"), ("approxann", "act", "sigmoid")],
)
def test_output_layer_default_follows_the_method(method: str, start: str, expected: str) -> None:
    """The paper's methods train the paper's Sigmoid network; plain BP stays softmax (decision 60)."""
    config = make_config({"app": "breast-cancer", "method": method, "approxann_start": start}, "test").resolved()
    assert config.output_layer == expected
    pinned = make_config({"app": "breast-cancer", "method": method, "output_layer": "softmax"}, "test").resolved()
    assert pinned.output_layer == "softmax"


def test_unknown_output_layer_names_the_key() -> None:
    from axtrain.errors import ConfigError

    with pytest.raises(ConfigError, match="output_layer"):
        make_config({"app": "breast-cancer", "output_layer": "tanh"}, "test")
