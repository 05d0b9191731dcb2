"""Each lint: a schema that triggers it (naming the object), one that does not, and its remediation SQL
clears it when applied by hand."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
import pytest

from workbench.core.identity import Identity
from workbench.core.impersonation import apply_statement
from workbench.core.sqlnames import quote_ident
from workbench.local.standin import LocalStandIn
from workbench.policies.advisors import (
    LEVELS,
    LINTS,
    group_by_level,
    run_advisors,
    wrap_auth_calls,
)
from workbench.policies.matrix import PolicyMatrixError

from .conftest import fingerprint


@dataclass
class Case:
    lint: str
    good: str  # SQL of objects that must NOT be reported
    bad: str  # SQL of one object that must be reported
    detail: str  # text the finding's detail names
    metadata: dict[str, object]
    fixable: bool = True  # applying the remediation SQL clears the finding


CASES = [
    Case(
        "rls_disabled_in_public",
        good="""create table public.guarded (id int primary key);
                alter table public.guarded enable row level security;
                create table public.unreadable (id int primary key);
                revoke all on public.unreadable from anon, authenticated;
                create schema internal; create table internal.jobs (id int primary key);
                grant usage on schema internal to anon; grant select on internal.jobs to anon;""",
        bad="create table public.notes (id int primary key, body text);",
        detail="Table `public.notes` is in the exposed schema `public` with row level security off: anon and "
        "authenticated can read",
        metadata={"schema": "public", "name": "notes", "exposed_to": ["anon", "authenticated"]},
    ),
    Case(
        "policy_exists_rls_disabled",
        good="""create table public.on_t (id int primary key); alter table public.on_t enable row level security;
                create policy "read" on public.on_t for select using (true);""",
        bad="""create table public.off_t (id int primary key);
               create policy "owners read" on public.off_t for select using (true);
               create policy "owners write" on public.off_t for insert with check (true);""",
        detail="Table `public.off_t` has row level security policies (owners read, owners write) but RLS is disabled",
        metadata={"schema": "public", "name": "off_t", "policies": ["owners read", "owners write"]},
    ),
    Case(
        "rls_enabled_no_policy",
        good="""create table public.with_policy (id int primary key);
                alter table public.with_policy enable row level security;
                create policy "read" on public.with_policy for select to authenticated using (true);
                create table public.rls_off (id int primary key);""",
        bad="create table public.locked (id int primary key); alter table public.locked enable row level security;",
        detail="Table `public.locked` has row level security enabled but no policy",
        metadata={"schema": "public", "name": "locked"},
        fixable=False,  # which rows to allow is the owner's decision: the remediation is a commented example
    ),
    Case(
        "auth_rls_initplan",
        good="""create table public.fast (id int primary key, owner uuid, org text);
                alter table public.fast enable row level security;
                create policy "own" on public.fast for select using ((select auth.uid()) = owner);
                create policy "org" on public.fast for update using ((select auth.jwt() ->> 'org') = org)
                  with check ((select current_setting('request.jwt.claims', true))::jsonb ->> 'org' = org);
                create policy "literal" on public.fast for delete using (org = 'auth.uid()');""",
        bad="""create table public.slow (id int primary key, owner uuid, org text);
               alter table public.slow enable row level security;
               create policy "own rows" on public.slow for all using (auth.uid() = owner)
                 with check (auth.jwt() ->> 'org' = org and current_setting('request.jwt.claims', true) <> '');""",
        detail="Policy `own rows` on `public.slow` calls auth.jwt(), auth.uid(), current_setting(...) for every row",
        metadata={"schema": "public", "name": "slow", "policy": "own rows"},
    ),
    Case(
        "multiple_permissive_policies",
        good="""create table public.one (id int primary key, owner uuid, hidden bool);
                alter table public.one enable row level security;
                create policy "own" on public.one for select to authenticated using ((select auth.uid()) = owner);
                create policy "not hidden" on public.one as restrictive for select to authenticated
                  using (not hidden);
                create policy "anon reads" on public.one for select to anon using (not hidden);""",
        bad="""create table public.two (id int primary key, owner uuid, shared bool);
               alter table public.two enable row level security;
               create policy "own" on public.two for select to authenticated using ((select auth.uid()) = owner);
               create policy "shared" on public.two for select to authenticated using (shared);""",
        detail="Table `public.two` has 2 permissive policies for role `authenticated` and action `SELECT` (own, "
        "shared)",
        metadata={"schema": "public", "name": "two", "role": "authenticated", "action": "SELECT"},
    ),
    Case(
        "unindexed_foreign_keys",
        good="""create table public.parent (a int, b int, primary key (a, b));
                create table public.indexed_child (id int primary key, a int, b int, note text,
                  foreign key (a, b) references public.parent);
                create index on public.indexed_child (b, a, note);""",
        bad="""create table public.lonely_child (id int primary key, a int, b int,
                 constraint lonely_parent_fk foreign key (a, b) references public.parent);
               create index on public.lonely_child (a);""",
        detail="Foreign key `lonely_parent_fk` on `public.lonely_child` (a, b) has no index starting with its columns",
        metadata={"schema": "public", "name": "lonely_child", "fkey_name": "lonely_parent_fk"},
    ),
    Case(
        "function_search_path_mutable",
        good="""create function public.safe_add(a int, b int) returns int language sql set search_path = ''
                  as 'select a + b';""",
        bad="""create function public.unsafe_count(who uuid, since timestamptz default now()) returns bigint
                 language sql security definer as 'select 1::bigint';""",
        detail="Function `public.unsafe_count(who uuid, since timestamp with time zone)` has a role mutable "
        "search_path",
        metadata={"schema": "public", "name": "unsafe_count", "security_definer": True},
    ),
    Case(
        "security_definer_view",
        good="""create table public.base (id int primary key);
                create view public.invoker_v with (security_invoker = true) as select id from public.base;
                create view public.hidden_v as select id from public.base;
                revoke all on public.hidden_v from anon, authenticated;
                create schema private; create view private.definer_v as select id from public.base;""",
        bad="create view public.definer_v as select id from public.base;",
        detail="View `public.definer_v` is SECURITY DEFINER",
        metadata={"schema": "public", "name": "definer_v", "type": "view"},
    ),
    Case(
        "duplicate_index",
        good="""create table public.distinct_ix (id int primary key, a int, b int);
                create index on public.distinct_ix (a); create index on public.distinct_ix (b);
                create unique index on public.distinct_ix (a, b); create index on public.distinct_ix (a, b);
                create index on public.distinct_ix (a) where b > 0;""",
        bad="""create table public.dup_ix (id int primary key, email text);
               alter table public.dup_ix add constraint dup_ix_email_key unique (email);
               create unique index dup_ix_email_again on public.dup_ix (email);
               create unique index dup_ix_email_third on public.dup_ix (email);""",
        detail="Table `public.dup_ix` has identical indexes dup_ix_email_key, dup_ix_email_again, dup_ix_email_third",
        metadata={"schema": "public", "name": "dup_ix"},
    ),
    Case(
        "no_primary_key",
        good="create table public.keyed (id int primary key);",
        bad="""create table public.loose (code text not null, note text);
               create unique index loose_code_key on public.loose (code);
               create table public.looser (note text);""",
        detail="Table `public.loose` has no primary key",
        metadata={"schema": "public", "name": "loose"},
    ),
    Case(
        "auth_users_exposed",
        good="""create view public.me_v with (security_invoker = true) as select id, email from auth.users;
                create view public.private_users_v as select id from auth.users;
                revoke all on public.private_users_v from anon, authenticated;""",
        bad="create view public.all_users as select id, email, raw_user_meta_data from auth.users;",
        detail="View `public.all_users` reads auth.users and anon and authenticated can select from it",
        metadata={"schema": "public", "name": "all_users", "exposed_to": ["anon", "authenticated"]},
    ),
    Case(
        "rls_references_user_metadata",
        good="""create table public.roles_ok (id int primary key);
                alter table public.roles_ok enable row level security;
                create policy "admins" on public.roles_ok for select
                  using ((select auth.jwt() -> 'app_metadata' ->> 'role') = 'admin');""",
        bad="""create table public.roles_bad (id int primary key);
               alter table public.roles_bad enable row level security;
               create policy "admins by metadata" on public.roles_bad for select
                 using ((select auth.jwt() -> 'user_metadata' ->> 'role') = 'admin');""",
        detail="Policy `admins by metadata` on `public.roles_bad` reads `user_metadata` from the JWT",
        metadata={"schema": "public", "name": "roles_bad", "policy": "admins by metadata"},
    ),
]


def test_every_required_lint_has_a_case() -> None:
    assert {c.lint for c in CASES} == set(LINTS)
    assert set(LINTS) >= {
        "rls_disabled_in_public",
        "policy_exists_rls_disabled",
        "rls_enabled_no_policy",
        "auth_rls_initplan",
        "multiple_permissive_policies",
        "unindexed_foreign_keys",
        "function_search_path_mutable",
        "security_definer_view",
        "duplicate_index",
        "no_primary_key",
        "auth_users_exposed",
        "rls_references_user_metadata",
    }


@pytest.mark.parametrize("case", CASES, ids=[c.lint for c in CASES])
async def test_lint_triggers_on_the_bad_schema_only(supabase_db: str, case: Case) -> None:
    conn = await asyncpg.connect(supabase_db)
    try:
        assert await run_advisors(conn, lints=[case.lint]) == [], "the bootstrap alone triggers nothing"
        await conn.execute(case.good)
        assert await run_advisors(conn, lints=[case.lint]) == [], "near misses must not be reported"
        await conn.execute(case.bad)
        found = await run_advisors(conn, lints=[case.lint])
        named = [f for f in found if f.metadata.get("name") == case.metadata["name"]]
        assert len(named) == 1, [f.detail for f in found]
        lint = named[0]
        spec = LINTS[case.lint]
        assert (lint.name, lint.level, lint.title, lint.facing) == (spec.name, spec.level, spec.title, "EXTERNAL")
        assert lint.categories and lint.description
        assert case.detail in lint.detail, lint.detail
        for key, value in case.metadata.items():
            assert lint.metadata[key] == value, (key, lint.metadata)
        assert lint.remediation.strip() and lint.docs_url.startswith("https://supabase.com/docs/")
        if case.fixable:
            await conn.execute(lint.remediation)  # by hand, as the user would after reading it
            remaining = await run_advisors(conn, lints=[case.lint])
            assert [f.detail for f in remaining if f.metadata.get("name") == case.metadata["name"]] == []
        else:
            assert "create policy" in lint.remediation and all(
                line.startswith("--") for line in lint.remediation.strip().splitlines()
            )
    finally:
        await conn.close()


async def test_remediations_are_only_shown_never_applied(supabase_db: str) -> None:
    conn = await asyncpg.connect(supabase_db)
    try:
        for case in CASES:
            await conn.execute(case.good)
        for case in CASES:
            await conn.execute(case.bad)
    finally:
        await conn.close()
    before = await fingerprint(supabase_db)
    conn = await asyncpg.connect(supabase_db)
    try:
        found = await run_advisors(conn)
        state = await conn.fetchval("select count(*) from pg_stat_activity where state like 'idle in transaction%'")
        search_path = await conn.fetchval("show search_path")
    finally:
        await conn.close()
    assert await fingerprint(supabase_db) == before
    assert state == 0 and "public" in search_path
    assert [f.level for f in found] == sorted((f.level for f in found), key=LEVELS.index)
    groups = group_by_level(found)
    assert list(groups) == ["ERROR", "WARN", "INFO"] and all(groups.values())
    assert {f.name for f in found} >= {"rls_disabled_in_public", "auth_rls_initplan", "no_primary_key"}


async def test_the_demo_app_gets_one_warning(standin) -> None:  # type: ignore[no-untyped-def]
    """The demo is written the way Supabase recommends, except two permissive SELECT policies on tasks."""
    conn = await asyncpg.connect(standin.dsn())
    try:
        found = await run_advisors(conn)
    finally:
        await conn.close()
    assert [(f.name, f.metadata["name"], f.metadata["role"]) for f in found] == [
        ("multiple_permissive_policies", "tasks", "authenticated")
    ]
    assert 'drop policy "admins read every task" on public.tasks;' in found[0].remediation


async def test_merged_policy_keeps_the_meaning(supabase_db: str) -> None:
    """The multiple_permissive_policies fix: each user sees the same rows before and after."""
    conn = await asyncpg.connect(supabase_db)
    users = ["00000000-0000-4000-8000-00000000000a", "00000000-0000-4000-8000-00000000000b"]
    try:
        await conn.execute(
            f"""create table public.docs (id int primary key, owner uuid, shared bool not null default false);
                insert into public.docs values (1, '{users[0]}', false), (2, '{users[1]}', false),
                                               (3, '{users[1]}', true), (4, null, false);
                alter table public.docs enable row level security;
                create policy "own" on public.docs for select to authenticated using (owner = (select auth.uid()));
                create policy "shared" on public.docs for select to authenticated using (shared);"""
        )

        async def visible() -> list[list[int]]:
            result = []
            for user in users:
                async with conn.transaction():
                    identity = Identity("authenticated", {"sub": user, "role": "authenticated"})
                    sql, args = apply_statement(identity)
                    await conn.execute(sql, *args)
                    result.append([r[0] for r in await conn.fetch("select id from public.docs order by id")])
            return result

        before = await visible()
        (lint,) = await run_advisors(conn, lints=["multiple_permissive_policies"])
        await conn.execute(lint.remediation)
        assert await visible() == before == [[1, 3], [2, 3]]
        assert await conn.fetchval("select count(*) from pg_policy where polrelid = 'public.docs'::regclass") == 1
    finally:
        await conn.close()


async def test_exposed_schemas_and_bad_input(supabase_db: str, standin: LocalStandIn) -> None:
    conn = await asyncpg.connect(supabase_db)
    try:
        await conn.execute(
            """create schema api; grant usage on schema api to anon;
               create table api.items (id int primary key); grant select on api.items to anon;"""
        )
        assert await run_advisors(conn, lints=["rls_disabled_in_public"]) == []
        (lint,) = await run_advisors(conn, lints=["rls_disabled_in_public"], schemas=["api"])
        assert "`api.items`" in lint.detail and lint.metadata["exposed_to"] == ["anon"]
        name = await conn.fetchval("select current_database()")
    finally:
        await conn.close()
    # PostgREST's setting is the platform's (a superuser's) to set, on Supabase as here: postgres may not.
    admin = await asyncpg.connect(standin.dsn("supabase_admin", database=name))
    try:
        await admin.execute(f"alter database {quote_ident(name)} set pgrst.db_schemas = 'public, api'")
    finally:
        await admin.close()
    conn = await asyncpg.connect(supabase_db)  # the setting applies to new sessions
    try:
        (lint,) = await run_advisors(conn, lints=["rls_disabled_in_public"])
        assert lint.metadata["schema"] == "api"
        assert await run_advisors(conn, levels=["info"]) == [f for f in await run_advisors(conn) if f.level == "INFO"]
        with pytest.raises(PolicyMatrixError, match="Unknown lint.*nope.*choose from rls_disabled_in_public"):
            await run_advisors(conn, lints=["nope"])
        with pytest.raises(PolicyMatrixError, match="Unknown level.*FATAL"):
            await run_advisors(conn, levels=["FATAL"])
    finally:
        await conn.close()


@pytest.mark.parametrize(
    ("expr", "wrapped"),
    [
        ("(auth.uid() = owner)", "((select auth.uid()) = owner)"),
        ("(( SELECT auth.uid() AS uid) = owner)", "(( SELECT auth.uid() AS uid) = owner)"),
        ("(( SELECT (auth.jwt() ->> 'role'::text)) = 'admin'::text)", None),
        ("((auth.jwt() ->> 'role'::text) = 'admin'::text)", "(((select auth.jwt()) ->> 'role'::text) = 'admin'::text)"),
        ("(org = 'auth.uid()'::text)", None),
        ("(owner = current_setting('x''y)'::text, true))", "(owner = (select current_setting('x''y)'::text, true)))"),
        (
            "(current_setting('request.jwt.claims'::text, true) <> ''::text)",
            "((select current_setting('request.jwt.claims'::text, true)) <> ''::text)",
        ),
        (
            "(EXISTS ( SELECT 1 FROM m WHERE (m.user_id = auth.uid())))",
            "(EXISTS ( SELECT 1 FROM m WHERE (m.user_id = (select auth.uid()))))",
        ),
        ("(AUTH.ROLE() = 'x'::text)", "((select AUTH.ROLE()) = 'x'::text)"),
    ],
)
def test_wrap_auth_calls(expr: str, wrapped: str | None) -> None:
    assert wrap_auth_calls(expr) == (wrapped if wrapped is not None else expr)
