"""Pool statistics from real pool events against the stand-in: checkouts, overflow, waiters, recycles, errors."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from workbench.core.engine import EngineOptions, create_engine
from workbench.core.pool import PoolMonitor, monitor, pool_stats


@contextlib.asynccontextmanager
async def engine_with(db_url: str, **options: object) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(db_url, "direct", EngineOptions(application_name="wb-test-pool", **options))  # type: ignore[arg-type]
    try:
        yield engine
    finally:
        monitor(engine).detach()
        await engine.dispose()


async def until(condition, what: str, timeout: float = 10) -> None:  # type: ignore[no-untyped-def]
    """Wait (yielding to the loop) until ``condition()`` holds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


async def test_checkouts_overflow_and_idle_follow_the_pool(db_url: str) -> None:
    async with engine_with(db_url, pool_size=2, max_overflow=1) as engine:
        mon = monitor(engine)
        assert monitor(engine) is mon
        held: list[AsyncConnection] = []
        for _ in range(3):
            conn = await engine.connect()
            await conn.execute(text("select 1"))
            held.append(conn)
        busy = mon.snapshot()
        assert (busy.pool, busy.size, busy.max_overflow, busy.capacity) == ("AsyncAdaptedQueuePool", 2, 1, 3)
        assert (busy.checked_out, busy.overflow, busy.idle, busy.opened) == (3, 1, 0, 3)
        assert busy.status == engine.pool.status() and "Current Checked out connections: 3" in busy.status
        for conn in held:
            await conn.close()
        calm = mon.snapshot()
        assert (calm.checked_out, calm.max_checked_out, calm.idle, calm.overflow) == (0, 3, 2, 0)
        assert calm.closed == 1, "the overflow connection is closed at checkin, the other two kept"
        assert calm.checkouts == 3 and calm.errors == 0 and calm.waiting == 0
        assert calm.timed_checkouts == 3 and calm.wait_ms_max > 0


async def test_a_waiter_is_counted_until_a_connection_comes_back(db_url: str) -> None:
    async with engine_with(db_url, pool_size=1, max_overflow=0, pool_timeout=30) as engine:
        mon = monitor(engine)
        first = await engine.connect()
        await first.execute(text("select 1"))

        async def second() -> int:
            async with engine.connect() as conn:
                return int((await conn.execute(text("select 2"))).scalar_one())

        task = asyncio.create_task(second())
        await until(lambda: mon.snapshot().waiting == 1, "the second checkout to wait")
        assert mon.snapshot().checked_out == 1
        await first.close()
        assert await task == 2
        after = mon.snapshot()
        assert (after.waiting, after.max_waiting, after.checked_out, after.opened) == (0, 1, 0, 1)
        assert after.wait_ms_max > 1


async def test_a_checkout_timeout_is_an_error_with_the_pools_message(db_url: str) -> None:
    async with engine_with(db_url, pool_size=1, max_overflow=0, pool_timeout=0.2) as engine:
        assert pool_stats(engine).errors == 0  # attaches the engine's monitor
        held = await engine.connect()
        await held.execute(text("select 1"))
        with pytest.raises(sa_exc.TimeoutError):
            async with engine.connect() as conn:
                await conn.execute(text("select 1"))
        stats = pool_stats(engine)
        assert stats.errors == 1 and stats.waiting == 0
        assert stats.last_error is not None and "QueuePool limit of size 1 overflow 0" in stats.last_error
        await held.close()


async def test_recycled_connections_are_counted(db_url: str) -> None:
    async with engine_with(db_url, pool_size=1, max_overflow=0, pool_recycle=0) as engine:
        mon = monitor(engine)
        pids = set()
        for _ in range(3):
            async with engine.connect() as conn:
                pids.add((await conn.execute(text("select pg_backend_pid()"))).scalar_one())
        stats = mon.snapshot()
        assert len(pids) == 3, "pool_recycle=0 replaces the connection at every checkout"
        # recycle=0 even replaces a brand-new connection at its first checkout: 1 + 3 opened, 3 recycled
        assert (stats.opened, stats.recycled, stats.closed, stats.invalidated) == (4, 3, 3, 0)


async def test_a_killed_connection_is_invalidated_with_the_error_and_replaced(db_url: str, standin) -> None:  # type: ignore[no-untyped-def]
    async with engine_with(db_url, pool_size=1, max_overflow=0) as engine:
        mon = monitor(engine)
        async with engine.connect() as conn:
            pid = (await conn.execute(text("select pg_backend_pid()"))).scalar_one()
        admin = await asyncpg.connect(standin.dsn())
        try:
            assert await admin.fetchval("select pg_terminate_backend($1)", pid)
        finally:
            await admin.close()
        async with engine.connect() as conn:  # pre-ping finds the dead connection and reconnects
            assert (await conn.execute(text("select pg_backend_pid()"))).scalar_one() != pid
        stats = mon.snapshot()
        assert stats.invalidated >= 1 and stats.opened == 2
        assert stats.recycled == 0, "a reconnect after an invalidation is not a recycle"
        assert stats.errors >= 1 and stats.last_error is not None


async def test_null_pool_opens_and_closes_a_connection_per_checkout(db_url: str) -> None:
    async with engine_with(db_url, null_pool=True) as engine:
        mon = monitor(engine)
        for _ in range(3):
            async with engine.connect() as conn:
                await conn.execute(text("select 1"))
        stats = mon.snapshot()
        assert (stats.pool, stats.size, stats.idle, stats.capacity) == ("NullPool", None, None, None)
        assert stats.status == "NullPool"
        assert (stats.checkouts, stats.opened, stats.closed, stats.checked_out) == (3, 3, 3, 0)


async def test_counting_survives_dispose_and_stops_at_detach(db_url: str) -> None:
    async with engine_with(db_url, pool_size=1, max_overflow=0) as engine:
        mon = monitor(engine)
        async with engine.connect() as conn:
            await conn.execute(text("select 1"))
        await engine.dispose()  # a new pool: listeners carry over, the checkout timer is re-installed
        async with engine.connect() as conn:
            await conn.execute(text("select 1"))
        stats = mon.snapshot()
        assert (stats.checkouts, stats.timed_checkouts, stats.opened, stats.closed) == (2, 2, 2, 1)
        mon.reset()
        assert mon.snapshot().checkouts == 0 and mon.snapshot().opened == 0
        mon.detach()
        async with engine.connect() as conn:
            await conn.execute(text("select 1"))
        assert mon.snapshot().checkouts == 0, "a detached monitor hears nothing"
        assert "_do_get" not in engine.pool.__dict__
        assert monitor(engine) is not mon, "a fresh monitor after detach"


def test_monitor_repr_and_dict_show_counts_not_urls(db_url: str) -> None:
    engine = create_engine(db_url)
    mon = PoolMonitor(engine)
    try:
        assert "127.0.0.1" not in repr(mon) and "out=0" in repr(mon)
        data = mon.snapshot().as_dict()
        assert data["capacity"] == 10 and data["mean_wait_ms"] == 0.0
    finally:
        mon.detach()


async def test_connections_out_before_the_monitor_attached_are_counted(db_url: str) -> None:
    async with engine_with(db_url, pool_size=2, max_overflow=0) as engine:
        conn = await engine.connect()
        await conn.execute(text("select 1"))
        late = monitor(engine)  # attached while one connection is out
        assert late.snapshot().checked_out == 1
        await conn.close()
        assert late.snapshot().checked_out == 0 and late.snapshot().idle == 1
