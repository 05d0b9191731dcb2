"""A load driver: N concurrent clients running impersonated queries for a bounded time against an engine.

Each client picks a random identity (the demo users by default) for every query and runs it through
:func:`workbench.core.query.run_query`, the same path as ``%%sbquery``: the transaction, the identity and RLS
are all in the measured time, and so is the wait for a pooled connection. :func:`sweep` runs the same load
at several client counts against several :class:`LoadTarget` s (direct or through a transaction pooler,
NullPool or a small pool) and :func:`plot` draws throughput and latency percentiles against N.
"""

from __future__ import annotations

import asyncio
import math
import random
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from workbench.core.engine import EngineOptions, create_engine
from workbench.core.identity import Identity, user_identity
from workbench.core.pool import PoolStats, monitor
from workbench.core.query import run_query
from workbench.core.settings import ConnectionMode

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure
    from sqlalchemy.ext.asyncio import AsyncEngine

# What a typical API request does under RLS: a user's own tasks, newest first.
DEFAULT_SQL = "select id, title, status, due_at from public.tasks where owner_id = auth.uid() order by id desc limit 20"


class LoadError(ValueError):
    """Bad arguments to the load driver."""


@dataclass(frozen=True)
class LoadResult:
    """One load run: ``clients`` concurrent clients for ``duration_s`` seconds against one target."""

    label: str
    clients: int
    duration_s: float
    queries: int
    errors: int
    throughput_qps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    error_samples: tuple[str, ...] = ()
    pool: PoolStats | None = None

    def as_row(self) -> dict[str, Any]:
        """A flat dict (for a DataFrame or JSON); pool figures prefixed ``pool_``."""
        row = {k: v for k, v in asdict(self).items() if k not in {"pool", "error_samples"}}
        if self.pool is not None:
            p = self.pool
            row |= {
                "pool_opened": p.opened,
                "pool_max_checked_out": p.max_checked_out,
                "pool_max_waiting": p.max_waiting,
                "pool_mean_wait_ms": round(p.mean_wait_ms, 3),
                "pool_errors": p.errors,
            }
        return row


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (0 for none)."""
    if not sorted_values:
        return 0.0
    rank = max(1, min(len(sorted_values), math.ceil(q / 100 * len(sorted_values))))
    return float(sorted_values[rank - 1])


async def demo_identities(engine: AsyncEngine, emails: Sequence[str] | None = None) -> list[Identity]:
    """The demo users (alice, bob, carol) as identities, resolved from ``auth.users``."""
    from workbench.local.demo import demo_users

    wanted = list(emails) if emails is not None else [u["email"] for u in demo_users()]
    async with engine.connect() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        assert raw is not None
        identities = [await user_identity(raw, email) for email in wanted]
        await conn.rollback()
    return identities


async def run_load(
    engine: AsyncEngine,
    clients: int,
    *,
    duration: float = 2.0,
    sql: str = DEFAULT_SQL,
    identities: Sequence[Identity] | None = None,
    label: str = "",
    seed: int | None = None,
) -> LoadResult:
    """Run ``clients`` concurrent clients, each looping ``sql`` as a random identity, for ``duration`` s.

    Latency is measured per query from the request for a connection to the rolled-back transaction's
    end; queries still running at the deadline finish and count. Errors are counted, not raised. The
    engine's :func:`~workbench.core.pool.monitor` is reset first, so its figures describe this run.
    """
    if clients < 1:
        raise LoadError(f"clients must be at least 1, not {clients}.")
    if duration <= 0:
        raise LoadError(f"duration must be positive seconds, not {duration}.")
    people = list(identities) if identities is not None else await demo_identities(engine)
    if not people:
        raise LoadError("No identities to run as: pass identities=[...] (for example Identity.anon()).")
    mon = monitor(engine)
    mon.reset()
    latencies: list[float] = []
    errors: list[str] = []
    rng = random.Random(seed)
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + duration

    async def client() -> None:
        while loop.time() < deadline:
            identity = rng.choice(people)
            begun = time.perf_counter()
            try:
                await run_query(engine, sql, identity=identity)
            except Exception as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                errors.append(f"{type(exc).__name__}: {first}"[:160])
                await asyncio.sleep(0)  # let others run even when every query fails fast
                continue
            latencies.append((time.perf_counter() - begun) * 1000)

    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = loop.time() - started
    ordered = sorted(latencies)
    return LoadResult(
        label=label or _describe(engine),
        clients=clients,
        duration_s=round(elapsed, 3),
        queries=len(ordered),
        errors=len(errors),
        throughput_qps=len(ordered) / elapsed if elapsed > 0 else 0.0,
        p50_ms=percentile(ordered, 50),
        p95_ms=percentile(ordered, 95),
        p99_ms=percentile(ordered, 99),
        max_ms=ordered[-1] if ordered else 0.0,
        mean_ms=statistics.fmean(ordered) if ordered else 0.0,
        error_samples=tuple(sorted(set(errors)))[:5],
        pool=mon.snapshot(),
    )


def _describe(engine: AsyncEngine) -> str:
    from workbench.core.engine import engine_mode

    return f"{engine_mode(engine).value}, {type(engine.pool).__name__}"


@dataclass(frozen=True)
class LoadTarget:
    """Where and how to connect for a load run: a URL, its connection mode, and the client-side pool."""

    label: str
    url: str = field(repr=False)
    mode: ConnectionMode = ConnectionMode.DIRECT
    null_pool: bool = False
    pool_size: int = 5
    max_overflow: int = 5
    pool_timeout: float = 30.0

    def engine(self) -> AsyncEngine:
        """A fresh engine for this target (dispose of it when done)."""
        options = EngineOptions(
            application_name="workbench-load",
            null_pool=self.null_pool,
            pool_size=self.pool_size,
            max_overflow=self.max_overflow,
            pool_timeout=self.pool_timeout,
        )
        return create_engine(self.url, self.mode, options)


async def sweep(
    targets: Sequence[LoadTarget],
    clients: Sequence[int] = (1, 10, 50),
    *,
    duration: float = 2.0,
    sql: str = DEFAULT_SQL,
    identities: Sequence[Identity] | None = None,
    warmup: float = 0.2,
) -> list[LoadResult]:
    """:func:`run_load` for every target at every client count; one engine per target, disposed after.

    A short warm-up before each run fills the pool so that runs compare steady states.
    """
    results: list[LoadResult] = []
    for target in targets:
        engine = target.engine()
        try:
            people = list(identities) if identities is not None else await demo_identities(engine)
            for n in clients:
                if warmup > 0:
                    await run_load(engine, n, duration=warmup, sql=sql, identities=people, label=target.label)
                results.append(
                    await run_load(engine, n, duration=duration, sql=sql, identities=people, label=target.label)
                )
        finally:
            monitor(engine).detach()
            await engine.dispose()
    return results


def results_frame(results: Sequence[LoadResult]) -> pd.DataFrame:
    """The results as a DataFrame, one row per run."""
    import pandas as pd

    return pd.DataFrame([r.as_row() for r in results])


def plot(results: Sequence[LoadResult], title: str = "Load against the stand-in") -> Figure:
    """Throughput and p50/p95 latency against the number of clients, one line per target."""
    from matplotlib.figure import Figure

    if not results:
        raise LoadError("Nothing to plot: run sweep() or run_load() first.")
    fig = Figure(figsize=(11, 4), layout="constrained")
    ax_tp, ax_lat = fig.subplots(1, 2)
    labels = list(dict.fromkeys(r.label for r in results))
    for index, label in enumerate(labels):
        runs = sorted((r for r in results if r.label == label), key=lambda r: r.clients)
        xs = [r.clients for r in runs]
        color = f"C{index}"
        ax_tp.plot(xs, [r.throughput_qps for r in runs], marker="o", color=color, label=label)
        ax_lat.plot(xs, [r.p95_ms for r in runs], marker="o", color=color, label=f"{label} p95")
        ax_lat.plot(xs, [r.p50_ms for r in runs], marker=".", linestyle="--", color=color, label=f"{label} p50")
    ax_tp.set(xlabel="concurrent clients", ylabel="queries per second", title="Throughput")
    ax_lat.set(xlabel="concurrent clients", ylabel="latency (ms)", title="Latency", yscale="log")
    for ax in (ax_tp, ax_lat):
        ax.set_xscale("log")
        ax.set_xticks(sorted({r.clients for r in results}))
        ax.get_xaxis().set_major_formatter("{x:.0f}")
        ax.grid(True, alpha=0.3)
    ax_tp.legend(fontsize=8)
    ax_lat.legend(fontsize=7, ncols=2)
    fig.suptitle(title)
    return fig
