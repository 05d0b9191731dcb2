"""Faults survived: a backend terminated mid-statement, PgBouncer and PostgreSQL restarted, PostgreSQL and the
API process killed with SIGKILL. After each, the next operation succeeds or fails with a clear, classified
message, and no committed row is lost or duplicated (counts and md5 checksums before and after)."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import psutil
import pytest
import sqlalchemy.exc
from sqlalchemy import Integer, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from supabase import acreate_client

from reliability.checks import (
    BackendKiller,
    active_backends,
    connection,
    snapshot,
    table_digest,
    terminate,
    wait_for,
    wait_gone,
)
from reliability.figures import Figures
from workbench.backend.retry import Outcome, RetryEvent, RetryPolicy, retry
from workbench.core.errors import Category, WorkbenchError, classify
from workbench.core.identity import Identity
from workbench.core.settings import Settings
from workbench.local.demo import demo_users
from workbench.local.postgres import pid_alive
from workbench.local.settings import standin_settings
from workbench.local.standin import LocalStandIn, StandInError
from workbench.notebook.session import Workbench

ALICE = "11111111-1111-4111-8111-111111111111"
FAST = RetryPolicy(max_attempts=8, base_delay=0.05, max_delay=0.5, max_elapsed=30)


def marker() -> str:
    return f"wb-fault-{uuid.uuid4().hex[:12]}"


async def make_table(dsn: str, rows: int) -> str:
    """A table of this test's own with ``rows`` committed rows; returns its (quoted-safe) name."""
    name = f"public.wb_rel_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"create table {name} (id uuid primary key default gen_random_uuid(), n int not null)")
        await conn.execute(f"insert into {name} (n) select g from generate_series(1, {rows}) g")
        await conn.execute(f"grant all on {name} to anon, authenticated, service_role")
    finally:
        await conn.close()
    return name


async def drop_table(dsn: str, name: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"drop table if exists {name}")
    finally:
        await conn.close()


async def digest(dsn: str, table: str) -> tuple[int, str]:
    conn = await asyncpg.connect(dsn)
    try:
        return await table_digest(conn, table)
    finally:
        await conn.close()


def assert_clear_connection_error(exc: BaseException) -> None:
    """The failure is explained: a CONNECTION category, a message, a hint, and marked safe to retry."""
    classified = exc.classified if isinstance(exc, WorkbenchError) else classify(exc)
    assert classified.category is Category.CONNECTION, classified
    assert classified.message and classified.hint, classified
    assert classified.transient, classified
    assert "Traceback" not in classified.render()


# ------------------------------------------------------------------------ backend terminated mid-statement


def test_sbquery_survives_a_backend_terminated_mid_statement(ip, standin: LocalStandIn, figures: Figures) -> None:  # type: ignore[no-untyped-def]
    from workbench.notebook.bridge import run_sync

    dsn = standin.dsn()
    table = run_sync(make_table(dsn, 50))
    try:
        before = run_sync(digest(dsn, table))
        mark = marker()
        killer = BackendKiller(dsn, mark).start()
        with pytest.raises(WorkbenchError) as info:
            ip.run_cell_magic(
                "sbquery",
                "--write --role service_role",
                f"insert into {table} (n) select g from generate_series(1, 10) g;\nselect pg_sleep(30), '{mark}' as m",
            )
        assert killer.join(), "the statement was never seen running"
        assert_clear_connection_error(info.value)
        assert "connection was lost" in str(info.value) or "connection is closed" in str(info.value)

        seen = ip.run_cell_magic(
            "sbquery", "", f"select count(*) as n, md5(string_agg(t::text, ',' order by t::text)) as h from {table} t"
        )
        assert (int(seen["n"][0]), seen["h"][0]) == before  # the in-flight insert was not committed

        # an idle pooled connection whose backend is terminated between cells: the next cell reconnects
        pid = int(ip.run_cell_magic("sbquery", "", "select pg_backend_pid() as pid")["pid"][0])
        assert run_sync(terminate(dsn, [pid])) == 1
        again = ip.run_cell_magic(
            "sbquery", "--as alice@example.com", "select pg_backend_pid() as pid, auth.uid()::text as uid"
        )
        assert int(again["pid"][0]) != pid and again["uid"][0] == ALICE
        assert run_sync(digest(dsn, table)) == before
    finally:
        run_sync(drop_table(dsn, table))
    figures.add("faults", "survived", 2)
    figures.note(
        "faults", "backend terminated during %%sbquery --write: CONNECTION error, in-flight insert absent, 50/50 rows"
    )
    figures.note("faults", "idle pooled backend terminated between cells: next cell reconnected")


async def test_workbench_query_and_retry_survive_a_terminated_backend(
    settings: Settings, standin: LocalStandIn, figures: Figures
) -> None:
    wb = Workbench(settings)
    dsn = standin.dsn()
    try:
        mark = marker()
        killer = BackendKiller(dsn, mark).start()
        with pytest.raises(WorkbenchError) as info:
            await wb.query(f"select pg_sleep(30), '{mark}' as m", as_user="alice@example.com")
        assert await asyncio.to_thread(killer.join)
        assert_clear_connection_error(info.value)
        after = await wb.query("select auth.uid()::text as uid", as_user="alice@example.com")
        assert after["uid"][0] == ALICE

        # The retry helper: the first attempt is terminated in flight, the second (idempotent read) succeeds.
        mark = marker()
        killer = BackendKiller(dsn, mark).start()
        attempts = 0
        events: list[RetryEvent] = []

        async def read() -> Any:
            nonlocal attempts
            attempts += 1
            delay = 30.0 if attempts == 1 else 0.0
            return await wb.query(f"select pg_sleep(:delay), '{mark}' as m", params={"delay": delay})

        result = await retry(read, idempotent=True, policy=FAST, on_retry=events.append)
        assert await asyncio.to_thread(killer.join)
        assert result["m"][0] == mark and attempts == 2
        assert [(e.outcome, e.category) for e in events] == [(Outcome.UNKNOWN, "connection")]

        # Not marked idempotent: an in-flight loss is raised (with a note why), never silently re-run.
        mark = marker()
        killer = BackendKiller(dsn, mark).start()
        with pytest.raises(WorkbenchError) as info:
            await retry(lambda: wb.query(f"select pg_sleep(30), '{mark}'"), policy=FAST)
        assert await asyncio.to_thread(killer.join)
        assert any("Not retried" in note for note in getattr(info.value, "__notes__", []))
    finally:
        await wb.aclose()
    figures.add("faults", "survived", 3)
    figures.add("faults", "retries_recovered", 1)
    figures.note("faults", "backend terminated during Workbench.query: CONNECTION error, next query ok")
    figures.note("faults", "retry(idempotent=True) recovered from an in-flight termination in 2 attempts")
    figures.note("faults", "retry() without idempotent=True: an in-flight loss is raised with a note, never re-run")


class Base(DeclarativeBase):
    pass


async def test_orm_session_survives_a_backend_terminated_mid_transaction(
    settings: Settings, standin: LocalStandIn, figures: Figures
) -> None:
    dsn = standin.dsn()
    table = await make_table(dsn, 0)
    bare = table.split(".", 1)[1]
    row_class: Any = type(
        f"Row_{bare}",
        (Base,),
        {
            "__tablename__": bare,
            "__table_args__": {"schema": "public"},
            "id": mapped_column(primary_key=True, default=uuid.uuid4),
            "n": mapped_column(Integer),
            "__annotations__": {"id": Mapped[uuid.UUID], "n": Mapped[int]},
        },
    )
    wb = Workbench(settings)
    identity = Identity.service_role()
    try:
        async with wb.session(identity) as session:
            session.add_all([row_class(n=i) for i in range(20)])
            await session.commit()
        before = await digest(dsn, table)
        mark = marker()
        killer = BackendKiller(dsn, mark).start()
        async with wb.session(identity) as session:
            session.add_all([row_class(n=100 + i) for i in range(5)])
            await session.flush()
            with pytest.raises(sqlalchemy.exc.DBAPIError) as info:
                await session.execute(text(f"select pg_sleep(30), '{mark}'"))
            await session.rollback()
        assert await asyncio.to_thread(killer.join)
        assert_clear_connection_error(info.value)
        async with wb.session(identity) as session:
            count = (await session.execute(text(f"select count(*) from {table}"))).scalar()
            role = (await session.execute(text("select current_user"))).scalar()
            await session.commit()
        assert (count, role) == (20, "service_role")
        assert await digest(dsn, table) == before
    finally:
        await wb.aclose()
        await drop_table(dsn, table)
        Base.registry.dispose()
    figures.add("faults", "survived")
    figures.note(
        "faults", "backend terminated inside an ORM session's transaction: flushed rows rolled back, 20/20 kept"
    )


# ---------------------------------------------------------------------------------------- PgBouncer restarted


@pytest.mark.pgbouncer
async def test_pgbouncer_restart_idle_and_in_flight(pgbouncer_factory, standin: LocalStandIn, figures: Figures) -> None:  # type: ignore[no-untyped-def]
    bouncer = pgbouncer_factory(pool_size=2)
    dsn = standin.dsn()
    table = await make_table(dsn, 0)
    wb = Workbench(Settings(db_url=bouncer.dsn, db_mode="transaction"))
    try:
        await wb.query(f"insert into {table} (n) select g from generate_series(1, 30) g", write=True)
        before = await digest(dsn, table)

        # idle: the pooled client connections all point at a PgBouncer that went away
        await asyncio.to_thread(bouncer.restart)
        try:
            first = await wb.query(f"select count(*) as n from {table}")
            assert first["n"][0] == 30
        except WorkbenchError as exc:  # acceptable only as a clear connection error
            assert_clear_connection_error(exc)
        recovered = await retry(lambda: wb.query(f"select count(*) as n from {table}"), idempotent=True, policy=FAST)
        assert recovered["n"][0] == 30

        # in flight: a write sleeping inside its transaction when PgBouncer stops
        mark = marker()
        write = asyncio.create_task(
            retry(
                lambda: wb.query(f"insert into {table} (n) values (-1);\nselect pg_sleep(30), '{mark}'", write=True),
                policy=FAST,
            )
        )
        await wait_for(lambda: _running(dsn, mark), 30, "the write to run")
        await asyncio.to_thread(bouncer.restart)
        with pytest.raises(WorkbenchError) as info:
            await write
        assert_clear_connection_error(info.value)
        assert any("Not retried" in note for note in getattr(info.value, "__notes__", []))
        await terminate(dsn, await active_backends(dsn, mark))  # the orphaned server backend, still sleeping
        await wait_gone(dsn, mark)
        assert await digest(dsn, table) == before  # the in-flight insert never committed

        after = await retry(lambda: wb.query(f"select count(*) as n from {table}"), idempotent=True, policy=FAST)
        assert after["n"][0] == 30
    finally:
        await wb.aclose()
        await drop_table(dsn, table)
    figures.add("faults", "survived", 2)
    figures.note("faults", "PgBouncer restarted (idle pool): next query ok after retry, 30/30 rows")
    figures.note("faults", "PgBouncer restarted mid-write: CONNECTION error, not re-run, in-flight insert absent")


async def _running(dsn: str, mark: str) -> bool:
    return bool(await active_backends(dsn, mark))


# ------------------------------------------------------------------- PostgreSQL restarted, killed; API killed


async def _admin(own: LocalStandIn) -> Any:
    return await acreate_client(own.api_url(), own.keys().service_role_key)


async def _bucket(own: LocalStandIn, name: str) -> Any:
    admin = await _admin(own)
    try:
        await admin.storage.create_bucket(name)
    except Exception as exc:  # created by an earlier test of this module
        assert "exists" in str(exc).lower(), exc
    return admin


async def test_postgres_restart_with_the_retry_helper(own_standin: LocalStandIn, figures: Figures) -> None:
    own = own_standin
    wb = Workbench(standin_settings(own))
    table = await make_table(own.dsn(), 200)
    admin = await _bucket(own, "faults")
    payload = os.urandom(300_000)
    await admin.storage.from_("faults").upload("restart/kept.bin", payload)
    try:
        async with connection(own.dsn()) as conn:
            before = await snapshot(conn)
        assert (await wb.query(f"select count(*) as n from {table}"))["n"][0] == 200
        await asyncio.to_thread(own.pg.stop)

        with pytest.raises(WorkbenchError) as info:  # while it is down: a clear error, at once
            await wb.query(f"select count(*) from {table}")
        assert_clear_connection_error(info.value)
        assert "running" in info.value.classified.hint

        events: list[RetryEvent] = []
        policy = RetryPolicy(max_attempts=200, base_delay=0.05, max_delay=0.3, max_elapsed=90)
        waiting = asyncio.create_task(
            retry(lambda: wb.query(f"select count(*) as n from {table}"), policy=policy, on_retry=events.append)
        )

        async def failed_once() -> bool:
            return bool(events)

        await wait_for(failed_once, 30, "a refused attempt while PostgreSQL is down")
        await asyncio.to_thread(own.start)
        result = await waiting
        assert result["n"][0] == 200
        assert events and all(e.outcome is Outcome.NOT_SENT for e in events)  # never sent: safe to retry

        async with connection(own.dsn()) as conn:
            assert before.differences(await snapshot(conn)) == []
        assert await _download(own, "faults", "restart/kept.bin") == payload
    finally:
        await wb.aclose()
        await drop_table(own.dsn(), table)
    figures.add("faults", "survived")
    figures.add("faults", "retries_recovered")
    figures.note(
        "faults",
        f"PostgreSQL stopped and started: refused at once with a clear error; retry() recovered after "
        f"{len(events)} refused attempts; every public/auth/storage table checksum equal; object bytes equal",
    )


async def _download(own: LocalStandIn, bucket: str, path: str, attempts: int = 2) -> bytes:
    """Download through the API; its first request after a database restart may fail, clearly, once."""
    admin = await _admin(own)
    for attempt in range(attempts):
        try:
            return bytes(await admin.storage.from_(bucket).download(path))
        except Exception as exc:
            if attempt == attempts - 1:
                raise
            assert str(exc), "a failed storage call must say why"
    raise AssertionError("unreachable")


async def test_postgres_killed_with_sigkill_loses_no_acknowledged_commit(
    own_standin: LocalStandIn, figures: Figures
) -> None:
    """Commits stream in; PostgreSQL is SIGKILLed mid-stream; after ``start()`` (stale pid file recovered)
    every acknowledged commit is there exactly once, and nothing else changed."""
    own = own_standin
    wb = Workbench(standin_settings(own))
    table = await make_table(own.dsn(), 0)
    admin = await _bucket(own, "faults")
    payload = os.urandom(200_000)
    await admin.storage.from_("faults").upload("sigkill/kept.bin", payload)
    acked: list[str] = []
    failure: list[BaseException] = []

    async def writer() -> None:
        while True:
            row = str(uuid.uuid4())
            try:
                await wb.query(f"insert into {table} (id, n) values (:row::uuid, 1)", params={"row": row}, write=True)
            except Exception as exc:
                failure.append(exc)
                return
            acked.append(row)

    try:
        async with connection(own.dsn()) as conn:
            before = await snapshot(conn)
        task = asyncio.create_task(writer())

        async def enough() -> bool:
            return len(acked) >= 50 or task.done()

        await wait_for(enough, 60, "50 acknowledged commits")
        pid = int((own.pg.pgdata / "postmaster.pid").read_text().splitlines()[0])
        os.kill(pid, signal.SIGKILL)
        await asyncio.wait_for(task, 60)
        assert failure, "the writer must notice the crash"
        assert_clear_connection_error(failure[0])

        await wait_for(lambda: _reaped(pid), 30, "the killed postmaster to be reaped")
        assert (own.pg.pgdata / "postmaster.pid").exists()  # stale: start() must recover it
        status = await asyncio.to_thread(own.start)
        assert status.db_running and status.api_running

        rows = await wb.query(f"select id::text as id from {table}")  # the next operation: succeeds
        found = list(rows["id"])
        assert len(found) == len(set(found))  # nothing duplicated
        missing = set(acked) - set(found)
        assert not missing, f"{len(missing)} acknowledged commits lost"
        assert len(found) - len(acked) in (0, 1)  # at most the one in flight when the server died
        async with connection(own.dsn()) as conn:
            after = await snapshot(conn)
        assert [d for d in before.differences(after, sequences=False) if table not in d] == []
        assert await _download(own, "faults", "sigkill/kept.bin") == payload
    finally:
        await wb.aclose()
        await drop_table(own.dsn(), table)
    figures.add("faults", "survived")
    figures.note(
        "faults",
        f"PostgreSQL SIGKILLed under {len(acked)} acknowledged commits: all present once after start() "
        f"(stale pid file recovered), in-flight commit {'kept' if len(found) > len(acked) else 'absent'}",
    )


async def _reaped(pid: int) -> bool:
    """Gone for good: not even a zombie waiting for its parent to collect it."""
    return not psutil.pid_exists(pid)


async def _multipart(boundary: str, chunks: int, before_kill: int, on_pause: Any) -> AsyncIterator[bytes]:
    """A multipart upload body streamed 1 MiB at a time, pausing (``on_pause``) after ``before_kill`` chunks."""
    yield (
        f'--{boundary}\r\nContent-Disposition: form-data; name="cacheControl"\r\n\r\n3600\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    block = os.urandom(1 << 20)
    for i in range(chunks):
        if i == before_kill:
            await on_pause()
        yield block
    yield f"\r\n--{boundary}--\r\n".encode()


async def test_api_killed_mid_upload(own_standin: LocalStandIn, figures: Figures) -> None:
    own = own_standin
    admin = await _bucket(own, "faults")
    kept = os.urandom(100_000)
    await admin.storage.from_("faults").upload("api/kept.bin", kept)
    objects = own.storage_dir / "objects"
    api_pid = own.api_pid()
    assert api_pid is not None
    key = own.keys().service_role_key
    url = f"{own.api_url()}/storage/v1/object/faults/api/killed.bin"
    boundary = f"wbrel{uuid.uuid4().hex}"
    async with connection(own.dsn()) as conn:
        before = await snapshot(conn)

    async def kill_when_writing() -> None:
        async def writing() -> bool:
            return any(objects.glob("*.part"))

        await wait_for(writing, 30, "the API to start writing the upload")
        os.kill(api_pid, signal.SIGKILL)

        async def dead() -> bool:
            return not pid_alive(api_pid)

        await wait_for(dead, 30, "the API process to die")

    headers = {
        "Authorization": f"Bearer {key}",
        "apikey": key,
        "content-type": f"multipart/form-data; boundary={boundary}",
    }
    async with httpx.AsyncClient(timeout=60) as http:
        with pytest.raises(httpx.TransportError):
            await http.post(url, headers=headers, content=_multipart(boundary, 30, 2, kill_when_writing))

    # The next operation while the API is down fails at once and says why: the stand-in knows it is down,
    # and a client made before the kill cannot connect.
    with pytest.raises(StandInError, match="not running. Start it with `workbench local start`"):
        own.api_url()
    with pytest.raises(httpx.ConnectError):
        await admin.storage.from_("faults").download("api/kept.bin")

    status = await asyncio.to_thread(own.start)  # restarts the dead API process
    assert status.api_running
    assert not list(objects.glob("*.part"))  # the partial file was swept
    assert await _download(own, "faults", "api/kept.bin", attempts=1) == kept
    async with connection(own.dsn()) as conn:
        assert before.differences(await snapshot(conn)) == []  # no row for the killed upload
    again = os.urandom(64_000)
    admin = await _admin(own)
    await admin.storage.from_("faults").upload("api/killed.bin", again)  # no "Duplicate": nothing was committed
    assert await _download(own, "faults", "api/killed.bin", attempts=1) == again
    user = demo_users()[0]
    session = await admin.auth.sign_in_with_password({"email": user["email"], "password": user["password"]})
    assert session.user is not None and str(session.user.id) == ALICE
    figures.add("faults", "survived")
    figures.note(
        "faults",
        "API process SIGKILLed mid-upload: client transport error, next call refused clearly while down, "
        "start() restarted it, no row and no partial file left, earlier object intact, re-upload ok, sign-in ok",
    )


async def test_storage_calls_explain_an_api_that_is_down(own_standin: LocalStandIn, figures: Figures) -> None:
    from workbench import storage as st

    own = own_standin
    admin = await st.admin_client(standin_settings(own))
    api_pid = own.api_pid()
    assert api_pid is not None
    os.kill(api_pid, signal.SIGKILL)
    await wait_for(lambda: _reaped_or_zombie(api_pid), 30, "the API process to die")
    try:
        with pytest.raises(st.StorageError) as info:
            await st.list_buckets(admin)
        text = str(info.value)
        assert "workbench local start" in text or "not reachable" in text or "running" in text, text
    finally:
        await asyncio.to_thread(own.start)
    figures.add("faults", "survived")
    figures.note("faults", "Storage API down: workbench.storage raises a StorageError that says how to start it")


async def _reaped_or_zombie(pid: int) -> bool:
    return not pid_alive(pid)
