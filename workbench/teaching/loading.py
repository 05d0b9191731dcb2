"""Loading ORM objects in async code without surprises: a small query helper and a statement log.

In async SQLAlchemy an attribute access cannot do I/O, so a lazy load raises (``MissingGreenlet``, or
``lazy="raise"``'s own error). The cure is to say what to load when querying. :class:`Loader` is a thin,
immutable builder over ``select()`` that keeps that explicit (``.options(selectinload(...))``) and adds
what a notebook or an endpoint keeps rewriting: filter, order, page, first, count, and results cached per
statement until refreshed. :func:`log_statements` records the SQL an engine sends, to count round trips.
"""

from __future__ import annotations

import contextlib
import math
import re
import time
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, event, func, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

T = TypeVar("T")
SessionSource = AsyncSession | async_sessionmaker[AsyncSession]


class LoaderError(ValueError):
    """Bad input to a :class:`Loader` (page numbers, sizes); the message says what is allowed."""


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of results and where it sits in the whole."""

    items: list[T]
    number: int
    size: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.size))

    @property
    def has_next(self) -> bool:
        return self.number < self.pages

    @property
    def has_previous(self) -> bool:
        return self.number > 1


@dataclass
class ResultCache:
    """Results by statement (its structure and loader options, the bound values, what was asked) for
    ``ttl`` seconds, or until dropped. Keys are tuples whose first item names the model."""

    ttl: float | None = None
    hits: int = 0
    misses: int = 0
    _entries: dict[tuple[Any, ...], tuple[float, Any]] = field(default_factory=dict, repr=False)

    def get(self, key: tuple[Any, ...]) -> tuple[bool, Any]:
        entry = self._entries.get(key)
        if entry is None or (self.ttl is not None and time.monotonic() - entry[0] > self.ttl):
            self.misses += 1
            return False, None
        self.hits += 1
        return True, entry[1]

    def put(self, key: tuple[Any, ...], value: Any) -> None:
        self._entries[key] = (time.monotonic(), value)

    def drop(self, model_key: str) -> int:
        """Forget every entry of one model; how many went."""
        gone = [k for k in self._entries if k[0] == model_key]
        for key in gone:
            del self._entries[key]
        return len(gone)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


class Loader(Generic[T]):
    """An immutable query for one model. Build with :meth:`where`, :meth:`filter_by`, :meth:`order_by`,
    :meth:`options`, :meth:`limit`, :meth:`offset`; read with ``await`` :meth:`all`, :meth:`first`,
    :meth:`one`, :meth:`count`, :meth:`page`. Results are cached per statement in a cache shared by every
    loader derived from the same root; :meth:`refresh` (or ``refresh=True``) reloads.

    ``source`` is a session (objects stay attached to it) or a session factory such as
    :func:`workbench.core.impersonation.sessionmaker_for` (each load opens and closes its own session, so RLS
    applies as that factory's identity; load relationships eagerly, since the objects come back detached).
    """

    def __init__(
        self,
        source: SessionSource,
        model: type[T],
        *,
        statement: Select[T] | None = None,
        cache: ResultCache | None = None,
    ) -> None:
        self.source = source
        self.model = model
        self._statement: Select[T] = statement if statement is not None else select(model)
        self.cache = cache if cache is not None else ResultCache()

    def __repr__(self) -> str:
        return f"<Loader {self.model.__name__}: {self.sql()}>"

    # -- building (each returns a new loader sharing the cache) -----------------------------------------
    def _with(self, statement: Select[T]) -> Loader[T]:
        return Loader(self.source, self.model, statement=statement, cache=self.cache)

    def where(self, *criteria: Any) -> Loader[T]:
        return self._with(self._statement.where(*criteria))

    def filter_by(self, **values: Any) -> Loader[T]:
        return self._with(self._statement.filter_by(**values))

    def order_by(self, *columns: Any) -> Loader[T]:
        return self._with(self._statement.order_by(*columns))

    def options(self, *loader_options: Any) -> Loader[T]:
        """Loader options such as ``selectinload(Task.project)`` or ``joinedload(...)``."""
        return self._with(self._statement.options(*loader_options))

    def limit(self, n: int | None) -> Loader[T]:
        return self._with(self._statement.limit(n))

    def offset(self, n: int | None) -> Loader[T]:
        return self._with(self._statement.offset(n))

    @property
    def statement(self) -> Select[T]:
        return self._statement

    def sql(self) -> str:
        """The statement as PostgreSQL would receive it (placeholders, not values)."""
        return " ".join(str(self._statement.compile(dialect=postgresql.dialect())).split())

    # -- reading -----------------------------------------------------------------------------------------
    def _key(self, kind: str, statement: Select[Any]) -> tuple[Any, ...]:
        """SQLAlchemy's own statement cache key (it covers loader options, which leave the SQL text
        unchanged) plus the bound values."""
        cache_key = statement._generate_cache_key()
        if cache_key is None:  # a construct SQLAlchemy cannot cache: fall back to the SQL and its values
            compiled = statement.compile(dialect=postgresql.dialect())
            return (self._root_key(), kind, str(compiled), repr(sorted(compiled.params.items())))
        values = tuple(repr(b.effective_value) for b in cache_key.bindparams)
        return (self._root_key(), kind, cache_key.key, values)

    def _root_key(self) -> str:
        return f"{self.model.__module__}.{self.model.__qualname__}"

    async def _run(self, kind: str, statement: Select[Any], refresh: bool, scalar: bool) -> Any:
        key = self._key(kind, statement)
        if not refresh:
            found, value = self.cache.get(key)
            if found:
                return value
        async with self._session() as session:
            result = await session.execute(statement)
            value = result.scalar_one() if scalar else list(result.unique().scalars().all())
        self.cache.put(key, value)
        return value

    @contextlib.asynccontextmanager
    async def _session(self) -> Any:
        if isinstance(self.source, AsyncSession):
            yield self.source
        else:
            async with self.source() as session:
                yield session

    async def all(self, *, refresh: bool = False) -> list[T]:
        return list(await self._run("all", self._statement, refresh, scalar=False))

    async def first(self, *, refresh: bool = False) -> T | None:
        rows = await self._run("first", self._statement.limit(1), refresh, scalar=False)
        return rows[0] if rows else None

    async def one(self, *, refresh: bool = False) -> T:
        """Exactly one row, or a :class:`LoaderError` saying how many there were."""
        rows = await self._run("one", self._statement.limit(2), refresh, scalar=False)
        if len(rows) != 1:
            raise LoaderError(f"Expected exactly one {self.model.__name__}, found {'none' if not rows else 'several'}.")
        return rows[0]  # type: ignore[no-any-return]

    async def count(self, *, refresh: bool = False) -> int:
        """How many rows the query matches (ignoring its order, limit and offset)."""
        return int(await self._run("count", self._count_statement(), refresh, scalar=True))

    def _count_statement(self) -> Select[int]:
        inner = self._statement.order_by(None).limit(None).offset(None)
        return select(func.count()).select_from(inner.subquery())

    async def page(self, number: int = 1, size: int = 20, *, refresh: bool = False) -> Page[T]:
        """Page ``number`` (from 1) of ``size`` rows, with the total count."""
        if number < 1:
            raise LoaderError(f"Page numbers start at 1, not {number}.")
        if size < 1:
            raise LoaderError(f"A page holds at least one row; size={size} is not allowed.")
        statement = self._statement.limit(size).offset((number - 1) * size)
        items = await self._run("page", statement, refresh, scalar=False)
        total = await self.count(refresh=refresh)
        return Page(items=list(items), number=number, size=size, total=total)

    async def refresh(self) -> list[T]:
        """Reload :meth:`all` from the database (and cache the new result)."""
        return await self.all(refresh=True)

    def invalidate(self) -> int:
        """Forget every cached result of this model's loaders; how many entries went."""
        return self.cache.drop(self._root_key())


def query(source: SessionSource, model: type[T], *, cache: ResultCache | None = None) -> Loader[T]:
    """``query(sessions, Task).where(Task.status == "todo").order_by(Task.id)``: a :class:`Loader`."""
    return Loader(source, model, cache=cache)


# -- what an engine sends -----------------------------------------------------------------------------
PRE_PING = "-- pool pre-ping"
_MARKERS = {"BEGIN", "COMMIT", "ROLLBACK", PRE_PING}


@dataclass
class StatementLog:
    """The SQL an engine sent while logging, in order, with ``BEGIN``/``COMMIT``/``ROLLBACK`` and the
    pool's pre-ping at checkout (asyncpg pings inside its own BEGIN/ROLLBACK: three round trips).

    With asyncpg each entry costs one round trip once its prepared statement is cached (a first
    execution adds one to prepare it)."""

    entries: list[str] = field(default_factory=list)
    ping_round_trips: int = 1

    @property
    def statements(self) -> list[str]:
        """Only the SQL statements (no transaction markers or pings)."""
        return [e for e in self.entries if e not in _MARKERS]

    @property
    def pings(self) -> int:
        return self.entries.count(PRE_PING)

    @property
    def round_trips(self) -> int:
        return len(self.entries) + self.pings * (self.ping_round_trips - 1)

    def clear(self) -> None:
        self.entries.clear()

    def show(self, width: int = 110, columns: bool = False) -> str:
        """Numbered lines; long ``SELECT`` column lists shortened to their count unless ``columns``."""
        lines = []
        for n, entry in enumerate(self.entries, start=1):
            flat = " ".join(entry.split())
            if not columns:
                flat = _SELECT_LIST.sub(lambda m: f"SELECT <{m.group(1).count(', ') + 1} columns> FROM ", flat, count=1)
            lines.append(f"{n:>2}. {flat if len(flat) <= width else flat[: width - 1] + '…'}")
        return "\n".join(lines)


_SELECT_LIST = re.compile(r"^SELECT (.{40,}?) FROM ")


@contextlib.contextmanager
def log_statements(engine: AsyncEngine) -> Iterator[StatementLog]:
    """Record every statement (and transaction boundary) ``engine`` sends inside the ``with`` block."""
    sync = engine.sync_engine
    log = StatementLog(ping_round_trips=3 if sync.dialect.driver == "asyncpg" else 1)
    fresh: weakref.WeakSet[Any] = weakref.WeakSet()  # pool records just connected: not pinged
    # A "begin" listener registered earlier (the identity's set_config) runs before ours, and SQLAlchemy
    # ignores insert=True for connection events; so BEGIN goes before the first statement its connection
    # sent since its last transaction ended.
    since_boundary: dict[int, int] = {}

    def on_execute(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        since_boundary.setdefault(id(conn), len(log.entries))
        log.entries.append(statement)

    def on_begin(conn: Any) -> None:
        at = since_boundary.pop(id(conn), None)
        if at is None:
            log.entries.append("BEGIN")
            return
        log.entries.insert(at, "BEGIN")
        for key, index in since_boundary.items():
            if index >= at:
                since_boundary[key] = index + 1

    def on_commit(conn: Any) -> None:
        since_boundary.pop(id(conn), None)
        log.entries.append("COMMIT")

    def on_rollback(conn: Any) -> None:
        since_boundary.pop(id(conn), None)
        log.entries.append("ROLLBACK")

    def on_connect(dbapi_connection: Any, record: Any) -> None:
        fresh.add(record)

    def on_checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        if record in fresh:
            fresh.discard(record)
        elif sync.pool._pre_ping:
            log.entries.append(PRE_PING)

    hooks: Sequence[tuple[str, Any]] = (
        ("before_cursor_execute", on_execute),
        ("begin", on_begin),
        ("commit", on_commit),
        ("rollback", on_rollback),
        ("connect", on_connect),
        ("checkout", on_checkout),
    )
    for name, fn in hooks:
        event.listen(sync, name, fn)
    try:
        yield log
    finally:
        for name, fn in hooks:
            event.remove(sync, name, fn)
