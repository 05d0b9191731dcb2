"""The policy matrix on the demo app against a hand-written expectation, and nothing is ever committed."""

from __future__ import annotations

import asyncpg
import pytest

from workbench.core.identity import Identity
from workbench.policies.matrix import (
    Cell,
    PolicyMatrix,
    PolicyMatrixError,
    build_matrix,
    policy_matrix,
    resolve_identities,
    split_user_spec,
)

from .conftest import fingerprint

ALICE = "11111111-1111-4111-8111-111111111111"
BOB = "22222222-2222-4222-8222-222222222222"
USERS = ["alice@example.com", "bob@example.com", 'bob@example.com+{"user_role": "admin"}']
TABLES = ["tasks", "projects", "profiles", "announcements"]
COLUMNS = ["anon", "alice", "bob", "bob+admin", "service_role"]
LABELS = dict(
    zip(
        COLUMNS,
        ["anon", "alice@example.com", "bob@example.com", "bob@example.com + user_role=admin", "service_role"],
        strict=True,
    )
)

# What the demo's policies should let each identity do. A number: the statement ran and saw/changed that
# many rows (0: RLS hid every row); x: refused (42501); c: the policies let it through but the probe row
# broke a constraint (every user already has a profile, so service_role's new profile collides).
EXPECTED = """
table          op      anon  alice  bob  bob+admin  service_role
tasks          select  0     3      2    7          7
tasks          insert  x     1      1    1          1
tasks          update  0     3      2    2          7
tasks          delete  0     3      2    2          7
projects       select  0     2      1    1          3
projects       insert  x     x      x    x          1
projects       update  0     0      0    0          3
projects       delete  0     0      0    0          3
profiles       select  0     3      3    3          3
profiles       insert  x     x      x    x          c
profiles       update  0     1      1    1          3
profiles       delete  0     0      0    0          3
announcements  select  1     1      1    1          2
announcements  insert  x     x      x    x          1
announcements  update  0     0      0    0          2
announcements  delete  0     0      0    0          2
"""


def probe_values(cell: Cell) -> dict[str, str | None]:
    """Column -> value of an insert probe, from its statement's column list."""
    columns = cell.statement.split("(", 1)[1].split(")", 1)[0].split(", ")
    return dict(zip(columns, cell.params, strict=True))


def expected_outcomes() -> dict[tuple[str, str, str], tuple[str, int | None]]:
    lines = [line.split() for line in EXPECTED.strip().splitlines()]
    header, rows = lines[0], lines[1:]
    assert header[2:] == COLUMNS
    result: dict[tuple[str, str, str], tuple[str, int | None]] = {}
    for table, op, *marks in rows:
        for column, mark in zip(COLUMNS, marks, strict=True):
            if mark == "x":
                value: tuple[str, int | None] = ("refused", None)
            elif mark == "c":
                value = ("constraint", None)
            else:
                value = ("allowed" if int(mark) else "filtered", int(mark))
            result[(LABELS[column], f"public.{table}", op)] = value
    return result


@pytest.fixture(scope="module")
async def demo_matrix(standin) -> tuple[PolicyMatrix, dict, dict]:  # type: ignore[no-untyped-def]
    """The matrix of the demo app, with the database's fingerprint before and after."""
    dsn = standin.dsn()
    before = await fingerprint(dsn)
    conn = await asyncpg.connect(dsn)
    try:
        identities = await resolve_identities(conn, USERS, roles=["anon", "service_role"])
        identities = [identities[0], *identities[2:], identities[1]]  # anon, users, service_role
        matrix = await build_matrix(conn, identities, TABLES)
        leftover = await conn.fetchrow(
            "select current_user, current_setting('request.jwt.claims', true) as claims, "
            "current_setting('statement_timeout') as timeout"
        )
    finally:
        await conn.close()
    after = await fingerprint(dsn)
    return matrix, {"before": before, "after": after}, dict(leftover)


async def test_demo_matrix_matches_the_hand_written_expectation(demo_matrix) -> None:  # type: ignore[no-untyped-def]
    matrix, _, _ = demo_matrix
    got = matrix.outcomes()
    expected = expected_outcomes()
    assert set(got) == set(expected)
    wrong = {key: (got[key], want) for key, want in expected.items() if got[key] != want}
    assert not wrong, "cells that differ (got, expected):\n" + "\n".join(f"{k}: {v}" for k, v in wrong.items())
    assert matrix.labels == [LABELS[c] for c in COLUMNS]
    assert [t.qualified_name for t in matrix.tables] == [f"public.{t}" for t in TABLES]


async def test_the_database_is_byte_for_byte_unchanged(demo_matrix) -> None:  # type: ignore[no-untyped-def]
    matrix, prints, leftover = demo_matrix
    before, after = prints["before"], prints["after"]
    assert "public.tasks" in before and "auth.users" in before and "storage.objects" in before
    assert any(key.startswith("sequence public.tasks") for key in before)
    assert before == after
    # the connection is left as it was: its own role, no claims, its own timeout
    assert leftover["current_user"] == "postgres"
    assert leftover["claims"] in (None, "")
    assert leftover["timeout"] == "0"
    # inserts were really tried (and rolled back): identity keys came from max()+1, no sequence was used
    insert = matrix.cell("service_role", "public.tasks", "insert")
    assert insert.outcome == "allowed" and "overriding system value" in insert.statement
    assert not [n for n in matrix.notes if n.startswith("sequence")]


async def test_cells_name_the_policies_that_apply(demo_matrix) -> None:  # type: ignore[no-untyped-def]
    matrix, _, _ = demo_matrix
    alice = LABELS["alice"]
    assert matrix.cell(alice, "tasks", "select").policies == ["admins read every task", "owners read their tasks"]
    # update and delete read the rows they change, so SELECT policies apply too (listed after)
    assert matrix.cell(alice, "tasks", "update").policies == [
        "owners update their tasks",
        "admins read every task",
        "owners read their tasks",
    ]
    assert matrix.cell(alice, "tasks", "insert").policies == ["members add their own tasks"]
    assert matrix.cell("anon", "announcements", "select").policies == ["anyone reads published announcements"]
    refused = matrix.cell("anon", "tasks", "insert")
    assert refused.policies == [] and "default deny" in (refused.note or "")
    assert refused.sqlstate == "42501" and "row-level security" in (refused.message or "")
    service = matrix.cell("service_role", "tasks", "select")
    assert service.policies == [] and "BYPASSRLS" in (service.note or "")
    clash = matrix.cell("service_role", "profiles", "insert")
    assert clash.sqlstate == "23505" and "policies let it through" in (clash.note or "")
    sql = matrix.policy("public.tasks", "members add their own tasks").sql()
    assert sql.startswith('create policy "members add their own tasks" on public.tasks')
    assert "for insert to authenticated" in sql and "with check (" in sql


async def test_insert_probes_point_at_rows_the_identity_can_use(demo_matrix) -> None:  # type: ignore[no-untyped-def]
    matrix, _, _ = demo_matrix
    alice = matrix.cell(LABELS["alice"], "tasks", "insert")
    bob = matrix.cell(LABELS["bob"], "tasks", "insert")
    # each user's probe task goes into a project they can see, and owner_id comes from auth.uid()
    assert "owner_id" not in alice.statement
    assert probe_values(alice)["project_id"] in ("1", "2") and probe_values(bob)["project_id"] == "3"
    assert alice.fresh_keys and alice.fresh_keys[0][1].startswith("select coalesce(max(id), 0) + 1")


async def test_matrix_renders_html_and_frame(demo_matrix) -> None:  # type: ignore[no-untyped-def]
    matrix, _, _ = demo_matrix
    frame = matrix.to_frame()
    assert frame.loc[("public.tasks", "select"), LABELS["bob+admin"]] == "✓ 7"
    assert frame.loc[("public.tasks", "insert"), "anon"] == "✗"
    page = matrix._repr_html_()
    assert "wb-policy-refused" in page and "#ffc7ce" in page and "owners read their tasks" in page


async def test_given_probe_rows_are_used(standin) -> None:  # type: ignore[no-untyped-def]
    """storage.objects: a file in the user's own folder of `documents` may be uploaded by that user only."""
    conn = await asyncpg.connect(standin.dsn())
    try:
        identities = await resolve_identities(conn, ["alice@example.com", "bob@example.com"], roles=[])
        probe = {"storage.objects": {"bucket_id": "documents", "name": f"{ALICE}/probe.txt", "owner_id": ALICE}}
        matrix = await build_matrix(conn, identities, ["storage.objects"], ["insert", "delete"], probe_rows=probe)
    finally:
        await conn.close()
    assert matrix.cell("alice@example.com", "storage.objects", "insert").outcome == "allowed"
    assert matrix.cell("bob@example.com", "storage.objects", "insert").outcome == "refused"
    # Supabase's trigger refuses direct deletes on storage tables for everyone
    delete = matrix.cell("alice@example.com", "storage.objects", "delete")
    assert delete.outcome == "refused" and "Storage API" in (delete.message or "")


async def test_probe_rows_satisfy_enums_checks_and_keys(supabase_db: str) -> None:
    conn = await asyncpg.connect(supabase_db)
    try:
        await conn.execute(
            """create type public.size as enum ('small', 'large');
               create table public.parents (code text primary key);
               insert into public.parents values ('p1'), ('p2');
               create table public.items (
                 id serial primary key,
                 parent text not null references public.parents,
                 slot int not null,
                 qty int not null check (qty >= 50),
                 size public.size not null check (size <> 'small'),
                 label varchar(4) not null,
                 unique (parent, slot)
               );
               insert into public.items (parent, slot, qty, size, label) values ('p1', 1, 60, 'large', 'a');
               alter table public.items enable row level security;
               create policy "anyone adds large items" on public.items
                 for insert to anon with check (size = 'large');"""
        )
        before = await conn.fetchval("select last_value from public.items_id_seq")
        identities = [Identity.anon(), Identity.for_role("authenticated"), Identity.service_role()]
        matrix = await build_matrix(conn, identities, ["public.items"], ["insert"])
        after = await conn.fetchval("select last_value from public.items_id_seq")
        count = await conn.fetchval("select count(*) from public.items")
    finally:
        await conn.close()
    anon = matrix.cell("anon", "public.items", "insert")
    assert anon.outcome == "allowed", (anon.message, matrix.notes)
    assert anon.policies == ["anyone adds large items"]
    assert matrix.cell("authenticated", "public.items", "insert").outcome == "refused"
    assert matrix.cell("service_role", "public.items", "insert").outcome == "allowed"
    params = probe_values(anon)
    assert params["id"] == "2" and params["size"] == "large" and int(params["qty"] or 0) >= 50
    assert len(params["label"] or "") <= 4
    assert (before, count) == (after, 1) and matrix.notes == []


async def test_bad_input_is_refused_with_the_fix(standin) -> None:  # type: ignore[no-untyped-def]
    conn = await asyncpg.connect(standin.dsn())
    try:
        with pytest.raises(PolicyMatrixError, match=r"No table public\.nope\. Tables you can use: .*public\.tasks"):
            await build_matrix(conn, [Identity.anon()], ["nope"])
        with pytest.raises(PolicyMatrixError, match="share the label anon"):
            await build_matrix(conn, [Identity.anon(), Identity.anon()], ["tasks"])
        with pytest.raises(PolicyMatrixError, match="Unknown operation.*truncate"):
            await build_matrix(conn, [Identity.anon()], ["tasks"], ["select", "truncate"])
        with pytest.raises(PolicyMatrixError, match="no such column: colour"):
            await build_matrix(conn, [Identity.anon()], ["tasks"], probe_rows={"tasks": {"colour": "red"}})
        with pytest.raises(PolicyMatrixError, match="Role 'nobody' does not exist"):
            await resolve_identities(conn, [], roles=["nobody"])
        with pytest.raises(PolicyMatrixError, match="not valid JSON"):
            split_user_spec("bob@example.com+{oops}")
        assert await conn.fetchval("select count(*) from pg_stat_activity where state = 'idle in transaction'") == 0
    finally:
        await conn.close()


async def test_policy_matrix_on_an_engine_defaults_to_public_tables(db_url: str) -> None:
    from workbench.core.engine import create_engine

    engine = create_engine(db_url)
    try:
        matrix = await policy_matrix(engine, [Identity.anon()], operations=["select"])
    finally:
        await engine.dispose()
    assert {t.name for t in matrix.tables} >= {"tasks", "organizations", "memberships"}
    assert matrix.cell("anon", "announcements", "select").rows == 1
