"""reproduce's profile options: output layer, Fig. 6 metric and the K mapping reach the cells."""

from __future__ import annotations

import pytest

from axtrain.errors import ConfigError
from axtrain.reproduce import networks as nets
from axtrain.reproduce.profile import QUICK, parse_k_map


def test_default_profile_trains_every_network_with_the_sigmoid_output_layer() -> None:
    p = QUICK.with_options(apps=("ionosphere",))
    for cell in (nets.bp(p, "ionosphere", 0), nets.act(p, "ionosphere", 0), nets.axtrain(p, "ionosphere", 0, multiplier="K1")):
        assert cell.params["config"]["output_layer"] == "sigmoid"
    soft = p.with_options(output_layer="softmax")
    assert nets.bp(soft, "ionosphere", 0).params["config"]["output_layer"] == "softmax"
    assert nets.bp(soft, "ionosphere", 0).key != nets.bp(p, "ionosphere", 0).key


def test_k_map_reaches_training_evaluation_and_simulation() -> None:
    p = QUICK.with_options(apps=("ionosphere",))
    mapped = p.with_options(k_map="2,3,4,5")
    assert mapped.drum("K1") == "drum:2" and mapped.drum("K4") == "drum:5" and mapped.drum("exact") == "exact"
    assert p.drum("K1") == "K1"  # the default map leaves names (and so cell keys) as they were
    assert nets.axtrain(mapped, "ionosphere", 0, multiplier="K1").params["config"]["hardware"]["multiplier"] == "drum:2"
    assert nets.axtrain(p, "ionosphere", 0, multiplier="K1").params["config"]["hardware"]["multiplier"] == "drum:1"
    ev = nets.evaluate(mapped, nets.bp(mapped, "ionosphere", 0), "ionosphere", 0, ("exact", "K1"))
    assert ev.params["multipliers"] == {"K1": "drum:2"} and ev.params["modes"] == ["exact", "K1"]
    assert "multipliers" not in nets.evaluate(p, nets.bp(p, "ionosphere", 0), "ionosphere", 0, ("exact", "K1")).params
    assert nets.simulate(mapped, nets.bp(mapped, "ionosphere", 0), "ionosphere", 0, "K2", 1.1).params["multiplier"] == "drum:3"


@pytest.mark.parametrize("text", ["1,2,3", "0,1,2,3", "a,b,c,d", "1,2,3,17"])
def test_bad_k_map_is_one_line_error(text: str) -> None:
    with pytest.raises(ConfigError, match="--k-map"):
        parse_k_map(text)


def test_bad_output_metric_and_layer_are_one_line_errors() -> None:
    with pytest.raises(ConfigError, match="--output-metric"):
        QUICK.with_options(output_metric="accuracy")
    with pytest.raises(ConfigError, match="--output-layer"):
        QUICK.with_options(output_layer="tanh")
    assert QUICK.with_options(output_metric="ce").output_metric == "ce"


def test_max_seeds_caps_without_raising() -> None:
    from axtrain.reproduce.profile import FULL

    capped = FULL.with_options(max_seeds=2)
    assert capped.seeds("satimage") == (0, 1) and capped.seeds("mnist-mlp") == (0,)
    with pytest.raises(ConfigError, match="--max-seeds"):
        FULL.with_options(max_seeds=0)


def test_full_profile_trains_lenet5_at_batch_32_and_leaves_the_other_apps_alone() -> None:
    """LeNet-5 under the Sigmoid/MSE loss needs more steps than batch 128 gives in 4 epochs
    (decision 153); the other apps keep the trainer's batch, and no override key, so their cells' keys
    do not change with it."""
    from axtrain.reproduce.profile import FULL
    from axtrain.trainer.config import make_config

    cnn = nets.bp(FULL, "mnist-cnn", 0).params["config"]
    assert cnn["schedule"]["batch_size"] == 32
    assert nets.act(FULL, "mnist-cnn", 0).params["config"]["schedule"]["batch_size"] == 32
    for app in ("breast-cancer", "satimage", "mnist-mlp"):
        assert "batch_size" not in FULL.train_overrides(app)
        default = make_config({"app": app, "method": "bp"}, "test").resolved().schedule.batch_size
        assert nets.bp(FULL, app, 0).params["config"]["schedule"]["batch_size"] == default
    assert "batch_size" not in QUICK.train_overrides("mnist-cnn")  # the smoke test is unchanged


def test_full_profile_gives_lenet5_act_its_own_gamma_and_leaves_the_other_apps_alone() -> None:
    """At batch 32 the trainer's gamma 1e-3 costs act on LeNet-5 ten points; the full profile
    uses 1e-4 with the trainer's step rule gamma / 5 (decision 176). The other apps' act cells
    keep the trainer's per-app gamma and no override key."""
    from axtrain.reproduce.profile import FULL
    from axtrain.trainer.config import make_config

    act = nets.act(FULL, "mnist-cnn", 0).params["config"]["act"]
    assert act["gamma_initial"] == pytest.approx(1e-4, rel=1e-12)
    assert act["gamma_step"] == pytest.approx(2e-5, rel=1e-12)
    for app in ("breast-cancer", "satimage", "mnist-mlp"):
        assert "gamma_initial" not in FULL.train_overrides(app)
        default = make_config({"app": app, "method": "act"}, "test").resolved().act.gamma_initial
        assert nets.act(FULL, app, 0).params["config"]["act"]["gamma_initial"] == default
    assert "gamma_initial" not in QUICK.train_overrides("mnist-cnn")
