"""Safe, bounded parsing of the YAML/JSON files users hand us (architecture, technology table,
training config).

``yaml.safe_load`` with PyYAML's pure-Python scanner is quadratic in flow nesting: 3,000 ``[`` take
seconds to refuse. libyaml's C scanner (bundled with PyYAML's wheels) is linear and caps nesting
itself, so it is used whenever present; both build only plain Python values (never objects).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from axtrain.errors import ConfigError

# PyYAML is imported on first use: `axtrain simulate` and `compile` read JSON files only (start-up, issue 15).


def load_yaml(text: str) -> Any:
    """The value of one YAML document (``safe_load`` semantics). Raises yaml.YAMLError,
    ValueError (e.g. an integer past Python's 4,300 digits) or RecursionError on hostile input."""
    import yaml  # on first use: simulate and compile read JSON files only (start-up, issue 15)

    loader = getattr(yaml, "CSafeLoader", None) or yaml.SafeLoader
    return yaml.load(text, Loader=loader)  # noqa: S506 - a safe loader, C or Python


def read_mapping(path: str | Path, what: str) -> dict[str, Any]:
    """The mapping stored in a user's JSON (``.json``) or YAML (any other suffix) file.

    ``what`` names the file's role in messages ("architecture file", "technology table", ...).
    Everything that can go wrong (unreadable, not UTF-8, bad syntax, hostile nesting or numbers, not a
    mapping) is one ConfigError line naming the file; an empty file is an empty mapping.
    """
    file = Path(path)
    kind = "JSON" if file.suffix.lower() == ".json" else "YAML"
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {file}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what} {file} is not UTF-8 text (byte {exc.start})") from None
    if kind == "JSON":
        yaml_error: type[Exception] = ValueError
    else:
        import yaml  # on first use, as in load_yaml

        yaml_error = yaml.YAMLError
    try:
        data = json.loads(text) if kind == "JSON" else load_yaml(text)
    except (ValueError, yaml_error) as exc:  # ValueError: JSON errors, numbers past 4,300 digits
        raise ConfigError(f"{what} {file} is not valid {kind}: {' '.join(str(exc).split())[:160]}") from None
    except RecursionError:
        raise ConfigError(f"{what} {file} is not valid {kind}: nested too deeply") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {file} must hold a mapping of keys to values, got {type(data).__name__}")
    return data
