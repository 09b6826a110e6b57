"""The simulate stage: an application's test split through a bundle, as a report dict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def simulate_app(bundle_path: Path, app: str, split_seed: int, runs: int, seed: int) -> dict[str, Any]:
    """Simulate ``app``'s test split (split ``split_seed``) on the bundle with its own annotations."""
    from axtrain.datasets import load
    from axtrain.formats.bundle import load_bundle
    from axtrain.hwmodels.technology import DEFAULT_65NM
    from axtrain.runtime.report import build_report
    from axtrain.runtime.simulation import array_sha256, simulate

    bundle = load_bundle(bundle_path)
    data = load(app, seed=split_seed)
    result = simulate(bundle, data.x_test, data.y_test, None, None, runs, seed, DEFAULT_65NM)
    source = {
        "source": f"app:{app} test split",
        "app": app,
        "split_seed": split_seed,
        "count": int(result.outputs.shape[0]),
        "sha256": array_sha256(np.asarray(data.x_test, dtype=np.float32)),
        "labelled": True,
    }
    return build_report(bundle, result, source, {"source": "default-65nm"})
