"""Facts about a database that a fault or a refused write must not change, and ways to wait for a backend.

:func:`snapshot` reads a count and an md5 of every row of every table in the ``public``, ``auth`` and
``storage`` schemas (plus sequence positions and large objects), so "nothing lost, nothing duplicated,
nothing changed" is one comparison of two snapshots.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import asyncpg

SCHEMAS = ("public", "auth", "storage")

# Explicit text templating, named as such: the table name comes from the catalog, quoted by format('%I').
_ROWS_SQL = "select count(*) as n, md5(coalesce(string_agg(t::text, ',' order by t::text), '')) as md5 from {} t"


@dataclass(frozen=True)
class Snapshot:
    """Rows (count, md5) per table, sequence positions, large-object count."""

    tables: dict[str, tuple[int, str]]
    sequences: dict[str, int]
    large_objects: int

    def differences(self, other: Snapshot, *, sequences: bool = True) -> list[str]:
        """What changed from ``self`` to ``other``, one line per table or sequence. After a crash,
        PostgreSQL's sequences legitimately jump ahead (it logs 32 values in advance): ``sequences=False``."""
        out: list[str] = []
        for name in sorted(set(self.tables) | set(other.tables)):
            before, after = self.tables.get(name), other.tables.get(name)
            if before != after:
                out.append(f"table {name}: {before} -> {after}")
        for name in sorted(set(self.sequences) | set(other.sequences)) if sequences else []:
            before_seq, after_seq = self.sequences.get(name), other.sequences.get(name)
            if before_seq != after_seq:
                out.append(f"sequence {name}: {before_seq} -> {after_seq}")
        if self.large_objects != other.large_objects:
            out.append(f"large objects: {self.large_objects} -> {other.large_objects}")
        return out


async def snapshot(conn: asyncpg.Connection, schemas: Sequence[str] = SCHEMAS) -> Snapshot:
    """Count and checksum every table (and read every sequence) in ``schemas``, in one snapshot."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        tables = await conn.fetch(
            """select format('%I.%I', n.nspname, c.relname) as name
               from pg_class c join pg_namespace n on n.oid = c.relnamespace
               where n.nspname = any($1::text[]) and c.relkind in ('r', 'p', 'm') and c.relispopulated
               order by 1""",
            list(schemas),
        )
        rows: dict[str, tuple[int, str]] = {}
        for record in tables:
            name = record["name"]
            got = await conn.fetchrow(_ROWS_SQL.format(name))
            assert got is not None
            rows[name] = (int(got["n"]), str(got["md5"]))
        seqs = await conn.fetch(
            """select format('%I.%I', schemaname, sequencename) as name, coalesce(last_value, 0) as v
               from pg_sequences where schemaname = any($1::text[]) order by 1""",
            list(schemas),
        )
        sequences = {r["name"]: int(r["v"]) for r in seqs}
        large = int(await conn.fetchval("select count(*) from pg_largeobject_metadata"))
    return Snapshot(rows, sequences, large)


async def table_digest(conn: asyncpg.Connection, table: str) -> tuple[int, str]:
    """(count, md5 of all rows) of one table; ``table`` is a trusted, already quoted name."""
    got = await conn.fetchrow(_ROWS_SQL.format(table))
    assert got is not None
    return int(got["n"]), str(got["md5"])


async def wait_for(
    condition: Callable[[], Awaitable[bool]], timeout: float = 30, what: str = "condition", interval: float = 0.02
) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` seconds saying what was awaited."""
    deadline = time.monotonic() + timeout
    while True:
        if await condition():
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout}s")
        await asyncio.sleep(interval)  # polling a condition, not a fixed wait


async def active_backends(dsn: str, marker: str) -> list[int]:
    """Pids of backends now running a statement whose text contains ``marker``."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "select pid from pg_stat_activity where state = 'active' and pid <> pg_backend_pid() "
            "and strpos(query, $1) > 0",
            marker,
        )
        return [int(r["pid"]) for r in rows]
    finally:
        await conn.close()


async def terminate(dsn: str, pids: Sequence[int]) -> int:
    """``pg_terminate_backend`` each pid; returns how many were terminated."""
    conn = await asyncpg.connect(dsn)
    try:
        done = await conn.fetchval(
            "select count(*) filter (where pg_terminate_backend(p)) from unnest($1::int[]) p", list(pids)
        )
        return int(done)
    finally:
        await conn.close()


async def wait_gone(dsn: str, marker: str, timeout: float = 30) -> None:
    """Wait until no backend runs a statement containing ``marker``."""

    async def gone() -> bool:
        return not await active_backends(dsn, marker)

    await wait_for(gone, timeout, f"the end of every statement marked {marker}")


@dataclass
class BackendKiller:
    """From its own thread, ``pg_terminate_backend`` the first backend seen running a statement that
    contains ``marker``: a fault injected mid-statement, whatever the caller's thread is blocked on."""

    dsn: str
    marker: str
    timeout: float = 30
    killed: list[int] = field(default_factory=list)
    error: BaseException | None = None
    _thread: threading.Thread | None = None

    def start(self) -> BackendKiller:
        self._thread = threading.Thread(target=self._run, name=f"killer-{self.marker}", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        async def hunt() -> None:
            pids: list[int] = []

            async def seen() -> bool:
                pids[:] = await active_backends(self.dsn, self.marker)
                return bool(pids)

            await wait_for(seen, self.timeout, f"a statement marked {self.marker}")
            await terminate(self.dsn, pids)
            self.killed.extend(pids)

        try:
            asyncio.run(hunt())
        except BaseException as exc:  # reported to the test by join()
            self.error = exc

    def join(self) -> list[int]:
        assert self._thread is not None
        self._thread.join(self.timeout + 10)
        if self.error is not None:
            raise self.error
        return self.killed


@contextlib.asynccontextmanager
async def connection(dsn: str):  # type: ignore[no-untyped-def]
    """A plain asyncpg connection, closed afterwards."""
    conn = await asyncpg.connect(dsn)
    try:
        yield conn
    finally:
        await conn.close()
