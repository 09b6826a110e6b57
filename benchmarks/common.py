"""Shared timing helpers for the benchmark scripts.

Convention: each ``benchmarks/bench_<name>.py`` defines ``run(quick: bool = False) -> list[Result]``
and, under ``if __name__ == "__main__"``, prints ``format_table(run())``. ``python -m benchmarks``
runs them all. The machine is shared and noisy, so we report ratios against a baseline measured in
the same process, take the best of several repeats, and never assert on absolute times.
"""

from __future__ import annotations

import contextlib
import gc
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Callable


@dataclass(frozen=True)
class Result:
    """One benchmark figure: ``measured_s / baseline_s`` against the acceptance ``limit`` (if any)."""

    name: str
    measured_s: float
    baseline_name: str
    baseline_s: float
    limit: float | None = None
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.measured_s / self.baseline_s if self.baseline_s > 0 else float("inf")

    @property
    def ok(self) -> bool | None:
        return None if self.limit is None else self.ratio <= self.limit

    def as_dict(self) -> dict:
        return {**asdict(self), "ratio": self.ratio, "ok": self.ok}


def best_time(fn: Callable[[], object], repeat: int = 5, warmup: int = 1) -> float:
    """Best wall time of ``repeat`` calls after ``warmup`` calls (seconds), the garbage collector off
    inside each timed call (as :mod:`timeit` does)."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    # As timeit does: no automatic collection inside the timed calls, one explicit collection before
    # each. A collection walks every object the process tracks (~300k once an earlier benchmark
    # imported torch), so its cost follows what ran before in this process, not the code measured:
    # bench_import's compile row read 1.8x after bench_act and 1.2-1.4x alone (decision 177).
    enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeat):
            gc.collect()
            start = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - start)
    finally:
        if enabled:
            gc.enable()
    return best


def alternated_best(first: Callable[[], object], second: Callable[[], object], rounds: int, repeat: int = 3) -> tuple[float, float]:
    """Best wall times of two calls measured in alternating rounds (each round: :func:`best_time` of
    ``repeat`` calls of ``first``, then of ``second``), so that a change of the machine's load hits
    both sides of a ratio alike instead of whichever was measured second."""
    a, b = float("inf"), float("inf")
    for _ in range(rounds):
        a = min(a, best_time(first, repeat=repeat, warmup=1))
        b = min(b, best_time(second, repeat=repeat, warmup=1))
    return a, b


@contextlib.contextmanager
def one_core_taken(settle_s: float = 0.5) -> Iterator[subprocess.Popen[bytes]]:
    """A child process spinning on one CPU while the block runs: issue 15's "at load ~2" on this
    two-core machine, reproduced by the benchmark instead of left to whoever else is running. The
    child is a bare interpreter loop (no memory traffic); it is killed on the way out, error or not."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"], stdin=subprocess.DEVNULL)
    try:
        time.sleep(settle_s)  # scheduled and spinning before the first timed call
        yield spinner
    finally:
        spinner.kill()
        spinner.wait()


def format_table(results: list[Result]) -> str:
    """A plain-text table of results."""
    header = f"{'benchmark':<44} {'measured':>10} {'baseline':<28} {'base':>10} {'ratio':>7} {'limit':>6}  ok"
    lines = [header, "-" * len(header)]
    for r in results:
        limit = "" if r.limit is None else f"{r.limit:.2f}"
        ok = "" if r.ok is None else ("yes" if r.ok else "NO")
        lines.append(
            f"{r.name:<44} {r.measured_s:>9.4f}s {r.baseline_name:<28} {r.baseline_s:>9.4f}s {r.ratio:>7.2f} {limit:>6}  {ok}"
        )
    return "\n".join(lines)
