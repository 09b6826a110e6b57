"""benchmarks/common.py helpers that the benchmark figures depend on."""

from __future__ import annotations

import time

import pytest

from benchmarks.common import one_core_taken


def test_one_core_taken_spins_inside_and_is_gone_after() -> None:
    """The load-2 row's spinning process burns CPU while the block runs and is killed after it."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime
    with one_core_taken(settle_s=0.05) as spinner:
        assert spinner.poll() is None
        time.sleep(0.5)
        assert spinner.poll() is None
    assert spinner.returncode is not None
    # It did spin: the reaped child used CPU for much of the 0.55 s it lived (a loose bound, for a
    # busy machine; an idle child would use a few ms).
    assert resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime - before > 0.05


def test_one_core_taken_kills_the_spinner_when_the_block_raises() -> None:
    with pytest.raises(RuntimeError, match="boom"):
        with one_core_taken(settle_s=0.0) as spinner:
            raise RuntimeError("boom")
    assert spinner.returncode is not None
