"""Tests for workbench.core.errors: real PostgreSQL failures, through asyncpg and SQLAlchemy, classified."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import pytest
import sqlalchemy.exc
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_connection, AsyncAdapt_asyncpg_dbapi
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from workbench.core.errors import Category, ClassifiedError, WorkbenchError, classify, redact, render_position, unwrap
from workbench.core.sqltext import MissingParameter, SQLSyntaxError, bind_parameters, resolve_arguments

SCHEMA = "wb_errors"
ROLE = "wb_errors_user"

SETUP = f"""
drop schema if exists {SCHEMA} cascade;
do $$ begin
  if exists (select 1 from pg_roles where rolname = '{ROLE}') then
    drop owned by {ROLE};
    drop role {ROLE};
  end if;
end $$;
create role {ROLE} nologin;
grant {ROLE} to current_user;  -- postgres is not a superuser: SET ROLE needs the membership
create schema {SCHEMA};
create table {SCHEMA}.notes (
  id int primary key,
  owner text not null,
  body text check (length(body) < 10)
);
create table {SCHEMA}.comments (id int primary key, note_id int not null references {SCHEMA}.notes (id));
create table {SCHEMA}.secret (x int);
insert into {SCHEMA}.notes values (1, 'alice', 'hi');
alter table {SCHEMA}.notes enable row level security;
create policy owner_only on {SCHEMA}.notes for all to {ROLE}
  using (owner = 'alice') with check (owner = 'alice');
grant usage on schema {SCHEMA} to {ROLE};
grant select, insert, update on {SCHEMA}.notes to {ROLE};
"""
TEARDOWN = f"drop schema {SCHEMA} cascade; drop owned by {ROLE}; drop role {ROLE};"


def sqlalchemy_url(dsn: str) -> str:
    """The fixture's asyncpg DSN (socket dir in ``host=``) as a SQLAlchemy asyncpg URL."""
    return make_url(dsn).set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)


@pytest.fixture(scope="module")
async def dsn(pg_dsn: str) -> AsyncIterator[str]:
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute(SETUP)
        yield pg_dsn
    finally:
        await conn.execute(TEARDOWN)
        await conn.close()


@pytest.fixture
async def conn(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(dsn)
    yield connection
    if not connection.is_closed():
        await connection.close()


@pytest.fixture(scope="module")
async def engine(dsn: str) -> AsyncIterator[AsyncEngine]:
    eng = create_async_engine(sqlalchemy_url(dsn), poolclass=NullPool)
    yield eng
    await eng.dispose()


# ---------------------------------------------------------------------------------------------------------
# statement errors from a real PostgreSQL


@dataclass(frozen=True)
class DbCase:
    """Statements run in one transaction; the last one fails."""

    name: str
    steps: tuple[str, ...]
    category: Category
    in_message: tuple[str, ...] = ()
    in_hint: tuple[str, ...] = ()
    sqlstate: str | None = None
    readonly: bool = False


AS_ROLE = f"set local role {ROLE}"
DB_CASES = [
    DbCase(
        "rls_insert",
        (AS_ROLE, f"insert into {SCHEMA}.notes (id, owner) values (2, 'bob')"),
        Category.RLS_VIOLATION,
        ("INSERT", f'"{SCHEMA}.notes"', "current identity"),
        ("WITH CHECK", "%sbwhoami"),
        "42501",
    ),
    DbCase(
        "rls_update",
        (AS_ROLE, f"update {SCHEMA}.notes set owner = 'bob' where id = 1"),
        Category.RLS_VIOLATION,
        ("UPDATE", f'"{SCHEMA}.notes"'),
        ("UPDATE policy", "%sbwhoami"),
        "42501",
    ),
    DbCase(
        "rls_with_cte",
        (AS_ROLE, f"with v as (select 3 as id) insert into {SCHEMA}.notes select id, 'eve' from v returning id"),
        Category.RLS_VIOLATION,
        ("INSERT",),
        ("SELECT policy",),
        "42501",
    ),
    DbCase(
        "permission",
        (AS_ROLE, f"select * from {SCHEMA}.secret"),
        Category.PERMISSION,
        ("permission denied for table secret",),
        ("GRANT", "%sbwhoami"),
        "42501",
    ),
    DbCase(
        "undefined_table_unqualified",
        ("select * from notes",),
        Category.UNDEFINED_TABLE,
        ('"notes" does not exist', "LINE 1: select * from notes"),
        ("public.notes", "%sbschema"),
        "42P01",
    ),
    DbCase(
        "undefined_table_qualified",
        (f"select * from {SCHEMA}.nope",),
        Category.UNDEFINED_TABLE,
        (f'"{SCHEMA}.nope" does not exist',),
        ("%sbschema",),
        "42P01",
    ),
    DbCase(
        "undefined_schema",
        ("select auth.uid()",),
        Category.UNDEFINED_TABLE,
        ('Schema "auth" does not exist',),
        ("local stand-in",),
        "3F000",
    ),
    DbCase(
        "undefined_column",
        (f"select bdy from {SCHEMA}.notes",),
        Category.UNDEFINED_COLUMN,
        ('Column "bdy" does not exist',),
        ('"notes.body"', "%sbschema"),
        "42703",
    ),
    DbCase(
        "undefined_column_case",
        (f"select Body, ownerId from {SCHEMA}.notes",),
        Category.UNDEFINED_COLUMN,
        ('"ownerid"',),
        ("double quotes",),
        "42703",
    ),
    DbCase(
        "undefined_function",
        (f"select {SCHEMA}.nope(1)",),
        Category.UNDEFINED_FUNCTION,
        ("does not exist",),
        (),
        "42883",
    ),
    DbCase(
        "syntax",
        (f"select id\nfrom {SCHEMA}.notes\nwhere id = = 1",),
        Category.SYNTAX,
        ('syntax error at or near "="', "LINE 3: where id = = 1"),
        (),
        "42601",
    ),
    DbCase(
        "statement_timeout",
        ("set local statement_timeout = 50", "select pg_sleep(1)"),
        Category.TIMEOUT,
        ("statement_timeout",),
        ("SET LOCAL statement_timeout",),
        "57014",
    ),
    DbCase(
        "read_only",
        (f"insert into {SCHEMA}.notes (id, owner) values (5, 'alice')",),
        Category.READ_ONLY,
        ("read-only by default",),
        ("--write",),
        "25006",
        readonly=True,
    ),
    DbCase(
        "unique",
        (f"insert into {SCHEMA}.notes (id, owner) values (1, 'alice')",),
        Category.UNIQUE_VIOLATION,
        ("Key (id)=(1) already exists",),
        ("ON CONFLICT",),
        "23505",
    ),
    DbCase(
        "foreign_key",
        (f"insert into {SCHEMA}.comments values (1, 999)",),
        Category.FK_VIOLATION,
        ("(note_id)=(999)",),
        ("insert it first",),
        "23503",
    ),
    DbCase(
        "foreign_key_referenced",
        (f"insert into {SCHEMA}.comments values (1, 1)", f"delete from {SCHEMA}.notes where id = 1"),
        Category.FK_VIOLATION,
        ("still referenced",),
        ("ON DELETE CASCADE",),
        "23503",
    ),
    DbCase(
        "not_null",
        (f"insert into {SCHEMA}.notes (id, owner) values (6, null)",),
        Category.NOT_NULL,
        ('column "owner"',),
        ("value for owner",),
        "23502",
    ),
    DbCase(
        "check",
        (f"insert into {SCHEMA}.notes values (7, 'alice', 'far too long a body')",),
        Category.CHECK_VIOLATION,
        ("notes_body_check",),
        ("pg_get_constraintdef",),
        "23514",
    ),
    DbCase(
        "data",
        ("select 'abc'::int",),
        Category.DATA,
        ('invalid input syntax for type integer: "abc"', "LINE 1:"),
        (),
        "22P02",
    ),
    DbCase(
        "duplicate_prepared",
        ("prepare wb_s as select 1", "prepare wb_s as select 1"),
        Category.PREPARED_STATEMENT,
        ('prepared statement "wb_s" already exists', "6543"),
        ("statement_cache_size",),
        "42P05",
    ),
    DbCase(
        "missing_prepared",
        ("execute wb_nosuch",),
        Category.PREPARED_STATEMENT,
        ('prepared statement "wb_nosuch" does not exist',),
        ("statement_cache_size", "5432"),
        "26000",
    ),
]


def check(result: ClassifiedError, case: DbCase) -> None:
    assert result.category is case.category, result
    assert result.sqlstate == case.sqlstate
    assert result.transient is False  # statement errors are never safe to retry blindly
    for text in case.in_message:
        assert text in result.message, (text, result.message)
    for text in case.in_hint:
        assert text in result.hint, (text, result.hint)


@pytest.mark.parametrize("case", DB_CASES, ids=lambda c: c.name)
async def test_asyncpg_errors(conn: asyncpg.Connection, case: DbCase) -> None:
    with pytest.raises(asyncpg.PostgresError) as info:
        async with conn.transaction(readonly=case.readonly):
            for step in case.steps:
                await conn.execute(step)
    check(classify(info.value, case.steps[-1]), case)


@pytest.mark.parametrize("case", DB_CASES, ids=lambda c: c.name)
async def test_sqlalchemy_errors(engine: AsyncEngine, case: DbCase) -> None:
    with pytest.raises(sqlalchemy.exc.DBAPIError) as info:
        async with engine.connect() as connection:
            if case.readonly:
                await connection.exec_driver_sql("set transaction read only")
            for step in case.steps:
                await connection.exec_driver_sql(step)
    assert isinstance(unwrap(info.value), asyncpg.PostgresError)
    check(classify(info.value, case.steps[-1]), case)


SYNTAX_SQL = f"select id\nfrom {SCHEMA}.notes\nwhere id = = 1"


def assert_caret(message: str, line_label: str, line: str, expected_char_index: int) -> None:
    lines = message.splitlines()
    at = lines.index(f"{line_label}{line}")
    caret = lines[at + 1]
    assert caret.strip() == "^"
    assert caret.index("^") == len(line_label) + expected_char_index


async def test_syntax_error_caret_asyncpg(conn: asyncpg.Connection) -> None:
    with pytest.raises(asyncpg.PostgresSyntaxError) as info:
        await conn.execute(SYNTAX_SQL)
    result = classify(info.value, SYNTAX_SQL)
    assert result.position == SYNTAX_SQL.index("= 1") + 1
    assert_caret(result.message, "LINE 3: ", "where id = = 1", "where id = = 1".index("= 1"))


async def test_syntax_error_caret_sqlalchemy(engine: AsyncEngine) -> None:
    with pytest.raises(sqlalchemy.exc.ProgrammingError) as info:
        async with engine.connect() as connection:
            await connection.exec_driver_sql(SYNTAX_SQL)
    result = classify(info.value, SYNTAX_SQL)
    assert result.category is Category.SYNTAX
    assert_caret(result.message, "LINE 3: ", "where id = = 1", "where id = = 1".index("= 1"))


async def test_without_sql_there_is_no_caret(conn: asyncpg.Connection) -> None:
    with pytest.raises(asyncpg.PostgresSyntaxError) as info:
        await conn.execute(SYNTAX_SQL)
    result = classify(info.value)
    assert "LINE" not in result.message
    assert result.position == SYNTAX_SQL.index("= 1") + 1


async def test_rls_without_sql_still_names_the_table(conn: asyncpg.Connection) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError) as info:
        async with conn.transaction():
            await conn.execute(AS_ROLE)
            await conn.execute(f"insert into {SCHEMA}.notes (id, owner) values (2, 'bob')")
    result = classify(info.value)
    assert result.category is Category.RLS_VIOLATION
    assert '"notes"' in result.message and "new row" in result.message


async def test_bound_statement_errors_point_into_the_sent_sql(conn: asyncpg.Connection) -> None:
    bound = bind_parameters(f"select * from {SCHEMA}.notes where id = :note_id and nope = 1")
    with pytest.raises(asyncpg.UndefinedColumnError) as info:
        await conn.fetch(bound.sql, *resolve_arguments(bound, {"note_id": 1}))
    result = classify(info.value, bound.sql)
    assert_caret(result.message, "LINE 1: ", bound.sql, bound.sql.index("nope"))


async def test_user_cancel_from_another_connection(dsn: str, conn: asyncpg.Connection) -> None:
    other = await asyncpg.connect(dsn)
    try:
        pid = await other.fetchval("select pg_backend_pid()")
        task = asyncio.create_task(other.execute("select pg_sleep(5)"))
        await _wait_until_active(conn, pid)
        await conn.execute("select pg_cancel_backend($1)", pid)
        with pytest.raises(asyncpg.QueryCanceledError) as info:
            await task
    finally:
        await other.close()
    result = classify(info.value)
    assert (result.category, result.transient, result.sqlstate) == (Category.CANCELLED, False, "57014")


async def test_asyncio_cancel_is_cancelled(conn: asyncpg.Connection) -> None:
    task = asyncio.create_task(conn.execute("select pg_sleep(5)"))
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError) as info:
        await task
    assert classify(info.value).category is Category.CANCELLED


async def test_client_side_argument_errors(conn: asyncpg.Connection) -> None:
    with pytest.raises(asyncpg.DataError) as info:
        await conn.fetch("select $1::int", "abc")
    result = classify(info.value)
    assert result.category is Category.DATA and "Python value" in result.hint
    with pytest.raises(asyncpg.InterfaceError) as info2:
        await conn.fetch("select $1::int")
    assert classify(info2.value).category is Category.PARAMETER


async def test_unknown_role_is_auth_failure(dsn: str) -> None:
    with pytest.raises(asyncpg.PostgresError) as info:
        await asyncpg.connect(make_url(dsn).set(username="wb_nobody").render_as_string(hide_password=False))
    result = classify(info.value)
    # With password authentication PostgreSQL does not say whether the role exists: 28P01 either way.
    assert (result.category, result.transient) == (Category.AUTH_FAILED, False)
    assert result.sqlstate in ("28000", "28P01")
    assert "postgres.<project-ref>" in result.hint


# ---------------------------------------------------------------------------------------------------------
# connection failures (transient)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def assert_transient_connection(result: ClassifiedError) -> None:
    assert result.category is Category.CONNECTION, result
    assert result.transient is True


async def test_connection_refused_asyncpg() -> None:
    with pytest.raises(OSError) as info:
        await asyncpg.connect(host="127.0.0.1", port=closed_port(), user="postgres", timeout=5)
    result = classify(info.value)
    assert_transient_connection(result)
    assert "refused" in result.message and "6543" in result.hint


async def test_connection_refused_sqlalchemy() -> None:
    eng = create_async_engine(f"postgresql+asyncpg://postgres:hunter2@127.0.0.1:{closed_port()}/postgres")
    try:
        with pytest.raises(OSError) as info:
            async with eng.connect():
                pass
    finally:
        await eng.dispose()
    result = classify(info.value)
    assert_transient_connection(result)
    assert "hunter2" not in str(WorkbenchError(result))


async def _wait_until_active(conn: asyncpg.Connection, pid: int) -> None:
    for _ in range(100):
        state = await conn.fetchval("select state from pg_stat_activity where pid = $1", pid)
        if state == "active":
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the statement never started")


@pytest.mark.parametrize("pause", [0.0, 0.3])
async def test_terminated_connection_asyncpg(dsn: str, conn: asyncpg.Connection, pause: float) -> None:
    victim = await asyncpg.connect(dsn)
    try:
        pid = await victim.fetchval("select pg_backend_pid()")
        await conn.execute("select pg_terminate_backend($1)", pid)
        await asyncio.sleep(pause)
        # which error depends on when the server's goodbye arrives; all mean "connection gone"
        with pytest.raises(
            (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.exceptions.InternalClientError)
        ) as info:
            await victim.fetch("select 1")
    finally:
        victim.terminate()
    assert_transient_connection(classify(info.value, "select 1"))


async def test_terminated_mid_statement_asyncpg(dsn: str, conn: asyncpg.Connection) -> None:
    victim = await asyncpg.connect(dsn)
    try:
        pid = await victim.fetchval("select pg_backend_pid()")
        task = asyncio.create_task(victim.fetch("select pg_sleep(5)"))
        await _wait_until_active(conn, pid)
        await conn.execute("select pg_terminate_backend($1)", pid)
        with pytest.raises(asyncpg.PostgresError) as info:
            await task
    finally:
        victim.terminate()
    result = classify(info.value)
    assert_transient_connection(result)
    assert "administrator command" in result.message


@pytest.mark.parametrize("mid_statement", [False, True])
async def test_terminated_connection_sqlalchemy(
    engine: AsyncEngine, conn: asyncpg.Connection, mid_statement: bool
) -> None:
    with pytest.raises(sqlalchemy.exc.DBAPIError) as info:
        async with engine.connect() as connection:
            pid = (await connection.exec_driver_sql("select pg_backend_pid()")).scalar_one()
            if mid_statement:
                task = asyncio.create_task(connection.exec_driver_sql("select pg_sleep(5)"))
                await _wait_until_active(conn, pid)
                await conn.execute("select pg_terminate_backend($1)", pid)
                await task
            else:
                await conn.execute("select pg_terminate_backend($1)", pid)
                await asyncio.sleep(0.3)
                await connection.exec_driver_sql("select 1")
    assert_transient_connection(classify(info.value))


# ---------------------------------------------------------------------------------------------------------
# pooler messages (no Supavisor here: the exception types carry the documented texts)


def through_sqlalchemy(err: Exception) -> BaseException:
    """Wrap ``err`` exactly as SQLAlchemy's asyncpg dialect does: adapted error from err, then DBAPIError."""
    dbapi = AsyncAdapt_asyncpg_dbapi(asyncpg)
    try:
        AsyncAdapt_asyncpg_connection._handle_exception_no_connection(dbapi, err)
    except Exception as adapted:
        return sqlalchemy.exc.DBAPIError.instance("select 1", None, adapted, dbapi.Error)
    raise AssertionError("not translated")


POOLER_CASES: list[tuple[Exception, Category, bool, tuple[str, ...]]] = [
    (
        asyncpg.exceptions.InternalServerError("Tenant or user not found"),
        Category.POOLER,
        False,
        ("postgres.<project-ref>", "6543", "5432"),
    ),
    (
        asyncpg.exceptions.InternalServerError("(ENOTFOUND) tenant/user postgres not found"),
        Category.POOLER,
        False,
        ("postgres.<project-ref>",),
    ),
    (
        asyncpg.exceptions.TooManyConnectionsError("Max client connections reached"),
        Category.POOLER,
        True,
        ("limit", "6543"),
    ),
    (
        asyncpg.exceptions.InternalServerError("max client connections reached, limit: 200"),
        Category.POOLER,
        True,
        ("pool_size",),
    ),
    (
        asyncpg.exceptions.InternalServerError(
            "max clients reached in session mode - max clients are limited to pool_size: 15"
        ),
        Category.POOLER,
        True,
        ("6543", "pool size"),
    ),
    (
        asyncpg.exceptions.InternalServerError(
            "unable to check out connection from the pool after 5000ms in transaction mode"
        ),
        Category.POOLER,
        True,
        ("transaction",),
    ),
    (
        asyncpg.exceptions.ProtocolViolationError("no more connections allowed (max_client_conn)"),
        Category.POOLER,
        True,
        ("6543",),
    ),
    (
        asyncpg.exceptions.InvalidPasswordError('password authentication failed for user "postgres.abcdefgh"'),
        Category.AUTH_FAILED,
        False,
        ("password", "postgres.<project-ref>"),
    ),
    (
        asyncpg.exceptions.InvalidAuthorizationSpecificationError("SSL connection is required"),
        Category.AUTH_FAILED,
        False,
        ("sslmode=require",),
    ),
    (
        asyncpg.exceptions.InvalidSQLStatementNameError('prepared statement "__asyncpg_stmt_5__" does not exist'),
        Category.PREPARED_STATEMENT,
        False,
        ("statement_cache_size", "0"),
    ),
    (
        asyncpg.exceptions.ProtocolViolationError(
            "bind message supplies 1 parameters, but prepared statement requires 2"
        ),
        Category.PREPARED_STATEMENT,
        False,
        ("statement_cache_size",),
    ),
    (
        asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"),
        Category.CONNECTION,
        True,
        ("retrying is safe",),
    ),
    (
        asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
        Category.CONNECTION,
        True,
        (),
    ),
    (
        asyncpg.exceptions.TooManyConnectionsError("sorry, too many clients already"),
        Category.CONNECTION,
        True,
        ("pooler",),
    ),
]


@pytest.mark.parametrize(("err", "category", "transient", "in_hint"), POOLER_CASES, ids=lambda v: str(v)[:40])
@pytest.mark.parametrize("wrapped", [False, True])
def test_pooler_and_connection_messages(
    err: Exception, category: Category, transient: bool, in_hint: tuple[str, ...], wrapped: bool
) -> None:
    result = classify(through_sqlalchemy(err) if wrapped else err)
    assert (result.category, result.transient) == (category, transient)
    assert result.sqlstate == err.sqlstate  # type: ignore[attr-defined]
    assert str(err) in result.message
    for text in in_hint:
        assert text in result.hint, (text, result.hint)


@pytest.mark.parametrize(
    ("err", "transient", "in_hint"),
    [
        (ConnectionResetError(104, "Connection reset by peer"), True, "running"),
        (BrokenPipeError(32, "Broken pipe"), True, "running"),
        (FileNotFoundError(2, "No such file or directory"), True, "running"),
        (socket.gaierror(-2, "Name or service not known"), False, "IPv6"),
        (OSError(101, "Network is unreachable"), False, "IPv6"),
        (ConnectionError('PostgreSQL server at "db:5432" rejected SSL upgrade'), False, "ssl"),
        (OSError("Multiple exceptions: [Errno 111] Connect call failed ('127.0.0.1', 5432)"), True, "6543"),
    ],
)
def test_os_errors(err: OSError, transient: bool, in_hint: str) -> None:
    result = classify(err)
    assert (result.category, result.transient) == (Category.CONNECTION, transient)
    assert in_hint in result.hint


def test_asyncpg_protocol_state_error_after_server_goodbye() -> None:
    err = asyncpg.exceptions.InternalClientError("cannot switch to state 11; another operation (2) is in progress")
    assert_transient_connection(classify(err))


def test_client_timeout_is_not_transient() -> None:
    result = classify(TimeoutError())
    assert (result.category, result.transient) == (Category.TIMEOUT, False)


def test_sqlalchemy_pool_timeout() -> None:
    err = sqlalchemy.exc.TimeoutError("QueuePool limit of size 5 overflow 10 reached, connection timed out")
    result = classify(err)
    assert (result.category, result.transient) == (Category.CONNECTION, True)
    assert "pool_size" in result.hint


def test_sqltext_errors_are_classified() -> None:
    sql = "select 1;\nselect 'oops"
    with pytest.raises(SQLSyntaxError) as info:
        bind_parameters(sql)
    result = classify(info.value, sql)
    assert result.category is Category.SYNTAX
    assert_caret(result.message, "LINE 2: ", "select 'oops", len("select "))
    missing = classify(MissingParameter("user_id"))
    assert missing.category is Category.PARAMETER and "user_id = ..." in missing.hint


def test_unknown_errors_keep_their_type_and_first_line() -> None:
    result = classify(RuntimeError("something odd\nmore detail"))
    assert result.category is Category.UNKNOWN
    assert result.message == "RuntimeError: something odd"
    assert not result.transient


def test_context_chain_finds_the_original_failure() -> None:
    original = asyncpg.exceptions.UniqueViolationError("duplicate key value violates unique constraint")
    try:
        try:
            raise original
        except Exception:
            raise RuntimeError("rollback failed") from None
    except RuntimeError as exc:
        assert classify(exc).category is Category.UNKNOWN  # `from None` hides the context on purpose
    try:
        try:
            raise original
        except Exception:
            raise RuntimeError("rollback failed")  # noqa: B904
    except RuntimeError as exc:
        assert classify(exc).category is Category.UNIQUE_VIOLATION


# ---------------------------------------------------------------------------------------------------------
# WorkbenchError and redaction


def test_workbench_error_str_is_message_and_hint() -> None:
    err = WorkbenchError.from_exception(asyncpg.exceptions.ReadOnlySQLTransactionError("cannot execute INSERT"))
    first, second = str(err).split("\n", 1)
    assert first == err.classified.message
    assert second == f"hint: {err.classified.hint}"
    assert err.category is Category.READ_ONLY and err.transient is False
    assert classify(err) is err.classified


JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJyb2xlIjoic2VydmljZV9yb2xlIiwiaXNzIjoic3VwYWJhc2UifQ."
    "dGhpc2lzbm90YXJlYWxzaWduYXR1cmVfXzEyMzQ"
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "postgresql://postgres.abcd:s3cr%40t@aws-0-eu-west-1.pooler.supabase.com:6543/postgres",
            "postgresql://postgres.abcd:***@aws-0-eu-west-1.pooler.supabase.com:6543/postgres",
        ),
        ("postgresql+asyncpg://u:p@ss@h/db x", "postgresql+asyncpg://u:***@h/db x"),
        ("postgresql://u@h:5432/db", "postgresql://u@h:5432/db"),
        ("https://example.com:8443/path", "https://example.com:8443/path"),
        ("host=h user=u password=hunter2 dbname=d", "host=h user=u password=*** dbname=d"),
        ("password='two words' port=1", "password='***' port=1"),
        ('{"password": "hunter2", "user": "u"}', '{"password": "***", "user": "u"}'),
        (f"apikey: {JWT}", "apikey: ***"),
        (f"token {JWT} end", "token [redacted JWT] end"),
        (f"Authorization: Bearer {JWT}", "Authorization: Bearer ***"),
        ("Authorization: Bearer abc.def-ghi", "Authorization: Bearer ***"),
        ("key sb_secret_abc123_XYZ-9 and sb_publishable_Qw3", "key sb_secret_*** and sb_publishable_***"),
        ('password authentication failed for user "postgres"', 'password authentication failed for user "postgres"'),
    ],
)
def test_redact_examples(text: str, expected: str) -> None:
    assert redact(text) == expected
    assert redact(expected) == expected


_PASSWORD = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x2FF, blacklist_categories=("Zs", "Cc")),
    min_size=1,
    max_size=40,
)
_USER = st.from_regex(r"[a-z][a-z0-9_]{0,10}(\.[a-z]{6,20})?", fullmatch=True)
_HOST = st.sampled_from(["db.abcdefgh.supabase.co", "aws-0-us-east-1.pooler.supabase.com", "127.0.0.1", ""])
_SCHEME = st.sampled_from(["postgresql", "postgres", "postgresql+asyncpg", "postgresql+psycopg"])


@settings(max_examples=500)
@given(_SCHEME, _USER, _PASSWORD, _HOST, st.booleans())
def test_url_passwords_never_survive(scheme: str, user: str, password: str, host: str, quoted: bool) -> None:
    if quoted:
        password = urllib.parse.quote(password, safe="")
    url = f"{scheme}://{user}:{password}@{host}:5432/postgres?sslmode=require"
    text = f"could not connect to {url} (timed out)"
    out = redact(text)
    assert out == f"could not connect to {scheme}://{user}:***@{host}:5432/postgres?sslmode=require (timed out)"
    assert redact(out) == out


@settings(max_examples=300)
@given(_PASSWORD, st.sampled_from(["password", "PGPASSWORD", "apikey", "jwt_secret"]))
def test_keyword_passwords_never_survive(password: str, keyword: str) -> None:
    out = redact(f"host=h {keyword}={password} dbname=d")
    masked = [f"host=h {keyword}={mask} dbname=d" for mask in ("***", "'***'", '"***"')]
    assert out in masked


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@settings(max_examples=200)
@given(
    st.dictionaries(st.text(max_size=8), st.text(max_size=20), max_size=4),
    st.binary(min_size=16, max_size=64),
    st.sampled_from(["", "Bearer ", "apikey=", "token "]),
)
def test_jwts_never_survive(claims: dict[str, str], signature: bytes, prefix: str) -> None:
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    token = f"{header}.{_b64(json.dumps(claims).encode())}.{_b64(signature)}"
    out = redact(f"failed with {prefix}{token}, retry")
    assert token not in out
    assert _b64(signature) not in out
    assert out.startswith("failed with ") and out.endswith(" retry")  # a keyword value may take the comma


@settings(max_examples=200)
@given(st.sampled_from(["sb_secret_", "sb_publishable_"]), st.from_regex(r"[A-Za-z0-9_\-]{8,40}", fullmatch=True))
def test_new_api_keys_never_survive(kind: str, body: str) -> None:
    out = redact(f"apikey header {kind}{body} rejected")
    assert body not in out
    assert out == f"apikey header {kind}*** rejected"


def test_classify_redacts_every_message() -> None:
    url = "postgresql://postgres.abcd:hunter2hunter2@aws-0-eu-west-1.pooler.supabase.com:6543/postgres"
    results = [
        classify(OSError(f"could not connect to {url}")),
        classify(asyncpg.exceptions.InternalServerError(f"Tenant or user not found for {url}")),
        classify(asyncpg.exceptions.UndefinedTableError(f'relation "x" does not exist {JWT}')),
        classify(RuntimeError(f"boom sb_secret_abcdefgh12345678 {url}")),
        classify(through_sqlalchemy(asyncpg.exceptions.SyntaxOrAccessError(f"bad {JWT}"))),
    ]
    for result in results:
        rendered = str(WorkbenchError(result))
        for secret in ("hunter2hunter2", JWT, "abcdefgh12345678"):
            assert secret not in rendered


# ---------------------------------------------------------------------------------------------------------
# render_position


@pytest.mark.parametrize(
    ("sql", "position", "label", "line", "index"),
    [
        ("select * form t", 10, "LINE 1: ", "select * form t", 9),
        ("select 1,\n  2 frm\nwhere", 15, "LINE 2: ", "  2 frm", 4),
        ("select 1\r\nfrom x", 11, "LINE 2: ", "from x", 0),
        ("select (1", 10, "LINE 1: ", "select (1", 9),  # "at end of input"
        ("select 1", 99, "LINE 1: ", "select 1", 8),
        ("select 1", 0, "LINE 1: ", "select 1", 0),
    ],
)
def test_render_position(sql: str, position: int, label: str, line: str, index: int) -> None:
    assert_caret(render_position(sql, position), label, line, index)


def test_render_position_keeps_tabs_aligned() -> None:
    sql = "\tselect\tx frm"
    out = render_position(sql, sql.index("frm") + 1)
    line, caret = out.splitlines()
    assert caret == " " * len("LINE 1: ") + "\t      \t  ^"
    assert line == "LINE 1: \tselect\tx frm"


def test_render_position_windows_long_lines() -> None:
    sql = "select " + ", ".join(f"c{i}" for i in range(200)) + " frm t"
    position = sql.index("frm") + 1
    line, caret = render_position(sql, position).splitlines()
    assert len(line) < 130 and line.startswith("LINE 1: ...")
    assert line[caret.index("^") : caret.index("^") + 3] == "frm"
