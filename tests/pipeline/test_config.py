"""The pipeline file (axtrain/pipeline/config.py): strict, closed, overridden by options, recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from axtrain.cli import cli
from axtrain.errors import ConfigError
from axtrain.pipeline.config import options_from


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(text)
    return path


def test_groups_reach_their_stage(tmp_path: Path) -> None:
    path = _file(tmp_path, "app: breast-cancer\nout: o\ntrain: {method: act, seed: 3, epochs: 4, multiplier: K2}\n"
                 "export: {multiplier: K3}\ncompile: {arch: a.yaml}\nsimulate: {runs: 7, fault_seed: 9}\n")
    o = options_from(path, {})
    assert (o.app, o.method, o.seed, o.runs, o.sim_seed) == ("breast-cancer", "act", 3, 7, 9)
    assert o.train_settings == {"epochs": 4, "multiplier": "K2"}
    assert str(o.export_target.multiplier) == "drum:3"
    assert o.arch_file == tmp_path / "a.yaml"  # relative to the file
    assert o.out == Path("o")


def test_options_override_the_file(tmp_path: Path) -> None:
    path = _file(tmp_path, "app: breast-cancer\nout: o\ntrain: {method: act, epochs: 4}\nsimulate: {runs: 7}\n")
    o = options_from(path, {"method": "bp", "epochs": 2, "runs": 3, "out": Path("elsewhere")})
    assert (o.method, o.train_settings["epochs"], o.runs, o.out) == ("bp", 2, 3, Path("elsewhere"))
    assert o.recorded["train"] == {"method": "bp", "epochs": 2}
    assert o.recorded["file"] == str(path)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("app: breast-cancer\nout: o\nsimulat: {runs: 3}\n", ["pipeline.yaml", "simulat", "unknown key"]),
        ("app: breast-cancer\nout: o\nsimulate: {runs: '3'}\n", ["pipeline.yaml", "simulate.runs", "integer"]),
        ("app: breast-cancer\nout: o\nsimulate: {runs: 0}\n", ["simulate.runs", "greater than or equal to 1"]),
        ("app: breast-cancer\nout: o\nexport: {multiplier: K9}\n", ["pipeline.yaml: export", "multiplier"]),
    ],
)
def test_one_line_errors_name_the_file_and_the_key(tmp_path: Path, text: str, words: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        options_from(_file(tmp_path, text), {})
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message


def test_a_bad_train_key_is_named_with_the_file(tmp_path: Path) -> None:
    from axtrain.pipeline.run import validate_options

    path = _file(tmp_path, "app: breast-cancer\nout: o\ntrain: {epoch: 3}\n")
    with pytest.raises(ConfigError, match=r"pipeline.yaml: train: epoch: unknown key"):
        validate_options(options_from(path, {}))


def test_app_and_out_are_required_somewhere(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--app is required \(or 'app:' in"):
        options_from(_file(tmp_path, "out: o\n"), {})


def test_the_cli_runs_from_the_file_and_records_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _file(tmp_path, "app: breast-cancer\nout: p\ntrain: {method: bp, epochs: 2}\nsimulate: {runs: 2, fault_seed: 5}\n")
    done = CliRunner().invoke(cli, ["pipeline", "--config", "pipeline.yaml", "--runs", "3"], catch_exceptions=False)
    assert done.exit_code == 0, done.output
    recorded = json.loads((tmp_path / "p" / "config.json").read_text())
    assert recorded["simulate"] == {"runs": 3, "fault_seed": 5}  # the option won over the file
    assert recorded["train"] == {"method": "bp", "epochs": 2}
    report = json.loads((tmp_path / "p" / "report.json").read_text())
    assert (report["config"]["runs"], report["config"]["seed"]) == (3, 5)


def _main(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Exit code and stderr of the console entry point (which maps errors to one line and exit 2)."""
    from axtrain.cli import main

    capsys.readouterr()
    try:
        main(args)
        code = 0
    except SystemExit as stop:
        code = int(stop.code or 0)
    return code, capsys.readouterr().err


def test_another_training_config_is_refused_and_the_same_one_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    base = ["pipeline", "--app", "breast-cancer", "--method", "bp", "--epochs", "2", "--runs", "2", "--out", "p"]
    code, err = _main(base, capsys)
    assert code == 0, err
    assert "[train] running (into p/run; runs of `axtrain train` elsewhere are not reused)" in err
    weights = (tmp_path / "p" / "run" / "weights.safetensors").read_bytes()
    code, err = _main([*base[:4], "act", *base[5:]], capsys)
    assert code == 2
    assert err.startswith("error: p holds a pipeline trained with another config (method bp -> act;") and "use --force" in err
    assert (tmp_path / "p" / "run" / "weights.safetensors").read_bytes() == weights
    code, err = _main([*base[:-3], "3", "--out", "p"], capsys)  # only --runs changed
    assert code == 0, err
    assert "[train] reused" in err and "[simulate] running" in err


@pytest.mark.parametrize(
    "bad",
    [["--app", "breast-cancr"], ["--app", "breast-cancer", "--multiplier", "K9"], ["--app", "breast-cancer", "--sram-voltage", "0.1"],
     ["--app", "breast-cancer", "--epochs", "-1"]],
)
def test_a_refused_pipeline_creates_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], bad: list[str]) -> None:
    monkeypatch.chdir(tmp_path)
    code, err = _main(["pipeline", *bad, "--out", "out/p"], capsys)
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_a_folder_that_is_not_a_pipeline_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "manifest.json").write_text("{}")
    code, err = _main(["pipeline", "--app", "breast-cancer", "--out", "b"], capsys)
    assert code == 2 and "is not a pipeline folder" in err
    assert [p.name for p in (tmp_path / "b").iterdir()] == ["manifest.json"]
