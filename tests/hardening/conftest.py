"""Hardening test fixtures. pytest runs with ``--import-mode=importlib``: this directory (harness,
mutators, seeds) and the compiler tests' graph builder are put on ``sys.path`` here."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "compiler"))
