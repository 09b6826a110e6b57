"""The reproduction driver: figures -> cells -> executor -> CSV, PNG, REPORT.md.

    >>> from axtrain.reproduce.run import reproduce
    >>> from axtrain.reproduce.profile import QUICK
    >>> reproduce(["fig6"], "out/r", QUICK.with_options(apps=("breast-cancer",)), jobs=2)

Every figure module has ``NAME``, ``cells(profile)`` (the cells it needs) and
``write(store, profile, out) -> markdown`` (CSV, PNG, REPORT section from the finished cells).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import platform
import time
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterator, Sequence

from axtrain.atomic import write_text
from axtrain.errors import ConfigError, RunError
from axtrain.locks import OutputLocked, output_lock
from axtrain.provenance import versions
from axtrain.reproduce.cells import CellStore, closure
from axtrain.reproduce.executor import run_cells
from axtrain.reproduce.profile import Profile
from axtrain.reproduce.report import run_facts_md, write_figure, write_report, write_section

FIGURES: tuple[str, ...] = ("fig4", "fig6", "fig7", "fig8", "fig9")


def figure_module(name: str) -> ModuleType:
    if name not in FIGURES:
        raise ConfigError(f"unknown figure {name!r}; expected one of {', '.join(FIGURES)} or all")
    return importlib.import_module(f"axtrain.reproduce.{name}")


def _log_invocation(root: Path, entry: dict[str, Any]) -> list[dict[str, Any]]:
    """Append this invocation to ``invocations.jsonl`` (the history of this folder) and return all."""
    path = root / "invocations.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    lines.append(json.dumps(entry, sort_keys=True))
    write_text(path, "\n".join(lines) + "\n")
    return [json.loads(line) for line in lines if line.strip()]


def reproduce(
    figures: Sequence[str],
    out: str | Path,
    profile: Profile,
    jobs: int = 1,
    executor: str = "local",
    address: str | None = None,
    progress: Callable[[str], None] | None = None,
    command: str = "axtrain reproduce (Python API)",
) -> dict[str, Any]:
    """Compute (or reuse) the cells of ``figures`` and write their outputs under ``out``.

    Returns ``{"wall_s", "cells": counts, "figures": {name: section facts}}``.
    """
    start = time.perf_counter()
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    with _exclusive(root):
        return _reproduce(figures, root, profile, jobs, executor, address, progress, command, start)


@contextlib.contextmanager
def _exclusive(root: Path) -> Iterator[None]:
    """One reproduction per folder at a time: two would train the same cell into the same run directory
    (the lock of axtrain/locks.py: OUT/.lock, naming its holder, taken over when its process died)."""
    lock = output_lock(root, inside=True)
    try:
        lock.__enter__()
    except OutputLocked as exc:
        raise RunError(f"{root}: another 'axtrain reproduce' is running on this folder ({exc.holder}); wait for it or use another --out") from None
    try:
        yield
    finally:
        lock.__exit__(None, None, None)


def _reproduce(
    figures: Sequence[str], root: Path, profile: Profile, jobs: int, executor: str, address: str | None,
    progress: Callable[[str], None] | None, command: str, start: float,
) -> dict[str, Any]:
    store = CellStore(root)
    modules = {name: figure_module(name) for name in figures}
    targets = {name: module.cells(profile) for name, module in modules.items()}
    before = {c.key for cs in targets.values() for c in closure(cs) if store.has(c)}
    try:
        counts = run_cells([c for cs in targets.values() for c in cs], store, jobs, executor, address, progress)
    except BaseException as exc:
        # Failed or interrupted invocations count towards the folder's total wall time too.
        ran = sum(1 for cs in targets.values() for c in closure(cs) if c.key not in before and store.has(c))
        _log_invocation(root, {
            "command": command, "figures": list(figures), "wall_s": round(time.perf_counter() - start, 1),
            "cells": {"ran": ran, "cached": len(before), "failed": True}, "error": type(exc).__name__,
        })
        raise
    facts_all = {}
    for name, module in modules.items():
        needed = closure(targets[name])
        facts = {
            "profile": profile.name,
            "seeds": {a: len(profile.seeds(a)) for a in profile.apps},
            "runs": profile.runs,
            "cells": {"total": len(needed), "ran": sum(c.key not in before for c in needed), "cached": sum(c.key in before for c in needed)},
            "cell_seconds": sum(store.record(c)["wall_s"] for c in needed),
            "wall_s": time.perf_counter() - start,
        }
        markdown = write_figure(module, store, profile, root)
        write_section(root, name, markdown + "\n\n" + run_facts_md(facts), facts)
        facts_all[name] = facts
    wall = time.perf_counter() - start
    everything = closure([c for cs in targets.values() for c in cs])
    header = {
        "cell_seconds": sum(store.record(c)["wall_s"] for c in everything),
        "cell_count": len(everything),
        "command": command,
        "profile": profile.describe(),
        "wall_s": wall,
        "executor": executor,
        "jobs": jobs,
        "machine": f"{platform.machine()} {os.cpu_count()} cores ({platform.system()})",
        "versions": versions(),
    }
    invocations = _log_invocation(root, {"command": command, "figures": list(figures), "wall_s": round(wall, 1), "cells": counts})
    header["invocations"] = invocations
    write_report(root, header)
    return {"wall_s": wall, "cells": counts, "figures": facts_all}
