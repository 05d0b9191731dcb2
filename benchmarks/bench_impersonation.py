"""Impersonation overhead per query: latency and round trips, directly and through PgBouncer.

The same small RLS query (``count(*)`` of the demo tasks) runs without an identity and as a user, by hand
on asyncpg (the PostgREST recipe: BEGIN, one ``set_config`` statement, the query, COMMIT), through
:func:`workbench.core.query.run_query` (``%%sbquery``'s path: BEGIN and the identity in one message) and
through an impersonating SQLAlchemy session. Round trips are counted by a proxy on the wire.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from benchmarks.common import Measurement, SuiteContext, SuiteResult
from benchmarks.roundtrips import RoundTripCounter

QUERY = "select count(*) from public.tasks"
USER = "alice@example.com"
BASELINE = "asyncpg fetch, autocommit, no identity"

Method = Callable[[], Awaitable[Any]]


async def build_methods(dsn: str, url: str, transaction: bool, identity: Any) -> tuple[dict[str, Method], list[Any]]:
    """The methods against one endpoint, and what to close afterwards."""
    import asyncpg
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import async_sessionmaker

    from workbench.core.engine import EngineOptions, create_engine
    from workbench.core.identity import Identity
    from workbench.core.impersonation import apply_statement, sessionmaker_for
    from workbench.core.query import run_query

    cache = {"statement_cache_size": 0} if transaction else {}
    conn = await asyncpg.connect(dsn, **cache)
    mode = "transaction" if transaction else "direct"
    engine = create_engine(url, mode)
    no_ping = create_engine(url, mode, EngineOptions(pre_ping=False))
    plain_sessions = async_sessionmaker(engine)
    user_sessions = sessionmaker_for(engine, identity)
    apply_sql, apply_args = apply_statement(identity)

    async def raw() -> Any:
        return await conn.fetchval(QUERY)

    async def by_hand() -> Any:
        async with conn.transaction():
            await conn.execute(apply_sql, *apply_args)
            return await conn.fetchval(QUERY)

    async def fast_none() -> Any:
        return await run_query(engine, QUERY, identity=Identity.none())

    async def fast_user() -> Any:
        return await run_query(engine, QUERY, identity=identity)

    async def fast_user_no_ping() -> Any:
        return await run_query(no_ping, QUERY, identity=identity)

    async def session_none() -> Any:
        async with plain_sessions() as session:
            return (await session.execute(text(QUERY))).scalar_one()

    async def session_user() -> Any:
        async with user_sessions() as session:
            return (await session.execute(text(QUERY))).scalar_one()

    methods: dict[str, Method] = {
        BASELINE: raw,
        "asyncpg by hand as the user: BEGIN, set_config, query, COMMIT": by_hand,
        "run_query, no identity": fast_none,
        "run_query as the user (%%sbquery's path)": fast_user,
        "run_query as the user, engine with pool_pre_ping=False": fast_user_no_ping,
        "SQLAlchemy session, no identity (plain async_sessionmaker)": session_none,
        "SQLAlchemy session as the user (impersonating engine)": session_user,
    }
    return methods, [conn, engine, no_ping]


async def close(things: list[Any]) -> None:
    for thing in things:
        if hasattr(thing, "dispose"):
            await thing.dispose()
        else:
            await thing.close()


async def latencies(methods: dict[str, Method], runs: int, per_run: int) -> dict[str, list[float]]:
    """Mean ms per query for each run of ``per_run`` sequential queries, methods round-robin."""
    for method in methods.values():  # warm: connections opened, statements prepared
        for _ in range(3):
            await method()
    names = list(methods)
    out: dict[str, list[float]] = {n: [] for n in names}
    for round_ in range(runs):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            started = time.perf_counter()
            for _ in range(per_run):
                await methods[name]()
            out[name].append((time.perf_counter() - started) * 1000 / per_run)
    return out


async def round_trips(
    backend_port: int, transaction: bool, identity: Any, per_method: int = 10, password: str = ""
) -> dict[str, float]:
    """Round trips per query for each method, counted by a proxy in front of ``backend_port``."""
    proxy = RoundTripCounter(backend_port)
    await proxy.start()
    try:
        dsn = f"postgresql://postgres:{password}@127.0.0.1:{proxy.port}/postgres"
        methods, things = await build_methods(
            dsn, dsn.replace("postgresql://", "postgresql+asyncpg://"), transaction, identity
        )
        try:
            counts = {}
            for name, method in methods.items():
                for _ in range(3):
                    await method()  # steady state: connected, statements cached where they can be
                proxy.reset()
                for _ in range(per_method):
                    await method()
                counts[name] = proxy.round_trips / per_method
            return counts
        finally:
            await close(things)
    finally:
        await proxy.stop()


async def measure(ctx: SuiteContext) -> SuiteResult:
    import asyncpg

    from workbench.core.identity import user_identity

    runs, per_run = (1, 10) if ctx.quick else (5, 150)
    admin = await asyncpg.connect(ctx.dsn)
    try:
        identity = await user_identity(admin, USER)
    finally:
        await admin.close()
    endpoints: list[tuple[str, str, int, bool]] = [("direct", ctx.dsn, ctx.db_port, False)]
    bouncer = None
    result = SuiteResult()
    if ctx.pgbouncer:
        from workbench.local.pgbouncer import LocalPgBouncer

        bouncer = LocalPgBouncer(
            backend_port=ctx.db_port, password=urlsplit(ctx.dsn).password, pool_size=4, binary=ctx.pgbouncer
        ).start()
        endpoints.append(("through PgBouncer (transaction mode)", bouncer.dsn, bouncer.port, True))
    else:
        result.notes.append("PgBouncer is not installed: only the direct rows ran.")
    try:
        for where, dsn, port, transaction in endpoints:
            methods, things = await build_methods(
                dsn, dsn.replace("postgresql://", "postgresql+asyncpg://"), transaction, identity
            )
            try:
                times = await latencies(methods, runs, per_run)
            finally:
                await close(things)
            for name, values in times.items():
                result.add(Measurement(f"latency per query, {where}", name, "ms", values, baseline=name == BASELINE))
            trips = await round_trips(port, transaction, identity, password=urlsplit(ctx.dsn).password or "")
            for name, value in trips.items():
                result.add(
                    Measurement(
                        f"round trips per query, {where}", name, "round trips", [value], baseline=name == BASELINE
                    )
                )
    finally:
        if bouncer is not None:
            bouncer.close()
    result.notes.append(
        f"Query: `{QUERY}` (RLS applies as the user). Latency: mean of {per_run} sequential queries per run, "
        f"{runs} runs. Round trips: counted on the wire by a proxy, per query in steady state."
    )
    result.notes.append(
        "Engines use the workbench defaults (`pool_pre_ping=True`) unless the row says otherwise: with asyncpg "
        "SQLAlchemy pings inside its own BEGIN/ROLLBACK, three round trips at every checkout."
    )
    return result


def run(ctx: SuiteContext) -> SuiteResult:
    return asyncio.run(measure(ctx))
