"""The reproduction driver: figures -> cells -> executor -> CSV, PNG, REPORT.md.

    >>> from axtrain.reproduce.run import reproduce
    >>> from axtrain.reproduce.profile import QUICK
    >>> reproduce(["fig6"], "out/r", QUICK.with_options(apps=("breast-cancer",)), jobs=2)

Every figure module has ``NAME``, ``cells(profile)`` (the cells it needs) and
``write(store, profile, out) -> markdown`` (CSV, PNG, REPORT section from the finished cells).
"""

from __future__ import annotations

import importlib
import platform
import os
import time
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Sequence

from axtrain.errors import ConfigError
from axtrain.provenance import versions
from axtrain.reproduce.cells import CellStore, closure
from axtrain.reproduce.executor import run_cells
from axtrain.reproduce.profile import Profile
from axtrain.reproduce.report import write_report, write_section, run_facts_md

FIGURES: tuple[str, ...] = ("fig4", "fig6", "fig7", "fig8", "fig9")


def figure_module(name: str) -> ModuleType:
    if name not in FIGURES:
        raise ConfigError(f"unknown figure {name!r}; expected one of {', '.join(FIGURES)} or all")
    return importlib.import_module(f"axtrain.reproduce.{name}")


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
    store = CellStore(root)
    modules = {name: figure_module(name) for name in figures}
    targets = {name: module.cells(profile) for name, module in modules.items()}
    before = {c.key for cs in targets.values() for c in closure(cs) if store.has(c)}
    counts = run_cells([c for cs in targets.values() for c in cs], store, jobs, executor, address, progress)
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
        markdown = module.write(store, profile, root)
        write_section(root, name, markdown + "\n\n" + run_facts_md(facts), facts)
        facts_all[name] = facts
    wall = time.perf_counter() - start
    header = {
        "command": command,
        "profile": profile.describe(),
        "wall_s": wall,
        "executor": executor,
        "jobs": jobs,
        "machine": f"{platform.machine()} {os.cpu_count()} cores ({platform.system()})",
        "versions": versions(),
    }
    write_report(root, header)
    return {"wall_s": wall, "cells": counts, "figures": facts_all}
