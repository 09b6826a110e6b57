"""Faults of the machine a command runs on, made real where this machine allows it.

* a file-size limit (``RLIMIT_FSIZE``, set in this process around an in-process CLI call; the CLI
  ignores SIGXFSZ, so a write past it fails with EFBIG): a full disk on any developer's machine;
* a size- or inode-limited tmpfs (``mount -t tmpfs``, root only): a real ENOSPC;
* a read-only tmpfs (root only): a real EROFS;
* an unprivileged user (``seteuid`` to ``nobody``, from root) writing into a root-owned folder: a
  real EACCES. As a non-root developer the tests chmod the folder instead.

Nothing here stubs the OS: each condition is the kernel's own answer to the write.
"""

from __future__ import annotations

import contextlib
import os
import resource
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Iterator

import pytest
from harness import run_cli

NOBODY = 65534
IS_ROOT = os.geteuid() == 0


def cli(args: list[str], cwd: Path | None = None) -> tuple[int, str, str]:
    """``axtrain ARGS`` in this process, in ``cwd``: exit code, stdout, stderr."""
    here = os.getcwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        return run_cli(args)
    finally:
        os.chdir(here)


@contextlib.contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """Writes past ``limit`` bytes fail (EFBIG) for the block; the previous limit comes back."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


@contextlib.contextmanager
def unprivileged() -> Iterator[None]:
    """Run the block with the effective uid/gid of ``nobody`` (root only: skip otherwise)."""
    if not IS_ROOT:
        yield  # already unprivileged
        return
    os.setegid(NOBODY)
    os.seteuid(NOBODY)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


def _mount(target: Path, options: str) -> None:
    if not IS_ROOT:
        pytest.skip("mounting a tmpfs needs root (the file-size-limit variant covers a full disk here)")
    target.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, f"axtrain-test-{uuid.uuid4().hex[:8]}", str(target)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()[:120]})")


@contextlib.contextmanager
def tmpfs(target: Path, options: str = "size=4m") -> Iterator[Path]:
    """A fresh tmpfs mounted at ``target`` for the block (unmounted after, lazily if still busy)."""
    _mount(target, options)
    try:
        yield target
    finally:
        if subprocess.run(["umount", str(target)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(target)], capture_output=True)


def fill(folder: Path, leave: int) -> Path:
    """Fill ``folder``'s file system until about ``leave`` bytes are free; returns the filler file."""
    stat = os.statvfs(folder)
    free = stat.f_bavail * stat.f_frsize
    filler = folder / "filler.bin"
    size = max(0, free - leave)
    with open(filler, "wb") as handle:
        handle.write(b"\0" * size)
    return filler


def listing(root: Path) -> dict[str, str]:
    """Every entry under ``root`` (relative path -> 'f' file or 'd' folder)."""
    if not root.exists():
        return {}
    return {p.relative_to(root).as_posix(): "d" if p.is_dir() else "f" for p in root.rglob("*")}


def python() -> str:
    return sys.executable
