"""``explain_rows`` / ``explain_statement`` on a throwaway schema with every kind of policy: in each case the
explanation's verdict must agree with what the identity really sees or may write (the real statement is run
as that identity, in a transaction of its own that is rolled back), and nothing is ever committed."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workbench.core.identity import Identity, user_identity
from workbench.core.impersonation import apply_statement
from workbench.notebook.bridge import shared_loop
from workbench.policies.why import WhyError, WhyReport, explain_rows, explain_statement, split_table

from .conftest import fingerprint

ALICE = "11111111-1111-4111-8111-111111111111"
BOB = "22222222-2222-4222-8222-222222222222"
CAROL = "33333333-3333-4333-8333-333333333333"

SCHEMA = f"""
create role why_owner nologin;
grant why_owner to current_user;  -- postgres is not a superuser: it needs SET on a role to give it objects
create schema why_t;
grant usage on schema why_t to anon, authenticated, why_owner;
grant create on schema why_t to why_owner;  -- a table's new owner needs it (only superusers skip the check)

-- permissive + restrictive policies, custom claims, anonymous users
create table why_t.notes (id int primary key, owner uuid, body text, sensitive boolean not null default false);
alter table why_t.notes enable row level security;
grant select, insert, update, delete on why_t.notes to authenticated;
create policy "owners read" on why_t.notes for select to authenticated using (owner = (select auth.uid()));
create policy "admins read" on why_t.notes for select to authenticated
  using ((select auth.jwt() ->> 'user_role') = 'admin');
create policy "no anonymous users" on why_t.notes as restrictive for select to authenticated
  using (not coalesce((select (auth.jwt() ->> 'is_anonymous')::boolean), false));
create policy "mfa required" on why_t.notes as restrictive for select to authenticated
  using (not sensitive or (select auth.jwt() ->> 'aal') = 'aal2');
create policy "owners write" on why_t.notes for insert to authenticated with check (owner = (select auth.uid()));
create policy "owners update" on why_t.notes for update to authenticated
  using (owner = (select auth.uid())) with check (owner = (select auth.uid()) and body <> '');
create policy "owners delete" on why_t.notes for delete to authenticated using (owner = (select auth.uid()));
insert into why_t.notes values
  (1, '{ALICE}', 'alice plain', false), (2, '{ALICE}', 'alice secret', true), (3, '{BOB}', 'bob plain', false),
  (4, '{BOB}', 'bob draft', false), (5, '{CAROL}', 'carol', false);

-- a policy that raises for one row
create table why_t.ratios (id int primary key, divisor int not null);
alter table why_t.ratios enable row level security;
grant select on why_t.ratios to authenticated;
create policy "divides" on why_t.ratios for select to authenticated using (10 / divisor > 0);
insert into why_t.ratios values (1, 1), (2, 0);

-- membership through a sub-query on another RLS table, and through a security definer helper
create table why_t.members (org_id int, user_id uuid, primary key (org_id, user_id));
alter table why_t.members enable row level security;
grant select on why_t.members to authenticated;
create policy "see own membership" on why_t.members for select to authenticated using (user_id = (select auth.uid()));
insert into why_t.members values (1, '{ALICE}'), (2, '{BOB}');
create function why_t.is_member(org int) returns boolean language sql stable security definer set search_path = ''
  as $$ select exists (select 1 from why_t.members m where m.org_id = org and m.user_id = (select auth.uid())) $$;
create table why_t.docs (id int primary key, org_id int, title text);
alter table why_t.docs enable row level security;
grant select on why_t.docs to authenticated;
create policy "members see docs" on why_t.docs for select to authenticated
  using (org_id in (select m.org_id from why_t.members m));
create table why_t.files (id int primary key, org_id int, name text);
alter table why_t.files enable row level security;
grant select on why_t.files to authenticated;
create policy "members see files" on why_t.files for select to authenticated using (why_t.is_member(org_id));
insert into why_t.docs values (1, 1, 'acme plan'), (2, 2, 'globex plan'), (3, 3, 'orphan');
insert into why_t.files values (1, 1, 'a.pdf'), (2, 2, 'b.pdf'), (3, 3, 'c.pdf');

-- column grants: authenticated may read two columns only; anon nothing at all; a policy on the wrong role
create table why_t.cards (id int primary key, title text, pin text);
alter table why_t.cards enable row level security;
grant select (id, title) on why_t.cards to authenticated;
create policy "everyone reads cards" on why_t.cards for select to authenticated using (true);
create table why_t.posts (id int primary key, body text);
alter table why_t.posts enable row level security;
grant select on why_t.posts to anon, authenticated;
create policy "signed-in users read posts" on why_t.posts for select to authenticated using (true);
insert into why_t.cards values (1, 'visa', '1234'), (2, 'amex', '9999');
insert into why_t.posts values (1, 'hello'), (2, 'world');

-- FORCE ROW LEVEL SECURITY for the owner, next to a table that does not force it
create table why_t.forced (id int primary key, body text);
create table why_t.unforced (id int primary key, body text);
alter table why_t.forced owner to why_owner;
alter table why_t.unforced owner to why_owner;
alter table why_t.forced enable row level security;
alter table why_t.forced force row level security;
alter table why_t.unforced enable row level security;
create policy "owner sees even ids" on why_t.forced for select to why_owner using (id % 2 = 0);
create policy "owner sees even ids" on why_t.unforced for select to why_owner using (id % 2 = 0);
insert into why_t.forced values (1, 'one'), (2, 'two'), (3, 'three');
insert into why_t.unforced values (1, 'one'), (2, 'two'), (3, 'three');

-- views: security_invoker off (read as the owner, postgres) and on (read as the caller)
create view why_t.notes_definer as select id, owner, body from why_t.notes;
create view why_t.notes_invoker with (security_invoker = on) as select id, owner, body from why_t.notes;
grant select on why_t.notes_definer, why_t.notes_invoker to authenticated;
"""

CLEANUP = "drop schema if exists why_t cascade; drop role if exists why_owner;"


@pytest.fixture(scope="module")
async def dsn(standin) -> AsyncIterator[str]:  # type: ignore[no-untyped-def]
    """The session stand-in with the why_t schema; dropped afterwards."""
    target = standin.dsn()
    conn = await asyncpg.connect(target)
    try:
        await conn.execute(CLEANUP)
        await conn.execute(SCHEMA)
    finally:
        await conn.close()
    yield target
    conn = await asyncpg.connect(target)
    try:
        await conn.execute(CLEANUP)
    finally:
        await conn.close()


@pytest.fixture()
async def conn(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(dsn)
    yield connection
    await connection.close()


async def user(conn: asyncpg.Connection, email: str, claims: dict[str, Any] | None = None) -> Identity:
    return await user_identity(conn, email, extra_claims=claims)


def anonymous_user() -> Identity:
    """A signed-in anonymous user (Supabase's anonymous sign-ins): authenticated, ``is_anonymous`` true."""
    sub = str(uuid.uuid4())
    claims = {"sub": sub, "role": "authenticated", "aud": "authenticated", "is_anonymous": True}
    return Identity.from_claims(claims, label="anonymous")


async def real(conn: asyncpg.Connection, identity: Identity, sql: str, *args: Any) -> str:
    """The status of ``sql`` run as the identity ("UPDATE 1", or "error <sqlstate>"), rolled back."""
    tx = conn.transaction()
    await tx.start()
    try:
        apply_sql, values = apply_statement(identity)
        await conn.fetchval(apply_sql, *values)
        return str(await conn.execute(sql, *args))
    except asyncpg.PostgresError as exc:
        return f"error {exc.sqlstate}"
    finally:
        await tx.rollback()


async def visible_ids(
    conn: asyncpg.Connection, identity: Identity, table: str, columns: str = "id", *args: Any
) -> set[Any]:
    """What the identity really reads (``select columns from table``), rolled back; refused reads nothing."""
    tx = conn.transaction()
    await tx.start()
    try:
        apply_sql, values = apply_statement(identity)
        await conn.fetchval(apply_sql, *values)
        return {r[0] for r in await conn.fetch(f"select {columns} from {table}", *args)}
    except asyncpg.InsufficientPrivilegeError:
        return set()
    finally:
        await tx.rollback()


def explained_visible(report: WhyReport, column: str = "id") -> set[Any]:
    return {row.values[column] for row in report.rows if row.outcome == "visible"}


def by_id(report: WhyReport) -> dict[Any, Any]:
    return {row.values["id"]: row for row in report.rows}


# -- SELECT ---------------------------------------------------------------------------------------------
async def test_permissive_and_restrictive_policies_agree_with_the_real_query(conn: asyncpg.Connection) -> None:
    alice = await user(conn, "alice@example.com")
    report = await explain_rows(conn, alice, "why_t.notes")
    assert explained_visible(report) == await visible_ids(conn, alice, "why_t.notes") == {1}
    rows = by_id(report)
    assert rows[2].outcome == "hidden" and rows[2].reason.startswith("restrictive policy 'mfa required' is false")
    assert rows[3].outcome == "hidden" and "'owners read' false" in rows[3].reason
    assert rows[1].reason == "policy 'owners read' is true"
    values = {c.name: c.value for c in rows[1].checks}
    assert values == {
        "owners read": "true",
        "admins read": "null",
        "no anonymous users": "true",
        "mfa required": "true",
    }
    assert all(row.observed == (row.outcome == "visible") for row in report.rows)
    assert report.summary.startswith("1 of 5 rows visible to alice@example.com on why_t.notes")


async def test_custom_claims_and_mfa(conn: asyncpg.Connection) -> None:
    admin = await user(conn, "carol@example.com", {"user_role": "admin", "aal": "aal2"})
    report = await explain_rows(conn, admin, "why_t.notes")
    assert explained_visible(report) == await visible_ids(conn, admin, "why_t.notes") == {1, 2, 3, 4, 5}
    assert by_id(report)[3].reason == "policy 'admins read' is true"


async def test_a_policy_that_raises_is_an_error_and_so_is_the_real_query(conn: asyncpg.Connection) -> None:
    bob = await user(conn, "bob@example.com")
    report = await explain_rows(conn, bob, "why_t.ratios")
    assert {r.values["id"]: r.outcome for r in report.rows} == {1: "visible", 2: "error"}
    row = by_id(report)[2]
    assert "division by zero" in row.reason and "'divides'" in row.reason
    assert [c.value for c in row.checks] == ["error"]
    assert await real(conn, bob, "select * from why_t.ratios") == "error 22012"
    report = await explain_rows(conn, bob, "why_t.ratios", key=1)  # one row: the other's error is not its own
    assert [r.outcome for r in report.rows] == ["visible"]


async def test_anonymous_users_are_stopped_by_the_restrictive_policy(conn: asyncpg.Connection) -> None:
    anonymous = anonymous_user()
    report = await explain_rows(conn, anonymous, "why_t.notes")
    assert explained_visible(report) == await visible_ids(conn, anonymous, "why_t.notes") == set()
    # no permissive policy is true for a stranger; a stranger made admin is stopped by the restrictive one
    admin_anon = anonymous.with_claims({"user_role": "admin"})
    report = await explain_rows(conn, admin_anon, "why_t.notes")
    assert explained_visible(report) == await visible_ids(conn, admin_anon, "why_t.notes") == set()
    reasons = {r.values["id"]: r.reason for r in report.rows}
    assert reasons[1] == "restrictive policy 'no anonymous users' is false"
    assert reasons[2] == "restrictive policy 'mfa required' is null for sensitive=True"  # no aal claim at all


async def test_membership_through_a_subquery_on_another_rls_table(conn: asyncpg.Connection) -> None:
    for email, expected in [("alice@example.com", {1}), ("bob@example.com", {2}), ("carol@example.com", set())]:
        who = await user(conn, email)
        report = await explain_rows(conn, who, "why_t.docs")
        assert explained_visible(report) == await visible_ids(conn, who, "why_t.docs") == expected
    carol = by_id(report)
    assert carol[1].reason == "policy 'members see docs' is false for org_id=1"


async def test_membership_through_a_security_definer_function(conn: asyncpg.Connection) -> None:
    for email, expected in [("alice@example.com", {1}), ("bob@example.com", {2})]:
        who = await user(conn, email)
        report = await explain_rows(conn, who, "why_t.files")
        assert explained_visible(report) == await visible_ids(conn, who, "why_t.files") == expected
        assert all(c.expression == "why_t.is_member(org_id)" for r in report.rows for c in r.checks)


async def test_column_grants_and_a_missing_grant(conn: asyncpg.Connection) -> None:
    bob = await user(conn, "bob@example.com")
    report = await explain_rows(conn, bob, "why_t.cards")
    assert explained_visible(report) == await visible_ids(conn, bob, "why_t.cards") == {1, 2}
    assert report.facts.column_privileges == {"id": True, "title": True, "pin": False}
    assert not report.facts.table_privilege
    assert any("select only some columns (id, title)" in n for n in report.notes)
    assert await real(conn, bob, "select * from why_t.cards") == "error 42501"
    anon = Identity.anon()
    report = await explain_rows(conn, anon, "why_t.cards")
    assert {r.outcome for r in report.rows} == {"refused"}
    assert report.rows[0].reason.startswith("role anon has no SELECT privilege on why_t.cards")
    assert "grant select on why_t.cards to anon" in report.rows[0].reason
    assert await real(conn, anon, "select id from why_t.cards") == "error 42501"


async def test_a_policy_on_the_wrong_role(conn: asyncpg.Connection) -> None:
    anon = Identity.anon()
    report = await explain_rows(conn, anon, "why_t.posts")
    assert explained_visible(report) == await visible_ids(conn, anon, "why_t.posts") == set()
    assert {r.reason for r in report.rows} == {"no permissive SELECT policy for role anon: default deny on rows"}
    assert "the table's policies are for authenticated, not anon" in report.summary
    assert [p.name for p in report.other_policies] == ["signed-in users read posts"]


async def test_force_row_level_security_applies_to_the_owner(conn: asyncpg.Connection) -> None:
    owner = Identity.for_role("why_owner")
    forced = await explain_rows(conn, owner, "why_t.forced")
    assert explained_visible(forced) == await visible_ids(conn, owner, "why_t.forced") == {2}
    assert forced.facts.rls_forced and forced.facts.role_is_owner
    unforced = await explain_rows(conn, owner, "why_t.unforced")
    assert explained_visible(unforced) == await visible_ids(conn, owner, "why_t.unforced") == {1, 2, 3}
    assert "owns why_t.unforced and RLS is not forced" in unforced.rows[0].reason


async def test_bypassrls_and_superuser(conn: asyncpg.Connection) -> None:
    service = Identity.service_role()
    report = await explain_rows(conn, service, "why_t.members")
    assert report.rows and {r.outcome for r in report.rows} == {"refused"}  # no grant to service_role
    assert await real(conn, service, "select * from why_t.members") == "error 42501"
    assert "has no USAGE on schema why_t" in report.rows[0].reason
    await conn.execute("grant usage on schema why_t to service_role; grant select on why_t.members to service_role")
    try:
        report = await explain_rows(conn, service, "why_t.members")
        assert {r.reason for r in report.rows} == {"role service_role has BYPASSRLS: policies are not applied"}
        assert len(explained_visible(report, "org_id")) == 2
    finally:
        await conn.execute(
            "revoke select on why_t.members from service_role; revoke usage on schema why_t from service_role"
        )
    # No identity: postgres, which is no superuser (as on Supabase) but has BYPASSRLS.
    report = await explain_rows(conn, Identity.none(), "why_t.members")
    assert {r.outcome for r in report.rows} == {"visible"}
    assert {r.reason for r in report.rows} == {"role postgres has BYPASSRLS: policies are not applied"}


async def test_views_with_security_invoker_off_and_on(conn: asyncpg.Connection) -> None:
    bob = await user(conn, "bob@example.com")
    definer = await explain_rows(conn, bob, "why_t.notes_definer")
    assert definer.facts.security_invoker is False
    assert explained_visible(definer) == await visible_ids(conn, bob, "why_t.notes_definer") == {1, 2, 3, 4, 5}
    assert "security_invoker is off" in definer.summary and "bypasses RLS" in definer.summary
    invoker = await explain_rows(conn, bob, "why_t.notes_invoker")
    assert invoker.facts.security_invoker is True
    assert explained_visible(invoker) == await visible_ids(conn, bob, "why_t.notes_invoker") == {3, 4}
    assert "security_invoker is on" in invoker.rows[0].reason and "why_t.notes" in invoker.rows[0].reason


# -- writes ---------------------------------------------------------------------------------------------
async def test_insert_checks_each_proposed_row_against_with_check(conn: asyncpg.Connection) -> None:
    bob = await user(conn, "bob@example.com")
    good = f"insert into why_t.notes (id, owner, body) values (10, '{BOB}', 'mine')"
    report = await explain_statement(conn, bob, good)
    assert [r.outcome for r in report.rows] == ["allowed"]
    assert await real(conn, bob, good) == "INSERT 0 1" and report.observed_status == "INSERT 1"
    bad = f"insert into why_t.notes (id, owner, body) values (11, '{BOB}', 'mine'), (12, '{ALICE}', 'hers')"
    report = await explain_statement(conn, bob, bad)
    assert [r.outcome for r in report.rows] == ["allowed", "refused"]
    assert report.rows[1].reason.startswith("insert: policy 'owners write' is false for owner=1111")
    assert await real(conn, bob, bad) == "error 42501"
    assert "the statement as a whole fails" in report.summary
    anon = await explain_statement(conn, Identity.anon(), good)
    assert anon.rows[0].outcome == "refused" and "no INSERT privilege" in anon.rows[0].reason


async def test_update_explains_zero_rows_and_with_check(conn: asyncpg.Connection) -> None:
    bob = await user(conn, "bob@example.com")
    report = await explain_statement(conn, bob, "update why_t.notes set body = body || '!' where id in (1, 3, 5)")
    outcomes = {r.values["id"]: r.outcome for r in report.rows}
    assert outcomes == {1: "skipped", 3: "allowed", 5: "skipped"}
    for row_id, outcome in outcomes.items():
        status = await real(conn, bob, "update why_t.notes set body = body || '!' where id = $1", row_id)
        assert status == ("UPDATE 1" if outcome == "allowed" else "UPDATE 0"), (row_id, status)
    row = by_id(report)[1]
    assert row.reason.startswith("update: policy 'owners update' is false for owner=1111")
    assert by_id(report)[3].new_values == {**by_id(report)[3].values, "body": "bob plain!"}
    # the new row breaks WITH CHECK: an error, not a silent 0
    emptied = await explain_statement(conn, bob, "update why_t.notes set body = '' where id = 3")
    assert emptied.rows[0].outcome == "refused" and emptied.rows[0].reason.startswith("new row: policy 'owners update'")
    assert await real(conn, bob, "update why_t.notes set body = '' where id = 3") == "error 42501"
    assert emptied.observed_status is not None and emptied.observed_status.startswith("error 42501")


async def test_update_and_delete_of_existing_rows_by_filter(conn: asyncpg.Connection) -> None:
    alice = await user(conn, "alice@example.com", {"aal": "aal2"})
    for op in ("update", "delete"):
        report = await explain_rows(conn, alice, "why_t.notes", operation=op)
        for row in report.rows:
            sql = (
                "update why_t.notes set body = body where id = $1"
                if op == "update"
                else "delete from why_t.notes where id = $1"
            )
            status = await real(conn, alice, sql, row.values["id"])
            assert status.endswith(" 1") == (row.outcome == "allowed"), (op, row.values["id"], status, row.reason)
            assert row.observed == (row.outcome == "allowed")


async def test_delete_statement(conn: asyncpg.Connection) -> None:
    alice = await user(conn, "alice@example.com")
    report = await explain_statement(conn, alice, "delete from why_t.notes where id in (1, 3)")
    assert {r.values["id"]: r.outcome for r in report.rows} == {1: "allowed", 3: "skipped"}
    assert report.observed_status == "DELETE 1"
    assert await real(conn, alice, "delete from why_t.notes where id in (1, 3)") == "DELETE 1"


async def test_a_select_statement_is_explained_as_its_table_and_filter(conn: asyncpg.Connection) -> None:
    alice = await user(conn, "alice@example.com")
    report = await explain_statement(conn, alice, "select * from why_t.notes where id < 3")
    assert [r.values["id"] for r in report.rows] == [1, 2] and report.operation == "select"


async def test_nothing_is_committed_and_the_connection_is_left_clean(dsn: str, conn: asyncpg.Connection) -> None:
    before = await fingerprint(dsn)
    bob = await user(conn, "bob@example.com")
    await explain_statement(conn, bob, f"insert into why_t.notes (id, owner, body) values (20, '{BOB}', 'x')")
    await explain_statement(conn, bob, "update why_t.notes set body = 'y' where id = 3")
    await explain_statement(conn, bob, "delete from why_t.notes where id = 3")
    await explain_rows(conn, bob, "why_t.notes", operation="delete")
    assert await fingerprint(dsn) == before
    left = await conn.fetchrow(
        "select current_user, current_setting('request.jwt.claims', true) as claims, "
        "current_setting('row_security') as rs"
    )
    assert left["current_user"] == "postgres" and left["claims"] in (None, "") and left["rs"] == "on"
    assert not conn.is_in_transaction()


# -- bad input ------------------------------------------------------------------------------------------
async def test_bad_input_says_what_to_do(conn: asyncpg.Connection) -> None:
    bob = await user(conn, "bob@example.com")
    with pytest.raises(WhyError, match="No table or view nope"):
        await explain_rows(conn, bob, "why_t.nope")
    with pytest.raises(WhyError, match="Unknown operation 'merge'"):
        await explain_rows(conn, bob, "why_t.notes", operation="merge")
    with pytest.raises(WhyError, match="give the statement itself"):
        await explain_rows(conn, bob, "why_t.notes", operation="insert")
    with pytest.raises(WhyError, match="either a key"):
        await explain_rows(conn, bob, "why_t.notes", key=1, where="id = 1")
    with pytest.raises(WhyError, match="Check the --where filter"):
        await explain_rows(conn, bob, "why_t.notes", where="no_such_column = 1")
    with pytest.raises(WhyError, match="exactly one statement"):
        await explain_statement(conn, bob, "select 1; select 2")
    with pytest.raises(WhyError, match="CREATE is not explained"):
        await explain_statement(conn, bob, "create table x (id int)")
    with pytest.raises(WhyError, match="fails even for the table's owner"):
        await explain_statement(conn, bob, "insert into why_t.notes (id, owner, body) values (1, null, 'dup')")
    with pytest.raises(WhyError, match="one table, without an alias"):
        await explain_statement(conn, bob, "select * from why_t.notes n join why_t.docs d on true")
    assert split_table('why_t."Odd.Name"') == ("why_t", "Odd.Name")
    assert not conn.is_in_transaction()


# -- the property: explained visible == returned by the real query, on the demo schema -------------------
DEMO_TABLES = {"tasks": "id", "projects": "id", "organizations": "id", "profiles": "id", "announcements": "id",
               "memberships": "org_id::text || ':' || user_id::text"}  # fmt: skip
USERS = ["alice@example.com", "bob@example.com", "carol@example.com"]


@st.composite
def identities(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """A user (or anon / service_role / a stranger) and random extra claims."""
    who = draw(st.sampled_from([*USERS, "anon", "service_role", "stranger"]))
    claims: dict[str, Any] = {}
    if draw(st.booleans()):
        claims["user_role"] = draw(st.sampled_from(["admin", "member", ""]))
    if draw(st.booleans()):
        claims["is_anonymous"] = draw(st.booleans())
    return who, claims


@pytest.fixture(scope="module")
def demo_conn(standin) -> Any:  # type: ignore[no-untyped-def]
    """One connection on the workbench's background loop (the hypothesis test is synchronous), and the
    key of every row of each demo table."""
    loop = shared_loop()
    connection = loop.run(asyncpg.connect(standin.dsn()))

    async def keys() -> dict[str, list[Any]]:
        return {
            table: [r[0] for r in await connection.fetch(f"select {key} from public.{table} order by 1")]
            for table, key in DEMO_TABLES.items()
        }

    yield loop, connection, loop.run(keys())
    loop.run(connection.close())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(identity=identities(), table=st.sampled_from(sorted(DEMO_TABLES)), data=st.data())
def test_explained_visible_equals_returned_by_the_real_query(demo_conn, identity, table, data) -> None:  # type: ignore[no-untyped-def]
    loop, connection, all_keys = demo_conn
    who, claims = identity
    chosen = data.draw(st.lists(st.sampled_from(all_keys[table]), min_size=1, unique=True), label="rows")
    key = DEMO_TABLES[table]

    async def check() -> None:
        if who in USERS:
            ident = await user_identity(connection, who, extra_claims=claims or None)
        elif who == "stranger":
            stranger = Identity.from_claims({"sub": str(uuid.uuid4()), "role": "authenticated"})
            ident = stranger.with_claims(claims or None)
        else:
            ident = Identity.for_role(who).with_claims(claims or None)
        report = await explain_rows(connection, ident, table, where=f"{key} = any(:keys)", params={"keys": chosen})
        assert len(report.rows) == len(chosen)
        # the explained rows' keys, matched back through the values the report shows
        rows = await connection.fetch(f"select {key} as wb_key, * from public.{table} where {key} = any($1)", chosen)
        key_of = {tuple(str(r[c]) for c in report.columns): r["wb_key"] for r in rows}
        explained = {key_of[tuple(str(row.values[c]) for c in report.columns)] for row in report.rows if row.passes}
        returned = await visible_ids(connection, ident, f"public.{table} where {key} = any($1)", key, chosen)
        detail = [(r.values, r.outcome, r.reason) for r in report.rows]
        assert explained == returned, (ident.describe(), table, detail)
        assert all(row.observed == row.passes for row in report.rows), detail

    loop.run(check())


# -- through a transaction pooler, on the workbench's engine ---------------------------------------------
@pytest.mark.pgbouncer
async def test_explain_through_pgbouncer_on_an_engine(dsn: str, pgbouncer) -> None:  # type: ignore[no-untyped-def]
    from workbench.core.engine import create_engine
    from workbench.core.settings import ConnectionMode
    from workbench.policies.why import explain

    engine = create_engine(pgbouncer.url, ConnectionMode.TRANSACTION)
    try:
        conn = await asyncpg.connect(dsn)
        try:
            alice = await user(conn, "alice@example.com")
        finally:
            await conn.close()
        report = await explain(engine, alice, "why_t.docs")
        assert explained_visible(report) == {1}
        write = await explain(engine, alice, statement="update why_t.notes set body = 'x' where id = 1")
        assert [r.outcome for r in write.rows] == ["allowed"] and write.observed_status == "UPDATE 1"
        with pytest.raises(WhyError, match="not both"):
            await explain(engine, alice, "why_t.docs", statement="delete from why_t.docs")
        # the pooled server connections are left clean: no role, claims or row_security setting behind
        async with engine.connect() as sa_conn:
            raw = (await sa_conn.get_raw_connection()).driver_connection
            assert raw is not None
            left = await raw.fetchrow(
                "select current_user, current_setting('request.jwt.claims', true) as claims, "
                "current_setting('row_security') as rs"
            )
            await sa_conn.rollback()
        assert left["current_user"] == "postgres" and left["claims"] in (None, "") and left["rs"] == "on"
    finally:
        await engine.dispose()
