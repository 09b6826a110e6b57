"""The vectorised ``$readmemh`` renderer against a per-word reference (the definition)."""

from __future__ import annotations

import numpy as np
import pytest

from axtrain.errors import BundleError
from axtrain.formats.bundle import image_hex, image_hex_bytes, image_hex_matches


def reference_hex(words: np.ndarray, word_bits: int) -> str:
    """One ``format`` call per word: slow and obvious."""
    mask = (1 << word_bits) - 1
    return "".join(f"{int(v) & mask:0{word_bits // 4}x}\n" for v in np.asarray(words).reshape(-1))


@pytest.mark.parametrize("word_bits", [4, 8, 16, 32, 48])
def test_vectorised_hex_equals_the_per_word_reference(word_bits: int) -> None:
    rng = np.random.default_rng(word_bits)
    lo, hi = -(1 << (word_bits - 1)), (1 << (word_bits - 1)) - 1
    words = np.concatenate([rng.integers(lo, hi, size=997, endpoint=True), [lo, hi, 0, -1, 1]])
    assert image_hex(words, word_bits) == reference_hex(words, word_bits)
    assert image_hex_bytes(words, word_bits) == reference_hex(words, word_bits).encode("ascii")


def test_empty_image_is_empty_text() -> None:
    assert image_hex_bytes(np.zeros(0, dtype=np.int64), 8) == b""


def test_non_contiguous_input_is_rendered_in_order() -> None:
    words = np.arange(-8, 8, dtype=np.int64)[::2]
    assert image_hex(words, 8) == reference_hex(words, 8)


@pytest.mark.parametrize("word_bits", [0, 6, 68])
def test_unrenderable_widths_are_refused(word_bits: int) -> None:
    with pytest.raises(BundleError, match="cannot render"):
        image_hex_bytes(np.zeros(3, dtype=np.int64), word_bits)


@pytest.mark.parametrize("word_bits", [4, 8, 12, 16, 32])
def test_narrow_and_wide_integer_inputs_render_alike(word_bits: int) -> None:
    # The table path indexes by the low bits of whatever integer dtype it is given.
    rng = np.random.default_rng(100 + word_bits)
    lo, hi = -(1 << (word_bits - 1)), (1 << (word_bits - 1)) - 1
    words = rng.integers(lo, hi, size=500, endpoint=True)
    expected = reference_hex(words, word_bits).encode("ascii")
    for dtype in (np.int64, np.int32) + ((np.int16,) if word_bits <= 16 else ()) + ((np.int8,) if word_bits <= 8 else ()):
        assert image_hex_bytes(words.astype(dtype), word_bits) == expected, dtype


@pytest.mark.parametrize("word_bits", [8, 16, 32])
def test_hex_check_accepts_the_rendering_and_nothing_else(word_bits: int) -> None:
    rng = np.random.default_rng(200 + word_bits)
    lo, hi = -(1 << (word_bits - 1)), (1 << (word_bits - 1)) - 1
    words = rng.integers(lo, hi, size=300, endpoint=True)
    text = reference_hex(words, word_bits).encode("ascii")
    assert image_hex_matches(text, words, word_bits)
    changed = bytearray(text)
    changed[word_bits // 4 + 1] = ord("f") if changed[word_bits // 4 + 1] != ord("f") else ord("0")  # first digit of line 2
    assert not image_hex_matches(bytes(changed), words, word_bits)
    upper = text.upper()  # $readmemh reads either case, but the bundle's bytes are lower case
    assert upper == text or not image_hex_matches(upper, words, word_bits)
    assert not image_hex_matches(text[:-1], words, word_bits)  # a missing final newline
    assert not image_hex_matches(text.replace(b"\n", b"\r", 1), words, word_bits)
    assert image_hex_matches(b"", np.zeros(0, dtype=np.int64), word_bits)
