"""trainer/allocator.py: the heap setting is applied once and reported."""

from __future__ import annotations

import platform

import pytest

from axtrain.trainer import allocator


def test_keep_freed_memory_is_idempotent_and_applies_on_glibc() -> None:
    first = allocator.keep_freed_memory()
    assert allocator.keep_freed_memory() is first
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert first is True
    else:
        pytest.skip("not glibc: the setting is a no-op here by design")

