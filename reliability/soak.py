"""Load held: mixed impersonated queries, ORM sessions and storage operations for a bounded time, through
PgBouncer in transaction mode, with zero errors and no growth in connections, tasks or memory.

``python -m reliability.soak --minutes 3`` starts its own local stand-in and PgBouncer (in a temporary
folder, or ``--dir``), soaks, prints the figures and exits non-zero when a bound is broken. The test suite
runs :func:`run_soak` for ~25 s against its session stand-in.

What is measured, after a warm-up (pools filled, codecs loaded): PostgreSQL client backends
(``pg_stat_activity``), asyncio tasks, the process's RSS and tracemalloc's traced memory; sampled every
second for the peak, and again after the workers stop.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import random
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import psutil

# Bounds a soak must hold, measured from the end of the warm-up to the end of the run.
BOUNDS = {
    "connection_growth": 2,  # client backends in pg_stat_activity
    "task_growth": 0,  # asyncio tasks once the workers have stopped
    "rss_growth_mb": 64,  # resident memory of this process
    "traced_growth_mb": 16,  # Python allocations still alive (tracemalloc)
}

ALICE = "alice@example.com"
BOB = "bob@example.com"
CAROL = "carol@example.com"


@dataclass
class SoakReport:
    """What one soak did and measured; :meth:`violations` compares it with :data:`BOUNDS`."""

    seconds: float
    operations: dict[str, int]
    errors: list[str]
    wrong_answers: list[str]
    connections: dict[str, int]
    tasks: dict[str, int]
    rss_mb: dict[str, float]
    traced_mb: dict[str, float]
    bounds: dict[str, float] = field(default_factory=lambda: dict(BOUNDS))

    @property
    def total(self) -> int:
        return sum(self.operations.values())

    def violations(self) -> list[str]:
        out = []
        if self.errors:
            out.append(f"{len(self.errors)} errors, first: {self.errors[0]}")
        if self.wrong_answers:
            out.append(f"{len(self.wrong_answers)} wrong answers, first: {self.wrong_answers[0]}")
        growth = {
            "connection_growth": self.connections["end"] - self.connections["start"],
            "task_growth": self.tasks["end"] - self.tasks["start"],
            "rss_growth_mb": self.rss_mb["end"] - self.rss_mb["start"],
            "traced_growth_mb": self.traced_mb["end"] - self.traced_mb["start"],
        }
        for name, value in growth.items():
            if value > self.bounds[name]:
                out.append(f"{name} {value:.1f} > bound {self.bounds[name]}")
        return out

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"total": self.total, "violations": self.violations()}

    def render(self) -> str:
        ops = ", ".join(f"{k} {v:,}" for k, v in sorted(self.operations.items()))
        lines = [
            f"soak: {self.seconds:.0f} s, {self.total:,} operations "
            f"({self.total / max(self.seconds, 1e-9):,.0f}/s): {ops}",
            f"errors {len(self.errors)}, wrong answers (identity or RLS) {len(self.wrong_answers)}",
            "connections (pg_stat_activity) start {start} / peak {peak} / end {end}".format(**self.connections),
            "asyncio tasks start {start} / peak {peak} / end {end}".format(**self.tasks),
            "RSS MB start {start:.0f} / peak {peak:.0f} / end {end:.0f}".format(**self.rss_mb),
            "tracemalloc MB start {start:.1f} / peak {peak:.1f} / end {end:.1f}".format(**self.traced_mb),
            f"bounds: {self.bounds}",
            "verdict: " + ("held" if not self.violations() else "BROKEN: " + "; ".join(self.violations())),
        ]
        return "\n".join(lines)


async def _client_backends(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(
            await conn.fetchval(
                "select count(*) from pg_stat_activity "
                "where backend_type = 'client backend' and pid <> pg_backend_pid()"
            )
        )
    finally:
        await conn.close()


def _rss_mb() -> float:
    return psutil.Process().memory_info().rss / 1e6


def _traced_mb() -> float:
    return tracemalloc.get_traced_memory()[0] / 1e6 if tracemalloc.is_tracing() else 0.0


async def run_soak(
    *,
    db_dsn: str,
    pooler_dsn: str,
    api_url: str,
    anon_key: str,
    service_role_key: str,
    jwt_secret: str,
    seconds: float,
    warmup: float = 3.0,
    db_workers: int = 8,
    storage_workers: int = 2,
    seed: int = 1,
) -> SoakReport:
    """Soak for ``seconds`` (after ``warmup``) through the PgBouncer at ``pooler_dsn``; see the module doc."""
    from sqlalchemy import text

    from workbench import storage as st
    from workbench.core.identity import Identity
    from workbench.core.settings import Settings
    from workbench.notebook.session import Workbench

    settings = Settings(
        db_url=pooler_dsn,
        db_mode="transaction",
        url=api_url,
        anon_key=anon_key,
        service_role_key=service_role_key,
        jwt_secret=jwt_secret,
    )
    wb = Workbench(settings)
    identities = {
        "anon": Identity.anon(),
        "service_role": Identity.service_role(),
        ALICE: await wb.resolve_identity(ALICE),
        BOB: await wb.resolve_identity(BOB),
        CAROL: await wb.resolve_identity(CAROL),
    }
    expected: dict[str, int] = {}
    for name, identity in identities.items():  # what RLS lets each one see, read once before the load
        frame = await wb.query_outcome("select count(*) as n from public.tasks", identity=identity)
        expected[name] = int(frame.frame["n"][0])
    users = {name: identities[name] for name in (ALICE, BOB)}
    clients = {name: await st.client_as(settings, identity) for name, identity in users.items()}
    run = uuid.uuid4().hex[:8]

    ops: Counter[str] = Counter()
    errors: list[str] = []
    wrong: list[str] = []
    stop = asyncio.Event()
    measuring = False

    def note(kind: str, exc: BaseException) -> None:
        errors.append(f"{kind}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300])

    async def db_worker(index: int) -> None:
        rnd = random.Random(seed * 1000 + index)
        while not stop.is_set():
            name = rnd.choice(list(identities))
            marker = uuid.uuid4().hex
            identity = identities[name].with_claims({"marker": marker})
            try:
                if rnd.random() < 0.7:
                    outcome = await wb.query_outcome(
                        "select count(*) as n, auth.jwt() ->> 'marker' as m from public.tasks", identity=identity
                    )
                    got = (int(outcome.frame["n"][0]), outcome.frame["m"][0])
                    kind = "query"
                else:
                    async with wb.session(identity) as session:
                        row = (
                            await session.execute(text("select count(*), auth.jwt() ->> 'marker' from public.tasks"))
                        ).one()
                        await session.commit()
                    got = (int(row[0]), row[1])
                    kind = "orm"
                if got != (expected[name], marker):
                    wrong.append(f"{kind} as {name}: expected {(expected[name], marker)}, got {got}")
                if measuring:
                    ops[kind] += 1
            except Exception as exc:
                note("db", exc)

    async def storage_worker(index: int) -> None:
        rnd = random.Random(seed * 2000 + index)
        n = 0
        while not stop.is_set():
            name = rnd.choice(list(users))
            client = clients[name]
            uid = str((users[name].claims or {})["sub"])
            folder = f"{uid}/soak-{run}-{index}"
            path = f"{folder}/{n % 5}.txt"
            payload = os.urandom(rnd.randint(10, 20_000))
            n += 1
            try:
                await st.upload(client, "documents", path, payload, content_type="text/plain", upsert=True)
                back = await st.download(client, "documents", path)
                if back != payload:
                    wrong.append(f"download as {name}: {len(back)} bytes back for {len(payload)} sent")
                listing = await st.list_folder(client, "documents", folder)
                if path.rsplit("/", 1)[1] not in {e.name for e in listing.entries}:
                    wrong.append(f"list as {name}: {path} missing")
                if measuring:
                    ops["storage"] += 3
            except Exception as exc:
                note("storage", exc)

    async def cleanup() -> None:
        for name, client in clients.items():
            uid = str((users[name].claims or {})["sub"])
            for index in range(storage_workers):
                folder = f"{uid}/soak-{run}-{index}"
                with contextlib.suppress(Exception):
                    listing = await st.list_folder(client, "documents", folder)
                    paths = [f"{folder}/{e.name}" for e in listing.entries]
                    if paths:
                        await st.delete(client, "documents", paths)

    workers = [asyncio.create_task(db_worker(i), name=f"soak-db-{i}") for i in range(db_workers)]
    workers += [asyncio.create_task(storage_worker(i), name=f"soak-storage-{i}") for i in range(storage_workers)]
    samples: dict[str, list[float]] = {"connections": [], "tasks": [], "rss": [], "traced": []}
    try:
        await asyncio.sleep(warmup)  # the warm-up period itself: pools fill, codecs and caches load
        gc.collect()
        tracemalloc.start()
        measuring = True
        tasks_start = len(asyncio.all_tasks()) - len(workers)
        start = {
            "connections": await _client_backends(db_dsn),
            "rss": _rss_mb(),
            "traced": _traced_mb(),
        }
        began = time.monotonic()
        while time.monotonic() - began < seconds:
            await asyncio.sleep(min(1.0, max(0.0, seconds - (time.monotonic() - began))))  # the sampling period
            samples["connections"].append(await _client_backends(db_dsn))
            samples["tasks"].append(len(asyncio.all_tasks()) - len(workers))
            samples["rss"].append(_rss_mb())
            samples["traced"].append(_traced_mb())
        elapsed = time.monotonic() - began
    finally:
        stop.set()
        await asyncio.gather(*workers, return_exceptions=True)
    await cleanup()
    gc.collect()
    end = {
        "connections": await _client_backends(db_dsn),
        "tasks": len(asyncio.all_tasks()),
        "rss": _rss_mb(),
        "traced": _traced_mb(),
    }
    tracemalloc.stop()
    for client in clients.values():
        with contextlib.suppress(Exception):
            await client.aclose()
    await wb.aclose()
    return SoakReport(
        seconds=elapsed,
        operations=dict(ops),
        errors=errors,
        wrong_answers=wrong,
        connections={
            "start": int(start["connections"]),
            "peak": int(max(samples["connections"], default=start["connections"])),
            "end": int(end["connections"]),
        },
        tasks={"start": tasks_start, "peak": int(max(samples["tasks"], default=tasks_start)), "end": int(end["tasks"])},
        rss_mb={"start": start["rss"], "peak": max(samples["rss"], default=start["rss"]), "end": end["rss"]},
        traced_mb={
            "start": start["traced"],
            "peak": max(samples["traced"], default=start["traced"]),
            "end": end["traced"],
        },
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Soak the workbench against a fresh local stand-in via PgBouncer.")
    parser.add_argument("--minutes", type=float, default=3.0, help="how long to soak (after a warm-up)")
    parser.add_argument("--dir", type=Path, default=None, help="stand-in data folder (default: a temporary one)")
    parser.add_argument("--pool-size", type=int, default=2, help="PgBouncer server connections")
    parser.add_argument("--json", type=Path, default=None, help="also write the report as JSON here")
    args = parser.parse_args(argv)
    os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")
    from workbench.local.pgbouncer import LocalPgBouncer, find_pgbouncer
    from workbench.local.standin import LocalStandIn
    from workbench.notebook.bridge import run_sync

    binary = find_pgbouncer()
    folder = args.dir or Path(tempfile.mkdtemp(prefix="wb-soak-")) / "local"
    standin = LocalStandIn(folder)
    status = standin.start()
    assert status.db_port is not None and status.api_url is not None
    bouncer = LocalPgBouncer.for_standin(standin, pool_size=args.pool_size, binary=binary).start()
    keys = standin.keys()
    try:
        report = run_sync(
            run_soak(
                db_dsn=standin.dsn(),
                pooler_dsn=bouncer.dsn,
                api_url=status.api_url,
                anon_key=keys.anon_key,
                service_role_key=keys.service_role_key,
                jwt_secret=keys.jwt_secret,
                seconds=args.minutes * 60,
            )
        )
    finally:
        bouncer.close()
        if args.dir is None:
            standin.stop()
    print(report.render())
    if args.json:
        args.json.write_text(json.dumps(report.as_dict(), indent=2))
    return 1 if report.violations() else 0


if __name__ == "__main__":
    sys.exit(main())
