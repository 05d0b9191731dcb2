"""Run transactions as an :class:`~workbench.core.identity.Identity`, the way PostgREST and Storage do.

Every transaction starts with one ``select set_config(..., true)`` statement that sets the role, the
JSON claims and the legacy per-claim settings. ``true`` makes each setting transaction-local, so
nothing survives the transaction: safe on a pooled connection and through a transaction pooler.
"""

from __future__ import annotations

import contextlib
import secrets
import weakref
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from workbench.core.identity import Identity

IDENTITY_OPTION = "workbench_identity"
CELL_MARKER = "workbench.cell"  # a transaction-local nonce of the query fast path (see begin_script)

# Run after a transaction ends, in the same message as its COMMIT/ROLLBACK (no extra round trip): the
# connection goes back to the pool as clean as a fresh one. Order matters: session authorization first
# (setting it resets the role), then the role, then every other setting (RESET ALL leaves role and session
# authorization alone). DISCARD ALL cannot be used: it is refused inside the implicit transaction of a
# multi-statement message, and its DEALLOCATE ALL would break asyncpg's statement cache. What cannot be
# reset that way (statements made with SQL PREPARE) is detected instead: the last statement raises, and a
# connection whose reset raised is closed, never returned to the pool.
SESSION_DIRTY = "workbench: session state that cannot be reset"
SESSION_RESET_STATEMENTS = (
    "reset session authorization; reset role; reset all; close all; unlisten *; "
    "select pg_catalog.pg_advisory_unlock_all(); discard temp; discard sequences"
)
# Behind a transaction pooler asyncpg and SQLAlchemy use only the unnamed statement, so SQL prepared
# statements can simply be deallocated (that also works inside a transaction, before its COMMIT).
SESSION_RESET_POOLED = f"{SESSION_RESET_STATEMENTS}; deallocate all"
SESSION_RESET = (
    f"{SESSION_RESET_STATEMENTS}; "
    "do $wbreset$ begin if exists (select from pg_catalog.pg_prepared_statements where from_sql) then "
    f"raise exception '{SESSION_DIRTY}: SQL prepared statements'; end if; end $wbreset$"
)

_SETTINGS = (
    "role",
    "request.jwt.claims",
    "request.jwt.claim.sub",
    "request.jwt.claim.role",
    "request.jwt.claim.email",
)


def identity_values(identity: Identity | None) -> list[str]:
    """The values of :data:`_SETTINGS` for ``identity``; unset claims are '' (which reads as NULL)."""
    if identity is None:
        identity = Identity.none()
    claims = identity.claims or {}
    return [
        identity.role or "none",
        identity.claims_json(),
        str(claims.get("sub") or ""),
        str(claims.get("role") or ""),
        str(claims.get("email") or ""),
    ]


def apply_statement(identity: Identity | None, statement_timeout_ms: int | None = None) -> tuple[str, list[str]]:
    """The single bound-parameter statement that applies ``identity`` (and, behind a transaction
    pooler, the statement timeout and ``jit``) to the current transaction."""
    names = list(_SETTINGS)
    values = identity_values(identity)
    if statement_timeout_ms is not None:
        names += ["statement_timeout", "jit"]
        values += [str(statement_timeout_ms), "off"]
    calls = ", ".join(f"set_config('{name}', ${i}, true)" for i, name in enumerate(names, start=1))
    return f"select {calls}", values


def quote_literal_dollar(value: str) -> str:
    """Explicit text templating, named as such: ``value`` as a dollar-quoted literal whose random tag
    does not occur in it, so it is read verbatim whatever the server's string settings."""
    if "\x00" in value:
        raise ValueError("a setting cannot contain a NUL character")
    while True:
        tag = f"$wb{secrets.token_hex(6)}$"
        if tag not in value:
            return f"{tag}{value}{tag}"


def begin_script(
    identity: Identity | None,
    *,
    readonly: bool,
    statement_timeout_ms: int | None = None,
    cell_marker: str | None = None,
    isolation: str | None = "read committed",
    deferrable: bool = False,
) -> str:
    """``BEGIN`` and the identity in one simple-protocol message: one round trip for both, or none when it
    rides with the first statement (:mod:`workbench.core.pipeline`).

    Used on a raw asyncpg connection, where a bound statement would cost a Parse round trip of its own
    when statement caching is off (transaction poolers); the values are workbench-made and quoted by
    :func:`quote_literal_dollar` (explicit templating, never user text). ``cell_marker`` is set
    transaction-locally as :data:`CELL_MARKER`: a statement that ends the transaction and chains a new one
    (``ROLLBACK AND CHAIN``) loses it, which a savepoint rollback never does. With no identity, no marker
    and no timeout it is ``BEGIN`` alone.
    """
    names = list(_SETTINGS) if identity is not None else []
    values = identity_values(identity) if identity is not None else []
    if cell_marker is not None:
        names.append(CELL_MARKER)
        values.append(cell_marker)
    if statement_timeout_ms is not None:
        names += ["statement_timeout", "jit"]
        values += [str(statement_timeout_ms), "off"]
    begin = "begin"
    if isolation is not None:
        level = isolation.replace("_", " ").lower()
        if level not in _ISOLATION_LEVELS:
            raise ValueError(f"unknown isolation level {isolation!r}; use one of {', '.join(_ISOLATION_LEVELS)}")
        begin += f" isolation level {level}"
    begin += " read only" if readonly else " read write"
    if deferrable:
        begin += " deferrable"
    if not names:
        return begin
    calls = ", ".join(f"set_config('{n}', {quote_literal_dollar(v)}, true)" for n, v in zip(names, values, strict=True))
    return f"{begin}; select {calls}"


_ISOLATION_LEVELS = ("read committed", "read uncommitted", "repeatable read", "serializable")


def impersonating(engine: AsyncEngine, identity: Identity) -> AsyncEngine:
    """A view of ``engine`` (same pool) whose every transaction starts as ``identity``."""
    return engine.execution_options(**{IDENTITY_OPTION: identity})


def sessionmaker_for(engine: AsyncEngine, identity: Identity, **kwargs: Any) -> async_sessionmaker[AsyncSession]:
    """ORM sessions that run as ``identity`` in every transaction they begin."""
    kwargs.setdefault("expire_on_commit", False)
    return async_sessionmaker(impersonating(engine, identity), **kwargs)


@contextlib.asynccontextmanager
async def impersonate(
    engine: AsyncEngine, identity: Identity, *, readonly: bool = False, commit: bool = True
) -> AsyncIterator[AsyncConnection]:
    """A connection inside one transaction as ``identity``; commits on success (unless ``commit=False``
    or ``readonly``), rolls back on error or cancellation."""
    async with impersonating(engine, identity).connect() as conn:
        if readonly:
            conn = await conn.execution_options(postgresql_readonly=True)
        trans = await conn.begin()
        try:
            yield conn
        except BaseException:
            await trans.rollback()
            raise
        if commit and not readonly:
            await trans.commit()
        else:
            await trans.rollback()


async def whoami(conn: AsyncConnection) -> dict[str, Any]:
    """What the database sees in this transaction: role, ``auth.uid()``, ``auth.role()``, ``auth.jwt()``."""
    from sqlalchemy import text

    row = (
        await conn.execute(
            text(
                "select current_user as current_user, auth.uid() as uid, auth.role() as role, "
                "auth.email() as email, auth.jwt() as jwt"
            )
        )
    ).one()
    return dict(row._mapping)


# -- which pooled connections were just reset (shared by the query fast path and the engine's pool hooks)
_CLEAN_CONNECTIONS: weakref.WeakSet[Any] = weakref.WeakSet()  # reset by the fast path's last message


def mark_clean(conn: object) -> None:
    """Record that ``conn``'s session was just reset (see :func:`clean_on_return`)."""
    _CLEAN_CONNECTIONS.add(conn)


def mark_used(conn: object) -> None:
    """``conn`` starts new work: its session may change again."""
    _CLEAN_CONNECTIONS.discard(conn)


def clean_on_return(conn: object) -> bool:
    """True (once) when the query fast path already reset ``conn`` in its last message, so the pool's
    check-in hook need not spend a round trip resetting it again."""
    if conn in _CLEAN_CONNECTIONS:
        _CLEAN_CONNECTIONS.discard(conn)
        return True
    return False
