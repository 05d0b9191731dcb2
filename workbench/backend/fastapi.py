"""FastAPI dependencies for a back end on Supabase: verified users, RLS sessions, service-role access.

Needs the ``fastapi`` extra (``pip install supabase-workbench[fastapi]``); imports nothing from the
notebook layer. One :class:`SupabaseAuth` holds the engine and the token verifier and hands out the
dependencies, each ready to use as ``Annotated`` metadata::

    auth = SupabaseAuth.from_settings(load_settings())
    app = FastAPI(lifespan=auth.lifespan)

    @app.get("/tasks")
    async def tasks(db: Annotated[AsyncSession, auth.rls]) -> list[dict[str, Any]]:
        rows = await db.execute(text("select id, title from public.tasks"))  # only the caller's rows
        return [dict(r._mapping) for r in rows]

- ``auth.user`` verifies ``Authorization: Bearer <access token>`` (signature, ``exp``, ``aud``, ``iss``)
  and gives an :class:`AuthUser`; a missing token is a 401 with a plain ``Bearer`` challenge, a bad one a
  401 whose ``WWW-Authenticate`` says why (``error="invalid_token", error_description="token expired"``).
- ``auth.rls`` is an ``AsyncSession`` whose transactions run as that user: the role and JWT claims are
  applied by one transaction-local ``set_config`` statement at BEGIN, so nothing leaks to the next
  request, even through a transaction pooler.
- ``auth.session`` is a session as the connection's own role; ``auth.admin`` one as ``service_role``,
  allowed only to callers presenting the service-role key (``auth.service`` checks just that).
- Sessions commit when the endpoint returns and roll back when it raises, *before* the response is sent
  (FastAPI's ``scope="function"``), so a failed commit is an error response, not a lost write. Database
  errors become short HTTP errors via :func:`workbench.core.errors.classify` (RLS refusal -> 403, duplicate
  key -> 409, bad data -> 422, timeout -> 504, database unreachable -> 503).
"""

from __future__ import annotations

import contextlib
import hmac
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

try:
    from fastapi import Depends, HTTPException, Request
    from fastapi.responses import JSONResponse
    from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
except ModuleNotFoundError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    if exc.name not in ("fastapi", "starlette") and not str(exc.name).startswith(("fastapi.", "starlette.")):
        raise
    raise ImportError(
        "workbench.backend.fastapi needs FastAPI, which is not installed: pip install supabase-workbench[fastapi]"
    ) from None

import asyncpg
import sqlalchemy.exc
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from workbench.backend.tokens import TokenError, TokenVerifier
from workbench.core.engine import EngineOptions, create_engine, create_impersonation_engine
from workbench.core.errors import Category, ClassifiedError, classify
from workbench.core.identity import Identity
from workbench.core.impersonation import sessionmaker_for
from workbench.core.settings import ConnectionMode, Settings, SettingsError

__all__ = [
    "AuthUser",
    "SupabaseAuth",
    "add_exception_handlers",
    "http_error",
    "verifier_from_settings",
]

log = logging.getLogger("workbench.backend.fastapi")

# What an API client is told, per category: short, and free of SQL, values and hints meant for developers.
_HTTP: dict[Category, tuple[int, str]] = {
    Category.RLS_VIOLATION: (403, "Not allowed: a row-level security policy refused this change."),
    Category.PERMISSION: (403, "Not allowed: permission denied for this operation."),
    Category.UNIQUE_VIOLATION: (409, "Conflict: a row with this key already exists."),
    Category.FK_VIOLATION: (409, "Conflict: a referenced row is missing, or this row is still referenced."),
    Category.NOT_NULL: (422, "Invalid data: a required value is missing."),
    Category.CHECK_VIOLATION: (422, "Invalid data: a value breaks a check constraint."),
    Category.DATA: (422, "Invalid data: a value has the wrong type or format."),
    Category.TIMEOUT: (504, "The database took too long to answer."),
    Category.CONNECTION: (503, "The database is unavailable right now; try again shortly."),
    Category.POOLER: (503, "The database is unavailable right now; try again shortly."),
    Category.CANCELLED: (503, "The database cancelled the request; try again shortly."),
}
_INTERNAL = (500, "Internal server error.")
_DB_ERRORS = (sqlalchemy.exc.DBAPIError, sqlalchemy.exc.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


def _database_failure(exc: BaseException) -> ClassifiedError | None:
    """The classification of ``exc`` if it is a database failure (a refused connection arrives as a bare
    ``OSError``), else None: other errors are the endpoint's own business."""
    if isinstance(exc, _DB_ERRORS):
        return classify(exc)
    if isinstance(exc, OSError):
        classified = classify(exc)
        if classified.category in (Category.CONNECTION, Category.TIMEOUT):
            return classified
    return None


def http_error(exc: BaseException, classified: ClassifiedError | None = None) -> HTTPException:
    """The HTTP error for a database failure; the full explanation goes to the log, not the client."""
    classified = classified or classify(exc)
    status, message = _HTTP.get(classified.category, _INTERNAL)
    level = logging.ERROR if status >= 500 else logging.INFO
    log.log(level, "database error -> HTTP %d (%s): %s", status, classified.category.value, classified.message)
    headers = {"Retry-After": "1"} if status == 503 else None
    return HTTPException(status_code=status, detail=message, headers=headers)


def add_exception_handlers(app: Any) -> None:
    """Map database errors raised outside the workbench's sessions (your own engine, say) the same way."""

    async def handle(request: Request, exc: Exception) -> JSONResponse:
        error = http_error(exc)
        return JSONResponse({"detail": error.detail}, status_code=error.status_code, headers=error.headers)

    for kind in _DB_ERRORS:
        app.add_exception_handler(kind, handle)


@dataclass(frozen=True)
class AuthUser:
    """A caller whose token was verified. ``claims`` are the token's claims (never the token itself)."""

    id: str
    role: str
    email: str | None
    claims: Mapping[str, Any] = field(repr=False)

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any]) -> AuthUser:
        return cls(
            id=str(claims.get("sub") or ""),
            role=str(claims.get("role") or ""),
            email=str(claims["email"]) if claims.get("email") else None,
            claims=dict(claims),
        )

    @property
    def identity(self) -> Identity:
        """Who the database should see: this role with these claims (``auth.uid()`` = ``id``)."""
        return Identity.from_claims(self.claims, label=self.email or self.id or self.role)

    @property
    def is_anonymous(self) -> bool:
        return bool(self.claims.get("is_anonymous"))


def verifier_from_settings(settings: Settings, *, audience: str | None = "authenticated") -> TokenVerifier:
    """A verifier for the project's access tokens: HS256 with the JWT secret and/or the project's JWKS,
    issuer ``<SUPABASE_URL>/auth/v1``."""
    secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret is not None else None
    jwks_url = settings.resolved_jwks_url
    if secret is None and jwks_url is None:
        raise SettingsError(
            "SUPABASE_JWT_SECRET / SUPABASE_URL: cannot verify tokens without either. Fix: set SUPABASE_URL "
            "(its JWKS verifies ES256/RS256 tokens) and, for a project with a legacy secret, SUPABASE_JWT_SECRET."
        )
    issuer = f"{settings.url.rstrip('/')}/auth/v1" if settings.url else None
    return TokenVerifier(
        jwt_secret=secret, jwks_url=jwks_url, audience=audience, issuer=issuer, allowed_roles=settings.allowed_role_set
    )


_bearer_scheme = HTTPBearer(auto_error=False, description="A Supabase access token, or the service-role key.")


def _missing_credentials(detail: str) -> HTTPException:
    return HTTPException(status_code=401, detail=detail, headers={"WWW-Authenticate": "Bearer"})


def _bearer_token(request: Request) -> str:
    header = request.headers.get("authorization")
    if not header:
        raise _missing_credentials("Not authenticated: send 'Authorization: Bearer <access token>'.")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _missing_credentials("The Authorization header must be 'Bearer <access token>'.")
    return token.strip()


def _refused(exc: TokenError) -> HTTPException:
    """401/403 carry the RFC 6750 challenge (a 403 is a valid token whose role is refused); 5xx a retry hint."""
    headers = {"WWW-Authenticate": exc.www_authenticate} if exc.status_code < 500 else {"Retry-After": "5"}
    return HTTPException(status_code=exc.status_code, detail=exc.reason, headers=headers)


class SupabaseAuth:
    """The engine, the token verifier and the FastAPI dependencies built on them."""

    def __init__(
        self,
        engine: AsyncEngine,
        verifier: TokenVerifier,
        *,
        service_verifier: TokenVerifier | None = None,
        service_role_key: str | None = None,
        project_ref: str = "local",
        owns_engine: bool = False,
        rls_engine: AsyncEngine | None = None,
    ) -> None:
        self.engine = engine
        # auth.rls / auth.admin sessions: logged in as the authenticator when there is one, so PostgreSQL
        # itself refuses a role outside the API roles; else the same engine (the verifier's allow-list).
        self.rls_engine = rls_engine if rls_engine is not None else engine
        self.verifier = verifier
        # API keys carry neither `aud` nor the Auth issuer: a second verifier that checks only the
        # signature, expiry and role, sharing the JWKS cache.
        self.service_verifier = service_verifier or TokenVerifier(
            jwt_secret=verifier.jwt_secret,
            jwks_url=verifier.jwks_url,
            audience=None,
            issuer=None,
            required_claims=("role",),
            allowed_roles=verifier.allowed_roles,
            jwks=verifier.jwks,
        )
        self._service_role_key = service_role_key
        self.project_ref = project_ref
        self.owns_engine = owns_engine
        self.sessionmaker: async_sessionmaker[AsyncSession] = async_sessionmaker(engine, expire_on_commit=False)
        self._build_dependencies()

    def __repr__(self) -> str:
        return f"<SupabaseAuth issuer={self.verifier.issuer!r} ref={self.project_ref!r}>"

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        engine: AsyncEngine | None = None,
        mode: ConnectionMode | str | None = None,
        options: EngineOptions | None = None,
        audience: str | None = "authenticated",
    ) -> SupabaseAuth:
        """From :class:`~workbench.core.settings.Settings`; builds the engine unless one is given (then it is
        yours to dispose)."""
        verifier = verifier_from_settings(settings, audience=audience)
        key = settings.service_role_key.get_secret_value() if settings.service_role_key is not None else None
        rls_engine = create_impersonation_engine(settings, mode, options) if engine is None else None
        return cls(
            engine if engine is not None else create_engine(settings, mode, options),
            verifier,
            service_role_key=key,
            project_ref=settings.project_ref or "local",
            owns_engine=engine is None,
            rls_engine=rls_engine,
        )

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Any) -> AsyncIterator[None]:
        """``FastAPI(lifespan=auth.lifespan)``: disposes of the engine it made at shutdown."""
        try:
            yield
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        if self.owns_engine:
            await self.engine.dispose()
            if self.rls_engine is not self.engine:
                await self.rls_engine.dispose()

    # -- dependencies ----------------------------------------------------------------------------------
    def _build_dependencies(self) -> None:
        """Closures, so FastAPI sees plain functions whose sub-dependencies it can cache per request."""

        async def current_user(
            request: Request,
            credentials: HTTPAuthorizationCredentials | None = Depends(_bearer_scheme),  # noqa: B008 - FastAPI's idiom
        ) -> AuthUser:
            """The verified caller (401 with the reason when the token is missing or not acceptable)."""
            token = _bearer_token(request)
            try:
                claims = await self.verifier.averify(token)
            except TokenError as exc:
                raise _refused(exc) from None
            return AuthUser.from_claims(claims)

        async def require_service_role(
            request: Request,
            credentials: HTTPAuthorizationCredentials | None = Depends(_bearer_scheme),  # noqa: B008
        ) -> AuthUser:
            """The caller presented the service-role key (legacy JWT or the configured secret key)."""
            token = _bearer_token(request)
            key = self._service_role_key
            if key is not None and hmac.compare_digest(token.encode(), key.encode()):
                return AuthUser(id="", role="service_role", email=None, claims={"role": "service_role"})
            try:
                claims = await self.service_verifier.averify(token)
            except TokenError as exc:
                raise _refused(exc) from None
            if claims.get("role") != "service_role":
                raise HTTPException(
                    status_code=403,
                    detail="This endpoint needs the service-role key.",
                    headers={
                        "WWW-Authenticate": 'Bearer error="insufficient_scope", '
                        'error_description="service_role required"'
                    },
                )
            return AuthUser.from_claims(claims)

        async def get_session() -> AsyncIterator[AsyncSession]:
            """A session as the connection's own role: commit on success, roll back on error."""
            async with self.sessionmaker() as session, _unit_of_work(session):
                yield session

        async def rls_session(user: AuthUser = Depends(current_user)) -> AsyncIterator[AsyncSession]:  # noqa: B008
            """A session whose every transaction runs as the verified user, so RLS policies apply."""
            async with sessionmaker_for(self.rls_engine, user.identity)() as session, _unit_of_work(session):
                yield session

        async def admin_session(
            caller: AuthUser = Depends(require_service_role),  # noqa: B008
        ) -> AsyncIterator[AsyncSession]:
            """A session as service_role (bypasses RLS), for callers holding the service-role key."""
            identity = Identity.service_role(self.project_ref)
            async with sessionmaker_for(self.rls_engine, identity)() as session, _unit_of_work(session):
                yield session

        self.current_user = current_user
        self.require_service_role = require_service_role
        self.get_session = get_session
        self.rls_session = rls_session
        self.admin_session = admin_session
        # Ready-made markers: `user: Annotated[AuthUser, auth.user]`, `db: Annotated[AsyncSession, auth.rls]`.
        self.user: Any = Depends(current_user)
        self.service: Any = Depends(require_service_role)
        self.session: Any = Depends(get_session, scope="function")
        self.rls: Any = Depends(rls_session, scope="function")
        self.admin: Any = Depends(admin_session, scope="function")


@contextlib.asynccontextmanager
async def _unit_of_work(session: AsyncSession) -> AsyncIterator[None]:
    """Commit if the endpoint returned, roll back if it raised; database errors become HTTP errors."""
    try:
        yield
    except BaseException as exc:
        with contextlib.suppress(Exception):
            await session.rollback()
        classified = _database_failure(exc)
        if classified is not None:
            raise http_error(exc, classified) from exc
        raise
    try:
        await session.commit()
    except Exception as exc:
        with contextlib.suppress(Exception):
            await session.rollback()
        classified = _database_failure(exc)
        if classified is not None:
            raise http_error(exc, classified) from exc
        raise
