"""The notebook-facing object: settings, a default identity, and one engine per event loop.

An asyncpg pool belongs to the loop that made it, so the workbench keeps an engine for the kernel's
loop (the user's own ``await`` code) and one for the background loop (magics and widgets); both share
the settings and the default identity. Every call has an async form and a sync twin (``*_sync``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections.abc import Coroutine, Mapping
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from workbench.core.engine import EngineOptions, create_engine, create_impersonation_engine
from workbench.core.identity import Identity, IdentityError, check_role, find_users, user_identity
from workbench.core.impersonation import mark_clean, sessionmaker_for
from workbench.core.query import QueryOutcome, ResultFrame, result_frame, run_query
from workbench.core.settings import ConnectionMode, Settings
from workbench.notebook.bridge import shared_loop

T = TypeVar("T")


class Workbench:
    """One connection target (a Supabase project or the local stand-in) as used from a notebook."""

    def __init__(
        self,
        settings: Settings,
        *,
        mode: ConnectionMode | str | None = None,
        options: EngineOptions | None = None,
    ) -> None:
        self.settings = settings
        self.mode = ConnectionMode(mode) if mode is not None else settings.mode
        self.options = options
        self.default_identity: Identity = Identity.none()
        self.display_rows = 20
        self._clock = time.monotonic
        self._identity_cache: dict[tuple[str, str], tuple[Identity, float]] = {}
        self._engines: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncEngine] = weakref.WeakKeyDictionary()
        # Impersonated work logs in as the authenticator (when one is configured: always on the stand-in),
        # which can only become the API roles: PostgreSQL refuses `set role postgres` from such a cell.
        self._identity_engines: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncEngine] = (
            weakref.WeakKeyDictionary()
        )

    def __repr__(self) -> str:
        return f"<Workbench {self.settings.describe()} as {self.default_identity.describe()}; {self.identity_boundary}>"

    # -- engines -------------------------------------------------------------------------------------
    def engine(self) -> AsyncEngine:
        """The engine for the running event loop (created on first use there)."""
        loop = asyncio.get_running_loop()
        engine = self._engines.get(loop)
        if engine is None:
            engine = create_engine(self.settings, self.mode, self.options)
            self._engines[loop] = engine
        return engine

    def identity_engine(self) -> AsyncEngine:
        """The engine impersonated work runs on: logged in as the authenticator when the settings name one
        (the stand-in always does), else the connection's own engine (the role allow-list still applies)."""
        loop = asyncio.get_running_loop()
        engine = self._identity_engines.get(loop)
        if engine is None:
            engine = create_impersonation_engine(self.settings, self.mode, self.options) or self.engine()
            self._identity_engines[loop] = engine
        return engine

    @property
    def identity_boundary(self) -> str:
        """What keeps an impersonated cell in its role, said honestly (shown by ``repr``)."""
        if self.settings.impersonation_url() is not None:
            return f"roles enforced by PostgreSQL: identities log in as {self.settings.authenticator_user}"
        return (
            "roles checked against SUPABASE_ALLOWED_ROLES before sending; the connection's own role could switch "
            "roles from inside a cell. Set SUPABASE_AUTHENTICATOR_PASSWORD to have PostgreSQL enforce them"
        )

    def engine_for(self, identity: Identity) -> AsyncEngine:
        """The connection's own engine for no identity; else, after the allow-list check, the identity engine."""
        if identity.role is None:
            return self.engine()
        allowed = self.settings.allowed_role_set
        if identity.role not in allowed:
            raise IdentityError(
                f"The role {identity.role!r} is not one an identity may take here (allowed: "
                f"{', '.join(sorted(allowed))}). Fix: drop --role to run as the connection's own role, or add "
                "the role to SUPABASE_ALLOWED_ROLES if your project grants it to the authenticator."
            )
        return self.identity_engine()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` to completion from synchronous code, on the shared background loop."""
        return shared_loop().run(coro)

    @property
    def issuer(self) -> str:
        base = (self.settings.url or "http://127.0.0.1").rstrip("/")
        return f"{base}/auth/v1"

    # -- identities ----------------------------------------------------------------------------------
    IDENTITY_TTL = 5.0  # seconds a resolved --as / --role is reused (see resolve_identity)

    async def resolve_identity(
        self,
        as_user: str | None = None,
        role: str | None = None,
        claims: Mapping[str, Any] | str | None = None,
        base: Identity | None = None,
    ) -> Identity:
        """``--as`` a user (email or uuid), ``--role`` a role, plus ``--claims``; else the default.

        A lookup (``auth.users`` row, role check) costs a connection and a round trip, so its result is
        reused for :attr:`IDENTITY_TTL` seconds: a cell run again right away does not look the user up
        again, while a change to the user (metadata, role, a new user) is seen a few seconds later.
        ``%sbconnect`` (a new workbench), :meth:`impersonate` and :meth:`forget_identities` drop the cache
        at once, and a lookup that fails is never cached."""
        identity = base or self.default_identity
        if as_user or role:
            key = (as_user or "", role or "")  # the base identity plays no part once a user or role is named
            now = self._clock()
            cached = self._identity_cache.get(key)
            if cached is not None and cached[1] > now:
                identity = cached[0]
            else:
                identity = await self._look_up_identity(as_user, role, identity)
                self._identity_cache[key] = (identity, now + self.IDENTITY_TTL)
        return identity.with_claims(claims)

    async def _look_up_identity(self, as_user: str | None, role: str | None, identity: Identity) -> Identity:
        async with self.engine().connect() as conn:
            raw = (await conn.get_raw_connection()).driver_connection
            assert raw is not None
            if as_user:
                identity = await user_identity(raw, as_user, issuer=self.issuer)
            if role:
                await check_role(raw, role)
                if as_user and role != identity.role:
                    identity = identity.with_claims({"role": role})
                elif not as_user:
                    identity = Identity.for_role(role)
            await conn.rollback()
            mark_clean(raw)  # only our own read-only lookups ran: no reset round trip at check-in
        return identity

    def forget_identities(self) -> None:
        """Drop the cached ``--as`` / ``--role`` lookups (see :meth:`resolve_identity`)."""
        self._identity_cache.clear()

    def impersonate(self, identity: Identity) -> None:
        """Make ``identity`` the default for ``%%sbquery`` and :meth:`query` (and forget cached lookups)."""
        self.default_identity = identity
        self.forget_identities()

    async def find_users(self, text: str = "", limit: int = 20) -> list[dict[str, Any]]:
        async with self.engine().connect() as conn:
            raw = (await conn.get_raw_connection()).driver_connection
            assert raw is not None
            users = await find_users(raw, text, limit)
            await conn.rollback()
            mark_clean(raw)  # only our own read-only lookup ran: no reset round trip at check-in
            return users

    # -- queries -------------------------------------------------------------------------------------
    async def query_outcome(
        self,
        sql: str,
        *,
        identity: Identity | None = None,
        params: Mapping[str, object] | None = None,
        write: bool = False,
        limit: int | None = None,
        explain: bool = False,
    ) -> QueryOutcome:
        identity = identity or self.default_identity
        return await run_query(
            self.engine_for(identity),
            sql,
            identity=identity,
            namespace=params,
            write=write,
            limit=limit,
            explain=explain,
        )

    async def query(
        self,
        sql: str,
        *,
        as_user: str | None = None,
        role: str | None = None,
        claims: Mapping[str, Any] | str | None = None,
        params: Mapping[str, object] | None = None,
        write: bool = False,
        limit: int | None = None,
    ) -> ResultFrame:
        """Run ``sql`` (``:name`` placeholders bound from ``params``) and return a DataFrame."""
        identity = await self.resolve_identity(as_user, role, claims) if (as_user or role or claims) else None
        outcome = await self.query_outcome(sql, identity=identity, params=params, write=write, limit=limit)
        return result_frame(outcome, self.display_rows)

    def query_sync(self, sql: str, **kwargs: Any) -> ResultFrame:
        return self.run(self.query(sql, **kwargs))

    def session(self, identity: Identity | None = None, **kwargs: Any) -> AsyncSession:
        """An ORM session on the running loop whose every transaction runs as ``identity``."""
        identity = identity or self.default_identity
        return sessionmaker_for(self.engine_for(identity), identity, **kwargs)()

    async def whoami(self, identity: Identity | None = None) -> dict[str, Any]:
        """What the database sees for ``identity`` (default: the current one)."""
        identity = identity or self.default_identity
        outcome = await self.query_outcome(
            "select current_user as db_role, auth.uid() as uid, auth.role() as jwt_role, auth.email() as email, "
            "auth.jwt() as claims",
            identity=identity,
        )
        row = outcome.frame.iloc[0].to_dict()
        return {"identity": identity.describe(), **row}

    # -- lifetime ------------------------------------------------------------------------------------
    async def aclose(self) -> None:
        """Dispose of the engine of the running loop (and forget the others' engines)."""
        loop = asyncio.get_running_loop()
        engine = self._engines.pop(loop, None)
        identity_engine = self._identity_engines.pop(loop, None)
        for each in {id(e): e for e in (engine, identity_engine) if e is not None}.values():
            await each.dispose()

    def close(self) -> None:
        """Dispose of every engine this workbench made, each on its own loop."""
        engines = list(self._engines.items())
        engines += [(loop, e) for loop, e in self._identity_engines.items() if e is not self._engines.get(loop)]
        for loop, engine in engines:
            if loop.is_closed():
                continue
            if loop is shared_loop().loop:
                with contextlib.suppress(Exception):
                    self.run(engine.dispose())
            else:
                with contextlib.suppress(RuntimeError):
                    engine.sync_engine.dispose(close=False)
        self._engines.clear()
        self._identity_engines.clear()


_current: Workbench | None = None


def connect(
    target: Settings | str | None = None,
    *,
    mode: ConnectionMode | str | None = None,
    options: EngineOptions | None = None,
) -> Workbench:
    """Connect the notebook: no target means the configured project, else the local stand-in (started
    if needed); a string is a database URL."""
    global _current
    if target is None:
        from workbench.local.settings import resolve_settings

        settings = resolve_settings()
    elif isinstance(target, str):
        settings = Settings(db_url=target, db_mode=mode) if mode else Settings(db_url=target)
    else:
        settings = target
    if _current is not None:
        _current.close()
    _current = Workbench(settings, mode=mode, options=options)
    return _current


def current() -> Workbench:
    """The connected workbench, connecting to the default target on first use."""
    return _current if _current is not None else connect()
