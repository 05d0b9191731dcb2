"""Read-only means read-only: ``%%sbquery`` without ``--write`` cannot change data, whatever the cell tries.

Every attempt runs as the connection's own role, as service_role and as a user; after each one, the count and
md5 of every table in ``public``, ``auth`` and ``storage``, every sequence and the large objects are compared
with the snapshot taken before. Side doors are checked too: programs and server files (``COPY ... TO``),
notifications, and session state left on the pooled connection.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from IPython.core.error import UsageError

from reliability.checks import Snapshot, snapshot
from reliability.figures import Figures
from workbench.core.engine import EngineOptions
from workbench.core.errors import WorkbenchError
from workbench.core.identity import IdentityError
from workbench.core.query import QueryUsageError
from workbench.core.settings import Settings
from workbench.core.sqltext import SQLSyntaxError
from workbench.local.settings import standin_settings
from workbench.local.standin import LocalStandIn

TAG = uuid.uuid4().hex[:8]
FN = f"public.wb_ro_side_effect_{TAG}"
DEFINER = f"public.wb_ro_definer_{TAG}"
FLIP = f"public.wb_ro_flip_{TAG}"
PROC = f"public.wb_ro_proc_{TAG}"
MATVIEW = f"public.wb_ro_mv_{TAG}"

SETUP = f"""
create function {FN}() returns int language sql as
  $$ insert into public.announcements (body) values ('side effect') returning 1 $$;
create function {DEFINER}() returns int language plpgsql security definer set search_path = '' as
  $$ begin insert into public.announcements (body) values ('definer'); return 1; end $$;
create function {FLIP}() returns int language plpgsql as
  $$ begin perform set_config('transaction_read_only', 'off', true);
     insert into public.announcements (body) values ('flipped'); return 1; end $$;
create procedure {PROC}() language plpgsql as
  $$ begin insert into public.announcements (body) values ('proc'); commit;
     insert into public.announcements (body) values ('after commit'); end $$;
create materialized view {MATVIEW} as select id, title from public.tasks with no data;
grant execute on function {FN}(), {DEFINER}(), {FLIP}() to anon, authenticated, service_role;
grant execute on procedure {PROC}() to anon, authenticated, service_role;
grant select on {MATVIEW} to anon, authenticated, service_role;
"""
TEARDOWN = f"""
drop function if exists {FN}(); drop function if exists {DEFINER}(); drop function if exists {FLIP}();
drop procedure if exists {PROC}(); drop materialized view if exists {MATVIEW};
"""

ALICE = "11111111-1111-4111-8111-111111111111"

# What a cell may try, without --write. Each must fail or change nothing.
ATTEMPTS: list[str] = [
    # plain writes, one or several statements, data-modifying CTEs
    "insert into public.announcements (body) values ('plain')",
    "update public.tasks set title = 'changed'",
    "delete from public.tasks",
    "select 1; insert into public.announcements (body) values ('second statement')",
    "with gone as (delete from public.tasks returning *) select count(*) from gone",
    "merge into public.tasks t using (select 1 as id) s on t.id = s.id when matched then update set title = 'm'",
    "insert into public.announcements (body) values ('x') on conflict do nothing returning id",
    "truncate public.announcements",
    "update auth.users set email = 'evil@example.com'",
    "delete from storage.objects",
    "update storage.objects set name = 'moved'",
    # functions and procedures with side effects
    f"select {FN}()",
    f"select {DEFINER}()",
    f"select {FLIP}()",
    f"call {PROC}()",
    "do $$ begin insert into public.announcements (body) values ('do block'); end $$",
    "do $$ begin execute 'insert into public.announcements (body) values (''dynamic'')'; end $$",
    "do $$ begin perform set_config('transaction_read_only', 'off', true); "
    "insert into public.announcements (body) values ('do flip'); end $$",
    "do $$ begin commit; insert into public.announcements (body) values ('do commit'); end $$",
    # transaction control and read-only switches
    "commit; insert into public.announcements (body) values ('after commit')",
    "select 1; commit; insert into public.announcements (body) values ('after commit 2')",
    "rollback; insert into public.announcements (body) values ('after rollback')",
    "end; insert into public.announcements (body) values ('after end')",
    "begin read write; insert into public.announcements (body) values ('nested begin')",
    "start transaction read write; insert into public.announcements (body) values ('start')",
    "set transaction read write; insert into public.announcements (body) values ('rw')",
    "set session characteristics as transaction read write",
    "set local transaction_read_only = off; insert into public.announcements (body) values ('local off')",
    "select set_config('transaction_read_only', 'off', true); insert into public.announcements (body) values ('f')",
    "select set_config('default_transaction_read_only', 'off', false); "
    "insert into public.announcements (body) values ('default off')",
    "set local default_transaction_read_only = off; insert into public.announcements (body) values ('d')",
    "reset all",
    "set role postgres",
    "set local role postgres; insert into public.announcements (body) values ('as postgres')",
    "prepare transaction 'wb'",
    "savepoint s; insert into public.announcements (body) values ('in savepoint'); release savepoint s",
    # row locks, COPY, large objects, sequences, DDL, materialized views, notifications
    "select * from public.tasks for update",
    "select * from public.tasks for no key update skip locked",
    "select id from public.tasks for share",
    "copy public.announcements from stdin",
    "copy public.announcements from program 'echo 9,x'",
    "copy public.announcements from '/etc/hostname'",
    "copy (delete from public.tasks returning *) to stdout",
    "select lo_import('/etc/hostname')",
    "select lo_create(0)",
    "select lo_from_bytea(0, 'x')",
    "select nextval(pg_get_serial_sequence('public.announcements', 'id'))",
    "select setval(pg_get_serial_sequence('public.announcements', 'id'), 1000)",
    "create temp table wb_tmp as select * from public.tasks",
    "select * into temp wb_tmp2 from public.tasks",
    "create table public.wb_should_not_exist (id int)",
    "alter table public.tasks add column evil int",
    "drop table public.announcements",
    "comment on table public.tasks is 'evil'",
    "grant all on public.tasks to anon",
    f"refresh materialized view {MATVIEW}",
    "notify wb_read_only, 'cell'",
    "select pg_notify('wb_read_only', 'cell')",
    "explain analyze insert into public.announcements (body) values ('explained')",
    "vacuum public.tasks",
]

IDENTITIES = ["", "--role service_role", "--as alice@example.com"]
REFUSALS: tuple[type[Exception], ...] = (WorkbenchError, QueryUsageError, IdentityError, SQLSyntaxError, UsageError)


@pytest.fixture(scope="module")
def prepared(ip, standin: LocalStandIn) -> Iterator[None]:  # type: ignore[no-untyped-def]
    from workbench.notebook.bridge import run_sync

    run_sync(_execute(standin.dsn(), SETUP))
    yield
    run_sync(_execute(standin.dsn(), TEARDOWN))


async def _execute(dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _snapshot(dsn: str) -> Snapshot:
    conn = await asyncpg.connect(dsn)
    try:
        return await snapshot(conn)
    finally:
        await conn.close()


def test_no_cell_without_write_changes_any_table(ip, prepared, standin: LocalStandIn, figures: Figures) -> None:  # type: ignore[no-untyped-def]
    import psycopg

    from workbench.notebook.bridge import run_sync

    dsn = standin.dsn()
    before = run_sync(_snapshot(dsn))
    changed: list[str] = []
    refused = ran = 0
    with psycopg.connect(dsn, autocommit=True) as listener:
        listener.execute("listen wb_read_only")
        for sql in ATTEMPTS:
            for options in IDENTITIES:
                try:
                    ip.run_cell_magic("sbquery", options, sql)
                    ran += 1
                except REFUSALS:
                    refused += 1
                after = run_sync(_snapshot(dsn))
                diff = before.differences(after)
                if diff:
                    changed.append(f"{options or '(no identity)'} {sql!r}: {diff}")
                    before = after
        # Notifications arrive in commit order: once a sentinel sent now arrives, any earlier one has too.
        sentinel = f"sentinel-{uuid.uuid4().hex}"
        with psycopg.connect(dsn, autocommit=True) as sender:
            sender.execute("select pg_notify('wb_read_only', %s)", (sentinel,))
        delivered = []
        for note in listener.notifies(timeout=30):
            if note.payload == sentinel:
                break
            delivered.append(note.payload)
        else:
            raise AssertionError("the sentinel notification never arrived")
    assert changed == []
    assert delivered == []
    assert refused >= len(ATTEMPTS) * len(IDENTITIES) * 0.8, (refused, ran)
    figures.add("read_only", "attempts", refused + ran)
    figures.add("read_only", "refused", refused)
    figures.add("read_only", "ran_and_rolled_back", ran)
    figures.add("read_only", "changes_found", len(changed))


def test_line_magic_and_parameters_are_read_only_too(ip, standin: LocalStandIn, figures: Figures) -> None:  # type: ignore[no-untyped-def]
    from workbench.notebook.bridge import run_sync

    before = run_sync(_snapshot(standin.dsn()))
    ip.user_ns["wb_body"] = "from a variable'); delete from public.tasks; --"
    attempts = [
        "insert into public.announcements (body) values (:wb_body) returning id",
        "--as alice@example.com delete from public.tasks returning id",
        "--role service_role select 1; delete from public.tasks",
        '--claims \'{"role": "service_role"}\' update public.tasks set title = :wb_body',
    ]
    refused = 0
    for line in attempts:
        with pytest.raises(REFUSALS):
            ip.run_line_magic("sbquery", line)
        refused += 1
    assert before.differences(run_sync(_snapshot(standin.dsn()))) == []
    figures.add("read_only", "attempts", len(attempts))
    figures.add("read_only", "refused", refused)


def test_read_only_cells_cannot_run_programs_or_write_server_files(
    ip, own_standin: LocalStandIn, figures: Figures
) -> None:  # type: ignore[no-untyped-def]
    """``COPY ... TO PROGRAM`` / ``TO 'file'`` only read the database, so a read-only transaction allows them;
    as a superuser (``postgres`` locally) they run a shell command or write a file on the server, and a
    command can connect back and write. A read-only cell must refuse them."""
    import os
    import tempfile

    from workbench.local.postgres import _bin_dir
    from workbench.notebook import session as core
    from workbench.notebook.bridge import run_sync

    own = own_standin
    outside = Path(tempfile.mkdtemp(prefix="wb-ro-"))
    outside.chmod(0o777)  # the server runs as another OS user
    port = own.status().db_port
    psql = _bin_dir() / "psql"
    attempts = {
        "program": f"copy (select 1) to program 'touch {outside}/program-ran'",
        "server file": f"copy (select 1) to '{outside}/server-file'",
        "write back": (
            f"copy (select 1) to program '{psql} -h 127.0.0.1 -p {port} -U postgres -d postgres "
            "-c \"insert into public.announcements (body) values (''via copy to program'')\"'"
        ),
    }
    before = run_sync(_snapshot(own.dsn()))
    previous = core.current().settings
    core.connect(standin_settings(own))
    escaped: list[str] = []
    try:
        for what, sql in attempts.items():
            with contextlib.suppress(*REFUSALS):
                ip.run_cell_magic("sbquery", "", sql)
            if any(outside.iterdir()) or before.differences(run_sync(_snapshot(own.dsn()))):
                escaped.append(what)
                for leftover in outside.iterdir():
                    leftover.unlink()
    finally:
        core.connect(previous)
        os.rmdir(outside)
    figures.add("read_only", "attempts", len(attempts))
    figures.add("read_only", "changes_found", len(escaped))
    assert escaped == [], f"read-only cells escaped through COPY ... TO: {escaped}"


SESSION_STATE = [
    pytest.param(
        "select pg_advisory_lock(hashtext('wb-read-only'))",
        "select count(*) from pg_locks where locktype = 'advisory' and pid = pg_backend_pid()",
        id="advisory-lock",
    ),
    pytest.param(
        "prepare wb_ro_statement as select 1",
        "select count(*) from pg_prepared_statements where name = 'wb_ro_statement'",
        id="prepare",
    ),
    pytest.param("listen wb_ro_channel", "select count(*) from pg_listening_channels()", id="listen"),
    pytest.param(
        "declare wb_ro_cursor cursor with hold for select 1",
        "select count(*) from pg_cursors where name = 'wb_ro_cursor'",
        id="cursor",
    ),
    pytest.param(
        "select set_config('app.wb_read_only', 'left', false)",
        "select count(*) from (select current_setting('app.wb_read_only', true) as v) s where v = 'left'",
        id="setting",
    ),
    pytest.param(
        "select set_config('request.jwt.claim.user_role', 'admin', false)",
        "select count(*) from (select current_setting('request.jwt.claim.user_role', true) as v) s where v = 'admin'",
        id="claim",
    ),
]


@pytest.mark.parametrize(("sql", "probe"), SESSION_STATE)
async def test_read_only_cells_leave_no_session_state_on_the_pooled_connection(
    settings: Settings, sql: str, probe: str, figures: Figures
) -> None:
    """Through a transaction pooler the next client gets this server connection: anything a read-only cell
    leaves on it (a session lock, a named statement...) reaches someone else."""
    from workbench.notebook.session import Workbench

    wb = Workbench(settings, options=EngineOptions(pool_size=1, max_overflow=0))
    try:
        pid = (await wb.query("select pg_backend_pid() as pid"))["pid"][0]
        with contextlib.suppress(*REFUSALS):
            await wb.query(sql)
        after = await wb.query(f"select pg_backend_pid() as pid, ({probe}) as left_behind")
        assert after["pid"][0] == pid  # the same pooled connection
        left = int(after["left_behind"][0])
    finally:
        await wb.aclose()
    figures.add("read_only", "attempts")
    figures.add("read_only", "session_state_left", left)
    assert left == 0, f"{sql!r} left session state on the pooled connection"
