"""Run a cell of SQL as an identity and get a DataFrame: the core behind ``%%sbquery``.

The fast path talks to the raw asyncpg connection under SQLAlchemy's pool: ``BEGIN`` and the identity
go in one simple-protocol message (one round trip), each statement is bound with ``$n`` parameters,
rows come back as asyncpg records (jsonb decoded by orjson) and become a DataFrame in one step.
Read-only queries run in a ``READ ONLY`` transaction that is always rolled back.

Trust boundary (issue 12): every statement of the cell reaches the server alone, through the extended
protocol, so PostgreSQL refuses a second command hidden from the splitter; the server's transaction status
is checked after each statement, so a statement that ended the transaction stops the cell with an error
saying what the server did; and the transaction ends in the same message as a session reset, so the
connection goes back to the pool as clean as a fresh one, or is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import html
import secrets
import sys
import threading
import time
import weakref
from collections.abc import Awaitable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import pandas as pd

from workbench.core.errors import Category, ClassifiedError, WorkbenchError, classify
from workbench.core.exceptions import WorkbenchUserError
from workbench.core.identity import Identity
from workbench.core.impersonation import (  # noqa: F401 (re-exported)
    CELL_MARKER,
    SESSION_DIRTY,
    SESSION_RESET,
    SESSION_RESET_POOLED,
    begin_script,
    clean_on_return,
    mark_clean,
    mark_used,
)
from workbench.core.pipeline import Hold, Pipeline, Silent, pipeline_for
from workbench.core.sqltext import (
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
_INT_TYPES = {"int2", "int4", "int8", "oid"}
_CODEC_CONNECTIONS: weakref.WeakSet[Any] = weakref.WeakSet()  # asyncpg connections with our json codecs
T = TypeVar("T")


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


class TransactionEnded(QueryError):
    """A statement of the cell ended the cell's transaction (COMMIT, ROLLBACK, PREPARE TRANSACTION, ... AND
    CHAIN): the cell stopped there, and the message says what the server did."""

    def __init__(self, message: str, hint: str, *, committed: bool) -> None:
        self.committed = committed
        super().__init__(ClassifiedError(Category.UNKNOWN, message, hint))


async def _execute_one(conn: asyncpg.Connection, stmt: str, args: list[object]) -> str:
    """Run one statement through the extended protocol (Parse/Bind/Execute), whatever its arguments, and
    return its command tag. ``Connection.execute`` without arguments would use the simple-query protocol,
    which runs every command a string holds; one Parse holds one command or PostgreSQL refuses it ("cannot
    insert multiple commands into a prepared statement"). The statement cache applies as for a fetch: a
    cached statement costs one round trip, and with the cache off (poolers) the unnamed statement is used."""
    _, status, _ = await conn._execute(stmt, args, 0, None, return_status=True)
    return status.decode() if isinstance(status, bytes) else str(status or "")


async def _check_transaction(
    conn: asyncpg.Connection,
    status: str,
    index: int,
    stmt: str,
    *,
    marker: str,
    write: bool,
    in_transaction: bool | None = None,
) -> None:
    """Stop the cell if statement ``index`` ended its transaction, judged by what the server reports: the
    transaction status of ReadyForQuery, the command tag, and (for a ROLLBACK tag inside a transaction, which
    is either ROLLBACK TO SAVEPOINT or ROLLBACK AND CHAIN) whether the transaction-local marker survived."""
    tag = status.strip().upper()  # exact tags: SQL PREPARE's tag is "PREPARE", a statement like any other
    if in_transaction is None:
        in_transaction = conn.is_in_transaction()
    if in_transaction and tag not in ("COMMIT", "ROLLBACK", "PREPARE TRANSACTION"):
        return
    if in_transaction and tag == "ROLLBACK":
        same = await conn.fetchval(f"select pg_catalog.current_setting('{CELL_MARKER}', true) = $1", marker)
        if same:
            return  # ROLLBACK TO SAVEPOINT: our identity was set before any savepoint, so it is intact
    where = f"Statement {index + 1} of the cell ({_snippet(stmt)!r})"
    if tag == "PREPARE TRANSACTION":
        raise TransactionEnded(
            f"{where} prepared the cell's transaction for two-phase commit (PREPARE TRANSACTION); nothing was "
            "committed, but the prepared transaction keeps its locks until ROLLBACK PREPARED. The cell stopped "
            "there.",
            _NO_TRANSACTION_CONTROL,
            committed=False,
        )
    if tag == "COMMIT":
        what = (
            "COMMITTED the cell's transaction: the statements before it are saved"
            if write
            else "committed the cell's read-only transaction (nothing could be written in it)"
        )
    elif tag == "ROLLBACK":
        what = "rolled back the cell's transaction"
    else:
        what = f"ended the cell's transaction (the server answered {status!r})"
    chained = " and started a new one without the cell's identity" if in_transaction else ""
    raise TransactionEnded(
        f"{where} {what}{chained}. The cell stopped there: no later statement ran, and whatever was still "
        "open was rolled back.",
        _NO_TRANSACTION_CONTROL,
        committed=tag == "COMMIT" and write,
    )


_NO_TRANSACTION_CONTROL = (
    "remove the transaction control from the cell: each cell is already one transaction, read-only and rolled "
    "back unless --write commits it."
)


def _snippet(stmt: str, width: int = 60) -> str:
    flat = " ".join(stmt.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


async def _end_cell(conn: asyncpg.Connection, ending: str, *, pooled: bool) -> BaseException | None:
    """End the transaction (``commit`` or ``rollback``) and reset the session in one message. On failure
    the connection is closed (a connection whose state is unknown is never reused) and the error returned."""
    try:
        await conn.execute(f"{ending}; {SESSION_RESET_POOLED if pooled else SESSION_RESET}")
    except Exception as exc:
        with contextlib.suppress(Exception):
            conn.terminate()
        return exc
    mark_clean(conn)
    return None


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

    Every statement of the cell goes through the extended protocol, alone (PostgreSQL refuses a second
    command in it), and after each one the server's transaction status is checked: a statement that ended
    the transaction stops the cell with :class:`TransactionEnded`. The transaction ends in the same message
    as :data:`SESSION_RESET`, so the connection is as clean as a fresh one, or closed.

    Round trips (issue 13): ``BEGIN`` + identity ride in the same write as the first statement, and a
    read-only cell's ``ROLLBACK`` + reset in the same write as its last query (see
    :mod:`workbench.core.pipeline`): a single-query cell is one flight when its statement is cached (one
    more to prepare it, always behind a transaction pooler). A result larger than :data:`FLIGHT_ROWS`
    rows (or bytes) is fetched again the bounded way, in a second transaction.

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
    run = _Cell(conn, identity, planned, write, limit, explain, statement_timeout_ms, pooler_safe, max_bytes)
    outcome = await run.go(pipelined=True)
    if outcome is None:  # more rows than one flight carries: again, the bounded way
        outcome = await run.go(pipelined=False)
        assert outcome is not None
    return outcome


FLIGHT_ROWS = 2048  # rows a pipelined read-only cell takes in its one flight; more: fetched again, bounded
FLIGHT_BYTES = 16 * 1024 * 1024  # wire bytes of rows in that flight (rows past it are dropped, not decoded)
DESCRIBED_STATEMENTS = 100  # descriptions kept per connection behind a transaction pooler (statement cache off)


@dataclass
class _Cell:
    """One run of a planned cell on a connection (see :func:`run_on_connection`)."""

    conn: asyncpg.Connection
    identity: Identity
    planned: list[tuple[str, list[object], str]]
    write: bool
    limit: int | None
    explain: bool
    statement_timeout_ms: int | None
    pooler_safe: bool
    max_bytes: int
    flight_ended: bool = False  # the pipelined ending ran (the transaction is over), even if a statement failed

    async def go(self, *, pipelined: bool) -> QueryOutcome | None:
        """The outcome, or None when the pipelined flight could not carry the whole result (nothing was
        written: the cell is read-only and already rolled back)."""
        conn, planned, write = self.conn, self.planned, self.write
        max_rows = self.limit if self.limit is not None else DEFAULT_MAX_ROWS
        mark_used(conn)
        started = time.perf_counter()
        readonly = not write  # --explain --write: EXPLAIN ANALYZE the write, then roll it back
        marker = secrets.token_hex(8)
        begin = begin_script(
            self.identity, readonly=readonly, statement_timeout_ms=self.statement_timeout_ms, cell_marker=marker
        )
        pipe = pipeline_for(conn) if pipelined else None
        if pipe is not None and pipe.pending:
            pipe = None
        if pipe is not None and write and len(planned) == 1 and planned[0][2] == "query":
            # a --write cell's query is read through a portal, which asyncpg opens only once it has seen the
            # transaction begin: send BEGIN on its own
            pipe = None
        ending = _ending(self.pooler_safe)
        ended = False
        prologue: Silent | None = None
        try:
            if pipe is not None:
                prologue = pipe.prefix(begin)  # sent with the first statement's first message
            else:
                await conn.execute(begin)
            status = ""
            frame = pd.DataFrame()
            truncated = False
            for index, (stmt, args, kind) in enumerate(planned):
                last = index == len(planned) - 1
                if not last or kind != "query":
                    status = await _with_prologue(prologue, _execute_one(conn, stmt, args))
                    await _check_transaction(conn, status, index, stmt, marker=marker, write=write)
                    continue
                if pipe is not None and not write:
                    records, status_bytes, completed, prepared, hold, epilogue = await self._flight(
                        pipe, prologue, stmt, args, ending, min(max_rows, FLIGHT_ROWS)
                    )
                    ended = True
                    if hold.overflow or hold.stale or (not completed and max_rows > FLIGHT_ROWS):
                        self._close_if_dirty(epilogue)
                        return None
                    with _gc_paused():
                        truncated = len(records) > max_rows
                        frame = _frame(records[:max_rows], prepared._get_attributes())
                    status = status_bytes.decode() if isinstance(status_bytes, bytes) else str(status_bytes or "")
                    if hold.status != "T":  # a query cannot end the transaction; checked all the same
                        await _check_transaction(
                            conn, "ROLLBACK", index, stmt, marker=marker, write=write, in_transaction=False
                        )
                    failure = self._close_if_dirty(epilogue)
                    if failure is not None and SESSION_DIRTY not in str(failure):
                        raise QueryError(classify(failure, "rollback")) from failure
                    return self._outcome(frame, started, status, truncated, committed=False)
                # A portal fetch bounded by max_rows + 1: memory stays bounded whatever the result size, and
                # asyncpg's statement cache still applies (no Parse round trip when the statement is cached).
                attributes = None
                if self.pooler_safe:  # unnamed statement: nothing left on a server connection shared by a pooler
                    prepared_stmt = await _with_prologue(prologue, conn.prepare(stmt))
                    attributes = prepared_stmt.get_attributes()
                    cursor = await prepared_stmt.cursor(*args)
                else:
                    cursor = await _with_prologue(prologue, conn.cursor(stmt, *args))
                with _gc_paused():
                    records, truncated = await _fetch_bounded(
                        cursor, max_rows, None if self.limit is not None else self.max_bytes
                    )
                    if not records and attributes is None:
                        attributes = (await conn.prepare(stmt)).get_attributes()
                    frame = _frame(records, attributes)
                if not conn.is_in_transaction():  # a portal cannot end it; checked all the same
                    await _check_transaction(conn, "ROLLBACK", index, stmt, marker=marker, write=write)
            commit = write and not self.explain
            ended = True
            # One message: end the transaction, then reset the session (SESSION_RESET) before the connection
            # goes back to the pool; if that fails the connection is closed instead.
            failure = await _end_cell(conn, "commit" if commit else "rollback", pooled=self.pooler_safe)
            if failure is not None and SESSION_DIRTY not in str(failure):
                # The COMMIT itself failed (a deferred constraint, a lost connection): nothing was saved.
                raise QueryError(classify(failure, "commit" if commit else "rollback")) from failure
            return self._outcome(frame, started, status, truncated, committed=commit)
        finally:
            if not ended and not self.flight_ended and not conn.is_closed():
                # Roll back whatever is open (a warning only when a statement already ended the transaction),
                # then reset the session; shielded so a cancellation cannot leave it half done.
                with contextlib.suppress(Exception):
                    await asyncio.shield(_end_cell(conn, "rollback", pooled=self.pooler_safe))

    async def _flight(
        self, pipe: Pipeline, prologue: Silent | None, stmt: str, args: list[object], ending: str, rows: int
    ) -> tuple[list[Any], Any, bool, Any, Hold, Silent]:
        """The cell's last query in one write with the ending (and, if it is the first statement, the
        prologue): at most ``rows + 1`` rows through the unnamed portal, then ROLLBACK + reset."""
        conn = self.conn
        parts: list[Any] = []
        known: Any = pipe.described.get(stmt) if self.pooler_safe else None

        async def executor(prepared: Any, timeout: float | None) -> Any:
            expect = None
            if prepared is known:  # parsed again with its Bind: its description must still hold
                prepared.mark_unprepared()
                expect = (
                    tuple(t.oid for t in prepared._get_parameters()),
                    tuple((a.name, a.type.oid) for a in prepared._get_attributes()),
                )
            hold, epilogue = pipe.trail(ending, FLIGHT_BYTES if self.limit is None else None, expect)
            parts[:] = [prepared, hold, epilogue]
            return await conn._protocol.bind_execute(prepared, args, "", rows + 1, True, timeout)

        try:
            with _gc_paused():
                if known is not None:
                    ran: Any = _pair(executor(known, None), known)
                else:
                    ran = conn._do_execute(stmt, executor, None, retry=False)
                (records, status, completed), _ = await _with_prologue(prologue, ran)
        except BaseException:
            if len(parts) == 3 and parts[2].done:  # the ending ran: the transaction is over
                self.flight_ended = True
                self._close_if_dirty(parts[2])
            else:
                pipe.discard_queued()
            if known is not None:
                pipe.described.pop(stmt, None)
            raise
        if self.pooler_safe:
            if parts[1].stale:
                pipe.described.pop(stmt, None)
            else:
                pipe.described[stmt] = parts[0]
                pipe.described.move_to_end(stmt)
                while len(pipe.described) > DESCRIBED_STATEMENTS:
                    pipe.described.popitem(last=False)
        prepared, hold, epilogue = parts
        return records, status, completed, prepared, hold, epilogue

    def _close_if_dirty(self, epilogue: Silent) -> BaseException | None:
        """After a pipelined ending: a connection whose rollback or reset failed is closed, never reused."""
        failure = epilogue.exception()
        if failure is None and epilogue.done:
            mark_clean(self.conn)
            return None
        with contextlib.suppress(Exception):
            self.conn.terminate()
        return failure

    def _outcome(
        self, frame: pd.DataFrame, started: float, status: str, truncated: bool, *, committed: bool
    ) -> QueryOutcome:
        explain_text = "\n".join(str(v) for v in frame.iloc[:, 0]) if self.explain and len(frame.columns) else None
        return QueryOutcome(
            frame=frame,
            identity=self.identity,
            elapsed=time.perf_counter() - started,
            statements=len(self.planned),
            status=status,
            truncated=truncated,
            limit=self.limit,
            explain=explain_text,
            committed=committed,
        )


async def _pair(op: Awaitable[T], statement: Any) -> tuple[T, Any]:
    """``op``'s result shaped like ``Connection._do_execute``'s (result, statement)."""
    return await op, statement


def _ending(pooled: bool) -> str:
    return f"rollback; {SESSION_RESET_POOLED if pooled else SESSION_RESET}"


def _raise_prologue(prologue: Silent | None) -> None:
    """The identity prologue failed (an unknown role, say): raise its error, not the "current transaction
    is aborted" the statement that rode with it got."""
    if prologue is not None and prologue.error is not None:
        failure = prologue.exception()
        assert failure is not None
        raise failure


async def _with_prologue(prologue: Silent | None, op: Awaitable[T]) -> T:
    try:
        result = await op
    except Exception:
        _raise_prologue(prologue)
        raise
    _raise_prologue(prologue)
    return result


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
    from workbench.core.engine import engine_mode
    from workbench.core.settings import ConnectionMode

    per_tx_timeout = None
    if engine_mode(engine) is ConnectionMode.TRANSACTION:
        per_tx_timeout = _engine_timeout(engine)
    try:
        async with engine.connect() as sa_conn:
            raw = await sa_conn.get_raw_connection()
            driver = raw.driver_connection
            assert driver is not None
            try:
                outcome = await run_on_connection(
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
                if driver.is_closed():  # closed because its session could not be reset: never reused
                    await sa_conn.invalidate()
                return outcome
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
        from workbench.core.identity import IdentityError
        from workbench.core.sqltext import MissingParameter, SQLSyntaxError

        if isinstance(exc, IdentityError | MissingParameter | SQLSyntaxError):
            raise
        raise QueryError(classify(exc, sql)) from exc


def _engine_timeout(engine: AsyncEngine) -> int | None:
    from workbench.core.engine import engine_statement_timeout

    return engine_statement_timeout(engine)
