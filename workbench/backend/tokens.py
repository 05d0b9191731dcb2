"""Supabase JWTs: verify them the way a back end must, and mint them for a local stand-in.

Verification follows Supabase's rules (see shared/supabase.md section 3): HS256 with the project's JWT
secret, or ES256/RS256 with a key picked by `kid` from the project's JWKS; then `exp`, `aud`
(`authenticated`) and, when configured, `iss`. Every failure comes out as a typed `TokenError` whose
`reason` is a fixed, short string: safe for a `WWW-Authenticate` header and free of token or secret.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm

from workbench.core import settings as core_settings

__all__ = [
    "InvalidAudience",
    "InvalidIssuer",
    "InvalidSignature",
    "JWKSCache",
    "KeySetUnavailable",
    "MalformedToken",
    "MissingClaim",
    "TokenError",
    "TokenExpired",
    "TokenNotYetValid",
    "TokenTooLarge",
    "TokenVerifier",
    "UnknownKey",
    "UnsupportedAlgorithm",
    "access_token_claims",
    "api_key_claims",
    "generate_es256_key",
    "mint",
]

HS256 = "HS256"
ES256 = "ES256"
RS256 = "RS256"
ASYMMETRIC_ALGORITHMS = (ES256, RS256)
SUPPORTED_ALGORITHMS = (HS256, *ASYMMETRIC_ALGORITHMS)

# Compact JWS only: three base64url segments. The signature may be empty so that `alg: none` is
# reported as such rather than as garbage.
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")


# --------------------------------------------------------------------------------------------- errors


class TokenError(Exception):
    """Why a token was refused. `reason` is short, fixed text: never the token, a claim value or a secret."""

    reason: str = "invalid token"
    status_code: int = 401

    def __init__(self, reason: str | None = None) -> None:
        if reason is not None:
            self.reason = reason
        super().__init__(self.reason)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.reason!r})"

    @property
    def www_authenticate(self) -> str:
        """The RFC 6750 challenge for a 401 answer."""
        return f'Bearer error="invalid_token", error_description="{self.reason}"'


class MalformedToken(TokenError):
    """Not a well-formed JWS/JWT (bad base64, JSON, types...)."""

    reason = "malformed token"


class TokenTooLarge(TokenError):
    """Refused before parsing, so a huge header cannot cost CPU or memory."""

    reason = "token too large"


class UnsupportedAlgorithm(TokenError):
    """`alg` is none, not allowed, not configured, or does not fit the key (e.g. RS/HS confusion)."""

    reason = "algorithm not allowed"


class InvalidSignature(TokenError):
    reason = "invalid signature"


class TokenExpired(TokenError):
    reason = "token expired"


class TokenNotYetValid(TokenError):
    """`nbf` or `iat` lies in the future beyond the leeway."""

    reason = "token not yet valid"


class InvalidAudience(TokenError):
    reason = "invalid audience"


class InvalidIssuer(TokenError):
    reason = "invalid issuer"


class UnknownKey(TokenError):
    """The `kid` is not in the JWKS, even after the one refetch allowed per interval."""

    reason = "unknown signing key"


class MissingClaim(TokenError):
    reason = "missing required claim"


class RoleNotAllowed(TokenError):
    """The token's `role` is not one an API caller may take (Supabase: anon, authenticated, service_role).
    A signed token can still carry `postgres` (an admin can set `auth.users.role`): refused, never used."""

    reason = "role not allowed"
    status_code = 403

    @property
    def www_authenticate(self) -> str:
        return f'Bearer error="insufficient_scope", error_description="{self.reason}"'


DEFAULT_ALLOWED_ROLES: frozenset[str] = frozenset(core_settings.DEFAULT_ALLOWED_ROLES)


class KeySetUnavailable(TokenError):
    """The JWKS could not be fetched or parsed: the server's fault, not the client's."""

    reason = "signing keys unavailable"
    status_code = 503


def _map_pyjwt_error(exc: jwt.PyJWTError) -> TokenError:
    """Translate pyjwt's exceptions; their messages are dropped (they may echo token content)."""
    if isinstance(exc, jwt.ExpiredSignatureError):
        return TokenExpired()
    if isinstance(exc, jwt.ImmatureSignatureError):
        return TokenNotYetValid()
    if isinstance(exc, jwt.InvalidAudienceError):
        return InvalidAudience()
    if isinstance(exc, jwt.InvalidIssuerError):
        return InvalidIssuer()
    if isinstance(exc, jwt.InvalidSignatureError):
        return InvalidSignature()
    if isinstance(exc, jwt.MissingRequiredClaimError):
        # Audience and issuer problems keep their own types, whatever pyjwt calls them.
        if exc.claim == "aud":
            return InvalidAudience("token has no audience")
        if exc.claim == "iss":
            return InvalidIssuer("token has no issuer")
        # The claim name comes from our own configuration, never from the token.
        return MissingClaim(f"missing required claim {exc.claim}")
    if isinstance(exc, jwt.InvalidAlgorithmError):
        return UnsupportedAlgorithm()
    if isinstance(exc, jwt.InvalidKeyError):
        return UnsupportedAlgorithm("alg does not match key type")
    return MalformedToken()


@contextmanager
def _as_token_errors() -> Iterator[None]:
    """Whatever goes wrong while looking at untrusted bytes becomes a `TokenError`, nothing else."""
    try:
        yield
    except TokenError:
        raise
    except jwt.PyJWTError as exc:
        raise _map_pyjwt_error(exc) from None
    except Exception:
        raise MalformedToken() from None


# ----------------------------------------------------------------------------------------------- JWKS


def _key_fits(jwk: jwt.PyJWK, alg: str) -> bool:
    """An EC P-256 key only for ES256, an RSA key only for RS256."""
    if jwk.algorithm_name != alg:
        return False
    if alg == ES256:
        return (
            jwk.key_type == "EC"
            and isinstance(jwk.key, ec.EllipticCurvePublicKey)
            and isinstance(jwk.key.curve, ec.SECP256R1)
        )
    if alg == RS256:
        return jwk.key_type == "RSA" and isinstance(jwk.key, rsa.RSAPublicKey)
    return False


@dataclass
class JWKSCache:
    """Public signing keys by `kid`, plus when they were last fetched (for rate limiting)."""

    keys: dict[str, jwt.PyJWK] = field(default_factory=dict)
    fetched_at: float | None = None
    last_fetch_failed: bool = False
    fetch_count: int = 0

    def get(self, kid: str) -> jwt.PyJWK | None:
        return self.keys.get(kid)

    def may_fetch(self, now: float, interval: float) -> bool:
        """At most one fetch per interval, failed attempts included, so a bad kid cannot hammer Auth."""
        return self.fetched_at is None or abs(now - self.fetched_at) >= interval

    def begin_fetch(self, now: float) -> None:
        self.fetched_at = now
        self.fetch_count += 1

    def fail(self) -> None:
        """Keep the keys we had: an outage of the JWKS endpoint must not revoke valid keys."""
        self.last_fetch_failed = True

    def load(self, document: Any) -> None:
        """Replace the key set (so removed keys stop working); skip keys we cannot or must not use."""
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            self.fail()
            raise KeySetUnavailable("signing key set is invalid")
        keys: dict[str, jwt.PyJWK] = {}
        for data in document["keys"]:
            if not isinstance(data, dict) or not isinstance(data.get("kid"), str):
                continue
            if data.get("kty") not in ("EC", "RSA") or "d" in data:
                continue  # symmetric or private material has no business in a public JWKS
            if data.get("use", "sig") != "sig":
                continue
            try:
                keys[data["kid"]] = jwt.PyJWK(data)
            except Exception:
                continue
        self.keys = keys
        self.last_fetch_failed = False


# ------------------------------------------------------------------------------------------- verifier


@dataclass(frozen=True)
class _Header:
    alg: str
    kid: str | None


@dataclass(eq=False)
class TokenVerifier:
    """Verifies Supabase access tokens; `verify` and `averify` share one core and differ only in I/O."""

    jwt_secret: str | None = field(default=None, repr=False)
    jwks_url: str | None = None
    audience: str | Sequence[str] | None = "authenticated"
    issuer: str | None = None
    leeway: float = 30
    max_token_bytes: int = 8192
    required_claims: Sequence[str] = ("sub", "role")
    # Roles a verified token may carry; None accepts any (only for code that never acts on the role).
    allowed_roles: frozenset[str] | None = DEFAULT_ALLOWED_ROLES
    jwks_refresh_interval: float = 30
    jwks_timeout: float = 5.0
    http_client: httpx.Client | None = field(default=None, repr=False)
    async_http_client: httpx.AsyncClient | None = field(default=None, repr=False)
    now: Callable[[], float] = field(default=time.time, repr=False)
    jwks: JWKSCache = field(default_factory=JWKSCache, repr=False)
    _sync_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _async_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = field(
        default_factory=weakref.WeakKeyDictionary, init=False, repr=False
    )

    # -- public API

    def verify(self, token: str) -> dict[str, Any]:
        """Verify and return the claims; raises a `TokenError` subclass. May fetch the JWKS (blocking)."""
        header = self._parse(token)
        if self._key_missing(header):
            # Under the lock, a thread that arrives while another fetches waits for that fetch.
            with self._sync_lock:
                if self._should_fetch(header):
                    self._fetch_sync()
        return self._finish(token, header)

    async def averify(self, token: str) -> dict[str, Any]:
        """The async twin of `verify`, for async routes: JWKS fetches do not block the event loop."""
        header = self._parse(token)
        if self._key_missing(header):
            # Concurrent requests at a cold start wait for the one fetch instead of failing.
            async with self._async_lock():
                if self._should_fetch(header):
                    await self._fetch_async()
        return self._finish(token, header)

    # -- the shared, I/O-free core

    def _parse(self, token: str) -> _Header:
        """Cheap checks on the unverified header, before any key or network is touched."""
        if not isinstance(token, str):
            raise MalformedToken("token must be a string")
        # A str never has fewer UTF-8 bytes than characters, so this refuses 10 MB without encoding it.
        if len(token) > self.max_token_bytes:
            raise TokenTooLarge()
        with _as_token_errors():
            if len(token.encode("utf-8")) > self.max_token_bytes:
                raise TokenTooLarge()
            if not _COMPACT_JWS.fullmatch(token):
                raise MalformedToken("token is not a compact JWS")
            header = jwt.get_unverified_header(token)
            alg = header.get("alg")
            kid = header.get("kid")
            if not isinstance(alg, str):
                raise MalformedToken("token header has no alg")
            if kid is not None and not isinstance(kid, str):
                raise MalformedToken("token header kid is not a string")
            if alg.lower() == "none":
                raise UnsupportedAlgorithm("alg none is not allowed")
            if alg not in SUPPORTED_ALGORITHMS:
                raise UnsupportedAlgorithm("algorithm not allowed")
            if alg == HS256 and self.jwt_secret is None:
                raise UnsupportedAlgorithm("HS256 not accepted: no JWT secret configured")
            if alg in ASYMMETRIC_ALGORITHMS and self.jwks_url is None:
                raise UnsupportedAlgorithm(f"{alg} not accepted: no JWKS configured")
            return _Header(alg=alg, kid=kid)

    def _key_missing(self, header: _Header) -> bool:
        return header.alg in ASYMMETRIC_ALGORITHMS and header.kid is not None and self.jwks.get(header.kid) is None

    def _should_fetch(self, header: _Header) -> bool:
        """Call with the fetch lock held, so the answer cannot change under a concurrent fetch."""
        return self._key_missing(header) and self.jwks.may_fetch(self.now(), self.jwks_refresh_interval)

    def _key_for(self, header: _Header) -> Any:
        if header.alg == HS256:
            assert self.jwt_secret is not None
            if header.kid is not None and self.jwks.get(header.kid) is not None:
                # The kid names a public key: an HS256 token "signed" with it is RS/HS confusion.
                raise UnsupportedAlgorithm("alg does not match key type")
            return self.jwt_secret.encode("utf-8")
        if header.kid is None:
            raise UnknownKey("token header has no kid")
        jwk = self.jwks.get(header.kid)
        if jwk is None:
            if self.jwks.last_fetch_failed:
                raise KeySetUnavailable()
            raise UnknownKey()
        if not _key_fits(jwk, header.alg):
            raise UnsupportedAlgorithm("alg does not match key type")
        return jwk.key

    def _finish(self, token: str, header: _Header) -> dict[str, Any]:
        key = self._key_for(header)
        with _as_token_errors():
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[header.alg],
                audience=self.audience if isinstance(self.audience, str | None) else list(self.audience),
                issuer=self.issuer,
                options={
                    "require": ["exp", *self.required_claims],
                    # Times are checked below against the injectable clock, not pyjwt's datetime.now().
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    # audience=None means "do not check", not "refuse any token that has an aud".
                    "verify_aud": self.audience is not None,
                },
            )
            self._check_times(claims)
            for name in ("sub", "role"):
                if name in claims and not (isinstance(claims[name], str) and claims[name]):
                    raise MalformedToken(f"{name} claim must be a non-empty string")
        if self.allowed_roles is not None and "role" in claims and claims["role"] not in self.allowed_roles:
            raise RoleNotAllowed()
        return claims

    def _check_times(self, claims: Mapping[str, Any]) -> None:
        now = self.now()
        if _number(claims, "exp") <= now - self.leeway:
            raise TokenExpired()
        if "nbf" in claims and _number(claims, "nbf") > now + self.leeway:
            raise TokenNotYetValid("token not yet valid (nbf)")
        if "iat" in claims and _number(claims, "iat") > now + self.leeway:
            raise TokenNotYetValid("token issued in the future (iat)")

    # -- JWKS I/O

    def _fetch_sync(self) -> None:
        assert self.jwks_url is not None
        self.jwks.begin_fetch(self.now())
        try:
            if self.http_client is not None:
                response = self.http_client.get(self.jwks_url)
            else:
                with httpx.Client(timeout=self.jwks_timeout) as client:
                    response = client.get(self.jwks_url)
            response.raise_for_status()
            document = response.json()
        except Exception as exc:
            self.jwks.fail()
            raise KeySetUnavailable() from exc
        self.jwks.load(document)

    async def _fetch_async(self) -> None:
        assert self.jwks_url is not None
        self.jwks.begin_fetch(self.now())
        try:
            if self.async_http_client is not None:
                response = await self.async_http_client.get(self.jwks_url)
            else:
                async with httpx.AsyncClient(timeout=self.jwks_timeout) as client:
                    response = await client.get(self.jwks_url)
            response.raise_for_status()
            document = response.json()
        except Exception as exc:
            self.jwks.fail()
            raise KeySetUnavailable() from exc
        self.jwks.load(document)

    def _async_lock(self) -> asyncio.Lock:
        """One lock per event loop: asyncio locks must not cross loops."""
        loop = asyncio.get_running_loop()
        lock = self._async_locks.get(loop)
        if lock is None:
            lock = self._async_locks[loop] = asyncio.Lock()
        return lock


def _number(claims: Mapping[str, Any], name: str) -> int | float:
    """A NumericDate: int or finite float. NaN would make every comparison false, i.e. never expire."""
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MalformedToken(f"{name} claim must be a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise MalformedToken(f"{name} claim must be a number")
    return value


# -------------------------------------------------------------------------------------------- minting


def _load_private_key(pem: str | bytes) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
    data = pem.encode("utf-8") if isinstance(pem, str) else pem
    key = serialization.load_pem_private_key(data, password=None)
    if isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        return key
    raise ValueError("private key must be an EC (P-256) or RSA key")


def mint(
    claims: Mapping[str, Any],
    *,
    secret: str | None = None,
    private_key: str | bytes | None = None,
    algorithm: str | None = None,
    kid: str | None = None,
) -> str:
    """Sign `claims`: HS256 with a JWT secret, or ES256/RS256 with a PEM private key (alg inferred)."""
    if (secret is None) == (private_key is None):
        raise ValueError("give exactly one of secret= or private_key=")
    key: Any
    if secret is not None:
        alg = algorithm or HS256
        if alg != HS256:
            raise ValueError("a secret signs HS256 only")
        key = secret.encode("utf-8")
    else:
        assert private_key is not None
        key = _load_private_key(private_key)
        if isinstance(key, ec.EllipticCurvePrivateKey):
            if not isinstance(key.curve, ec.SECP256R1):
                raise ValueError("EC keys must be on P-256 for ES256")
            inferred = ES256
        else:
            inferred = RS256
        alg = algorithm or inferred
        if alg != inferred:
            raise ValueError(f"this private key signs {inferred}, not {alg}")
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(dict(claims), key, algorithm=alg, headers=headers)


def access_token_claims(
    sub: str | uuid.UUID,
    *,
    email: str | None = None,
    phone: str | None = None,
    role: str = "authenticated",
    aud: str | Sequence[str] = "authenticated",
    iss: str,
    app_metadata: Mapping[str, Any] | None = None,
    user_metadata: Mapping[str, Any] | None = None,
    session_id: str | uuid.UUID | None = None,
    is_anonymous: bool = False,
    aal: str = "aal1",
    amr: Sequence[Mapping[str, Any]] | None = None,
    expires_in: int = 3600,
    now: float | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The claim set Supabase Auth puts in a user's access token, so RLS sees what production sees.

    Like Auth, missing email/phone become "" and a session gets a fresh uuid; `extra` (e.g. a custom
    access-token hook's `user_role`) is merged last and wins.
    """
    iat = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "iss": iss,
        "sub": str(sub),
        "aud": aud if isinstance(aud, str) else list(aud),
        "exp": iat + int(expires_in),
        "iat": iat,
        "email": email or "",
        "phone": phone or "",
        "app_metadata": dict(app_metadata or {}),
        "user_metadata": dict(user_metadata or {}),
        "role": role,
        "aal": aal,
        "amr": [dict(m) for m in amr] if amr is not None else [{"method": "password", "timestamp": iat}],
        "session_id": str(session_id) if session_id is not None else str(uuid.uuid4()),
        "is_anonymous": is_anonymous,
    }
    if extra:
        claims.update(extra)
    return claims


def api_key_claims(
    role: str, *, ref: str = "local", iss: str = "supabase", years: int = 10, now: float | None = None
) -> dict[str, Any]:
    """Claims of a legacy `anon` / `service_role` API key: a long-lived HS256 JWT."""
    iat = int(time.time() if now is None else now)
    return {"iss": iss, "ref": ref, "role": role, "iat": iat, "exp": iat + int(years * 365 * 24 * 3600)}


def generate_es256_key(kid: str | None = None) -> tuple[str, dict[str, Any]]:
    """A fresh P-256 key: (private PEM to sign with, public JWK to publish as `{"keys": [jwk]}`)."""
    private = ec.generate_private_key(ec.SECP256R1())
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")
    jwk: dict[str, Any] = json.loads(ECAlgorithm.to_jwk(private.public_key()))
    jwk.update({"kid": kid or str(uuid.uuid4()), "alg": ES256, "use": "sig", "key_ops": ["verify"]})
    return pem, jwk
