"""The policy impact of migrations on the demo app (and on a bootstrap-only database), each with the exact
cells it changes, and nothing ever committed."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from workbench.policies.impact import MigrationError, load_migration, policy_impact
from workbench.policies.impact_report import render_html, render_markdown, render_text

from .conftest import fingerprint

ALICE = "11111111-1111-4111-8111-111111111111"
PEOPLE = ["anon", "alice@example.com", "bob@example.com", "service_role"]


def cells(impact) -> dict[tuple[str, str, str], tuple[str | None, str | None]]:  # type: ignore[no-untyped-def]
    return impact.changed_cells()


@pytest.fixture()
async def demo(standin):  # type: ignore[no-untyped-def]
    """The session stand-in's DSN; the test fails if anything was committed to it."""
    dsn = standin.dsn()
    before = await fingerprint(dsn)
    yield dsn
    assert await fingerprint(dsn) == before


@pytest.fixture()
async def notes_db(supabase_db: str) -> str:
    """A bootstrap-only database with ``public.notes`` (RLS off, granted to the API roles, two rows)."""
    conn = await asyncpg.connect(supabase_db)
    try:
        await conn.execute(
            """create table public.notes (id bigint primary key, body text not null);
               insert into public.notes values (1, 'one'), (2, 'two');
               grant select, insert, update, delete on public.notes to anon, authenticated, service_role;"""
        )
    finally:
        await conn.close()
    return supabase_db


# -- policies --------------------------------------------------------------------------------------------
async def test_added_policy(demo: str) -> None:
    impact = await policy_impact(
        demo, 'create policy "anon reads tasks" on public.tasks for select to anon using (true);', PEOPLE,
        tables=["tasks"],
    )  # fmt: skip
    assert impact.mode == "transaction" and not impact.failed
    assert cells(impact) == {("anon", "public.tasks", "select"): ("filtered (0 rows)", "allowed (7 rows)")}
    change = impact.change("anon", "tasks", "select")
    assert change.direction == "gained"
    assert change.explained_by == ['policy "anon reads tasks" added']
    assert [(p.name, p.change) for p in impact.policy_changes] == [("anon reads tasks", "added")]


async def test_dropped_policy(demo: str) -> None:
    impact = await policy_impact(demo, 'drop policy "owners delete their tasks" on public.tasks', PEOPLE,
                                 tables=["tasks"])  # fmt: skip
    assert cells(impact) == {
        ("alice@example.com", "public.tasks", "delete"): ("allowed (3 rows)", "filtered (0 rows)"),
        ("bob@example.com", "public.tasks", "delete"): ("allowed (2 rows)", "filtered (0 rows)"),
    }
    assert all(c.direction == "lost" for c in impact.changes)
    assert impact.change("bob@example.com", "tasks", "delete").explained_by == [
        'policy "owners delete their tasks" dropped'
    ]


async def test_altered_policy(demo: str) -> None:
    sql = """alter policy "owners read their tasks" on public.tasks
               using (owner_id = (select auth.uid()) and status = 'todo')"""
    impact = await policy_impact(demo, sql, PEOPLE, tables=["tasks"])
    # Alice owns 3 tasks, 2 of them todo; Bob 2, 1 todo. UPDATE and DELETE read rows, so SELECT policies apply.
    expected = {}
    for op in ("select", "update", "delete"):
        expected[("alice@example.com", "public.tasks", op)] = ("allowed (3 rows)", "allowed (2 rows)")
        expected[("bob@example.com", "public.tasks", op)] = ("allowed (2 rows)", "allowed (1 row)")
    assert cells(impact) == expected
    (policy,) = impact.policy_changes
    assert (
        policy.change == "altered"
        and "'todo'" in (policy.after_sql or "")
        and "'todo'" not in (policy.before_sql or "")
    )
    assert impact.change("alice@example.com", "tasks", "update").explained_by == [
        'policy "owners read their tasks" altered'
    ]


async def test_replaced_policy(demo: str) -> None:
    sql = """drop policy "owners delete their tasks" on public.tasks;
             create policy "owners delete their tasks" on public.tasks for delete to authenticated
               using (owner_id = (select auth.uid()) and status = 'done');"""
    impact = await policy_impact(demo, sql, PEOPLE, tables=["tasks"])
    assert cells(impact) == {  # neither Alice nor Bob has a done task
        ("alice@example.com", "public.tasks", "delete"): ("allowed (3 rows)", "filtered (0 rows)"),
        ("bob@example.com", "public.tasks", "delete"): ("allowed (2 rows)", "filtered (0 rows)"),
    }
    assert [(p.name, p.change) for p in impact.policy_changes] == [("owners delete their tasks", "altered")]


# -- RLS and grants ------------------------------------------------------------------------------------
async def test_disabled_rls(demo: str) -> None:
    impact = await policy_impact(demo, "alter table public.announcements disable row level security", PEOPLE,
                                 tables=["announcements"])  # fmt: skip
    expected = {}
    for who in ("anon", "alice@example.com", "bob@example.com"):
        expected[(who, "public.announcements", "select")] = ("allowed (1 row)", "allowed (2 rows)")
        expected[(who, "public.announcements", "insert")] = ("refused", "allowed (1 row)")
        expected[(who, "public.announcements", "update")] = ("filtered (0 rows)", "allowed (2 rows)")
        expected[(who, "public.announcements", "delete")] = ("filtered (0 rows)", "allowed (2 rows)")
    assert cells(impact) == expected  # service_role bypasses RLS: unchanged
    assert {c.explained_by[0] for c in impact.changes} == {"table RLS disabled"}
    assert ("added", "policy_exists_rls_disabled") in {(lint.change, lint.name) for lint in impact.lint_changes}


async def test_enabled_rls_and_revoked_grant(notes_db: str) -> None:
    before = await fingerprint(notes_db)
    impact = await policy_impact(notes_db, "alter table public.notes enable row level security")
    assert impact.identities == ["anon", "service_role"]  # no user in auth.users here
    assert cells(impact) == {
        ("anon", "public.notes", "select"): ("allowed (2 rows)", "filtered (0 rows)"),
        ("anon", "public.notes", "insert"): ("allowed (1 row)", "refused"),
        ("anon", "public.notes", "update"): ("allowed (2 rows)", "filtered (0 rows)"),
        ("anon", "public.notes", "delete"): ("allowed (2 rows)", "filtered (0 rows)"),
    }
    lints = {(lint.change, lint.name) for lint in impact.lint_changes}
    assert {("removed", "rls_disabled_in_public"), ("added", "rls_enabled_no_policy")} <= lints

    revoked = await policy_impact(notes_db, "revoke insert, delete on public.notes from anon")
    assert cells(revoked) == {
        ("anon", "public.notes", "insert"): ("allowed (1 row)", "refused"),
        ("anon", "public.notes", "delete"): ("allowed (2 rows)", "refused"),
    }
    assert revoked.change("anon", "notes", "insert").explained_by == ["INSERT revoked from anon"]
    assert [(g.role, g.privilege, g.change) for g in revoked.grant_changes] == [
        ("anon", "DELETE", "revoked"),
        ("anon", "INSERT", "revoked"),
    ]
    assert await fingerprint(notes_db) == before


# -- functions and data ----------------------------------------------------------------------------------
LEAKY_HELPER = """
create function public.is_project_member(pid bigint) returns boolean
  language sql stable security definer as $$
  select exists (select 1 from public.memberships m join public.projects p on p.org_id = m.org_id
                 where p.id = pid)  -- forgets "and m.user_id = auth.uid()"
$$;
create policy "project members read tasks" on public.tasks for select to authenticated
  using (public.is_project_member(project_id));
"""


async def test_security_definer_helper_used_by_a_policy(demo: str) -> None:
    impact = await policy_impact(demo, LEAKY_HELPER, PEOPLE, tables=["tasks"])
    assert cells(impact) == {
        ("alice@example.com", "public.tasks", "select"): ("allowed (3 rows)", "allowed (7 rows)"),
        ("bob@example.com", "public.tasks", "select"): ("allowed (2 rows)", "allowed (7 rows)"),
    }
    change = impact.change("bob@example.com", "tasks", "select")
    assert change.explained_by == [
        'policy "project members read tasks" added',
        "security definer function public.is_project_member(bigint) added",
    ]
    assert change.depends_on_data and change.reads == ["public.is_project_member(bigint) (function)"]
    assert [(f.function, f.change, f.security_definer) for f in impact.function_changes] == [
        ("public.is_project_member(bigint)", "added", True)
    ]
    added = [lint for lint in impact.lint_changes if lint.change == "added"]
    assert any(lint.name == "function_search_path_mutable" and "is_project_member" in lint.detail for lint in added)


async def test_added_table_without_rls(demo: str) -> None:
    sql = """create table public.secrets (id bigint primary key, value text);
             insert into public.secrets values (1, 'x');"""
    impact = await policy_impact(demo, sql, ["anon", "service_role"], tables=None)
    new = {k: v for k, v in cells(impact).items() if k[1] == "public.secrets"}
    assert cells(impact) == new  # nothing else changed
    # Supabase's default privileges grant the API roles everything on a new table of public: without RLS,
    # anon may read and write every row.
    assert new == {
        (who, "public.secrets", op): (None, "allowed (1 row)")
        for who in ("anon", "service_role")
        for op in ("select", "insert", "update", "delete")
    }
    assert [(t.table, t.change) for t in impact.table_changes] == [("public.secrets", "added without RLS")]
    assert impact.change("anon", "secrets", "select").explained_by == ["table added without RLS"]
    added = [(lint.name, lint.level) for lint in impact.lint_changes if lint.change == "added"]
    assert ("rls_disabled_in_public", "ERROR") in added


async def test_data_only_migration_and_data_dependent_cells(demo: str) -> None:
    sql = f"insert into public.memberships (org_id, user_id) values (2, '{ALICE}')"
    impact = await policy_impact(demo, sql, ["alice@example.com"], tables=["projects", "organizations"])
    assert cells(impact) == {
        ("alice@example.com", "public.projects", "select"): ("allowed (2 rows)", "allowed (3 rows)"),
        ("alice@example.com", "public.organizations", "select"): ("allowed (1 row)", "allowed (2 rows)"),
    }
    change = impact.change("alice@example.com", "projects", "select")
    assert change.explained_by == ["no catalog change on this table: the migration changed rows its policies read"]
    assert change.reads == ["public.is_org_member(bigint) (function)"]
    # every cell whose policies read other tables is listed, changed or not
    assert impact.data_dependent[("alice@example.com", "public.projects", "select")] == change.reads
    assert ("alice@example.com", "public.projects", "update") in impact.data_dependent


async def test_custom_claims_identity_covers_role_based_policies(demo: str) -> None:
    sql = """drop policy "admins read every task" on public.tasks;
             create policy "admins read every task" on public.tasks for select to authenticated
               using ((select auth.jwt() ->> 'user_role') in ('admin', 'auditor'));"""
    auditor = 'bob@example.com+{"user_role": "auditor"}'
    impact = await policy_impact(demo, sql, ["bob@example.com", auditor], tables=["tasks"])
    label = "bob@example.com + user_role=auditor"
    assert impact.identities == ["bob@example.com", label]
    assert cells(impact) == {(label, "public.tasks", "select"): ("allowed (2 rows)", "allowed (7 rows)")}


async def test_no_change(demo: str) -> None:
    impact = await policy_impact(demo, "comment on table public.tasks is 'still tasks'", PEOPLE)
    assert not impact.changed and impact.changes == [] and impact.lint_changes == []
    assert "No access change" in render_text(impact)


# -- failure, copy, input ----------------------------------------------------------------------------------
async def test_failing_migration_changes_nothing_and_says_where(demo: str, tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "001_policy.sql").write_text(
        'create policy "anon reads tasks" on public.tasks for select to anon using (true);\n'
    )
    (folder / "002_broken.sql").write_text("-- enable RLS\n\nalter table public.tasks enable row level security;\n"
                                           "alter table public.nope enable row level security;\n")  # fmt: skip
    impact = await policy_impact(demo, folder, PEOPLE, tables=["tasks"])
    assert impact.failed and impact.after is None and impact.changes == []
    failure = impact.failure
    assert failure is not None
    assert (failure.source, failure.line, failure.index) == (str(folder / "002_broken.sql"), 4, 3)
    assert failure.sqlstate == "42P01" and 'relation "public.nope" does not exist' in failure.message
    text = render_text(impact)
    assert f"MIGRATION FAILED at {folder / '002_broken.sql'}:4 (statement 3)" in text
    assert "database is unchanged" in render_markdown(impact) and "migration failed" in render_html(impact)


async def test_a_migration_that_waits_for_a_lock_fails_in_time_and_says_why(demo: str) -> None:
    """Another session holds public.tasks: the migration's drop policy would wait for it forever."""
    holder = await asyncpg.connect(demo)
    try:
        async with holder.transaction():
            await holder.execute("lock table public.tasks in access share mode")
            impact = await asyncio.wait_for(
                policy_impact(demo, 'drop policy "owners delete their tasks" on public.tasks;', PEOPLE,
                              tables=["tasks"], statement_timeout_ms=300),
                timeout=60,
            )  # fmt: skip
    finally:
        await holder.close()
    assert impact.failed and impact.after is None and impact.changes == []
    failure = impact.failure
    assert failure is not None and failure.sqlstate == "55P03"
    assert "another session holds a lock" in failure.message and "pg_blocking_pids" in failure.message
    assert "lock timeout" in render_text(impact)


async def test_concurrent_index_runs_on_a_throwaway_copy(notes_db: str) -> None:
    before = await fingerprint(notes_db)
    sql = """create index concurrently notes_body_idx on public.notes (body);
             alter table public.notes enable row level security;
             create policy "anon reads notes" on public.notes for select to anon using (id = 1);"""
    impact = await policy_impact(notes_db, sql)
    assert impact.mode == "copy"
    assert cells(impact) == {
        ("anon", "public.notes", "select"): ("allowed (2 rows)", "allowed (1 row)"),
        ("anon", "public.notes", "insert"): ("allowed (1 row)", "refused"),
        ("anon", "public.notes", "update"): ("allowed (2 rows)", "filtered (0 rows)"),
        ("anon", "public.notes", "delete"): ("allowed (2 rows)", "filtered (0 rows)"),
    }
    assert any("throwaway copy" in n for n in impact.notes)
    conn = await asyncpg.connect(notes_db)
    try:
        assert await conn.fetchval("select count(*) from pg_database where datname like 'wb_impact_%'") == 0
        assert await conn.fetchval("select to_regclass('public.notes_body_idx')") is None
    finally:
        await conn.close()
    assert await fingerprint(notes_db) == before


def test_load_migration_from_text_file_and_folder(tmp_path: Path) -> None:
    text = load_migration("select 1;\n\n-- two\nselect $$;$$;\nbegin;\ncommit;")
    assert [(s.line, s.index, s.sql) for s in text.statements] == [(1, 1, "select 1"), (4, 2, "-- two\nselect $$;$$")]
    assert [s.sql for s in text.skipped] == ["begin", "commit"] and text.transactional
    (tmp_path / "b.sql").write_text("select 2;")
    (tmp_path / "a.sql").write_text("select 1;\ncreate index concurrently i on t (c);")
    (tmp_path / "notes.txt").write_text("not sql")
    folder = load_migration(tmp_path)
    assert [(Path(s.source).name, s.line, s.index) for s in folder.statements] == [
        ("a.sql", 1, 1), ("a.sql", 2, 2), ("b.sql", 1, 3),
    ]  # fmt: skip
    assert not folder.transactional
    assert load_migration(str(tmp_path / "b.sql")).statements[0].sql == "select 2"


def test_bad_migration_input_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(MigrationError, match="No migration file or folder .*missing.sql"):
        load_migration(tmp_path / "missing.sql")
    with pytest.raises(MigrationError, match="has no .sql files"):
        load_migration(tmp_path)
    with pytest.raises(MigrationError, match="<sql>:2: unterminated quoted string"):
        load_migration("select 1;\nselect 'oops")
    with pytest.raises(MigrationError, match="rolls back"):
        load_migration("create table t (id int);\nrollback;")
    with pytest.raises(MigrationError, match="no SQL statement"):
        load_migration("-- nothing\n;")


COMPOSITE = f"""
drop policy "owners delete their tasks" on public.tasks;
alter table public.announcements disable row level security;
insert into public.memberships (org_id, user_id) values (2, '{ALICE}');
create or replace function public.is_org_member(org bigint) returns boolean
  language sql stable security definer set search_path = '' as $$
  select exists (select 1 from public.memberships m where m.org_id = org and m.user_id = (select auth.uid()))
     or org = 1
$$;
revoke update on public.profiles from authenticated;
"""


@pytest.mark.parametrize("migration", [COMPOSITE, LEAKY_HELPER, "comment on table public.tasks is 'x'"],
                         ids=["composite", "leaky-helper", "comment"])  # fmt: skip
async def test_only_affected_tables_are_tried_and_the_result_is_the_same(demo: str, migration: str) -> None:
    quick = await policy_impact(demo, migration)
    full = await policy_impact(demo, migration, full=True)
    assert cells(quick) == cells(full)
    assert [c.explained_by for c in quick.changes] == [c.explained_by for c in full.changes]
    assert {(g.role, g.table, g.privilege) for g in quick.grant_changes} == {
        (g.role, g.table, g.privilege) for g in full.grant_changes
    }
    assert full.after is not None and quick.after is not None
    assert len(quick.after.tables) <= len(full.after.tables) == 6
    if migration.startswith("comment"):
        assert quick.after.tables == [] and any("6 table(s) left out" in n for n in quick.notes)


async def test_a_changed_function_behind_a_helper_is_followed(notes_db: str) -> None:
    conn = await asyncpg.connect(notes_db)
    try:
        await conn.execute(
            """create function public.inner_rule(n bigint) returns boolean language sql stable as $$ select n = 1 $$;
               create function public.outer_rule(n bigint) returns boolean language sql stable security definer
                 set search_path = '' as $$ select public.inner_rule(n) $$;
               alter table public.notes enable row level security;
               create policy "rule reads notes" on public.notes for select to anon using (public.outer_rule(id));"""
        )
    finally:
        await conn.close()
    sql = "create or replace function public.inner_rule(n bigint) returns boolean language sql as $$ select true $$"
    quick = await policy_impact(notes_db, sql)
    assert cells(quick) == {("anon", "public.notes", "select"): ("allowed (1 row)", "allowed (2 rows)")}
    assert cells(quick) == cells(await policy_impact(notes_db, sql, full=True))
    assert quick.change("anon", "notes", "select").explained_by == [
        "a function its policies call may call a changed one: public.inner_rule(bigint) altered"
    ]
