"""Writing commands on a machine that refuses the write: full disk, out of inodes, file-size limit,
read-only file system, permission denied, a parent that is a file, a name or path too long, a
deleted working directory.

Each case must end with exit 2 and one ``error:`` line naming the output, leave no temporary and no
final-named file that a successful run would not have written (and every file it left whole), and,
where the fault can be lifted (space freed), the rerun must succeed with the bytes of an
uninterrupted run; a training run resumes from the checkpoint the message says is kept.

Every command runs in-process (``machine.cli``): the faults are real kernel answers (see
``machine.py``), so no subprocess is needed and the cases stay fast.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable

import pytest
from _killer import check_tree, tree_hashes
from harness import run_cli
from machine import IS_ROOT, cli, file_size_limit, fill, listing, tmpfs, unprivileged

# name -> (arguments given the chain and the primary output, the primary output's relative name)
Builder = Callable[[object, str], list[str]]
COMMANDS: dict[str, tuple[Builder, str]] = {
    "export": (lambda c, out: ["export", str(c.run), "--out", out], "model.onnx"),
    "compile": (lambda c, out: ["compile", str(c.onnx), "--out", out], "model.bundle"),
    "simulate-report": (lambda c, out: ["simulate", str(c.bundle), "--app", "breast-cancer", "--runs", "2",
                                        "--sram-voltage", "0.7", "--report", out], "report.json"),
    "simulate-both": (lambda c, out: ["simulate", str(c.bundle), "--app", "breast-cancer", "--runs", "2", "--multiplier", "K2",
                                      "--dump-outputs", "outputs.npy", "--report", out], "report.json"),
    "train": (lambda c, out: ["train", "--app", "breast-cancer", "--method", "bp", "--epochs", "3", "--out", out, "--quiet"], "run"),
    "explore": (lambda c, out: ["explore", str(c.bundle), "--app", "breast-cancer", "--out", out, "--modes", "exact,drum:2",
                                "--voltages", "1.1,0.7", "--runs", "2", "--report", "explore.json"], "plan.bundle"),
    "pipeline": (lambda c, out: ["pipeline", "--app", "breast-cancer", "--method", "bp", "--epochs", "2", "--runs", "2",
                                 "--out", out], "pipe"),
}
CHEAP = ("export", "compile", "simulate-report", "simulate-both")  # the commands every fault class is tried on
ALL = tuple(COMMANDS)


@pytest.fixture(scope="module")
def references(tiny_chain, tmp_path_factory) -> dict[str, dict[str, str]]:
    """Each command run once, uninterrupted, in its own folder: ``{command: {file: sha256}}``."""
    found = {}
    for name, (build, out) in COMMANDS.items():
        where = tmp_path_factory.mktemp(f"ref-{name}")
        code, _, err = cli(build(tiny_chain, out), cwd=where)
        assert code == 0, (name, err)
        found[name] = tree_hashes(where)
    return found


def _assert_refused(code: int, err: str, names: str) -> str:
    """Exit 2 and one ``error:`` line, the last (``pipeline`` logs its stages on stderr before it)."""
    lines = err.strip().splitlines()
    assert code == 2, (code, err[-2000:])
    errors = [line for line in lines if "error:" in line]
    assert len(errors) == 1 and lines[-1].startswith("error: ") and "Traceback" not in err, err[-2000:]
    assert names in lines[-1], (names, lines[-1])
    return lines[-1]


def _assert_nothing_extra(root: Path, reference: dict[str, str]) -> None:
    """No temporary, no lock, and only whole files a successful run also writes."""
    counts = check_tree(root)
    assert counts["temporaries"] == 0, listing(root)
    left = {p for p, kind in listing(root).items() if kind == "f" and not p.startswith("filler")}
    assert left <= set(reference), sorted(left - set(reference))


# ---------------------------------------------------------------------------------------------
# A full disk: file-size limit (anywhere) and a real ENOSPC on a nearly full tmpfs (root)
# ---------------------------------------------------------------------------------------------

# Bytes each command may write before the limit: below its largest file, above its smallest.
FSIZE = {"export": 4096, "compile": 8192, "simulate-report": 2048, "simulate-both": 2048, "train": 40_000,
         "explore": 8192, "pipeline": 40_000}


@pytest.mark.parametrize("name", ALL)
def test_file_size_limit_refuses_cleanly_and_the_rerun_gives_the_same_bytes(name, tiny_chain, references, tmp_path):
    build, out = COMMANDS[name]
    with file_size_limit(FSIZE[name]):
        code, _, err = cli(build(tiny_chain, out), cwd=tmp_path)
    line = _assert_refused(code, err, "file too large")
    assert out in line, line
    if name == "train":
        assert "rerun the same command" in line
    _assert_nothing_extra(tmp_path, references[name])
    if name == "simulate-both":
        assert not (tmp_path / "outputs.npy").exists() and not (tmp_path / "report.json").exists()  # both or neither
    code, _, err = cli(build(tiny_chain, out), cwd=tmp_path)
    assert code == 0, err
    assert tree_hashes(tmp_path) == references[name]


LEAVE = {"export": 4096, "compile": 16384, "simulate-report": 4096, "simulate-both": 4096, "train": 120_000,
         "explore": 16384, "pipeline": 120_000}


@pytest.mark.parametrize("name", ALL)
def test_full_disk_refuses_cleanly_and_the_rerun_after_freeing_space_gives_the_same_bytes(name, tiny_chain, references, tmp_path):
    build, out = COMMANDS[name]
    with tmpfs(tmp_path / "disk", "size=2m") as disk:
        work = disk / "work"
        work.mkdir()
        filler = fill(disk, LEAVE[name])
        code, _, err = cli(build(tiny_chain, out), cwd=work)
        line = _assert_refused(code, err, "no space left on the device")
        _assert_nothing_extra(work, references[name])
        if name == "train" and (work / "run" / "checkpoint.safetensors").exists():
            assert "checkpoint" in line and "is kept" in line and "rerun the same command to resume" in line
        filler.unlink()
        code, _, err = cli(build(tiny_chain, out), cwd=work)
        assert code == 0, err
        assert tree_hashes(work) == references[name]


def test_training_resumes_after_a_full_disk_stopped_it_mid_run(tiny_chain, references, tmp_path):
    """The issue's case: the disk fills after some epochs; the checkpoint is kept and named; after
    space is freed the same command resumes and ends with the weights of an uninterrupted run."""
    build, out = COMMANDS["train"]
    with tmpfs(tmp_path / "disk", "size=2m") as disk:
        work = disk / "work"
        work.mkdir()
        filler = fill(disk, 150_000)  # one checkpoint fits, its successor beside it does not
        code, _, err = cli(build(tiny_chain, out), cwd=work)
        line = _assert_refused(code, err, "no space left on the device")
        assert (work / "run" / "checkpoint.safetensors").is_file(), "the test no longer stops the run mid-way"
        assert "run's last checkpoint" in line and "rerun the same command to resume" in line
        filler.unlink()
        code, _, err = cli(build(tiny_chain, out), cwd=work)
        assert code == 0, err
        assert tree_hashes(work) == references["train"]


@pytest.mark.parametrize("name", CHEAP + ("train",))
def test_out_of_inodes_refuses_cleanly(name, tiny_chain, references, tmp_path):
    build, out = COMMANDS[name]
    with tmpfs(tmp_path / "disk", "size=2m,nr_inodes=2") as disk:
        code, _, err = cli(build(tiny_chain, out), cwd=disk)
        _assert_refused(code, err, "no space left on the device")
        _assert_nothing_extra(disk, references[name])


# ---------------------------------------------------------------------------------------------
# Read-only file system, permission denied
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_read_only_file_system_is_refused_naming_the_output(name, tiny_chain, tmp_path):
    build, out = COMMANDS[name]
    with tmpfs(tmp_path / "ro", "size=1m,ro") as disk:
        code, _, err = cli(build(tiny_chain, str(disk / out)), cwd=tmp_path)
        line = _assert_refused(code, err, "read-only file system")
        assert str(disk / out) in line, line
        assert listing(disk) == {}


@pytest.mark.parametrize("name", CHEAP + ("train",))
def test_permission_denied_is_refused_naming_the_output(name, tiny_chain, tmp_path_factory):
    build, out = COMMANDS[name]
    # A folder only its owner (root, or the developer after chmod) may write, readable by all.
    base = Path(tiny_chain.root) / f"locked-{name}"
    base.mkdir()
    os.chmod(base, 0o555)
    try:
        if not IS_ROOT and os.access(base, os.W_OK):
            pytest.skip("this user may write into a mode 0555 folder (a capability): no EACCES to meet")
        with unprivileged():
            code, _, err = cli(build(tiny_chain, str(base / out)), cwd=base)
        line = _assert_refused(code, err, "permission denied")
        assert str(base / out) in line or (name == "simulate-both" and str(base / "outputs.npy") in line), line
        assert listing(base) == {}
    finally:
        os.chmod(base, 0o755)
        shutil.rmtree(base, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Paths the file system cannot hold
# ---------------------------------------------------------------------------------------------

def _long_name(out: str) -> str:
    return "n" * 256 + out  # past NAME_MAX (255)


def _long_path(out: str) -> str:
    return "/".join(["d" * 200] * 21) + "/" + out  # past PATH_MAX (4096)


@pytest.mark.parametrize("shape", ["long-name", "long-path", "parent-is-file"])
@pytest.mark.parametrize("name", CHEAP + ("train", "pipeline"))
def test_paths_the_file_system_refuses(shape, name, tiny_chain, references, tmp_path):
    build, out = COMMANDS[name]
    if shape == "long-name":
        target, reason = _long_name(out), "file name or path too long"
    elif shape == "long-path":
        target, reason = _long_path(out), "file name or path too long"
    else:
        (tmp_path / "afile").write_text("a file, not a folder\n")
        target, reason = f"afile/{out}", "is a file, not a folder"
    code, _, err = cli(build(tiny_chain, target), cwd=tmp_path)
    line = _assert_refused(code, err, reason)
    assert target[:60] in line, line
    assert len(line) < 600, len(line)
    assert {p for p in listing(tmp_path)} <= {"afile"}


@pytest.mark.parametrize("name", CHEAP + ("train",))
def test_deleted_working_directory_is_refused(name, tiny_chain, tmp_path):
    build, out = COMMANDS[name]
    gone = tmp_path / "gone"
    gone.mkdir()
    here = os.getcwd()
    os.chdir(gone)
    try:
        gone.rmdir()
        code, _, err = run_cli(build(tiny_chain, out))
    finally:
        os.chdir(here)
    _assert_refused(code, err, "the working directory no longer exists")
