"""Config validation, models, run directory, resume, CLI: the trainer's user-facing behaviour."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from pydantic import ValidationError
from safetensors.torch import load_file
from torch import nn

from axtrain.cli import cli as axtrain_cli, main as axtrain_main
from axtrain.errors import ConfigError, RunError
from axtrain.hwmodels.fixedpoint import quantize
from axtrain.hwmodels.layers import forward
from axtrain.trainer.config import TrainConfig, load_config, make_config
from axtrain.trainer.emulation import emulate_integers
from axtrain.trainer.engine import converged, train
from axtrain.trainer.hardware import calibrate
from axtrain.trainer.models import build_model, check_model, describe, from_description
from axtrain.trainer.rundir import load_layers, load_model

FAST = {"app": "breast-cancer", "epochs": 3, "pas_epochs": 2, "probe_samples": 64}


# -- config ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values, key",
    [
        ({"app": "breast-cancer", "colour": "red"}, "colour"),
        ({"app": "nope"}, "app"),
        ({"app": "breast-cancer", "bits_w": 3}, "hardware.bits_w"),
        ({"app": "breast-cancer", "multiplier": "drum:0"}, "hardware.multiplier"),
        ({"app": "breast-cancer", "sram_voltage": 0.3}, "hardware.sram_voltage"),
        ({"app": "breast-cancer", "method": "magic"}, "method"),
        ({"app": "breast-cancer", "lr": -1}, "schedule.lr"),
    ],
)
def test_bad_config_is_one_line_naming_the_key(values: dict, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        make_config(values, "my.yaml")
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"my.yaml: {key}:")


def test_config_file_yaml_json_and_overrides(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("app: ionosphere\nmethod: act\nmultiplier: K2\nepochs: 7\n")
    (tmp_path / "c.json").write_text(json.dumps({"app": "satimage", "bits_w": 6}))
    c = load_config(tmp_path / "c.yaml", epochs=9)
    assert (c.app, c.method, str(c.hardware.multiplier), c.schedule.epochs) == ("ionosphere", "act", "drum:2", 9)
    assert load_config(tmp_path / "c.json").hardware.bits_w == 6
    (tmp_path / "bad.yaml").write_text("app: ionosphere\nbatch_sise: 3\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: batch_sise: unknown key"):
        load_config(tmp_path / "bad.yaml")


def test_config_is_frozen_and_round_trips() -> None:
    c = make_config({"app": "mnist-mlp", "method": "axtrain"}).resolved()
    assert all(value is not None for value in c.schedule.model_dump().values()) and c.act.gamma_initial is not None
    assert TrainConfig(**json.loads(c.model_dump_json())) == c
    with pytest.raises(ValidationError):
        c.seed = 3  # type: ignore[misc]


def test_convergence_rule() -> None:
    assert not converged([1.0, 0.5], 2, 0.01)
    assert converged([1.0, 0.5, 0.5, 0.499], 2, 0.01)
    assert not converged([1.0, 0.5, 0.45, 0.4], 2, 0.01)


# -- models and calibration ---------------------------------------------------------------------


def test_unsupported_layer_is_named() -> None:
    with pytest.raises(ConfigError, match=r"layer 1 \(Tanh\)"):
        check_model(nn.Sequential(nn.Linear(3, 4), nn.Tanh()))
    with pytest.raises(ConfigError, match=r"layer 1 \(ReLU\) must directly follow"):
        check_model(nn.Sequential(nn.Flatten(), nn.ReLU()))


def test_table1_models_and_description_round_trip() -> None:
    sizes = {"breast-cancer": 30, "mnist-mlp": 784}
    for app, n_in in sizes.items():
        model = build_model(app)
        assert model(torch.zeros(2, n_in)).shape[0] == 2
    cnn = build_model("mnist-cnn")
    assert cnn(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert describe(from_description(describe(cnn))) == describe(cnn)


def test_calibration_formats() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 2))
    x = torch.randn(100, 5) * 3
    layers = calibrate(model, x, bits_w=6, bits_a=10)
    assert [l.relu for l in layers] == [True, False]
    assert layers[1].input_format == layers[0].output_format
    for layer, module in zip(layers, (model[0], model[2])):
        assert layer.weight_format.bits == 6 and layer.output_format.bits == 10
        # the largest weight is representable without saturating by more than half an LSB
        q = quantize(module.weight.detach().numpy(), layer.weight_format)
        assert np.array_equal(q, layer.weight)
        assert np.abs(q * layer.weight_format.scale - module.weight.detach().numpy()).max() <= layer.weight_format.scale / 2
    assert layers[0].input_format.frac == 10 - 1 - int(np.floor(np.log2(float(x.abs().max())))) - 1


@pytest.mark.slow
@pytest.mark.parametrize("app", ["mnist-mlp", "mnist-cnn"])
def test_mnist_bit_exact_on_real_samples(app: str) -> None:
    from axtrain.datasets import load

    data = load(app, 0)
    torch.manual_seed(0)
    model = build_model(app)
    x = torch.as_tensor(data.x_test[:300])
    for mode in ("exact", "drum:2"):
        layers = calibrate(model, torch.as_tensor(data.x_train[:2000]), multipliers=mode)
        expected = forward(layers, quantize(x.numpy(), layers[0].input_format))
        assert np.array_equal(emulate_integers(model, layers, x)[-1], expected[-1])


# -- run directory, resume ----------------------------------------------------------------------


def test_run_directory_contents_and_no_pickle(tmp_path: Path) -> None:
    config = make_config({**FAST, "method": "pas", "multiplier": "K2", "sram_voltage": 0.66})
    result = train(config, tmp_path / "run")
    run = tmp_path / "run"
    for name in ("config.json", "versions.json", "target.json", "history.jsonl", "checkpoint.safetensors", "checkpoint.json",
                 "weights.safetensors", "layers.safetensors", "layers.json", "summary.json"):
        assert (run / name).is_file(), name
    assert not list(run.glob("*.pt")) and not list(run.glob("*.pkl"))
    for name in ("weights.safetensors", "checkpoint.safetensors", "layers.safetensors"):
        assert (run / name).read_bytes()[8:9] == b"{"  # a safetensors JSON header, not a pickle
    assert json.loads((run / "target.json").read_text()) == {"multiplier": "drum:2", "sram_voltage": 0.66}
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert [h["phase"] for h in history] == ["bp"] * 3 + ["pas"] * 2
    assert all({"loss", "train_accuracy", "test_accuracy", "sensitivity", "gamma"} <= set(h) for h in history)
    layers, meta = load_layers(run)
    assert meta["app"] == "breast-cancer" and meta["input_shape"] == [30] and meta["multiplier"] == "drum:2"
    assert all(str(l.multipliers[0]) == "drum:2" and l.sram_voltage == 0.66 for l in layers if l.has_weights)
    for a, b in zip(layers, result.layers):
        assert a.name == b.name and a.output_format == b.output_format
        if a.has_weights:
            assert np.array_equal(a.weight, b.weight) and np.array_equal(a.bias, b.bias)
    model = load_model(run)
    for (k, v), w in zip(model.state_dict().items(), result.model.state_dict().values()):
        assert torch.equal(v, w), k
    assert json.loads((run / "config.json").read_text())["schedule"]["epochs"] == 3


@pytest.mark.parametrize("method, stop", [("bp", 2), ("axtrain", 4)])
def test_resume_gives_bit_identical_weights(tmp_path: Path, method: str, stop: int) -> None:
    config = make_config({**FAST, "method": method, "multiplier": "K1", "sram_voltage": 0.66})
    whole = train(config, tmp_path / "whole")
    partial = train(config, tmp_path / "part", stop_after_epochs=stop)
    assert partial.summary == {"interrupted": True}
    assert not (tmp_path / "part" / "summary.json").exists()
    resumed = train(config, tmp_path / "part")
    a = load_file(tmp_path / "whole" / "weights.safetensors")
    b = load_file(tmp_path / "part" / "weights.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [h["loss"] for h in whole.history] == [h["loss"] for h in resumed.history]


def test_finished_run_is_not_retrained_and_mismatch_is_refused(tmp_path: Path) -> None:
    config = make_config({**FAST, "method": "bp"})
    train(config, tmp_path / "r")
    stamp = (tmp_path / "r" / "weights.safetensors").stat().st_mtime_ns
    again = train(config, tmp_path / "r")
    assert (tmp_path / "r" / "weights.safetensors").stat().st_mtime_ns == stamp
    assert again.summary["method"] == "bp"
    with pytest.raises(RunError, match="epochs differ"):
        train(make_config({**FAST, "method": "bp", "epochs": 4}), tmp_path / "r")
    train(make_config({**FAST, "method": "bp", "epochs": 4}), tmp_path / "r", force=True)
    assert json.loads((tmp_path / "r" / "config.json").read_text())["schedule"]["epochs"] == 4


def test_user_model_trains(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(30, 16), nn.ReLU(), nn.Linear(16, 2))
    result = train(make_config({**FAST, "method": "bp"}), tmp_path / "u", model=model)
    assert [l.name for l in result.layers] == ["fc1", "fc2"]
    assert result.summary["test_accuracy_fixed_exact"] > 0.8


# -- CLI ----------------------------------------------------------------------------------------


def test_cli_train_bp_and_axtrain_end_to_end(tmp_path: Path) -> None:
    runner = CliRunner()
    for method in ("bp", "axtrain"):
        out = tmp_path / method
        result = runner.invoke(
            axtrain_cli, ["train", "--app", "breast-cancer", "--method", method, "--out", str(out), "--epochs", "12",
                          "--pas-epochs", "2", "--multiplier", "K2", "--quiet"]
        )
        assert result.exit_code == 0, result.output
        assert "fixed-point exact" in result.output and "target drum:2" in result.output
    history = [json.loads(line) for line in (tmp_path / "axtrain" / "history.jsonl").read_text().splitlines()]
    act = [h["sensitivity"] for h in history if h["phase"] == "act"]
    assert act[-1] < max(act)  # S falls from its peak under act
    bp_s = json.loads((tmp_path / "bp" / "summary.json").read_text())["sensitivity"]
    ax_s = json.loads((tmp_path / "axtrain" / "summary.json").read_text())["sensitivity"]
    assert ax_s < bp_s


def test_cli_bad_config_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("app: breast-cancer\nlearning_rate: 0.1\n")
    with pytest.raises(SystemExit) as stop:
        axtrain_main(["train", "--method", "bp", "--out", str(tmp_path / "r"), "--config", str(bad)])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bad.yaml: learning_rate: unknown key" in err
