"""The exported pytest file passes against the database it was made from and fails after a policy change."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from workbench.local.standin import LocalStandIn
from workbench.policies.export import MARKER, export_pytest, render_pytest
from workbench.policies.matrix import PolicyMatrix, PolicyMatrixError, build_matrix, resolve_identities

from .standin_rig import private_standin

USERS = ["alice@example.com", "bob@example.com", 'bob@example.com+{"user_role": "admin"}']
TABLES = ["tasks", "projects", "announcements"]


@pytest.fixture(scope="module")
def own_standin() -> Iterator[LocalStandIn]:
    """A stand-in of this module's own: the test changes its policies."""
    with private_standin("export") as instance:
        yield instance


async def make_matrix(dsn: str) -> PolicyMatrix:
    conn = await asyncpg.connect(dsn)
    try:
        identities = await resolve_identities(conn, USERS, roles=["anon", "service_role"])
        return await build_matrix(conn, identities, TABLES)
    finally:
        await conn.close()


def run_pytest(path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SUPABASE_", "POLICY_MATRIX_", "PYTEST_"))}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(path)],
        cwd=path.parent,
        env=clean | env,
        capture_output=True,
        text=True,
        timeout=300,
    )


async def test_exported_tests_pass_then_catch_a_policy_change(own_standin: LocalStandIn, tmp_path: Path) -> None:
    dsn = own_standin.dsn()
    matrix = await make_matrix(dsn)
    path = export_pytest(matrix, tmp_path / "test_demo_policies.py", source="the test's own stand-in")
    text = path.read_text()
    assert text.startswith(MARKER + "\n")
    ast.parse(text)
    assert "wb-probe-" in text and "owners read their tasks" in text

    green = run_pytest(path, {"POLICY_MATRIX_DSN": dsn})
    cases = len([c for c in matrix.cells if c.statement])
    assert green.returncode == 0, green.stdout[-3000:] + green.stderr[-2000:]
    assert f"{cases} passed" in green.stdout

    conn = await asyncpg.connect(dsn)
    try:  # a careless migration: owners can no longer delete, and drafts become public
        await conn.execute(
            """drop policy "owners delete their tasks" on public.tasks;
               alter policy "anyone reads published announcements" on public.announcements using (true);"""
        )
    finally:
        await conn.close()
    red = run_pytest(path, {"POLICY_MATRIX_DSN": dsn})
    assert red.returncode == 1, red.stdout[-3000:]
    failed = sorted(line.split("::", 1)[1] for line in red.stdout.splitlines() if line.startswith("FAILED "))
    ids = [f.split(" - ")[0] for f in failed]
    assert ids == sorted(
        [
            "test_policy[alice@example.com|public.tasks|delete]",
            "test_policy[bob@example.com|public.tasks|delete]",
            "test_policy[bob@example.com + user_role=admin|public.tasks|delete]",
            "test_policy[anon|public.announcements|select]",
            "test_policy[alice@example.com|public.announcements|select]",
            "test_policy[bob@example.com|public.announcements|select]",
            "test_policy[bob@example.com + user_role=admin|public.announcements|select]",
        ]
    ), red.stdout[-4000:]
    assert "expected allowed (3 rows), got filtered (0 rows)" in red.stdout
    assert "expected allowed (1 rows), got allowed (2 rows)" in red.stdout
    assert f"7 failed, {cases - 7} passed" in red.stdout


async def test_without_a_dsn_the_file_uses_the_workbench_settings(own_standin: LocalStandIn, tmp_path: Path) -> None:
    matrix = await make_matrix(own_standin.dsn())
    only_select = PolicyMatrix(
        matrix.identities, matrix.tables, ["select"], [c for c in matrix.cells if c.operation == "select"]
    )
    path = export_pytest(only_select, tmp_path / "test_select_policies.py")
    result = run_pytest(path, {"WORKBENCH_LOCAL_DIR": str(own_standin.data_dir)})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert f"{len(only_select.cells)} passed" in result.stdout


def test_export_refuses_to_overwrite_other_files(tmp_path: Path) -> None:
    empty = PolicyMatrix([], [], ["select"], [])
    mine = tmp_path / "test_mine.py"
    mine.write_text("def test_mine():\n    assert True\n")
    with pytest.raises(PolicyMatrixError, match="was not generated from a policy matrix"):
        export_pytest(empty, mine)
    assert mine.read_text().startswith("def test_mine")
    with pytest.raises(PolicyMatrixError, match=r"should be a \.py file"):
        export_pytest(empty, tmp_path / "policies.txt")
    generated = export_pytest(empty, tmp_path / "test_generated.py")
    assert export_pytest(empty, generated) == generated  # a generated file may be regenerated


def test_render_keeps_the_docstring_intact() -> None:
    empty = PolicyMatrix([], [], ["select"], [])
    text = render_pytest(empty, source='a """tricky"""\\ source\nwith lines')
    module = ast.parse(text)
    doc = ast.get_docstring(module) or ""
    assert "a '''tricky'''/ source with lines" in doc
