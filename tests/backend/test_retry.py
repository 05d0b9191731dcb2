"""workbench.backend.retry: real connection failures (terminated backends, PgBouncer restarts), and the schedule."""

from __future__ import annotations

import asyncio
import errno
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from workbench.backend.retry import Outcome, RetryEvent, RetryPolicy, outcome_of, retry, retrying
from workbench.core.engine import EngineOptions, create_engine

FAST = RetryPolicy(max_attempts=5, base_delay=0.01, max_delay=0.05, max_elapsed=10)


class FakeTime:
    """A clock that moves only when the retry loop sleeps (or when a test says an attempt took time)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def refused() -> ConnectionRefusedError:
    return ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed ('127.0.0.1', 6543)")


class Counter:
    """An async unit of work that fails with the given errors, then returns ``"ok"``."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


# ------------------------------------------------------------------------------------------ the schedule


async def test_backoff_is_exponential_capped_and_fully_jittered() -> None:
    policy = RetryPolicy(max_attempts=6, base_delay=0.1, max_delay=0.5, max_elapsed=100)
    t = FakeTime()
    work = Counter(*(refused() for _ in range(10)))
    with pytest.raises(ConnectionRefusedError) as caught:
        await retry(work, policy=policy, sleep=t.sleep, clock=t.clock, rng=lambda: 1.0)
    assert work.calls == 6  # max_attempts in all, i.e. five retries
    assert t.sleeps == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5])  # doubling, then the cap
    assert "after 6 attempts" in "".join(caught.value.__notes__)

    t = FakeTime()
    await retry(Counter(refused(), refused()), policy=policy, sleep=t.sleep, clock=t.clock, rng=lambda: 0.0)
    assert t.sleeps == [0.0, 0.0]  # full jitter reaches down to zero


@settings(max_examples=60, deadline=None)
@given(
    jitter=st.lists(st.floats(min_value=0, max_value=1, exclude_max=True), min_size=1, max_size=20),
    attempts=st.integers(min_value=1, max_value=12),
    base=st.floats(min_value=0.001, max_value=2),
    cap=st.floats(min_value=0.001, max_value=5),
    budget=st.floats(min_value=0.01, max_value=20),
)
def test_schedule_never_exceeds_its_bounds(
    jitter: list[float], attempts: int, base: float, cap: float, budget: float
) -> None:
    policy = RetryPolicy(max_attempts=attempts, base_delay=base, max_delay=cap, max_elapsed=budget)
    draws = iter(jitter * 20)
    t = FakeTime()
    work = Counter(*(refused() for _ in range(50)))
    with pytest.raises(ConnectionRefusedError):
        asyncio.run(retry(work, policy=policy, sleep=t.sleep, clock=t.clock, rng=lambda: next(draws)))
    assert 1 <= work.calls <= attempts
    assert len(t.sleeps) == work.calls - 1
    for n, delay in enumerate(t.sleeps, start=1):
        assert 0 <= delay <= min(cap, base * 2 ** (n - 1)) + 1e-12
    assert sum(t.sleeps) <= budget + 1e-9


async def test_time_budget_counts_the_attempts_themselves() -> None:
    t = FakeTime()

    async def slow_refusal() -> None:
        t.now += 4  # each attempt spends 4 s before the connection is refused
        raise refused()

    policy = RetryPolicy(max_attempts=100, base_delay=1, max_delay=1, max_elapsed=10)
    with pytest.raises(ConnectionRefusedError) as caught:
        await retry(slow_refusal, policy=policy, sleep=t.sleep, clock=t.clock, rng=lambda: 1.0)
    # 4 + 1 + 4 = 9 s, another wait would pass 10 s after the third attempt (13 s): stop there.
    assert len(t.sleeps) == 2
    assert "retry budget" in "".join(caught.value.__notes__)


def test_policy_rejects_nonsense_with_a_reason() -> None:
    with pytest.raises(ValueError, match="max_attempts must be >= 1"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="max_elapsed must be > 0"):
        RetryPolicy(max_elapsed=0)


# ------------------------------------------------------------------------------------ what gets retried


async def test_what_is_retried_depends_on_whether_the_work_may_have_run() -> None:
    t = FakeTime()
    # Refused at connect: nothing ran, so even non-idempotent work is retried.
    work = Counter(refused())
    assert await retry(work, sleep=t.sleep, clock=t.clock) == "ok" and work.calls == 2
    # Reset while in flight: it may have run, so only idempotent work is retried.
    reset = ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")
    work = Counter(reset)
    with pytest.raises(ConnectionResetError) as caught:
        await retry(work, sleep=t.sleep, clock=t.clock)
    assert work.calls == 1 and "idempotent=True" in "".join(caught.value.__notes__)
    work = Counter(ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"))
    assert await retry(work, idempotent=True, sleep=t.sleep, clock=t.clock) == "ok" and work.calls == 2
    # Not a connection problem: never retried, even when idempotent.
    work = Counter(ValueError("bad input"))
    with pytest.raises(ValueError):
        await retry(work, idempotent=True, sleep=t.sleep, clock=t.clock)
    assert work.calls == 1


async def test_postgres_errors_are_not_retried(pg_dsn: str) -> None:
    conn = await asyncpg.connect(pg_dsn)
    calls = 0

    async def broken() -> Any:
        nonlocal calls
        calls += 1
        return await conn.fetch("selec 1")

    try:
        with pytest.raises(asyncpg.PostgresSyntaxError):
            await retry(broken, idempotent=True, policy=FAST)
    finally:
        await conn.close()
    assert calls == 1


async def test_logs_name_the_failure_but_no_secret(caplog: pytest.LogCaptureFixture) -> None:
    secret = "hunter2-very-secret"
    err = ConnectionRefusedError(errno.ECONNREFUSED, f"could not reach postgresql://postgres:{secret}@db:5432/x")
    events: list[RetryEvent] = []
    t = FakeTime()
    with caplog.at_level(logging.WARNING, logger="workbench.backend.retry"):
        await retry(Counter(err), sleep=t.sleep, clock=t.clock, name="load_tasks", on_retry=events.append)
    assert "retrying load_tasks" in caplog.text and "connection" in caplog.text
    assert secret not in caplog.text and all(secret not in e.message for e in events)
    assert [(e.attempt, e.outcome) for e in events] == [(1, Outcome.NOT_SENT)]


async def test_decorator_keeps_the_function_and_refuses_sync_functions() -> None:
    t = FakeTime()
    failures = [refused()]

    @retrying(idempotent=True, sleep=t.sleep, clock=t.clock)
    async def add(a: int, b: int) -> int:
        """Adds."""
        if failures:
            raise failures.pop()
        return a + b

    assert await add(2, b=3) == 5 and add.__name__ == "add" and add.__doc__ == "Adds."
    assert len(t.sleeps) == 1

    def not_async() -> None:  # pragma: no cover - never called
        pass

    with pytest.raises(TypeError, match="async def"):
        retrying(not_async)  # type: ignore[arg-type]  # the mistake this check exists for


# ------------------------------------------------------------------------------- real failures, real PG


@pytest.fixture
async def table(pg_dsn: str) -> AsyncIterator[str]:
    name = f"wb_retry_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(pg_dsn)
    await conn.execute(f"create table {name} (id uuid primary key, note text)")
    yield name
    await conn.execute(f"drop table {name}")
    await conn.close()


@pytest.fixture
async def engine(pg_dsn: str) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(pg_dsn)
    yield eng
    await eng.dispose()


def terminating(
    engine: AsyncEngine, dsn: str, body: Callable[[Any], Awaitable[Any]]
) -> tuple[Callable[[], Any], list[int]]:
    """A unit of work whose first attempt gets its server connection killed by ``pg_terminate_backend``
    halfway through, before ``body`` runs; later attempts just run ``body``."""
    pids: list[int] = []

    async def work() -> Any:
        async with engine.begin() as conn:
            pids.append((await conn.execute(text("select pg_backend_pid()"))).scalar_one())
            if len(pids) == 1:
                admin = await asyncpg.connect(dsn)
                try:
                    # With a timeout, pg_terminate_backend waits until the backend is gone: no race with the next query.
                    assert await admin.fetchval("select pg_terminate_backend($1, 10000)", pids[0]) is True
                finally:
                    await admin.close()
            return await body(conn)

    return work, pids


async def test_recovers_from_a_terminated_backend(engine: AsyncEngine, pg_dsn: str, table: str) -> None:
    async def count(conn: Any) -> int:
        return int((await conn.execute(text(f"select count(*) from {table}"))).scalar_one())

    work, pids = terminating(engine, pg_dsn, count)
    events: list[RetryEvent] = []
    assert await retry(work, idempotent=True, policy=FAST, on_retry=events.append) == 0
    assert len(pids) == 2 and pids[0] != pids[1]  # the second attempt ran on a new server connection
    assert [(e.outcome, e.category) for e in events] == [(Outcome.UNKNOWN, "connection")]


async def test_a_failed_insert_is_not_retried(engine: AsyncEngine, pg_dsn: str, table: str) -> None:
    row_id = uuid.uuid4()

    async def insert(conn: Any) -> None:
        await conn.execute(text(f"insert into {table} (id, note) values (:id, 'once')"), {"id": row_id})

    work, pids = terminating(engine, pg_dsn, insert)
    with pytest.raises(Exception) as caught:
        await retry(work, policy=FAST)
    assert len(pids) == 1  # one attempt only: the INSERT was in flight when the connection died
    assert outcome_of(caught.value)[0] is Outcome.UNKNOWN
    assert "may have run" in "".join(caught.value.__notes__)
    conn = await asyncpg.connect(pg_dsn)
    try:
        assert await conn.fetchval(f"select count(*) from {table}") == 0

        # The same write made idempotent (client-made id + ON CONFLICT DO NOTHING) may be retried.
        async def upsert(c: Any) -> None:
            await c.execute(
                text(f"insert into {table} (id, note) values (:id, 'once') on conflict (id) do nothing"), {"id": row_id}
            )

        work, pids = terminating(engine, pg_dsn, upsert)
        await retry(work, idempotent=True, policy=FAST)
        assert len(pids) == 2
        assert await conn.fetchval(f"select count(*) from {table} where id = $1", row_id) == 1
    finally:
        await conn.close()


@pytest.mark.pgbouncer
async def test_recovers_from_a_pgbouncer_restart(pgbouncer_factory: Any) -> None:
    bouncer = pgbouncer_factory(pool_size=1)
    # No pre-ping: the pooled client connection goes stale when PgBouncer restarts, as it would
    # between a pre-ping and the query.
    eng = create_engine(bouncer.url, mode="transaction", options=EngineOptions(pre_ping=False, pool_size=1))
    name = f"wb_retry_{uuid.uuid4().hex[:8]}"
    calls = 0

    async def read() -> int:
        nonlocal calls
        calls += 1
        async with eng.connect() as conn:
            return int((await conn.execute(text("select 41 + 1"))).scalar_one())

    try:
        assert await read() == 42
        bouncer.restart()
        calls = 0
        events: list[RetryEvent] = []
        assert await retry(read, idempotent=True, policy=FAST, on_retry=events.append) == 42
        assert calls == 2 and [e.outcome for e in events] == [Outcome.UNKNOWN]

        # The same kind of failure on a write that is not marked idempotent is raised, not retried.
        async with eng.begin() as conn:
            await conn.execute(text(f"create table public.{name} (id int)"))
        bouncer.restart()
        writes = 0

        async def write() -> None:
            nonlocal writes
            writes += 1
            async with eng.begin() as conn:
                await conn.execute(text(f"insert into public.{name} values (1)"))

        with pytest.raises(Exception) as caught:
            await retry(write, policy=FAST)
        assert writes == 1 and outcome_of(caught.value)[0] is Outcome.UNKNOWN
    finally:
        async with eng.begin() as conn:
            await conn.execute(text(f"drop table if exists public.{name}"))
        await eng.dispose()


@pytest.mark.pgbouncer
async def test_writes_are_retried_while_the_pooler_is_down(pgbouncer_factory: Any) -> None:
    """Refused connections mean the INSERT never left: it is retried and lands exactly once."""
    bouncer = pgbouncer_factory(pool_size=1)
    eng = create_engine(bouncer.url, mode="transaction", options=EngineOptions(pool_size=1))
    name = f"wb_retry_{uuid.uuid4().hex[:8]}"
    async with eng.begin() as conn:
        await conn.execute(text(f"create table public.{name} (id int)"))
    await eng.dispose()  # no pooled connection left: the next attempt must connect
    bouncer.stop()
    attempts = 0

    async def insert() -> None:
        nonlocal attempts
        attempts += 1
        async with eng.begin() as conn:
            await conn.execute(text(f"insert into public.{name} values (1)"))

    async def sleep_then_bring_it_back(seconds: float) -> None:
        await asyncio.to_thread(bouncer.start)  # the pooler comes back during the first backoff
        await asyncio.sleep(seconds)

    events: list[RetryEvent] = []
    try:
        await retry(insert, policy=FAST, sleep=sleep_then_bring_it_back, on_retry=events.append)
        assert attempts == 2 and [e.outcome for e in events] == [Outcome.NOT_SENT]
        async with eng.connect() as conn:
            assert (await conn.execute(text(f"select count(*) from public.{name}"))).scalar_one() == 1
    finally:
        async with eng.begin() as conn:
            await conn.execute(text(f"drop table if exists public.{name}"))
        await eng.dispose()
