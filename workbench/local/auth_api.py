"""Supabase Auth (GoTrue) for the local stand-in, as far as the official ``supabase`` client goes.

Mounted at ``/auth/v1`` by :mod:`workbench.local.api`. It serves what a back end needs from Auth:
password sign-in (bcrypt hashes in ``auth.users.encrypted_password``), refresh, ``GET /user``,
logout, the admin user API (service role only) and the JWKS. Requests, responses and errors follow
GoTrue (supabase/auth ``internal/api``), so code written against the local stand-in behaves the same
against a Supabase project:

- errors are ``{"code": 400, "error_code": "invalid_credentials", "msg": "..."}``, or, when the request
  says ``X-Supabase-Api-Version: 2024-01-01`` (the official clients always do),
  ``{"code": "invalid_credentials", "message": "..."}`` with that header echoed;
- access tokens carry Supabase's claims (:func:`workbench.tokens.access_token_claims`), issuer
  ``<api_url>/auth/v1``, signed HS256 with the JWT secret, or ES256 with the stand-in's key when the
  API process runs with ``WORKBENCH_AUTH_SIGNING=es256``. The ES256 public key is always published at
  ``/.well-known/jwks.json`` (as a Supabase project publishes its standby key), so verifiers that use
  the JWKS work in both modes;
- like Supabase's API gateway, every endpoint except ``/health`` and the JWKS wants an ``apikey``
  header holding the anon or service-role key.

Left out (not needed by a back end, or impossible locally): sign-up, OTP/magic links, OAuth, MFA,
SSO, the refresh-token reuse interval.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import bcrypt
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from workbench.errors import classify
from workbench.identity import json_object
from workbench.tokens import JWKSCache, TokenError, TokenVerifier, access_token_claims, mint

if TYPE_CHECKING:
    import asyncpg

    from workbench.local.api import ApiContext
    from workbench.local.standin import LocalKeys

__all__ = ["SIGNING_ENV", "AuthApiError", "Signer", "build_app", "signer_from_env"]

log = logging.getLogger("workbench.local.auth")

SIGNING_ENV = "WORKBENCH_AUTH_SIGNING"
ACCESS_TOKEN_TTL = 3600
MIN_PASSWORD_LENGTH = 6
BCRYPT_COST = 10
ADMIN_ROLES = frozenset({"service_role", "supabase_admin"})
API_VERSION_HEADER = "X-Supabase-Api-Version"
API_VERSION_2024 = dt.date(2024, 1, 1)
DEFAULT_PER_PAGE = 50
LOGOUT_SCOPES = ("global", "local", "others")

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PHONE = re.compile(r"^[1-9]\d{1,14}$")
_GO_DURATION = re.compile(r"^[-+]?((\d+(\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h))+$")
_GO_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_BCRYPT_HASH = re.compile(r"^\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}$")
# A real hash to compare against when the user does not exist, so a miss costs as much as a wrong password.
_DUMMY_HASH = bcrypt.hashpw(b"workbench-dummy-password", bcrypt.gensalt(rounds=BCRYPT_COST))


# --------------------------------------------------------------------------------------------- errors


class AuthApiError(Exception):
    """A GoTrue ``HTTPError``: status, machine-readable ``error_code`` and a message for people."""

    def __init__(self, status: int, error_code: str, message: str, *, reasons: list[str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message
        self.reasons = reasons  # weak_password only

    def body(self, versioned: bool) -> dict[str, Any]:
        out: dict[str, Any]
        if versioned:
            out = {"code": self.error_code, "message": self.message}
        else:
            out = {"code": self.status, "error_code": self.error_code, "msg": self.message}
        if self.reasons is not None:
            out["weak_password"] = {"reasons": self.reasons}
        return out


class OAuthError(Exception):
    """GoTrue's OAuth-style error (``{"error", "error_description"}``, always 400)."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


def _bad_request(code: str, message: str) -> AuthApiError:
    return AuthApiError(400, code, message)


def _api_version(request: Request) -> dt.date | None:
    raw = request.headers.get(API_VERSION_HEADER, "")
    try:
        return dt.date.fromisoformat(raw) if re.fullmatch(r"2\d{3}-\d\d-\d\d", raw) else None
    except ValueError:
        return None


def _error_response(request: Request, exc: AuthApiError | OAuthError) -> JSONResponse:
    version = _api_version(request)
    headers = {API_VERSION_HEADER: API_VERSION_2024.isoformat()} if version and version >= API_VERSION_2024 else {}
    if isinstance(exc, OAuthError):
        return JSONResponse({"error": exc.error, "error_description": exc.description}, 400, headers=headers)
    return JSONResponse(exc.body(versioned=bool(headers)), exc.status, headers=headers)


# --------------------------------------------------------------------------------------------- signing


@dataclass(frozen=True)
class Signer:
    """How access tokens are signed: HS256 with the JWT secret, or ES256 with the stand-in's key."""

    algorithm: str
    secret: str | None = field(default=None, repr=False)
    private_key: str | None = field(default=None, repr=False)
    kid: str | None = None

    def sign(self, claims: Mapping[str, Any]) -> str:
        if self.algorithm == "ES256":
            return mint(claims, private_key=self.private_key, kid=self.kid)
        return mint(claims, secret=self.secret)


def signer_from_env(keys: LocalKeys, env: Mapping[str, str] | None = None) -> Signer:
    """``WORKBENCH_AUTH_SIGNING``: ``hs256`` (default, like a legacy project) or ``es256``."""
    choice = (env if env is not None else os.environ).get(SIGNING_ENV, "hs256").strip().lower() or "hs256"
    if choice == "hs256":
        return Signer("HS256", secret=keys.jwt_secret)
    if choice == "es256":
        return Signer("ES256", private_key=keys.es256_private_key, kid=str(keys.es256_jwk["kid"]))
    raise ValueError(f"{SIGNING_ENV}={choice!r} is not supported: use 'hs256' (the default) or 'es256'.")


def public_jwks(keys: LocalKeys) -> dict[str, Any]:
    """The JWKS document: the ES256 public key only (HS256 secrets are never published)."""
    jwk = {k: v for k, v in keys.es256_jwk.items() if k != "d"}
    return {"keys": [jwk]}


def _bearer_verifier(keys: LocalKeys) -> TokenVerifier:
    """Verifies what arrives as ``Authorization: Bearer``: user tokens and API keys, HS256 or ES256.

    Like GoTrue it checks signature and expiry, not audience or issuer (API keys have neither). The
    JWKS is preloaded and never fetched: the keys are our own.
    """
    cache = JWKSCache()
    cache.load(public_jwks(keys))
    cache.begin_fetch(time.time())
    return TokenVerifier(
        jwt_secret=keys.jwt_secret,
        jwks_url="http://127.0.0.1/auth/v1/.well-known/jwks.json",  # never fetched: see refresh interval
        audience=None,
        issuer=None,
        required_claims=("role",),
        jwks_refresh_interval=float("inf"),
        jwks=cache,
    )


# --------------------------------------------------------------------------------------------- users


def _ts(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _identities(row: Mapping[str, Any]) -> list[dict[str, Any]]:
    """GoTrue lists a user's identities; the stand-in has no auth.identities, so derive them from the
    providers recorded in ``app_metadata`` (as GoTrue records them) for which the user has a value."""
    providers = json_object(row["raw_app_meta_data"]).get("providers") or []
    user_id = str(row["id"])
    created = _ts(row["created_at"])
    updated = _ts(row["updated_at"]) or created
    out = []
    for provider, key in (("email", "email"), ("phone", "phone")):
        value = row[key]
        if not value or provider not in providers:
            continue
        data: dict[str, Any] = {"sub": user_id, key: value}
        if provider == "email":
            data |= {"email_verified": row["email_confirmed_at"] is not None, "phone_verified": False}
        else:
            data |= {"phone_verified": row["phone_confirmed_at"] is not None, "email_verified": False}
        identity = {
            "identity_id": str(uuid.uuid5(uuid.UUID(user_id), provider)),
            "id": user_id,
            "user_id": user_id,
            "identity_data": data,
            "provider": provider,
            "last_sign_in_at": _ts(row["last_sign_in_at"]),
            "created_at": created,
            "updated_at": updated,
        }
        if provider == "email":
            identity["email"] = value
        out.append(identity)
    return out


def user_json(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row of ``auth.users`` as GoTrue's ``models.User`` JSON (what supabase-auth parses into ``User``)."""
    created = row["created_at"] or row["updated_at"] or dt.datetime.now(dt.UTC)
    out: dict[str, Any] = {
        "id": str(row["id"]),
        "aud": row["aud"] or "",
        "role": row["role"] or "",
        "email": row["email"] or "",
        "email_confirmed_at": _ts(row["email_confirmed_at"]),
        "phone": row["phone"] or "",
        "phone_confirmed_at": _ts(row["phone_confirmed_at"]),
        "confirmed_at": _ts(row["confirmed_at"]),
        "last_sign_in_at": _ts(row["last_sign_in_at"]),
        "invited_at": _ts(row["invited_at"]),
        "app_metadata": json_object(row["raw_app_meta_data"]),
        "user_metadata": json_object(row["raw_user_meta_data"]),
        "identities": _identities(row),
        "created_at": _ts(created),
        "updated_at": _ts(row["updated_at"] or created),
        "banned_until": _ts(row["banned_until"]),
        "deleted_at": _ts(row["deleted_at"]),
        "is_anonymous": bool(row["is_anonymous"]),
        "is_sso_user": bool(row["is_sso_user"]),
    }
    # GoTrue omits unset optional timestamps (`omitempty`).
    return {k: v for k, v in out.items() if v is not None}


def _is_banned(row: Mapping[str, Any]) -> bool:
    until = row["banned_until"]
    return until is not None and until > dt.datetime.now(dt.UTC)


def parse_go_duration(text: str) -> float:
    """Seconds in a Go duration (``"24h"``, ``"1h30m"``, ``"90s"``), as GoTrue's ``ban_duration`` takes."""
    raw = text.strip()
    if raw in ("0", "+0", "-0"):
        return 0.0
    if not _GO_DURATION.fullmatch(raw):
        raise _bad_request(
            "validation_failed",
            f"invalid format for ban duration: time: invalid duration {raw!r} (use e.g. '24h', '90m' or 'none')",
        )
    sign = -1.0 if raw.startswith("-") else 1.0
    return sign * sum(float(n) * _GO_UNITS[u] for n, u in _GO_PART.findall(raw))


def _validate_email(email: str) -> str:
    if len(email) > 255:
        raise _bad_request("validation_failed", "An email address is too long")
    if not _EMAIL.match(email):
        raise _bad_request("validation_failed", "Unable to validate email address: invalid format")
    return email.lower()


def _validate_phone(phone: str) -> str:
    digits = re.sub(r"[\s()+\-]", "", phone)
    if not _PHONE.match(digits):
        raise _bad_request("validation_failed", "Invalid phone number format (E.164 required)")
    return digits


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AuthApiError(
            422,
            "weak_password",
            f"Password should be at least {MIN_PASSWORD_LENGTH} characters.",
            reasons=["length"],
        )
    if len(password.encode("utf-8")) > 72:
        raise _bad_request("validation_failed", "Password cannot be longer than 72 bytes (a bcrypt limit)")


async def _hash_password(password: str) -> str:
    hashed = await asyncio.to_thread(bcrypt.hashpw, password.encode("utf-8"), bcrypt.gensalt(rounds=BCRYPT_COST))
    return hashed.decode("ascii")


async def _password_matches(password: str, stored: str | None) -> bool:
    """bcrypt in a worker thread; a missing user still pays one comparison (no timing oracle)."""
    candidate = stored.encode("utf-8") if stored and stored.startswith("$2") else _DUMMY_HASH
    try:
        ok = await asyncio.to_thread(bcrypt.checkpw, password.encode("utf-8"), candidate)
    except ValueError:
        return False
    return ok and candidate is not _DUMMY_HASH


def _obfuscate(user_id: uuid.UUID, value: str) -> str:
    digest = hashlib.sha256(f"{user_id}{value}".encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _merge_metadata(current: dict[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """GoTrue's metadata update: set each key; a null value removes the key."""
    merged = dict(current)
    for key, value in changes.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


# --------------------------------------------------------------------------------------------- params


@dataclass
class AdminUserParams:
    """The body of ``POST/PUT /admin/users``, type-checked like Go's JSON decoding would."""

    id: str = ""
    aud: str = ""
    role: str = ""
    email: str = ""
    phone: str = ""
    password: str | None = None
    password_hash: str = ""
    email_confirm: bool = False
    phone_confirm: bool = False
    user_metadata: dict[str, Any] | None = None
    app_metadata: dict[str, Any] | None = None
    ban_duration: str = ""

    @classmethod
    def parse(cls, body: Any) -> AdminUserParams:
        if not isinstance(body, dict):
            raise _bad_request("bad_json", "Could not parse request body as JSON: expected an object")
        params = cls()
        types: dict[str, tuple[type, ...]] = {
            "id": (str,),
            "aud": (str,),
            "role": (str,),
            "email": (str,),
            "phone": (str,),
            "password": (str,),
            "password_hash": (str,),
            "email_confirm": (bool,),
            "phone_confirm": (bool,),
            "user_metadata": (dict,),
            "app_metadata": (dict,),
            "ban_duration": (str,),
        }
        for name, allowed in types.items():
            if name not in body or body[name] is None:
                continue
            value = body[name]
            if not isinstance(value, allowed):
                kind = {str: "a string", bool: "a boolean", dict: "an object"}[allowed[0]]
                raise _bad_request("bad_json", f"Could not parse request body as JSON: {name} must be {kind}")
            setattr(params, name, value)
        return params


async def _json_body(request: Request, *, optional: bool = False) -> Any:
    raw = await request.body()
    if not raw.strip():
        if optional:
            return {}
        raise _bad_request("bad_json", "Could not parse request body as JSON: the body is empty")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise _bad_request("bad_json", "Could not parse request body as JSON: invalid JSON") from None


# --------------------------------------------------------------------------------------------- service

Handler = Callable[[Request], Awaitable[Response]]


@dataclass
class Caller:
    """A verified bearer token: its claims and, for user tokens, the user row."""

    claims: dict[str, Any] = field(repr=False)
    user: Mapping[str, Any] | None = None


class AuthService:
    """The endpoints; one instance per API process, sharing the context's connection pool."""

    def __init__(self, ctx: ApiContext, signer: Signer | None = None) -> None:
        self.ctx = ctx
        self.keys = ctx.keys
        self.signer = signer or signer_from_env(ctx.keys)
        self.verifier = _bearer_verifier(ctx.keys)
        self.issuer = f"{ctx.api_url.rstrip('/')}/auth/v1"
        self._api_keys = (ctx.keys.anon_key, ctx.keys.service_role_key)

    @property
    def pool(self) -> asyncpg.Pool:
        return self.ctx.require_pool()

    # -- plumbing ------------------------------------------------------------------------------------
    def endpoint(self, handler: Handler, *, public: bool = False) -> Handler:
        """Wrap a handler: the gateway's apikey check, then GoTrue's error rendering."""

        async def run(request: Request) -> Response:
            if not public:
                rejected = self._check_apikey(request)
                if rejected is not None:
                    return rejected
            try:
                return await handler(request)
            except (AuthApiError, OAuthError) as exc:
                return _error_response(request, exc)
            except Exception as exc:  # a bug or a database failure: logged (redacted), never echoed raw
                log.error("auth API %s %s failed: %s", request.method, request.url.path, classify(exc).message)
                failure = AuthApiError(
                    500, "unexpected_failure", "Unexpected failure, please check server logs for more information"
                )
                return _error_response(request, failure)

        return run

    def _check_apikey(self, request: Request) -> Response | None:
        """Supabase's gateway answers 401 before Auth sees a request without a valid project key."""
        key = request.headers.get("apikey") or request.query_params.get("apikey")
        if not key:
            return JSONResponse(
                {
                    "message": "No API key found in request",
                    "hint": "No `apikey` request header or url param was found.",
                },
                401,
            )
        if not any(hmac.compare_digest(key.encode(), known.encode()) for known in self._api_keys):
            return JSONResponse(
                {"message": "Invalid API key", "hint": "Double check your Supabase `anon` or `service_role` API key."},
                401,
            )
        return None

    async def _bearer_claims(self, request: Request) -> dict[str, Any]:
        header = request.headers.get("authorization", "")
        match = re.fullmatch(r"(?i)bearer\s+(\S+)\s*", header)
        if match is None:
            raise AuthApiError(401, "no_authorization", "This endpoint requires a Bearer token")
        try:
            return await self.verifier.averify(match.group(1))
        except TokenError as exc:
            raise AuthApiError(
                403, "bad_jwt", f"invalid JWT: unable to parse or verify signature, {exc.reason}"
            ) from None

    async def _authenticated(self, request: Request) -> Caller:
        """GoTrue's ``requireAuthentication``: a valid token whose user and session still exist."""
        claims = await self._bearer_claims(request)
        sub = claims.get("sub")
        if not sub:
            raise AuthApiError(403, "bad_jwt", "invalid claim: missing sub claim")
        try:
            user_id = uuid.UUID(str(sub))
        except ValueError:
            raise _bad_request("bad_jwt", "invalid claim: sub claim must be a UUID") from None
        user = await self.pool.fetchrow("select * from auth.users where id = $1", user_id)
        if user is None:
            raise AuthApiError(403, "user_not_found", "User from sub claim in JWT does not exist")
        session_id = claims.get("session_id")
        if session_id and session_id != str(uuid.UUID(int=0)):
            try:
                sid = uuid.UUID(str(session_id))
            except ValueError:
                raise AuthApiError(403, "bad_jwt", "invalid claim: session_id claim must be a UUID") from None
            if await self.pool.fetchval("select 1 from auth.sessions where id = $1", sid) is None:
                raise AuthApiError(403, "session_not_found", "Session from session_id claim in JWT does not exist")
        return Caller(claims=claims, user=user)

    async def _admin(self, request: Request) -> Caller:
        """GoTrue's ``requireAdmin``: a valid token whose role is service_role (or supabase_admin)."""
        claims = await self._bearer_claims(request)
        if claims.get("role") not in ADMIN_ROLES:
            raise AuthApiError(403, "not_admin", "User not allowed")
        return Caller(claims=claims)

    # -- tokens --------------------------------------------------------------------------------------
    def _access_token(self, user: Mapping[str, Any], session_id: uuid.UUID, signed_in_at: float) -> tuple[str, int]:
        now = int(time.time())
        claims = access_token_claims(
            str(user["id"]),
            email=user["email"],
            phone=user["phone"],
            role=user["role"] or "authenticated",
            aud=user["aud"] or "authenticated",
            iss=self.issuer,
            app_metadata=json_object(user["raw_app_meta_data"]),
            user_metadata=json_object(user["raw_user_meta_data"]),
            session_id=session_id,
            is_anonymous=bool(user["is_anonymous"]),
            amr=[{"method": "password", "timestamp": int(signed_in_at)}],
            expires_in=ACCESS_TOKEN_TTL,
            now=now,
        )
        return self.signer.sign(claims), now + ACCESS_TOKEN_TTL

    def _token_response(
        self, user: Mapping[str, Any], session_id: uuid.UUID, refresh_token: str, signed_in_at: float
    ) -> JSONResponse:
        token, expires_at = self._access_token(user, session_id, signed_in_at)
        return JSONResponse(
            {
                "access_token": token,
                "token_type": "bearer",
                "expires_in": ACCESS_TOKEN_TTL,
                "expires_at": expires_at,
                "refresh_token": refresh_token,
                "user": user_json(user),
            },
            headers={"Cache-Control": "no-store"},
        )

    async def token(self, request: Request) -> Response:
        grant = request.query_params.get("grant_type", "")
        if grant == "password":
            return await self._password_grant(request)
        if grant == "refresh_token":
            return await self._refresh_grant(request)
        raise OAuthError("unsupported_grant_type", "")

    async def _password_grant(self, request: Request) -> Response:
        body = await _json_body(request)
        if not isinstance(body, dict):
            raise _bad_request("bad_json", "Could not parse request body as JSON: expected an object")
        email, phone, password = body.get("email") or "", body.get("phone") or "", body.get("password") or ""
        if not all(isinstance(v, str) for v in (email, phone, password)):
            raise _bad_request(
                "bad_json", "Could not parse request body as JSON: email, phone and password are strings"
            )
        if email and phone:
            raise AuthApiError(
                422, "validation_failed", "Only an email address or phone number should be provided on login."
            )
        if email:
            user = await self.pool.fetchrow(
                "select * from auth.users where lower(email) = lower($1) and is_sso_user = false", email
            )
        elif phone:
            user = await self.pool.fetchrow(
                "select * from auth.users where phone = $1", re.sub(r"[\s()+\-]", "", phone)
            )
        else:
            raise _bad_request("validation_failed", "missing email or phone")

        usable = user is not None and user["deleted_at"] is None and bool(user["encrypted_password"])
        if usable and user is not None and _is_banned(user):
            raise _bad_request("user_banned", "User is banned")
        matches = await _password_matches(password, user["encrypted_password"] if usable and user else None)
        if not usable or not matches or user is None:
            raise _bad_request("invalid_credentials", "Invalid login credentials")
        if email and user["email_confirmed_at"] is None:
            raise _bad_request("email_not_confirmed", "Email not confirmed")
        if phone and not email and user["phone_confirmed_at"] is None:
            raise _bad_request("phone_not_confirmed", "Phone not confirmed")

        refresh = secrets.token_urlsafe(24)
        async with self.pool.acquire() as conn, conn.transaction():
            user = await conn.fetchrow(
                "update auth.users set last_sign_in_at = now(), updated_at = now() where id = $1 returning *",
                user["id"],
            )
            session_id = await conn.fetchval(
                "insert into auth.sessions (user_id, aal) values ($1, 'aal1') returning id", user["id"]
            )
            await conn.execute(
                "insert into auth.refresh_tokens (token, user_id, session_id) values ($1, $2, $3)",
                refresh,
                user["id"],
                session_id,
            )
        return self._token_response(user, session_id, refresh, time.time())

    async def _refresh_grant(self, request: Request) -> Response:
        body = await _json_body(request)
        token = body.get("refresh_token") if isinstance(body, dict) else None
        if not token or not isinstance(token, str):
            raise OAuthError("invalid_request", "refresh_token required")
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                """select t.id, t.revoked, t.session_id, t.user_id, s.created_at as session_created_at
                     from auth.refresh_tokens t left join auth.sessions s on s.id = t.session_id
                    where t.token = $1 for update of t""",
                token,
            )
            if row is None:
                raise _bad_request("refresh_token_not_found", "Invalid Refresh Token: Refresh Token Not Found")
            user = await conn.fetchrow("select * from auth.users where id = $1", row["user_id"])
            if user is None or user["deleted_at"] is not None:
                raise _bad_request("refresh_token_not_found", "Invalid Refresh Token: Refresh Token Not Found")
            if _is_banned(user):
                raise _bad_request("user_banned", "Invalid Refresh Token: User Banned")
            if row["session_id"] is None or row["session_created_at"] is None:
                raise _bad_request("session_not_found", "Invalid Refresh Token: No Valid Session Found")
            if row["revoked"]:
                raise _bad_request("refresh_token_already_used", "Invalid Refresh Token: Already Used")
            new_token = secrets.token_urlsafe(24)
            await conn.execute("update auth.refresh_tokens set revoked = true where id = $1", row["id"])
            await conn.execute(
                "insert into auth.refresh_tokens (token, user_id, session_id) values ($1, $2, $3)",
                new_token,
                user["id"],
                row["session_id"],
            )
            await conn.execute("update auth.sessions set updated_at = now() where id = $1", row["session_id"])
        return self._token_response(user, row["session_id"], new_token, row["session_created_at"].timestamp())

    # -- the signed-in user --------------------------------------------------------------------------
    async def get_user(self, request: Request) -> Response:
        caller = await self._authenticated(request)
        assert caller.user is not None
        return JSONResponse(user_json(caller.user))

    async def logout(self, request: Request) -> Response:
        scope = request.query_params.get("scope", "global")
        if scope not in LOGOUT_SCOPES:
            raise _bad_request("validation_failed", f'Unsupported logout scope "{scope}"')
        caller = await self._authenticated(request)
        assert caller.user is not None
        session_id = caller.claims.get("session_id")
        sid = uuid.UUID(str(session_id)) if session_id else None
        if scope == "local" and sid is not None:
            await self.pool.execute("delete from auth.sessions where id = $1", sid)
        elif scope == "others":
            await self.pool.execute(
                "delete from auth.sessions where user_id = $1 and id is distinct from $2", caller.user["id"], sid
            )
        else:
            await self.pool.execute("delete from auth.sessions where user_id = $1", caller.user["id"])
        return Response(status_code=204)

    # -- admin ---------------------------------------------------------------------------------------
    async def admin_list_users(self, request: Request) -> Response:
        await self._admin(request)
        try:
            page = int(request.query_params.get("page") or 1)
            per_page = int(request.query_params.get("per_page") or DEFAULT_PER_PAGE)
            if page < 1 or per_page < 1:
                raise ValueError("page and per_page must be positive")
        except ValueError as exc:
            raise _bad_request("validation_failed", f"Bad Pagination Parameters: {exc}") from None
        aud = request.query_params.get("aud") or "authenticated"
        text = request.query_params.get("filter", "").strip()
        where = """coalesce(aud, 'authenticated') = $1
                   and ($2 = '' or email ilike '%' || $2 || '%'
                        or raw_user_meta_data ->> 'full_name' ilike '%' || $2 || '%')"""
        total = await self.pool.fetchval(f"select count(*) from auth.users where {where}", aud, text)
        rows = await self.pool.fetch(
            f"select * from auth.users where {where} order by created_at desc, id limit $3 offset $4",
            aud,
            text,
            per_page,
            (page - 1) * per_page,
        )
        headers = {"X-Total-Count": str(total), "Link": self._page_links(request, page, per_page, total)}
        return JSONResponse({"users": [user_json(r) for r in rows], "aud": aud}, headers=headers)

    @staticmethod
    def _page_links(request: Request, page: int, per_page: int, total: int) -> str:
        last = max(1, -(-total // per_page))
        query = dict(request.query_params) | {"per_page": str(per_page)}
        links = []
        if page < last:
            links.append(f'<{request.url.path}?{urlencode(query | {"page": str(page + 1)})}>; rel="next"')
        links.append(f'<{request.url.path}?{urlencode(query | {"page": str(last)})}>; rel="last"')
        return ", ".join(links)

    async def _load_user(self, request: Request) -> asyncpg.Record:
        raw = request.path_params["user_id"]
        try:
            user_id = uuid.UUID(raw)
        except ValueError:
            raise AuthApiError(404, "validation_failed", "user_id must be an UUID") from None
        row = await self.pool.fetchrow("select * from auth.users where id = $1", user_id)
        if row is None:
            raise AuthApiError(404, "user_not_found", "User not found")
        return row

    async def admin_get_user(self, request: Request) -> Response:
        await self._admin(request)
        return JSONResponse(user_json(await self._load_user(request)))

    async def admin_create_user(self, request: Request) -> Response:
        await self._admin(request)
        p = AdminUserParams.parse(await _json_body(request))
        if not p.email and not p.phone:
            raise _bad_request("validation_failed", "Cannot create a user without either an email or phone")
        aud = p.aud or "authenticated"
        providers: list[str] = []
        if p.email:
            p.email = _validate_email(p.email)
            if await self._email_taken(p.email, None):
                raise AuthApiError(422, "email_exists", "A user with this email address has already been registered")
            providers.append("email")
        if p.phone:
            p.phone = _validate_phone(p.phone)
            if await self._phone_taken(p.phone, None):
                raise AuthApiError(422, "phone_exists", "Phone number already registered by another user")
            providers.append("phone")
        if p.password is not None and p.password_hash:
            raise _bad_request("validation_failed", "Only a password or a password hash should be provided")
        if p.password_hash:
            if not _BCRYPT_HASH.match(p.password_hash):
                raise _bad_request(
                    "validation_failed",
                    "password_hash must be a bcrypt hash ($2a$/$2b$/$2y$): the local stand-in supports no other format",
                )
            encrypted = p.password_hash
        else:
            password = p.password or secrets.token_urlsafe(48)  # no password: nobody can sign in with one
            if p.password:
                _check_password(password)
            encrypted = await _hash_password(password)
        user_id = uuid.uuid4()
        if p.id:
            try:
                user_id = uuid.UUID(p.id)
            except ValueError:
                raise _bad_request("validation_failed", "ID must conform to the uuid v4 format") from None
            if user_id.int == 0:
                raise _bad_request("validation_failed", "ID cannot be a nil uuid")
        banned_for = parse_go_duration(p.ban_duration) if p.ban_duration and p.ban_duration != "none" else None
        app_metadata = _merge_metadata({"provider": providers[0], "providers": providers}, p.app_metadata or {})
        try:
            # A plain INSERT, so triggers on auth.users fire as on Supabase (e.g. creating a profile).
            row = await self.pool.fetchrow(
                """insert into auth.users (id, aud, role, email, phone, encrypted_password, email_confirmed_at,
                       phone_confirmed_at, raw_app_meta_data, raw_user_meta_data, banned_until, created_at, updated_at)
                   values ($1, $2, $3, nullif($4, ''), nullif($5, ''), $6,
                       case when $7 then now() end, case when $8 then now() end, $9::jsonb, $10::jsonb,
                       case when $11::float8 is not null and $11::float8 <> 0
                            then now() + make_interval(secs => $11::float8) end,
                       now(), now())
                   returning *""",
                user_id,
                aud,
                p.role or "authenticated",
                p.email,
                p.phone,
                encrypted,
                p.email_confirm,
                p.phone_confirm,
                json.dumps(app_metadata),
                json.dumps(p.user_metadata or {}),
                banned_for,
            )
        except Exception as exc:
            raise self._write_failed(exc, "creating new user") from None
        return JSONResponse(user_json(row))

    async def admin_update_user(self, request: Request) -> Response:
        await self._admin(request)
        user = await self._load_user(request)
        p = AdminUserParams.parse(await _json_body(request))
        sets: list[str] = ["updated_at = now()"]
        args: list[Any] = [user["id"]]

        def put(column_sql: str, value: Any) -> None:
            args.append(value)
            sets.append(column_sql.replace("?", f"${len(args)}"))

        if p.email:
            email = _validate_email(p.email)
            if await self._email_taken(email, user["id"]):
                raise AuthApiError(422, "email_exists", "A user with this email address has already been registered")
            put("email = ?", email)
        if p.phone:
            phone = _validate_phone(p.phone)
            if await self._phone_taken(phone, user["id"]):
                raise AuthApiError(422, "phone_exists", "Phone number already registered by another user")
            put("phone = ?", phone)
        if p.password is not None:
            _check_password(p.password)
            put("encrypted_password = ?", await _hash_password(p.password))
        if p.role:
            put("role = ?", p.role.strip())
        if p.email_confirm:
            sets.append("email_confirmed_at = coalesce(email_confirmed_at, now())")
        if p.phone_confirm:
            sets.append("phone_confirmed_at = coalesce(phone_confirmed_at, now())")
        if p.app_metadata is not None:
            merged = _merge_metadata(json_object(user["raw_app_meta_data"]), p.app_metadata)
            put("raw_app_meta_data = ?::jsonb", json.dumps(merged))
        if p.user_metadata is not None:
            merged = _merge_metadata(json_object(user["raw_user_meta_data"]), p.user_metadata)
            put("raw_user_meta_data = ?::jsonb", json.dumps(merged))
        if p.ban_duration:
            seconds = 0.0 if p.ban_duration == "none" else parse_go_duration(p.ban_duration)
            put(
                "banned_until = case when ?::float8 = 0 then null else now() + make_interval(secs => ?::float8) end",
                seconds,
            )
        try:
            row = await self.pool.fetchrow(f"update auth.users set {', '.join(sets)} where id = $1 returning *", *args)
        except Exception as exc:
            raise self._write_failed(exc, "updating user") from None
        return JSONResponse(user_json(row))

    async def admin_delete_user(self, request: Request) -> Response:
        await self._admin(request)
        user = await self._load_user(request)
        body = await _json_body(request, optional=True)
        soft = body.get("should_soft_delete", False) if isinstance(body, dict) else False
        if not isinstance(soft, bool):
            raise _bad_request("bad_json", "Could not parse request body as JSON: should_soft_delete must be a boolean")
        try:
            if not soft:
                await self.pool.execute("delete from auth.users where id = $1", user["id"])
            elif user["deleted_at"] is None:
                async with self.pool.acquire() as conn, conn.transaction():
                    await conn.execute(
                        """update auth.users set email = $2, phone = $3, encrypted_password = null,
                               deleted_at = now(), updated_at = now() where id = $1""",
                        user["id"],
                        _obfuscate(user["id"], user["email"]) if user["email"] else None,
                        _obfuscate(user["id"], user["phone"]) if user["phone"] else None,
                    )
                    await conn.execute("delete from auth.sessions where user_id = $1", user["id"])
        except Exception as exc:
            raise self._write_failed(exc, "deleting user") from None
        return JSONResponse({})

    async def _email_taken(self, email: str, except_id: uuid.UUID | None) -> bool:
        found = await self.pool.fetchval(
            "select 1 from auth.users where lower(email) = lower($1) and is_sso_user = false "
            "and id is distinct from $2",
            email,
            except_id,
        )
        return found is not None

    async def _phone_taken(self, phone: str, except_id: uuid.UUID | None) -> bool:
        found = await self.pool.fetchval(
            "select 1 from auth.users where phone = $1 and id is distinct from $2", phone, except_id
        )
        return found is not None

    @staticmethod
    def _write_failed(exc: Exception, what: str) -> AuthApiError:
        """GoTrue says only "Database error ..."; locally the reason (a trigger's error, say) helps more."""
        classified = classify(exc)
        if classified.sqlstate == "23505":
            return AuthApiError(422, "email_exists", "A user with this email address has already been registered")
        log.warning("auth API: database error %s: %s", what, classified.message)
        first_line = classified.message.splitlines()[0]
        return AuthApiError(500, "unexpected_failure", f"Database error {what}: {first_line}")

    # -- public endpoints ----------------------------------------------------------------------------
    async def jwks(self, request: Request) -> Response:
        return JSONResponse(public_jwks(self.keys), headers={"Cache-Control": "public, max-age=600"})

    async def health(self, request: Request) -> Response:
        return JSONResponse(
            {
                "version": "workbench-local",
                "name": "GoTrue",
                "description": "GoTrue-compatible Auth of the Supabase Workbench local stand-in",
                "signing": self.signer.algorithm,
            }
        )

    async def not_found(self, request: Request) -> Response:
        message = f"{request.method} {request.url.path} is not served by the local Auth stand-in"
        return _error_response(request, AuthApiError(404, "not_found", message))


def build_app(ctx: ApiContext) -> Starlette:
    """The Auth app for :mod:`workbench.local.api` (raises on a bad ``WORKBENCH_AUTH_SIGNING``)."""
    service = AuthService(ctx)
    ep = service.endpoint
    routes = [
        Route("/health", ep(service.health, public=True), methods=["GET"]),
        Route("/.well-known/jwks.json", ep(service.jwks, public=True), methods=["GET"]),
        Route("/token", ep(service.token), methods=["POST"]),
        Route("/user", ep(service.get_user), methods=["GET"]),
        Route("/logout", ep(service.logout), methods=["POST"]),
        Route("/admin/users", ep(service.admin_list_users), methods=["GET"]),
        Route("/admin/users", ep(service.admin_create_user), methods=["POST"]),
        Route("/admin/users/{user_id}", ep(service.admin_get_user), methods=["GET"]),
        Route("/admin/users/{user_id}", ep(service.admin_update_user), methods=["PUT"]),
        Route("/admin/users/{user_id}", ep(service.admin_delete_user), methods=["DELETE"]),
    ]
    app = Starlette(routes=routes)

    async def handle_404(request: Request, exc: Exception) -> Response:
        return await service.not_found(request)

    app.add_exception_handler(404, handle_404)
    app.add_exception_handler(405, handle_404)
    return app
