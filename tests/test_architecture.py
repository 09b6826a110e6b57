"""The import rule of docs/architecture.md, checked on the real import graph of the source tree.

The layer table is read from docs/architecture.md itself (the block after ``<!-- import-rule -->``),
so the picture and the check cannot drift apart. Every ``import`` counts: module level, inside
functions and under ``TYPE_CHECKING``. Checked:

* no module imports a unit of a higher layer, nor another unit of its own layer;
* hwmodels/ imports nothing of ours but ``axtrain.errors``;
* the module graph has no cycles;
* an import inside a function, outside the CLI layer, carries a one-line reason (a comment on the
  line of the import, or on the line above the block of imports it belongs to).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"
# Source folders and the import package each becomes (setup.py maps them the same way).
FOLDERS = {"axtrain": "axtrain", "compiler": "axtrain.compiler", "runtime": "axtrain.runtime", "trainer": "axtrain.trainer", "hwmodels": "axtrain.hwmodels"}
CLI_UNIT = "cli"
# Function-level imports in modules another engineer is rewriting now, with who and why. Each entry
# is one function; remove it when that work lands (the test then checks the function like any other).
PENDING = {
    ("runtime/interpreter.py", "run_bundle"): "runtime internals are being restructured (issue 16 Part A, core)",
}


@dataclass(frozen=True)
class Import:
    """One ``import`` statement of ours: who imports what, where, and whether inside a function."""

    importer: str
    target: str
    path: Path
    line: int
    in_function: bool


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Every source module of the package: dotted name -> file."""
    out: dict[str, Path] = {}
    for folder, package in FOLDERS.items():
        for path in sorted((root / folder).rglob("*.py")):
            parts = [p for p in path.relative_to(root / folder).with_suffix("").parts if p != "__init__"]
            if folder == "axtrain" and parts and parts[0] in FOLDERS:
                continue
            out[".".join([package, *parts])] = path
    return out


def read_layers(doc: Path = DOC) -> list[tuple[int, list[str]]]:
    """``[(layer, [unit, ...])]`` from the doc's rule block: lines ``layer N  unit, unit, ...``."""
    text = doc.read_text(encoding="utf-8")
    block = text.split("<!-- import-rule -->", 1)[1].split("```", 2)[1]
    layers = []
    for line in block.splitlines():
        match = re.match(r"^layer (\d+)\s+(.+)$", line.strip())
        if match:
            units = [u.strip().split(" ")[0] for u in match.group(2).split(",") if u.strip()]
            layers.append((int(match.group(1)), units))
    return layers


class Rule:
    """Which unit (a package, or a single module) a module belongs to, and the unit's layer.

    Units are declared by dotted name; a module belongs to the longest declared prefix of its name
    (the bare package ``axtrain`` only to itself). Every module named ``cli`` and every unit of the
    top layer form one unit, the CLI layer."""

    def __init__(self, layers: list[tuple[int, list[str]]]) -> None:
        self.layer = {unit: number for number, units in layers for unit in units if not unit.startswith("*")}
        self.top = max(number for number, _ in layers)

    def unit(self, module: str) -> str:
        """The unit of ``module`` (AssertionError when no declared unit holds it)."""
        parts = module.split(".")
        if parts[-1] == "cli":
            return CLI_UNIT
        for end in range(len(parts), 0, -1):
            prefix = ".".join(parts[:end])
            if prefix in self.layer and (end > 1 or module == prefix):
                return CLI_UNIT if self.layer[prefix] == self.top else prefix
        raise AssertionError(f"{module} belongs to no unit of docs/architecture.md's import rule")

    def level(self, unit: str) -> int:
        """The layer of ``unit``."""
        return self.top if unit == CLI_UNIT else self.layer[unit]


def resolve(target: str, names: dict[str, Path]) -> str | None:
    """The module an import name loads (a name inside a module -> that module)."""
    while target and target not in names:
        target = target.rpartition(".")[0]
    return target or None


def imports(names: dict[str, Path]) -> list[Import]:
    """Every import of one of our modules, from every module."""
    found: list[Import] = []
    for module, path in names.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        parents: dict[ast.AST, ast.AST] = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}

        def inside_function(node: ast.AST, parents: dict[ast.AST, ast.AST] = parents) -> bool:
            while node in parents:
                node = parents[node]
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                    return True
            return False

        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.split(".")[0] == "axtrain":
                for alias in node.names:  # ``from P import m`` loads P.m when m is a module, else P
                    full = f"{node.module}.{alias.name}"
                    targets.append(full if full in names else node.module)
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names if alias.name.split(".")[0] == "axtrain"]
            for target in targets:
                resolved = resolve(target, names)
                # A submodule always runs inside its package's __init__: that edge is no dependency.
                if resolved and resolved != module and not module.startswith(resolved + "."):
                    found.append(Import(module, resolved, path, node.lineno, inside_function(node)))
    return found


def violations(edges: list[Import], rule: Rule) -> list[str]:
    """The imports that break the layer rule, one line each."""
    bad = []
    for edge in edges:
        a, b = rule.unit(edge.importer), rule.unit(edge.target)
        where = f"{edge.path.relative_to(ROOT)}:{edge.line}: {edge.importer} imports {edge.target}"
        if a == "axtrain.hwmodels" and b not in ("axtrain.hwmodels", "axtrain.errors"):
            bad.append(f"{where} (hwmodels imports nothing of ours but axtrain.errors)")
        elif a != b and rule.level(b) >= rule.level(a):
            bad.append(f"{where} ({b}, layer {rule.level(b)}, is not below {a}, layer {rule.level(a)})")
    return bad


def cycles(edges: list[Import], names: dict[str, Path]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    graph: dict[str, set[str]] = {m: set() for m in names}
    for edge in edges:
        graph[edge.importer].add(edge.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return groups


def unexplained_lazy_imports(names: dict[str, Path], rule: Rule) -> list[str]:
    """Imports inside functions, outside the CLI layer, with no reason comment near them."""
    bad = []
    for module, path in names.items():
        if rule.unit(module) == CLI_UNIT:
            continue  # the CLI layer imports inside commands so that `axtrain --help` stays fast (docs/architecture.md)
        lines = path.read_text(encoding="utf-8").splitlines()
        tree = ast.parse("\n".join(lines))
        for func in ast.walk(tree):
            if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for body in _bodies(func):
                run: list[ast.stmt] = []
                for stmt in [*body, None]:
                    if isinstance(stmt, (ast.Import, ast.ImportFrom)):
                        run.append(stmt)
                        continue
                    if run and not _explained(run, lines) and (str(path.relative_to(ROOT)), func.name) not in PENDING:
                        bad.append(f"{path.relative_to(ROOT)}:{run[0].lineno}: import inside {func.name}() without a one-line reason")
                    run = []
    return bad


def _bodies(func: ast.AST) -> list[list[ast.stmt]]:
    """Every statement list inside ``func``, not descending into nested functions (walked on their own)."""
    out: list[list[ast.stmt]] = []
    pending: list[ast.AST] = [func]
    while pending:
        node = pending.pop()
        for field in ("body", "orelse", "finalbody", "handlers"):
            value = getattr(node, field, None)
            if isinstance(value, list) and value:
                if isinstance(value[0], ast.stmt):
                    out.append(value)
                pending.extend(child for child in value if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)))
    return out


def _explained(run: list[ast.stmt], lines: list[str]) -> bool:
    first = run[0].lineno - 1
    above = lines[first - 1].strip() if first > 0 else ""
    if above.startswith("#"):
        return True
    return any("#" in lines[stmt.lineno - 1] for stmt in run)


@pytest.fixture(scope="module")
def graph() -> tuple[dict[str, Path], list[Import], Rule]:
    names = modules()
    return names, imports(names), Rule(read_layers())


def test_the_doc_declares_layers_for_every_module(graph: tuple[dict[str, Path], list[Import], Rule]) -> None:
    names, _, rule = graph
    assert len(read_layers()) >= 6
    for module in names:
        rule.unit(module)  # raises for a module no layer names


def test_no_module_imports_upward_or_sideways(graph: tuple[dict[str, Path], list[Import], Rule]) -> None:
    _, edges, rule = graph
    assert len(edges) > 300  # the graph was really read
    assert violations(edges, rule) == []


def test_no_import_cycles(graph: tuple[dict[str, Path], list[Import], Rule]) -> None:
    names, edges, _ = graph
    assert cycles(edges, names) == []


def test_imports_inside_functions_say_why(graph: tuple[dict[str, Path], list[Import], Rule]) -> None:
    names, _, rule = graph
    assert unexplained_lazy_imports(names, rule) == []


def test_the_checks_catch_what_they_are_for(tmp_path: Path) -> None:
    # A tiny tree with an upward import, a cycle and an unexplained lazy import: each check reports it.
    for folder in FOLDERS:
        (tmp_path / folder).mkdir()
    (tmp_path / "axtrain" / "errors.py").write_text("")
    (tmp_path / "hwmodels" / "ntv.py").write_text("from axtrain.runtime.sim import run\n")
    (tmp_path / "runtime" / "sim.py").write_text("from axtrain.hwmodels.ntv import x\n\ndef run():\n    import axtrain.errors\n")
    names = modules(tmp_path)
    assert set(names) == {"axtrain.errors", "axtrain.hwmodels.ntv", "axtrain.runtime.sim"}
    rule = Rule([(0, ["axtrain.errors"]), (1, ["axtrain.hwmodels"]), (3, ["axtrain.runtime"]), (6, ["axtrain.cli", "*.cli"])])
    edges = imports(names)
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        assert violations(edges, rule) == ["hwmodels/ntv.py:1: axtrain.hwmodels.ntv imports axtrain.runtime.sim (hwmodels imports nothing of ours but axtrain.errors)"]
        assert cycles(edges, names) == [["axtrain.hwmodels.ntv", "axtrain.runtime.sim"]]
        assert unexplained_lazy_imports(names, rule) == ["runtime/sim.py:4: import inside run() without a one-line reason"]
    finally:
        ROOT = saved


def test_sources_import_the_installed_names_only() -> None:
    """``runtime``, ``compiler``, ``trainer`` and ``hwmodels`` are importable as top-level names only
    from a checkout's own directory (pytest's rootdir); an installed axtrain has them as
    ``axtrain.runtime`` etc., so a source module that imports the bare name fails for users."""
    bare = {folder for folder in FOLDERS if folder != "axtrain"}
    offenders = []
    for path in modules().values():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
            offenders += [f"{path.relative_to(ROOT)}:{node.lineno}: {n}" for n in names if n.split(".")[0] in bare]
    assert offenders == []
