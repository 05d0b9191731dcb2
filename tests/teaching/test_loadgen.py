"""The load driver against the stand-in, directly and through a real PgBouncer in transaction mode."""

from __future__ import annotations

import pytest

from workbench.core.engine import create_engine
from workbench.core.identity import Identity
from workbench.core.pool import monitor
from workbench.core.settings import ConnectionMode
from workbench.teaching.loadgen import (
    LoadError,
    LoadTarget,
    demo_identities,
    percentile,
    plot,
    results_frame,
    run_load,
    sweep,
)


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 95), percentile(values, 100)) == (50.0, 95.0, 100.0)
    assert percentile([7.0], 99) == 7.0 and percentile([], 50) == 0.0


async def test_a_load_run_measures_impersonated_queries(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        people = await demo_identities(engine)
        assert {p.claims["email"] for p in people if p.claims} == {
            "alice@example.com",
            "bob@example.com",
            "carol@example.com",
        }
        result = await run_load(engine, 4, duration=0.5, identities=people, label="direct", seed=1)
    finally:
        monitor(engine).detach()
        await engine.dispose()
    assert result.label == "direct" and result.clients == 4 and result.errors == 0
    assert result.queries > 4 and result.duration_s >= 0.5
    assert 0 < result.p50_ms <= result.p95_ms <= result.p99_ms <= result.max_ms
    assert result.throughput_qps == pytest.approx(result.queries / result.duration_s, rel=1e-3)
    assert result.pool is not None and 1 <= result.pool.max_checked_out <= 4
    assert result.pool.checkouts >= result.queries
    row = result.as_row()
    assert row["pool_max_checked_out"] == result.pool.max_checked_out and "pool" not in row


async def test_the_identity_is_applied_so_auth_uid_is_seen(db_url: str) -> None:
    engine = create_engine(db_url)
    needs_a_user = "select 1 / (auth.uid() is not null)::int as ok"  # division by zero without a sub claim
    try:
        people = await demo_identities(engine, ["bob@example.com"])
        refused = await run_load(engine, 2, duration=0.2, sql=needs_a_user, identities=[Identity.anon()])
        allowed = await run_load(engine, 2, duration=0.2, sql=needs_a_user, identities=people)
    finally:
        monitor(engine).detach()
        await engine.dispose()
    assert refused.queries == 0 and refused.errors > 0
    assert any("division by zero" in s for s in refused.error_samples), refused.error_samples
    assert allowed.errors == 0 and allowed.queries > 0


async def test_sweep_direct_and_through_pgbouncer(db_url: str, pgbouncer_factory) -> None:  # type: ignore[no-untyped-def]
    bouncer = pgbouncer_factory(pool_size=2)
    targets = [
        LoadTarget("direct, pool 2", db_url, pool_size=2, max_overflow=0),
        LoadTarget("pgbouncer, NullPool", bouncer.url, ConnectionMode.TRANSACTION, null_pool=True),
    ]
    results = await sweep(targets, clients=(1, 6), duration=0.3, warmup=0.05)
    assert [(r.label, r.clients) for r in results] == [
        ("direct, pool 2", 1),
        ("direct, pool 2", 6),
        ("pgbouncer, NullPool", 1),
        ("pgbouncer, NullPool", 6),
    ]
    assert all(r.errors == 0 and r.queries > 0 for r in results), [r.error_samples for r in results]
    by = {(r.label, r.clients): r for r in results}
    small = by[("direct, pool 2", 6)].pool
    assert small is not None and small.max_checked_out == 2 and small.max_waiting >= 1, "6 clients share 2"
    null = by[("pgbouncer, NullPool", 6)].pool
    assert null is not None and null.pool == "NullPool" and null.opened == null.checkouts
    frame = results_frame(results)
    assert list(frame["clients"]) == [1, 6, 1, 6] and "p95_ms" in frame.columns
    fig = plot(results)
    throughput, latency = fig.axes[:2]
    assert len(throughput.get_lines()) == 2 and len(latency.get_lines()) == 4
    assert "direct, pool 2" in repr(targets[0]) and bouncer.url not in repr(targets[1])


async def test_bad_arguments_say_what_to_pass(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        with pytest.raises(LoadError, match="at least 1"):
            await run_load(engine, 0, identities=[Identity.anon()])
        with pytest.raises(LoadError, match="positive"):
            await run_load(engine, 1, duration=0, identities=[Identity.anon()])
        with pytest.raises(LoadError, match="identities"):
            await run_load(engine, 1, identities=[])
    finally:
        await engine.dispose()
    with pytest.raises(LoadError, match="Nothing to plot"):
        plot([])
