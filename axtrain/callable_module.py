"""Subpackages that are also API functions: ``axtrain.pipeline`` and ``axtrain.explore``.

Importing a subpackage binds its name on the parent package, so once ``axtrain.pipeline`` (the
package) is imported, ``axtrain.pipeline`` is that module and no longer the API function
(docs/api.md). Rather than rename the packages, they become callable: calling the module calls
the API function of the same name (docs/decisions.md 90).
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any


class CallableModule(types.ModuleType):
    """A module whose call is ``axtrain.api.<its last name>``."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # By name: the API is the top layer (docs/architecture.md), and it loads only when called.
        api = importlib.import_module("axtrain.api")
        return getattr(api, self.__name__.rsplit(".", 1)[-1])(*args, **kwargs)


def make_callable(name: str) -> None:
    """Make the module ``name`` (already in sys.modules) a :class:`CallableModule`."""
    sys.modules[name].__class__ = CallableModule
