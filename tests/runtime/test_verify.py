"""runtime.verify: every check's outcome recorded (check_bundle), the first failure raised (verify_bundle)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from axtrain.errors import BundleError
from axtrain.formats import bundle as fmt
from axtrain.runtime.verify import check_bundle, verify_bundle

from .conftest import compile_layers, network


@pytest.fixture
def mlp_bundle(tmp_path: Path) -> Path:
    layers, shape = network("mlp")
    return compile_layers(layers, shape, tmp_path / "b")


def _corrupt_golden(bundle: Path, index: int, cells: list[tuple[int, int]]) -> None:
    """Change golden/layer_<index>.npy at ``cells`` and re-hash it, so only the replay can notice."""
    name = f"golden/layer_{index}.npy"
    golden = np.load(bundle / name, allow_pickle=False)
    for cell in cells:
        golden[cell] += 1
    np.save(bundle / name, golden, allow_pickle=False)
    manifest = json.loads((bundle / fmt.MANIFEST).read_text())
    manifest["files"][name] = fmt.sha256_file(bundle / name)
    (bundle / fmt.MANIFEST).write_text(json.dumps(manifest))


def test_clean_bundle_passes_every_check(mlp_bundle: Path) -> None:
    result = verify_bundle(mlp_bundle)
    assert result.ok and result.failures() == []
    assert [(c.index, c.name, c.op, c.values, c.mismatches) for c in result.layers] == [(0, "d0", "dense", 11, 0), (1, "d1", "dense", 5, 0)]
    assert result.layers[0].inputs == result.output.inputs > 0 and result.output.values == 5
    lines = result.lines()
    assert len(lines) == 3 and lines[0].startswith("layer  0 d0") and lines[-1].startswith("output            OK")


def test_every_mismatch_is_recorded_and_the_first_raised(mlp_bundle: Path) -> None:
    first0 = int(np.load(mlp_bundle / "golden/layer_0.npy")[0, 0])  # the value the interpreter reproduces
    first1 = int(np.load(mlp_bundle / "golden/layer_1.npy")[0, 2])
    _corrupt_golden(mlp_bundle, 0, [(0, 0), (1, 3)])
    _corrupt_golden(mlp_bundle, 1, [(0, 2)])
    result = check_bundle(mlp_bundle)  # records, does not raise
    assert not result.ok and result.output.ok  # outputs.npy untouched
    assert [c.mismatches for c in result.layers] == [2, 1]
    assert result.failures() == [
        f"layer 0 (d0): 2 values differ from the golden vectors; first at (0, 0): interpreter {first0}, golden {first0 + 1}",
        f"layer 1 (d1): 1 values differ from the golden vectors; first at (0, 2): interpreter {first1}, golden {first1 + 1}",
    ]
    with pytest.raises(BundleError, match=r"^layer 0 \(d0\): 2 values differ"):
        verify_bundle(mlp_bundle)
