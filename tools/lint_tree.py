"""Build ``.lint/axtrain``: the import package as setup.py maps it, out of symbolic links, for mypy.

The source folders compiler/, runtime/, trainer/ and hwmodels/ are ``axtrain.compiler``, ... only
once installed, and mypy cannot follow setuptools' editable-install import hook; a tree of links
gives it the installed layout while every path still points at the working copy. Rebuilt on every
``make lint`` (cheap), so new files are always seen.
"""

from __future__ import annotations

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("compiler", "runtime", "trainer", "hwmodels")  # as setup.py's PARTS


def build(root: Path = ROOT) -> Path:
    """Recreate ``root/.lint/axtrain`` and return it."""
    tree = root / ".lint" / "axtrain"
    shutil.rmtree(tree.parent, ignore_errors=True)
    tree.mkdir(parents=True)
    for entry in (root / "axtrain").iterdir():
        if entry.name != "__pycache__":
            (tree / entry.name).symlink_to(entry)
    for part in PARTS:
        (tree / part).symlink_to(root / part)
    return tree


if __name__ == "__main__":
    print(build())
