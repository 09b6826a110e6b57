"""The simulate stage: an application's test split through a bundle, as a report dict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from axtrain.datasets import load
from axtrain.formats.bundle import load_bundle
from axtrain.runtime.report import simulate_to_report


def simulate_app(bundle_path: Path, app: str, split_seed: int, runs: int, seed: int) -> dict[str, Any]:
    """Simulate ``app``'s test split (split ``split_seed``) on the bundle with its own annotations."""

    data = load(app, seed=split_seed)
    source = {"source": f"app:{app} test split", "app": app, "split_seed": split_seed}
    _, report = simulate_to_report(load_bundle(bundle_path), data.x_test, data.y_test, source, runs=runs, seed=seed)
    return report
