"""The fuzz harness: run mutated artifacts through the compiler, bundle reader, verifier, inspector
and config loaders, and classify every case.

A case ends in one of:
    ok          the artifact was accepted (and, for a compiled model, its bundle verifies)
    refused     an AxTrainError with a one-line message (the CLI's exit code 2)
    unexpected  any other exception, a multi-line or empty message, a timeout, or a CLI run that did
                not exit with 0 or 2 and one ``error:`` line

Run as a script (``python tests/hardening/harness.py --target onnx --cases 200``) it builds the seed
artifacts, caps its own address space (``RLIMIT_AS``: what the toolchain needs after import plus
``--memory-mb``), runs the campaign with hypothesis (derandomised: the same cases every run) and
prints one JSON summary line. ``tests/hardening/test_fuzz.py`` runs it in a subprocess.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import resource
import shutil
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import onnx  # noqa: E402
import yaml  # noqa: E402
from hypothesis import HealthCheck, Phase, Verbosity, given, settings, strategies as st  # noqa: E402
from mutate import json_text, mutate_bytes, mutate_npy, mutate_onnx, mutate_program, mutate_tree  # noqa: E402
from seeds import EXTERNAL_DATA, Seeds, build_seeds  # noqa: E402

from axtrain.cli import main as cli_main  # noqa: E402
from axtrain.compiler.cli import summary  # noqa: E402
from axtrain.compiler.package import write_compiled_bundle  # noqa: E402
from axtrain.compiler.pipeline import compile_model  # noqa: E402
from axtrain.errors import AxTrainError  # noqa: E402
from axtrain.formats import bundle as fmt  # noqa: E402
from axtrain.formats.arch import load_arch  # noqa: E402
from axtrain.formats.isa import disassemble  # noqa: E402
from axtrain.formats.technology import load_table  # noqa: E402
from axtrain.runtime.verify import verify_bundle  # noqa: E402

TARGETS = ("onnx", "bundle", "config")


class CaseTimeout(BaseException):
    """Raised by the per-case timer (a BaseException so no ``except Exception`` swallows it)."""


class Miscompile(Exception):
    """A model the compiler accepted produced a bundle that fails ``verify``."""


@dataclass
class Tally:
    """Outcome counts and the unexpected cases (with enough to reproduce them)."""

    target: str
    cases: int = 0
    ok: int = 0
    refused: int = 0
    cli_runs: int = 0
    unexpected: list[dict[str, str]] = field(default_factory=list)
    longest_message: int = 0
    slowest_case_s: float = 0.0
    slowest_case: str = ""
    longest_message_text: str = ""

    def summary(self, wall_s: float) -> dict[str, Any]:
        return {
            "target": self.target, "cases": self.cases, "ok": self.ok, "refused": self.refused, "cli_runs": self.cli_runs,
            "unexpected": len(self.unexpected), "longest_message": self.longest_message, "longest_message_text": self.longest_message_text[:400],
            "slowest_case_s": round(self.slowest_case_s, 3), "slowest_case": self.slowest_case[:120], "wall_s": round(wall_s, 1),
            "unexpected_cases": self.unexpected[:20],
        }


def _on_alarm(signum: int, frame: Any) -> None:
    raise CaseTimeout()


def guarded(fn: Callable[[], Any], timeout_s: float) -> tuple[str, str]:
    """Run ``fn`` under a wall-clock timer; returns (outcome, detail)."""
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout_s)
    try:
        fn()
        return "ok", ""
    except AxTrainError as exc:
        message = str(exc)
        if not message or "\n" in message:
            return "unexpected", f"AxTrainError with a bad message: {message!r}"
        return "refused", message
    except CaseTimeout:
        return "unexpected", f"timeout after {timeout_s} s"
    except BaseException as exc:  # noqa: BLE001 - classifying every failure is the point
        frames = traceback.extract_tb(exc.__traceback__)
        where = next((f"{Path(f.filename).name}:{f.lineno}" for f in reversed(frames) if "axtrain" in f.filename or "/work/" in f.filename), "?")
        return "unexpected", f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]} at {where}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_cli(args: list[str]) -> tuple[int, str, str]:
    """``axtrain ARGS`` in this process: exit code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            cli_main(args)
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    return code, out.getvalue(), err.getvalue()


def check_cli(args: list[str]) -> None:
    """The CLI contract: exit 0, or exit 2 with exactly one ``error:`` line and no traceback."""
    code, _, err = run_cli(args)
    if code == 0:
        return
    lines = err.splitlines()
    if code != 2 or len(lines) != 1 or not lines[0].startswith("error: ") or "Traceback" in err:
        raise AssertionError(f"CLI {args[0]} exit {code}: {err.strip()[:300]!r}")
    raise AxTrainError(lines[0])  # the CLI refused it properly


# ---------------------------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------------------------


def _write_model(draw: Any, seeds: Seeds, case: Path) -> tuple[Path, str]:
    name = draw(st.sampled_from(sorted(seeds.models)))
    source = seeds.models[name]
    model_dir, outside = case / "model", case / "outside"
    model_dir.mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.bin").write_bytes(b"\x01" * 4096)
    if (source.parent / EXTERNAL_DATA).exists():
        shutil.copy(source.parent / EXTERNAL_DATA, model_dir / EXTERNAL_DATA)
    path = model_dir / "model.onnx"
    data = source.read_bytes()
    if draw(st.integers(0, 9)) < 3:
        data, note = mutate_bytes(draw, data)
    else:
        model = onnx.ModelProto()
        model.ParseFromString(data)
        try:
            model, note = mutate_onnx(draw, model, model_dir, outside)
            data = model.SerializeToString()
        except (ValueError, OverflowError, IndexError, TypeError) as exc:
            # An edit that protobuf itself rejects (a value out of its field's range): byte damage instead.
            data, note = mutate_bytes(draw, data)
            note = f"edit-rejected({type(exc).__name__});{note}"
    if name == "external" and draw(st.integers(0, 4)) == 0:
        raw, extra = mutate_bytes(draw, (model_dir / EXTERNAL_DATA).read_bytes())
        (model_dir / EXTERNAL_DATA).write_bytes(raw)
        note += f";external-file:{extra}"
    path.write_bytes(data)
    return path, f"{name}:{note}"


def onnx_case(draw: Any, seeds: Seeds, case: Path, use_cli: bool) -> tuple[Callable[[], Any], str]:
    path, note = _write_model(draw, seeds, case)
    out = case / "bundle"
    if use_cli:
        def run() -> None:
            check_cli(["compile", str(path), "--out", str(out)])
            check_cli(["verify", str(out)])
        return run, note

    def run_api() -> None:
        ir = compile_model(path)
        write_compiled_bundle(ir, out)
        try:
            verify_bundle(out)
        except AxTrainError as exc:
            raise Miscompile(f"accepted model fails verify: {exc}") from None
    return run_api, note


BUNDLE_TARGETS = ["manifest", "manifest", "manifest-bytes", "arch", "layers", "layers", "program", "program", "program-bytes",
                  "weights", "bias", "hex", "golden", "golden", "golden", "missing", "symlink", "files-escape", "not-dir", "benign"]


def _rehash(bundle: Path, name: str) -> None:
    manifest_path = bundle / fmt.MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text())
        manifest["files"][name] = fmt.sha256_file(bundle / name)
        manifest_path.write_text(json.dumps(manifest, indent=1))
    except (ValueError, KeyError, TypeError, OSError):
        pass


def _mutate_bundle(draw: Any, seeds: Seeds, case: Path) -> tuple[Path, str]:
    name = draw(st.sampled_from(sorted(seeds.bundles)))
    bundle = case / "b"
    shutil.copytree(seeds.bundles[name], bundle)
    target = draw(st.sampled_from(BUNDLE_TARGETS))
    rehash = draw(st.integers(0, 9)) < 7  # mostly: so the checks behind the hashes are reached
    file: str | None = None
    note = ""
    if target == "manifest":
        tree, note = mutate_tree(draw, json.loads((bundle / fmt.MANIFEST).read_text()))
        (bundle / fmt.MANIFEST).write_text(json_text(tree))
    elif target == "manifest-bytes":
        data, note = mutate_bytes(draw, (bundle / fmt.MANIFEST).read_bytes())
        (bundle / fmt.MANIFEST).write_bytes(data)
    elif target in ("arch", "layers"):
        file = fmt.ARCH if target == "arch" else fmt.LAYERS
        tree, note = mutate_tree(draw, json.loads((bundle / file).read_text()))
        (bundle / file).write_text(json_text(tree))
    elif target in ("program", "program-bytes", "weights", "bias", "hex"):
        file = {"program": fmt.PROGRAM_BIN, "program-bytes": fmt.PROGRAM_BIN, "weights": fmt.WEIGHTS_BIN, "bias": fmt.BIAS_BIN,
                "hex": draw(st.sampled_from([fmt.WEIGHTS_HEX, fmt.BIAS_HEX, fmt.PROGRAM_ASM]))}[target]
        mutator = mutate_program if target == "program" else mutate_bytes
        data, note = mutator(draw, (bundle / file).read_bytes())
        (bundle / file).write_bytes(data)
    elif target == "golden":
        golden = sorted(str(p.relative_to(bundle)) for p in (bundle / "golden").glob("*.npy"))
        file = draw(st.sampled_from(golden))
        data, note = mutate_npy(draw, (bundle / file).read_bytes())
        (bundle / file).write_bytes(data)
    elif target == "missing":
        file = draw(st.sampled_from(sorted(fmt.REQUIRED_FILES) + [fmt.MANIFEST, "golden/layer_0.npy"]))
        (bundle / file).unlink()
        if rehash and file != fmt.MANIFEST:  # also drop it from the manifest
            manifest = json.loads((bundle / fmt.MANIFEST).read_text())
            manifest["files"].pop(file, None)
            (bundle / fmt.MANIFEST).write_text(json.dumps(manifest))
        note, file = f"missing:{file}", None
    elif target == "symlink":
        file = draw(st.sampled_from([fmt.PROGRAM_BIN, fmt.WEIGHTS_BIN, fmt.LAYERS, fmt.GOLDEN_INPUTS]))
        outside = case / "outside.bin"
        outside.write_bytes((bundle / file).read_bytes())
        (bundle / file).unlink()
        (bundle / file).symlink_to(outside)
        note = f"symlink:{file}"
    elif target == "files-escape":
        manifest = json.loads((bundle / fmt.MANIFEST).read_text())
        (case / "secret").write_bytes(b"secret")
        evil = draw(st.sampled_from(["../secret", str(case / "secret"), "golden/../../secret", "", ".", "golden"]))
        manifest["files"][evil] = fmt.sha256_file(case / "secret")
        (bundle / fmt.MANIFEST).write_text(json.dumps(manifest))
        note = f"files-escape:{evil!r}"
    elif target == "benign":
        # What must keep loading: the manifest rewritten with other whitespace and key order, a
        # different source file name (not part of the bundle's identity, docs/bundle.md).
        manifest = json.loads((bundle / fmt.MANIFEST).read_text())
        manifest["source_onnx_name"] = draw(st.sampled_from(["renamed.onnx", "model (copy).onnx", "m.onnx"]))
        (bundle / fmt.MANIFEST).write_text(json.dumps(dict(reversed(list(manifest.items()))), indent=draw(st.sampled_from([None, 1, 4]))))
        note = "benign:rewritten-manifest"
    elif target == "not-dir":
        which = draw(st.sampled_from(["bundle-is-file", "manifest-is-dir"]))
        if which == "bundle-is-file":
            shutil.rmtree(bundle)
            bundle.write_bytes(b"{}")
        else:
            (bundle / fmt.MANIFEST).unlink()
            (bundle / fmt.MANIFEST).mkdir()
        note = which
    if file is not None and rehash:
        _rehash(bundle, file)
        note += ";rehash"
    return bundle, f"{name}:{target}:{note}"


def bundle_case(draw: Any, seeds: Seeds, case: Path, use_cli: bool) -> tuple[Callable[[], Any], str]:
    bundle, note = _mutate_bundle(draw, seeds, case)
    if use_cli:
        command = draw(st.sampled_from(["verify", "inspect", "inspect-asm"]))

        def run() -> None:
            check_cli(["inspect", str(bundle), "--asm"] if command == "inspect-asm" else [command, str(bundle)])
        return run, f"{note};cli:{command}"

    def run_api() -> None:
        summary(bundle)
        loaded = fmt.load_bundle(bundle)
        disassemble(loaded.program_bytes)
        verify_bundle(bundle)
    return run_api, note


YAML_SPECIALS = [
    "a: &a [1, 2]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c]\n"
    "e: &e [*d, *d, *d, *d, *d, *d, *d, *d]\nf: [*e, *e, *e, *e, *e, *e, *e, *e]\n",
    "!!python/object/apply:os.system ['echo pwned']\n",
    "pe_rows: !!python/name:os.system\n",
    "[" * 3000 + "]" * 3000,
    "pe_rows: " + "9" * 5000 + "\n",
    "pe_rows: 0x" + "f" * 5000 + "\n",
    "pe_rows: 1e999999\n",
    "? [1, 2]\n: 3\n",
    "pe_rows: .nan\nclock_hz: .inf\n",
    "--- 1\n--- 2\n",
    "\t\x00\xff",
    "sram_voltage: -.inf\nepochs: 1_000_000_000_000_000_000_000\n",
]


def config_case(draw: Any, seeds: Seeds, case: Path, use_cli: bool) -> tuple[Callable[[], Any], str]:
    name = draw(st.sampled_from(sorted(seeds.configs)))
    source = seeds.configs[name]
    path = case / source.name
    action = draw(st.sampled_from(["tree", "tree", "tree", "bytes", "special"]))
    text = source.read_text()
    if action == "tree":
        tree, note = mutate_tree(draw, yaml.safe_load(text))
        if source.suffix == ".json" or draw(st.booleans()):
            path.write_text(json_text(tree))
        else:
            try:
                path.write_text(yaml.safe_dump(tree))
            except (yaml.YAMLError, RecursionError, ValueError):
                path.write_text(json_text(tree))
    elif action == "bytes":
        data, note = mutate_bytes(draw, text.encode())
        path.write_bytes(data)
    else:
        special = draw(st.sampled_from(YAML_SPECIALS))
        path.write_bytes(special.encode("utf-8", "surrogateescape") if isinstance(special, str) else special)
        note = f"special:{special[:30]!r}"
    note = f"{name}:{action}:{note}"
    compile_with = draw(st.integers(0, 3)) == 0

    if name.startswith("arch"):
        if use_cli:
            def run_cli_arch() -> None:
                check_cli(["compile", str(seeds.models["mlp"]), "--out", str(case / "out"), "--arch", str(path)])
            return run_cli_arch, note + ";cli"

        def run_arch() -> None:
            arch = load_arch(path)
            if compile_with:
                write_compiled_bundle(compile_model(seeds.models["cnn"], arch), case / "out")
                verify_bundle(case / "out")
        return run_arch, note
    if name.startswith("technology"):
        return (lambda: load_table(path)), note

    def run_train() -> None:
        from axtrain.trainer.config import load_config

        load_config(path).resolved()
    return run_train, note + ";trainer"


CASES = {"onnx": onnx_case, "bundle": bundle_case, "config": config_case}


def campaign(target: str, cases: int, seeds: Seeds, work: Path, timeout_s: float, cli_every: int) -> Tally:
    """Run ``cases`` derandomised hypothesis cases of ``target``; returns the tally."""
    tally = Tally(target)
    make = CASES[target]

    @settings(max_examples=cases, derandomize=True, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck), verbosity=Verbosity.quiet)
    @given(st.data())
    def one(data: st.DataObject) -> None:
        number = tally.cases
        case = work / f"case{number}"
        shutil.rmtree(case, ignore_errors=True)  # left by a draw hypothesis abandoned (not counted)
        case.mkdir()
        # Drawn, not counted: a case's draws must depend on the draws alone (hypothesis replays them).
        use_cli = cli_every > 0 and data.draw(st.integers(0, cli_every - 1)) == 0
        try:
            fn, note = make(data.draw, seeds, case, use_cli)
        except Exception as exc:  # noqa: BLE001 - a harness problem, reported as such
            tally.cases += 1
            tally.unexpected.append({"case": str(number), "what": "harness", "error": f"{type(exc).__name__}: {exc}"})
            return
        # Counted only now: hypothesis may abandon a draw midway (StopTest), which is not a case.
        tally.cases += 1
        tally.cli_runs += use_cli
        start = time.perf_counter()
        outcome, detail = guarded(fn, timeout_s)
        elapsed = time.perf_counter() - start
        if elapsed > tally.slowest_case_s:
            tally.slowest_case_s, tally.slowest_case = elapsed, note
        if outcome == "ok":
            tally.ok += 1
        elif outcome == "refused":
            tally.refused += 1
            if len(detail) > tally.longest_message:
                tally.longest_message, tally.longest_message_text = len(detail), detail
        else:
            record = {"case": str(number), "what": note, "error": detail}
            tally.unexpected.append(record)
        shutil.rmtree(case, ignore_errors=True)

    one()
    return tally


def vm_bytes() -> int:
    """This process's current virtual memory size (what RLIMIT_AS counts)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", choices=TARGETS, required=True)
    parser.add_argument("--cases", type=int, default=100)
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per case")
    parser.add_argument("--memory-mb", type=int, default=1024, help="address space allowed beyond the loaded toolchain")
    parser.add_argument("--cli-every", type=int, default=10, help="run every Nth case through the CLI (0: never)")
    parser.add_argument("--json", type=Path, help="also write the summary here")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="axtrain-fuzz-") as tmp:
        seeds = build_seeds(Path(tmp) / "seeds")
        import axtrain.trainer.config  # noqa: F401 - loaded before the cap, like the rest of the toolchain

        # Warm up every path once so lazily imported modules count as "the toolchain", not a case.
        verify_bundle(seeds.bundles["mlp"])
        summary(seeds.bundles["mlp"])
        run_cli(["inspect", str(seeds.bundles["mlp"])])
        if args.memory_mb > 0:
            cap = vm_bytes() + args.memory_mb * 1024 * 1024
            _, hard = resource.getrlimit(resource.RLIMIT_AS)
            resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
        work = Path(tmp) / "cases"
        work.mkdir()
        tally = campaign(args.target, args.cases, seeds, work, args.timeout, args.cli_every)
    result = tally.summary(time.perf_counter() - start)
    line = json.dumps(result)
    if args.json:
        args.json.write_text(line + "\n")
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
