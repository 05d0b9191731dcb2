"""Engines for every connection mode, checked for real: directly and through PgBouncer in transaction mode."""

from __future__ import annotations

import asyncio
import random

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from workbench.core.engine import EngineManager, EngineOptions, create_engine, engine_mode
from workbench.core.settings import ConnectionMode, Settings

QUERY = text("select cast(:x as int) * 2 as doubled, cast(:label as text) || '!' as label")


async def workload(engine, tasks: int, connections: int, transactions: int) -> tuple[int, int, list[str]]:
    """Each task opens ``connections`` connections and runs ``transactions`` transactions on each."""
    ok = wrong = 0
    errors: list[str] = []

    async def one(task: int) -> None:
        nonlocal ok, wrong
        rnd = random.Random(task)
        for _ in range(connections):
            try:
                async with engine.connect() as conn:
                    for _ in range(transactions):
                        x, label = rnd.randint(-(10**6), 10**6), f"t{task}-{rnd.random()}"
                        async with conn.begin():
                            row = (await conn.execute(QUERY, {"x": x, "label": label})).one()
                        if row.doubled == 2 * x and row.label == label + "!":
                            ok += 1
                        else:
                            wrong += 1
            except Exception as exc:  # collected: the naive configuration is expected to produce these
                errors.append(f"{type(exc).__name__}: {exc}")

    await asyncio.gather(*(one(t) for t in range(tasks)))
    return ok, wrong, errors


@pytest.mark.pgbouncer
async def test_transaction_engine_survives_pgbouncer_at_full_load(pgbouncer) -> None:
    engine = create_engine(pgbouncer.url, ConnectionMode.TRANSACTION)
    try:
        ok, wrong, errors = await workload(engine, tasks=50, connections=100, transactions=3)
    finally:
        await engine.dispose()
    assert errors == []
    assert wrong == 0
    assert ok == 50 * 100 * 3


@pytest.mark.pgbouncer
async def test_transaction_engine_with_null_pool_through_pgbouncer(pgbouncer) -> None:
    engine = create_engine(pgbouncer.url, ConnectionMode.TRANSACTION, EngineOptions(null_pool=True))
    try:
        ok, wrong, errors = await workload(engine, tasks=20, connections=10, transactions=3)
    finally:
        await engine.dispose()
    assert (ok, wrong, errors) == (20 * 10 * 3, 0, [])


@pytest.mark.pgbouncer
async def test_naive_configuration_fails_through_pgbouncer(pgbouncer) -> None:
    """SQLAlchemy's defaults (asyncpg statement cache on) break behind a transaction pooler: keep it so."""
    engine = create_async_engine(pgbouncer.url)
    try:
        ok, wrong, errors = await workload(engine, tasks=20, connections=10, transactions=3)
    finally:
        await engine.dispose()
    assert errors or wrong, "the naive configuration unexpectedly worked through PgBouncer"
    assert any("prepared statement" in e or "protocol" in e.lower() for e in errors), errors[:3]


@pytest.mark.pgbouncer
async def test_documented_name_func_alone_still_fails(pgbouncer) -> None:
    """The uuid ``prepared_statement_name_func`` recipe without disabling SQLAlchemy's cache is not enough."""
    from uuid import uuid4

    engine = create_async_engine(
        pgbouncer.url, connect_args={"prepared_statement_name_func": lambda: f"__asyncpg_{uuid4()}__"}
    )
    try:
        ok, wrong, errors = await workload(engine, tasks=20, connections=10, transactions=3)
    finally:
        await engine.dispose()
    assert errors or wrong


SETTINGS = text(
    "select current_setting('application_name') a, current_setting('statement_timeout') tmo, current_setting('jit') j"
)


async def session_settings(engine) -> tuple[str, str, str]:  # type: ignore[no-untyped-def]
    """Application name, statement timeout and jit as a transaction of ``engine`` sees them; disposes it."""
    try:
        async with engine.connect() as conn:
            row = (await conn.execute(SETTINGS)).one()
    finally:
        await engine.dispose()
    return row.a, row.tmo, row.j


async def test_session_settings_are_applied_directly(settings: Settings) -> None:
    engine = create_engine(settings)
    assert engine_mode(engine) is ConnectionMode.DIRECT
    assert not engine.echo
    assert engine.pool.__class__.__name__ == "AsyncAdaptedQueuePool"
    assert engine.pool._pre_ping  # type: ignore[attr-defined]
    assert await session_settings(engine) == ("supabase-workbench", "1min", "off")


@pytest.mark.pgbouncer
async def test_transaction_mode_applies_timeout_and_jit_per_transaction(pgbouncer) -> None:
    engine = create_engine(pgbouncer.url, ConnectionMode.TRANSACTION, EngineOptions(statement_timeout_ms=1234))
    assert await session_settings(engine) == ("supabase-workbench", "1234ms", "off")


async def test_manager_heartbeat_keeps_connections_warm_without_leaking_tasks(settings: Settings) -> None:
    before = {t for t in asyncio.all_tasks() if t.get_name() == "workbench-heartbeat"}
    manager = EngineManager(settings)
    async with manager:
        manager.start_heartbeat(interval=0.01, warm=2)
        manager.start_heartbeat(interval=0.01, warm=2)  # idempotent: still one task
        beats = [t for t in asyncio.all_tasks() if t.get_name() == "workbench-heartbeat"]
        assert len(beats) - len(before) == 1
        for _ in range(500):
            if manager.heartbeats >= 3:
                break
            await asyncio.sleep(0.01)  # waiting for the condition: three completed heartbeats
        assert manager.heartbeats >= 3
        assert manager.engine.pool.checkedin() >= 1  # type: ignore[attr-defined]
    after = {t for t in asyncio.all_tasks() if t.get_name() == "workbench-heartbeat" and not t.done()}
    assert after == before
    await manager.aclose()  # closing twice is harmless
