"""TrainConfig.resolved: the defaults that depend on other fields."""

from __future__ import annotations

import pytest

from axtrain.trainer.config import make_config


@pytest.mark.parametrize(
    ("voltage", "multiplier", "factor"),
    [(1.1, "exact", 0.1), (1.1, "K1", 0.1), (0.85, "exact", 1.0), (0.4, "K2", 1.0)],
)
def test_pas_lr_default_follows_the_target(voltage: float, multiplier: str, factor: float) -> None:
    """lr / 10 for a multiplier-only target, the full lr when training through bit flips (decision 32)."""
    config = make_config({"app": "breast-cancer", "method": "pas", "lr": 2e-3, "sram_voltage": voltage, "multiplier": multiplier}, "test").resolved()
    assert config.pas_lr == pytest.approx(2e-3 * factor, rel=1e-12)


def test_an_explicit_pas_lr_is_kept() -> None:
    config = make_config({"app": "ionosphere", "method": "pas", "pas_lr": 5e-5, "sram_voltage": 0.66}, "test").resolved()
    assert config.pas_lr == 5e-5
