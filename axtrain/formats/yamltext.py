"""Safe, bounded YAML parsing for the files users hand us (architecture, technology table).

``yaml.safe_load`` with PyYAML's pure-Python scanner is quadratic in flow nesting: 3,000 ``[`` take
seconds to refuse. libyaml's C scanner (bundled with PyYAML's wheels) is linear and caps nesting
itself, so it is used whenever present; both build only plain Python values (never objects).
"""

from __future__ import annotations

from typing import Any

import yaml

_LOADER = getattr(yaml, "CSafeLoader", None) or yaml.SafeLoader


def load_yaml(text: str) -> Any:
    """The value of one YAML document (``safe_load`` semantics). Raises yaml.YAMLError,
    ValueError (e.g. an integer past Python's 4,300 digits) or RecursionError on hostile input."""
    return yaml.load(text, Loader=_LOADER)  # noqa: S506 - a safe loader, C or Python
