"""One writer per output: a lock that names its holder, released on exit and on kill.

Every command that writes an output (``train``, ``export``, ``compile``, ``simulate --report`` /
``--dump-outputs``, ``pipeline``, ``explore``, ``reproduce``) holds :func:`output_lock` on it while
it runs. A second command on the same output is refused with one line naming the holder (pid,
host and command), never interleaved with the first: two ``train`` runs with different configs on
one ``--out`` once ended with one run's config and the other's weights in the folder.

Where the lock lives: a folder the command fills in place (a run directory, a pipeline or
reproduction folder) holds ``.lock`` inside (the name `axtrain reproduce` always used); a file or a folder renamed into place whole
(an ONNX file, a report, a bundle) has ``.<name>.lock`` beside it, in the folder its temporaries go
to anyway. The lock is an ``flock`` on that file, so the kernel drops it when its process dies,
however it dies: a lock file left by a killed process is stale, detected by the free ``flock``, and
taken over. The file is removed on release.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import sys
from pathlib import Path
from typing import Iterator

from axtrain import interrupts
from axtrain.atomic import output_error
from axtrain.errors import OutputError, shorten

LOCK_NAME = ".lock"

_held: dict[Path, int] = {}  # lock file -> descriptor, of this process


class OutputLocked(OutputError):
    """The output is held by another live process; ``holder`` describes it (pid, host, command)."""

    def __init__(self, message: str, holder: str) -> None:
        super().__init__(message)
        self.holder = holder


def lock_path(target: str | os.PathLike[str], inside: bool) -> Path:
    """The lock file of ``target``: inside it (a folder filled in place) or beside it."""
    path = Path(target)
    return path / LOCK_NAME if inside else path.parent / f".{path.name[:200]}.lock"


def _describe(raw: bytes) -> str:
    try:
        holder = json.loads(raw.decode("utf-8"))
        return f"pid {int(holder['pid'])} on {shorten(holder['host'], 64)}: {shorten(holder['command'], 120)}"
    except (ValueError, KeyError, TypeError):
        return "a process that has not yet recorded itself"


def _read(fd: int) -> bytes:
    with contextlib.suppress(OSError):
        return os.pread(fd, 4096, 0)
    return b""


def _release_all() -> None:
    for path, fd in list(_held.items()):
        with contextlib.suppress(OSError):
            os.unlink(path)
        with contextlib.suppress(OSError):
            os.close(fd)
    _held.clear()


interrupts.on_interrupt(_release_all)


@contextlib.contextmanager
def output_lock(target: str | os.PathLike[str], inside: bool = False, command: str | None = None) -> Iterator[Path]:
    """Hold the lock of ``target`` for the block (see the module docstring); yields the lock file.

    Refused, as an :class:`~axtrain.errors.OutputError` naming the holder, when another live
    process holds it. ``inside`` creates ``target`` as a folder if needed."""
    path = lock_path(target, inside)
    created = not path.parent.exists()  # removed again on release if the command left it empty
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise output_error(exc, target) from None
    if path in _held:  # this process already holds it (an API call nested in a command)
        yield path
        return
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise output_error(exc, target) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read(fd)
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                who = _describe(holder)
                raise OutputLocked(
                    f"{shorten(os.fspath(target), 300)} is in use by another axtrain command ({who}); "
                    f"wait for it to finish or choose another output",
                    who,
                ) from None
            raise output_error(exc, target) from None
        # A holder releasing at this moment unlinks the file it locked: make sure ours is the one
        # at the path, else two processes could each hold a lock on a different file.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    # Whatever the file holds now was written by a process that died holding it: stale, taken over.
    me = {"pid": os.getpid(), "host": socket.gethostname(), "command": command or " ".join(["axtrain", *sys.argv[1:]])}
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me, sort_keys=True).encode("utf-8"), 0)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)
        raise output_error(exc, target) from None
    _held[path] = fd
    try:
        yield path
    finally:
        _held.pop(path, None)
        # Unlink while still holding the flock, then close (which drops it): a waiter that opened
        # the old file sees it is no longer at the path and starts again.
        with contextlib.suppress(OSError):
            os.unlink(path)
        with contextlib.suppress(OSError):
            os.close(fd)
        if created:
            with contextlib.suppress(OSError):
                os.rmdir(path.parent)  # only if empty: a failed command leaves no folder behind


@contextlib.contextmanager
def output_locks(*targets: tuple[str | os.PathLike[str] | None, bool]) -> Iterator[None]:
    """Hold the locks of several outputs (``(target, inside)`` pairs; None targets are skipped), in
    a fixed order so two commands never wait on each other."""
    wanted = sorted({(os.path.abspath(t), inside) for t, inside in targets if t is not None})
    with contextlib.ExitStack() as stack:
        for target, inside in wanted:
            stack.enter_context(output_lock(target, inside))
        yield
