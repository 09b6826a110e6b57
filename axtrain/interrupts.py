"""Ctrl-C and ``kill``: every command ends with one line, exit 130 (SIGTERM: 143), no partial output.

Why not Python's default (``KeyboardInterrupt`` raised wherever the main thread happens to be):
the exception can surface inside code that cannot take it. Measured on ``axtrain export``: a
SIGINT landing in a ``__del__`` or weakref callback is printed as "Exception ignored ...
KeyboardInterrupt:" and the command carries on to exit 0; one landing in Python code called back
from C++ (torch, onnx and onnxruntime are pybind11 modules) becomes a
``pybind11::error_already_set`` thrown through C++ frames, and the process aborts (exit -6).

So the CLI installs :func:`handler` instead, which never raises into the interrupted code. It runs
the registered cleanups (:mod:`axtrain.atomic` removes this process's temporaries,
:mod:`axtrain.locks` releases its output locks), terminates the process's multiprocessing
children, prints one line and leaves with ``os._exit``. That is safe because every final name is
written by a rename, which a Python-level handler can only see as done or not done; the few
places where several renames must happen together run inside :func:`critical`, where the signal
is noted and acted upon when the section ends. A training run interrupted this way keeps its last
checkpoint exactly as a killed one does, and the same command resumes it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from typing import Any, Callable, Iterator

#: Exit status of a command ended by a signal: 128 + the signal number (the shell's convention).
EXIT_CODES: dict[int, int] = {signal.SIGINT: 130, signal.SIGTERM: 143}
_MESSAGES: dict[int, str] = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated"}

_cleanups: list[Callable[[], None]] = []
_depth = 0  # nesting depth of critical sections (main thread only)
_pending: int | None = None  # a signal that arrived inside a critical section


def on_interrupt(cleanup: Callable[[], None]) -> None:
    """Run ``cleanup`` (which must not raise and must be quick) when a signal ends the command."""
    _cleanups.append(cleanup)


def _finish(signum: int) -> None:
    for cleanup in _cleanups:
        with contextlib.suppress(BaseException):
            cleanup()
    with contextlib.suppress(BaseException):
        # only on the way out, after a signal: start-up of every command stays free of it
        import multiprocessing

        for child in multiprocessing.active_children():
            child.terminate()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BaseException):
            stream.flush()
    with contextlib.suppress(BaseException):
        os.write(2, f"{_MESSAGES.get(signum, 'interrupted')}\n".encode())
    os._exit(EXIT_CODES.get(signum, 130))


def handler(signum: int, frame: Any) -> None:
    """The CLI's SIGINT/SIGTERM handler (see the module docstring)."""
    global _pending
    if _depth > 0:
        _pending = signum
        return
    _finish(signum)


@contextlib.contextmanager
def critical() -> Iterator[None]:
    """A section a signal must not split (several renames that belong together): an interrupt
    arriving inside it takes effect when the section ends, after its cleanup has run."""
    global _depth
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers run in the main thread only: nothing can split this thread's work
        return
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0 and _pending is not None and _installed:
            _finish(_pending)


_installed = False


@contextlib.contextmanager
def installed(restore: bool = True) -> Iterator[None]:
    """Install :func:`handler` for SIGINT and SIGTERM for the duration of one CLI invocation.

    ``restore``: the previous handlers come back afterwards, so an in-process caller such as pytest
    keeps its own. The console script passes False: its command is over, and a signal arriving
    while the interpreter shuts down must neither turn into a KeyboardInterrupt (Python then dies
    by SIGINT, exit -2) nor report "interrupted" for outputs that are complete, so both signals
    are ignored from then on."""
    global _installed, _pending
    if threading.current_thread() is not threading.main_thread() or _installed:
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in EXIT_CODES}
    for sig in EXIT_CODES:
        signal.signal(sig, handler)
    _installed, _pending = True, None
    try:
        yield
    finally:
        _installed = False
        for sig, old in previous.items():
            if restore:
                signal.signal(sig, old if old is not None else signal.SIG_DFL)
            else:
                signal.signal(sig, signal.SIG_IGN)
