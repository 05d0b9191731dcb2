"""One factory for the ``AsyncEngine`` of every Supabase connection mode, and a manager for its lifetime.

Transaction mode (Supavisor :6543, PgBouncer ``pool_mode=transaction``) hands each transaction to any
server connection, so named prepared statements break: asyncpg's statement cache must be off
(``statement_cache_size=0``: it then uses the unnamed statement) and SQLAlchemy's own per-connection
cache too (``prepared_statement_cache_size=0``). Session-level
settings do not survive there either, so statement timeout and ``jit`` are set per transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from workbench.core import tls
from workbench.core.settings import ConnectionMode, Settings, asyncpg_engine_url

if TYPE_CHECKING:
    from sqlalchemy.engine import URL


@dataclass(frozen=True)
class EngineOptions:
    """Knobs of :func:`create_engine`; the defaults suit a notebook or a long-lived API server."""

    application_name: str = "supabase-workbench"
    statement_timeout_ms: int = 60_000
    echo: bool = False
    pool_size: int = 5
    max_overflow: int = 5
    pool_recycle: int = 1800
    pool_timeout: float = 30
    # True: SQLAlchemy's ping (3 round trips per checkout with asyncpg); "optimistic": no round trip
    # (see _optimistic_liveness); "auto": optimistic for a remote project, SQLAlchemy's for a local one
    pre_ping: bool | str = "auto"
    null_pool: bool = False
    connect_args: dict[str, Any] = field(default_factory=dict)


def transaction_safe_connect_args() -> dict[str, Any]:
    """asyncpg arguments that work through a transaction pooler (checked against PgBouncer here).

    With the cache off and no name function, asyncpg prepares the *unnamed* statement, which lives
    only until the next Parse on the same server connection: nothing to clash, nothing left behind.
    """
    return {"statement_cache_size": 0}


def create_engine(
    target: Settings | URL | str,
    mode: ConnectionMode | str | None = None,
    options: EngineOptions | None = None,
) -> AsyncEngine:
    """Build the engine for ``target`` (settings, or a URL plus a mode, default direct)."""
    from sqlalchemy.engine import make_url

    opts = options or EngineOptions()
    if isinstance(target, Settings):
        url, tls_config = tls.for_url(target.database_url(), target.db_sslmode, target.db_sslrootcert)
        mode = ConnectionMode(mode) if mode is not None else target.mode
        if options is None:
            opts = EngineOptions(
                application_name=target.application_name, statement_timeout_ms=target.statement_timeout_ms
            )
    else:
        url = make_url(target) if isinstance(target, str) else target
        url, tls_config = tls.for_url(url.set(drivername="postgresql+asyncpg"))
        mode = ConnectionMode(mode) if mode is not None else ConnectionMode.DIRECT
    url = asyncpg_engine_url(url)  # other libpq-only parameters: a settings error, not a TypeError later

    connect_args: dict[str, Any] = {
        "server_settings": {"application_name": opts.application_name},
        "ssl": tls_config.asyncpg_ssl(),
    }
    if mode is ConnectionMode.TRANSACTION:
        connect_args |= transaction_safe_connect_args()
        url = url.update_query_dict({"prepared_statement_cache_size": "0"})
    else:
        connect_args["server_settings"] |= {"statement_timeout": str(opts.statement_timeout_ms), "jit": "off"}
    connect_args |= opts.connect_args

    if opts.pre_ping not in (True, False, OPTIMISTIC, AUTO):
        raise ValueError(
            f"EngineOptions.pre_ping must be True, False, {OPTIMISTIC!r} or {AUTO!r}, not {opts.pre_ping!r}"
        )
    pre_ping = opts.pre_ping
    if pre_ping == AUTO:
        pre_ping = OPTIMISTIC if looks_remote(tls_config) else True
    sqlalchemy_ping = pre_ping is True
    kwargs: dict[str, Any] = {"echo": opts.echo, "connect_args": connect_args, "pool_pre_ping": sqlalchemy_ping}
    if opts.null_pool:
        kwargs["poolclass"] = NullPool
    else:
        kwargs |= {
            "pool_size": opts.pool_size,
            "max_overflow": opts.max_overflow,
            "pool_recycle": opts.pool_recycle,
            "pool_timeout": opts.pool_timeout,
        }
    engine = create_async_engine(url, **kwargs)
    _MODES[engine.sync_engine] = mode
    _TIMEOUTS[engine.sync_engine] = opts.statement_timeout_ms
    _TLS[engine.sync_engine] = tls_config
    _explain_tls_failures(engine, tls_config)
    if pre_ping == OPTIMISTIC:
        _optimistic_liveness(engine)
    _roll_back_raw_transactions(engine)
    _start_transactions(engine, opts.statement_timeout_ms if mode is ConnectionMode.TRANSACTION else None)
    if mode is ConnectionMode.TRANSACTION:
        _reset_at_transaction_end(engine)
    return engine


def create_impersonation_engine(
    settings: Settings, mode: ConnectionMode | str | None = None, options: EngineOptions | None = None
) -> AsyncEngine | None:
    """The engine impersonated work logs in with: as the authenticator (``settings.impersonation_url()``),
    which can only switch into the API roles, so PostgreSQL refuses any other. None when the settings name
    no authenticator (a real project without ``SUPABASE_AUTHENTICATOR_PASSWORD``)."""
    url = settings.impersonation_url()
    if url is None:
        return None
    opts = options or EngineOptions(
        application_name=settings.application_name, statement_timeout_ms=settings.statement_timeout_ms
    )
    return create_engine(url, ConnectionMode(mode) if mode is not None else settings.mode, opts)


_MODES: weakref.WeakKeyDictionary[Engine, ConnectionMode] = weakref.WeakKeyDictionary()


_TIMEOUTS: weakref.WeakKeyDictionary[Engine, int] = weakref.WeakKeyDictionary()


_TLS: weakref.WeakKeyDictionary[Engine, tls.TLSConfig] = weakref.WeakKeyDictionary()


def engine_tls(engine: AsyncEngine) -> tls.TLSConfig | None:
    """The TLS decision an engine connects with (None for engines made elsewhere)."""
    return _TLS.get(engine.sync_engine)


def _explain_tls_failures(engine: AsyncEngine, config: tls.TLSConfig) -> None:
    """Connect ourselves (SQLAlchemy's documented ``do_connect`` hook) so that a failed TLS handshake
    surfaces as one :class:`workbench.core.tls.TLSError` naming the setting to change."""

    @event.listens_for(engine.sync_engine, "do_connect")
    def _connect(dialect: Any, record: Any, cargs: Any, cparams: dict[str, Any]) -> Any:
        try:
            return dialect.connect(*cargs, **cparams)
        except Exception as exc:
            explained = config.explain(exc)
            if explained is None:
                raise
            raise explained from None


OPTIMISTIC = "optimistic"
AUTO = "auto"


def looks_remote(config: tls.TLSConfig) -> bool:
    """A project across a network: a non-loopback host, or TLS required (what a pasted project URL
    says); there every round trip costs 20-200 ms. The local stand-in is neither."""
    return not tls.is_local_host(config.host) or config.mode in (
        tls.SSLMode.REQUIRE,
        tls.SSLMode.VERIFY_CA,
        tls.SSLMode.VERIFY_FULL,
    )


def _socket_readable(driver: Any) -> bool:
    """Has the server sent anything to this idle connection (a FATAL, a close, a TLS close_notify)?"""
    import select

    transport = getattr(driver, "_transport", None)
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None:
        return True
    try:
        readable, _, _ = select.select([sock.fileno()], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def _optimistic_liveness(engine: AsyncEngine) -> None:
    """Pre-ping without the round trips: SQLAlchemy's asyncpg ping is BEGIN, ``;``, ROLLBACK (three
    round trips per checkout, 150 ms at 50 ms RTT). An idle pooled connection should receive nothing;
    if the socket is closed or has something to read (the server's goodbye), ping with one simple-query
    message and discard the connection if that fails, which makes the pool connect a new one
    (SQLAlchemy's ``DisconnectionError`` recipe). A connection that is silently gone (no FIN) fails on
    first use and is invalidated by SQLAlchemy's own disconnect handling, as with no ping."""
    from sqlalchemy.exc import DisconnectionError
    from sqlalchemy.util import await_only

    @event.listens_for(engine.sync_engine, "checkout")
    def _checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        driver = getattr(dbapi_connection, "driver_connection", None)
        if driver is None:
            return
        if driver.is_closed():
            raise DisconnectionError("the pooled connection was closed")
        if not _socket_readable(driver):
            return
        try:
            await_only(driver.execute(";"))  # one simple-query message: safe behind a transaction pooler
        except Exception as exc:
            raise DisconnectionError(f"the pooled connection is gone: {type(exc).__name__}") from exc


def engine_statement_timeout(engine: AsyncEngine) -> int | None:
    return _TIMEOUTS.get(engine.sync_engine)


def engine_mode(engine: AsyncEngine) -> ConnectionMode:
    """The connection mode an engine was built for (direct for engines made elsewhere)."""
    return _MODES.get(engine.sync_engine, ConnectionMode.DIRECT)


def _roll_back_raw_transactions(engine: AsyncEngine) -> None:
    """A connection goes back to the pool as clean as a fresh one, or not at all: at check-in, roll back a
    transaction SQLAlchemy does not know of (raw use, the query fast path) and reset the session (role,
    session authorization, settings, temporary tables, cursors, LISTEN, advisory locks, sequences) in one
    message; a connection whose reset fails, or that holds what cannot be reset, is invalidated (closed).
    The query fast path resets in its own last message, so its connections cost no extra round trip here."""
    from sqlalchemy.util import await_only

    from workbench.core.impersonation import SESSION_RESET, SESSION_RESET_POOLED, clean_on_return

    reset = SESSION_RESET_POOLED if engine_mode(engine) is ConnectionMode.TRANSACTION else SESSION_RESET

    @event.listens_for(engine.sync_engine, "checkin")
    def _checkin(dbapi_connection: Any, record: Any) -> None:
        driver = getattr(dbapi_connection, "driver_connection", None)
        if driver is None or driver.is_closed() or clean_on_return(driver):
            return
        ending = "rollback; " if driver.is_in_transaction() else ""
        try:
            await_only(driver.execute(ending + reset))
        except Exception:
            record.invalidate()


def _reset_at_transaction_end(engine: AsyncEngine) -> None:
    """Behind a transaction pooler the server connection goes to another client as soon as a transaction
    ends, before a check-in reset could reach it. So the session is reset where the transaction ends: inside
    it just before COMMIT (session-level changes it made never outlive it), and in the same message as the
    ROLLBACK (what a rollback does not undo: advisory locks, ``currval``, SQL prepared statements). SQLAlchemy's
    own ROLLBACK that follows finds no transaction and changes nothing. The check-in reset is then skipped."""
    from sqlalchemy.util import await_only

    from workbench.core.impersonation import SESSION_RESET_POOLED, mark_clean, mark_used

    def driver_of(conn: Any) -> Any:
        with contextlib.suppress(Exception):
            if isinstance(conn.connection.dbapi_connection._transaction, PipelinedTransaction):
                return None  # it resets in its own COMMIT / ROLLBACK message
            driver = conn.connection.driver_connection
            if driver is not None and not driver.is_closed() and driver.is_in_transaction():
                return driver
        return None

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(conn: Any) -> None:
        with contextlib.suppress(Exception):
            mark_used(conn.connection.driver_connection)

    @event.listens_for(engine.sync_engine, "commit")
    def _commit(conn: Any) -> None:
        if (driver := driver_of(conn)) is not None:
            await_only(driver.execute(SESSION_RESET_POOLED))
            mark_clean(driver)

    @event.listens_for(engine.sync_engine, "rollback")
    def _rollback(conn: Any) -> None:
        if (driver := driver_of(conn)) is not None:
            with contextlib.suppress(Exception):  # the check-in reset (or invalidation) still follows
                await_only(driver.execute(f"rollback; {SESSION_RESET_POOLED}"))
                mark_clean(driver)


def _start_transactions(engine: AsyncEngine, per_transaction_timeout_ms: int | None) -> None:
    """At each BEGIN, apply the identity of the connection's execution options (see
    :func:`workbench.core.impersonation.impersonating`) and, behind a transaction pooler, the statement
    timeout and ``jit``: transaction-local.

    Where the connection has a :mod:`workbench.core.pipeline`, ``BEGIN`` and the identity are one
    workbench-made message that rides with the transaction's first statement, and COMMIT/ROLLBACK carry
    the session reset (:class:`PipelinedTransaction`): a request with one query costs two round trips
    (three behind a transaction pooler, where the statement is parsed apart), instead of five (seven)."""
    from workbench.core.impersonation import IDENTITY_OPTION, apply_statement

    pooled = engine_mode(engine) is ConnectionMode.TRANSACTION

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(conn: Any) -> None:
        identity = conn.get_execution_options().get(IDENTITY_OPTION)
        if PipelinedTransaction.start(conn, identity, per_transaction_timeout_ms, pooled=pooled):
            return
        if identity is None and per_transaction_timeout_ms is None:
            return
        sql, args = apply_statement(identity, per_transaction_timeout_ms)
        conn.exec_driver_sql(sql, tuple(args))

    @event.listens_for(engine.sync_engine, "handle_error")
    def _prologue_error(context: Any) -> Any:
        """A statement that rode with a failed BEGIN + identity got "current transaction is aborted": raise
        the identity's own error (an unknown role, permission denied to set role) instead."""
        conn = context.connection
        with contextlib.suppress(Exception):
            adapter = conn.connection.dbapi_connection
            transaction = getattr(adapter, "_transaction", None)
            if isinstance(transaction, PipelinedTransaction) and transaction.prologue.error is not None:
                failure = transaction.prologue.exception()
                try:
                    adapter._handle_exception(failure)
                except Exception as translated:
                    from sqlalchemy.exc import DBAPIError

                    return DBAPIError.instance(None, None, translated, adapter.dbapi.Error)
        return None


class PipelinedTransaction:
    """Stands in for asyncpg's ``Transaction`` under SQLAlchemy's asyncpg adapter (its ``_transaction``):
    BEGIN + identity were queued on the connection's pipeline and go out with the first statement; COMMIT and
    ROLLBACK are sent with the session reset in one message, so the connection needs no check-in reset (and
    behind a transaction pooler the reset reaches the server connection the transaction ran on). A reset that
    fails closes the connection, never returning it to the pool."""

    def __init__(self, driver: Any, pipe: Any, prologue: Any, reset: str) -> None:
        self.driver, self.pipe, self.prologue, self.reset = driver, pipe, prologue, reset

    @classmethod
    def start(cls, conn: Any, identity: Any, timeout_ms: int | None, *, pooled: bool) -> bool:
        """Begin pipelined on SQLAlchemy connection ``conn`` if its driver allows; False: begin as before."""
        from workbench.core.impersonation import SESSION_RESET, SESSION_RESET_POOLED, begin_script, mark_used
        from workbench.core.pipeline import pipeline_for

        try:
            adapter = conn.connection.dbapi_connection
            driver = adapter._connection
        except Exception:
            return False
        if getattr(adapter, "_transaction", True) is not None or adapter.isolation_level == "autocommit":
            return False
        pipe = pipeline_for(driver)
        if pipe is None or pipe.pending or driver.is_in_transaction():
            return False
        sql = begin_script(
            identity,
            readonly=bool(adapter.readonly),
            statement_timeout_ms=timeout_ms,
            isolation=adapter.isolation_level,
            deferrable=bool(adapter.deferrable),
        )
        mark_used(driver)
        adapter._transaction = cls(driver, pipe, pipe.prefix(sql), SESSION_RESET_POOLED if pooled else SESSION_RESET)
        return True

    async def commit(self) -> None:
        await self._end("commit")

    async def rollback(self) -> None:
        await self._end("rollback")

    async def _end(self, ending: str) -> None:
        from workbench.core.impersonation import SESSION_DIRTY, mark_clean

        if not self.prologue.done:
            self.pipe.discard_queued()  # no statement ran: BEGIN was never sent, nothing to end
            mark_clean(self.driver)
            return
        try:
            await self.driver.execute(f"{ending}; {self.reset}")
        except Exception as exc:
            with contextlib.suppress(Exception):
                self.driver.terminate()  # state unknown: closed, never reused
            if ending == "commit" and SESSION_DIRTY not in str(exc):
                raise  # the COMMIT itself failed: nothing was saved
            return
        mark_clean(self.driver)


class EngineManager:
    """Owns one engine: created lazily, optionally kept warm by a heartbeat, disposed exactly once.

    Use as ``async with EngineManager(settings) as manager:``; ``manager.engine`` is bound to the
    loop that first used it (an asyncpg pool cannot move between event loops).
    """

    def __init__(
        self,
        target: Settings | URL | str,
        mode: ConnectionMode | str | None = None,
        options: EngineOptions | None = None,
    ) -> None:
        self._target, self._mode, self._options = target, mode, options
        self._engine: AsyncEngine | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self.heartbeats = 0

    def __repr__(self) -> str:
        state = "open" if self._engine is not None else "idle"
        return f"<EngineManager {state} mode={self.mode.value}>"

    @property
    def mode(self) -> ConnectionMode:
        if self._engine is not None:
            return engine_mode(self._engine)
        if isinstance(self._target, Settings) and self._mode is None:
            return self._target.mode
        return ConnectionMode(self._mode or ConnectionMode.DIRECT)

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            self._engine = create_engine(self._target, self._mode, self._options)
        return self._engine

    def start_heartbeat(self, interval: float = 30.0, warm: int = 1) -> None:
        """Every ``interval`` seconds, ping ``warm`` pooled connections so idle ones are not dropped."""
        if self._heartbeat is not None and not self._heartbeat.done():
            return
        self._heartbeat = asyncio.get_running_loop().create_task(self._beat(interval, warm), name="workbench-heartbeat")

    async def _beat(self, interval: float, warm: int) -> None:
        from sqlalchemy import text

        while True:
            await asyncio.sleep(interval)  # the heartbeat period itself, not a wait for a condition
            conns = []
            try:
                for _ in range(warm):
                    conns.append(await self.engine.connect())
                for conn in conns:
                    await conn.execute(text("select 1"))
                    await conn.rollback()
                self.heartbeats += 1
            except Exception:  # a failed ping is what pre-ping recovers from on next checkout
                pass
            finally:
                for conn in conns:
                    with contextlib.suppress(Exception):
                        await conn.close()

    async def aclose(self) -> None:
        """Stop the heartbeat and dispose of the pool; safe to call twice."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
            self._heartbeat = None
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    async def __aenter__(self) -> EngineManager:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
