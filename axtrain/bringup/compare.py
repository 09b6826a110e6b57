"""``axtrain compare BUNDLE DUMP``: an RTL run's layer outputs against the bundle's goldens.

DUMP is a folder of per-layer files, or one such file: ``layer_<i>.hex`` (one neuron word per line,
``neuron_word_bits/4`` hex digits, two's complement, images back to back, each image's values in
NCHW order: the layout of ``golden/layer_<i>.hex``) or ``layer_<i>.npy`` (integers shaped like
``golden/layer_<i>.npy``, or flat). ``golden_layer_<i>.*`` (the names ``axtrain hdl`` copies) are
read too. A dump may hold fewer images than the bundle has goldens: the first ones are compared.

The first mismatch (lowest layer, then image, then word) is mapped back to the program: for a
compute layer, the REQ instruction that wrote the word, the tile it belongs to (its MAC
instructions) and the PE that computed it (docs/isa.md: PE ``e`` of a tile computes neuron ``e // p``
at position ``e % p``); for a pool layer, the POOL instruction.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from axtrain.errors import ConfigError
from axtrain.formats.bundle import Bundle, LayerRecord, read_hex, read_npy

_NAME = re.compile(r"^(?:golden_)?layer_(\d+)\.(hex|npy)$")


def dump_files(dump: Path) -> dict[int, Path]:
    """Layer index -> dump file."""
    if dump.is_file():
        match = _NAME.match(dump.name)
        if not match:
            raise ConfigError(f"{dump}: name it layer_<i>.hex or layer_<i>.npy (which layer is it?)")
        return {int(match.group(1)): dump}
    if not dump.is_dir():
        raise ConfigError(f"{dump} does not exist")
    files: dict[int, Path] = {}
    for path in sorted(dump.iterdir()):
        match = _NAME.match(path.name)
        if match:
            index = int(match.group(1))
            if index in files:
                raise ConfigError(f"{dump}: layer {index} is dumped twice ({files[index].name}, {path.name})")
            files[index] = path
    if not files:
        raise ConfigError(f"{dump}: holds no layer_<i>.hex or layer_<i>.npy file")
    return files


@dataclass(frozen=True)
class Mismatch:
    """The first differing word and where it came from."""

    layer: LayerRecord
    image: int
    word: int
    dumped: int
    golden: int
    instruction: int | None  # the instruction that wrote the word
    op: str | None
    tile: int | None  # ordinal of the tile within the layer
    macs: tuple[int, int] | None  # [first, last] MAC instruction of the tile
    pe: int | None

    def line(self, pe_cols: int) -> str:
        layer = self.layer
        shape = layer.output_shape
        where = f"word {self.word}"
        if len(shape) == 3:
            c, h, w = shape
            ch, rem = divmod(self.word, h * w)
            where += f" (channel {ch}, y {rem // w}, x {rem % w})"
        else:
            where += f" (neuron {self.word})"
        text = f"first mismatch: layer {layer.index} ({layer.name}, {layer.op}) image {self.image} {where}: dump {self.dumped}, golden {self.golden}"
        if self.instruction is None:
            return text + "; no instruction writes it (a flatten layer: see the layer before)"
        text += f"; written by instruction {self.instruction} ({self.op})"
        if self.tile is not None:
            assert self.macs is not None and self.pe is not None
            text += f", tile {self.tile} of the layer (MAC {self.macs[0]}..{self.macs[1]}), PE {self.pe} (row {self.pe // pe_cols}, column {self.pe % pe_cols})"
        return text


def locate(bundle: Bundle, layer: LayerRecord, word: int) -> tuple[int | None, str | None, int | None, tuple[int, int] | None, int | None]:
    """(instruction, op, tile, MAC range, PE) that produced word ``word`` of ``layer``'s output."""
    first, end = layer.program
    address = layer.nb_output + word
    tile, macs = -1, []
    for index in range(first, end):
        ins = bundle.program[index]
        o = ins.operands()
        if ins.op == "MAC":
            macs.append(index)
        elif ins.op == "REQ":
            tile += 1
            offset = address - o["nb"]
            r, c = divmod(offset, o["ostride"]) if o["ostride"] else (0, offset)
            if offset >= 0 and 0 <= r < o["m"] and 0 <= c < o["p"]:
                return index, "REQ", tile, (macs[0], macs[-1]) if macs else (index, index), r * o["p"] + c
            macs = []
        elif ins.op in ("POOL", "AVGPOOL", "ADD"):
            return index, ins.op, None, None, None
    return None, None, None, None, None


def compare_dump(bundle: Bundle, dump: Path) -> tuple[list[str], Mismatch | None]:
    """Per-layer lines and the first mismatch (None when every dumped layer matches)."""
    bits = bundle.arch.neuron_word_bits
    lines = []
    files = dump_files(dump)
    for index in sorted(files):
        if index >= len(bundle.layers):
            raise ConfigError(f"{files[index]}: the bundle has layers 0..{len(bundle.layers) - 1}")
    for layer in bundle.layers:
        if layer.index not in files:
            lines.append(f"layer {layer.index:>2} {layer.name:<16} not in the dump")
            continue
        path = files[layer.index]
        golden = bundle.golden_layer(layer.index).reshape(bundle.golden_layer(layer.index).shape[0], -1)
        count = math.prod(layer.output_shape)
        raw = read_hex(path, bits) if path.suffix == ".hex" else read_npy(path).astype(np.int64).reshape(-1)
        if raw.size == 0 or raw.size % count or raw.size // count > golden.shape[0]:
            raise ConfigError(f"{path}: {raw.size} words is not a whole number of layer {layer.index}'s {count}-word outputs (at most {golden.shape[0]} images)")
        got = raw.reshape(-1, count)
        want = golden[: got.shape[0]]
        wrong = np.argwhere(got != want)
        if wrong.size:
            image, word = (int(v) for v in wrong[0])
            instruction, op, tile, macs, pe = locate(bundle, layer, word)
            mismatch = Mismatch(layer, image, word, int(got[image, word]), int(want[image, word]), instruction, op, tile, macs, pe)
            lines.append(f"layer {layer.index:>2} {layer.name:<16} {len(wrong)} of {got.size} words differ")
            return lines, mismatch
        lines.append(f"layer {layer.index:>2} {layer.name:<16} OK  ({got.shape[0]} images x {count} words)")
    return lines, None
