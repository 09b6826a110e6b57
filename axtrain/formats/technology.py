"""Technology table files: read a user's table (YAML or JSON) into a ``TechnologyTable``, write one back.

The table itself, its defaults and its prices live in ``hwmodels/technology.py``; this module is
the file side (the YAML reader and the atomic writer), kept out of hwmodels/ so the hardware models
import nothing of ours but ``axtrain.errors``.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import ValidationError

from axtrain.atomic import write_text
from axtrain.errors import ConfigError
from axtrain.formats.yamltext import read_mapping
from axtrain.hwmodels.technology import TechnologyTable


def load_table(path: str | Path) -> TechnologyTable:
    """Read a table from YAML (``.yaml``/``.yml``) or JSON (any other suffix); omitted keys keep defaults.

    Raises :class:`ConfigError` (one line naming the file and the key) on an unknown key, a value of
    the wrong type or out of range, or a file that is not a mapping.
    """
    path = Path(path)
    data = read_mapping(path, "technology table")
    try:
        return TechnologyTable.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join(str(part) for part in error["loc"]) or "?"
        if error["type"] == "extra_forbidden":
            raise ConfigError(f"technology table {path}: unknown key '{key}'") from None
        got = repr(error.get("input"))
        got = got if len(got) <= 60 else got[:57] + "..."  # a hostile value must not flood the one line
        raise ConfigError(f"technology table {path}: key '{key}': {error['msg']} (got {got})") from None


def save_table(table: TechnologyTable, path: str | Path) -> Path:
    """Write ``table`` atomically as YAML (``.yaml``/``.yml``) or JSON (any other suffix)."""
    path = Path(path)
    data = table.model_dump()
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml  # on first use: simulate and compile read no YAML (start-up, issue 15)

        return write_text(path, yaml.safe_dump(data, sort_keys=False))
    return write_text(path, json.dumps(data, indent=2) + "\n")
