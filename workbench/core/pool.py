"""What an engine's connection pool is doing: sizes from the pool itself, history from pool events.

``engine.pool.status()`` tells the present (size, idle, overflow, checked out) but not the story: how many
connections were opened, recycled or invalidated, how many callers are waiting for one, how long they
waited, and what failed. A :class:`PoolMonitor` listens to the pool events (``connect``, ``checkout``,
``checkin``, ``invalidate``, ``soft_invalidate``, ``close``) and times each checkout's wait, so that a
widget or a load test can show both. Reading a snapshot never touches the database.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import greenlet
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import Pool, QueuePool

_EVENTS = ("connect", "checkout", "checkin", "invalidate", "soft_invalidate", "close")


@dataclass(frozen=True)
class PoolStats:
    """One snapshot of a pool. ``size``/``idle``/``overflow`` are ``None`` for pools without a queue
    (``NullPool`` opens a connection per checkout and closes it at checkin)."""

    pool: str
    size: int | None
    max_overflow: int | None
    idle: int | None
    overflow: int | None
    checked_out: int
    max_checked_out: int
    waiting: int
    max_waiting: int
    checkouts: int
    opened: int
    closed: int
    recycled: int
    invalidated: int
    soft_invalidated: int
    errors: int
    timed_checkouts: int
    wait_ms_total: float
    wait_ms_max: float
    last_error: str | None
    at: float
    status: str = ""  # the pool's own ``status()`` line

    @property
    def capacity(self) -> int | None:
        """The most connections the pool may hold at once (``size + max_overflow``), if bounded."""
        if self.size is None or self.max_overflow is None or self.max_overflow < 0:
            return None
        return self.size + self.max_overflow

    @property
    def mean_wait_ms(self) -> float:
        return self.wait_ms_total / self.timed_checkouts if self.timed_checkouts else 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"capacity": self.capacity, "mean_wait_ms": self.mean_wait_ms}


class PoolMonitor:
    """Counters over one engine's pool, kept up to date by pool events.

    Create it with :func:`monitor` (one per engine, shared by the widget and the load driver), read it with
    :meth:`snapshot`, remove its listeners with :meth:`detach`. Thread-safe enough for reading from
    another thread: the counters are plain ints written on the engine's own loop.
    """

    def __init__(self, engine: AsyncEngine | Engine) -> None:
        self._engine = engine.sync_engine if isinstance(engine, AsyncEngine) else engine
        self.checkouts = self.in_use = self.timed_gets = 0
        self.opened = self.closed = self.recycled = 0
        self.invalidated = self.soft_invalidated = self.errors = 0
        self.max_checked_out = 0
        self.waiting = self.max_waiting = 0
        self.wait_ms_total = self.wait_ms_max = 0.0
        self.last_error: str | None = None
        self._known: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()  # record -> hard-invalidated
        self._inside: set[int] = set()
        self._wrapped: weakref.ref[Pool] | None = None
        self._listeners: list[tuple[str, Callable[..., None]]] = []
        self._attached = False
        self.attach()

    def __repr__(self) -> str:
        s = self.snapshot()
        return (
            f"<PoolMonitor {s.pool} out={s.checked_out} idle={s.idle} waiting={s.waiting} "
            f"opened={s.opened} errors={s.errors}>"
        )

    @property
    def engine(self) -> Engine:
        return self._engine

    # -- events ------------------------------------------------------------------------------------
    def attach(self) -> None:
        """Start listening (done by the constructor); idempotent."""
        if self._attached:
            return
        handlers: dict[str, Callable[..., None]] = {
            "connect": self._on_connect,
            "checkout": self._on_checkout,
            "checkin": self._on_checkin,
            "invalidate": self._on_invalidate,
            "soft_invalidate": self._on_soft_invalidate,
            "close": self._on_close,
        }
        for name in _EVENTS:
            event.listen(self._engine, name, handlers[name])
            self._listeners.append((name, handlers[name]))
        event.listen(self._engine, "engine_disposed", self._on_disposed)
        self._listeners.append(("engine_disposed", self._on_disposed))
        self._wrap_checkout(self._engine.pool)
        self._attached = True

    def detach(self) -> None:
        """Remove every listener and the checkout timer; the counters keep their last values."""
        for name, fn in self._listeners:
            if event.contains(self._engine, name, fn):
                event.remove(self._engine, name, fn)
        self._listeners.clear()
        pool = self._wrapped() if self._wrapped is not None else None
        if pool is not None:
            pool.__dict__.pop("_do_get", None)
        self._wrapped = None
        self._attached = False
        _MONITORS.pop(self._engine, None)

    def _on_connect(self, dbapi_connection: Any, record: Any) -> None:
        self.opened += 1
        previous = self._known.get(record)
        if previous is False:  # the same pool slot reconnecting after an age/soft/pool-wide invalidation
            self.recycled += 1
        self._known[record] = False

    def _on_checkout(self, dbapi_connection: Any, record: Any, proxy: Any) -> None:
        self.checkouts += 1
        self.in_use += 1
        self.max_checked_out = max(self.max_checked_out, self.in_use)

    def _on_checkin(self, dbapi_connection: Any, record: Any) -> None:
        self.in_use = max(self.in_use - 1, 0)

    def _on_invalidate(self, dbapi_connection: Any, record: Any, exc: BaseException | None) -> None:
        self.invalidated += 1
        self._known[record] = True  # its reconnect is not a recycle
        if exc is not None:
            self._error(exc)

    def _on_soft_invalidate(self, dbapi_connection: Any, record: Any, exc: BaseException | None) -> None:
        self.soft_invalidated += 1
        if exc is not None:
            self._error(exc)

    def _on_close(self, dbapi_connection: Any, record: Any) -> None:
        self.closed += 1

    def _on_disposed(self, engine: Engine) -> None:
        self._wrap_checkout(engine.pool)  # dispose() builds a new pool (events carry over, the timer not)

    def _error(self, exc: BaseException) -> None:
        from workbench.core.errors import redact

        self.errors += 1
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        self.last_error = redact(f"{type(exc).__name__}: {first}"[:200])

    # -- checkout waits ----------------------------------------------------------------------------
    def _wrap_checkout(self, pool: Pool) -> None:
        """Time each checkout (waiting for a free connection or opening a new one) and count failures.

        There is no "checkout started" pool event, so the pool's ``_do_get`` is wrapped on this one pool
        instance; QueuePool calls it recursively, hence the per-greenlet guard.
        """
        current = self._wrapped() if self._wrapped is not None else None
        if current is pool:
            return
        original = type(pool)._do_get

        def timed_do_get() -> Any:
            key = id(greenlet.getcurrent())
            if key in self._inside:
                return original(pool)
            self._inside.add(key)
            self.waiting += 1
            self.max_waiting = max(self.max_waiting, self.waiting)
            started = time.perf_counter()
            try:
                return original(pool)
            except BaseException as exc:
                self._error(exc)
                raise
            finally:
                waited = (time.perf_counter() - started) * 1000
                self.timed_gets += 1
                self.wait_ms_total += waited
                self.wait_ms_max = max(self.wait_ms_max, waited)
                self.waiting -= 1
                self._inside.discard(key)

        pool.__dict__["_do_get"] = timed_do_get
        self._wrapped = weakref.ref(pool)

    # -- reading -----------------------------------------------------------------------------------
    def snapshot(self) -> PoolStats:
        """The pool right now plus the counters since the monitor was attached (or :meth:`reset`)."""
        pool = self._engine.pool
        if self._attached:
            self._wrap_checkout(pool)
        size = max_overflow = idle = overflow = None
        checked_out = self.in_use
        if isinstance(pool, QueuePool):  # its own counts are authoritative (connections out before we attached too)
            size, idle, overflow = pool.size(), pool.checkedin(), max(pool.overflow(), 0)
            max_overflow = pool._max_overflow
            checked_out = pool.checkedout()
        return PoolStats(
            pool=type(pool).__name__,
            size=size,
            max_overflow=max_overflow,
            idle=idle,
            overflow=overflow,
            checked_out=checked_out,
            max_checked_out=self.max_checked_out,
            waiting=self.waiting,
            max_waiting=self.max_waiting,
            checkouts=self.checkouts,
            opened=self.opened,
            closed=self.closed,
            recycled=self.recycled,
            invalidated=self.invalidated,
            soft_invalidated=self.soft_invalidated,
            errors=self.errors,
            timed_checkouts=self.timed_gets,
            wait_ms_total=self.wait_ms_total,
            wait_ms_max=self.wait_ms_max,
            last_error=self.last_error,
            at=time.monotonic(),
            status=pool.status(),
        )

    def reset(self) -> None:
        """Zero the history counters (not the connections in use), for example before a new load run."""
        self.checkouts = self.timed_gets = 0
        self.max_checked_out = self.in_use
        self.opened = self.closed = self.recycled = 0
        self.invalidated = self.soft_invalidated = self.errors = 0
        self.max_waiting = self.waiting
        self.wait_ms_total = self.wait_ms_max = 0.0
        self.last_error = None


_MONITORS: weakref.WeakKeyDictionary[Engine, PoolMonitor] = weakref.WeakKeyDictionary()


def monitor(engine: AsyncEngine | Engine) -> PoolMonitor:
    """The engine's :class:`PoolMonitor`, attached on first use (one per engine)."""
    sync = engine.sync_engine if isinstance(engine, AsyncEngine) else engine
    found = _MONITORS.get(sync)
    if found is None:
        found = PoolMonitor(sync)
        _MONITORS[sync] = found
    return found


def pool_stats(engine: AsyncEngine | Engine) -> PoolStats:
    """A snapshot of the engine's pool (attaching a monitor if there is none yet)."""
    return monitor(engine).snapshot()
