"""Content-addressed bookkeeping of pipeline stages.

Each stage has a *key*: the sha256 of its name, its parameters, the hashes of its inputs and the
toolchain version. The ledger (``pipeline.json`` in the output directory) records, per stage, the key
it was last completed with and the sha256 of what it produced. A stage is reused when its key is
unchanged and its outputs still hash to the recorded values; otherwise it runs again (and so does
everything downstream, whose keys include the new output hashes).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from axtrain import __version__, atomic
from axtrain.errors import RunError

LEDGER_FILE = "pipeline.json"


def stage_key(stage: str, params: dict[str, Any], inputs: dict[str, str]) -> str:
    """sha256 of a stage's identity: name, parameters, input hashes, toolchain version."""
    document = {"stage": stage, "params": params, "inputs": inputs, "axtrain": __version__}
    return hashlib.sha256(json.dumps(document, sort_keys=True, default=str).encode()).hexdigest()


def hash_path(path: Path) -> str:
    """sha256 of a file, or of a directory's files (relative names and contents, sorted)."""
    digest = hashlib.sha256()
    if path.is_file():
        digest.update(path.read_bytes())
        return digest.hexdigest()
    if not path.is_dir():
        raise RunError(f"{path}: expected output is missing")
    for item in sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".tmp-")):
        digest.update(str(item.relative_to(path)).encode() + b"\0")
        digest.update(hashlib.sha256(item.read_bytes()).digest())
    return digest.hexdigest()


class Ledger:
    """The stage records of one pipeline directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.path = root / LEDGER_FILE
        self.records: dict[str, dict[str, Any]] = {}
        if self.path.is_file():
            try:
                loaded = json.loads(self.path.read_text())
            except (OSError, ValueError) as exc:
                raise RunError(f"{self.path}: unreadable pipeline ledger ({exc}); use --force to start over") from None
            if not isinstance(loaded, dict) or not isinstance(loaded.get("stages"), dict):
                raise RunError(f"{self.path}: not a pipeline ledger; use --force to start over")
            self.records = loaded["stages"]

    def is_done(self, stage: str, key: str) -> bool:
        """True when ``stage`` finished with ``key`` and its outputs are intact."""
        record = self.records.get(stage)
        if not record or record.get("key") != key:
            return False
        for name, digest in record.get("outputs", {}).items():
            target = self.root / name
            if not target.exists() or hash_path(target) != digest:
                return False
        return True

    def output_hash(self, stage: str, name: str) -> str:
        return str(self.records[stage]["outputs"][name])

    def complete(self, stage: str, key: str, outputs: list[str], extra: dict[str, Any] | None = None) -> None:
        """Record ``stage`` as finished (written atomically, so a kill never leaves half a ledger)."""
        self.records[stage] = {
            "key": key,
            "outputs": {name: hash_path(self.root / name) for name in outputs},
            **(extra or {}),
        }
        atomic.write_json(self.path, {"schema": "axtrain-pipeline/1", "stages": self.records})
