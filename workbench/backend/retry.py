"""Retry a unit of database work after a transient connection failure, and never run a write twice by accident.

What a retry may do depends on *when* the connection failed:

- while connecting (refused, pooler full, too many connections, pool checkout timeout): the work never
  started, so running it again is always safe: :attr:`Outcome.NOT_SENT`;
- while the work was in flight (backend terminated, pooler restarted, connection reset): it may have run,
  or, during COMMIT, even committed. Running it again is safe only if the caller says it is idempotent:
  :attr:`Outcome.UNKNOWN`;
- anything else (syntax, RLS, constraint, timeout...) fails the same way again: :attr:`Outcome.PERMANENT`.

So the caller marks the unit of work: ``await retry(work)`` retries only connection set-up failures, and
``await retry(work, idempotent=True)`` also retries in-flight losses. ``work`` should be one unit of work
that opens its own connection or transaction (``async with engine.begin() as conn: ...``), so that a
retry starts from scratch on a fresh connection. Delays grow exponentially with full jitter (a random
delay between 0 and the capped exponential), bounded by a number of attempts and a total time budget.
"""

from __future__ import annotations

import asyncio
import enum
import errno
import functools
import inspect
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar, overload

import asyncpg
import sqlalchemy.exc

from workbench.core.errors import ClassifiedError, classify, unwrap

__all__ = ["Outcome", "RetryEvent", "RetryPolicy", "outcome_of", "retry", "retrying"]

log = logging.getLogger("workbench.backend.retry")

T = TypeVar("T")
P = ParamSpec("P")

# Messages of failures that happen while a connection is being set up (or, behind PgBouncer, before a
# transaction got a server connection), so no statement of the unit of work reached PostgreSQL.
_SETUP_FAILURE = re.compile(
    r"max client connections reached|max clients reached|no more connections allowed|too many clients"
    r"|unable to check out connection|query_wait_timeout|pgbouncer cannot connect to server"
    r"|the database system is (starting up|shutting down|in recovery mode)|connect call failed",
    re.IGNORECASE,
)
_SETUP_SQLSTATES = frozenset({"53300", "57P03"})  # too_many_connections, cannot_connect_now
_SETUP_ERRNOS = frozenset({errno.ECONNREFUSED, errno.ENOENT, errno.EADDRNOTAVAIL})


class Outcome(enum.Enum):
    """What a failure says about whether the unit of work ran."""

    NOT_SENT = "not_sent"
    UNKNOWN = "unknown"
    PERMANENT = "permanent"


def outcome_of(exc: BaseException) -> tuple[Outcome, ClassifiedError]:
    """Classify ``exc`` (see :func:`workbench.core.errors.classify`) and say whether the work may have run."""
    classified = classify(exc)
    if not classified.transient:
        return Outcome.PERMANENT, classified
    root = unwrap(exc)
    if isinstance(root, sqlalchemy.exc.TimeoutError):  # waiting for a pooled connection
        return Outcome.NOT_SENT, classified
    if isinstance(root, asyncpg.PostgresError) and root.sqlstate in _SETUP_SQLSTATES:
        return Outcome.NOT_SENT, classified
    if isinstance(root, OSError) and (isinstance(root, ConnectionRefusedError) or root.errno in _SETUP_ERRNOS):
        return Outcome.NOT_SENT, classified
    if _SETUP_FAILURE.search(str(root)):
        return Outcome.NOT_SENT, classified
    return Outcome.UNKNOWN, classified


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: attempts in all, the first backoff and its cap, and a total time budget (s)."""

    max_attempts: int = 5
    base_delay: float = 0.1
    max_delay: float = 2.0
    max_elapsed: float = 15.0

    def __post_init__(self) -> None:
        problems = []
        if self.max_attempts < 1:
            problems.append("max_attempts must be >= 1 (1 means: no retries)")
        if self.base_delay < 0 or self.max_delay < 0:
            problems.append("base_delay and max_delay must be >= 0 seconds")
        if self.max_elapsed <= 0:
            problems.append("max_elapsed must be > 0 seconds")
        if problems:
            raise ValueError("Invalid RetryPolicy: " + "; ".join(problems) + ".")

    def ceiling(self, retry_number: int) -> float:
        """The most the ``retry_number``-th wait (1-based) may last: ``base * 2**(n-1)``, capped."""
        exponent = min(retry_number - 1, 62)  # 2**62 is far past any cap; avoids float overflow
        return min(self.max_delay, self.base_delay * (2**exponent))

    def backoff(self, retry_number: int, rng: Callable[[], float] = random.random) -> float:
        """Full jitter: uniform between 0 and the ceiling, so clients that failed together spread out."""
        return rng() * self.ceiling(retry_number)


DEFAULT_POLICY = RetryPolicy()


@dataclass(frozen=True)
class RetryEvent:
    """One retry about to happen (for ``on_retry`` hooks and metrics); holds no SQL and no secrets."""

    name: str
    attempt: int  # the attempt that failed, 1-based
    delay: float
    outcome: Outcome
    category: str
    message: str


async def retry(
    fn: Callable[[], Awaitable[T]],
    *,
    idempotent: bool = False,
    policy: RetryPolicy = DEFAULT_POLICY,
    name: str | None = None,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
    rng: Callable[[], float] = random.random,
    on_retry: Callable[[RetryEvent], Any] | None = None,
) -> T:
    """Await ``fn()``; on a failure that is safe to retry, wait and call it again.

    Retried: connection set-up failures always; in-flight connection losses only with
    ``idempotent=True``. Everything else is raised at once. When giving up, the last error is raised
    unchanged, with a note saying why it was not retried. ``sleep``, ``clock`` and ``rng`` are
    injectable so tests can check the schedule without waiting.
    """
    label = name or getattr(fn, "__qualname__", None) or "database work"
    started = clock()
    attempt = 0
    while True:
        attempt += 1
        try:
            awaitable = fn()
            if not inspect.isawaitable(awaitable):
                raise TypeError(f"retry() needs a function returning an awaitable; {label} returned {type(awaitable)}")
            return await awaitable
        except Exception as exc:
            outcome, classified = outcome_of(exc)
            if outcome is Outcome.PERMANENT:
                raise
            if outcome is Outcome.UNKNOWN and not idempotent:
                exc.add_note(
                    f"Not retried: the connection was lost while {label} was in flight, so it may have run "
                    "(or committed). Pass idempotent=True if running it twice is safe."
                )
                raise
            if attempt >= policy.max_attempts:
                exc.add_note(f"Gave up on {label} after {attempt} attempts ({clock() - started:.1f}s).")
                raise
            delay = policy.backoff(attempt, rng)
            if clock() - started + delay > policy.max_elapsed:
                exc.add_note(
                    f"Gave up on {label} after {attempt} attempts: the next try would pass the "
                    f"{policy.max_elapsed:g}s retry budget."
                )
                raise
            event = RetryEvent(label, attempt, delay, outcome, classified.category.value, classified.message)
            # classify() has already masked passwords, keys and tokens in the message.
            log.warning(
                "retrying %s in %.2fs after attempt %d/%d failed (%s, %s): %s",
                label,
                delay,
                attempt,
                policy.max_attempts,
                event.category,
                outcome.value,
                classified.message.splitlines()[0],
            )
            if on_retry is not None:
                on_retry(event)
        await sleep(delay)


@overload
def retrying(func: Callable[P, Awaitable[T]], /) -> Callable[P, Awaitable[T]]: ...


@overload
def retrying(
    func: None = None,
    /,
    *,
    idempotent: bool = False,
    policy: RetryPolicy = DEFAULT_POLICY,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
    rng: Callable[[], float] = random.random,
    on_retry: Callable[[RetryEvent], Any] | None = None,
) -> Callable[[Callable[P, Awaitable[T]]], Callable[P, Awaitable[T]]]: ...


def retrying(
    func: Callable[P, Awaitable[T]] | None = None,
    /,
    *,
    idempotent: bool = False,
    policy: RetryPolicy = DEFAULT_POLICY,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
    rng: Callable[[], float] = random.random,
    on_retry: Callable[[RetryEvent], Any] | None = None,
) -> Any:
    """Decorator form of :func:`retry` for an ``async def`` that is one unit of work.

    ``@retrying`` retries connection set-up failures only; ``@retrying(idempotent=True)`` marks the
    function safe to run twice (a read, an upsert keyed by a client-made id, ...).
    """

    def decorate(target: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        if not inspect.iscoroutinefunction(target):
            raise TypeError(
                f"@retrying wraps async functions (async def); {getattr(target, '__qualname__', target)!r} is not."
            )

        @functools.wraps(target)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            return await retry(
                lambda: target(*args, **kwargs),
                idempotent=idempotent,
                policy=policy,
                name=target.__qualname__,
                sleep=sleep,
                clock=clock,
                rng=rng,
                on_retry=on_retry,
            )

        return wrapper

    if func is not None:
        return decorate(func)
    return decorate
