"""JWT verification and minting against real crypto and a real local JWKS server (no mocks)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
import jwt
import pytest
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jwt.algorithms import RSAAlgorithm
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from workbench.backend.tokens import (
    InvalidAudience,
    InvalidIssuer,
    InvalidSignature,
    KeySetUnavailable,
    MalformedToken,
    MissingClaim,
    RoleNotAllowed,
    TokenError,
    TokenExpired,
    TokenNotYetValid,
    TokenTooLarge,
    TokenVerifier,
    UnknownKey,
    UnsupportedAlgorithm,
    access_token_claims,
    api_key_claims,
    generate_es256_key,
    mint,
)

SECRET = "super-secret-jwt-token-with-at-least-32-characters-long"
OTHER_SECRET = "another-secret-that-is-also-at-least-32-characters"
ISS = "http://127.0.0.1:54321/auth/v1"
USER_ID = "8f3c2a4e-0d6b-4a8e-9a53-6c1d2b7e9f10"

EC_KID = "ec-key-1"
EC_PEM, EC_JWK = generate_es256_key(EC_KID)
OTHER_EC_PEM, OTHER_EC_JWK = generate_es256_key("ec-key-2")

RSA_KID = "rsa-key-1"
_RSA_PRIVATE = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_PEM = _RSA_PRIVATE.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
).decode()
RSA_PUBLIC_PEM = _RSA_PRIVATE.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
)
RSA_JWK: dict[str, Any] = {
    **json.loads(RSAAlgorithm.to_jwk(_RSA_PRIVATE.public_key())),
    "kid": RSA_KID,
    "alg": "RS256",
    "use": "sig",
}


# ------------------------------------------------------------------------------------------- helpers


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def raw_token(header: Any, payload: Any, key: bytes | None = None, *, signature: bytes = b"") -> str:
    """Build a compact JWS by hand, for shapes pyjwt refuses to produce (alg none, PEM as HMAC key...)."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}"
    if key is not None:
        signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def user_claims(now: float | None = None, **overrides: Any) -> dict[str, Any]:
    return access_token_claims(USER_ID, email="ada@example.com", iss=ISS, now=now, extra=overrides)


@dataclass
class Clock:
    """An injectable clock the tests move by hand."""

    t: float = 1_750_000_000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@dataclass
class JWKSServer:
    """A real HTTP server publishing one JWKS document per name, counting requests per name."""

    base_url: str = ""
    documents: dict[str, Any] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def publish(self, document: Any) -> str:
        """Serve `document` (dict, int status, or raw str body) at a fresh URL; return that URL."""
        name = uuid.uuid4().hex
        self.documents[name] = document
        return f"{self.base_url}/{name}/auth/v1/.well-known/jwks.json"

    def hits(self, url: str) -> int:
        return self.counts[url.removeprefix(self.base_url).split("/")[1]]

    async def endpoint(self, request: Request) -> Response:
        name = request.path_params["name"]
        with self.lock:
            self.counts[name] += 1
        document = self.documents.get(name)
        if document is None:
            return JSONResponse({"error": "not found"}, status_code=404)
        if isinstance(document, int):
            return Response(status_code=document)
        if isinstance(document, str):
            return Response(document, media_type="application/json")
        return JSONResponse(document)


@pytest.fixture(scope="module")
def jwks_server() -> Iterator[JWKSServer]:
    state = JWKSServer()
    app = Starlette(routes=[Route("/{name}/auth/v1/.well-known/jwks.json", state.endpoint)])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))  # the port is ours before the server starts: no race for a free port
    state.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:  # poll readiness; join() returns at once if the server thread died
        thread.join(0.01)
        assert thread.is_alive(), "uvicorn thread exited during startup"
        assert time.monotonic() < deadline, "uvicorn did not start"
    assert httpx.get(state.publish({"keys": []})).status_code == 200
    yield state
    server.should_exit = True
    thread.join(10)
    sock.close()


@pytest.fixture(scope="module")
def jwks_url(jwks_server: JWKSServer) -> str:
    """One shared JWKS with an EC and an RSA key."""
    return jwks_server.publish({"keys": [EC_JWK, RSA_JWK]})


@pytest.fixture
def verifier(jwks_url: str) -> TokenVerifier:
    return TokenVerifier(jwt_secret=SECRET, jwks_url=jwks_url, issuer=ISS)


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/auth/v1/.well-known/jwks.json"


# ------------------------------------------------------------------------------------- accepted tokens


def test_hs256_accepted(verifier: TokenVerifier) -> None:
    claims = user_claims()
    assert verifier.verify(mint(claims, secret=SECRET)) == claims


def test_es256_accepted_via_jwks_and_cached(jwks_server: JWKSServer) -> None:
    url = jwks_server.publish({"keys": [EC_JWK, RSA_JWK]})
    v = TokenVerifier(jwks_url=url, issuer=ISS)
    claims = user_claims()
    token = mint(claims, private_key=EC_PEM, kid=EC_KID)
    assert jwt.get_unverified_header(token)["alg"] == "ES256"
    assert v.verify(token) == claims
    assert v.verify(token) == claims
    assert jwks_server.hits(url) == 1  # fetched lazily, once, then served from the cache


def test_rs256_accepted_via_jwks(verifier: TokenVerifier) -> None:
    claims = user_claims()
    token = mint(claims, private_key=RSA_PEM, kid=RSA_KID)
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    assert verifier.verify(token) == claims


def test_injected_sync_client_is_used(jwks_server: JWKSServer) -> None:
    url = jwks_server.publish({"keys": [EC_JWK]})
    with httpx.Client() as client:
        v = TokenVerifier(jwks_url=url, http_client=client)
        assert v.verify(mint(user_claims(), private_key=EC_PEM, kid=EC_KID))["sub"] == USER_ID
    assert jwks_server.hits(url) == 1


def test_leeway_accepts_slightly_expired(verifier: TokenVerifier) -> None:
    now = time.time()
    assert verifier.verify(mint(user_claims(now=now - 3600 - 20), secret=SECRET))
    assert verifier.verify(mint(user_claims(iat=int(now) + 20), secret=SECRET))


def test_audience_options() -> None:
    token = mint(user_claims(aud=["authenticated", "other"]), secret=SECRET)
    assert TokenVerifier(jwt_secret=SECRET).verify(token)
    assert TokenVerifier(jwt_secret=SECRET, audience=["x", "other"]).verify(token)
    assert TokenVerifier(jwt_secret=SECRET, audience=None).verify(mint(user_claims(aud="x"), secret=SECRET))
    with pytest.raises(InvalidAudience):
        TokenVerifier(jwt_secret=SECRET, audience=("x", "y")).verify(token)


def test_custom_required_claims() -> None:
    token = mint(user_claims(), secret=SECRET)
    assert TokenVerifier(jwt_secret=SECRET, required_claims=("sub", "role", "email")).verify(token)
    with pytest.raises(MissingClaim, match="user_role"):
        TokenVerifier(jwt_secret=SECRET, required_claims=("user_role",)).verify(token)


# -------------------------------------------------------------------------------------- refusal matrix

NOW = time.time()


@pytest.mark.parametrize(
    ("claims", "error", "reason"),
    [
        pytest.param(user_claims(now=NOW - 7200), TokenExpired, "token expired", id="expired"),
        pytest.param(user_claims(nbf=int(NOW) + 600), TokenNotYetValid, "nbf", id="nbf-future"),
        pytest.param(user_claims(iat=int(NOW) + 600), TokenNotYetValid, "iat", id="iat-future"),
        pytest.param(user_claims(aud="someone-else"), InvalidAudience, "invalid audience", id="wrong-aud"),
        pytest.param(user_claims(aud=None), InvalidAudience, "no audience", id="no-aud"),
        pytest.param(user_claims(iss="https://evil.example/auth/v1"), InvalidIssuer, "invalid", id="wrong-iss"),
        pytest.param(user_claims(iss=None), InvalidIssuer, "no issuer", id="no-iss"),
        pytest.param(user_claims(sub=None), MissingClaim, "sub", id="no-sub"),
        pytest.param(user_claims(role=None), MissingClaim, "role", id="no-role"),
        pytest.param(user_claims(exp=None), MissingClaim, "exp", id="no-exp"),
        pytest.param(user_claims(exp="tomorrow"), MalformedToken, "exp", id="exp-string"),
        pytest.param(user_claims(exp=True), MalformedToken, "exp", id="exp-bool"),
        pytest.param(user_claims(nbf=[1]), MalformedToken, "nbf", id="nbf-list"),
        pytest.param(user_claims(sub=42), MalformedToken, "malformed", id="sub-int"),
        pytest.param(user_claims(role={"r": 1}), MalformedToken, "role", id="role-dict"),
    ],
)
def test_claims_refused(verifier: TokenVerifier, claims: dict[str, Any], error: type[TokenError], reason: str) -> None:
    claims = {k: v for k, v in claims.items() if v is not None}
    # The claims were made at collection time: judge them at that time, however long the suite has run.
    verifier = replace(verifier, now=lambda: NOW)
    with pytest.raises(error) as info:
        verifier.verify(mint(claims, secret=SECRET))
    assert type(info.value) is error
    assert reason in info.value.reason


def test_nan_exp_is_malformed_not_eternal(verifier: TokenVerifier) -> None:
    payload = json.dumps(user_claims()).replace('"exp": ', '"exp": NaN, "x": ')
    assert "NaN" in payload
    with pytest.raises(MalformedToken, match="exp"):
        verifier.verify(raw_token({"alg": "HS256", "typ": "JWT"}, json.loads(payload), SECRET.encode()))


def test_wrong_secret(verifier: TokenVerifier) -> None:
    with pytest.raises(InvalidSignature, match="invalid signature"):
        verifier.verify(mint(user_claims(), secret=OTHER_SECRET))


def test_tampered_payload(verifier: TokenVerifier) -> None:
    header, _, signature = mint(user_claims(), secret=SECRET).split(".")
    forged = b64url(json.dumps(user_claims(role="service_role")).encode())
    with pytest.raises(InvalidSignature):
        verifier.verify(f"{header}.{forged}.{signature}")
    es_header, _, es_signature = mint(user_claims(), private_key=EC_PEM, kid=EC_KID).split(".")
    with pytest.raises(InvalidSignature):
        verifier.verify(f"{es_header}.{forged}.{es_signature}")


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_alg_none_refused(verifier: TokenVerifier, alg: str) -> None:
    token = raw_token({"alg": alg, "typ": "JWT"}, user_claims())
    assert token.endswith(".")
    with pytest.raises(UnsupportedAlgorithm, match="alg none"):
        verifier.verify(token)
    with pytest.raises(UnsupportedAlgorithm):  # a signature does not make `none` acceptable
        verifier.verify(raw_token({"alg": alg}, user_claims(), SECRET.encode()))


@pytest.mark.parametrize("alg", ["HS384", "HS512", "ES384", "PS256", "EdDSA", "hs256", ""])
def test_other_algorithms_refused(verifier: TokenVerifier, alg: str) -> None:
    with pytest.raises(UnsupportedAlgorithm, match="not allowed"):
        verifier.verify(raw_token({"alg": alg, "kid": EC_KID}, user_claims(), SECRET.encode()))


def test_missing_alg_is_malformed(verifier: TokenVerifier) -> None:
    with pytest.raises(MalformedToken, match="alg"):
        verifier.verify(raw_token({"typ": "JWT"}, user_claims(), SECRET.encode()))


def test_algorithms_not_configured() -> None:
    with pytest.raises(UnsupportedAlgorithm, match="no JWT secret"):
        TokenVerifier(jwks_url=closed_port_url()).verify(mint(user_claims(), secret=SECRET))
    with pytest.raises(UnsupportedAlgorithm, match="no JWKS"):
        TokenVerifier(jwt_secret=SECRET).verify(mint(user_claims(), private_key=EC_PEM, kid=EC_KID))


def test_rs_hs_confusion(jwks_url: str) -> None:
    """An HS256 token 'signed' with the published RSA public key must never verify."""
    claims = user_claims(role="service_role")
    with_kid = raw_token({"alg": "HS256", "typ": "JWT", "kid": RSA_KID}, claims, RSA_PUBLIC_PEM)
    without_kid = raw_token({"alg": "HS256", "typ": "JWT"}, claims, RSA_PUBLIC_PEM)

    jwks_only = TokenVerifier(jwks_url=jwks_url)
    for token in (with_kid, without_kid):
        with pytest.raises(UnsupportedAlgorithm):
            jwks_only.verify(token)

    both = TokenVerifier(jwt_secret=SECRET, jwks_url=jwks_url)
    assert both.verify(mint(user_claims(), private_key=RSA_PEM, kid=RSA_KID))  # JWKS now cached
    with pytest.raises(UnsupportedAlgorithm, match="does not match key type"):
        both.verify(with_kid)
    with pytest.raises(InvalidSignature):
        both.verify(without_kid)

    # Even a verifier misconfigured with the public PEM as its "secret" refuses (pyjwt's PEM guard).
    misconfigured = TokenVerifier(jwt_secret=RSA_PUBLIC_PEM.decode(), jwks_url=jwks_url)
    with pytest.raises(UnsupportedAlgorithm):
        misconfigured.verify(without_kid)


def test_es256_token_whose_kid_is_an_rsa_key(verifier: TokenVerifier) -> None:
    token = mint(user_claims(), private_key=EC_PEM, kid=RSA_KID)
    assert jwt.get_unverified_header(token) == {"alg": "ES256", "kid": RSA_KID, "typ": "JWT"}
    with pytest.raises(UnsupportedAlgorithm, match="does not match key type"):
        verifier.verify(token)
    with pytest.raises(UnsupportedAlgorithm, match="does not match key type"):
        verifier.verify(mint(user_claims(), private_key=RSA_PEM, kid=EC_KID))


def test_es256_without_kid_refused(verifier: TokenVerifier) -> None:
    with pytest.raises(UnknownKey, match="no kid"):
        verifier.verify(mint(user_claims(), private_key=EC_PEM))


def test_es256_signed_by_another_key(verifier: TokenVerifier) -> None:
    with pytest.raises(InvalidSignature):
        verifier.verify(mint(user_claims(), private_key=OTHER_EC_PEM, kid=EC_KID))


def test_unknown_kid_refetches_once_per_interval(jwks_server: JWKSServer) -> None:
    clock = Clock()
    url = jwks_server.publish({"keys": [EC_JWK]})
    v = TokenVerifier(jwks_url=url, now=clock)

    def token(kid: str) -> str:
        return mint(user_claims(now=clock.t), private_key=EC_PEM, kid=kid)

    assert v.verify(token(EC_KID))
    assert jwks_server.hits(url) == 1

    clock.advance(31)
    with pytest.raises(UnknownKey, match="unknown signing key"):
        v.verify(token("rotated-1"))
    assert jwks_server.hits(url) == 2  # exactly one refetch

    clock.advance(5)
    with pytest.raises(UnknownKey):
        v.verify(token("rotated-2"))
    assert v.verify(token(EC_KID))
    assert jwks_server.hits(url) == 2  # still inside the interval: no further fetch

    clock.advance(30)
    with pytest.raises(UnknownKey):
        v.verify(token("rotated-3"))
    assert jwks_server.hits(url) == 3


def test_unknown_kid_on_cold_cache_fetches_once(jwks_server: JWKSServer) -> None:
    url = jwks_server.publish({"keys": [EC_JWK]})
    v = TokenVerifier(jwks_url=url, now=Clock())
    for kid in ("a", "b", "c"):
        with pytest.raises(UnknownKey):
            v.verify(mint(user_claims(now=v.now()), private_key=EC_PEM, kid=kid))
    assert jwks_server.hits(url) == 1


def test_key_rotation_and_removal(jwks_server: JWKSServer) -> None:
    clock = Clock()
    url = jwks_server.publish({"keys": [EC_JWK]})
    v = TokenVerifier(jwks_url=url, now=clock)
    old = mint(user_claims(now=clock.t), private_key=EC_PEM, kid=EC_KID)
    new = mint(user_claims(now=clock.t), private_key=OTHER_EC_PEM, kid="ec-key-2")
    assert v.verify(old)
    jwks_server.documents[url.split("/")[3]] = {"keys": [OTHER_EC_JWK]}
    clock.advance(31)
    assert v.verify(new)
    with pytest.raises(UnknownKey):  # a key dropped from the JWKS stops working
        v.verify(old)
    assert jwks_server.hits(url) == 2


def test_unusable_jwks_entries_are_skipped(jwks_server: JWKSServer) -> None:
    junk = [
        {"kty": "oct", "kid": "sym", "k": b64url(SECRET.encode())},
        {"kty": "EC", "kid": "broken", "crv": "P-256", "x": "AAAA", "y": "AAAA"},
        {**EC_JWK, "kid": "enc", "use": "enc"},
        {**EC_JWK, "kid": None},
        "not a key",
    ]
    url = jwks_server.publish({"keys": [*junk, EC_JWK]})
    v = TokenVerifier(jwt_secret=SECRET, jwks_url=url)
    assert v.verify(mint(user_claims(), private_key=EC_PEM, kid=EC_KID))
    assert set(v.jwks.keys) == {EC_KID}
    with pytest.raises(UnknownKey):
        v.verify(mint(user_claims(), private_key=EC_PEM, kid="enc"))


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "   ",
        "Bearer",
        "a.b",
        "a.b.c",
        "a.b.c.d",
        "a.b.c.d.e",
        "...",
        "eyJ.eyJ.sig",
        "!!!!.????.####",
        "eyJhbGciOiJIUzI1NiJ9",
        f"{b64url(b'[1,2]')}.{b64url(b'{}')}.",
        f"{b64url(b'null')}.{b64url(b'{}')}.AAAA",
        f"{b64url(json.dumps({'alg': 'HS256', 'kid': 7}).encode())}.{b64url(b'{}')}.AAAA",
        raw_token({"alg": "HS256"}, [1, 2, 3], SECRET.encode()),
        raw_token({"alg": "HS256"}, "just a string", SECRET.encode()),
        "\x00\x01\x02",
        "é.é.é",
        "\ud800.a.b",
        mint(user_claims(), secret=SECRET) + "=====",
        " " + mint(user_claims(), secret=SECRET),
    ],
)
def test_garbage_is_malformed(verifier: TokenVerifier, garbage: str) -> None:
    with pytest.raises(MalformedToken):
        verifier.verify(garbage)


@pytest.mark.parametrize("not_a_string", [None, 42, b"a.b.c", ["a"]])
def test_non_string_is_malformed(verifier: TokenVerifier, not_a_string: Any) -> None:
    with pytest.raises(MalformedToken):
        verifier.verify(not_a_string)


def test_huge_token_refused_before_parsing(verifier: TokenVerifier) -> None:
    header = b64url(json.dumps({"alg": "HS256"}).encode())
    huge = f"{header}.{'A' * 10_000_000}.sig"
    started = time.perf_counter()
    with pytest.raises(TokenTooLarge, match="too large"):
        verifier.verify(huge)
    assert time.perf_counter() - started < 0.05
    with pytest.raises(TokenTooLarge):  # 5000 characters but 10000 UTF-8 bytes
        verifier.verify("é" * 5000)
    small = TokenVerifier(jwt_secret=SECRET, max_token_bytes=100)
    with pytest.raises(TokenTooLarge):
        small.verify(mint(user_claims(), secret=SECRET))


@pytest.mark.parametrize("down", ["closed-port", 500, 404, "{not json", '{"no": "keys"}'])
def test_jwks_unavailable(jwks_server: JWKSServer, down: Any) -> None:
    if down == "closed-port":
        url = closed_port_url()
    elif down == 404:
        url = f"{jwks_server.base_url}/nothing-here/auth/v1/.well-known/jwks.json"
    else:
        url = jwks_server.publish(down)
    clock = Clock()
    v = TokenVerifier(jwt_secret=SECRET, jwks_url=url, now=clock)
    token = mint(user_claims(now=clock.t), private_key=EC_PEM, kid=EC_KID)
    with pytest.raises(KeySetUnavailable) as info:
        v.verify(token)
    assert info.value.status_code == 503
    assert url not in str(info.value)
    hits = jwks_server.hits(url) if down != "closed-port" else 0
    with pytest.raises(KeySetUnavailable):  # no hammering: the failed attempt counts for the interval
        v.verify(token)
    assert v.jwks.fetch_count == 1
    if down != "closed-port":
        assert jwks_server.hits(url) == hits
    assert v.verify(mint(user_claims(now=clock.t), secret=SECRET))  # HS256 does not need the JWKS


def test_jwks_outage_keeps_known_keys(jwks_server: JWKSServer) -> None:
    clock = Clock()
    url = jwks_server.publish({"keys": [EC_JWK]})
    v = TokenVerifier(jwks_url=url, now=clock)
    assert v.verify(mint(user_claims(now=clock.t), private_key=EC_PEM, kid=EC_KID))
    jwks_server.documents[url.split("/")[3]] = 503
    clock.advance(31)
    with pytest.raises(KeySetUnavailable):
        v.verify(mint(user_claims(now=clock.t), private_key=EC_PEM, kid="new"))
    assert v.verify(mint(user_claims(now=clock.t), private_key=EC_PEM, kid=EC_KID))


# ------------------------------------------------------------------------------------------ async path


async def test_async_es256_and_rs256(jwks_server: JWKSServer) -> None:
    url = jwks_server.publish({"keys": [EC_JWK, RSA_JWK]})
    v = TokenVerifier(jwt_secret=SECRET, jwks_url=url, issuer=ISS)
    claims = user_claims()
    assert await v.averify(mint(claims, private_key=EC_PEM, kid=EC_KID)) == claims
    assert await v.averify(mint(claims, private_key=RSA_PEM, kid=RSA_KID)) == claims
    assert await v.averify(mint(claims, secret=SECRET)) == claims
    assert jwks_server.hits(url) == 1


async def test_async_refusals(verifier: TokenVerifier) -> None:
    with pytest.raises(TokenExpired):
        await verifier.averify(mint(user_claims(now=time.time() - 7200), secret=SECRET))
    with pytest.raises(InvalidSignature):
        await verifier.averify(mint(user_claims(), secret=OTHER_SECRET))
    with pytest.raises(UnsupportedAlgorithm):
        await verifier.averify(raw_token({"alg": "none"}, user_claims()))
    with pytest.raises(UnsupportedAlgorithm, match="does not match key type"):
        await verifier.averify(mint(user_claims(), private_key=EC_PEM, kid=RSA_KID))
    with pytest.raises(MalformedToken):
        await verifier.averify("not a token")
    with pytest.raises(TokenTooLarge):
        await verifier.averify("x" * 10_000_000)


async def test_async_unknown_kid_rate_limited(jwks_server: JWKSServer) -> None:
    clock = Clock()
    url = jwks_server.publish({"keys": [EC_JWK]})
    async with httpx.AsyncClient() as client:
        v = TokenVerifier(jwks_url=url, now=clock, async_http_client=client)
        assert await v.averify(mint(user_claims(now=clock.t), private_key=EC_PEM, kid=EC_KID))
        clock.advance(31)
        for kid in ("x", "y", "z"):
            with pytest.raises(UnknownKey):
                await v.averify(mint(user_claims(now=clock.t), private_key=EC_PEM, kid=kid))
        assert jwks_server.hits(url) == 2
        clock.advance(31)
        with pytest.raises(UnknownKey):
            await v.averify(mint(user_claims(now=clock.t), private_key=EC_PEM, kid="w"))
        assert jwks_server.hits(url) == 3


async def test_async_cold_start_concurrency_fetches_once(jwks_server: JWKSServer) -> None:
    url = jwks_server.publish({"keys": [EC_JWK]})
    v = TokenVerifier(jwks_url=url)
    token = mint(user_claims(), private_key=EC_PEM, kid=EC_KID)
    results = await asyncio.gather(*(v.averify(token) for _ in range(25)))
    assert all(r["sub"] == USER_ID for r in results)
    assert jwks_server.hits(url) == 1


async def test_async_jwks_down() -> None:
    v = TokenVerifier(jwks_url=closed_port_url())
    with pytest.raises(KeySetUnavailable):
        await v.averify(mint(user_claims(), private_key=EC_PEM, kid=EC_KID))


def test_sync_threads_cold_start_fetch_once(jwks_server: JWKSServer) -> None:
    url = jwks_server.publish({"keys": [EC_JWK]})
    v = TokenVerifier(jwks_url=url)
    token = mint(user_claims(), private_key=EC_PEM, kid=EC_KID)
    results: list[Any] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait(10)  # all threads race for the cold cache at once
        results.append(v.verify(token))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8
    assert jwks_server.hits(url) == 1


# ------------------------------------------------------------------------------ secrets stay out of text

SAFE_REASON = re.compile(r"[ -~]{1,100}")  # printable ASCII, and the challenge excludes quotes below


def test_errors_never_show_token_or_secret(jwks_url: str) -> None:
    v = TokenVerifier(jwt_secret=SECRET, jwks_url=jwks_url, issuer=ISS)
    cases = [
        mint(user_claims(), secret=OTHER_SECRET),
        mint(user_claims(now=time.time() - 7200), secret=SECRET),
        mint(user_claims(aud="x"), secret=SECRET),
        mint(user_claims(iss="https://evil.example"), secret=SECRET),
        mint(user_claims(sub=None), secret=SECRET),
        mint(user_claims(exp='"; injected="1'), secret=SECRET),
        raw_token({"alg": 'none"\r\nX-Evil: 1'}, user_claims()),
        raw_token({"alg": "HS256", "kid": RSA_KID}, user_claims(), RSA_PUBLIC_PEM),
        mint(user_claims(), private_key=EC_PEM, kid=RSA_KID),
        mint(user_claims(), private_key=EC_PEM, kid="unknown-" + SECRET),
        "garbage." + SECRET,
        SECRET,
    ]
    for token in cases:
        with pytest.raises(TokenError) as info:
            v.verify(token)
        err = info.value
        for text in (str(err), repr(err), err.reason, err.www_authenticate):
            assert SECRET not in text
            assert OTHER_SECRET not in text
            assert token not in text
            assert all(part not in text for part in token.split(".") if len(part) > 8)
        assert SAFE_REASON.fullmatch(err.reason) and '"' not in err.reason and "\\" not in err.reason
        assert err.www_authenticate == f'Bearer error="invalid_token", error_description="{err.reason}"'
    assert SECRET not in repr(v)


# ------------------------------------------------------------------------------------ property tests

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
ALGS = st.sampled_from(["HS256", "ES256", "RS256", "none", "HS384", "RS512", ""]) | JSON
KIDS = st.sampled_from([EC_KID, RSA_KID, "missing"]) | JSON
TIMES = st.integers(int(NOW) - 10_000, int(NOW) + 10_000) | st.floats(NOW - 100, NOW + 100) | JSON
HEADERS = st.fixed_dictionaries(
    {}, optional={"alg": ALGS, "kid": KIDS, "typ": JSON, "crit": JSON, "b64": JSON, "jku": JSON}
)
CLAIM_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "exp": TIMES,
    "nbf": TIMES,
    "iat": TIMES,
    "sub": st.just(USER_ID) | JSON,
    "role": st.sampled_from(["authenticated", "anon"]) | JSON,
    "aud": st.sampled_from(["authenticated", ["authenticated", "x"], "x"]) | JSON,
    "iss": st.just(ISS) | JSON,
    "jti": JSON,
}
CLAIMS = st.fixed_dictionaries({}, optional=CLAIM_VALUES)
BASE_CLAIMS = access_token_claims(USER_ID, iss=ISS, now=NOW, session_id=USER_ID)


@st.composite
def mutated_claims(draw: st.DrawFn) -> Any:
    """A valid claim set with a few claims replaced or dropped, so signed tokens reach every check."""
    if draw(st.integers(0, 9)) == 0:
        return draw(JSON)
    claims = dict(BASE_CLAIMS)
    for name in draw(st.sets(st.sampled_from(sorted(CLAIM_VALUES)), max_size=3)):
        claims[name] = draw(CLAIM_VALUES[name])
    for name in draw(st.sets(st.sampled_from(sorted(CLAIM_VALUES)), max_size=2)):
        claims.pop(name, None)
    return claims


PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def fuzz_verifier(jwks_url: str) -> TokenVerifier:
    return TokenVerifier(jwt_secret=SECRET, jwks_url=jwks_url, issuer=ISS, now=Clock(NOW))


def verify_is_total(verifier: TokenVerifier, token: Any) -> dict[str, Any] | TokenError:
    """`verify` returns a dict or raises a TokenError with a sane reason; nothing else may escape."""
    try:
        claims = verifier.verify(token)
    except TokenError as err:
        assert isinstance(err.reason, str) and SAFE_REASON.fullmatch(err.reason)
        return err
    assert isinstance(claims, dict)
    return claims


@PROPERTY
@given(st.text())
def test_property_text(fuzz_verifier: TokenVerifier, token: str) -> None:
    verify_is_total(fuzz_verifier, token)


@PROPERTY
@given(st.binary())
def test_property_bytes_as_latin1(fuzz_verifier: TokenVerifier, data: bytes) -> None:
    verify_is_total(fuzz_verifier, data.decode("latin-1"))


@PROPERTY
@given(st.from_regex(r"\A[A-Za-z0-9_\-=]*\.[A-Za-z0-9_\-=]*\.[A-Za-z0-9_\-=]*\Z"))
def test_property_three_dot_parts(fuzz_verifier: TokenVerifier, token: str) -> None:
    verify_is_total(fuzz_verifier, token)


@PROPERTY
@given(header=HEADERS | JSON, payload=CLAIMS | JSON, signature=st.binary(max_size=300))
def test_property_structured_tokens(fuzz_verifier: TokenVerifier, header: Any, payload: Any, signature: bytes) -> None:
    result = verify_is_total(fuzz_verifier, raw_token(header, payload, signature=signature))
    assert isinstance(result, TokenError)  # a random signature never verifies


@PROPERTY
@given(extra_header=st.just({}) | HEADERS, payload=mutated_claims())
def test_property_correctly_signed_random_claims(
    fuzz_verifier: TokenVerifier, extra_header: dict[str, Any], payload: Any
) -> None:
    """Signature valid, claims arbitrary: the claim checks must be total, and right when they accept."""
    header = {"typ": "JWT", **extra_header, "alg": "HS256"}
    header.pop("kid", None)
    result = verify_is_total(fuzz_verifier, raw_token(header, payload, SECRET.encode()))
    if isinstance(result, dict):
        assert result == payload
        assert result["exp"] > NOW - 30
        assert result.get("nbf", NOW) <= NOW + 30 and result.get("iat", NOW) <= NOW + 30
        assert result["aud"] == "authenticated" or "authenticated" in result["aud"]
        assert result["iss"] == ISS and isinstance(result["sub"], str) and isinstance(result["role"], str)


# --------------------------------------------------------------------------------------------- minting


def test_access_token_claims_shape() -> None:
    claims = access_token_claims(
        uuid.UUID(USER_ID),
        email="ada@example.com",
        iss=ISS,
        app_metadata={"provider": "email", "providers": ["email"]},
        user_metadata={"name": "Ada"},
        session_id="5f1c7b0e-0000-4000-8000-000000000001",
        now=1_700_000_000.7,
        extra={"user_role": "admin", "aal": "aal2"},
    )
    assert claims == {
        "iss": ISS,
        "sub": USER_ID,
        "aud": "authenticated",
        "exp": 1_700_003_600,
        "iat": 1_700_000_000,
        "email": "ada@example.com",
        "phone": "",
        "app_metadata": {"provider": "email", "providers": ["email"]},
        "user_metadata": {"name": "Ada"},
        "role": "authenticated",
        "aal": "aal2",
        "amr": [{"method": "password", "timestamp": 1_700_000_000}],
        "session_id": "5f1c7b0e-0000-4000-8000-000000000001",
        "is_anonymous": False,
        "user_role": "admin",
    }
    anonymous = access_token_claims("u", iss=ISS, is_anonymous=True, amr=[{"method": "anonymous"}])
    assert anonymous["is_anonymous"] is True and anonymous["amr"] == [{"method": "anonymous"}]
    assert uuid.UUID(anonymous["session_id"])


def test_api_key_claims_and_verification() -> None:
    claims = api_key_claims("service_role", ref="abcdefghijklmnopqrst", now=1_641_769_200)
    assert claims == {
        "iss": "supabase",
        "ref": "abcdefghijklmnopqrst",
        "role": "service_role",
        "iat": 1_641_769_200,
        "exp": 1_641_769_200 + 10 * 365 * 86400,
    }
    key = mint(api_key_claims("anon"), secret=SECRET)
    assert TokenVerifier(jwt_secret=SECRET, audience=None, required_claims=("role",)).verify(key)["role"] == "anon"
    with pytest.raises(MissingClaim, match="sub"):
        TokenVerifier(jwt_secret=SECRET).verify(key)


def test_generate_es256_key_publishes_a_usable_jwk(jwks_server: JWKSServer) -> None:
    pem, jwk = generate_es256_key()
    assert pem.startswith("-----BEGIN PRIVATE KEY-----")
    assert set(jwk) >= {"kty", "crv", "x", "y", "kid", "alg", "use"} and "d" not in jwk
    assert (jwk["kty"], jwk["crv"], jwk["alg"], jwk["use"]) == ("EC", "P-256", "ES256", "sig")
    url = jwks_server.publish({"keys": [jwk]})
    token = mint(user_claims(), private_key=pem, kid=jwk["kid"])
    assert TokenVerifier(jwks_url=url).verify(token)["email"] == "ada@example.com"


def test_mint_headers_and_argument_checks() -> None:
    assert jwt.get_unverified_header(mint({"a": 1}, secret=SECRET, kid="legacy")) == {
        "alg": "HS256",
        "kid": "legacy",
        "typ": "JWT",
    }
    assert jwt.get_unverified_header(mint({"a": 1}, private_key=RSA_PEM.encode()))["alg"] == "RS256"
    with pytest.raises(ValueError):
        mint({}, secret=SECRET, private_key=EC_PEM)
    with pytest.raises(ValueError):
        mint({})
    with pytest.raises(ValueError):
        mint({}, secret=SECRET, algorithm="HS512")
    with pytest.raises(ValueError):
        mint({}, private_key=EC_PEM, algorithm="RS256")


# ------------------------------------------------------------------------------------ the role allow-list


def test_a_signed_token_with_a_role_outside_the_allow_list_is_refused() -> None:
    """An admin can set ``auth.users.role`` to ``postgres``; the token is validly signed all the same."""
    verifier = TokenVerifier(jwt_secret=SECRET, issuer=ISS)
    for role in ("postgres", "supabase_admin", "authenticator", "pg_execute_server_program"):
        token = mint(access_token_claims(USER_ID, iss=ISS, role=role), secret=SECRET)
        with pytest.raises(RoleNotAllowed) as caught:
            verifier.verify(token)
        assert caught.value.status_code == 403 and caught.value.reason == "role not allowed"
        assert role not in str(caught.value)  # fixed text, never the claim's value
    for role in ("anon", "authenticated", "service_role"):
        token = mint(access_token_claims(USER_ID, iss=ISS, role=role), secret=SECRET)
        assert verifier.verify(token)["role"] == role
    custom = TokenVerifier(jwt_secret=SECRET, issuer=ISS, allowed_roles=frozenset({"authenticated", "editor"}))
    assert custom.verify(mint(access_token_claims(USER_ID, iss=ISS, role="editor"), secret=SECRET))["role"] == "editor"
    with pytest.raises(RoleNotAllowed):
        custom.verify(mint(access_token_claims(USER_ID, iss=ISS, role="service_role"), secret=SECRET))
