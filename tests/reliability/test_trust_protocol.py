"""The query path's trust boundary (issue 12, items 1 and 3), judged by outcomes on a real server.

Item 1: a read-only cell commits nothing, even when it fools the cell splitter (``standard_conforming_strings``
off, a ``\\'`` literal hiding ``; commit; insert ...``): every statement reaches PostgreSQL alone, in its own
Parse message, and a statement that ends the cell's transaction stops the cell with an error that says what
the server did. Item 3: session state a ``--write`` cell leaves behind (role, session authorization, settings,
a temporary table shadowing ``public.tasks``, a WITH HOLD cursor, LISTEN, advisory locks, SQL prepared
statements, ``currval``) never reaches the next identity's cell: through PgBouncer with ONE server connection,
the next cell sees a session as clean as a fresh one.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from reliability.figures import Figures
from workbench.core.engine import EngineOptions, create_engine
from workbench.core.errors import WorkbenchError
from workbench.core.identity import Identity
from workbench.core.impersonation import begin_script, sessionmaker_for
from workbench.core.query import QueryUsageError, TransactionEnded, _check_transaction, _execute_one, run_query
from workbench.core.settings import ConnectionMode
from workbench.local.standin import LocalStandIn

pytestmark = pytest.mark.pgbouncer

TAG = uuid.uuid4().hex[:8]
MARKER = f"public.wb_marker_{TAG}"
ALICE = Identity(
    role="authenticated",
    claims={"sub": "11111111-1111-4111-8111-111111111111", "role": "authenticated", "email": "alice@example.com"},
)
BOB = Identity(
    role="authenticated",
    claims={"sub": "22222222-2222-4222-8222-222222222222", "role": "authenticated", "email": "bob@example.com"},
)
REFUSED = (WorkbenchError, QueryUsageError)

# Everything session-level a cell could leave on a connection, in one row. Compared with a fresh connection's.
PROBE = """
select current_user as cu, session_user as su, auth.uid()::text as uid,
  nullif(current_setting('request.jwt.claims', true), '') as claims,
  (select count(*) from pg_catalog.pg_class where relnamespace = pg_catalog.pg_my_temp_schema()) as temp_rels,
  (select count(*) from pg_catalog.pg_cursors where is_holdable) as held_cursors,
  (select count(*) from pg_catalog.pg_listening_channels()) as channels,
  (select count(*) from pg_catalog.pg_locks where locktype = 'advisory' and pid = pg_catalog.pg_backend_pid())
    as advisory_locks,
  (select count(*) from pg_catalog.pg_prepared_statements where from_sql) as sql_prepared,
  current_setting('default_transaction_read_only') as default_read_only,
  current_setting('default_transaction_isolation') as default_isolation,
  current_setting('standard_conforming_strings') as scs,
  current_setting('backslash_quote') as backslash_quote,
  current_setting('search_path') as search_path,
  nullif(current_setting('app.wb_left', true), '') as app_setting
"""


def row_of(outcome: Any) -> dict[str, Any]:
    """The first row of a query outcome as plain Python values (pandas' missing values as None)."""
    import pandas as pd

    return {k: (None if v is None or v is pd.NA or v != v else v) for k, v in outcome.frame.iloc[0].items()}


def expected_identity(identity: Identity, fresh: dict[str, Any]) -> dict[str, Any]:
    claims = identity.claims or {}
    return {
        "cu": identity.role or fresh["cu"],
        "uid": claims.get("sub"),
        "claims": identity.claims_json() if identity.role else None,
    }


@pytest.fixture(scope="module")
async def marker(standin: LocalStandIn) -> AsyncIterator[str]:
    """A table every role may write to: a row in it is a write that escaped."""
    conn = await asyncpg.connect(standin.dsn())
    try:
        await conn.execute(
            f"create table {MARKER} (n int); grant insert, select on {MARKER} to anon, authenticated, service_role"
        )
        yield MARKER
        await conn.execute(f"drop table if exists {MARKER}")
    finally:
        await conn.close()


async def marker_rows(standin: LocalStandIn) -> int:
    conn = await asyncpg.connect(standin.dsn())
    try:
        return int(await conn.fetchval(f"select count(*) from {MARKER}"))
    finally:
        await conn.close()


@pytest.fixture()
async def one_server(pgbouncer_factory) -> AsyncIterator[AsyncEngine]:  # type: ignore[no-untyped-def]
    """An engine through PgBouncer (transaction mode) with ONE server connection: every cell, whoever runs it,
    lands on the same server session, so anything left on it reaches the next identity."""
    bouncer = pgbouncer_factory(pool_size=1)
    engine = create_engine(bouncer.url, ConnectionMode.TRANSACTION, EngineOptions(pool_size=2, max_overflow=0))
    yield engine
    await engine.dispose()


async def fresh_probe(engine: AsyncEngine) -> dict[str, Any]:
    return row_of(await run_query(engine, PROBE))


# ----------------------------------------------------------------------------------------- item 1


def smuggled(payload: str) -> list[str]:
    """Cells whose splitter view is one harmless statement but whose server view (after the cell changed the
    string settings) holds ``payload``: the original attack and variants of it."""
    return [
        f"set local standard_conforming_strings = off;\nselect 'a\\''; {payload}; select 1 --'\n; select 2",
        f"set local standard_conforming_strings = off;\nselect 'a\\''; {payload}; select 1 --'",
        f"set local standard_conforming_strings = off; set local backslash_quote = on;\n"
        f"select 'x\\'' as t; {payload}; select '1' --'",
        f"set local standard_conforming_strings = off;\nselect 'q\\'', $$x$$; {payload} /* ' */",
        f"select 1 -- hidden\r{payload}\n",
    ]


HIDDEN = [
    "commit; insert into {m} values (1)",
    "end; insert into {m} values (2)",
    "commit and chain; insert into {m} values (3)",
    "rollback and chain; insert into {m} values (4)",
    "insert into {m} values (5)",
]
CELLS = [cell for payload in HIDDEN for cell in smuggled(payload)]


@pytest.mark.parametrize("identity", [Identity.none(), Identity.anon(), ALICE], ids=["postgres", "anon", "alice"])
async def test_a_cell_that_fools_the_splitter_commits_nothing(
    one_server: AsyncEngine, standin: LocalStandIn, marker: str, identity: Identity, figures: Figures
) -> None:
    """The reported attack: under ``standard_conforming_strings = off`` a ``\\'`` literal hid ``; commit; insert``
    from the splitter, the simple-query protocol ran them all, and a row was committed as ``postgres`` under a
    footer saying "read-only, rolled back". Each piece now goes alone in a Parse: the server refuses it."""
    fresh = await fresh_probe(one_server)
    escaped, footers = [], []
    for cell in CELLS:
        sql = cell.format(m=marker)
        try:
            outcome = await run_query(one_server, sql, identity=identity)
            footers.append(outcome.footer)
        except REFUSED:
            pass
        if await marker_rows(standin):
            escaped.append(sql)
        after = await fresh_probe(one_server)
        assert after == fresh, f"{sql!r} left session state behind"
    figures.add("read_only", "attempts", len(CELLS))
    figures.add("read_only", "changes_found", len(escaped))
    assert escaped == []
    assert all("read-only, rolled back" in f for f in footers)


async def test_the_server_refuses_a_second_command_in_one_statement(one_server: AsyncEngine, marker: str) -> None:
    """The refusal comes from PostgreSQL itself, not from the splitter, and says so."""
    cell = smuggled("commit; insert into {m} values (9)")[0].format(m=marker)
    with pytest.raises(WorkbenchError, match="multiple commands"):
        await run_query(one_server, cell, write=True)


ENDINGS = [
    pytest.param("commit", "COMMIT", True, id="commit"),
    pytest.param("end", "COMMIT", True, id="end"),
    pytest.param("commit and chain", "COMMIT", True, id="commit-and-chain"),
    pytest.param("rollback", "ROLLBACK", False, id="rollback"),
    pytest.param("abort", "ROLLBACK", False, id="abort"),
    pytest.param("rollback and chain", "ROLLBACK", False, id="rollback-and-chain"),
    pytest.param("abort and chain", "ROLLBACK", False, id="abort-and-chain"),
]


@pytest.mark.parametrize("write", [False, True], ids=["read-only", "write"])
@pytest.mark.parametrize(("statement", "tag", "commits"), ENDINGS)
async def test_a_statement_that_ends_the_transaction_stops_the_cell(
    standin: LocalStandIn, statement: str, tag: str, commits: bool, write: bool
) -> None:
    """Whatever form it takes (a splitter could miss any of them), the server's transaction status and command
    tag tell that the cell's transaction ended, and the error says whether the server committed it."""
    conn = await asyncpg.connect(standin.dsn())
    try:
        marker_value = uuid.uuid4().hex
        await conn.execute(begin_script(ALICE, readonly=not write, cell_marker=marker_value))
        status = await _execute_one(conn, statement, [])
        assert status.split()[0] == tag
        with pytest.raises(TransactionEnded) as caught:
            await _check_transaction(conn, status, 1, statement, marker=marker_value, write=write)
        assert caught.value.committed is (commits and write)
        message = str(caught.value)
        assert "stopped there" in message
        if commits and write:
            assert "COMMITTED" in message
        elif commits:
            assert "read-only transaction (nothing could be written in it)" in message
        else:
            assert "rolled back" in message
        if "chain" in statement:
            assert "without the cell's identity" in message
    finally:
        await conn.close()


async def test_rollback_to_savepoint_keeps_the_cell_and_its_identity(one_server: AsyncEngine, marker: str) -> None:
    """A savepoint can only be made after the identity is set, so rolling back to it cannot undo the identity;
    the cell goes on, and the footer tells the truth."""
    outcome = await run_query(
        one_server,
        f"savepoint s; insert into {marker} values (7); rollback to savepoint s; "
        "select current_user as cu, auth.uid()::text as uid",
        identity=ALICE,
        write=True,
    )
    row = row_of(outcome)
    assert (row["cu"], row["uid"]) == ("authenticated", ALICE.claims["sub"])  # type: ignore[index]
    assert outcome.footer.endswith("committed")
    check = await run_query(one_server, f"select count(*) as n from {marker}")
    assert row_of(check)["n"] == 0


async def test_friendly_refusals_stay_for_obvious_transaction_control(one_server: AsyncEngine) -> None:
    with pytest.raises(QueryUsageError, match="Transaction control"):
        await run_query(one_server, "select 1; commit")


# ----------------------------------------------------------------------------------------- item 3

LEFT_BEHIND = [
    pytest.param(Identity.none(), "select set_config('role', 'anon', false)", id="role"),
    pytest.param(Identity.none(), "select set_config('session_authorization', 'anon', false)", id="session-auth"),
    pytest.param(
        Identity.none(),
        "select set_config('default_transaction_read_only', 'on', false), "
        "set_config('default_transaction_isolation', 'serializable', false)",
        id="session-characteristics",
    ),
    pytest.param(Identity.none(), "select set_config('standard_conforming_strings', 'off', false)", id="scs-off"),
    pytest.param(Identity.none(), "select set_config('search_path', 'pg_temp, auth', false)", id="search-path"),
    pytest.param(Identity.none(), "select set_config('app.wb_left', 'left', false)", id="custom-setting"),
    pytest.param(
        ALICE,
        "create temp table tasks (id bigint, title text); insert into tasks values (-1, 'alice temp secret')",
        id="temp-table-shadows-tasks",
    ),
    pytest.param(ALICE, "declare wb_held cursor with hold for select title from public.tasks", id="with-hold-cursor"),
    pytest.param(ALICE, "listen wb_channel", id="listen"),
    pytest.param(ALICE, "select pg_advisory_lock(4242)", id="advisory-lock"),
    pytest.param(
        Identity.none(),
        "do $$ begin execute 'prepare wb_from_sql as select 1'; end $$",
        id="sql-prepared-statement",
    ),
]


@pytest.mark.parametrize(("who", "sql"), LEFT_BEHIND)
async def test_a_write_cell_leaves_nothing_for_the_next_identity(
    one_server: AsyncEngine, who: Identity, sql: str, figures: Figures
) -> None:
    fresh = await fresh_probe(one_server)
    with contextlib.suppress(*REFUSED):  # refused is fine too; what matters is the next cell
        await run_query(one_server, sql, identity=who, write=True)
    seen = row_of(await run_query(one_server, PROBE, identity=BOB))
    bob = expected_identity(BOB, fresh)
    assert {k: seen[k] for k in bob} == bob
    assert {k: v for k, v in seen.items() if k not in bob} == {k: v for k, v in fresh.items() if k not in bob}
    async with one_server.connect() as plain:  # no identity applied: a session-level role would show here
        unimpersonated = dict((await plain.execute(text(PROBE))).one()._mapping)
        await plain.rollback()
    assert unimpersonated == fresh
    rows = await run_query(one_server, "select title from public.tasks order by id", identity=BOB)
    assert "alice temp secret" not in set(rows.frame["title"])
    with pytest.raises(WorkbenchError, match="wb_held|does not exist"):
        await run_query(one_server, "fetch all from wb_held", identity=BOB)
    figures.add("leaks", "session_state_cases")


async def test_currval_does_not_survive_into_the_next_cell(one_server: AsyncEngine) -> None:
    seq = "pg_get_serial_sequence('public.announcements', 'id')"
    await run_query(one_server, f"select nextval({seq})", write=True)
    with pytest.raises(WorkbenchError, match="not yet defined in this session"):
        await run_query(one_server, f"select currval({seq})", identity=BOB)


async def test_a_connection_that_cannot_be_reset_is_closed(db_url: str) -> None:
    """Directly, SQL PREPARE cannot be undone without breaking asyncpg's own statement cache (named statements):
    such a connection is closed, never handed to the next identity (its successor is a new server session).
    Behind a pooler only the unnamed statement is used, so the reset deallocates them instead (the
    ``sql-prepared-statement`` case above)."""
    engine = create_engine(db_url, ConnectionMode.DIRECT, EngineOptions(pool_size=1, max_overflow=0))
    try:
        before = row_of(await run_query(engine, "select pg_backend_pid() as pid"))["pid"]
        prepared = await run_query(
            engine,
            "do $$ begin execute 'prepare wb_dirty as select 1'; end $$; "
            "select count(*) as n from pg_prepared_statements where from_sql",
            write=True,
        )
        assert row_of(prepared)["n"] == 1  # the attack itself works: PL/pgSQL can PREPARE
        after = row_of(await run_query(engine, PROBE + ", pg_backend_pid() as pid", identity=BOB))
        assert after["sql_prepared"] == 0
        assert after["pid"] != before
    finally:
        await engine.dispose()


# ---------------------------------------------------------------------------------- ORM sessions


@pytest.mark.parametrize("mode", ["direct", "pgbouncer"])
async def test_orm_sessions_return_clean_connections(
    standin: LocalStandIn, pgbouncer_factory, mode: str, figures: Figures
) -> None:  # type: ignore[no-untyped-def]
    """The same guarantee for SQLAlchemy sessions: what a committed (or rolled back) session left on its
    connection is reset before another identity's session can use that server session."""
    if mode == "direct":
        url = standin.dsn().replace("postgresql://", "postgresql+asyncpg://")
        engine = create_engine(url, ConnectionMode.DIRECT, EngineOptions(pool_size=1, max_overflow=0))
    else:
        bouncer = pgbouncer_factory(pool_size=1)
        engine = create_engine(bouncer.url, ConnectionMode.TRANSACTION, EngineOptions(pool_size=2, max_overflow=0))
    try:
        async with engine.connect() as conn:
            fresh = dict((await conn.execute(text(PROBE))).one()._mapping)
            await conn.rollback()
        for statement in (
            "select set_config('role', 'anon', false)",
            "select set_config('app.wb_left', 'left', false)",
            "create temp table tasks (id bigint, title text)",
            "declare wb_held cursor with hold for select 1",
            "select pg_advisory_lock(4243)",
            "listen wb_channel",
        ):
            for ending in ("commit", "rollback"):
                async with sessionmaker_for(engine, ALICE)() as session:
                    await session.execute(text(statement))
                    await (session.commit() if ending == "commit" else session.rollback())
                async with sessionmaker_for(engine, BOB)() as session:
                    seen = dict((await session.execute(text(PROBE))).one()._mapping)
                    await session.rollback()
                bob = expected_identity(BOB, fresh)
                assert {k: seen[k] for k in bob} == bob, (statement, ending)
                others = {k: v for k, v in seen.items() if k not in bob}
                assert others == {k: v for k, v in fresh.items() if k not in bob}, (statement, ending)
                async with engine.connect() as conn:  # no identity: a session-level role would show here
                    plain = dict((await conn.execute(text(PROBE))).one()._mapping)
                    await conn.rollback()
                assert plain == fresh, (statement, ending)
                figures.add("leaks", "session_state_cases")
    finally:
        await engine.dispose()
