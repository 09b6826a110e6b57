"""The overwrite rule shared by every command that writes (docs/decisions.md 93).

An output that exists is refused unless ``--force``, except where a command recognises the
existing content as its own, from the same config, and reuses it (train resumes or reports a
finished run, pipeline reuses finished stages, reproduce reuses cached cells). Checked before
anything is created, so a refused or failed command leaves nothing behind.
"""

from __future__ import annotations

from pathlib import Path

from axtrain.errors import ConfigError


def check_file_output(path: Path, force: bool, option: str | None = None) -> None:
    """Refuse an existing ``path`` unless ``force`` (a folder there is refused either way)."""
    where = f"{option} {path}" if option else str(path)
    if path.is_dir():
        raise ConfigError(f"{where} is a folder; give a file name")
    if path.exists() and not force:
        raise ConfigError(f"{where} already exists (use --force to replace it)")
