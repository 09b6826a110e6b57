"""Inputs checked at the edge, before the first stage: missing or undecodable files, huge numbers,
non-finite numbers, consistent-but-wrong bundles and huge echoed strings. Each refusal is exit 2
with one ``error:`` line naming the option, key or file, and nothing is written."""

from __future__ import annotations

import json
import math
import resource
import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
from _killer import axtrain_command, child_env
from machine import cli
from onnx_graphs import build_model, mlp_specs

from axtrain import atomic
from axtrain.errors import MAX_ECHOED_CHARS, ConfigError, OutputError, one_line
from axtrain.formats import bundle as fmt
from axtrain.limits import MAX_RUNS, MAX_SEED


def _assert_refused(args: list[str], cwd: Path, *needles: str) -> str:
    code, _, err = cli(args, cwd=cwd)
    lines = err.strip().splitlines()
    assert code == 2 and lines and lines[-1].startswith("error: ") and "Traceback" not in err, (code, err[-1500:])
    assert len([line for line in lines if "error:" in line]) == 1, err
    for needle in needles:
        assert needle in lines[-1], (needle, lines[-1])
    return lines[-1]


# ---------------------------------------------------------------------------------------------
# Late validation
# ---------------------------------------------------------------------------------------------


def test_pipeline_refuses_a_missing_arch_file_before_training(tmp_path):
    _assert_refused(["pipeline", "--app", "breast-cancer", "--epochs", "1", "--arch", "nosuch.yaml", "--out", "pipe"], tmp_path, "nosuch.yaml")
    assert not (tmp_path / "pipe" / "run").exists()


def test_pipeline_refuses_a_non_utf8_arch_file_before_training(tmp_path):
    (tmp_path / "arch.yaml").write_bytes(b"pe_rows: 8\n\xff\xfe\n")
    _assert_refused(["pipeline", "--app", "breast-cancer", "--epochs", "1", "--arch", "arch.yaml", "--out", "pipe"], tmp_path, "arch.yaml", "UTF-8")
    assert not (tmp_path / "pipe" / "run").exists()


def test_pipeline_refuses_a_bad_training_config_before_anything(tmp_path):
    (tmp_path / "train.yaml").write_text("lr: .inf\n")
    _assert_refused(["pipeline", "--app", "breast-cancer", "--config", "train.yaml", "--out", "pipe"], tmp_path, "lr", "finite")
    assert not (tmp_path / "pipe" / "run").exists()


def test_one_path_for_two_outputs_is_refused(tiny_chain, tmp_path):
    _assert_refused(["simulate", str(tiny_chain.bundle), "--app", "breast-cancer", "--report", "x", "--dump-outputs", "./x"], tmp_path,
             "--report and --dump-outputs name the same file")
    _assert_refused(["explore", str(tiny_chain.bundle), "--app", "breast-cancer", "--out", "x", "--report", "x"], tmp_path,
             "--report and --out name the same path")
    assert list(tmp_path.iterdir()) == []


def test_hw_drum_refuses_a_negative_seed(tmp_path):
    line = _assert_refused(["hw", "drum", "--k", "2", "--bits", "16", "--seed", "-1"], tmp_path, "--seed", "-1")
    assert len(line) < 300  # one short line, not a usage dump


# ---------------------------------------------------------------------------------------------
# Huge numbers
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("args, needle", [
    (["train", "--app", "breast-cancer", "--seed", str(2**70), "--out", "run"], "seed"),
    (["train", "--app", "breast-cancer", "--epochs", str(10**9), "--out", "run"], "epochs"),
    (["simulate", "{bundle}", "--app", "breast-cancer", "--runs", str(10**12), "--report", "r.json"], "--runs"),
    (["simulate", "{bundle}", "--app", "breast-cancer", "--seed", str(2**70), "--report", "r.json"], "--seed"),
    (["simulate", "{bundle}", "--app", "breast-cancer", "--split-seed", str(2**40), "--report", "r.json"], "--split-seed"),
    (["explore", "{bundle}", "--app", "breast-cancer", "--runs", str(10**9), "--out", "plan.bundle"], "--runs"),
    (["pipeline", "--app", "breast-cancer", "--runs", str(10**9), "--out", "pipe"], "--runs"),
    (["pipeline", "--app", "breast-cancer", "--seed", str(2**70), "--out", "pipe"], "seed"),
    (["reproduce", "fig6", "--runs", str(10**12), "--out", "rep"], "--runs"),
    (["reproduce", "fig6", "--jobs", str(2**31), "--out", "rep"], "--jobs"),
    (["hw", "drum", "--k", "2", "--bits", "16", "--samples", str(10**15)], "--samples"),
    (["hw", "drum", "--k", "2", "--bits", "16", "--seed", str(2**70)], "--seed"),
])
def test_huge_option_values_are_refused_at_the_edge(args, needle, tiny_chain, tmp_path):
    args = [a.replace("{bundle}", str(tiny_chain.bundle)) for a in args]
    line = _assert_refused(args, tmp_path, needle, "limit")
    assert len(line) < 300
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("key, value", [("threads", 2**31), ("batch_size", 2**40), ("seed", 2**70), ("pas_epochs", 10**9),
                                        ("probe_samples", 2**40), ("ntv_eval_runs", 10**9)])
def test_huge_training_config_values_are_refused(key, value, tmp_path):
    (tmp_path / "c.yaml").write_text(f"{key}: {value}\n")
    _assert_refused(["train", "--app", "breast-cancer", "--config", "c.yaml", "--out", "run"], tmp_path, key, "limit")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"]


def test_the_largest_seed_still_trains(tmp_path):
    code, _, err = cli(["train", "--app", "breast-cancer", "--method", "bp", "--epochs", "1", "--seed", str(MAX_SEED), "--out", "run", "--quiet"], cwd=tmp_path)
    assert code == 0, err


def test_a_billion_runs_under_a_4_gib_address_space_is_a_one_line_refusal(tiny_chain, tmp_path):
    """The issue's case (it was a MemoryError, exit 1): refused before anything is allocated."""
    four_gib = 4 << 30

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (four_gib, four_gib))

    done = subprocess.run(axtrain_command("simulate", str(tiny_chain.bundle), "--app", "breast-cancer", "--runs", str(10**9)),
                          cwd=tmp_path, env=child_env(), capture_output=True, text=True, timeout=120, preexec_fn=cap)
    assert done.returncode == 2 and done.stderr.strip() == f"error: --runs: {10**9} exceeds the limit of {MAX_RUNS}", done.stderr


def test_monte_carlo_memory_does_not_grow_with_the_runs_beyond_one_byte_per_prediction(tiny_chain, monkeypatch):
    """Runs go through the executor in passes of bounded size; what is kept per run is one uint8
    class per input. With passes of 4 runs, 200 runs need at most 200 * n bytes more than 8 runs."""
    import tracemalloc

    from axtrain.datasets import load
    from axtrain.formats.bundle import load_bundle
    from axtrain.runtime import simulation

    b = load_bundle(tiny_chain.bundle)
    data = load("breast-cancer", seed=0)
    monkeypatch.setattr(simulation, "RUN_WEIGHT_WORDS", 4 * b.weights.size)
    peaks = {}
    for runs in (8, 200):
        tracemalloc.start()
        result = simulation.simulate(b, data.x_test, data.y_test, sram_voltage=0.6, runs=runs, seed=1)
        peaks[runs] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert result.predictions.dtype == np.uint8 and result.predictions.shape == (runs, len(data.y_test))
    budget = 192 * len(data.y_test) + 64 * 1024  # the extra predictions, plus per-run floats and slack
    assert peaks[200] - peaks[8] < budget, peaks


# ---------------------------------------------------------------------------------------------
# Non-finite numbers: refused in every config, never written into a report
# ---------------------------------------------------------------------------------------------


def test_an_infinite_clock_in_an_architecture_file_is_refused(tiny_chain, tmp_path):
    (tmp_path / "arch.yaml").write_text("clock_hz: .inf\n")
    _assert_refused(["compile", str(tiny_chain.onnx), "--arch", "arch.yaml", "--out", "b"], tmp_path, "clock_hz", "finite")
    (tmp_path / "arch.json").write_text('{"clock_hz": NaN}')
    _assert_refused(["compile", str(tiny_chain.onnx), "--arch", "arch.json", "--out", "b"], tmp_path, "clock_hz", "finite")
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("text", ["dram_pj_per_byte: .inf\n", "adder_32bit_pj: .nan\n", "clock_frequency_hz: -.inf\n"])
def test_a_non_finite_energy_in_a_technology_table_is_refused(text, tiny_chain, tmp_path):
    (tmp_path / "tech.yaml").write_text(text)
    key = text.split(":")[0]
    _assert_refused(["simulate", str(tiny_chain.bundle), "--app", "breast-cancer", "--tech", "tech.yaml", "--report", "r.json"], tmp_path, key, "finite")
    assert not (tmp_path / "r.json").exists()


@pytest.mark.parametrize("text, key", [("lr: .inf\n", "lr"), ("weight_decay: .nan\n", "weight_decay"), ("gamma_initial: .inf\n", "gamma_initial")])
def test_a_non_finite_training_config_value_is_refused(text, key, tmp_path):
    (tmp_path / "c.yaml").write_text(text)
    _assert_refused(["train", "--app", "breast-cancer", "--config", "c.yaml", "--out", "run"], tmp_path, key, "finite")
    assert not (tmp_path / "run").exists()  # refused before the run folder is made


def test_a_bundle_with_a_non_finite_voltage_is_refused(tiny_chain, tmp_path):
    bundle = Path(shutil.copytree(tiny_chain.bundle, tmp_path / "b"))
    layers = json.loads((bundle / fmt.LAYERS).read_text())
    layers[0]["sram_voltage"] = math.inf
    _rewrite(bundle, fmt.LAYERS, json.dumps(layers).encode())
    _assert_refused(["simulate", str(bundle), "--app", "breast-cancer"], tmp_path, "sram_voltage", "finite")


def _strict(text: str) -> object:
    def refuse(name: str) -> None:
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_reports_are_strict_json(tiny_chain, tmp_path):
    code, _, err = cli(["simulate", str(tiny_chain.bundle), "--inputs", "x.npy", "--report", "r.json"], cwd=_inputs(tmp_path))
    assert code == 0, err
    _strict((tmp_path / "r.json").read_text())  # a report without labels has no accuracy: null, not NaN
    with pytest.raises(OutputError, match=r"report.json: refusing to write a non-finite number \(NaN or infinity\) at energy.total"):
        atomic.write_json(tmp_path / "report.json", {"energy": {"total": math.nan}})
    assert not (tmp_path / "report.json").exists()


def _inputs(tmp_path: Path) -> Path:
    from axtrain.datasets import load

    np.save(tmp_path / "x.npy", load("breast-cancer", seed=0).x_test[:8])
    return tmp_path


# ---------------------------------------------------------------------------------------------
# Consistent but wrong bundles: checked on every load, not only by verify
# ---------------------------------------------------------------------------------------------


def _rewrite(bundle: Path, name: str, data: bytes) -> None:
    (bundle / name).write_bytes(data)
    manifest = json.loads((bundle / fmt.MANIFEST).read_text())
    manifest["files"][name] = fmt.sha256_bytes(data)
    (bundle / fmt.MANIFEST).write_text(json.dumps(manifest))


@pytest.fixture(scope="module")
def other_bundle(tmp_path_factory) -> Path:
    from axtrain.compiler.pipeline import compile_to_bundle

    tmp = tmp_path_factory.mktemp("other")
    specs = mlp_specs(np.random.default_rng(3), [30, 50, 2])
    onnx.save(build_model(specs, ["N", 30]), tmp / "m.onnx")
    return compile_to_bundle(tmp / "m.onnx", tmp / "b")


@pytest.mark.parametrize("command", ["simulate", "inspect", "explore"])
def test_a_bundle_with_another_applications_layer_table_is_refused_on_load(command, tiny_chain, other_bundle, tmp_path):
    bundle = Path(shutil.copytree(tiny_chain.bundle, tmp_path / "b"))
    _rewrite(bundle, fmt.LAYERS, (other_bundle / fmt.LAYERS).read_bytes())
    args = {"simulate": ["simulate", str(bundle), "--app", "breast-cancer", "--report", "r.json"],
            "inspect": ["inspect", str(bundle)],
            "explore": ["explore", str(bundle), "--app", "breast-cancer", "--out", "plan.bundle"]}[command]
    line = _assert_refused(args, tmp_path, "layers.json")
    assert "manifest.json lists 3 layers, layers.json 2" in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


@pytest.mark.parametrize("edit, needle", [
    (lambda m, layers: m.update(instructions=m["instructions"] + 1), "instructions"),
    (lambda m, layers: m["output"].update(shape=[3]), "output shape"),
    (lambda m, layers: m["input"].update(dram=m["activation_words"]), "activation words"),
    (lambda m, layers: layers[1].update(output_shape=[63]), "SYNCs"),
    (lambda m, layers: layers[1]["weights"].update(dram=m["weight_words"]), "lie outside"),
    (lambda m, layers: layers[2].update(program=[0, 3]), "instruction range"),
    (lambda m, layers: layers[0].update(multipliers=layers[0]["multipliers"][:-1]), "one [outputs, inputs] matrix"),
])
def test_cross_file_invariants_are_checked_on_load(edit, needle, tiny_chain, tmp_path):
    bundle = Path(shutil.copytree(tiny_chain.bundle, tmp_path / "b"))
    manifest = json.loads((bundle / fmt.MANIFEST).read_text())
    layers = json.loads((bundle / fmt.LAYERS).read_text())
    edit(manifest, layers)
    layers_bytes = json.dumps(layers).encode()
    (bundle / fmt.LAYERS).write_bytes(layers_bytes)
    manifest["files"][fmt.LAYERS] = fmt.sha256_bytes(layers_bytes)
    (bundle / fmt.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(fmt.BundleError, match=needle.replace("[", r"\[").replace("]", r"\]")):
        fmt.load_bundle(bundle)
    _assert_refused(["simulate", str(bundle), "--app", "breast-cancer"], tmp_path, needle)


# ---------------------------------------------------------------------------------------------
# Echoed strings are capped
# ---------------------------------------------------------------------------------------------


def test_one_line_caps_each_echoed_word_and_the_whole_message():
    assert len(one_line("node " + "x" * 100_000 + " refused")) == len("node ") + MAX_ECHOED_CHARS + len(" refused")
    assert one_line("a\nb   c") == "a b c"
    assert len(str(ConfigError(" ".join(["y" * 150] * 100)))) == 1000
    assert str(ConfigError("short")) == "short"


def test_a_refused_node_with_a_100000_character_name_gives_a_short_line(tmp_path):
    from onnx import TensorProto, helper

    name = "n" * 100_000
    graph = helper.make_graph(
        [helper.make_node("Tanh", ["x"], ["y"], name=name)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "m.onnx")
    line = _assert_refused(["compile", "m.onnx", "--out", "b"], tmp_path, "n" * 100)
    assert len(line) < 1100, len(line)
