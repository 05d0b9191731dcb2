"""Run a cell of SQL as an identity and get a DataFrame: the core behind ``%%sbquery``.

The fast path talks to the raw asyncpg connection under SQLAlchemy's pool: ``BEGIN`` and the identity
go in one simple-protocol message (one round trip), each statement is bound with ``$n`` parameters,
rows come back as asyncpg records (jsonb decoded by orjson) and become a DataFrame in one step.
Read-only queries run in a ``READ ONLY`` transaction that is always rolled back.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import html
import sys
import threading
import time
import weakref
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from workbench.errors import WorkbenchError, classify
from workbench.exceptions import WorkbenchUserError
from workbench.identity import Identity
from workbench.impersonation import begin_script
from workbench.sqltext import (
    bind_parameters,
    classify_statement,
    first_keyword,
    resolve_arguments,
    split_statements,
)

if TYPE_CHECKING:
    import asyncpg
    from sqlalchemy.ext.asyncio import AsyncEngine

DEFAULT_MAX_ROWS = 1_000_000
DEFAULT_MAX_BYTES = 200 * 1024 * 1024  # without --limit, stop near this much result data held in memory
FIRST_BATCH = 64  # rows fetched first to measure the row size against the byte budget
SESSION_CLEANUP = "reset all; select pg_advisory_unlock_all()"
_INT_TYPES = {"int2", "int4", "int8", "oid"}
_CODEC_CONNECTIONS: weakref.WeakSet[Any] = weakref.WeakSet()  # asyncpg connections with our json codecs


class QueryError(WorkbenchError):
    """A cell that cannot run as written (refused statement, missing variable, bad option)."""


class QueryUsageError(WorkbenchUserError, ValueError):
    """Bad input to the query layer itself, reported without a traceback."""


@dataclass
class QueryOutcome:
    """What one run produced: the last statement's rows (or its status), timing and who ran it."""

    frame: pd.DataFrame
    identity: Identity
    elapsed: float
    statements: int
    status: str = ""
    truncated: bool = False
    limit: int | None = None
    explain: str | None = None
    committed: bool = False
    notices: list[str] = field(default_factory=list)

    @property
    def footer(self) -> str:
        rows = len(self.frame)
        parts = [f"{rows:,} row{'s' if rows != 1 else ''}"]
        if self.truncated and self.limit is not None and rows == self.limit:
            parts.append(f"truncated at --limit {self.limit:,}: raise it, or page with LIMIT/OFFSET")
        elif self.truncated:
            parts.append(
                f"truncated: the default cap is {DEFAULT_MAX_ROWS:,} rows or ~{DEFAULT_MAX_BYTES >> 20} MB; "
                "pass --limit N for more, or page with LIMIT/OFFSET"
            )
        if self.status and not len(self.frame.columns):
            parts = [self.status]
        if rows == 0 and len(self.frame.columns) and self.identity.role not in (None, "service_role"):
            # No extra query: RLS may have hidden rows, and %sbwhy can say which policy did.
            parts[0] = f"0 rows visible to {self.identity.describe()}: if rows exist, `%sbwhy` explains why"
        parts.append(f"{self.elapsed * 1000:,.1f} ms")
        parts.append(f"as {self.identity.describe()}")
        parts.append("committed" if self.committed else "read-only, rolled back")
        return " · ".join(parts)


class ResultFrame(pd.DataFrame):
    """A DataFrame that displays with the query's footer (rows, time, identity). Operations on it
    return plain DataFrames."""

    _metadata = ["wb_footer", "wb_display_rows"]

    @property
    def _constructor(self) -> type[pd.DataFrame]:  # type: ignore[override]
        return pd.DataFrame

    def _repr_html_(self) -> str | None:
        footer = html.escape(getattr(self, "wb_footer", ""))
        if not len(self.columns):  # a command: its status is the whole story
            return f'<div class="wb-query-footer">{footer}</div>'
        rows = getattr(self, "wb_display_rows", 20)
        with pd.option_context("display.max_rows", rows, "display.min_rows", min(rows, 20)):
            table = pd.DataFrame(self)._repr_html_() or ""
        return f'{table}<div class="wb-query-footer" style="color:#666;font-size:90%">{footer}</div>'

    def __repr__(self) -> str:
        if not len(self.columns):
            return str(getattr(self, "wb_footer", ""))
        rows = getattr(self, "wb_display_rows", 20)
        with pd.option_context("display.max_rows", rows, "display.min_rows", min(rows, 20)):
            body = repr(pd.DataFrame(self))
        return f"{body}\n{getattr(self, 'wb_footer', '')}"


def result_frame(outcome: QueryOutcome, display_rows: int = 20) -> ResultFrame:
    frame = ResultFrame(outcome.frame)
    frame.wb_footer = outcome.footer
    frame.wb_display_rows = display_rows
    frame.attrs["workbench"] = {"identity": outcome.identity.describe(), "elapsed": outcome.elapsed}
    return frame


async def _prepare_codecs(conn: asyncpg.Connection) -> None:
    """Decode json/jsonb with orjson once per connection (asyncpg keeps codecs per connection)."""
    import orjson

    if conn in _CODEC_CONNECTIONS:
        return

    def dumps(value: Any) -> str:
        return orjson.dumps(value, default=str).decode()

    for name in ("json", "jsonb"):
        await conn.set_type_codec(name, encoder=dumps, decoder=orjson.loads, schema="pg_catalog")
    _CODEC_CONNECTIONS.add(conn)


def _frame(records: list[Any], attributes: Any = None) -> pd.DataFrame:
    """Records to a DataFrame in one step; integer and boolean columns holding NULLs stay exact
    (``Int64`` / ``boolean``) instead of turning into floats or objects."""
    if not records:
        names = _unique_names([a.name for a in attributes])
        return pd.DataFrame(
            {n: pd.Series(dtype=_empty_dtype(a.type.name)) for n, a in zip(names, attributes, strict=True)}
        )
    names = _unique_names(list(records[0].keys()))
    frame = pd.DataFrame.from_records(records, columns=names, coerce_float=False)
    for index, name in enumerate(names):
        kind = frame[name].dtype.kind
        if kind in "iub" or kind == "M":
            continue
        sample = next((r[index] for r in records if r[index] is not None), None)
        if isinstance(sample, bool):
            frame[name] = frame[name].astype("boolean")
        elif isinstance(sample, int):
            frame[name] = frame[name].astype("Int64")
    return frame


def _empty_dtype(type_name: str) -> Any:
    return {
        "int2": "Int64",
        "int4": "Int64",
        "int8": "Int64",
        "float4": "float64",
        "float8": "float64",
        "bool": "boolean",
        "text": "string",
        "varchar": "string",
        "timestamptz": "datetime64[us, UTC]",
        "timestamp": "datetime64[us]",
    }.get(type_name, object)


def _unique_names(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        if name in seen:
            seen[name] += 1
            out.append(f"{name}_{seen[name]}")
        else:
            seen[name] = 0
            out.append(name)
    return out


def plan_statements(sql: str, namespace: Mapping[str, object] | None) -> list[tuple[str, list[object], str]]:
    """Split a cell, refuse what must not run, bind ``:name`` variables: ``[(sql, args, kind)]``."""
    statements = split_statements(sql)
    if not statements:
        raise QueryUsageError("The cell has no SQL statement to run.")
    planned = []
    for stmt in statements:
        kind = classify_statement(stmt)
        if kind == "transaction_control":
            raise QueryUsageError(
                "Transaction control (BEGIN/COMMIT/ROLLBACK/SET TRANSACTION) is not allowed in a cell: every cell "
                "already runs in one transaction, read-only and rolled back by default. Use --write to commit."
            )
        if kind == "session_identity":
            raise QueryUsageError(
                "Session-level SET/RESET/SET ROLE/DISCARD would outlive the cell on a pooled connection. Use "
                "SET LOCAL for a setting, and --as/--role/--claims (or %sbimpersonate) to change identity."
            )
        keyword = first_keyword(stmt)
        if keyword == "COPY":
            raise QueryUsageError(
                "COPY is not run from a cell: COPY ... TO PROGRAM/file acts on the server even in a read-only "
                "transaction. Use SELECT (the result is a DataFrame) and pandas to write files, or psql's \\copy."
            )
        if keyword in {"PREPARE", "EXECUTE", "DEALLOCATE"}:
            raise QueryUsageError(
                f"{keyword} manages session-level prepared statements, which would outlive the cell on a pooled "
                "connection. Write the statement itself; notebook variables are bound as parameters with :name."
            )
        bound = bind_parameters(stmt)
        args = resolve_arguments(bound, namespace or {}) if bound.names else []
        planned.append((bound.sql, args, kind))
    return planned


def _estimate_bytes(records: list[Any]) -> int:
    """Rough bytes held per row, from a sample: the record and its values (one level into containers)."""
    sample = records[:: max(1, len(records) // 64)][:64]
    total = 0
    for record in sample:
        total += 56 + 8 * len(record)
        for value in record:
            total += sys.getsizeof(value)
            if isinstance(value, dict):
                total += sum(sys.getsizeof(k) + sys.getsizeof(v) for k, v in value.items())
            elif isinstance(value, list):
                total += sum(sys.getsizeof(v) for v in value)
    return total // max(1, len(sample))


class _GCPause:
    """Pause Python's cyclic garbage collector while rows become objects; re-entrant and thread-safe (the
    outermost exit restores the previous state).

    A result of 10^5 rows is 10^5 records plus every jsonb dict, all tracked by the collector: as they pile
    up, full collections keep walking everything created so far, which costs more than decoding the rows
    (200,000 rows: about 1.5 s -> 0.65 s of CPU here). Rows form no reference cycles, so there is nothing for
    the collector to find; reference counting frees memory as usual."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth = 0
        self._was_enabled = False

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if self._depth == 0:
                self._was_enabled = gc.isenabled()
                gc.disable()
            self._depth += 1
        try:
            yield
        finally:
            with self._lock:
                self._depth -= 1
                if self._depth == 0 and self._was_enabled:
                    gc.enable()


_gc_paused = _GCPause()


async def _fetch_bounded(cursor: Any, max_rows: int, max_bytes: int | None) -> tuple[list[Any], bool]:
    """At most ``max_rows`` rows, plus one to learn whether more were left. With a byte budget, a first small
    batch measures the row size and the rest is sized to stay near the budget. Returns (rows, truncated)."""
    cap = max_rows
    records = await cursor.fetch(min(FIRST_BATCH, cap + 1) if max_bytes is not None else cap + 1)
    if max_bytes is not None and len(records) == FIRST_BATCH <= cap:
        cap = min(cap, max(FIRST_BATCH, max_bytes // max(1, _estimate_bytes(records))))
        records += await cursor.fetch(cap + 1 - len(records))
    if len(records) > cap:
        return records[:cap], True
    return records, False


async def run_on_connection(
    conn: asyncpg.Connection,
    sql: str,
    *,
    identity: Identity | None = None,
    namespace: Mapping[str, object] | None = None,
    write: bool = False,
    limit: int | None = None,
    explain: bool = False,
    statement_timeout_ms: int | None = None,
    pooler_safe: bool = False,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> QueryOutcome:
    """Run every statement of ``sql`` in one transaction as ``identity``; the last one's rows are returned.

    ``pooler_safe`` (behind a transaction pooler, where the connection's statement cache is off) uses only
    the unnamed statement; otherwise asyncpg's statement cache saves the Parse round trip."""
    identity = identity or Identity.none()
    planned = plan_statements(sql, namespace)
    if explain:
        last_sql, last_args, _ = planned[-1]
        planned[-1] = (f"explain (analyze, buffers, verbose) {last_sql}", last_args, "query")
    max_rows = limit if limit is not None else DEFAULT_MAX_ROWS
    if max_rows < 0:
        raise QueryUsageError(f"--limit must be >= 0, not {max_rows}.")
    await _prepare_codecs(conn)
    started = time.perf_counter()
    readonly = not write  # --explain --write: EXPLAIN ANALYZE the write, then roll it back
    outcome: QueryOutcome | None = None
    try:
        await conn.execute(begin_script(identity, readonly=readonly, statement_timeout_ms=statement_timeout_ms))
        status = ""
        frame = pd.DataFrame()
        truncated = False
        for index, (stmt, args, kind) in enumerate(planned):
            last = index == len(planned) - 1
            if not last or kind != "query":
                status = await conn.execute(stmt, *args) if args else await conn.execute(stmt)
                continue
            # A portal fetch bounded by max_rows + 1: memory stays bounded whatever the result size, and
            # asyncpg's statement cache still applies (no Parse round trip when the statement is cached).
            attributes = None
            if pooler_safe:  # unnamed statement: nothing left on a server connection shared through a pooler
                prepared = await conn.prepare(stmt)
                attributes = prepared.get_attributes()
                cursor = await prepared.cursor(*args)
            else:
                cursor = await conn.cursor(stmt, *args)
            with _gc_paused():
                records, truncated = await _fetch_bounded(cursor, max_rows, None if limit is not None else max_bytes)
                if not records and attributes is None:
                    attributes = (await conn.prepare(stmt)).get_attributes()
                frame = _frame(records, attributes)
        commit = write and not explain
        # One message: end the transaction, then drop session state a statement may have left behind (a
        # session-level set_config or advisory lock) before the connection goes back to the pool.
        await conn.execute(f"{'commit' if commit else 'rollback'}; {SESSION_CLEANUP}")
        elapsed = time.perf_counter() - started
        explain_text = "\n".join(str(v) for v in frame.iloc[:, 0]) if explain and len(frame.columns) else None
        outcome = QueryOutcome(
            frame=frame,
            identity=identity,
            elapsed=elapsed,
            statements=len(planned),
            status=status,
            truncated=truncated,
            limit=limit,
            explain=explain_text,
            committed=commit,
        )
        return outcome
    finally:
        if outcome is None and not conn.is_closed() and conn.is_in_transaction():
            with contextlib.suppress(Exception):
                await asyncio.shield(conn.execute(f"rollback; {SESSION_CLEANUP}"))


async def run_query(
    engine: AsyncEngine,
    sql: str,
    *,
    identity: Identity | None = None,
    namespace: Mapping[str, object] | None = None,
    write: bool = False,
    limit: int | None = None,
    explain: bool = False,
) -> QueryOutcome:
    """:func:`run_on_connection` on a connection checked out of ``engine``'s pool; errors classified."""
    from workbench.engine import engine_mode
    from workbench.settings import ConnectionMode

    per_tx_timeout = None
    if engine_mode(engine) is ConnectionMode.TRANSACTION:
        per_tx_timeout = _engine_timeout(engine)
    try:
        async with engine.connect() as sa_conn:
            raw = await sa_conn.get_raw_connection()
            driver = raw.driver_connection
            assert driver is not None
            try:
                return await run_on_connection(
                    driver,
                    sql,
                    identity=identity,
                    namespace=namespace,
                    write=write,
                    limit=limit,
                    explain=explain,
                    statement_timeout_ms=per_tx_timeout,
                    pooler_safe=per_tx_timeout is not None,
                )
            except BaseException as exc:
                # Never hand a connection in an unknown state back to the pool. After a cancellation the
                # server may still be inside the BEGIN (and identity) whose answer never arrived, so the
                # connection is closed: the server then rolls back, and a pooler frees its server connection.
                cancelled = isinstance(exc, asyncio.CancelledError | KeyboardInterrupt)
                if cancelled or driver.is_closed() or driver.is_in_transaction():
                    await asyncio.shield(sa_conn.invalidate())
                raise
    except (QueryUsageError, asyncio.CancelledError, KeyboardInterrupt):
        raise
    except Exception as exc:
        if isinstance(exc, WorkbenchError):
            raise
        from workbench.identity import IdentityError
        from workbench.sqltext import MissingParameter, SQLSyntaxError

        if isinstance(exc, IdentityError | MissingParameter | SQLSyntaxError):
            raise
        raise QueryError(classify(exc, sql)) from exc


def _engine_timeout(engine: AsyncEngine) -> int | None:
    from workbench.engine import engine_statement_timeout

    return engine_statement_timeout(engine)
