"""`axtrain inspect --json` and `axtrain verify --json`: the text commands' facts for scripts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from axtrain.cli import cli
from axtrain.formats.bundle import load_bundle


def test_inspect_json_agrees_with_the_bundle(tiny_bundle: Path) -> None:
    done = CliRunner().invoke(cli, ["inspect", str(tiny_bundle), "--json"])
    assert done.exit_code == 0, done.output
    facts = json.loads(done.output)
    b = load_bundle(tiny_bundle)
    assert [layer["name"] for layer in facts["layers"]] == [layer.name for layer in b.layers]
    assert facts["instructions"]["count"] == len(b.program)
    assert sum(facts["instructions"]["by_kind"].values()) == len(b.program)
    assert sum(layer["instructions"] for layer in facts["layers"]) <= len(b.program)
    assert facts["memory"]["weight_words"] == b.manifest.weight_words
    assert facts["layers"][0]["multipliers"] == ["exact"]


def test_verify_json_reports_every_layer(tiny_bundle: Path) -> None:
    done = CliRunner().invoke(cli, ["verify", str(tiny_bundle), "--json"])
    assert done.exit_code == 0, done.output
    facts = json.loads(done.output)
    assert facts["ok"] is True and facts["output"]["ok"] is True
    assert len(facts["layers"]) == len(load_bundle(tiny_bundle).layers)
    assert all(layer["mismatches"] == 0 for layer in facts["layers"])


def test_verify_json_of_a_failing_bundle_prints_json_and_exits_2(tiny_bundle: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.bundle"
    shutil.copytree(tiny_bundle, bad)
    golden = sorted((bad / "golden").glob("layer_*.npy"))[0]
    values = np.load(golden)
    values.flat[0] += 1
    np.save(golden, values)
    # the golden vectors are hashed in the manifest: refresh the hash so that the replay is what fails
    from axtrain.formats.bundle import sha256_file

    manifest = json.loads((bad / "manifest.json").read_text())
    rel = str(golden.relative_to(bad))
    assert rel in manifest["files"]
    manifest["files"][rel] = sha256_file(golden)
    (bad / "manifest.json").write_text(json.dumps(manifest, indent=2))
    done = CliRunner().invoke(cli, ["verify", str(bad), "--json"])
    assert done.exit_code != 0
    facts = json.loads(done.stdout)
    assert facts["ok"] is False
    assert [layer["ok"] for layer in facts["layers"]].count(False) == 1
