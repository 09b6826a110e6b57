"""Valid artifacts the fuzzers start from: ONNX models (hand-built and exporter-made), the bundles
compiled from them, and config files. Built once per fuzz process, deterministically."""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "compiler"))  # onnx_graphs: the compiler tests' graph builder

from onnx_graphs import Spec, build_model, mlp_specs, random_conv, random_dense  # noqa: E402

from axtrain.compiler.package import write_compiled_bundle  # noqa: E402
from axtrain.compiler.pipeline import compile_model  # noqa: E402
from axtrain.formats.arch import DEFAULT_ARCH  # noqa: E402
from axtrain.formats.onnx_schema import KEY_LAYER, KEY_MULTIPLIER, KEY_SRAM_VOLTAGE  # noqa: E402
from axtrain.hwmodels.fixedpoint import FixedPointFormat as F  # noqa: E402
from axtrain.hwmodels.layers import QuantizedLayer  # noqa: E402
from axtrain.hwmodels.multipliers import parse_mode  # noqa: E402
from axtrain.hwmodels.technology import DEFAULT_65NM  # noqa: E402

EXTERNAL_DATA = "weights.data"


@dataclass(frozen=True)
class Seeds:
    """Paths of the valid artifacts under one directory."""

    root: Path
    models: dict[str, Path]  # name -> ONNX file (each alone in its own directory)
    bundles: dict[str, Path]  # name -> bundle directory
    configs: dict[str, Path]  # name -> config file


def _mlp() -> onnx.ModelProto:
    specs = mlp_specs(np.random.default_rng(1), [12, 9, 4])
    specs[0].fo, specs[1].fo = -2, -3
    specs[0].metadata = {KEY_MULTIPLIER: "drum:3", KEY_SRAM_VOLTAGE: "0.8", KEY_LAYER: "fc1"}
    return build_model(specs, ["N", 12], model_metadata={"axtrain.schema": "1", "axtrain.app": "fuzz"})


def _cnn() -> onnx.ModelProto:
    rng = np.random.default_rng(2)
    specs = [
        random_conv(rng, 3, 1, 3, pad=1, fw=7, fo=1, relu=True),
        Spec("maxpool", kernel=2, stride=2),
        Spec("flatten"),
        random_dense(rng, 5, 27, fw=7, fo=-1),
    ]
    return build_model(specs, ["N", 1, 6, 6])


def _exported() -> onnx.ModelProto:
    from axtrain.trainer.export import export_layers

    rng = np.random.default_rng(3)
    modes = tuple(parse_mode(m) for m in ["drum:2"] * 2 + ["exact"] * 3)
    layers = [
        QuantizedLayer("conv", "conv", F(6, 3), F(6, 1), rng.integers(-32, 32, (2, 1, 3, 3)), F(6, 5), rng.integers(-300, 300, 2), relu=True, padding=1, sram_voltage=0.85),
        QuantizedLayer("pool", "maxpool", F(6, 1), F(6, 1), kernel=2, stride=2),
        QuantizedLayer("flat", "flatten", F(6, 1), F(6, 1)),
        QuantizedLayer("fc", "dense", F(6, 1), F(8, -1), rng.integers(-32, 32, (5, 2 * 2 * 2)), F(6, 5), rng.integers(-300, 300, 5), multipliers=modes, sram_voltage=0.7),
    ]
    return export_layers(layers, (1, 4, 4), {"app": "fuzz", "method": "axtrain", "seed": 4})


def _save(model: onnx.ModelProto, directory: Path, external: bool = False) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "model.onnx"
    if external:
        # Every initializer of >= 16 bytes goes to one external file beside the model.
        onnx.save_model(model, path, save_as_external_data=True, all_tensors_to_one_file=True, location=EXTERNAL_DATA, size_threshold=16)
    else:
        onnx.save_model(model, path)
    return path


def build_seeds(root: Path) -> Seeds:
    """Write every seed artifact under ``root`` (deterministic) and check that each is valid."""
    root = Path(root)
    if root.exists():
        shutil.rmtree(root)
    models = {
        "mlp": _save(_mlp(), root / "onnx" / "mlp"),
        "cnn": _save(_cnn(), root / "onnx" / "cnn"),
        "exported": _save(_exported(), root / "onnx" / "exported"),
        "external": _save(_mlp(), root / "onnx" / "external", external=True),
    }
    bundles = {}
    for name in ("mlp", "cnn", "exported"):
        bundles[name] = write_compiled_bundle(compile_model(models[name]), root / "bundle" / name)
    configs_dir = root / "config"
    configs_dir.mkdir(parents=True)
    arch = DEFAULT_ARCH.to_json()
    configs = {
        "arch.json": configs_dir / "arch.json",
        "arch.yaml": configs_dir / "arch.yaml",
        "technology.json": configs_dir / "technology.json",
        "technology.yaml": configs_dir / "technology.yaml",
        "train.yaml": configs_dir / "train.yaml",
        "train.json": configs_dir / "train.json",
    }
    configs["arch.json"].write_text(json.dumps(arch, indent=1))
    configs["arch.yaml"].write_text(yaml.safe_dump(dict(arch, pe_rows=8, pe_cols=8)))
    table = DEFAULT_65NM.model_dump(mode="json")
    configs["technology.json"].write_text(json.dumps(table, indent=1))
    configs["technology.yaml"].write_text(yaml.safe_dump(table))
    train = {"app": "breast-cancer", "method": "axtrain", "seed": 3, "epochs": 2, "multiplier": "drum:2", "sram_voltage": 0.8, "batch_size": 16}
    configs["train.yaml"].write_text(yaml.safe_dump(train))
    configs["train.json"].write_text(json.dumps(train))
    return Seeds(root, models, bundles, configs)
