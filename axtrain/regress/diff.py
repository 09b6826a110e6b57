"""``axtrain diff A B``: what differs between two bundles, semantically.

Compared: the disassembly (instruction by instruction), every compute layer's weights and biases
(word by word, named by layer, row and column), the layer table (modes, voltages, formats, shapes,
addresses, tiling), the architecture, and the manifest less what does not change the artifact:
file names (``source_onnx_name``), the file hash list, toolchain versions, and the format version
(a format 1 bundle and its 1.1 recompile differ only in the testbench twins, which derive from the
compared files). Golden vectors are compared too (they are what ``verify`` replays).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from axtrain.formats import bundle as fmt
from axtrain.formats.bundle import Bundle, bundle_content_sha256

# Manifest keys that say where an artifact came from or how it is packaged, not what it is.
IGNORED_MANIFEST_KEYS = ("files", "source_onnx_name", "toolchain", "format_version", "content_sha256", "golden_coverage")
MAX_LINES = 20  # per section


@dataclass(frozen=True)
class Difference:
    """One difference: where (section) and what."""

    section: str  # program | weights | bias | layers | arch | manifest | golden
    text: str

    def line(self) -> str:
        return f"{self.section}: {self.text}"


def _program(a: Bundle, b: Bundle) -> list[Difference]:
    out = []
    for index in range(max(len(a.program), len(b.program))):
        ia = str(a.program[index]) if index < len(a.program) else "(none)"
        ib = str(b.program[index]) if index < len(b.program) else "(none)"
        if ia != ib:
            out.append(Difference("program", f"instruction {index}: {ia}  ->  {ib}"))
    if len(a.program) != len(b.program):
        out.insert(0, Difference("program", f"{len(a.program)} instructions -> {len(b.program)}"))
    return out


def _image(a: Bundle, b: Bundle, which: str) -> list[Difference]:
    """Weight or bias words, named by the layer that owns them."""
    wa, wb = (a.weights, b.weights) if which == "weights" else (a.bias, b.bias)
    out = []
    if wa.size != wb.size:
        out.append(Difference(which, f"image of {wa.size} words -> {wb.size} words"))
    for layer in a.layers:
        region = getattr(layer, which)
        if region is None or layer.index >= len(b.layers):
            continue
        other = getattr(b.layers[layer.index], which)
        if other is None or (other.dram, other.count) != (region.dram, region.count):
            continue  # a different layout: reported by the layer-table comparison
        sa = wa[region.dram : region.dram + region.count]
        sb = wb[region.dram : region.dram + region.count]
        if sa.shape != sb.shape:
            continue
        for offset in np.flatnonzero(sa != sb)[:MAX_LINES]:
            word = region.dram + int(offset)
            where = f"row {offset // region.shape[1]}, col {offset % region.shape[1]}" if len(region.shape) == 2 else f"entry {offset}"
            out.append(Difference(which, f"layer {layer.index} ({layer.name}) {which[:-1] if which == 'weights' else 'bias'} word {int(offset)} ({where}; image word {word}): {int(sa[offset])} -> {int(sb[offset])}"))
        count = int(np.count_nonzero(sa != sb))
        if count > MAX_LINES:
            out.append(Difference(which, f"layer {layer.index} ({layer.name}): {count} words differ in all"))
    return out


def _records(section: str, a: Any, b: Any, prefix: str = "") -> list[Difference]:
    """Leaf-by-leaf differences of two JSON-like values."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            out += _records(section, a.get(key, "(absent)"), b.get(key, "(absent)"), f"{prefix}.{key}" if prefix else str(key))
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b) and any(isinstance(v, (dict, list)) for v in a + b):
        out = []
        for i, (va, vb) in enumerate(zip(a, b, strict=True)):
            out += _records(section, va, vb, f"{prefix}[{i}]")
        return out
    if a != b:
        return [Difference(section, f"{prefix}: {_short(a)} -> {_short(b)}")]
    return []


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _golden(a: Bundle, b: Bundle) -> list[Difference]:
    out = []
    names = [fmt.GOLDEN_INPUTS, fmt.GOLDEN_OUTPUTS] + [fmt.golden_layer_file(layer.index) for layer in a.layers]
    for name in names:
        fa, fb = a.path / name, b.path / name
        if not fb.is_file():
            out.append(Difference("golden", f"{name} only in A"))
        elif fmt.sha256_file(fa) != fmt.sha256_file(fb):
            out.append(Difference("golden", f"{name} differs"))
    return out


def diff_bundles(a: Bundle, b: Bundle) -> list[Difference]:
    """Every semantic difference between ``a`` and ``b`` (empty: equivalent)."""
    out = _program(a, b)
    out += _image(a, b, "weights")
    out += _image(a, b, "bias")
    la = [layer.model_dump(mode="json") for layer in a.layers]
    lb = [layer.model_dump(mode="json") for layer in b.layers]
    if len(la) != len(lb):
        out.append(Difference("layers", f"{len(la)} layers -> {len(lb)}"))
    else:
        out += _records("layers", {f"layer {i}": r for i, r in enumerate(la)}, {f"layer {i}": r for i, r in enumerate(lb)})
    out += _records("arch", a.arch.to_json(), b.arch.to_json())
    ma = {k: v for k, v in a.manifest.model_dump(mode="json").items() if k not in IGNORED_MANIFEST_KEYS}
    mb = {k: v for k, v in b.manifest.model_dump(mode="json").items() if k not in IGNORED_MANIFEST_KEYS}
    out += _records("manifest", ma, mb)
    out += _golden(a, b)
    return out


def summary(a: Bundle, b: Bundle, differences: list[Difference]) -> list[str]:
    """The lines ``axtrain diff`` prints."""
    ha, hb = bundle_content_sha256(a), bundle_content_sha256(b)
    if not differences:
        return [f"equivalent: {a.path} and {b.path} (content sha256 {ha[:16]}...)"]
    lines = [d.line() for d in differences]
    same = "the same" if ha == hb else "different"
    lines.append(f"{len(differences)} differences; content sha256 {same} ({ha[:16]}... vs {hb[:16]}...)")
    return lines
