"""Run cells: dependencies first, finished cells skipped, independent cells in parallel.

Backends (one interface: ``submit(cell) -> handle``, ``wait() -> finished handles``):

* ``local`` (default): a :class:`concurrent.futures.ProcessPoolExecutor` of ``jobs`` workers started
  with ``forkserver`` (``spawn`` where there is none) - never ``fork``, which would copy torch's
  thread pools and locks into the children. Each worker runs one cell at a time on one torch thread.
  ``jobs=1`` runs the cells in this process instead (no pool to start: what tests and a single core
  want; the results are the same because every cell is seeded).
* ``ray``: each cell is a Ray task (``num_cpus=1``) on the cluster at ``address`` (or a local one).
  Ray is imported only here; without it the command fails with one line. Workers write their records
  into the reproduction folder, so on a multi-machine cluster it must be a shared file system; the
  driver also writes every record it receives, so small results survive either way.

A cell that fails does not stop the others: its dependants are skipped, the rest finish (and are
cached), then :class:`~axtrain.errors.RunError` names the failures.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import time
from typing import Any, Callable, Iterable

from axtrain.datasets import APPLICATIONS
from axtrain.errors import ConfigError, RunError
from axtrain.reproduce.cells import Cell, CellStore, closure
from axtrain.reproduce.worker import execute_cell

EXECUTORS = ("local", "ray")
Progress = Callable[[str], None]


def _worker_init() -> None:
    """Pool workers: one torch thread (the pool already uses every core)."""

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        # torch only in pool workers, which train; the driver process stays free of it
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover - the trainer needs torch anyway
        pass


def _context() -> multiprocessing.context.BaseContext:
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


class _Inline:
    """Runs a cell when submitted (jobs=1)."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.done: list[tuple[Cell, Any, BaseException | None]] = []

    def submit(self, cell: Cell) -> None:
        try:
            self.done.append((cell, execute_cell(cell.to_json(), self.root), None))
        except Exception as exc:  # noqa: BLE001 - reported per cell by the scheduler
            self.done.append((cell, None, exc))

    def wait(self) -> list[tuple[Cell, Any, BaseException | None]]:
        done, self.done = self.done, []
        return done

    def close(self, abort: bool = False) -> None:
        pass


class _Pool:
    def __init__(self, root: str, jobs: int) -> None:
        self.root = root
        self.pool = cf.ProcessPoolExecutor(max_workers=jobs, mp_context=_context(), initializer=_worker_init)
        self.pending: dict[cf.Future, Cell] = {}

    def submit(self, cell: Cell) -> None:
        self.pending[self.pool.submit(execute_cell, cell.to_json(), self.root)] = cell

    def wait(self) -> list[tuple[Cell, Any, BaseException | None]]:
        done, _ = cf.wait(list(self.pending), return_when=cf.FIRST_COMPLETED)
        out = []
        for future in done:
            cell = self.pending.pop(future)
            exc = future.exception()
            out.append((cell, None if exc else future.result(), exc))
        return out

    def close(self, abort: bool = False) -> None:
        for future in self.pending:
            future.cancel()
        if abort:
            # Interrupted: stop the workers now, or an orphan would finish its cell (and write into
            # the folder) after the lock is released. Unfinished cells resume from checkpoints.
            for process in list(getattr(self.pool, "_processes", {}).values()):
                process.terminate()
        self.pool.shutdown(wait=not abort, cancel_futures=True)


class _Ray:
    def __init__(self, root: str, address: str | None) -> None:
        try:
            # ray is an optional extra (pip install 'axtrain[ray]')
            import ray
        except ImportError:
            raise ConfigError("--executor ray needs the 'ray' package, which is not installed (pip install 'ray[default]')") from None
        self.ray = ray
        self.root = root
        if not ray.is_initialized():
            try:
                ray.init(address=address, include_dashboard=False, log_to_driver=False)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                where = address or "a new local instance"
                # Ray >= 2.59 clusters may require a token; the client must run in the same auth mode.
                hint = " (if the cluster uses token authentication, set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN as on the cluster)" if address else ""
                raise ConfigError(f"--executor ray: cannot connect to {where}: {' '.join(str(exc).split())[:200]}{hint}") from None
        self.remote = ray.remote(num_cpus=1)(_ray_cell)
        self.pending: dict[Any, Cell] = {}

    def submit(self, cell: Cell) -> None:
        self.pending[self.remote.remote(cell.to_json(), self.root)] = cell

    def wait(self) -> list[tuple[Cell, Any, BaseException | None]]:
        ready, _ = self.ray.wait(list(self.pending), num_returns=1)
        out: list[tuple[Cell, Any, BaseException | None]] = []
        for ref in ready:
            cell = self.pending.pop(ref)
            try:
                out.append((cell, self.ray.get(ref), None))
            except Exception as exc:  # noqa: BLE001 - ray wraps the task's exception
                out.append((cell, None, getattr(exc, "cause", None) or exc))
        return out

    def close(self, abort: bool = False) -> None:
        for ref in self.pending:
            self.ray.cancel(ref, force=abort)


def _ray_cell(cell_json: dict[str, Any], root: str) -> dict[str, Any]:
    _worker_init()
    return execute_cell(cell_json, root)


def _priority(cell: Cell) -> tuple[int, float]:
    """Submission order: training first (it unblocks the most), longest training first (the
    critical path: MNIST networks), by samples x input size x epochs; then everything else in closure order."""
    if cell.kind != "train":
        return (1, 0.0)

    config = cell.params.get("config", {})
    app = APPLICATIONS.get(config.get("app", ""))
    samples = (cell.params.get("data") or {}).get("train_subset") or (app.n_train if app else 0)
    features = 1
    for d in app.input_shape if app else ():
        features *= d
    schedule = config.get("schedule") or {}
    work = samples * features * ((schedule.get("epochs") or 0) + (schedule.get("pas_epochs") or 0))
    if app is not None and app.kind == "cnn":
        work *= 3  # LeNet-5 costs ~3x an MLP epoch of the same data
    return (0, -float(work))


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) < 300 else text[:297] + "..."


def run_cells(
    targets: Iterable[Cell],
    store: CellStore,
    jobs: int = 1,
    executor: str = "local",
    address: str | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Make every target (and what it needs) finished in ``store``. Returns counts:
    ``{"total", "cached", "ran", "failed", "wall_s"}``. Raises RunError if any cell failed."""
    if executor not in EXECUTORS:
        raise ConfigError(f"--executor: unknown executor {executor!r}; expected one of {', '.join(EXECUTORS)}")
    if jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {jobs}")
    say = progress or (lambda _line: None)
    start = time.perf_counter()
    cells = closure(targets)
    todo = [c for c in cells if not store.has(c)]
    counts: dict[str, float] = {"total": len(cells), "cached": len(cells) - len(todo), "ran": 0, "failed": 0}
    if not todo:
        return {**counts, "wall_s": time.perf_counter() - start}
    root = str(store.root.resolve())
    store.cells.mkdir(parents=True, exist_ok=True)
    if executor == "ray":
        backend: Any = _Ray(root, address)
    elif jobs == 1:
        backend = _Inline(root)
    else:
        backend = _Pool(root, jobs)
    say(f"{len(todo)} of {len(cells)} cells to run ({counts['cached']} cached), {executor} executor, {jobs} job(s)")
    waiting = {c.key: c for c in todo}
    failed: dict[str, tuple[Cell, str]] = {}
    running: set[str] = set()
    aborted = True
    try:
        while waiting or running:
            # Submit what is ready; skip what depends on a failure. Training first: it unblocks most.
            ready = [c for c in waiting.values() if all(store.has(d) for d in c.deps)]
            blocked = [c for c in waiting.values() if any(d.key in failed for d in c.deps)]
            for cell in blocked:
                failed[cell.key] = (cell, "skipped: a cell it needs failed")
                del waiting[cell.key]
            for cell in sorted(ready, key=_priority):
                del waiting[cell.key]
                running.add(cell.key)
                backend.submit(cell)
            if not running:
                break
            for cell, record, exc in backend.wait():
                running.discard(cell.key)
                if exc is not None:
                    failed[cell.key] = (cell, f"{type(exc).__name__}: {_first_line(exc)}")
                    counts["failed"] += 1
                    say(f"FAILED {cell.name}: {failed[cell.key][1]}")
                    continue
                if not store.has(cell) and record is not None:  # e.g. a Ray worker without the shared folder
                    store.write(cell, record["result"], record["wall_s"])
                counts["ran"] += 1
                wall = record["wall_s"] if record else 0.0
                say(f"[{counts['ran']}/{len(todo)}] {cell.name} ({wall:.1f} s)")
        aborted = False
    finally:
        backend.close(abort=aborted)
    counts["wall_s"] = time.perf_counter() - start
    if failed:
        real = [v for v in failed.values() if not v[1].startswith("skipped")]
        cell, message = (real or list(failed.values()))[0]
        raise RunError(
            f"{len(real)} cell(s) failed and {len(failed) - len(real)} were skipped (finished cells are cached); first: {cell.name}: {message}"
        )
    return counts
