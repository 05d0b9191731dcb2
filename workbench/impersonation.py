"""Run transactions as an :class:`~workbench.identity.Identity`, the way PostgREST and Storage do.

Every transaction starts with one ``select set_config(..., true)`` statement that sets the role, the
JSON claims and the legacy per-claim settings. ``true`` makes each setting transaction-local, so
nothing survives the transaction: safe on a pooled connection and through a transaction pooler.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from workbench.identity import Identity

IDENTITY_OPTION = "workbench_identity"

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


def begin_script(identity: Identity | None, *, readonly: bool, statement_timeout_ms: int | None = None) -> str:
    """``BEGIN`` and the identity in one simple-protocol message: one round trip for both.

    Used by the query fast path on a raw asyncpg connection, where a bound statement would cost a
    Parse round trip of its own when statement caching is off (transaction poolers).
    """
    names = list(_SETTINGS)
    values = identity_values(identity)
    if statement_timeout_ms is not None:
        names += ["statement_timeout", "jit"]
        values += [str(statement_timeout_ms), "off"]
    calls = ", ".join(f"set_config('{n}', {quote_literal_dollar(v)}, true)" for n, v in zip(names, values, strict=True))
    mode = "read only" if readonly else "read write"
    return f"begin isolation level read committed {mode}; select {calls}"


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
