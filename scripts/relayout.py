#!/usr/bin/env python3
"""Give the package the shape of its architecture (issue 16, item 4), then lint and format the whole tree.

Run ONCE at the repository root, after every branch is merged:

    python3 scripts/relayout.py            # moves, rewrites, `ruff check --fix`, `ruff format`
    python3 scripts/relayout.py --dry-run  # print what would move and which files would change

Stdlib only; idempotent (a second run finds nothing to move or rewrite and only re-runs ruff).

What it does, in order:
1. ``git mv`` each module of MOVES to its layer (core / backend / notebook / teaching) and each test
   file of TEST_MOVES next to it; deletes the modules of REMOVED (their names now point at a merged
   module); writes each new package's ``__init__.py`` (a docstring, no imports: imports stay lazy).
2. Rewrites every reference to a moved module in workbench/, tests/, benchmarks/, reliability/,
   notebooks/*.ipynb, docs/, README.md, pyproject.toml, environment.yml, dev.py: dotted paths
   (``workbench.errors`` -> ``workbench.core.errors``, in imports, strings and prose alike), ``from
   workbench import X`` of a moved module, and file paths (``workbench/errors.py``). One regex pass with
   every old name at once, so ``workbench.core`` (the old facade) and ``workbench.core.errors`` (new)
   never mix.
3. Renames (RENAMES): the lesser of each pair of same-named classes, and private names imported across
   modules made public.
4. Replaces calls of removed deprecated aliases whose rewrite is mechanical (``Settings.local(`` ->
   ``standin_settings(``).
5. Runs ``ruff check --fix``, ``ruff format``, ``ruff check --fix`` on the whole tree (exit status: the last).

Left for a person (printed at the end): the ``deprecated-for-merge`` aliases that parallel branches
needed until the merge (``grep -rn deprecated-for-merge workbench``): delete each once nothing uses it.
"""

from __future__ import annotations

import argparse
import ast
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

# -- the mapping -------------------------------------------------------------------------------------------
# old module (dotted)              new module (dotted)                   why it lives there
MOVES: list[tuple[str, str]] = [
    # notebook glue first: workbench/core.py must leave before the workbench/core/ package arrives
    ("workbench.core", "workbench.notebook.session"),  # the notebook facade: Workbench, connect, current
    ("workbench.magics", "workbench.notebook.magics"),  # %load_ext workbench stays the extension entry
    ("workbench.runner", "workbench.notebook.bridge"),  # the one sync/async bridge (run_sync + LoopThread)
    ("workbench.widgets", "workbench.notebook.widgets"),  # ipywidgets front ends (a package)
    # core: no Jupyter, no stand-in
    ("workbench.settings", "workbench.core.settings"),
    ("workbench.engine", "workbench.core.engine"),
    ("workbench.pool", "workbench.core.pool"),
    ("workbench.identity", "workbench.core.identity"),
    ("workbench.impersonation", "workbench.core.impersonation"),
    ("workbench.query", "workbench.core.query"),
    ("workbench.errors", "workbench.core.errors"),
    ("workbench.exceptions", "workbench.core.exceptions"),
    ("workbench.redaction", "workbench.core.redaction"),
    ("workbench.sqltext", "workbench.core.sqltext"),
    ("workbench.sqlnames", "workbench.core.sqlnames"),
    ("workbench.extras", "workbench.core.extras"),
    ("workbench.tls", "workbench.core.tls"),  # TLS settings -> ssl contexts, for every engine
    # back-end runtime: what a deployed FastAPI service imports
    ("workbench.fastapi", "workbench.backend.fastapi"),
    ("workbench.tokens", "workbench.backend.tokens"),
    ("workbench.retry", "workbench.backend.retry"),
    # teaching aids
    ("workbench.load", "workbench.teaching.loadgen"),  # a load generator, not "loading"
    ("workbench.loading", "workbench.teaching.loading"),  # ORM loading patterns
    ("workbench.demo_models", "workbench.teaching.demo_models"),
]
# Modules deleted: their name now refers to the module they were merged into.
REMOVED: list[tuple[str, str]] = [
    ("workbench._sync", "workbench.notebook.bridge"),  # run_sync joined LoopThread
]
# Stay where they are: workbench.cli, workbench.doctor, workbench.storage, workbench.local.*,
# workbench.schema.*, workbench.policies.*.

NEW_PACKAGES: dict[str, str] = {
    "workbench/core": "The core: settings, engines, identities, impersonation, queries, errors, SQL text. "
    "No Jupyter, no stand-in: back ends and notebooks both build on it.",
    "workbench/backend": "The back-end runtime a FastAPI + SQLAlchemy service deploys: auth dependencies, "
    "token verification, retries.",
    "workbench/notebook": "Jupyter glue: the notebook facade (session), the magics, the sync/async bridge, "
    "the widgets. Needs supabase-workbench[notebook].",
    "workbench/teaching": "Teaching aids for the notebooks: a load generator, ORM loading patterns, the demo models.",
}

# tests mirror the package
TEST_MOVES: list[tuple[str, str]] = [
    ("tests/test_settings.py", "tests/core/test_settings.py"),
    ("tests/test_engine.py", "tests/core/test_engine.py"),
    ("tests/test_pool.py", "tests/core/test_pool.py"),
    ("tests/test_impersonation.py", "tests/core/test_impersonation.py"),
    ("tests/test_errors.py", "tests/core/test_errors.py"),
    ("tests/test_exceptions.py", "tests/core/test_exceptions.py"),
    ("tests/test_sqltext.py", "tests/core/test_sqltext.py"),
    ("tests/test_sqlnames.py", "tests/core/test_sqlnames.py"),
    ("tests/test_identity.py", "tests/core/test_identity.py"),
    ("tests/test_settings_sslmode.py", "tests/core/test_settings_sslmode.py"),
    ("tests/test_tls.py", "tests/core/test_tls.py"),
    ("tests/test_fastapi.py", "tests/backend/test_fastapi.py"),
    ("tests/test_tokens.py", "tests/backend/test_tokens.py"),
    ("tests/test_retry.py", "tests/backend/test_retry.py"),
    ("tests/test_magics.py", "tests/notebook/test_magics.py"),
    ("tests/test_kernel_interrupt.py", "tests/notebook/test_kernel_interrupt.py"),
    ("tests/widgets", "tests/notebook/widgets"),
    ("tests/test_load.py", "tests/teaching/test_loadgen.py"),
    ("tests/test_loading.py", "tests/teaching/test_loading.py"),
]

# (files the rename applies to, as a path regex; old name; new name)
RENAMES: list[tuple[str, str, str]] = [
    # the stand-in's Storage API error is the lesser of the two StorageErrors (workbench.storage's is public)
    (r"^(workbench|tests)/local/.*storage", r"\bStorageError\b", "StorageApiError"),
    # ... and its Caller the lesser of two (the Auth API's stays Caller)
    (r"^(workbench|tests)/local/.*storage", r"\bCaller\b", "StorageCaller"),
    # schema.model.Identity (identity column options) vs workbench.identity.Identity (who a query runs as)
    (r"^(workbench|tests)/schema/", r"\bm\.Identity\b", "m.ColumnIdentity"),
    # private names imported across modules become public
    (r"^(workbench|tests)/", r"\b_is_unique\b", "is_unique"),
    (r"^(workbench|tests)/", r"\b_plain_dsn\b", "plain_dsn"),
]

SCAN_DIRS = ("workbench", "tests", "benchmarks", "reliability", "notebooks", "docs", "scripts")
SCAN_FILES = ("README.md", "pyproject.toml", "environment.yml", "dev.py", ".ci/run")
SCAN_SUFFIXES = {".py", ".ipynb", ".md", ".toml", ".yml", ".yaml", ".txt", ".cfg", ".ini", ""}
SELF = Path(__file__).resolve()
NOT_REWRITTEN = ("tests/test_relayout.py",)  # names the old modules on purpose

ROOT = Path.cwd()


def module_path(dotted: str) -> Path:
    """``workbench.errors`` -> ``workbench/errors.py``, or the package folder if that exists."""
    base = ROOT / Path(*dotted.split("."))
    return base if base.is_dir() else base.with_suffix(".py")


def new_module_path(dotted: str, is_package: bool) -> Path:
    base = ROOT / Path(*dotted.split("."))
    return base if is_package else base.with_suffix(".py")


def git(*args: str, dry: bool) -> None:
    print("  git", *args)
    if not dry:
        subprocess.run(["git", *args], cwd=ROOT, check=True)


# -- 1. moves ----------------------------------------------------------------------------------------------
def move_modules(dry: bool) -> dict[str, str]:
    """Move what has not moved yet; returns {old dotted: new dotted} for the references to rewrite."""
    pending: dict[str, str] = {}
    for old, new in MOVES:
        src = module_path(old)
        is_package = src.is_dir()
        # workbench.core: the old facade is a file; after the move workbench/core/ is the new package
        if not src.exists() or (old == "workbench.core" and src.is_dir()):
            continue
        dst = new_module_path(new, is_package)
        _ensure_package(dst.parent, dry)
        git("mv", str(src.relative_to(ROOT)), str(dst.relative_to(ROOT)), dry=dry)
        pending[old] = new
    for old, new in REMOVED:
        src = module_path(old)
        if src.is_file():
            git("rm", "-q", str(src.relative_to(ROOT)), dry=dry)
            pending[old] = new
    for old, new in TEST_MOVES:
        src, dst = ROOT / old, ROOT / new
        if src.exists() and not dst.exists():
            _ensure_test_package(dst.parent, dry)
            git("mv", old, new, dry=dry)
    return pending


def _ensure_package(folder: Path, dry: bool) -> None:
    rel = folder.relative_to(ROOT).as_posix()
    init = folder / "__init__.py"
    if init.exists() or rel not in NEW_PACKAGES:
        return
    print(f"  create {rel}/__init__.py")
    if not dry:
        folder.mkdir(parents=True, exist_ok=True)
        text = textwrap.fill(NEW_PACKAGES[rel], 116, break_on_hyphens=False)
        init.write_text(f'"""{text}\n"""\n' if "\n" in text else f'"""{text}"""\n')
        subprocess.run(["git", "add", str(init.relative_to(ROOT))], cwd=ROOT, check=True)


def _ensure_test_package(folder: Path, dry: bool) -> None:
    """tests/<layer>/ (pytest runs in importlib mode: no ``__init__.py`` needed)."""
    if not dry:
        folder.mkdir(parents=True, exist_ok=True)


# -- 2. references -----------------------------------------------------------------------------------------
def files_to_scan() -> list[Path]:
    found: list[Path] = []
    for name in SCAN_DIRS:
        folder = ROOT / name
        if folder.is_dir():
            for path in folder.rglob("*"):
                skip = {"__pycache__", ".ipynb_checkpoints"} & set(path.parts) or path.resolve() == SELF
                skip = skip or path.relative_to(ROOT).as_posix() in NOT_REWRITTEN
                if path.is_file() and path.suffix in SCAN_SUFFIXES and not skip:
                    found.append(path)
    found += [ROOT / name for name in SCAN_FILES if (ROOT / name).is_file()]
    return found


def rewrite_text(text: str, mapping: dict[str, str]) -> str:
    if not mapping:
        return text
    olds = sorted(mapping, key=len, reverse=True)
    dotted = re.compile(r"(?<![\w.])(" + "|".join(re.escape(o) for o in olds) + r")(?![\w])")
    text = dotted.sub(lambda m: mapping[m.group(1)], text)
    slashed = {o.replace(".", "/"): n.replace(".", "/") for o, n in mapping.items()}
    olds_s = sorted(slashed, key=len, reverse=True)
    paths = re.compile(r"(?<![\w/])(" + "|".join(re.escape(o) for o in olds_s) + r")(?=\.py\b|/)")
    text = paths.sub(lambda m: slashed[m.group(1)], text)
    # last: its output (``from workbench.core import sqltext``) must not meet the old ``workbench.core``
    return _rewrite_from_workbench_import(text, mapping)


_FROM_WORKBENCH = re.compile(
    r"^(?P<indent>[ \t]*)from workbench import (?P<names>\([^)]*\)|[^\n#]+?)(?P<comment>[ \t]*#[^\n]*)?$",
    re.MULTILINE,
)


def _rewrite_from_workbench_import(text: str, mapping: dict[str, str]) -> str:
    """``from workbench import core, settings`` -> one ``from <package> import <module> [as X]`` each."""

    def fix(m: re.Match[str]) -> str:
        indent = m["indent"]
        raw = m["names"].strip().strip("()")
        items = [part.strip() for part in raw.replace("\n", " ").split(",") if part.strip()]
        keep: list[str] = []
        lines: list[str] = []
        for item in items:
            name, _, alias = item.partition(" as ")
            name, alias = name.strip(), alias.strip()
            old = f"workbench.{name}"
            if old not in mapping:
                keep.append(item)
                continue
            package, _, module = mapping[old].rpartition(".")
            local = alias or name
            suffix = "" if local == module else f" as {local}"
            lines.append(f"{indent}from {package} import {module}{suffix}")
        if not lines:
            return m.group(0)
        if keep:
            lines.insert(0, f"{indent}from workbench import {', '.join(keep)}")
        if m["comment"]:
            lines[0] += m["comment"]
        return "\n".join(lines)

    return _FROM_WORKBENCH.sub(fix, text)


def rewrite_references(mapping: dict[str, str], dry: bool) -> list[Path]:
    changed: list[Path] = []
    for path in files_to_scan():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        new = rewrite_text(text, mapping)
        new = apply_renames(path, new)
        new = replace_removed_aliases(path, new)
        if new != text:
            changed.append(path)
            if not dry:
                path.write_text(new, encoding="utf-8")
    return changed


# -- 3. renames --------------------------------------------------------------------------------------------
# Names a file may import from the stand-in's Storage API under their old names: (old, new).
LOCAL_STORAGE_NAMES = (("StorageError", "StorageApiError"), ("Caller", "StorageCaller"))


def apply_renames(path: Path, text: str) -> str:
    rel = path.relative_to(ROOT).as_posix()
    for where, old, new in RENAMES:
        if re.search(where, rel):
            text = re.sub(old, new, text)
    # elsewhere, a file that imports them from workbench.local.* uses the new names (bare ones only:
    # ``st.StorageError`` is workbench.storage's)
    for old, new in LOCAL_STORAGE_NAMES:
        importer = rf"^\s*from workbench\.local\.[\w.]*storage[\w.]* import [^\n]*\b{old}\b"
        if re.search(importer, text, re.MULTILINE):
            text = re.sub(rf"(?<![\w.]){old}\b", new, text)
        text = re.sub(rf"\b(storage_api\.){old}\b", rf"\g<1>{new}", text)
    # an alias left as `name = name  # deprecated-for-merge` by a rename is dropped
    return re.sub(r"^(\w+) = \1\b[^\n]*deprecated-for-merge[^\n]*\n", "", text, flags=re.MULTILINE)


# -- 4. calls of removed aliases ---------------------------------------------------------------------------
def replace_removed_aliases(path: Path, text: str) -> str:
    if path.suffix != ".py" or "Settings.local(" not in text:
        return text
    if path.relative_to(ROOT).parts[0] == "workbench":  # an import there could pull the stand-in into the core
        print(f"  NOTE {path.relative_to(ROOT)} calls Settings.local(): use workbench.local.settings.standin_settings")
        return text
    text = text.replace("Settings.local(", "standin_settings(")
    if re.search(r"^\s*from workbench\.local\.settings import .*standin_settings", text, re.MULTILINE):
        return text
    return _insert_import(text, "from workbench.local.settings import standin_settings")


def _insert_import(text: str, line: str) -> str:
    """After the module docstring and ``from __future__`` imports; ruff sorts it into place."""
    tree = ast.parse(text)
    after = 0
    for node in tree.body:
        is_doc = isinstance(node, ast.Expr) and isinstance(getattr(node, "value", None), ast.Constant)
        if is_doc or (isinstance(node, ast.ImportFrom) and node.module == "__future__"):
            after = node.end_lineno or after
        else:
            break
    lines = text.split("\n")
    lines.insert(after, line)
    return "\n".join(lines)


# -- 5. tools ----------------------------------------------------------------------------------------------
def ruff(dry: bool) -> int:
    exe = shutil.which("ruff") or str(ROOT / ".venv" / "bin" / "ruff")
    if not Path(exe).exists() and shutil.which(exe) is None:
        print("ruff not found: run `python3 dev.py test --co -q` once to create .venv, then run this again")
        return 1
    # check --fix first (imports), format (wraps the lines renames made long), then the check that counts
    status = 0
    for args in (["check", "--fix", "--quiet", "."], ["format", "."], ["check", "--fix", "."]):
        print("  ruff", *args)
        if not dry:
            status = subprocess.run([exe, *args], cwd=ROOT).returncode
    return status


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="print what would happen; change nothing")
    parser.add_argument("--no-ruff", action="store_true", help="skip ruff check --fix / ruff format")
    args = parser.parse_args()
    if not (ROOT / "workbench" / "__init__.py").is_file() or not (ROOT / "pyproject.toml").is_file():
        print("Run this at the repository root (the folder with pyproject.toml and workbench/).")
        return 2
    print("moving modules:")
    mapping = move_modules(args.dry_run)
    if not mapping:
        print("  nothing to move: already laid out")
    print("rewriting references:")
    changed = rewrite_references(mapping, args.dry_run)
    for path in changed:
        print("  ", path.relative_to(ROOT))
    status = 0 if args.no_ruff else ruff(args.dry_run)
    leftovers = subprocess.run(
        ["git", "grep", "-n", "deprecated-for-merge", "--", "workbench"], cwd=ROOT, capture_output=True, text=True
    ).stdout
    if leftovers:
        print("\nLeft for a person: aliases kept for parallel branches; delete each once nothing uses it:")
        print(leftovers)
    return status


if __name__ == "__main__":
    sys.exit(main())
