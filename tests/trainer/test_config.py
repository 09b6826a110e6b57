"""TrainConfig.resolved: the defaults that depend on other fields."""

from __future__ import annotations

import pytest

from axtrain.errors import ConfigError
from axtrain.hwmodels.multipliers import MultiplierMode
from axtrain.trainer.config import GROUPS, METHOD_NAMES, Method, TrainConfig, make_config
from axtrain.trainer.methods import METHODS


@pytest.mark.parametrize(
    ("voltage", "multiplier", "factor"),
    [(1.1, "exact", 0.1), (1.1, "K1", 1.0), (1.1, "drum:2", 0.1), (1.1, "K3", 0.1), (1.1, "K4", 0.1), (0.85, "exact", 1.0), (0.4, "K2", 1.0)],
)
def test_pas_lr_default_follows_the_target(voltage: float, multiplier: str, factor: float) -> None:
    """lr / 10 for K2..K4 and exact, the full lr for K1 (decision 62) and when training through bit flips (decision 32)."""
    config = make_config({"app": "breast-cancer", "method": "pas", "lr": 2e-3, "sram_voltage": voltage, "multiplier": multiplier}, "test").resolved()
    assert config.schedule.pas_lr == pytest.approx(2e-3 * factor, rel=1e-12)


def test_an_explicit_pas_lr_is_kept() -> None:
    config = make_config({"app": "ionosphere", "method": "pas", "pas_lr": 5e-5, "sram_voltage": 0.66}, "test").resolved()
    assert config.schedule.pas_lr == 5e-5


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


def test_groups_hold_their_fields_and_flat_keys_still_read() -> None:
    flat = make_config({"app": "ionosphere", "method": "axtrain", "epochs": 4, "multiplier": "K2", "bits_w": 6, "gamma_initial": 1e-2, "ntv_eval_runs": 3})
    nested = make_config({"app": "ionosphere", "method": "axtrain", "schedule": {"epochs": 4}, "hardware": {"multiplier": "drum:2", "bits_w": 6},
                          "act": {"gamma_initial": 1e-2}, "evaluation": {"ntv_eval_runs": 3}})
    assert flat == nested
    assert (nested.schedule.epochs, nested.hardware.multiplier, nested.hardware.bits_w, nested.act.gamma_initial) == (4, MultiplierMode(2), 6, 1e-2)
    assert nested.method is Method.AXTRAIN and nested.method == "axtrain"
    dumped = nested.resolved().model_dump(mode="json")
    assert set(dumped) == {"app", "method", "seed", "output_layer", "approxann_start", "schedule", "hardware", "act", "evaluation", "threads", "device"}
    assert dumped["hardware"] == {"multiplier": "drum:2", "sram_voltage": 1.1, "bits_w": 6, "bits_a": 8}
    assert make_config(dumped) == nested.resolved()  # the recorded form reads back


def test_a_key_given_flat_and_nested_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^my.yaml: epochs is given twice, at the top level and in schedule$"):
        make_config({"app": "ionosphere", "epochs": 3, "schedule": {"epochs": 4}}, "my.yaml")


def test_every_field_is_documented_and_methods_are_one_enum() -> None:
    for model in (TrainConfig, *GROUPS.values()):
        for name, info in model.model_fields.items():
            assert info.description, f"{model.__name__}.{name} has no description"
    assert METHOD_NAMES == ("bp", "act", "pas", "axtrain", "approxann") == tuple(m.value for m in Method)
    assert set(METHODS) == set(Method)
