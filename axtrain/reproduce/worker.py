"""What a worker runs: one finished-deps cell through its task, its record written to the store.

Separate from ``cells`` (the definitions and the cache) and ``tasks`` (what each kind does) so that
neither imports the other's user: tasks -> cells, worker -> cells + tasks.
"""

from __future__ import annotations

import time
from typing import Any, Mapping

from axtrain.errors import RunError
from axtrain.reproduce.cells import Cell, CellStore
from axtrain.reproduce.tasks import TASKS, TaskContext


def execute_cell(cell_json: Mapping[str, Any], root: str) -> dict[str, Any]:
    """Run one cell whose deps are finished, store its record and return it (a worker's entry point).

    Torch runs on one thread here: the pool runs one cell per core, and tiny GEMMs lose to threading
    on a shared machine anyway. The previous thread count is restored (matters when run in-process).
    """
    cell = Cell.from_json(cell_json)
    store = CellStore(root)
    if store.has(cell):
        return store.record(cell)
    task = TASKS.get(cell.kind)
    if task is None:
        raise RunError(f"unknown cell kind {cell.kind!r} ({cell.name})")
    deps = [store.result(d) for d in cell.deps]
    start = time.perf_counter()
    import torch  # here, not at the top: the driver process schedules cells without loading torch

    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = task(TaskContext(cell, deps, store))
    finally:
        torch.set_num_threads(saved)
    return store.write(cell, result, time.perf_counter() - start)
