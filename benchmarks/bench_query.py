"""Query → DataFrame: ``%%sbquery`` beside raw asyncpg, SQLAlchemy, psycopg + pandas and JupySQL.

One table of int, text, timestamptz, numeric, jsonb and uuid columns (the row shape of the first speed
baseline in ``shared/recipes.md``) is generated server-side once; every method reads the first N rows of
it over the same TCP connection target, as a DataFrame with jsonb decoded to Python objects. The table has
RLS on and a permissive policy for ``authenticated``, so ``%%sbquery --as <user>`` sees every row and pays
for the policy like a real user would.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import warnings
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

from benchmarks.common import Measurement, SuiteContext, SuiteResult, interleaved, progress, ratio

TABLE = "public.bench_rows"
USER = "alice@example.com"
BASELINE = "raw asyncpg fetch + DataFrame.from_records, jsonb decoded (json.loads)"
SBQ_USER = f"%%sbquery --as {USER}"
SBQ_SERVICE = "%%sbquery --role service_role"
JUPYSQL = "JupySQL %sql (psycopg, autopandas)"
DEFAULT_BUDGET_ROWS = 200_000  # sizes up to this fit %%sbquery's default result budget without --limit
GC_PATCH = "run_query as the user, cyclic GC paused (the proposed query.py change)"

CREATE = f"""
drop table if exists {TABLE};
create table {TABLE} as
  select g::bigint as id,
         'row number ' || g as label,
         timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second' as created_at,
         (g * 0.01)::numeric(12, 2) as amount,
         jsonb_build_object('n', g, 'tags', jsonb_build_array('a', 'b'), 'even', g % 2 = 0) as payload,
         gen_random_uuid() as uid
  from generate_series(1, $ROWS) g;
alter table {TABLE} add primary key (id);
alter table {TABLE} enable row level security;
create policy "benchmark rows are readable" on {TABLE} for select to authenticated using (true);
grant select on {TABLE} to authenticated, service_role;
analyze {TABLE};
"""


def plan(quick: bool) -> list[tuple[int, int, str]]:
    """(rows, runs, which methods) per table. "all" adds the informational variants (jsonb decoded with
    orjson, ``run_query`` without the magic, the GC-paused pair) where they explain the headline figures;
    at 1,000,000 rows one ``%%sbquery`` identity is enough. Sized to keep the suite under ~8 minutes."""
    if quick:
        return [(1_000, 2, "all")]
    full = [(1_000, 10, "all"), (100_000, 5, "core"), (200_000, 5, "all"), (1_000_000, 3, "lean")]
    only = os.environ.get("WORKBENCH_BENCH_QUERY_ROWS")  # e.g. "1000,100000,200000": the issue 12 sizes alone
    if only:
        wanted = {int(n) for n in only.replace("_", "").split(",") if n.strip()}
        unknown = wanted - {rows for rows, _, _ in full}
        if unknown:
            raise ValueError(
                f"WORKBENCH_BENCH_QUERY_ROWS: no table of {sorted(unknown)} rows; use 1000,100000,200000,1000000"
            )
        return [size for size in full if size[0] in wanted]
    return full


def title(rows: int) -> str:
    extra = " (the issue 3 comparison)" if rows == 200_000 else ""
    return f"query → DataFrame, {rows:,} rows{extra}"


def run(ctx: SuiteContext) -> SuiteResult:
    os.environ["PLOOMBER_STATS_ENABLED"] = "false"  # JupySQL's telemetry: no network calls from a benchmark
    warnings.filterwarnings("ignore", message=".*pandas only supports SQLAlchemy connectable.*")
    import asyncpg
    import orjson
    import pandas as pd
    import psycopg
    from IPython.testing.globalipapp import start_ipython
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    from workbench.core.identity import Identity
    from workbench.core.query import run_query
    from workbench.core.settings import Settings
    from workbench.notebook import session as core

    sizes = plan(ctx.quick)
    loop = asyncio.new_event_loop()
    biggest = max(rows for rows, _, _ in sizes)

    async def setup() -> tuple[Any, Any, Any]:
        admin = await asyncpg.connect(ctx.dsn)
        await admin.execute(CREATE.replace("$ROWS", str(biggest)))
        await admin.close()
        decoded = await asyncpg.connect(ctx.dsn)
        await decoded.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
        fast = await asyncpg.connect(ctx.dsn)
        await fast.set_type_codec(
            "jsonb", encoder=lambda v: orjson.dumps(v).decode(), decoder=orjson.loads, schema="pg_catalog"
        )
        return decoded, fast, create_async_engine(ctx.db_url)

    decoded, fast, sa_engine = loop.run_until_complete(setup())
    shell = start_ipython()
    assert shell is not None
    shell.run_line_magic("load_ext", "workbench")
    wb = core.connect(Settings(db_url=ctx.dsn, db_mode="direct"))
    alice = wb.run(wb.resolve_identity(as_user=USER))
    engine_bg = wb.run(_engine(wb))  # the workbench's engine on its background loop (what the magic uses)
    shell.run_line_magic("load_ext", "sql")
    for option in ("SqlMagic.autopandas = True", "SqlMagic.feedback = 0", "SqlMagic.displaycon = False"):
        shell.run_line_magic("config", option)
    shell.run_line_magic("sql", ctx.dsn.replace("postgresql://", "postgresql+psycopg://", 1))
    pg = psycopg.connect(ctx.dsn)

    result = SuiteResult()
    for rows, runs, which in sizes:
        sql = f"select * from {TABLE} limit {rows}"
        # past the default result budget (~200 MB held in memory, about 236,000 of these rows) the magic
        # stops and says so in its footer; asking for all rows takes --limit, as a user would
        limit = f" --limit {rows}" if rows > DEFAULT_BUDGET_ROWS else ""

        async def asyncpg_frame(conn: Any, sql: str = sql) -> pd.DataFrame:
            records = await conn.fetch(sql)
            return pd.DataFrame.from_records(records, columns=list(records[0].keys()))

        async def sqlalchemy_frame(sql: str = sql) -> pd.DataFrame:
            async with sa_engine.connect() as conn:
                res = await conn.execute(text(sql))
                return pd.DataFrame(res.fetchall(), columns=list(res.keys()))

        def psycopg_frame(sql: str = sql) -> pd.DataFrame:
            frame = pd.read_sql(sql, pg)
            pg.rollback()
            return frame

        def run_query_frame(sql: str = sql) -> Any:  # on the workbench's background loop, like the magic
            return wb.run(run_query(engine_bg, sql, identity=alice))

        def run_query_gc_paused(sql: str = sql) -> Any:  # what the proposed query.py patch does
            with gc_paused():
                return wb.run(run_query(engine_bg, sql, identity=alice))

        async def asyncpg_gc_paused(sql: str = sql) -> pd.DataFrame:
            with gc_paused():
                return await asyncpg_frame(decoded, sql)

        methods: dict[str, Callable[[], Any]] = {
            BASELINE: partial(asyncpg_frame, decoded),
            SBQ_USER: partial(shell.run_cell_magic, "sbquery", f"--as {USER}{limit}", sql),
            SBQ_SERVICE: partial(shell.run_cell_magic, "sbquery", f"--role service_role{limit}", sql),
            "SQLAlchemy async execute(text(...)) + DataFrame": sqlalchemy_frame,
            "psycopg 3 + pandas.read_sql": psycopg_frame,
            JUPYSQL: partial(shell.run_line_magic, "sql", sql),
        }
        if which == "lean":
            del methods[SBQ_SERVICE]
        if which == "all":
            methods |= {
                "raw asyncpg, jsonb decoded with orjson": partial(asyncpg_frame, fast),
                "workbench.core.query.run_query as the user (no magic)": run_query_frame,
                GC_PATCH: run_query_gc_paused,
                "raw asyncpg + json.loads, cyclic GC paused": asyncpg_gc_paused,
            }
        seen: dict[str, str] = {}

        def check(name: str, frame: Any, rows: int = rows, seen: dict[str, str] = seen) -> None:
            frame = getattr(frame, "frame", frame)
            if len(frame) != rows:
                raise AssertionError(f"{name} returned {len(frame)} rows, not {rows}")
            seen[name] = type(frame["payload"].iloc[0]).__name__

        progress(f"{rows:,} rows: {len(methods)} methods x {runs} runs")
        times = interleaved(methods, runs, loop=loop, warmup=1 if rows == sizes[0][0] else 0, check=check)
        for name, values in times.items():
            note = "" if seen.get(name) == "dict" else f"jsonb arrives as {seen.get(name)}"
            if limit and name in (SBQ_USER, SBQ_SERVICE):
                note = f"with `{limit.strip()}`: the default ~200 MB budget stops near 236,000 rows"
            result.add(
                Measurement(title(rows), name, "s", values, baseline=name == BASELINE, note=note, cpu=times.cpu[name])
            )
    result.notes += targets(result.measurements, ctx.quick)
    result.notes.append(f"Identity for `{SBQ_USER}`: {Identity.describe(alice)}; RLS on, one permissive policy.")
    if not ctx.quick:
        result.notes.append(
            "Most of the spread within a method is Python's cyclic garbage collector: whether a full collection "
            "starts while 10^5-10^6 rows become objects (compare the tight spreads of the GC-paused rows). A median "
            "of a few runs can land in either mode, so ratios between methods move from one run of the suite to the "
            "next, by up to about 2x at 100,000-200,000 rows; client CPU moves with them (the collector's work is CPU)."
        )

    pg.close()
    core.current().close()
    loop.run_until_complete(_close(decoded, fast, sa_engine))
    loop.close()
    return result


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector (as the proposed change to ``workbench/core/query.py`` does while
    rows become objects): building 10^5 dicts and records otherwise triggers full collections that walk
    every object created so far."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


async def _engine(wb: Any) -> Any:
    return wb.engine()


async def _close(*things: Any) -> None:
    for thing in things:
        if hasattr(thing, "dispose"):
            await thing.dispose()
        else:
            await thing.close()


def targets(measurements: list[Measurement], quick: bool) -> list[str]:
    """Targets of issues 3 and 7: ``%%sbquery`` as a user ≤ 1.15x raw asyncpg, ≥ 2.5x faster than JupySQL.
    Wall clock decides; the client-CPU ratio is given beside it (steadier on a shared machine)."""
    if quick:
        return ["Quick mode: tiny tables, targets not evaluated."]
    lines = []
    for rows in (100_000, 200_000):
        t = title(rows)
        r, r_cpu = ratio(measurements, t, SBQ_USER, BASELINE), ratio(measurements, t, SBQ_USER, BASELINE, cpu=True)
        j, j_cpu = ratio(measurements, t, JUPYSQL, SBQ_USER), ratio(measurements, t, JUPYSQL, SBQ_USER, cpu=True)
        if r is not None:
            verdict = "met" if r <= 1.15 else f"missed by {(r / 1.15 - 1) * 100:.0f}%"
            cpu = f"; client CPU {r_cpu:.2f}x" if r_cpu is not None else ""
            lines.append(
                f"{rows:,} rows: `{SBQ_USER}` takes **{r:.2f}x** raw asyncpg (target ≤ 1.15x: {verdict}{cpu})."
            )
        if j is not None:
            verdict = "met" if j >= 2.5 else f"missed, {(1 - j / 2.5) * 100:.0f}% short"
            cpu = f"; client CPU {j_cpu:.2f}x" if j_cpu is not None else ""
            lines.append(
                f"{rows:,} rows: `{SBQ_USER}` is **{j:.2f}x** faster than JupySQL (target ≥ 2.5x: {verdict}{cpu})."
            )
        patched, patched_j = ratio(measurements, t, GC_PATCH, BASELINE), ratio(measurements, t, JUPYSQL, GC_PATCH)
        if patched is not None and patched_j is not None:
            p_cpu = ratio(measurements, t, GC_PATCH, BASELINE, cpu=True)
            pj_cpu = ratio(measurements, t, JUPYSQL, GC_PATCH, cpu=True)
            lines.append(
                f"{rows:,} rows, with the proposed `query.py` change (cyclic GC paused while rows become objects): "
                f"{patched:.2f}x raw asyncpg and {patched_j:.2f}x faster than JupySQL "
                f"(client CPU {p_cpu or 0:.2f}x and {pj_cpu or 0:.2f}x)."
            )
    return lines
