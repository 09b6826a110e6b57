"""The vectorised ``$readmemh`` renderer against a per-word reference (the definition)."""

from __future__ import annotations

import numpy as np
import pytest

from axtrain.errors import BundleError
from axtrain.formats.bundle import image_hex, image_hex_bytes


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
