"""Helpers of the kill-and-resume and determinism tests: run CLI commands in fresh processes, SIGKILL
them at seeded random moments, check that no final-named artifact is partial, and hash trees.

Nothing here imports torch: the tests stay cheap to collect, and the LeNet-size ONNX model is made
by the real exporter (``axtrain.trainer.export``, torch-free) from integer layers drawn with numpy.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
# Names axtrain.atomic gives its temporaries: allowed to be left behind by a kill, never final names.
TEMP_PREFIXES = (".tmp-", ".old-")
# Files that are not artifacts: output locks (axtrain/locks.py: ``.lock`` inside a folder, ``.<name>.lock``
# beside a file), left by a kill and taken over by the next command.
NOT_ARTIFACTS = (".lock",)


def _is_lock(name: str) -> bool:
    return name in NOT_ARTIFACTS or (name.startswith(".") and name.endswith(".lock"))
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_END = b"IEND\xaeB`\x82"


# ---------------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------------


def axtrain_command(*args: str) -> list[str]:
    """``axtrain ARGS`` run by this interpreter (the installed entry point, without relying on PATH)."""
    return [PYTHON, "-c", "import sys; from axtrain.cli import main; sys.exit(main())", *args]


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a child: one BLAS/OpenMP thread (2 shared cores), no progress bars' colour
    codes, plus ``extra``. PYTHONHASHSEED is fixed unless ``extra`` sets it."""
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "PYTHONHASHSEED": "0", "NO_COLOR": "1"})
    env.update(extra)
    return env


def run_to_end(cmd: Sequence[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``cmd`` to completion; fail the test (with its output) unless it exits with 0."""
    done = subprocess.run(list(cmd), cwd=cwd, env=env or child_env(), capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(cmd[3:])} exited with {done.returncode}\nstdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}")
    return done


@dataclass(frozen=True)
class Outcome:
    """How one killed launch ended: ``killed`` (SIGKILL landed) or the exit code it reached first."""

    killed: bool
    returncode: int
    seconds: float  # from launch to the kill (or the exit)
    triggered: bool  # the trigger fired before the kill (False: killed on the launch clock)


def newer_than(root: Path, since_ns: int) -> Callable[[], bool]:
    """A trigger: some entry under ``root`` (temporaries included) was created or changed after ``since_ns``."""

    def fired() -> bool:
        if not root.exists():
            return False
        for dirpath, dirnames, filenames in os.walk(root):
            for name in (*dirnames, *filenames):
                try:
                    if os.lstat(os.path.join(dirpath, name)).st_mtime_ns > since_ns:
                        return True
                except FileNotFoundError:  # renamed away while we looked
                    return True
        return False

    return fired


def temp_appears(directory: Path) -> Callable[[], bool]:
    """A trigger: a *new* temporary (``.tmp-*``) entry appears in ``directory``: a write is in progress.
    Temporaries already there (left by earlier kills) do not count."""

    def temporaries() -> set[str]:
        try:
            return {name for name in os.listdir(directory) if name.startswith(".tmp-")}
        except FileNotFoundError:
            return set()

    before = temporaries()
    return lambda: bool(temporaries() - before)


def launch_and_kill(
    cmd: Sequence[str],
    cwd: Path,
    delay: float,
    trigger: Callable[[], bool] | None = None,
    env: dict[str, str] | None = None,
    poll: float = 0.005,
    timeout: float = 600,
) -> Outcome:
    """Start ``cmd`` in its own process group and SIGKILL the whole group ``delay`` seconds after
    ``trigger`` fires (or after launch without one). Pool workers die with their parent, as when a
    job is killed or a machine loses power. Returns how it ended."""
    start = time.monotonic()
    proc = subprocess.Popen(
        list(cmd), cwd=cwd, env=env or child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        triggered = trigger is None
        while not triggered and proc.poll() is None:
            if time.monotonic() - start > timeout:
                raise AssertionError(f"{' '.join(cmd[3:])}: trigger never fired in {timeout} s")
            triggered = trigger()  # type: ignore[misc]
            if not triggered:
                time.sleep(poll)
        deadline = time.monotonic() + delay
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(min(poll, max(0.0, deadline - time.monotonic())))
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return Outcome(True, proc.returncode, time.monotonic() - start, trigger is not None and triggered)
        return Outcome(False, proc.returncode, time.monotonic() - start, trigger is not None and triggered)
    finally:
        if proc.poll() is None:  # the test failed while the child ran: never leave it behind
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # grandchildren that outlived a normal exit


# ---------------------------------------------------------------------------------------------
# "No final-named artifact is partial"
# ---------------------------------------------------------------------------------------------


def is_temporary(relative: Path) -> bool:
    """True for an axtrain.atomic temporary or anything inside one."""
    return any(part.startswith(TEMP_PREFIXES) for part in relative.parts)


def _check_file(path: Path) -> None:
    """Raise if ``path`` (a final-named file outside a bundle) is not a whole artifact of its kind."""
    data = path.read_bytes()
    suffix = path.suffix
    if suffix == ".json":
        json.loads(data)
    elif suffix == ".jsonl":
        text = data.decode("utf-8")
        assert text == "" or text.endswith("\n"), "no final newline"
        for line in text.splitlines():
            json.loads(line)
    elif suffix == ".safetensors":
        from safetensors.numpy import load

        load(data)
    elif suffix == ".onnx":
        import onnx

        onnx.checker.check_model(onnx.load_from_string(data), full_check=True)
    elif suffix == ".npy":
        from axtrain.formats.bundle import read_npy

        read_npy(path)
    elif suffix == ".csv":
        text = data.decode("utf-8")
        assert text.endswith("\n"), "no final newline"
        rows = list(csv.reader(io.StringIO(text)))
        assert rows and all(len(row) == len(rows[0]) for row in rows), "ragged rows"
    elif suffix == ".png":
        assert data.startswith(PNG_SIGNATURE) and data.endswith(PNG_END), "not a whole PNG"
    elif suffix in (".md", ".txt"):
        assert data.decode("utf-8").endswith("\n"), "no final newline"
    else:
        raise AssertionError(f"no checker for {suffix or 'extension-less'} files: teach _killer.check_tree")


def check_tree(root: Path) -> dict[str, int]:
    """Check every final-named artifact under ``root``; returns counts (files, bundles, temporaries).

    A directory holding ``manifest.json`` is a bundle and must pass ``load_bundle`` (hashes, decode,
    static checks); every other file is checked by its extension (JSON parses, safetensors loads,
    ONNX passes the checker, PNG ends with IEND, text ends with a newline, ...). ``.tmp-*``/``.old-*``
    entries are what a kill may leave behind; they are counted, not checked.
    """
    from axtrain.formats.bundle import MANIFEST, load_bundle

    counts = {"files": 0, "bundles": 0, "temporaries": 0}
    if not root.exists():
        return counts
    bundles: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        relative = here.relative_to(root)
        temporaries = [n for n in (*dirnames, *filenames) if n.startswith(TEMP_PREFIXES)]
        counts["temporaries"] += len(temporaries)
        dirnames[:] = sorted(n for n in dirnames if not n.startswith(TEMP_PREFIXES))
        if MANIFEST in filenames:
            bundles.append(here)
            dirnames[:] = []  # load_bundle checks everything inside
            continue
        for name in sorted(filenames):
            if name.startswith(TEMP_PREFIXES) or _is_lock(name):
                continue
            try:
                _check_file(here / name)
            except Exception as exc:  # noqa: BLE001 - any failure means a partial artifact
                raise AssertionError(f"partial artifact {relative / name}: {type(exc).__name__}: {exc}") from None
            counts["files"] += 1
    for bundle in bundles:
        try:
            load_bundle(bundle)
        except Exception as exc:  # noqa: BLE001
            raise AssertionError(f"partial bundle {bundle.relative_to(root)}: {exc}") from None
        counts["bundles"] += 1
    return counts


# ---------------------------------------------------------------------------------------------
# Hashes
# ---------------------------------------------------------------------------------------------


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tree_hashes(root: Path, keep: Callable[[Path], bool] = lambda p: True) -> dict[str, str]:
    """``{relative path: sha256}`` of every final-named file under ``root`` that ``keep`` accepts
    (temporaries left by kills are not part of the result)."""
    found: dict[str, str] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = path.relative_to(root)
        if not is_temporary(relative) and keep(relative):
            found[relative.as_posix()] = sha256(path.read_bytes())
    return found


def assert_same_trees(expected: dict[str, str], actual: dict[str, str], what: str) -> None:
    """Equal file sets and equal hashes, with a readable list of the differences."""
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    changed = sorted(k for k in set(expected) & set(actual) if expected[k] != actual[k])
    assert not (missing or extra or changed), f"{what}: missing {missing}, extra {extra}, different {changed}"


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------


def lenet_onnx(path: Path, seed: int = 0, multiplier: str = "drum:2") -> Path:
    """A LeNet-5-size annotated ONNX file (61,706 parameters) written by the real exporter from
    integer layers drawn with ``seed``: what ``axtrain export`` makes of a trained mnist-cnn run,
    without training one."""
    from axtrain.hwmodels.fixedpoint import FixedPointFormat as F
    from axtrain.hwmodels.layers import QuantizedLayer
    from axtrain.hwmodels.multipliers import parse_mode
    from axtrain.trainer.export import export_layers, save_model

    rng = np.random.default_rng(seed)
    mode = (parse_mode(multiplier),)

    def weighted(name: str, op: str, shape: tuple[int, ...], fin: int, fout: int, relu: bool, padding: int = 0) -> QuantizedLayer:
        w = rng.integers(-40, 41, size=shape, dtype=np.int64)
        b = rng.integers(-300, 301, size=shape[0], dtype=np.int64)
        return QuantizedLayer(name, op, F(8, fin), F(8, fout), weight=w, weight_format=F(8, 7), bias=b, relu=relu,
                              multipliers=mode, padding=padding)

    layers = [
        weighted("conv1", "conv", (6, 1, 5, 5), 7, 4, True, padding=2),
        QuantizedLayer("pool1", "maxpool", F(8, 4), F(8, 4), kernel=2, stride=2),
        weighted("conv2", "conv", (16, 6, 5, 5), 4, 2, True),
        QuantizedLayer("pool2", "maxpool", F(8, 2), F(8, 2), kernel=2, stride=2),
        QuantizedLayer("flatten1", "flatten", F(8, 2), F(8, 2)),
        weighted("fc1", "dense", (120, 400), 2, 1, True),
        weighted("fc2", "dense", (84, 120), 1, 1, True),
        weighted("fc3", "dense", (10, 84), 1, 0, False),
    ]
    model = export_layers(layers, (1, 28, 28), {"app": "mnist-cnn", "method": "bp", "seed": seed})
    return save_model(model, path)


def delays(rng: np.random.Generator, count: int, low: float, high: float) -> Iterable[float]:
    """``count`` seeded delays, uniform in [low, high) seconds."""
    return (float(x) for x in rng.uniform(low, high, size=count))
