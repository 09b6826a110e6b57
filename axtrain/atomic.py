"""Write artifacts so that a final name never holds a partial file.

Everything the toolchain produces is written to a temporary name in the same directory and renamed
into place (``os.replace`` is atomic on POSIX within one file system). A process killed mid-write
leaves at most a ``.tmp-*`` file or directory behind, never a truncated artifact under its real name.

Permissions: ``mkstemp``/``mkdtemp`` create their temporaries private (0600 / 0700) so nobody sees
them half-written; before the rename they get the modes a plain ``open()``/``mkdir()`` would have
given (0666 / 0777 minus the umask), so an artifact is as readable as any other file the user writes.

Failures of the machine (a full disk, a read-only or unwritable folder, a name too long, a parent
that is a file, a deleted working directory) become one :class:`~axtrain.errors.OutputError`
naming the path (:func:`output_error`, the one place that words them; ``axtrain.cli`` uses it for
an ``OSError`` from anywhere else too). Every temporary is removed on any failure, and on Ctrl-C
(:mod:`axtrain.interrupts`). JSON is written strictly: NaN and infinity are not JSON, and a
document holding one is refused naming the key, not written as ``NaN``.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

from axtrain import interrupts
from axtrain.errors import OutputError, shorten

#: What each OS error means for an output, in the user's words. EEXIST at a final name cannot occur
#: (renames replace, temporaries get fresh names); it comes from creating a parent folder where a
#: file of that name exists.
_REASONS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large (the file-size limit, ulimit -f, or the file system's)",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENAMETOOLONG: "file name or path too long",
    errno.EEXIST: "a part of the path is a file, not a folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "it is a folder",
    errno.ENOENT: "its folder does not exist",
    errno.EMLINK: "too many entries in the folder",
    errno.ELOOP: "too many symbolic links in the path",
    errno.EIO: "input/output error",
    errno.ENOMEM: "out of memory",
    errno.EBUSY: "device or resource busy",
    errno.EXDEV: "temporary and final name on different file systems",
}

#: Temporaries of this process not yet renamed into place (removed on Ctrl-C as on any failure).
_live: set[Path] = set()


def _cwd_gone() -> bool:
    try:
        os.getcwd()
    except FileNotFoundError:
        return True
    return False


def output_error(exc: OSError, path: str | os.PathLike[str] | None = None, action: str = "cannot write") -> OutputError:
    """One line naming ``path`` (else the failing file) and why, e.g. ``cannot write out/report.json:
    no space left on the device``."""
    where = path if path is not None else (exc.filename if exc.filename is not None else "?")
    reason = _REASONS.get(exc.errno or 0, exc.strerror or type(exc).__name__)
    if exc.errno == errno.ENOENT and _cwd_gone() and not os.path.isabs(os.fspath(where)):
        reason = "the working directory no longer exists (it was deleted); cd to an existing folder"
    # A path is echoed whole up to a point: a 4,096-character one would drown the line.
    return OutputError(f"{action} {shorten(os.fspath(where), 190)}: {reason}")


@contextlib.contextmanager
def writing(path: str | os.PathLike[str], action: str = "cannot write") -> Iterator[None]:
    """Turn an ``OSError`` raised in the block into :func:`output_error` naming ``path``."""
    try:
        yield
    except OSError as exc:
        raise output_error(exc, path, action) from None


def _cleanup_live() -> None:
    for tmp in list(_live):
        with contextlib.suppress(OSError):
            if tmp.is_dir() and not tmp.is_symlink():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                os.unlink(tmp)
    _live.clear()


interrupts.on_interrupt(_cleanup_live)


def _umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux: /proc)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)  # elsewhere: swap and restore (os has no getter)
    os.umask(mask)
    return mask


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _mkdir(path: Path, target: Path | None = None) -> None:
    """Create ``path`` and its parents; a failure names ``target`` (the output it is for)."""
    with writing(target if target is not None else path, "cannot write" if target is not None else "cannot create the folder"):
        path.mkdir(parents=True, exist_ok=True)


def _stage(target: Path, data: bytes) -> Path:
    """``data`` in a new temporary beside ``target``, synced; the temporary is removed on failure."""
    _mkdir(target.parent, target)
    with writing(target):
        fd, name = tempfile.mkstemp(prefix=f".tmp-{target.name[:200]}-", dir=target.parent)
    tmp = Path(name)
    _live.add(tmp)
    try:
        with writing(target), os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o666 & ~_umask())
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        _discard(tmp)
        raise
    return tmp


def _discard(tmp: Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(tmp)
    _live.discard(tmp)


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Atomically write ``data`` to ``path`` (parents are created); an OS failure is an
    :class:`~axtrain.errors.OutputError` naming ``path``, and no temporary stays behind."""
    target = Path(path)
    tmp = _stage(target, data)
    try:
        with writing(target):
            os.replace(tmp, target)
    except BaseException:
        _discard(tmp)
        raise
    _live.discard(tmp)
    _fsync_dir(target.parent)
    return target


def write_many(items: Iterable[tuple[str | os.PathLike[str], bytes]]) -> list[Path]:
    """Write several files all or none: every temporary first (where a full disk shows), then the
    renames together (a signal cannot split them). Two items naming one file are refused."""
    pairs = [(Path(path), data) for path, data in items]
    seen: dict[str, Path] = {}
    for target, _ in pairs:
        key = os.path.normcase(os.path.abspath(target))
        if key in seen:
            raise OutputError(f"{shorten(os.fspath(target), 300)} is named for two outputs; give each its own file")
        seen[key] = target
    staged: list[tuple[Path, Path]] = []
    placed: list[Path] = []
    try:
        for target, data in pairs:
            staged.append((target, _stage(target, data)))
        with interrupts.critical():
            try:
                for target, tmp in staged:
                    with writing(target):
                        os.replace(tmp, target)
                    placed.append(target)
            except BaseException:
                for done in placed:  # neither: undo the renames that happened
                    with contextlib.suppress(OSError):
                        os.unlink(done)
                raise
    except BaseException:
        for target, tmp in staged:
            if target not in placed:
                _discard(tmp)
        raise
    for _, tmp in staged:
        _live.discard(tmp)
    for parent in {target.parent for target, _ in pairs}:
        _fsync_dir(parent)
    return [target for target, _ in pairs]


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Atomically write UTF-8 ``text`` to ``path``."""
    return write_bytes(path, text.encode("utf-8"))


def _non_finite(obj: Any, where: str = "") -> str | None:
    """The key path of the first NaN or infinity in a JSON-ready document, else None."""
    if isinstance(obj, float):
        return None if math.isfinite(obj) else (where or "the document")
    if isinstance(obj, dict):
        for key, value in obj.items():
            found = _non_finite(value, f"{where}.{key}" if where else str(key))
            if found:
                return found
    elif isinstance(obj, (list, tuple)):
        for index, value in enumerate(obj):
            found = _non_finite(value, f"{where}[{index}]")
            if found:
                return found
    return None


def json_text(obj: Any, path: str | os.PathLike[str] | None = None) -> str:
    """Deterministic strict JSON (sorted keys, 2-space indent, final newline); a NaN or infinity is
    refused naming its key (``allow_nan=False``: ``NaN``/``Infinity`` are not JSON)."""
    try:
        return json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n"
    except ValueError:
        where = _non_finite(obj) or "a value"
        target = f"{shorten(os.fspath(path), 300)}: " if path is not None else ""
        raise OutputError(f"{target}refusing to write a non-finite number (NaN or infinity) at {shorten(where)}: not valid JSON") from None


def write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Atomically write ``obj`` as deterministic strict JSON (:func:`json_text`)."""
    return write_text(path, json_text(obj, path))


@contextlib.contextmanager
def directory(path: str | os.PathLike[str], overwrite: bool = False) -> Iterator[Path]:
    """Build a directory under a temporary name and rename it to ``path`` when the block succeeds.

    Yields the temporary directory to fill. If the block raises, the temporary directory is removed
    and ``path`` is untouched. With ``overwrite`` an existing ``path`` is replaced (the old one is
    moved aside first, then deleted, so the final name always holds a complete directory).
    """
    target = Path(path)
    _mkdir(target.parent, target)
    with writing(target):
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name[:200]}-", dir=target.parent))
    _live.add(tmp)
    try:
        with writing(target):
            os.chmod(tmp, 0o777 & ~_umask())
        try:
            yield tmp
        except OSError as exc:  # the block's own writes into the temporary directory
            raise output_error(exc, target) from None
        with interrupts.critical(), writing(target):
            if target.exists():
                if not overwrite:
                    raise OutputError(f"{shorten(os.fspath(target), 300)} already exists (another process wrote it meanwhile?)")
                old = Path(tempfile.mkdtemp(prefix=f".old-{target.name[:200]}-", dir=target.parent))
                os.replace(target, old / "x")
                os.replace(tmp, target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        _live.discard(tmp)
        raise
    _live.discard(tmp)
    _fsync_dir(target.parent)
