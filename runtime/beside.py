"""Run a data-independent computation in a forked child process, beside the caller's own work.

:func:`simulate` (runtime/simulation.py) needs two things that do not depend on each other: the
machine model's cycles and events (pure Python over the program: one core, no numpy-sized work to
release the GIL) and the numerics over the images (which need the fast executor's plan first, also
pure Python). A thread would share the GIL with both; a forked child runs the machine model on the
other core while this process builds the plan (decision 180). Nothing is pickled on the way in (the
child inherits the arguments); the result comes back pickled through a pipe, so it is the same
object, value for value, as computed in process.

Errors: an exception in the child is re-raised by :meth:`Beside.result` in this process as the same
exception (type and message; a note carries the child's traceback). A child that ends without a
result (killed, out of memory) or an error that cannot be carried back becomes one
:class:`BesideError` line naming the computation. An error in the caller's own work while the child
runs (``with`` block) waits for the child first and raises the child's error if it had one: the
sequential code ran the child's computation first, so its error is the one a user saw.

Two users: :func:`simulate`'s machine model, and the fast executor's image chunks
(runtime/execute.py's ``run_many``: the first chunks in a child, the rest in this process, so that
their per-step Python does not share one GIL; decision 208).

The child: default handlers for SIGINT and SIGTERM (the CLI's handler would run this process's
cleanups, axtrain/interrupts.py), no garbage collection (a cycle the parent left would run its
finalizers twice), no unwinding into the caller's frames (``os._exit`` right after the result is
written). It calls no torch or onnxruntime, whose thread pools a fork does not copy (the reproduce
pools use forkserver because their workers do use torch); the numerics call OpenBLAS, on one
thread, whose own fork handler (``pthread_atfork``) stops its pool before a fork and lets either
side start it again. Where ``os.fork`` does not exist, or fork fails, the computation runs in this
process, before the caller's work.
"""

from __future__ import annotations

import gc
import os
import pickle
import signal
import traceback
import warnings
from types import TracebackType
from typing import Callable, Generic, NoReturn, TypeVar

T = TypeVar("T")


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the platform has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


#: Whether :func:`beside` forks by default: ``os.fork`` exists and a second CPU can run the child.
FORK_AVAILABLE = hasattr(os, "fork") and usable_cpus() > 1


class BesideError(RuntimeError):
    """The child process of a concurrent computation ended without a result, or its error could not
    be carried back (a bug or a killed process, not a user error)."""


def _pickled_error(exc: BaseException) -> bytes:
    """``exc`` pickled with its traceback text, or (when it does not survive a round trip) its
    type name, message and traceback text."""
    text = "".join(traceback.format_exception(exc))
    try:
        payload = pickle.dumps(("error", exc, text))
        pickle.loads(payload)  # an exception whose constructor takes other arguments fails here
        return payload
    except Exception:  # noqa: BLE001 - any failure to carry it: send its text instead
        return pickle.dumps(("text", f"{type(exc).__module__}.{type(exc).__qualname__}", str(exc), text))


def _child(compute: Callable[[], object], out: int) -> NoReturn:
    """Run in the forked child: compute, write the pickled outcome to ``out``, leave (never returns)."""
    code = 1
    try:
        gc.disable()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)
        try:
            payload = pickle.dumps(("value", compute()))
        except BaseException as exc:  # noqa: BLE001 - every failure goes back to the parent
            payload = _pickled_error(exc)
        view = memoryview(payload)
        while view:
            view = view[os.write(out, view) :]
        code = 0
    finally:
        os._exit(code)  # never unwind into the caller's frames (pytest, the CLI) in the child


class Beside(Generic[T]):
    """A computation running in a forked child process (or already run, when not forked).

    Use as a context manager around the caller's own work, and call :meth:`result` inside it; leaving
    the block reaps the child (killing it if the block ends early by an interrupt)."""

    def __init__(self, compute: Callable[[], T], what: str, fork: bool | None = None) -> None:
        self.what = what
        self.pid: int | None = None
        self._fd: int | None = None
        self._done = False
        self._value: T | None = None
        self._error: BaseException | None = None
        if FORK_AVAILABLE if fork is None else fork:
            self._start(compute)
        if self.pid is None:  # in process, now: the order (and the first error) of sequential code
            self._value, self._done = compute(), True

    def _start(self, compute: Callable[[], T]) -> None:
        read, write = os.pipe()
        try:
            with warnings.catch_warnings():
                # Python 3.12 warns about forking a process with threads (BLAS, onnxruntime): the
                # child uses none of them and takes no lock they hold (module docstring).
                warnings.filterwarnings("ignore", message=".*fork.*", category=DeprecationWarning)
                pid = os.fork()
        except OSError:  # no process to spare: compute in process
            os.close(read)
            os.close(write)
            return
        if pid == 0:
            os.close(read)
            _child(compute, write)
        os.close(write)
        self.pid, self._fd = pid, read

    def _collect(self) -> None:
        """Read the child's outcome and reap it (blocks until the child has finished)."""
        if self._done:
            return
        assert self.pid is not None and self._fd is not None
        chunks = []
        try:
            while chunk := os.read(self._fd, 1 << 20):
                chunks.append(chunk)
        finally:
            os.close(self._fd)
            self._fd = None
            _, status = os.waitpid(self.pid, 0)
            self._done = True
        data = b"".join(chunks)
        if not data:
            code = os.waitstatus_to_exitcode(status)
            how = f"killed by signal {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
            self._error = BesideError(f"{self.what}: its child process (pid {self.pid}) ended without a result ({how})")
            return
        outcome = pickle.loads(data)
        if outcome[0] == "value":
            self._value = outcome[1]
        elif outcome[0] == "error":
            self._error = outcome[1]
            self._error.add_note(f"raised in the child process (pid {self.pid}) that computed {self.what}:\n{outcome[2]}")
        else:
            _, name, message, text = outcome
            self._error = BesideError(f"{self.what}: {name}: {message} (raised in its child process, pid {self.pid})")
            self._error.add_note(text)

    def result(self) -> T:
        """The computation's value (waits for the child), or its exception raised here."""
        self._collect()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]  # set whenever there is no error

    def close(self) -> None:
        """Kill the child if it still runs, and reap it."""
        if not self._done and self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:  # already gone: waitpid reaps it
                pass
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            os.waitpid(self.pid, 0)
            self._done = True
            self._error = BesideError(f"{self.what}: its child process (pid {self.pid}) was stopped before it finished")

    def __enter__(self) -> "Beside[T]":
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if exc is None or not isinstance(exc, Exception):  # done, or an interrupt: nothing to wait for
            self.close()
            return
        # The caller's work failed: the child's own error, had it run first as before, wins.
        self._collect()
        if self._error is not None:
            raise self._error  # the caller's error stays attached as its context


def beside(compute: Callable[[], T], what: str, fork: bool | None = None) -> Beside[T]:
    """Start ``compute`` in a forked child process (``fork=None``: when :data:`FORK_AVAILABLE`;
    False: in this process, now). ``what`` names it in errors."""
    return Beside(compute, what, fork)
