"""The FlexFlow bundle (format version 2.0; 1 and 1.1 refused by name): what ``axtrain compile`` writes and the runtime reads.

A bundle is one directory (docs/bundle.md):

    manifest.json     format/ISA/toolchain versions, source ONNX sha256, app metadata,
                      input/output placement, per-layer modes and voltage, sha256 of every file
    arch.json         the Architecture it was compiled for
    program.bin       ISA words (16 bytes each, little-endian); program.asm its listing;
                      program.hex the words for $readmemh (1.1)
    weights.bin/.hex  weight image (weight_word_bits two's complement, little-endian / $readmemh)
    bias.bin/.hex     bias image (int32)
    requant.bin/.hex  requant image DRAM.Q (2.0): 3 int32 words per entry (multiplier, shift, zero point)
    layers.json       the layer table: formats, shapes, image and buffer addresses, modes, tiling
    golden/inputs.npy float32 inputs; golden/layer_<i>.npy the bit-exact integer output of layer i;
                      golden/outputs.npy the float32 network output (the ONNX model's values);
                      1.1: golden/inputs_int.npy + inputs.hex (quantised), golden/layer_<i>.hex

:func:`load_bundle` checks the format and ISA versions, then every hash, before it parses anything
else; :func:`write_bundle` writes the directory atomically with deterministic bytes.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import math
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field as dataclass_field
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, ValidationError, model_serializer

from axtrain import atomic
from axtrain.errors import BundleError, ConfigError
from axtrain.formats.arch import Architecture, arch_from_dict
from axtrain.formats.isa import (
    ACC_OUT_WORD_BITS,
    BIAS_WORD_BITS,
    ISA_VERSION,
    REQUANT_ENTRY_WORDS,
    WORD_BITS,
    WORD_BYTES,
    Instruction,
    check_program,
    decode_program,
    parse_assembly,
)
from axtrain.formats.target import FormatText, ModeText, Volts, modes_of
from axtrain.hwmodels.fixedpoint import FixedPointFormat, check_requant_entry, quantize
from axtrain.hwmodels.multipliers import MultiplierMode
from axtrain.limits import element_count

FORMAT_NAME = "axtrain-flexflow-bundle"
FORMAT_VERSION = "2.0"
# Versions this reader opens. 2.0 (ISA 2) changed instruction layouts, so a 1 / 1.1 bundle (ISA 1)
# cannot run here: it is refused by name (OLD_VERSIONS) with the advice to recompile its ONNX.
READABLE_VERSIONS = ("2.0",)
OLD_VERSIONS = {"1": "1", "1.1": "1"}  # format version -> the ISA version it carried

MANIFEST = "manifest.json"
ARCH = "arch.json"
PROGRAM_BIN = "program.bin"
PROGRAM_ASM = "program.asm"
WEIGHTS_BIN = "weights.bin"
WEIGHTS_HEX = "weights.hex"
BIAS_BIN = "bias.bin"
BIAS_HEX = "bias.hex"
LAYERS = "layers.json"
GOLDEN_INPUTS = "golden/inputs.npy"
GOLDEN_OUTPUTS = "golden/outputs.npy"
PROGRAM_HEX = "program.hex"
GOLDEN_INPUTS_INT = "golden/inputs_int.npy"
GOLDEN_INPUTS_HEX = "golden/inputs.hex"
REQUANT_BIN = "requant.bin"
REQUANT_HEX = "requant.hex"
REQUIRED_FILES_V1 = (ARCH, PROGRAM_BIN, PROGRAM_ASM, WEIGHTS_BIN, WEIGHTS_HEX, BIAS_BIN, BIAS_HEX, LAYERS, GOLDEN_INPUTS, GOLDEN_OUTPUTS)
REQUIRED_FILES = REQUIRED_FILES_V1 + (PROGRAM_HEX, GOLDEN_INPUTS_INT, GOLDEN_INPUTS_HEX, REQUANT_BIN, REQUANT_HEX)


def golden_layer_file(index: int) -> str:
    """Name of the golden output file of layer ``index``."""
    return f"golden/layer_{index}.npy"


def golden_layer_hex(index: int) -> str:
    """Name of the ``$readmemh`` twin of layer ``index``'s golden output (format 1.1)."""
    return f"golden/layer_{index}.hex"


def required_files(format_version: str) -> tuple[str, ...]:
    """The files a bundle of ``format_version`` must list (per-layer goldens come on top)."""
    return REQUIRED_FILES


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class Placement(_Model):
    """A network input or output: per-sample shape, fixed-point format, DRAM activation address (words)."""

    shape: list[int]
    format: FormatText
    dram: int

    @property
    def fixed_point(self) -> FixedPointFormat:
        """``format`` as a typed format."""
        return FixedPointFormat.parse(self.format)


class ImageRange(_Model):
    """A layer's slice of a memory image: first word and word count; ``shape`` of the matrix."""

    dram: int
    count: int
    shape: list[int]


class Tiling(_Model):
    """How a compute layer maps onto the PE array."""

    m_tile: int  # output neurons per tile
    p_tile: int  # positions per tile
    k_chunk: int  # inputs per local-memory chunk
    tiles: int  # m-blocks x position tiles
    chunks: int  # chunks per tile
    weights_resident: Literal["layer", "block", "chunk"]  # what one LDW loads


class LayerFormats(NamedTuple):
    """A layer's fixed-point formats, typed (``weight`` and ``bias`` None without weights)."""

    input: FixedPointFormat
    output: FixedPointFormat
    weight: FixedPointFormat | None
    bias: FixedPointFormat | None


class LayerRecord(_Model):
    """One row of ``layers.json``: everything the runtime needs about a layer."""

    index: int
    name: str
    op: Literal["dense", "conv", "maxpool", "flatten", "add", "avgpool"]
    input_shape: list[int]  # per sample
    output_shape: list[int]
    input_format: FormatText
    output_format: FormatText
    weight_format: FormatText | None = None
    bias_format: FormatText | None = None
    relu: bool = False
    multipliers: list[ModeText]  # one per output neuron (compute layers) or [] (no weights); canonical text
    sram_voltage: Volts
    stride: int = 1
    padding: int = 0
    kernel: list[int]  # conv [kh, kw], maxpool / avgpool [kh, kw], else []
    strides: list[int] = []  # [sh, sw] where they differ from stride, else []
    pads: list[int] = []  # [top, left, bottom, right] where they differ from padding, else []
    groups: int = 1  # conv channel groups
    sources: list[int] = []  # the layers it reads (-1: the network input); [] = the previous layer
    other_format: FormatText | None = None  # add: its second input's format
    count_include_pad: bool = False  # avgpool: divides by the whole window (AVGPOOL cip=1); written only when true
    weights: ImageRange | None = None  # in the weight image (bits of each word: weight_format)
    bias: ImageRange | None = None  # in the bias image
    nb_input: int  # neuron buffer word address of the input map
    nb_output: int  # neuron buffer word address of the output map
    tiling: Tiling | None = None
    macs: int  # multiply-accumulates per sample
    program: list[int] = Field(min_length=2, max_length=2)  # [first, end) instruction indices of the layer

    @model_serializer(mode="wrap")
    def _omit_false_count_include_pad(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Written only when true: every layer table without such a pool stays byte for byte what it was.
        data: dict[str, Any] = handler(self)
        if not data.get("count_include_pad"):
            data.pop("count_include_pad", None)
        return data

    # The file keeps text; these typed views are what code below the file reader uses.
    @property
    def modes(self) -> tuple[MultiplierMode, ...]:
        """``multipliers`` as typed modes (one per output neuron; empty without weights)."""
        return modes_of(self.multipliers)

    @property
    def formats(self) -> LayerFormats:
        """The layer's formats, typed."""
        def typed(text: str | None) -> FixedPointFormat | None:
            return None if text is None else FixedPointFormat.parse(text)

        return LayerFormats(FixedPointFormat.parse(self.input_format), FixedPointFormat.parse(self.output_format), typed(self.weight_format), typed(self.bias_format))


class LayerSummary(_Model):
    """Per-layer modes and voltage, repeated in the manifest for a quick look."""

    name: str
    op: str
    multiplier: str  # one mode, or "mixed:<n> modes"
    sram_voltage: Volts


class LayerCoverage(_Model):
    """Golden coverage of one compute layer's weight words."""

    layer: int
    name: str
    weight_words: int
    exercised: int
    first_unexercised: list[int] | None  # [row, col] of the layer's [out, fan_in] matrix


class GoldenCoverage(_Model):
    """What the golden vectors exercise (format 1.1; compiler/goldens.py defines the criterion)."""

    criterion: str
    weight_words: int
    weight_words_exercised: int
    legacy_weight_words_exercised: int  # what format 1's eight uniform draws exercised
    instructions: int  # instructions that carry data (MODE, CONV, END excluded)
    instructions_exercised: int
    unexercised_instructions: list[int]  # the first of them (at most 16)
    candidates: int
    layers: list[LayerCoverage]


class HostTailOp(_Model):
    """A float op the host applies, in order, to the dequantised outputs (docs/bundle.md "Host tail")."""

    op: Literal["Sigmoid", "Softmax", "LogSoftmax", "ArgMax"]  # compiler/host_tail.py TAIL_OPS
    node: str  # the ONNX node it came from


class Float32Bound(_Model):
    """Whether onnxruntime's float32 evaluation of the source graph is exact (every layer's
    accumulation bound below ``limit``), and each weighted layer's bound."""

    limit: int
    exact: bool
    layers: dict[str, int]


class Manifest(_Model):
    """``manifest.json``."""

    format: Literal["axtrain-flexflow-bundle"]
    format_version: str
    isa_version: str
    toolchain: dict[str, str]
    source_onnx_sha256: str
    source_onnx_name: str
    onnx_schema: str | None
    app: str
    method: str | None
    seed: str | None
    input: Placement
    output: Placement
    host_tail: list[HostTailOp] = Field(default_factory=list)  # absent in bundles without one
    activation_words: int
    weight_words: int
    weight_word_bits: int
    bias_words: int
    bias_word_bits: int
    requant_entries: int = Field(ge=0)  # 2.0: entries of DRAM.Q (requant.bin holds 3 int32 words each)
    instructions: int
    golden_count: int
    layers: list[LayerSummary]
    files: dict[str, str]
    golden_coverage: GoldenCoverage | None = None  # format 1.1
    content_sha256: str | None = None  # format 1.1: the bundle's identity (content_sha256())
    # The float32 accumulation bound per weighted layer (docs/numerics.md); absent in older bundles.
    float32_bound: Float32Bound | None = None


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# Encoding helpers (memory images, hex, npy, JSON)
# ---------------------------------------------------------------------------------------------


def image_dtype(word_bits: int) -> np.dtype:
    """Little-endian signed dtype of a memory image with ``word_bits``-bit words."""
    return np.dtype({8: "<i1", 16: "<i2", 32: "<i4"}[word_bits])


def image_bytes(words: np.ndarray, word_bits: int) -> bytes:
    """Signed words -> little-endian two's complement bytes (range checked)."""
    words = np.asarray(words, dtype=np.int64)
    lo, hi = -(1 << (word_bits - 1)), (1 << (word_bits - 1)) - 1
    if words.size and (words.min() < lo or words.max() > hi):
        raise BundleError(f"memory image value outside {word_bits}-bit words")
    return words.astype(image_dtype(word_bits)).tobytes()


_HEX_DIGITS = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_HEX_PAIRS = np.stack([np.repeat(_HEX_DIGITS, 16), np.tile(_HEX_DIGITS, 16)], axis=1)  # byte -> 2 digits
_TABLE_MAX_BITS = 16  # words up to this wide are rendered by a table of every line (at most 64 Ki lines)


@functools.lru_cache(maxsize=None)
def _hex_lines(word_bits: int) -> tuple[np.dtype, np.ndarray]:
    """The record dtype of one ``$readmemh`` line of ``word_bits``-bit words and the table of every
    line, indexed by the word's unsigned value. numpy gathers 2- and 4-byte items fast, so a line of
    2 or 4 bytes is one integer and a line of 3 or 5 bytes is a digits field followed by the newline."""
    digits = word_bits // 4
    value = np.arange(1 << word_bits)
    text = np.empty((value.size, digits + 1), dtype=np.uint8)
    for i in range(digits):
        text[:, i] = _HEX_DIGITS[(value >> (4 * (digits - 1 - i))) & 15]
    text[:, digits] = ord("\n")
    if digits + 1 in (2, 4):  # the whole line is one integer
        return np.dtype(f"<u{digits + 1}"), np.ascontiguousarray(text).view(f"<u{digits + 1}").reshape(-1)
    field = np.dtype(f"<u{digits}")
    record = np.dtype({"names": ["digits", "newline"], "formats": [field, np.uint8], "offsets": [0, digits], "itemsize": digits + 1})
    return record, np.ascontiguousarray(text[:, :digits]).view(field).reshape(-1)


def _unsigned_low_bits(words: np.ndarray, word_bits: int) -> np.ndarray:
    """The low ``word_bits`` (<= 16) bits of every word as an unsigned index (two's complement wraps)."""
    values = np.asarray(words).reshape(-1)
    if values.dtype.kind not in "iu":
        values = values.astype(np.int64)
    # Integer casts to unsigned wrap (two's complement low bits); numpy gathers fastest by uint8 index.
    unsigned = np.dtype(np.uint8 if word_bits <= 8 else np.uint16)
    narrow: np.ndarray = values.view(unsigned) if values.dtype.itemsize == unsigned.itemsize else values.astype(unsigned)
    if word_bits == 8 * narrow.dtype.itemsize:
        return narrow
    masked: np.ndarray = np.bitwise_and(narrow, np.asarray((1 << word_bits) - 1, dtype=unsigned))
    return masked


def _hex_records(words: np.ndarray, word_bits: int) -> np.ndarray:
    """``$readmemh`` lines of words up to 16 bits wide as an array of line records (see :func:`_hex_lines`)."""
    record, table = _hex_lines(word_bits)
    index = _unsigned_low_bits(words, word_bits)
    if record.names is None:
        whole: np.ndarray = table[index]
        return whole
    lines = np.empty(index.size, dtype=record)
    lines["digits"] = table[index]
    lines["newline"] = ord("\n")
    return lines


def image_hex_bytes(words: np.ndarray, word_bits: int) -> bytes:
    """``$readmemh`` text as ASCII bytes: one two's complement word per line, ``word_bits/4`` lower-case
    hex digits. Vectorised so that rendering costs time proportional to the image's bytes, not a
    Python call per word: words up to 16 bits wide by one lookup in a table of every line, wider
    words one byte at a time (each byte looked up as two digits); ``tests/formats/test_bundle_hex.py``
    checks both against a per-word ``format`` reference."""
    if word_bits <= 0 or word_bits % 4 or word_bits > 64:
        raise BundleError(f"cannot render {word_bits}-bit words as hex")
    if word_bits <= _TABLE_MAX_BITS:
        return _hex_records(words, word_bits).tobytes()
    return _hex_bytes_wide(words, word_bits)


_MATCH_CHUNK = 1 << 16  # lines compared per step: the expected lines of one step stay in cache


def image_hex_matches(data: bytes, words: np.ndarray, word_bits: int) -> bool:
    """Whether ``data`` is exactly :func:`image_hex_bytes` of ``words``.

    Table-rendered widths (up to 16 bits) are compared without building the text: ``data`` is read
    in place as an array of line records and each step of :data:`_MATCH_CHUNK` lines is compared
    with the table's lines for those words (one gather and one comparison per line, no 100 MB
    temporary for a 20 M-word image; 2.4x faster than rendering the whole text first)."""
    if word_bits <= 0 or word_bits % 4 or word_bits > 64:
        raise BundleError(f"cannot render {word_bits}-bit words as hex")
    count = int(np.asarray(words).size)
    if len(data) != count * (word_bits // 4 + 1):
        return False
    if word_bits > _TABLE_MAX_BITS:
        return data == _hex_bytes_wide(words, word_bits)
    record, table = _hex_lines(word_bits)
    index = _unsigned_low_bits(words, word_bits)
    lines = np.frombuffer(data, dtype=record)
    for start in range(0, count, _MATCH_CHUNK):
        expected = table[index[start : start + _MATCH_CHUNK]]
        got = lines[start : start + _MATCH_CHUNK]
        if record.names is None:
            if not np.array_equal(got, expected):
                return False
        elif not (np.array_equal(got["digits"], expected) and bool((got["newline"] == ord("\n")).all())):
            return False
    return True


def _hex_bytes_wide(words: np.ndarray, word_bits: int) -> bytes:
    """:func:`image_hex_bytes` for any width: each byte of the word looked up as two digits."""
    digits = word_bits // 4
    values = np.ascontiguousarray(np.asarray(words, dtype=np.int64).reshape(-1))
    # Little-endian int64 bytes are the two's complement of every narrower width: keep the low
    # ceil(word_bits / 8) bytes, most significant first, and look each byte up as two digits.
    nbytes = (word_bits + 7) // 8
    low_bytes = values.astype("<i8").view(np.uint8).reshape(-1, 8)[:, nbytes - 1 :: -1]
    pairs = _HEX_PAIRS[low_bytes].reshape(values.size, 2 * nbytes)
    text = np.empty((values.size, digits + 1), dtype=np.uint8)
    text[:, :digits] = pairs[:, 2 * nbytes - digits :]  # an odd width drops the top nibble
    text[:, digits] = ord("\n")
    return text.tobytes()


def image_hex(words: np.ndarray, word_bits: int) -> str:
    """``$readmemh`` text: one two's complement word per line, ``word_bits/4`` hex digits."""
    return image_hex_bytes(words, word_bits).decode("ascii")


def npy_bytes(array: np.ndarray) -> bytes:
    """An array as .npy bytes (deterministic, no pickle)."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def read_hex(path: Path, bits: int) -> np.ndarray:
    """Signed ``bits``-bit words of a ``$readmemh``-style file (the inverse of :func:`image_hex`; blank
    lines and ``//`` comments ignored). A line that is not a hex word of that width: BundleError."""
    values = []
    for number, line in enumerate(path.read_text(encoding="ascii", errors="replace").splitlines(), start=1):
        text = line.split("//", 1)[0].strip()
        if not text:
            continue
        if not re.fullmatch(r"[0-9a-fA-F]+", text) or len(text) > bits // 4:
            raise BundleError(f"{path}:{number}: {text[:20]!r} is not a {bits}-bit hex word")
        value = int(text, 16)
        values.append(value - (1 << bits) if value >> (bits - 1) else value)
    return np.array(values, dtype=np.int64)


def read_npy_bytes(data: bytes) -> np.ndarray:
    """An in-memory .npy (written by :func:`npy_bytes`), never unpickled."""
    return np.asarray(np.load(io.BytesIO(data), allow_pickle=False))


def json_bytes(obj: Any) -> bytes:
    """Deterministic JSON: sorted keys, 2-space indent, final newline."""
    return (json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n").encode("utf-8")


def program_hex(program_bytes: bytes) -> str:
    """``program.hex``: one 128-bit instruction word per line as 32 hex digits, most significant
    first (the little-endian word of ``program.bin`` read as one number), for ``$readmemh`` into
    ``logic [127:0]``: bit ``i`` of the line is bit ``i`` of the word (opcode in bits 7..0)."""
    digits = WORD_BITS // 4
    return "".join(
        f"{int.from_bytes(program_bytes[i : i + WORD_BYTES], 'little'):0{digits}x}\n" for i in range(0, len(program_bytes), WORD_BYTES)
    )


CONTENT_HASH_DOMAIN = b"axtrain-bundle-content/1\n"


def content_sha256(
    arch: Architecture, program_bytes: bytes, weights: np.ndarray, bias: np.ndarray, manifest: dict[str, Any], layers: list[dict[str, Any]],
    requant: np.ndarray | None = None,
) -> str:
    """The bundle's identity: sha256 of what the hardware sees, and nothing else (2.0: the requant
    image too).

    Covered: the ISA version, the architecture, the program, the weight and bias images (as words),
    the input/output placement and formats, the activation space, and per compute layer where its
    weights lie, how many bits of each word are stored and at which SRAM voltage (what NTV faults
    act on). Not covered: file names (the source ONNX's among them), toolchain versions, app and
    method labels, golden vectors (checked by ``verify``, not seen by the hardware), layer names.
    """
    header = {
        "isa_version": ISA_VERSION,
        "arch": arch.to_json(),
        "input": {k: manifest["input"][k] for k in ("shape", "format", "dram")},
        "output": {k: manifest["output"][k] for k in ("shape", "format", "dram")},
        "activation_words": int(manifest["activation_words"]),
        "weight_word_bits": arch.weight_word_bits,
        "bias_word_bits": BIAS_WORD_BITS,
        "storage": [
            {"weights": layer.get("weights"), "weight_format": layer.get("weight_format"), "sram_voltage": layer["sram_voltage"]}
            for layer in layers
        ],
    }
    digest = hashlib.sha256(CONTENT_HASH_DOMAIN)
    digest.update(json_bytes(header))
    for name, data in (
        ("program", memoryview(program_bytes)),
        ("weights", _int64_bytes(weights)),
        ("bias", _int64_bytes(bias)),
        ("requant", _int64_bytes(np.zeros(0) if requant is None else np.asarray(requant).reshape(-1))),
    ):
        digest.update(f"{name} {data.nbytes}\n".encode())
        digest.update(data)
    return digest.hexdigest()


def _int64_bytes(words: np.ndarray) -> memoryview:
    """The little-endian int64 bytes of ``words`` as a view (no copy when they are int64 already)."""
    return np.ascontiguousarray(words, dtype="<i8").data.cast("B")


def bundle_content_sha256(bundle: "Bundle") -> str:
    """:func:`content_sha256` of a loaded bundle (any format version).

    The hash :func:`load_bundle` verified is remembered on the bundle it returned (its images are
    read-only, its other fields immutable references), so a report does not hash 160 MB again; a
    bundle made from it with other contents (``dataclasses.replace``) is a new object and is hashed."""
    remembered = bundle.__dict__.get("_verified_content")
    if remembered is not None and remembered[0] == _content_key(bundle):
        return str(remembered[1])
    return content_sha256(
        bundle.arch, bundle.program_bytes, bundle.weights, bundle.bias, bundle.manifest.model_dump(mode="json"),
        [layer.model_dump(mode="json") for layer in bundle.layers], bundle.requant,
    )


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------


def write_bundle(path: str | Path, files: dict[str, bytes], manifest: dict[str, Any], overwrite: bool = False) -> Path:
    """Write a bundle directory atomically: ``files`` (name -> bytes) plus ``manifest.json``, whose
    ``files`` entry (sha256 of each file) is filled in here. Returns the bundle path."""
    missing = [name for name in required_files(str(manifest.get("format_version"))) if name not in files]
    if missing:
        raise BundleError(f"cannot write a bundle without {', '.join(missing)}")
    target = Path(path)
    if target.exists() and not overwrite:
        raise ConfigError(f"{target} already exists (use --force to replace it)")
    if target.exists() and not target.is_dir():
        raise ConfigError(f"{target} exists and is not a directory")
    full = dict(manifest, files={name: sha256_bytes(data) for name, data in sorted(files.items())})
    Manifest.model_validate(full)  # the writer never writes what the reader would refuse
    with atomic.directory(target, overwrite=overwrite) as tmp:
        for name, data in sorted(files.items()):
            file = tmp / name
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_bytes(data)
        (tmp / MANIFEST).write_bytes(json_bytes(full))
    return target


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bundle:
    """A loaded, verified bundle."""

    path: Path
    manifest: Manifest
    arch: Architecture
    program: list[Instruction]
    program_bytes: bytes
    weights: np.ndarray  # int64 words of the weight image
    bias: np.ndarray  # int64 words of the bias image
    layers: list[LayerRecord]
    requant: np.ndarray = dataclass_field(default_factory=lambda: np.zeros((0, REQUANT_ENTRY_WORDS), dtype=np.int64))  # DRAM.Q [entries, 3]

    def file(self, name: str) -> Path:
        return self.path / name

    def load_npy(self, name: str) -> np.ndarray:
        """A .npy file of the bundle (never unpickled; declared shape checked before reading)."""
        return read_npy(self.path / name)

    def golden_inputs(self) -> np.ndarray:
        return self.load_npy(GOLDEN_INPUTS)

    def golden_layer(self, index: int) -> np.ndarray:
        array = self.load_npy(golden_layer_file(index))
        if array.dtype.kind not in "iu":
            raise BundleError(f"{self.path / golden_layer_file(index)}: holds {array.dtype} values, expected the layer's integers")
        return array

    def golden_outputs(self) -> np.ndarray:
        return self.load_npy(GOLDEN_OUTPUTS)


def read_npy(path: Path) -> np.ndarray:
    """Read a ``.npy`` file safely: no pickle (object dtypes refused), and the header's declared
    shape checked against :mod:`axtrain.limits` and against the bytes present before any array is
    allocated. Any problem -> one-line BundleError naming the file."""
    try:
        with open(path, "rb") as handle:
            try:
                version = np.lib.format.read_magic(handle)
                if version == (1, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
                elif version == (2, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle)
                else:
                    raise BundleError(f"{path}: unsupported .npy format version {version}")
            except Exception as exc:  # noqa: BLE001 - numpy's header parser raises ValueError, SyntaxError, TokenError, ...
                raise BundleError(f"{path}: not a readable .npy file ({' '.join(str(exc).split())[:120]})") from None
            if dtype.hasobject or dtype.kind not in "biuf":
                raise BundleError(f"{path}: holds {dtype} values; only numeric arrays are read (never pickled objects)")
            count = element_count(shape, str(path), BundleError)
            size = path.stat().st_size - handle.tell()
            if size != count * dtype.itemsize:
                raise BundleError(f"{path}: header declares shape {list(shape)} of {dtype} ({count * dtype.itemsize} bytes), the file holds {size}")
            data = handle.read(size)
    except FileNotFoundError:
        raise BundleError(f"{path} is missing") from None
    except OSError as exc:
        raise BundleError(f"{path}: cannot read ({exc.strerror or exc})") from None
    array = np.frombuffer(data, dtype=dtype, count=count)
    return array.reshape(shape[::-1]).T if fortran else array.reshape(shape)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleError(f"{path} is missing") from None
    except (OSError, ValueError) as exc:  # ValueError: bad JSON, bad UTF-8, a 5000-digit number
        raise BundleError(f"{path} is not valid JSON: {' '.join(str(exc).split())[:160]}") from None
    except RecursionError:
        raise BundleError(f"{path} is not valid JSON: nested too deeply") from None


def _validation_line(exc: ValidationError, where: str) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    return f"{where}: {loc}: {err['msg']}" + (f" (and {len(exc.errors()) - 1} more problems)" if len(exc.errors()) > 1 else "")


def verify_hashes(
    path: Path, files: dict[str, str], required: tuple[str, ...] = REQUIRED_FILES, keep: tuple[str, ...] = ()
) -> dict[str, bytes]:
    """Every required file is listed and present, and every listed file matches its sha256.

    The files named in ``keep`` are read whole once and their bytes returned (the ones the caller
    parses next: it parses exactly the bytes that were verified, and reads them once); the others
    are hashed as a stream in 1 MiB blocks."""
    for name in required:
        if name not in files:
            raise BundleError(f"{path}: manifest lists no hash for {name}")
    kept: dict[str, bytes] = {}
    checked: list[tuple[str, str, Path]] = []
    for name, expected in sorted(files.items()):
        file = (path / name).resolve()
        if not file.is_relative_to(path.resolve()):
            raise BundleError(f"{path}: manifest names a file outside the bundle: {name}")
        if not file.is_file():
            raise BundleError(f"{path}: {name} is missing")
        checked.append((name, expected, file))

    def digest(name: str, file: Path) -> str:
        if name not in keep:
            return sha256_file(file)
        kept[name] = file.read_bytes()  # one key per thread: dict item assignment is atomic
        return sha256_bytes(kept[name])

    # hashlib releases the GIL on large buffers: the big images hash side by side (same result).
    with ThreadPoolExecutor(_HASH_THREADS) as pool:
        actual = list(pool.map(digest, [name for name, _, _ in checked], [file for _, _, file in checked]))
    for (name, expected, _), got in zip(checked, actual, strict=True):
        if got != expected:
            raise BundleError(f"{path}: {name} does not match its sha256 in the manifest (modified or corrupt)")
    return kept


_HASH_THREADS = 2  # the machine this runs on has 2 cores; more threads only add switching


#: The files load_bundle parses whole: read once, while their hashes are checked.
_READ_WHOLE = (PROGRAM_BIN, PROGRAM_ASM, WEIGHTS_BIN, WEIGHTS_HEX, BIAS_BIN, BIAS_HEX, REQUANT_BIN, REQUANT_HEX)

#: The text twins of the binaries (for hardware flows and testbenches) and the golden vectors:
#: what ``load_bundle(path, twins=False)`` neither hashes nor compares (decision 204).
TWIN_FILES = (PROGRAM_ASM, PROGRAM_HEX, WEIGHTS_HEX, BIAS_HEX, REQUANT_HEX)


def is_twin_or_golden(name: str) -> bool:
    """Whether ``name`` is a text twin or a golden file (see :data:`TWIN_FILES`)."""
    return name in TWIN_FILES or name.startswith("golden/")


def load_bundle(path: str | Path, twins: bool = True) -> Bundle:
    """Open a bundle: versions first, then hashes, then contents (any problem -> one-line BundleError).

    ``twins=False`` (``axtrain simulate``, decision 204): the text twins and the goldens, which
    the simulator never reads, are neither hashed nor compared with their binaries (for
    784-4096-4096-10, 100 MB of ``weights.hex`` read, hashed and compared: ~0.35 of a 0.6 CPU s
    load). Everything the bundle is built from (manifest, architecture, layer table, program and
    images) is checked exactly as with ``twins=True``, the content hash included; ``verify``,
    ``inspect`` and the default check every file."""
    root = Path(path)
    if not root.is_dir():
        raise BundleError(f"{root} is not a bundle directory")
    raw = _read_json(root / MANIFEST)
    if not isinstance(raw, dict):
        raise BundleError(f"{root / MANIFEST}: expected a JSON object")
    if raw.get("format") != FORMAT_NAME:
        raise BundleError(f"{root}: not an AxTrain bundle (manifest format {raw.get('format')!r})")
    old = raw.get("format_version")
    if isinstance(old, str) and old in OLD_VERSIONS:
        raise BundleError(
            f"{root}: bundle format {old} (ISA {OLD_VERSIONS[old]}) was written by an earlier axtrain; recompile its ONNX with `axtrain compile`"
        )
    if raw.get("format_version") not in READABLE_VERSIONS:
        raise BundleError(
            f"{root}: unknown bundle format version {raw.get('format_version')!r} (this axtrain reads versions {', '.join(READABLE_VERSIONS)})"
        )
    if raw.get("isa_version") != ISA_VERSION:
        raise BundleError(f"{root}: unknown ISA version {raw.get('isa_version')!r} (this axtrain runs ISA version {ISA_VERSION})")
    files = raw.get("files")
    if not isinstance(files, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
        raise BundleError(f"{root / MANIFEST}: 'files' must map file names to sha256 strings")
    every_required = required_files(str(raw["format_version"]))
    for name in every_required:  # every required file is listed, hashed or not
        if name not in files:
            raise BundleError(f"{root}: manifest lists no hash for {name}")
    hashed = files if twins else {name: digest for name, digest in files.items() if not is_twin_or_golden(name)}
    required = tuple(name for name in every_required if twins or not is_twin_or_golden(name))
    verified = verify_hashes(root, hashed, required, keep=_READ_WHOLE)
    try:
        manifest = Manifest.model_validate(raw)
    except ValidationError as exc:
        raise BundleError(_validation_line(exc, str(root / MANIFEST))) from None
    try:
        arch = arch_from_dict(_read_json(root / ARCH), str(root / ARCH))
    except ConfigError as exc:
        raise BundleError(str(exc)) from None
    layers_raw = _read_json(root / LAYERS)
    if not isinstance(layers_raw, list):
        raise BundleError(f"{root / LAYERS}: expected a list of layers")
    try:
        layers = [LayerRecord.model_validate(entry) for entry in layers_raw]
    except ValidationError as exc:
        raise BundleError(_validation_line(exc, str(root / LAYERS))) from None
    if not layers:
        raise BundleError(f"{root / LAYERS}: lists no layers")
    for position, layer in enumerate(layers):
        if layer.index != position:
            raise BundleError(f"{root / LAYERS}: entry {position} has index {layer.index}")
        for what, shape in (("input_shape", layer.input_shape), ("output_shape", layer.output_shape)):
            element_count(shape, f"{root / LAYERS}: layer {position} {what}", BundleError)
    for what, shape in (("input", manifest.input.shape), ("output", manifest.output.shape)):
        element_count(shape, f"{root / MANIFEST}: {what} shape", BundleError)
    element_count([manifest.activation_words], f"{root / MANIFEST}: activation_words", BundleError)
    program_bytes = verified[PROGRAM_BIN]
    if manifest.weight_word_bits != arch.weight_word_bits or manifest.bias_word_bits != BIAS_WORD_BITS:
        raise BundleError(f"{root}: manifest word widths disagree with arch.json")
    _check_image_size(root / WEIGHTS_BIN, manifest.weight_word_bits, manifest.weight_words, verified[WEIGHTS_BIN])
    bias = _read_image(root / BIAS_BIN, BIAS_WORD_BITS, manifest.bias_words, verified[BIAS_BIN])
    requant = read_requant(root, manifest.requant_entries, verified, twins)
    dumps = manifest.model_dump(mode="json"), [layer.model_dump(mode="json") for layer in layers]

    def weights_and_content() -> tuple[np.ndarray, str]:
        # The int64 weight words and the content hash of what bundle_content_sha256 reads, in a
        # thread while the program is checked (784-4096-4096-10: 0.05 s converting, 0.13 s hashing
        # 160 MB; hashlib and the conversion release the GIL).
        words = _read_image(root / WEIGHTS_BIN, manifest.weight_word_bits, manifest.weight_words, verified[WEIGHTS_BIN])
        return words, content_sha256(arch, program_bytes, words, bias, *dumps, requant)

    content = _Background(weights_and_content)
    program = decode_program(program_bytes)
    check_program(program, arch, manifest.weight_words, bias.size, manifest.activation_words, manifest.requant_entries)
    check_consistency(root, manifest, layers, program)
    weights, content_hash = content.result()
    if twins:
        _check_derived(root, program, weights, manifest.weight_word_bits, bias, verified)
    bundle = Bundle(root, manifest, arch, program, program_bytes, weights, bias, layers, requant)
    _check_v1_1(bundle, content_hash, twins)
    _remember_content(bundle, bundle.manifest.content_sha256 or "")
    return bundle


def requant_image_words(table: np.ndarray) -> np.ndarray:
    """DRAM.Q ``[entries, 3]`` as the flat int32 words of ``requant.bin`` / ``requant.hex``."""
    return np.asarray(table, dtype=np.int64).reshape(-1)


def read_requant(root: Path, entries: int, verified: dict[str, bytes], twin: bool = True) -> np.ndarray:
    """``requant.bin`` as ``[entries, 3]`` int64, checked entry by entry (multiplier, shift and zero
    point in range: hwmodels.fixedpoint.check_requant_entry) and, with ``twin``, against its hex twin."""
    words = _read_image(root / REQUANT_BIN, BIAS_WORD_BITS, entries * REQUANT_ENTRY_WORDS, verified[REQUANT_BIN])
    table = words.reshape(-1, REQUANT_ENTRY_WORDS)
    for entry, (m, n, z) in enumerate(table.tolist()):
        reason = check_requant_entry(m, n, z)
        if reason is not None:
            raise BundleError(f"{root / REQUANT_BIN}: entry {entry}: {reason}")
    if twin and not image_hex_matches(verified[REQUANT_HEX], words, BIAS_WORD_BITS):
        raise BundleError(f"{root / REQUANT_HEX} does not match {REQUANT_BIN}")
    return table


def golden_word_bits(output_format: str, neuron_word_bits: int) -> int:
    """Bits per word of a layer's golden hex: the neuron word, or the 32-bit accumulator word of a
    layer whose output STA stores (a float graph output wider than the neuron word)."""
    return ACC_OUT_WORD_BITS if FixedPointFormat.parse(output_format).bits > neuron_word_bits else neuron_word_bits


def _content_key(bundle: "Bundle") -> tuple[int, ...]:
    """The identities of what the content hash reads (held by the bundle, so never reused while it lives)."""
    return tuple(id(value) for value in (bundle.arch, bundle.program_bytes, bundle.weights, bundle.bias, bundle.manifest, bundle.layers, bundle.requant))


def _remember_content(bundle: "Bundle", digest: str) -> None:
    """Record the verified content hash on ``bundle`` (a frozen dataclass: set beside its fields)."""
    bundle.weights.flags.writeable = False  # the remembered hash stays true: the images cannot change
    bundle.bias.flags.writeable = False
    bundle.requant.flags.writeable = False
    object.__setattr__(bundle, "_verified_content", (_content_key(bundle), digest))


class _Background:
    """``fn(*args)`` computed in a thread while the caller goes on (``result()`` joins and re-raises).

    load_bundle hashes the images for the content hash (~0.13 s for 20 M words; hashlib releases
    the GIL) while it checks the program and the text twins."""

    def __init__(self, fn: Any, *args: Any) -> None:
        self._value: Any = None
        self._error: BaseException | None = None

        def target() -> None:
            try:
                self._value = fn(*args)
            except BaseException as exc:  # noqa: BLE001 - re-raised by result() in the caller's thread
                self._error = exc

        self._thread = threading.Thread(target=target, name="bundle-content-hash", daemon=True)
        self._thread.start()

    def result(self) -> Any:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value


def check_golden_twins(bundle: Bundle) -> None:
    """The quantised and hex goldens say what the .npy goldens say (``verify`` calls this;
    testbenches read the hex files, so a re-hashed but different one must not slip through)."""
    bits = bundle.arch.neuron_word_bits
    q = quantize(bundle.golden_inputs(), bundle.manifest.input.fixed_point)
    stored = bundle.load_npy(GOLDEN_INPUTS_INT)
    if stored.shape != q.shape or not np.array_equal(stored, q):
        raise BundleError(f"{bundle.path / GOLDEN_INPUTS_INT} is not golden/inputs.npy quantised with the input format {bundle.manifest.input.format}")
    twins = [(GOLDEN_INPUTS_HEX, q, bits)] + [
        (golden_layer_hex(layer.index), bundle.golden_layer(layer.index), golden_word_bits(layer.output_format, bits)) for layer in bundle.layers
    ]
    for name, values, word_bits in twins:
        if (bundle.path / name).read_bytes() != image_hex(np.asarray(values).reshape(-1), word_bits).encode("ascii"):
            raise BundleError(f"{bundle.path / name} does not match its .npy twin")


def _check_v1_1(bundle: Bundle, content: str | None = None, twins: bool = True) -> None:
    """Testbench twins and identity (since format 1.1): program.hex is program.bin (with ``twins``),
    the content hash matches, and every golden layer has its hex twin listed (compared word for
    word by ``verify``). ``content``: the content hash when the caller computed it already."""
    root, m = bundle.path, bundle.manifest
    if m.content_sha256 is None or m.golden_coverage is None:
        raise BundleError(f"{root / MANIFEST}: a format {m.format_version} manifest needs content_sha256 and golden_coverage")
    if twins and (root / PROGRAM_HEX).read_bytes() != program_hex(bundle.program_bytes).encode("ascii"):
        raise BundleError(f"{root / PROGRAM_HEX} does not match {PROGRAM_BIN}")
    if (bundle_content_sha256(bundle) if content is None else content) != m.content_sha256:
        raise BundleError(f"{root / MANIFEST}: content_sha256 does not match the program, images and architecture (modified or corrupt)")
    for layer in bundle.layers:
        if golden_layer_hex(layer.index) not in m.files:
            raise BundleError(f"{root}: manifest lists no hash for {golden_layer_hex(layer.index)}")


def check_consistency(root: Path, manifest: Manifest, layers: list[LayerRecord], program: list[Instruction]) -> None:
    """The cross-file invariants of a bundle whose files each look fine on their own: the program,
    the layer table and the manifest describe the same network over the same memory images.

    A bundle whose ``layers.json`` was swapped for another application's (hashes recomputed) used to
    simulate without complaint; only ``verify`` noticed. These checks run on every load and cost one
    pass over the instructions and one over the layers (no per-word work)."""
    where = root / LAYERS
    if manifest.instructions != len(program):
        raise BundleError(f"{root / MANIFEST}: says {manifest.instructions} instructions, {PROGRAM_BIN} holds {len(program)}")
    if len(manifest.layers) != len(layers):
        raise BundleError(f"{root}: {MANIFEST} lists {len(manifest.layers)} layers, {LAYERS} {len(layers)} (files of different bundles?)")
    synced: dict[int, int] = {}
    for index, ins in enumerate(program):
        if ins.op == "SYNC":
            synced_layer, count = ins.args[0], ins.args[2]
            if synced_layer >= len(layers):
                raise BundleError(f"{root}: instruction {index} (SYNC) names layer {synced_layer}, {LAYERS} has {len(layers)} layers")
            synced[synced_layer] = count  # the last SYNC of a layer delivers its output
    previous_end = 0
    previous_size: int | None = None
    sizes: dict[int, int] = {}  # layer -> its output words (a DAG's sources)
    for layer, summary in zip(layers, manifest.layers, strict=True):  # equal lengths: checked above
        label = f"{where}: layer {layer.index} ({layer.name})"
        if (summary.name, summary.op) != (layer.name, layer.op):
            raise BundleError(f"{label}: the manifest lists layer {layer.index} as {summary.name} ({summary.op})")
        first, end = layer.program
        if not previous_end <= first <= end <= len(program):
            raise BundleError(f"{label}: instruction range [{first}, {end}) is not inside [{previous_end}, {len(program)}] after the previous layer's")
        previous_end = end
        size_in, size_out = math.prod(layer.input_shape), math.prod(layer.output_shape)
        sources = layer.sources or [layer.index - 1]
        if any(not -1 <= j < layer.index for j in sources) or len(sources) != (2 if layer.op == "add" else 1):
            raise BundleError(f"{label}: sources {sources} are not {'two' if layer.op == 'add' else 'one'} earlier layer(s) (-1: the input)")
        source_size = previous_size if sources[0] == layer.index - 1 else sizes.get(sources[0])
        if source_size is not None and size_in != source_size:
            raise BundleError(f"{label}: input shape {layer.input_shape} does not take the {source_size} values of layer {sources[0]}")
        previous_size = size_out
        sizes[layer.index] = size_out
        if layer.index not in synced:
            raise BundleError(f"{label}: the program never SYNCs its output")
        if synced[layer.index] != size_out:
            raise BundleError(f"{label}: the program SYNCs {synced[layer.index]} values, layers.json says output shape {layer.output_shape}")
        computes = layer.op in ("dense", "conv")
        if computes != (layer.weights is not None) or computes != (layer.bias is not None):
            raise BundleError(f"{label}: a {layer.op} layer {'needs' if computes else 'has no'} weight and bias ranges")
        if layer.weights is not None and layer.bias is not None:
            w, b = layer.weights, layer.bias
            if len(w.shape) != 2 or w.count != math.prod(w.shape) or b.count != w.shape[0] or len(layer.multipliers) != w.shape[0]:
                raise BundleError(
                    f"{label}: weights {w.shape} ({w.count} words), {b.count} biases and {len(layer.multipliers)} multiplier modes "
                    f"do not describe one [outputs, inputs] matrix"
                )
            for what, image, words in (("weights", w, manifest.weight_words), ("bias", b, manifest.bias_words)):
                if image.dram < 0 or image.dram + image.count > words:
                    raise BundleError(f"{label}: {what} [{image.dram}, {image.dram + image.count}) lie outside the {words}-word image")
    if math.prod(manifest.input.shape) != math.prod(layers[0].input_shape):
        raise BundleError(f"{root / MANIFEST}: input shape {manifest.input.shape} does not match layer 0's {layers[0].input_shape}")
    if math.prod(manifest.output.shape) != math.prod(layers[-1].output_shape):
        raise BundleError(f"{root / MANIFEST}: output shape {manifest.output.shape} does not match the last layer's {layers[-1].output_shape}")
    for what, place in (("input", manifest.input), ("output", manifest.output)):
        size = math.prod(place.shape)
        if place.dram < 0 or place.dram + size > manifest.activation_words:
            raise BundleError(f"{root / MANIFEST}: {what} [{place.dram}, {place.dram + size}) lies outside the {manifest.activation_words} activation words")


def _check_derived(
    root: Path, program: list[Instruction], weights: np.ndarray, weight_bits: int, bias: np.ndarray, verified: dict[str, bytes] | None = None
) -> None:
    """The text twins of the binaries ($readmemh images, the listing) say the same thing: hardware
    flows read the .hex files, so a consistently re-hashed but different one must not slip through."""

    for name, binary, words, bits in ((WEIGHTS_HEX, WEIGHTS_BIN, weights, weight_bits), (BIAS_HEX, BIAS_BIN, bias, BIAS_WORD_BITS)):
        text = verified[name] if verified and name in verified else (root / name).read_bytes()
        if verified and binary in verified and len(verified[binary]) == words.size * (bits // 8):
            words = np.frombuffer(verified[binary], dtype=image_dtype(bits))  # the same words, narrow: no int64 pass
        if not image_hex_matches(text, words, bits):
            raise BundleError(f"{root / name} does not match {name.replace('.hex', '.bin')}")
    try:
        raw = verified[PROGRAM_ASM] if verified and PROGRAM_ASM in verified else (root / PROGRAM_ASM).read_bytes()
        listing = raw.decode("utf-8")
        if listing_is_canonical(listing, program):
            return  # the compiler's own listing: parsing it would give `program` again
        listed = parse_assembly(listing)
    except (BundleError, UnicodeDecodeError) as exc:
        raise BundleError(f"{root / PROGRAM_ASM}: not a readable listing ({exc})") from None
    if listed != program:
        raise BundleError(f"{root / PROGRAM_ASM} does not match {PROGRAM_BIN}")


def listing_is_canonical(text: str, program: list[Instruction]) -> bool:
    """Whether the instruction lines of ``text`` (comments and blank lines dropped) are exactly the
    canonical forms ``str(instruction)`` of ``program``, in order: what the compiler writes. Then
    ``parse_assembly(text) == program`` (the canonical form assembles back to the same instruction),
    so a bundle opened by the runtime need not parse its listing; any other text is parsed."""
    lines = [code.strip() for code in (line.split(";", 1)[0] for line in text.splitlines())]
    lines = [code for code in lines if code]
    return len(lines) == len(program) and all(code == str(instruction) for code, instruction in zip(lines, program, strict=True))


def _check_image_size(path: Path, word_bits: int, words: int, data: bytes) -> None:
    if len(data) != words * (word_bits // 8):
        raise BundleError(f"{path}: {len(data)} bytes, the manifest says {words} words of {word_bits} bits")


def _read_image(path: Path, word_bits: int, words: int, data: bytes | None = None) -> np.ndarray:
    data = path.read_bytes() if data is None else data
    _check_image_size(path, word_bits, words, data)
    return np.frombuffer(data, dtype=image_dtype(word_bits)).astype(np.int64)
