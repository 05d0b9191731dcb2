"""Pool throughput and p95 latency at 1 / 10 / 50 concurrent clients: direct vs PgBouncer in transaction
mode, NullPool vs a small client pool, with :mod:`workbench.teaching.loadgen` (impersonated demo users, RLS on)."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

from benchmarks.common import Measurement, SuiteContext, SuiteResult

PGBOUNCER_POOL = 10
BASELINE = "direct, small pool (5 + 5 overflow)"


async def measure(ctx: SuiteContext) -> SuiteResult:
    from workbench.core.pool import monitor
    from workbench.core.settings import ConnectionMode
    from workbench.teaching.loadgen import DEFAULT_SQL, LoadResult, LoadTarget, demo_identities, run_load

    clients, runs, duration, warmup = ((1, 4), 1, 0.3, 0.1) if ctx.quick else ((1, 10, 50), 3, 1.5, 0.3)
    result = SuiteResult()
    targets = [
        LoadTarget(BASELINE, ctx.db_url, pool_size=5, max_overflow=5),
        LoadTarget("direct, NullPool", ctx.db_url, null_pool=True),
    ]
    bouncer = None
    if ctx.pgbouncer:
        from workbench.local.pgbouncer import LocalPgBouncer

        bouncer = LocalPgBouncer(
            backend_port=ctx.db_port,
            password=urlsplit(ctx.dsn).password,
            pool_size=PGBOUNCER_POOL,
            binary=ctx.pgbouncer,
        ).start()
        targets += [
            LoadTarget("PgBouncer, NullPool", bouncer.url, ConnectionMode.TRANSACTION, null_pool=True),
            LoadTarget("PgBouncer, small pool (5 + 5 overflow)", bouncer.url, ConnectionMode.TRANSACTION),
        ]
    else:
        result.notes.append("PgBouncer is not installed: only the direct rows ran.")
    engines = {t.label: t.engine() for t in targets}
    try:
        people = await demo_identities(next(iter(engines.values())))
        done: dict[tuple[str, int], list[LoadResult]] = {}
        for round_ in range(runs):
            for n in clients:
                for label, engine in engines.items():
                    if round_ == 0 and warmup:
                        await run_load(engine, n, duration=warmup, identities=people, label=label)
                    run = await run_load(engine, n, duration=duration, identities=people, label=label)
                    done.setdefault((label, n), []).append(run)
        for n in clients:
            for label in engines:
                rs = done[(label, n)]
                result.add(
                    Measurement(
                        f"throughput, {n} concurrent client{'s' if n > 1 else ''}",
                        label,
                        "q/s",
                        [r.throughput_qps for r in rs],
                        baseline=label == BASELINE,
                        higher_is_better=True,
                    )
                )
            for label in engines:
                rs = done[(label, n)]
                result.add(
                    Measurement(
                        f"p95 latency, {n} concurrent client{'s' if n > 1 else ''}",
                        label,
                        "ms",
                        [r.p95_ms for r in rs],
                        baseline=label == BASELINE,
                    )
                )
        errors = {
            f"{label} at {n}": sum(r.errors for r in rs) for (label, n), rs in done.items() if any(r.errors for r in rs)
        }
        if errors:
            samples = sorted({s for rs in done.values() for r in rs for s in r.error_samples})[:3]
            result.notes.append(f"Errors during the load: {errors}; for example {samples}")
        else:
            result.notes.append("No query failed in any run.")
        result.notes.append(
            f"Each run: N clients loop `{DEFAULT_SQL}` as random demo users (alice, bob, carol) through "
            f"`run_query` for {duration:g} s; {runs} runs per cell, round-robin. PgBouncer: transaction mode, "
            f"server pool of {PGBOUNCER_POOL}. Latency includes the wait for a pooled connection."
        )
    finally:
        for engine in engines.values():
            monitor(engine).detach()
            await engine.dispose()
        if bouncer is not None:
            bouncer.close()
    return result


def run(ctx: SuiteContext) -> SuiteResult:
    return asyncio.run(measure(ctx))
