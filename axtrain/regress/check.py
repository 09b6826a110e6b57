"""``axtrain check BUNDLE --expect EXPECT.yaml``: pin simulation figures with tolerances for CI.

The expect file maps dotted paths into the simulation report (docs/report-schema.md) to a pinned
value and one tolerance::

    latency.cycles_per_inference: {value: 2320, rel_tol: 0.02}
    accuracy.mean: {value: 0.95, abs_tol: 0.005}
    energy.joules_per_inference: {value: 1.9e-7, rel_tol: 0.05}

A figure drifts when ``|actual - value| > abs_tol`` or ``> rel_tol * |value|``. Strings and booleans
(e.g. ``app: {value: breast-cancer}``) must be equal, no tolerance. ``check`` prints one line per
pin (``ok`` or ``DRIFT``) and exits 1 when any drifted; a bad expect file is exit 2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from axtrain.errors import ConfigError
from axtrain.formats.yamltext import read_mapping


@dataclass(frozen=True)
class Pin:
    """One expectation: a dotted report path, its value and tolerance."""

    path: str
    value: Any
    rel_tol: float | None = None
    abs_tol: float | None = None

    def tolerance_text(self) -> str:
        if self.rel_tol is not None:
            return f"rel_tol {self.rel_tol:g}"
        if self.abs_tol is not None:
            return f"abs_tol {self.abs_tol:g}"
        return "exact"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def parse_expect(data: Mapping[str, Any], source: str) -> list[Pin]:
    """Validate an expect mapping into pins (one ConfigError line naming the file and key)."""
    if not data:
        raise ConfigError(f"{source}: pins nothing (expected `dotted.path: {{value: V, rel_tol: T}}` entries)")
    pins = []
    for path, spec in data.items():
        where = f"{source}: {path}"
        if not isinstance(path, str) or not path or any(not part for part in path.split(".")):
            raise ConfigError(f"{source}: key {path!r} is not a dotted path")
        if not isinstance(spec, dict) or "value" not in spec:
            raise ConfigError(f"{where}: expected a mapping with 'value' and one of 'rel_tol' / 'abs_tol'")
        unknown = sorted(set(spec) - {"value", "rel_tol", "abs_tol"})
        if unknown:
            raise ConfigError(f"{where}: unknown key {unknown[0]!r} (allowed: value, rel_tol, abs_tol)")
        if "rel_tol" in spec and "abs_tol" in spec:
            raise ConfigError(f"{where}: give one of rel_tol or abs_tol, not both")
        value = spec["value"]
        tolerance = {k: spec[k] for k in ("rel_tol", "abs_tol") if k in spec}
        for name, tol in tolerance.items():
            if not _is_number(tol) or not math.isfinite(tol) or tol < 0:
                raise ConfigError(f"{where}: {name} must be a non-negative number, got {tol!r}")
            if not _is_number(value):
                raise ConfigError(f"{where}: {name} needs a numeric value, got {value!r}")
        if _is_number(value) and not math.isfinite(value):
            raise ConfigError(f"{where}: value must be finite, got {value!r}")
        if not (_is_number(value) or isinstance(value, (str, bool)) or value is None):
            raise ConfigError(f"{where}: value must be a number, string, boolean or null, got {type(value).__name__}")
        pins.append(Pin(path, value, **{k: float(v) for k, v in tolerance.items()}))
    return pins


def load_expect(path: Path) -> list[Pin]:
    """Read an expect file (YAML or JSON)."""
    return parse_expect(read_mapping(path, "expect file"), str(path))


def lookup(report: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path of the report (list entries by index); ConfigError if absent."""
    node: Any = report
    walked = []
    for part in path.split("."):
        walked.append(part)
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise ConfigError(f"expect key {path}: the simulation report has no {'.'.join(walked)}")
    return node


@dataclass(frozen=True)
class Outcome:
    """One pin's result."""

    pin: Pin
    actual: Any
    ok: bool

    def line(self) -> str:
        p = self.pin
        if self.ok:
            return f"ok     {p.path} = {self.actual!r}  (expected {p.value!r}, {p.tolerance_text()})"
        if _is_number(self.actual) and _is_number(p.value):
            delta = self.actual - p.value
            rel = f", {100 * delta / abs(p.value):+.2f} %" if p.value else ""
            return f"DRIFT  {p.path}: {self.actual!r}, expected {p.value!r} ({p.tolerance_text()}): off by {delta:+.6g}{rel}"
        return f"DRIFT  {p.path}: {self.actual!r}, expected {p.value!r}"


def evaluate(report: Mapping[str, Any], pins: list[Pin]) -> list[Outcome]:
    """Compare every pin with the report."""
    out = []
    for pin in pins:
        actual = lookup(report, pin.path)
        if _is_number(pin.value):
            if not _is_number(actual):
                ok = False
            else:
                slack = pin.abs_tol if pin.abs_tol is not None else (pin.rel_tol or 0.0) * abs(pin.value)
                ok = abs(actual - pin.value) <= slack
        else:
            ok = actual == pin.value
        out.append(Outcome(pin, actual, ok))
    return out


def expect_from_report(report: Mapping[str, Any], paths: list[str], rel_tol: float) -> dict[str, Any]:
    """An expect mapping pinning ``paths`` of ``report`` at ``rel_tol`` (``--write-expect``)."""
    out: dict[str, Any] = {}
    for path in paths:
        value = lookup(report, path)
        out[path] = {"value": value, "rel_tol": rel_tol} if _is_number(value) else {"value": value}
    return out
