"""Cells: the independent units of work of a reproduction, and their content-addressed cache.

A :class:`Cell` is one piece of work (train a network, compile it, simulate it at one setting, ...)
defined by its ``kind``, its JSON ``params`` and the cells it needs (``deps``). Its key is the
sha256 of that whole definition (the deps by their keys, so a change anywhere upstream changes every
key downstream) plus the axtrain version::

    key = sha256(canonical JSON {"kind", "params", "deps": [dep keys], "axtrain": __version__,
                                 "models": MODEL_GENERATIONS})

``MODEL_GENERATIONS`` names the versions of what decides a cell's result besides its params: the
bundle format (ISA), the simulation report schema (machine model) and ``RESULTS_GENERATION``, a
counter bumped by hand whenever a change alters what a cell computes without changing a version
(a trainer's fault-map draw, a default of the energy table). The package version alone did not move
across ISA 2 and machine model v2, and a folder from before them would otherwise have been reused.

A finished cell is one small JSON file, ``DIR/cells/<key>.json``, written atomically (temp name, then
rename) by whoever ran it; a cell with a file is never run again, so an interrupted reproduction
resumes where it stopped. Cells that leave artifacts (run directories, ONNX files, bundles) keep them
in ``DIR/cells/<key>/``; a training cell killed half-way resumes from the trainer's checkpoint there.

:func:`axtrain.reproduce.worker.execute_cell` is what a worker runs (in-process, in a process pool or
as a Ray task): it looks the kind up in :data:`axtrain.reproduce.tasks.TASKS`, runs it with the
finished deps' results and writes the cell's file. (It lives beside, not in, this module: the tasks
use cells, and cells know nothing of the tasks.)
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from axtrain import __version__
from axtrain.atomic import write_json
from axtrain.errors import RunError
from axtrain.provenance import versions

CELLS_DIR = "cells"
RECORD_FORMAT = "axtrain-reproduce-cell/1"

# Bump when a change alters any cell's result while no version below moves (decision 175).
# 2: ISA 2 / machine model v2 energies, training fault maps by geometric gaps (decision 141).
RESULTS_GENERATION = 2


@functools.lru_cache(maxsize=1)
def model_generations() -> dict[str, str]:
    """The versions, besides axtrain's, that a cell key covers (see the module docstring)."""
    # lazy: the bundle format and the runtime are heavy imports a driver that only reads cells skips
    from axtrain.formats.bundle import FORMAT_VERSION
    from axtrain.runtime.report import SCHEMA

    return {"bundle": FORMAT_VERSION, "report": SCHEMA, "results": str(RESULTS_GENERATION)}


def canonical(obj: Any) -> str:
    """Deterministic JSON text (sorted keys, no spaces): what a key hashes."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


@dataclass(frozen=True, eq=False)
class Cell:
    """One unit of work: ``kind`` (a name in the task table), ``params`` (JSON values), ``deps``.

    ``label`` is for people (progress lines, errors) and is not part of the key.
    """

    kind: str
    params: Mapping[str, Any]
    deps: tuple["Cell", ...] = ()
    label: str = ""
    _key: str = field(default="", init=False, repr=False)

    def __post_init__(self) -> None:
        params = json.loads(canonical(dict(self.params)))  # a private, JSON-clean copy
        object.__setattr__(self, "params", params)
        object.__setattr__(self, "_key", hashlib.sha256(canonical(self.definition()).encode()).hexdigest())

    def definition(self) -> dict[str, Any]:
        """Everything the key covers."""
        return {
            "kind": self.kind,
            "params": self.params,
            "deps": [d.key for d in self.deps],
            "axtrain": __version__,
            "models": dict(model_generations()),
        }

    @property
    def key(self) -> str:
        return self._key

    @property
    def name(self) -> str:
        return self.label or f"{self.kind}:{self.key[:10]}"

    def to_json(self) -> dict[str, Any]:
        """The cell and its deps as JSON (what a worker receives)."""
        return {"kind": self.kind, "params": self.params, "deps": [d.to_json() for d in self.deps], "label": self.label}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Cell":
        return cls(data["kind"], data["params"], tuple(cls.from_json(d) for d in data["deps"]), data.get("label", ""))

    def __hash__(self) -> int:
        return hash(self._key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Cell) and other._key == self._key


def closure(targets: Iterable[Cell]) -> list[Cell]:
    """Every cell the targets need, each once, dependencies before dependants."""
    order: list[Cell] = []
    seen: set[str] = set()

    def visit(cell: Cell) -> None:
        if cell.key in seen:
            return
        for dep in cell.deps:
            visit(dep)
        seen.add(cell.key)
        order.append(cell)

    for cell in targets:
        visit(cell)
    return order


class CellStore:
    """The finished cells under ``root/cells``: one JSON record per key, artifacts in a folder."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.cells = self.root / CELLS_DIR

    def record_path(self, key: str) -> Path:
        return self.cells / f"{key}.json"

    def workdir(self, key: str) -> Path:
        """The folder for a cell's artifacts (created on demand)."""
        path = self.cells / key
        path.mkdir(parents=True, exist_ok=True)
        return path

    def has(self, cell: Cell | str) -> bool:
        key = cell if isinstance(cell, str) else cell.key
        return self.record_path(key).is_file()

    def record(self, cell: Cell | str) -> dict[str, Any]:
        """The full record of a finished cell (definition, result, wall time, versions)."""
        key = cell if isinstance(cell, str) else cell.key
        path = self.record_path(key)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RunError(f"{path}: cell not finished") from None
        except json.JSONDecodeError as exc:
            raise RunError(f"{path}: corrupt cell record ({exc}); delete it to recompute the cell") from None
        if data.get("format") != RECORD_FORMAT or data.get("key") != key:
            raise RunError(f"{path}: not a cell record of this axtrain (format {data.get('format')!r}); delete it to recompute")
        return data

    def result(self, cell: Cell | str) -> dict[str, Any]:
        """A finished cell's result."""
        return self.record(cell)["result"]

    def write(self, cell: Cell, result: Mapping[str, Any], wall_s: float) -> dict[str, Any]:
        """Store a finished cell's result (atomically; the file's presence means 'done')."""

        record = {
            "format": RECORD_FORMAT,
            "key": cell.key,
            "label": cell.label,
            "definition": cell.definition(),
            "result": dict(result),
            "wall_s": round(float(wall_s), 3),
            "versions": versions(),
        }
        write_json(self.record_path(cell.key), record)
        return record

    def relative(self, path: Path) -> str:
        """``path`` relative to the store root (records hold relative paths: the folder can move)."""
        return str(Path(path).resolve().relative_to(self.root.resolve()))

    def absolute(self, relative: str) -> Path:
        return self.root / relative
