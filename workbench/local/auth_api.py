"""Supabase Auth (GoTrue) for the local stand-in, as far as the official ``supabase`` client goes.

Mounted at ``/auth/v1`` by :mod:`workbench.local.api`. It serves what a back end needs from Auth:
password sign-in (bcrypt hashes in ``auth.users.encrypted_password``), refresh, ``GET /user``,
logout, the admin user API (service role only) and the JWKS. Requests, responses and errors follow
GoTrue (supabase/auth ``internal/api``), so code written against the local stand-in behaves the same
against a Supabase project:

- errors are ``{"code": 400, "error_code": "invalid_credentials", "msg": "..."}``, or, when the request
  says ``X-Supabase-Api-Version: 2024-01-01`` (the official clients always do),
  ``{"code": "invalid_credentials", "message": "..."}`` with that header echoed;
- access tokens carry Supabase's claims (:func:`workbench.backend.tokens.access_token_claims`), issuer
  ``<api_url>/auth/v1``, signed HS256 with the JWT secret, or ES256 with the stand-in's key when the
  API process runs with ``WORKBENCH_AUTH_SIGNING=es256``. The ES256 public key is always published at
  ``/.well-known/jwks.json`` (as a Supabase project publishes its standby key), so verifiers that use
  the JWKS work in both modes;
- like Supabase's API gateway, every endpoint except ``/health`` and the JWKS wants an ``apikey``
  header holding the anon or service-role key.

Sign-up (email + password, and anonymous), ``PUT /user`` and the mail flows (``/verify``, ``/recover``,
``/otp``, ``/magiclink``, ``/invite``, ``/admin/generate_link``) are served too: the mails land in the
local inbox (:mod:`workbench.local.inbox`), as the Supabase CLI's mail catcher keeps them. Whether sign-ups
are confirmed at once and whether anonymous sign-ins are allowed is the stand-in's setting
(:class:`AuthSettings`, ``<data>/auth.json``, read on every request).

Left out (impossible or meaningless locally): SMS/phone OTP, OAuth, MFA, SSO, PKCE, captcha, rate limits,
the refresh-token reuse interval. Tokens without ``exp`` are refused (GoTrue accepts them for the service
role): a token that never expires cannot be revoked, so the stand-in asks for one that does.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
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
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import bcrypt
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from workbench.backend.tokens import JWKSCache, MissingClaim, TokenError, TokenVerifier, access_token_claims, mint
from workbench.core.errors import classify
from workbench.core.identity import json_object
from workbench.local.inbox import Inbox, Message

if TYPE_CHECKING:
    import asyncpg

    from workbench.local.api import ApiContext
    from workbench.local.standin import LocalKeys

__all__ = [
    "SIGNING_ENV",
    "AuthApiError",
    "AuthSettings",
    "Signer",
    "build_app",
    "load_auth_settings",
    "save_auth_settings",
    "signer_from_env",
]

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
AUTH_SETTINGS_FILE = "auth.json"  # <data>/auth.json: AuthSettings as JSON
DEFAULT_SITE_URL = "http://127.0.0.1:3000"  # the CLI's default site_url
OTP_TTL = 3600  # the CLI's default [auth.email] otp_expiry
MAX_GO_DURATION = (2**63 - 1) / 1e9  # Go's time.Duration is int64 nanoseconds
MAX_INT64 = 2**63 - 1
# verify_otp type -> the one-time token kinds it may consume (GoTrue keeps one per user and kind).
VERIFY_TOKEN_TYPES = {
    "signup": ("confirmation_token",),
    "invite": ("confirmation_token",),
    "magiclink": ("recovery_token",),
    "recovery": ("recovery_token",),
    "email": ("confirmation_token", "recovery_token"),
    "email_change": ("email_change_token_new",),
}
MAIL_TOKEN_TYPES = {
    "signup": "confirmation_token",
    "invite": "confirmation_token",
    "magiclink": "recovery_token",
    "recovery": "recovery_token",
    "email_change": "email_change_token_new",
}

NO_EXP_MESSAGE = (
    "invalid JWT: the token has no exp claim. GoTrue accepts service-role tokens without one; the local "
    "stand-in refuses them, because a token that never expires cannot be revoked. Mint it with an expiry "
    "(workbench.backend.tokens.mint with exp, or the stand-in's own keys)."
)
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PHONE = re.compile(r"^[1-9]\d{1,14}$")
_GO_DURATION = re.compile(r"^[-+]?((\d+(\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h))+$")
_GO_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_BCRYPT_HASH = re.compile(r"^\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}$")
# A real hash to compare against when the user does not exist, so a miss costs as much as a wrong password.
_DUMMY_HASH = bcrypt.hashpw(b"workbench-dummy-password", bcrypt.gensalt(rounds=BCRYPT_COST))


# --------------------------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class AuthSettings:
    """The stand-in's Auth switches (``[auth]`` of the CLI's ``config.toml``).

    ``autoconfirm``: sign-ups and email changes take effect at once (the CLI's default,
    ``enable_confirmations = false``); off, they wait for the mail in the local inbox.
    ``anonymous_sign_ins``: ``sign_in_anonymously`` works (the CLI's default is off; the stand-in
    turns it on so notebooks can show anonymous users). ``site_url``: where mail links land.
    """

    autoconfirm: bool = True
    anonymous_sign_ins: bool = True
    site_url: str = DEFAULT_SITE_URL


def load_auth_settings(data_dir: Path) -> AuthSettings:
    """The settings in ``<data>/auth.json``; a missing file means the defaults."""
    try:
        raw = json.loads((Path(data_dir) / AUTH_SETTINGS_FILE).read_text())
    except FileNotFoundError:
        return AuthSettings()
    except ValueError as exc:
        raise ValueError(
            f"{Path(data_dir) / AUTH_SETTINGS_FILE} is not valid JSON ({exc}); fix or delete it."
        ) from None
    if not isinstance(raw, dict):
        raise ValueError(f"{Path(data_dir) / AUTH_SETTINGS_FILE} must hold a JSON object.")
    known = {f for f in AuthSettings.__dataclass_fields__}
    return AuthSettings(**{k: v for k, v in raw.items() if k in known})


def save_auth_settings(data_dir: Path, **changes: Any) -> AuthSettings:
    """Change some settings (unknown names are refused); the running API reads them on its next request."""
    unknown = set(changes) - set(AuthSettings.__dataclass_fields__)
    if unknown:
        raise TypeError(
            f"Unknown auth settings: {', '.join(sorted(unknown))} (known: autoconfirm, anonymous_sign_ins, site_url)"
        )
    current = load_auth_settings(data_dir)
    updated = AuthSettings(**(dataclasses.asdict(current) | changes))
    path = Path(data_dir) / AUTH_SETTINGS_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(dataclasses.asdict(updated)))
    os.replace(tmp, path)
    return updated


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
    seconds = sum(float(n) * _GO_UNITS[u] for n, u in _GO_PART.findall(raw))
    if not seconds <= MAX_GO_DURATION:  # also catches inf/nan from absurd digit strings
        raise _bad_request(
            "validation_failed",
            f"invalid format for ban duration: time: invalid duration {raw[:40]!r} (longer than Go's "
            "maximum of about 292 years; use e.g. '876000h' for 100 years or 'none')",
        )
    return sign * seconds


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


def _with_email_provider(user: Mapping[str, Any]) -> dict[str, Any]:
    """app_metadata once a user has a confirmed email (an anonymous user becomes an email user)."""
    meta = json_object(user["raw_app_meta_data"])
    providers = [p for p in meta.get("providers") or [] if p != "anonymous"]
    if "email" not in providers:
        providers.append("email")
    provider = meta.get("provider")
    return meta | {"provider": provider if provider and provider != "anonymous" else "email", "providers": providers}


def _obfuscated_user(email: str, data: Mapping[str, Any] | None) -> dict[str, Any]:
    """What GoTrue answers for a sign-up with a taken address while confirmations are on."""
    now = _ts(dt.datetime.now(dt.UTC))
    return {
        "id": str(uuid.uuid4()),
        "aud": "authenticated",
        "role": "authenticated",
        "email": email,
        "phone": "",
        "confirmation_sent_at": now,
        "app_metadata": {"provider": "email", "providers": ["email"]},
        "user_metadata": dict(data or {}),
        "identities": [],
        "created_at": now,
        "updated_at": now,
        "is_anonymous": False,
    }


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
    """The JSON body; bad JSON, nesting deeper than any real request, or a NUL (which PostgreSQL text
    cannot hold) is a 400 ``bad_json`` here rather than a 500 later."""
    raw = await request.body()
    if not raw.strip():
        if optional:
            return {}
        raise _bad_request("bad_json", "Could not parse request body as JSON: the body is empty")
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise _bad_request("bad_json", "Could not parse request body as JSON: invalid JSON") from None
    except RecursionError:
        raise _bad_request("bad_json", "Could not parse request body as JSON: nested too deeply") from None
    problem = _json_problem(value)
    if problem:
        raise _bad_request("bad_json", f"Could not parse request body as JSON: {problem}")
    return value


def _json_problem(value: Any, depth: int = 0) -> str | None:
    """What PostgreSQL or the handlers cannot take: a NUL character, or nesting over 64 levels."""
    if depth > 64:
        return "nested more than 64 levels deep"
    if isinstance(value, str):
        return "a string contains a NUL character (\\u0000)" if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            found = _json_problem(key, depth + 1) or _json_problem(item, depth + 1)
            if found:
                return found
    elif isinstance(value, list):
        for item in value:
            found = _json_problem(item, depth + 1)
            if found:
                return found
    return None


def _check_query(request: Request) -> None:
    """Control characters in a query value (a NUL, a CR/LF bound for a Location header) are a 400."""
    for name, value in request.query_params.multi_items():
        if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in name + value):
            raise _bad_request("validation_failed", f"The query parameter {name[:40]!r} contains control characters")


def _body_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise _bad_request("bad_json", "Could not parse request body as JSON: expected an object")
    return body


def _opt(body: Mapping[str, Any], name: str, kind: type) -> Any:
    """An optional field of ``kind`` (None when absent or null), type-checked like Go's decoder."""
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        label = {str: "a string", bool: "a boolean", dict: "an object"}.get(kind, kind.__name__)
        raise _bad_request("bad_json", f"Could not parse request body as JSON: {name} must be {label}")
    return value


def _pkce(body: Mapping[str, Any]) -> tuple[str, str] | None:
    """The PKCE challenge a client sent (supabase-py's default flow), checked as GoTrue checks it."""
    challenge = body.get("code_challenge")
    if not challenge:
        return None
    method = str(body.get("code_challenge_method") or "").lower()
    if not isinstance(challenge, str) or method not in ("s256", "plain"):
        raise _bad_request("validation_failed", "PKCE flow requires code_challenge_method to be 's256' or 'plain'")
    if not 43 <= len(challenge) <= 128:
        raise _bad_request("validation_failed", "code challenge has to be between 43 and 128 characters")
    return challenge, method


def _pkce_matches(verifier: str, challenge: str, method: str) -> bool:
    if method == "s256":
        digest = hashlib.sha256(verifier.encode("utf-8")).digest()
        verifier = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    return hmac.compare_digest(verifier.encode("utf-8"), challenge.encode("utf-8"))


def _token_hash(email: str, otp: str) -> str:
    """GoTrue's ``crypto.GenerateTokenHash``: sha224 of address + code, hex."""
    return hashlib.sha224((email + otp).encode("utf-8")).hexdigest()


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
                _check_query(request)
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
        except MissingClaim as exc:
            if exc.reason.endswith(" exp"):
                raise AuthApiError(403, "bad_jwt", NO_EXP_MESSAGE) from None
            raise AuthApiError(403, "bad_jwt", f"invalid JWT: {exc.reason}") from None
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
        if grant == "pkce":
            return await self._pkce_grant(request)
        raise OAuthError("unsupported_grant_type", "")

    async def _pkce_grant(self, request: Request) -> Response:
        """``exchange_code_for_session``: the auth code from a mail link plus the client's code verifier."""
        body = _body_object(await _json_body(request))
        code, verifier = _opt(body, "auth_code", str), _opt(body, "code_verifier", str)
        if not code or not verifier:
            raise _bad_request(
                "validation_failed", "invalid request: both auth code and code verifier should be non-empty"
            )
        async with self.pool.acquire() as conn, conn.transaction():
            flow = await conn.fetchrow("delete from auth.flow_state where auth_code = $1 returning *", code)
            if flow is None or flow["created_at"] < dt.datetime.now(dt.UTC) - dt.timedelta(seconds=300):
                raise AuthApiError(404, "flow_state_not_found", "invalid flow state, no valid flow state found")
            if not _pkce_matches(verifier, flow["code_challenge"], flow["code_challenge_method"]):
                raise AuthApiError(
                    403, "bad_code_verifier", "code challenge does not match previously saved code verifier"
                )
            return await self._start_session(conn, flow["user_id"])

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

        async with self.pool.acquire() as conn, conn.transaction():
            return await self._start_session(conn, user["id"])

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
            if page > MAX_INT64 or per_page > MAX_INT64 or (page - 1) * per_page > MAX_INT64:
                raise ValueError("page and per_page must fit a 64-bit integer")
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

    # -- sessions, shared by sign-in, sign-up and verify ---------------------------------------------
    async def _start_session(self, conn: asyncpg.Connection, user_id: uuid.UUID) -> JSONResponse:
        """A new session and refresh token for a user who just proved who they are."""
        user = await conn.fetchrow(
            "update auth.users set last_sign_in_at = now(), updated_at = now() where id = $1 returning *", user_id
        )
        session_id = await conn.fetchval(
            "insert into auth.sessions (user_id, aal) values ($1, 'aal1') returning id", user_id
        )
        refresh = secrets.token_urlsafe(24)
        await conn.execute(
            "insert into auth.refresh_tokens (token, user_id, session_id) values ($1, $2, $3)",
            refresh,
            user_id,
            session_id,
        )
        return self._token_response(user, session_id, refresh, time.time())

    # -- mail ----------------------------------------------------------------------------------------
    @property
    def settings(self) -> AuthSettings:
        return load_auth_settings(self.ctx.data_dir)

    @property
    def inbox(self) -> Inbox:
        return Inbox(self.ctx.data_dir)

    def _redirect_to(self, request: Request, body: Mapping[str, Any] | None = None) -> str:
        value = request.query_params.get("redirect_to") or (body or {}).get("redirect_to") or ""
        if isinstance(value, str) and any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
            raise _bad_request("validation_failed", "redirect_to contains control characters")
        return value if isinstance(value, str) and value else self.settings.site_url

    async def _one_time_token(
        self,
        conn: asyncpg.Connection,
        user_id: uuid.UUID,
        kind: str,
        to: str,
        redirect_to: str,
        pkce: tuple[str, str] | None = None,
    ) -> tuple[str, str, str]:
        """A fresh code for ``kind`` (replacing the user's previous one): (otp, token_hash, action link)."""
        otp = f"{secrets.randbelow(10**6):06d}"
        token_hash = _token_hash(to, otp)
        await conn.execute(
            """insert into auth.one_time_tokens (user_id, token_type, token_hash, relates_to, code_challenge,
                   code_challenge_method) values ($1, $2, $3, $4, $5, $6)
               on conflict (user_id, token_type) do update set token_hash = excluded.token_hash,
                   relates_to = excluded.relates_to, code_challenge = excluded.code_challenge,
                   code_challenge_method = excluded.code_challenge_method, created_at = now(), updated_at = now()""",
            user_id,
            MAIL_TOKEN_TYPES[kind],
            token_hash,
            to,
            pkce[0] if pkce else None,
            pkce[1] if pkce else None,
        )
        link = f"{self.issuer}/verify?token={token_hash}&type={kind}&redirect_to={quote(redirect_to, safe='')}"
        return otp, token_hash, link

    async def _mail(
        self, user_id: uuid.UUID, kind: str, to: str, redirect_to: str, pkce: tuple[str, str] | None = None
    ) -> Message:
        """Store a one-time token and put its mail in the local inbox (after the token is committed)."""
        async with self.pool.acquire() as conn, conn.transaction():
            otp, token_hash, link = await self._one_time_token(conn, user_id, kind, to, redirect_to, pkce)
        return self.inbox.deliver(to=to, type=kind, link=link, otp=otp, token_hash=token_hash, redirect_to=redirect_to)

    async def _user_by_email(self, conn: asyncpg.Connection | asyncpg.Pool, email: str) -> asyncpg.Record | None:
        return await conn.fetchrow(
            "select * from auth.users where lower(email) = lower($1) and is_sso_user = false", email
        )

    async def _insert_user(
        self,
        conn: asyncpg.Connection | asyncpg.Pool,
        *,
        email: str | None,
        password: str | None,
        user_metadata: Mapping[str, Any] | None,
        confirmed: bool,
        anonymous: bool = False,
        invited: bool = False,
    ) -> asyncpg.Record:
        providers = ["email"] if email else []
        app_metadata = {"provider": "email", "providers": providers} if email else {}
        encrypted = await _hash_password(password) if password else None
        try:
            return await conn.fetchrow(
                """insert into auth.users (id, aud, role, email, encrypted_password, email_confirmed_at, invited_at,
                       raw_app_meta_data, raw_user_meta_data, is_anonymous, created_at, updated_at)
                   values ($1, 'authenticated', 'authenticated', $2, $3, case when $4 then now() end,
                       case when $5 then now() end, $6::jsonb, $7::jsonb, $8, now(), now())
                   returning *""",
                uuid.uuid4(),
                email,
                encrypted,
                confirmed,
                invited,
                json.dumps(app_metadata),
                json.dumps(dict(user_metadata or {})),
                anonymous,
            )
        except Exception as exc:
            raise self._write_failed(exc, "saving new user") from None

    # -- sign-up -------------------------------------------------------------------------------------
    async def signup(self, request: Request) -> Response:
        """``POST /signup``: email + password, or nothing at all (an anonymous user)."""
        body = _body_object(await _json_body(request))
        email, phone, password = _opt(body, "email", str), _opt(body, "phone", str), _opt(body, "password", str)
        data = _opt(body, "data", dict)
        settings = self.settings
        if not email and not phone and not password:
            if not settings.anonymous_sign_ins:
                raise AuthApiError(
                    422,
                    "anonymous_provider_disabled",
                    "Anonymous sign-ins are disabled (turn them on with "
                    "workbench.local.auth_api.save_auth_settings(data_dir, anonymous_sign_ins=True))",
                )
            async with self.pool.acquire() as conn, conn.transaction():
                user = await self._insert_user(
                    conn, email=None, password=None, user_metadata=data, confirmed=False, anonymous=True
                )
                return await self._start_session(conn, user["id"])
        if phone:
            raise AuthApiError(
                422, "phone_provider_disabled", "Phone signups are disabled: the local stand-in sends no SMS"
            )
        if not email:
            raise _bad_request("validation_failed", "To signup, please provide your email")
        email = _validate_email(email)
        if not password:
            raise AuthApiError(422, "validation_failed", "Signup requires a valid password")
        _check_password(password)
        existing = await self._user_by_email(self.pool, email)
        if existing is not None and existing["email_confirmed_at"] is not None:
            if settings.autoconfirm:
                raise AuthApiError(422, "user_already_exists", "User already registered")
            # GoTrue with confirmations on answers as for a new user, so sign-up cannot probe addresses.
            return JSONResponse(_obfuscated_user(email, data))
        async with self.pool.acquire() as conn, conn.transaction():
            if existing is None:
                user = await self._insert_user(
                    conn, email=email, password=password, user_metadata=data, confirmed=settings.autoconfirm
                )
            else:  # an unconfirmed sign-up signs up again: new password and data, a new mail
                user = await conn.fetchrow(
                    """update auth.users set encrypted_password = $2, raw_user_meta_data = $3::jsonb,
                           updated_at = now() where id = $1 returning *""",
                    existing["id"],
                    await _hash_password(password),
                    json.dumps(data or {}),
                )
            if settings.autoconfirm:
                return await self._start_session(conn, user["id"])
        await self._mail(user["id"], "signup", email, self._redirect_to(request, body), _pkce(body))
        return JSONResponse(user_json(user))

    # -- the signed-in user changes itself -----------------------------------------------------------
    async def update_user(self, request: Request) -> Response:
        """``PUT /user``: password, email (confirmed by mail unless autoconfirm) and ``data``."""
        caller = await self._authenticated(request)
        user = caller.user
        assert user is not None
        body = _body_object(await _json_body(request))
        email, password = _opt(body, "email", str), _opt(body, "password", str)
        data = _opt(body, "data", dict)
        if _opt(body, "phone", str):
            raise AuthApiError(
                422, "phone_provider_disabled", "Changing the phone needs an SMS: the local stand-in sends none"
            )
        sets: list[str] = ["updated_at = now()"]
        args: list[Any] = [user["id"]]

        def put(column_sql: str, value: Any) -> None:
            args.append(value)
            sets.append(column_sql.replace("?", f"${len(args)}"))

        if password is not None:
            _check_password(password)
            if user["encrypted_password"] and await _password_matches(password, user["encrypted_password"]):
                raise AuthApiError(422, "same_password", "New password should be different from the old password.")
            put("encrypted_password = ?", await _hash_password(password))
        if data is not None:
            put(
                "raw_user_meta_data = ?::jsonb",
                json.dumps(_merge_metadata(json_object(user["raw_user_meta_data"]), data)),
            )
        new_email: str | None = None
        if email:
            email = _validate_email(email)
            if email != (user["email"] or "").lower():
                if await self._email_taken(email, user["id"]):
                    raise AuthApiError(
                        422, "email_exists", "A user with this email address has already been registered"
                    )
                if self.settings.autoconfirm:
                    put("email = ?", email)
                    sets.append("email_confirmed_at = now(), is_anonymous = false")
                    put("raw_app_meta_data = ?::jsonb", json.dumps(_with_email_provider(user)))
                else:
                    new_email = email
        try:
            row = await self.pool.fetchrow(f"update auth.users set {', '.join(sets)} where id = $1 returning *", *args)
        except Exception as exc:
            raise self._write_failed(exc, "updating user") from None
        out = user_json(row)
        if new_email is not None:
            await self._mail(row["id"], "email_change", new_email, self._redirect_to(request, body), _pkce(body))
            out["new_email"] = new_email
            out["email_change_sent_at"] = _ts(dt.datetime.now(dt.UTC))
        return JSONResponse(out)

    # -- mail flows ----------------------------------------------------------------------------------
    async def recover(self, request: Request) -> Response:
        """``POST /recover``: a reset mail if the address is known; the same empty answer either way."""
        body = _body_object(await _json_body(request))
        email = _opt(body, "email", str)
        if not email:
            raise _bad_request("validation_failed", "Password recovery requires an email")
        email = _validate_email(email)
        user = await self._user_by_email(self.pool, email)
        if user is not None and user["deleted_at"] is None:
            await self._mail(user["id"], "recovery", email, self._redirect_to(request, body), _pkce(body))
        return JSONResponse({})

    async def otp(self, request: Request) -> Response:
        """``POST /otp`` (and the older ``/magiclink``): a sign-in mail, creating the user unless told not to."""
        body = _body_object(await _json_body(request))
        if _opt(body, "phone", str):
            raise AuthApiError(
                422, "phone_provider_disabled", "SMS one-time codes are not served: the local stand-in sends no SMS"
            )
        email = _opt(body, "email", str)
        if not email:
            raise _bad_request("validation_failed", "An email address is required")
        email = _validate_email(email)
        create = body.get("create_user", True)
        if not isinstance(create, bool):
            raise _bad_request("bad_json", "Could not parse request body as JSON: create_user must be a boolean")
        data = _opt(body, "data", dict)
        redirect_to = self._redirect_to(request, body)
        user = await self._user_by_email(self.pool, email)
        if user is None:
            if not create:
                raise AuthApiError(422, "otp_disabled", "Signups not allowed for otp")
            user = await self._insert_user(
                self.pool, email=email, password=None, user_metadata=data, confirmed=self.settings.autoconfirm
            )
        if _is_banned(user):
            raise _bad_request("user_banned", "User is banned")
        kind = "magiclink" if user["email_confirmed_at"] is not None else "signup"
        await self._mail(user["id"], kind, email, redirect_to, _pkce(body))
        return JSONResponse({})

    async def resend(self, request: Request) -> Response:
        """``POST /resend``: the sign-up or email-change mail again, with a new code (the old one stops working)."""
        body = _body_object(await _json_body(request))
        kind = _opt(body, "type", str) or ""
        if kind in ("sms", "phone_change"):
            raise AuthApiError(422, "phone_provider_disabled", "The local stand-in sends no SMS")
        if kind not in ("signup", "email_change"):
            raise _bad_request(
                "validation_failed", "Missing one of these types: signup, email_change, sms, phone_change"
            )
        email = _opt(body, "email", str)
        if not email:
            raise _bad_request("validation_failed", "An email address is required")
        email = _validate_email(email)
        user = await self._user_by_email(self.pool, email)
        if user is None:
            return JSONResponse({})  # as for /recover: no probing which addresses exist
        redirect_to = self._redirect_to(request, body)
        if kind == "signup":
            if user["email_confirmed_at"] is not None:
                raise AuthApiError(422, "email_address_not_authorized", "Email address already confirmed")
            await self._mail(user["id"], "signup", email, redirect_to, _pkce(body))
            return JSONResponse({})
        pending = await self.pool.fetchval(
            "select relates_to from auth.one_time_tokens where user_id = $1 and token_type = 'email_change_token_new'",
            user["id"],
        )
        if pending is None:
            raise _bad_request("validation_failed", "There is no email change to confirm for this address")
        await self._mail(user["id"], "email_change", pending, redirect_to, _pkce(body))
        return JSONResponse({})

    async def invite(self, request: Request) -> Response:
        """``POST /invite`` (service role): create the user if needed and mail an invite."""
        await self._admin(request)
        body = _body_object(await _json_body(request))
        email = _opt(body, "email", str)
        if not email:
            raise _bad_request("validation_failed", "An email address is required")
        email = _validate_email(email)
        data = _opt(body, "data", dict)
        user = await self._invited_user(email, data)
        await self._mail(user["id"], "invite", email, self._redirect_to(request, body))
        return JSONResponse(user_json(user))

    async def _invited_user(self, email: str, data: Mapping[str, Any] | None) -> asyncpg.Record:
        user = await self._user_by_email(self.pool, email)
        if user is not None and user["email_confirmed_at"] is not None:
            raise AuthApiError(422, "email_exists", "A user with this email address has already been registered")
        if user is None:
            return await self._insert_user(
                self.pool, email=email, password=None, user_metadata=data, confirmed=False, invited=True
            )
        return await self.pool.fetchrow(
            "update auth.users set invited_at = now(), updated_at = now() where id = $1 returning *", user["id"]
        )

    async def generate_link(self, request: Request) -> Response:
        """``POST /admin/generate_link`` (service role): the link and code a mail would carry, no mail sent."""
        await self._admin(request)
        body = _body_object(await _json_body(request))
        kind = _opt(body, "type", str) or ""
        email = _opt(body, "email", str)
        if not email:
            raise _bad_request("validation_failed", "An email address is required")
        email = _validate_email(email)
        data = _opt(body, "data", dict)
        redirect_to = self._redirect_to(request, body)
        to = email
        if kind == "signup":
            password = _opt(body, "password", str)
            if not password:
                raise _bad_request("validation_failed", "Signup requires a valid password")
            _check_password(password)
            user = await self._user_by_email(self.pool, email)
            if user is not None and user["email_confirmed_at"] is not None:
                raise AuthApiError(422, "email_exists", "A user with this email address has already been registered")
            if user is None:
                user = await self._insert_user(
                    self.pool, email=email, password=password, user_metadata=data, confirmed=False
                )
        elif kind == "invite":
            user = await self._invited_user(email, data)
        elif kind in ("magiclink", "recovery", "email_change_current", "email_change_new"):
            user = await self._user_by_email(self.pool, email)
            if user is None:
                raise AuthApiError(404, "user_not_found", "User with this email not found")
            if kind.startswith("email_change"):
                new_email = _opt(body, "new_email", str)
                if not new_email:
                    raise _bad_request("validation_failed", "The new email address is required")
                to = _validate_email(new_email)
                if await self._email_taken(to, user["id"]):
                    raise AuthApiError(
                        422, "email_exists", "A user with this email address has already been registered"
                    )
                kind = "email_change"
        else:
            raise _bad_request(
                "validation_failed",
                "Invalid email action link type requested: use signup, invite, magiclink, recovery, "
                "email_change_current or email_change_new",
            )
        async with self.pool.acquire() as conn, conn.transaction():
            otp, token_hash, link = await self._one_time_token(conn, user["id"], kind, to, redirect_to)
        out = user_json(user) | {
            "action_link": link,
            "email_otp": otp,
            "hashed_token": token_hash,
            "verification_type": kind,
            "redirect_to": redirect_to,
        }
        return JSONResponse(out)

    # -- verify --------------------------------------------------------------------------------------
    async def _consume(self, conn: asyncpg.Connection, kind: str, token_hash: str) -> asyncpg.Record:
        """Use up a one-time token of ``kind`` and apply what it confirms; returns the user row."""
        user, _ = await self._consume_token(conn, kind, token_hash)
        return user

    async def _consume_token(
        self, conn: asyncpg.Connection, kind: str, token_hash: str
    ) -> tuple[asyncpg.Record, tuple[str, str] | None]:
        """:meth:`_consume`, also returning the PKCE challenge the token was issued with."""
        row = await conn.fetchrow(
            """delete from auth.one_time_tokens where token_hash = $1 and token_type = any($2::text[])
               returning user_id, token_type, relates_to, created_at, code_challenge, code_challenge_method""",
            token_hash,
            list(VERIFY_TOKEN_TYPES[kind]),
        )
        if row is None or row["created_at"] < dt.datetime.now(dt.UTC) - dt.timedelta(seconds=OTP_TTL):
            raise AuthApiError(403, "otp_expired", "Token has expired or is invalid")
        user = await conn.fetchrow("select * from auth.users where id = $1 for update", row["user_id"])
        if user is None or user["deleted_at"] is not None:
            raise AuthApiError(403, "otp_expired", "Token has expired or is invalid")
        if _is_banned(user):
            raise _bad_request("user_banned", "User is banned")
        pkce = (row["code_challenge"], row["code_challenge_method"]) if row["code_challenge"] else None
        if row["token_type"] == "email_change_token_new":
            if await self._email_taken(row["relates_to"], user["id"]):
                raise AuthApiError(422, "email_exists", "A user with this email address has already been registered")
            changed = await conn.fetchrow(
                """update auth.users set email = $2, email_confirmed_at = now(), is_anonymous = false,
                       raw_app_meta_data = $3::jsonb, updated_at = now() where id = $1 returning *""",
                user["id"],
                row["relates_to"],
                json.dumps(_with_email_provider(user)),
            )
            return changed, pkce
        confirmed = await conn.fetchrow(
            """update auth.users set email_confirmed_at = coalesce(email_confirmed_at, now()), updated_at = now()
               where id = $1 returning *""",
            user["id"],
        )
        return confirmed, pkce

    async def verify(self, request: Request) -> Response:
        """``POST /verify`` (``verify_otp``): a token hash, or the address and its six-digit code."""
        body = _body_object(await _json_body(request))
        kind = _opt(body, "type", str) or ""
        if kind not in VERIFY_TOKEN_TYPES:
            if kind in ("sms", "phone_change"):
                raise AuthApiError(422, "phone_provider_disabled", "The local stand-in sends no SMS to verify")
            raise _bad_request(
                "validation_failed", f"Verify requires a verification type: {', '.join(VERIFY_TOKEN_TYPES)}"
            )
        token_hash, token, email = _opt(body, "token_hash", str), _opt(body, "token", str), _opt(body, "email", str)
        if not token_hash:
            if not token or not email:
                raise _bad_request("validation_failed", "Verify requires either a token_hash, or an email and a token")
            token_hash = _token_hash(_validate_email(email), token.strip())
        async with self.pool.acquire() as conn, conn.transaction():
            user = await self._consume(conn, kind, token_hash)
            return await self._start_session(conn, user["id"])

    async def verify_link(self, request: Request) -> Response:
        """``GET /verify``: the link in a mail; redirects with the session (or the error) in the fragment."""
        kind = request.query_params.get("type", "")
        token = request.query_params.get("token", "")
        redirect_to = self._redirect_to(request)
        try:
            if kind not in VERIFY_TOKEN_TYPES or not token or "\x00" in token:
                raise AuthApiError(403, "otp_expired", "Email link is invalid or has expired")
            async with self.pool.acquire() as conn, conn.transaction():
                user, pkce = await self._consume_token(conn, kind, token)
                if pkce is not None:  # the PKCE flow: an auth code the client exchanges with its verifier
                    code = str(uuid.uuid4())
                    await conn.execute(
                        """insert into auth.flow_state (user_id, auth_code, code_challenge, code_challenge_method,
                               authentication_method) values ($1, $2, $3, $4, $5)""",
                        user["id"],
                        code,
                        pkce[0],
                        pkce[1],
                        kind,
                    )
                    sep = "&" if "?" in redirect_to else "?"
                    return Response(status_code=303, headers={"Location": f"{redirect_to}{sep}code={code}"})
                session = json.loads(bytes((await self._start_session(conn, user["id"])).body))
        except AuthApiError as exc:
            fragment = urlencode(
                {"error": "access_denied", "error_code": exc.error_code, "error_description": exc.message}
            )
            return Response(status_code=303, headers={"Location": f"{redirect_to}#{fragment}"})
        fragment = urlencode(
            {
                "access_token": session["access_token"],
                "expires_at": session["expires_at"],
                "expires_in": session["expires_in"],
                "refresh_token": session["refresh_token"],
                "token_type": "bearer",
                "type": kind,
            }
        )
        return Response(status_code=303, headers={"Location": f"{redirect_to}#{fragment}", "Cache-Control": "no-store"})

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
        Route("/user", ep(service.update_user), methods=["PUT"]),
        Route("/signup", ep(service.signup), methods=["POST"]),
        Route("/recover", ep(service.recover), methods=["POST"]),
        Route("/resend", ep(service.resend), methods=["POST"]),
        Route("/otp", ep(service.otp), methods=["POST"]),
        Route("/magiclink", ep(service.otp), methods=["POST"]),
        Route("/verify", ep(service.verify), methods=["POST"]),
        Route("/verify", ep(service.verify_link, public=True), methods=["GET"]),
        Route("/invite", ep(service.invite), methods=["POST"]),
        Route("/admin/generate_link", ep(service.generate_link), methods=["POST"]),
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
