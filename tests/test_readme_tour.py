"""README.md's Tour, walked command by command in a temporary folder (issue 14: the README cannot drift).

The commands are parsed from the README's Tour code block. The default tier runs every command that
needs no long training, against the Tour's own training command shortened to one epoch per phase;
the slow tier walks the whole block exactly as written. A command in the Tour that this file does
not know fails the test, so a new Tour line needs a decision here.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
AXTRAIN = Path(sys.executable).with_name("axtrain")

# first words -> how the default tier treats the command
FAST = {("axtrain", "--help"), ("axtrain", "data"), ("axtrain", "hw"), ("axtrain", "export"), ("axtrain", "compile"),
        ("axtrain", "inspect"), ("axtrain", "verify"), ("axtrain", "hdl"), ("axtrain", "trace"), ("axtrain", "simulate"),
        ("axtrain", "check"), ("python", "-m")}
SHORTENED = {("axtrain", "train"): ["--epochs", "1", "--pas-epochs", "1"]}  # the trained run the later commands use
SLOW_ONLY = {("axtrain", "pipeline"), ("axtrain", "explore"), ("axtrain", "reproduce"),  # each trains or searches (minutes)
             ("axtrain", "diff")}  # compares with the pipeline's bundle


# Tour commands that fail today, with the reason; the walk asserts that they still fail, so an entry
# must go when its cause is fixed (bringup's `verify --against` was one until fidelity's merge).
KNOWN_FAILING: dict[tuple[str, str, str], str] = {}


def _known_failing(words: list[str]) -> str | None:
    return next((why for key, why in KNOWN_FAILING.items() if tuple(words[:2]) == key[:2] and key[2] in words), None)


def _write_pins(folder: Path) -> None:
    """The pins file the Tour's `check` reads ("a pins file you write"): written here from the Tour's
    own report, as a user would after a first `simulate --report`."""
    import json

    report = json.loads((folder / "out" / "sat.json").read_text())
    cycles = report["latency"]["cycles_per_inference"]
    energy = report["energy"]["joules_per_inference"]
    (folder / "out" / "pins.yaml").write_text(
        f"latency.cycles_per_inference: {{value: {cycles}, abs_tol: 0}}\nenergy.joules_per_inference: {{value: {energy!r}, rel_tol: 1.0e-9}}\n"
    )


def tour_commands(readme: str) -> list[list[str]]:
    """The Tour block's commands as argument lists (comments dropped, a trailing pager pipe cut off)."""
    block = readme.split("\n## Tour\n", 1)[1].split("```bash\n", 1)[1].split("\n```", 1)[0]
    commands = []
    for line in block.splitlines():
        words = shlex.split(line, comments=True)
        if not words or words[0] == "source":
            continue
        if "|" in words:
            words = words[: words.index("|")]
        commands.append(words)
    return commands


def _run(words: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    program = {"axtrain": [str(AXTRAIN)], "python": [sys.executable]}[words[0]]
    return subprocess.run([*program, *words[1:]], cwd=cwd, capture_output=True, text=True, timeout=3600)


def _walk(tmp_path: Path, full: bool) -> list[list[str]]:
    ran = []
    for words in tour_commands((ROOT / "README.md").read_text(encoding="utf-8")):
        key = (words[0], words[1])
        assert key in FAST or key in SHORTENED or key in SLOW_ONLY, f"Tour command not classified in this test: {' '.join(words)}"
        if key in SLOW_ONLY and not full:
            continue
        argv = words + ([] if full else SHORTENED.get(key, []))
        if key == ("axtrain", "check"):
            _write_pins(tmp_path)
        done = _run(argv, tmp_path)
        if _known_failing(words):
            assert done.returncode != 0, f"{' '.join(argv)} works now: remove it from KNOWN_FAILING"
            continue
        assert done.returncode == 0, f"{' '.join(argv)}: exit {done.returncode}\n{done.stderr[-2000:]}"
        ran.append(argv)
    return ran


def test_the_tour_is_parsed_from_the_readme() -> None:
    commands = tour_commands((ROOT / "README.md").read_text(encoding="utf-8"))
    assert ["axtrain", "inspect", "out/sat.bundle", "--asm"] in commands  # the pager pipe is cut off
    assert all(w[0] in ("axtrain", "python") for w in commands)
    # Every path the Tour writes is under out/ (what `make clean` removes).
    for words in commands:
        for option in ("--out", "--report", "--expect"):
            if option in words:
                assert words[words.index(option) + 1].startswith("out/"), words


def test_the_tour_without_long_training(tmp_path: Path) -> None:
    ran = _walk(tmp_path, full=False)
    assert len(ran) >= 12
    for name in ("out/sat/summary.json", "out/sat.onnx", "out/sat.bundle/manifest.json", "out/sat.json", "out/t.vcd"):
        assert (tmp_path / name).is_file(), name
    assert {p.name for p in tmp_path.iterdir()} == {"out"}  # nothing outside out/


@pytest.mark.slow
def test_the_whole_tour_as_written(tmp_path: Path) -> None:
    ran = _walk(tmp_path, full=True)
    assert any(w[:2] == ["axtrain", "reproduce"] for w in ran)
    for name in ("out/sat-pipeline/summary.md", "out/sat-plan.bundle/manifest.json", "out/r/REPORT.md"):
        assert (tmp_path / name).is_file(), name
