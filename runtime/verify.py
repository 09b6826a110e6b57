"""Verify a bundle: re-check its hashes and replay its golden vectors through the reference interpreter.

``check_bundle`` runs every check and records each outcome in a ``VerifyResult`` (nothing raised for a
mismatch, so a caller can list all of them); ``verify_bundle`` does the same and raises ``BundleError``
naming the first failed check, which is what the CLI, the pipeline and the tests want. Hashes and
versions are checked by ``load_bundle`` first: a bundle that fails them raises before any replay.
Formatting the result for people is the CLI's job (``VerifyResult.lines`` gives the standard lines).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from axtrain.errors import BundleError
from axtrain.formats.bundle import check_golden_twins, load_bundle
from axtrain.hwmodels.fixedpoint import dequantize
from axtrain.runtime.interpreter import run_bundle


class _Outcome:
    """A check's outcome: ``detail`` says why it failed, empty when it passed."""

    detail: str

    @property
    def ok(self) -> bool:
        """Whether the check passed."""
        return not self.detail


@dataclass(frozen=True)
class LayerCheck(_Outcome):
    """One layer's replay: the interpreter's integer output against ``golden/layer_<i>.npy``."""

    index: int
    name: str
    op: str
    inputs: int  # golden vectors replayed (rows)
    values: int  # values per input row
    mismatches: int  # values that differ (0 when ok; -1 when the shapes already differ)
    detail: str  # why it failed ("" when ok)

    def line(self) -> str:
        """The standard one-line report of this check."""
        if self.ok:
            return f"layer {self.index:>2} {self.name:<16} {self.op:<8} OK  ({self.inputs} inputs x {self.values} values, bit-exact)"
        return f"layer {self.index} ({self.name}): {self.detail}"


@dataclass(frozen=True)
class OutputCheck(_Outcome):
    """The dequantised last-layer output against ``golden/outputs.npy``."""

    inputs: int
    values: int
    detail: str  # "" when ok

    def line(self) -> str:
        """The standard one-line report of this check."""
        if self.ok:
            return f"output            OK  ({self.inputs} x {self.values} float32 values equal golden/outputs.npy)"
        return self.detail


@dataclass(frozen=True)
class VerifyResult:
    """Every check of one bundle: hashes (passed, else ``load_bundle`` raised), each layer, the output."""

    bundle: Path
    layers: tuple[LayerCheck, ...]
    output: OutputCheck

    @property
    def ok(self) -> bool:
        """Whether every check passed."""
        return self.output.ok and all(layer.ok for layer in self.layers)

    def failures(self) -> list[str]:
        """One line per failed check, in bundle order (empty when ``ok``)."""
        lines = [layer.line() for layer in self.layers if not layer.ok]
        if not self.output.ok:
            lines.append(self.output.line())
        return lines

    def lines(self) -> list[str]:
        """One line per layer, then the output line (the text ``axtrain verify`` prints)."""
        return [layer.line() for layer in self.layers] + [self.output.line()]


def check_bundle(path: Path) -> VerifyResult:
    """Run every check on the bundle at ``path`` and record the outcomes.

    Raises ``BundleError`` only when the bundle cannot be loaded (versions, hashes, files); golden
    mismatches are recorded in the result.
    """
    bundle = load_bundle(path)  # versions and every sha256 first
    inputs = bundle.golden_inputs()
    outputs = run_bundle(bundle, inputs)
    checks: list[LayerCheck] = []
    for layer, produced in zip(bundle.layers, outputs, strict=True):
        golden = bundle.golden_layer(layer.index)
        rows, values = int(produced.shape[0]), int(produced[0].size) if produced.shape[0] else 0
        if golden.shape != produced.shape:
            detail = f"golden shape {golden.shape} != interpreter shape {produced.shape}"
            checks.append(LayerCheck(layer.index, layer.name, layer.op, rows, values, -1, detail))
            continue
        wrong = np.argwhere(golden != produced)
        detail = ""
        if wrong.size:
            where = tuple(int(i) for i in wrong[0])
            detail = (
                f"{len(wrong)} values differ from the golden vectors; "
                f"first at {where}: interpreter {int(produced[where])}, golden {int(golden[where])}"
            )
        checks.append(LayerCheck(layer.index, layer.name, layer.op, rows, values, len(wrong), detail))
    final = dequantize(outputs[-1], bundle.manifest.output.fixed_point)
    out_detail = "" if np.array_equal(final, bundle.golden_outputs()) else "golden/outputs.npy differs from the dequantised output of the last layer"
    output = OutputCheck(int(final.shape[0]), int(final[0].size) if final.shape[0] else 0, out_detail)
    result = VerifyResult(Path(path), tuple(checks), output)
    if result.ok:
        check_golden_twins(bundle)  # format 1.1: the hex and quantised goldens say what the .npy ones say
    return result


def verify_bundle(path: Path) -> VerifyResult:
    """``check_bundle``, raising ``BundleError`` with the first failed check's line if any failed."""
    result = check_bundle(path)
    failures = result.failures()
    if failures:
        raise BundleError(failures[0])
    return result
