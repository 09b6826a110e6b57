"""The fuzz corpus itself: its seed models and its metadata mutator use the schema's real keys, so
the fuzzers exercise what the readers parse (not only "an unknown key is ignored")."""

from __future__ import annotations

from pathlib import Path

import onnx
from mutate import METADATA_KEYS
from seeds import build_seeds

from axtrain.formats.bundle import load_bundle
from axtrain.formats.onnx_schema import MODEL_KEYS, NAMESPACE, NODE_KEYS


def test_every_seed_model_key_is_a_schema_key(tmp_path: Path) -> None:
    seeds = build_seeds(tmp_path / "seeds")
    used = set()
    for path in seeds.models.values():
        model = onnx.load(str(path), load_external_data=False)
        used |= {(p.key, "model") for p in model.metadata_props if p.key.startswith(NAMESPACE)}
        used |= {(p.key, "node") for node in model.graph.node for p in node.metadata_props if p.key.startswith(NAMESPACE)}
    assert ("axtrain.weight_sram_voltage", "node") in used  # the hand-built MLP annotates its voltage
    assert {key for key, where in used if where == "model"} <= set(MODEL_KEYS)
    assert {key for key, where in used if where == "node"} <= set(NODE_KEYS)
    # ... and the compiler reads it: the MLP's first layer runs at the 0.8 V its seed asks for.
    first = load_bundle(seeds.bundles["mlp"]).layers[0]
    assert (first.name, first.sram_voltage, first.multipliers[0]) == ("fc1", 0.8, "drum:3")


def test_the_metadata_mutator_edits_schema_keys() -> None:
    assert set(METADATA_KEYS) <= set(MODEL_KEYS) | set(NODE_KEYS)
    assert len(set(METADATA_KEYS)) == len(METADATA_KEYS) == 11
