"""A remote project: per-cell wall time in round trips at 0, 10 and 50 ms added RTT, and round trips on the wire.

Everything goes through the remote-project rig (:mod:`workbench.local.remote_rig`): TLS, PgBouncer as
Supavisor in session and transaction mode, and a latency proxy per endpoint that also counts round trips.
Each method connects with the dashboard's connection string (``sslmode=require``) as a user would:

- ``%%sbquery`` with no identity, ``--role anon``, ``--as <user>``, ``--role service_role`` (a real IPython
  shell; the workbench's defaults);
- JupySQL ``%sql`` (psycopg, no identity): the peer;
- asyncpg by hand as the user (BEGIN + set_config in one message, the query, ROLLBACK);
- psycopg 3 pipeline mode as the user (BEGIN READ ONLY, set_config, the query, ROLLBACK in one flight);
- the FastAPI request with ``auth.rls`` (httpx's ASGI transport: no HTTP hop, only the database's).

The query is a 20-row read (``limit 20``) of the demo tasks, where RLS applies as the user.
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

from benchmarks.common import Measurement, SuiteContext, SuiteResult, interleaved, progress

QUERY = "select id, title from public.tasks order by id limit 20"
USER = "alice@example.com"
ALICE = "11111111-1111-4111-8111-111111111111"
JUPYSQL = "JupySQL %sql (psycopg, no identity)"
KINDS = {"direct": "direct", "session": "session pooler (TLS)", "transaction": "transaction pooler (TLS)"}


class _Loop:
    """An event loop in a thread for the async methods (the magics keep theirs in another thread)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def build(rig: Any, kind: str, shell: Any, bg: _Loop) -> tuple[dict[str, Callable[[], Any]], list[Callable[[], Any]]]:
    """The methods against one endpoint, and how to close what they opened."""
    import httpx
    import psycopg
    import sqlalchemy
    from fastapi import FastAPI
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import AsyncSession

    from workbench.backend.fastapi import SupabaseAuth
    from workbench.backend.tokens import access_token_claims, mint
    from workbench.core.impersonation import begin_script
    from workbench.notebook import session as core

    settings = rig.settings(kind, "require")
    wb = core.connect(settings)
    alice = wb.run(wb.resolve_identity(as_user=USER))
    url = rig.url(kind, "require")
    transaction = kind == "transaction"

    # JupySQL through its own SQLAlchemy engine (psycopg), as `%sql <engine>`
    jupysql_engine = sqlalchemy.create_engine(
        url.replace("postgresql://", "postgresql+psycopg://", 1), connect_args={"prepare_threshold": None}
    )
    shell.user_ns["remote_engine"] = jupysql_engine
    shell.run_line_magic("sql", "remote_engine")
    pg = psycopg.connect(url, autocommit=True, prepare_threshold=None)

    async def open_asyncpg() -> Any:
        import asyncpg

        return await asyncpg.connect(url, statement_cache_size=0 if transaction else 100)

    conn = bg.run(open_asyncpg())
    begin = begin_script(alice, readonly=True)

    async def by_hand() -> Any:
        await conn.execute(begin)
        try:
            return await conn.fetch(QUERY)
        finally:
            await conn.execute("rollback")

    def pipeline() -> Any:
        with pg.pipeline():
            pg.execute("begin read only")
            pg.execute(
                "select set_config('role', %s, true), set_config('request.jwt.claims', %s, true)",
                (alice.role, alice.claims_json()),
            )
            cur = pg.execute(QUERY)
            pg.execute("rollback")
        return cur.fetchall()

    assert settings.jwt_secret is not None
    auth = SupabaseAuth.from_settings(settings)
    app = FastAPI()

    @app.get("/tasks")
    async def tasks(db: AsyncSession = auth.rls) -> int:
        return len((await db.execute(text(QUERY))).all())

    token = mint(
        access_token_claims(ALICE, email=USER, iss="remote-rig"), secret=settings.jwt_secret.get_secret_value()
    )
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app")

    async def request() -> Any:
        resp = await client.get("/tasks", headers={"Authorization": f"Bearer {token}"})
        resp.raise_for_status()
        return resp.json()

    methods: dict[str, Callable[[], Any]] = {
        "%%sbquery, no identity": lambda: shell.run_cell_magic("sbquery", "", QUERY),
        "%%sbquery --role anon": lambda: shell.run_cell_magic("sbquery", "--role anon", QUERY),
        "%%sbquery --as user": lambda: shell.run_cell_magic("sbquery", f"--as {USER}", QUERY),
        "%%sbquery --role service_role": lambda: shell.run_cell_magic("sbquery", "--role service_role", QUERY),
        JUPYSQL: lambda: shell.run_line_magic("sql", QUERY),
        "asyncpg by hand as the user": lambda: bg.run(by_hand()),
        "psycopg pipeline as the user": pipeline,
        "FastAPI auth.rls request": lambda: bg.run(request()),
    }

    def close() -> None:
        bg.run(client.aclose())
        bg.run(auth.aclose())
        bg.run(conn.close())
        pg.close()
        jupysql_engine.dispose()
        core.current().close()

    return methods, [close]


def measure(ctx: SuiteContext) -> SuiteResult:
    from IPython.testing.globalipapp import start_ipython

    from workbench.local.remote_rig import RemoteRig
    from workbench.local.standin import LocalStandIn

    result = SuiteResult()
    if not ctx.pgbouncer:
        result.notes.append("PgBouncer is not installed: the remote suite needs it for the rig (skipped).")
        return result
    rtts = (0, 10) if ctx.quick else (0, 10, 50)
    runs = 2 if ctx.quick else 5
    shell = start_ipython()
    assert shell is not None
    shell.run_line_magic("load_ext", "workbench")
    shell.run_line_magic("load_ext", "sql")
    for option in ("SqlMagic.autopandas = True", "SqlMagic.feedback = 0", "SqlMagic.displaycon = False"):
        shell.run_line_magic("config", option)
    bg = _Loop()
    rig = RemoteRig(standin=LocalStandIn(ctx.data_dir)).start()
    first_cells: dict[str, float] = {}
    try:
        for kind, where in KINDS.items():
            progress(f"remote: {where}")
            methods, closers = build(rig, kind, shell, bg)
            try:
                for method in methods.values():  # warm: connected, caches filled, identity resolved
                    method()
                    method()
                proxy = rig.proxies[kind]
                for name, method in methods.items():
                    proxy.reset()
                    method()
                    result.add(
                        Measurement(
                            f"round trips on the wire per cell, {where}",
                            name,
                            "round trips",
                            [float(proxy.round_trips)],
                            baseline=name == JUPYSQL,
                        )
                    )
                for rtt in rtts:
                    rig.set_delay(rtt / 2)
                    times = interleaved(methods, runs, verbose=False)
                    for name, values in times.items():
                        if rtt:
                            values = [v * 1000 / rtt for v in values]
                            table, unit = f"wall time per cell in RTTs at {rtt} ms added RTT, {where}", "RTTs"
                        else:
                            values = [v * 1000 for v in values]
                            table, unit = f"wall time per cell at 0 ms added RTT, {where}", "ms"
                        result.add(Measurement(table, name, unit, values, baseline=name == JUPYSQL))
                    progress(f"remote: {where}, {rtt} ms RTT done")
                rig.set_delay(0)
            finally:
                for close in closers:
                    close()
        # the first cell after %sbconnect: TCP + TLS + authentication + the query, at the largest RTT
        rtt = rtts[-1]
        rig.set_delay(rtt / 2)
        from workbench.notebook import session as core

        for kind, where in KINDS.items():
            samples = []
            for _ in range(2 if ctx.quick else 3):
                core.connect(rig.settings(kind, "require"))
                started = time.perf_counter()
                shell.run_cell_magic("sbquery", "", QUERY)
                samples.append((time.perf_counter() - started) * 1000 / rtt)
                core.current().close()
            first_cells[where] = statistics.median(samples)
        rig.set_delay(0)
    finally:
        rig.stop()
        bg.close()
    result.notes.append(
        f"Query: `{QUERY}`. Each endpoint is reached through the rig's latency proxy with the dashboard's "
        "connection string plus `sslmode=require`; wall time is the median of "
        f"{runs} interleaved runs per method, divided by the added RTT (0 ms: milliseconds). Round trips: "
        "counted by the proxy on the wire (a client flight answered by a server flight), one warm cell."
    )
    result.notes.append(
        "First `%%sbquery` cell after connecting (TCP + TLS + authentication + query), median, in RTTs at "
        f"{rtt} ms: " + ", ".join(f"{w} {v:.1f}" for w, v in first_cells.items()) + "."
    )
    result.notes.append(
        "Targets of issue 13: `%%sbquery` at most 1.5 RTTs per cell, the FastAPI request at most 3. Engines "
        "for an encrypted/remote connection skip SQLAlchemy's 3-round-trip pre-ping (optimistic liveness check)."
    )
    return result


def run(ctx: SuiteContext) -> SuiteResult:
    return measure(ctx)
