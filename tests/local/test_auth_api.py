"""The local Auth API, driven by the official ``supabase`` client (sync and async) over real HTTP."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import jwt
import pytest
from supabase import AsyncClientOptions, Client, ClientOptions, acreate_client, create_client
from supabase_auth.errors import AuthApiError, AuthWeakPasswordError

from workbench.backend.tokens import InvalidSignature, TokenVerifier, UnsupportedAlgorithm
from workbench.local.auth_api import SIGNING_ENV, parse_go_duration
from workbench.local.demo import demo_users
from workbench.local.standin import LocalStandIn, StandInError

USERS = {u["email"].split("@")[0]: u for u in demo_users()}
VERSION_HEADER = "X-Supabase-Api-Version"


def client(standin: LocalStandIn, key: str) -> Client:
    """A sync client that does not refresh in the background (tests end long before the token does)."""
    return create_client(standin.api_url(), key, options=ClientOptions(auto_refresh_token=False))


def sign_in(standin: LocalStandIn, who: str) -> Client:
    c = client(standin, standin.keys().anon_key)
    c.auth.sign_in_with_password({"email": USERS[who]["email"], "password": USERS[who]["password"]})
    return c


def verifier(standin: LocalStandIn, **kwargs: Any) -> TokenVerifier:
    return TokenVerifier(issuer=f"{standin.api_url()}/auth/v1", **kwargs)


def auth_url(standin: LocalStandIn, path: str) -> str:
    return f"{standin.api_url()}/auth/v1/{path}"


def headers(key: str, bearer: str | None = None, versioned: bool = False) -> dict[str, str]:
    out = {"apikey": key}
    if bearer is not None:
        out["Authorization"] = f"Bearer {bearer}"
    if versioned:
        out[VERSION_HEADER] = "2024-01-01"
    return out


@pytest.fixture
async def db(standin: LocalStandIn) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(standin.dsn())
    yield conn
    await conn.close()


@pytest.fixture
def admin(standin: LocalStandIn) -> Client:
    return client(standin, standin.keys().service_role_key)


@pytest.fixture
def new_email(admin: Client) -> Iterator[str]:
    """A unique email; whatever user ends up with it is deleted afterwards (the stand-in is shared)."""
    email = f"wb-auth-{uuid.uuid4().hex[:10]}@example.com"
    yield email
    for user in admin.auth.admin.list_users(per_page=1000):
        if user.email == email:
            admin.auth.admin.delete_user(user.id)


# ---------------------------------------------------------------------------------------------- sign-in


async def test_sign_in_alice_and_bob_with_the_sync_client(standin: LocalStandIn, db: asyncpg.Connection) -> None:
    before = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    check = verifier(standin, jwt_secret=standin.keys().jwt_secret)
    for who in ("alice", "bob"):
        c = sign_in(standin, who)
        session = c.auth.get_session()
        assert session is not None and session.user.email == USERS[who]["email"]
        assert session.user.id == USERS[who]["id"]
        assert session.token_type == "bearer" and session.expires_in == 3600
        assert session.user.user_metadata == USERS[who]["user_metadata"]
        assert session.user.app_metadata == USERS[who]["app_metadata"]
        assert [i.provider for i in session.user.identities or []] == ["email"]

        # The access token is HS256 by default and carries Supabase's claims.
        assert jwt.get_unverified_header(session.access_token)["alg"] == "HS256"
        claims = check.verify(session.access_token)
        assert claims["sub"] == USERS[who]["id"] and claims["email"] == USERS[who]["email"]
        assert (claims["role"], claims["aud"], claims["aal"]) == ("authenticated", "authenticated", "aal1")
        assert claims["iss"] == f"{standin.api_url()}/auth/v1"
        assert claims["phone"] == (USERS[who]["phone"] or "")
        assert claims["user_metadata"] == USERS[who]["user_metadata"]
        assert claims["amr"][0]["method"] == "password" and claims["is_anonymous"] is False
        assert claims["exp"] - claims["iat"] == 3600

        # Sign-in left what GoTrue leaves: a session, a refresh token, last_sign_in_at.
        row = await db.fetchrow(
            """select s.user_id, t.revoked, u.last_sign_in_at from auth.sessions s
               join auth.refresh_tokens t on t.session_id = s.id join auth.users u on u.id = s.user_id
               where s.id = $1 and t.token = $2""",
            uuid.UUID(claims["session_id"]),
            session.refresh_token,
        )
        assert row is not None and str(row["user_id"]) == USERS[who]["id"] and row["revoked"] is False
        assert row["last_sign_in_at"] >= before
        assert session.user.last_sign_in_at is not None and session.user.last_sign_in_at >= before

        # GET /user answers for the token's own user only.
        user = c.auth.get_user()
        assert user is not None and user.user.id == USERS[who]["id"]
        c.auth.sign_out({"scope": "local"})


async def test_async_client_sign_in_get_user_refresh_and_logout(standin: LocalStandIn, db: asyncpg.Connection) -> None:
    c = await acreate_client(
        standin.api_url(), standin.keys().anon_key, options=AsyncClientOptions(auto_refresh_token=False)
    )
    res = await c.auth.sign_in_with_password({"email": USERS["bob"]["email"], "password": USERS["bob"]["password"]})
    assert res.session is not None and res.user is not None and res.user.email == "bob@example.com"
    first = res.session

    refreshed = await c.auth.refresh_session()
    assert refreshed.session is not None
    assert refreshed.session.refresh_token != first.refresh_token
    claims_before = jwt.decode(first.access_token, options={"verify_signature": False})
    claims_after = jwt.decode(refreshed.session.access_token, options={"verify_signature": False})
    assert claims_after["session_id"] == claims_before["session_id"]  # same session, new tokens
    assert claims_after["amr"] == claims_before["amr"]

    # The old refresh token was rotated out: using it again is refused the way GoTrue refuses it.
    with pytest.raises(AuthApiError) as reused:
        await c.auth.refresh_session(first.refresh_token)
    assert (reused.value.status, reused.value.code) == (400, "refresh_token_already_used")

    user = await c.auth.get_user()
    assert user is not None and user.user.id == USERS["bob"]["id"]

    await c.auth.sign_out({"scope": "local"})
    assert await c.auth.get_session() is None
    sid = uuid.UUID(claims_after["session_id"])
    assert await db.fetchval("select count(*) from auth.sessions where id = $1", sid) == 0
    assert await db.fetchval("select count(*) from auth.refresh_tokens where session_id = $1", sid) == 0
    # An access token of a logged-out session no longer gets the user.
    with pytest.raises(AuthApiError) as gone:
        await c.auth.get_user(refreshed.session.access_token)
    assert (gone.value.status, gone.value.code) == (403, "session_not_found")


def test_wrong_password_gets_supabase_error_shape(standin: LocalStandIn) -> None:
    anon = standin.keys().anon_key
    body: Any = {"email": "alice@example.com", "password": "not-her-password"}
    url = auth_url(standin, "token?grant_type=password")

    legacy = httpx.post(url, json=body, headers=headers(anon))
    assert legacy.status_code == 400
    assert legacy.json() == {"code": 400, "error_code": "invalid_credentials", "msg": "Invalid login credentials"}
    assert VERSION_HEADER not in legacy.headers

    versioned = httpx.post(url, json=body, headers=headers(anon, versioned=True))
    assert versioned.status_code == 400
    assert versioned.json() == {"code": "invalid_credentials", "message": "Invalid login credentials"}
    assert versioned.headers[VERSION_HEADER] == "2024-01-01"

    # An unknown email gets exactly the same answer: no account enumeration.
    unknown = httpx.post(url, json=body | {"email": "nobody@example.com"}, headers=headers(anon))
    assert unknown.status_code == 400 and unknown.json() == legacy.json()

    c = client(standin, anon)
    with pytest.raises(AuthApiError) as caught:
        c.auth.sign_in_with_password(body)
    assert (caught.value.status, caught.value.code, caught.value.message) == (
        400,
        "invalid_credentials",
        "Invalid login credentials",
    )
    assert c.auth.get_session() is None


def test_requests_without_a_valid_api_key_are_refused_like_the_gateway(standin: LocalStandIn) -> None:
    body = {"email": "alice@example.com", "password": USERS["alice"]["password"]}
    url = auth_url(standin, "token?grant_type=password")
    missing = httpx.post(url, json=body)
    assert missing.status_code == 401 and missing.json()["message"] == "No API key found in request"
    wrong = httpx.post(url, json=body, headers={"apikey": "sb_publishable_not-this-project"})
    assert wrong.status_code == 401 and wrong.json()["message"] == "Invalid API key"
    # The JWKS and health endpoints are public, as on Supabase.
    assert httpx.get(auth_url(standin, ".well-known/jwks.json")).status_code == 200
    assert httpx.get(auth_url(standin, "health")).json()["name"] == "GoTrue"


def test_other_token_errors_follow_gotrue(standin: LocalStandIn) -> None:
    anon = standin.keys().anon_key
    refresh = auth_url(standin, "token?grant_type=refresh_token")
    r = httpx.post(refresh, json={"refresh_token": "no-such-token"}, headers=headers(anon))
    assert (r.status_code, r.json()["error_code"]) == (400, "refresh_token_not_found")
    r = httpx.post(refresh, json={}, headers=headers(anon))
    assert r.status_code == 400 and r.json() == {
        "error": "invalid_request",
        "error_description": "refresh_token required",
    }
    r = httpx.post(auth_url(standin, "token?grant_type=magic"), json={}, headers=headers(anon))
    assert r.status_code == 400 and r.json()["error"] == "unsupported_grant_type"
    r = httpx.post(auth_url(standin, "token?grant_type=password"), content=b"{not json", headers=headers(anon))
    assert (r.status_code, r.json()["error_code"]) == (400, "bad_json")
    r = httpx.get(auth_url(standin, "user"), headers=headers(anon))
    assert (r.status_code, r.json()["error_code"]) == (401, "no_authorization")
    r = httpx.get(auth_url(standin, "user"), headers=headers(anon, bearer="garbage"))
    assert (r.status_code, r.json()["error_code"]) == (403, "bad_jwt")
    # The anon key is a valid JWT but names no user.
    r = httpx.get(auth_url(standin, "user"), headers=headers(anon, bearer=anon))
    assert r.status_code == 403 and r.json()["msg"] == "invalid claim: missing sub claim"
    r = httpx.get(auth_url(standin, "no/such/endpoint"), headers=headers(anon))
    assert (r.status_code, r.json()["error_code"]) == (404, "not_found")


# ------------------------------------------------------------------------------------------------ admin


async def test_admin_create_get_list_update_delete(
    standin: LocalStandIn, admin: Client, new_email: str, db: asyncpg.Connection
) -> None:
    created = admin.auth.admin.create_user(
        {
            "email": new_email.upper(),
            "password": "first-password",
            "email_confirm": True,
            "user_metadata": {"full_name": "Dana Test"},
            "app_metadata": {"plan": "pro"},
        }
    )
    user = created.user
    assert user.email == new_email  # stored lower-case, like GoTrue
    assert user.email_confirmed_at is not None and user.role == "authenticated" and user.aud == "authenticated"
    assert user.app_metadata == {"provider": "email", "providers": ["email"], "plan": "pro"}
    # The INSERT went through auth.users, so the demo's trigger created the profile.
    profile = await db.fetchrow("select email, full_name from public.profiles where id = $1", uuid.UUID(user.id))
    assert profile is not None and dict(profile) == {"email": new_email, "full_name": "Dana Test"}

    assert admin.auth.admin.get_user_by_id(user.id).user.email == new_email

    # Paged listing: newest first; pages of one cover every user exactly once; X-Total-Count is the total.
    total = await db.fetchval("select count(*) from auth.users where coalesce(aud, 'authenticated') = 'authenticated'")
    assert admin.auth.admin.list_users(page=1, per_page=1)[0].id == user.id
    seen = [u.id for page in range(1, total + 1) for u in admin.auth.admin.list_users(page=page, per_page=1)]
    assert len(seen) == total == len(set(seen))
    assert admin.auth.admin.list_users(page=total + 1, per_page=1) == []
    key = standin.keys().service_role_key
    raw = httpx.get(auth_url(standin, "admin/users?page=1&per_page=2"), headers=headers(key, bearer=key))
    assert raw.headers["X-Total-Count"] == str(total)
    assert 'rel="next"' in raw.headers["Link"] and 'rel="last"' in raw.headers["Link"]

    # Update: metadata merges (null removes a key), password changes, the user can sign in with it.
    updated = admin.auth.admin.update_user_by_id(
        user.id, {"user_metadata": {"team": "blue", "full_name": None}, "password": "second-password"}
    )
    assert updated.user.user_metadata == {"team": "blue"}
    anon = client(standin, standin.keys().anon_key)
    assert anon.auth.sign_in_with_password({"email": new_email, "password": "second-password"}).user is not None
    anon.auth.sign_out({"scope": "local"})

    # A banned user cannot sign in; lifting the ban restores access.
    banned = admin.auth.admin.update_user_by_id(user.id, {"ban_duration": "24h"})
    assert banned.user.banned_until is not None
    with pytest.raises(AuthApiError) as refused:
        anon.auth.sign_in_with_password({"email": new_email, "password": "second-password"})
    assert (refused.value.status, refused.value.code, refused.value.message) == (400, "user_banned", "User is banned")
    assert admin.auth.admin.update_user_by_id(user.id, {"ban_duration": "none"}).user.banned_until is None

    # Soft delete: the row stays (deleted_at), the email is obfuscated, sign-in is refused.
    admin.auth.admin.delete_user(user.id, should_soft_delete=True)
    soft = await db.fetchrow("select email, deleted_at from auth.users where id = $1", uuid.UUID(user.id))
    assert soft is not None and soft["deleted_at"] is not None and soft["email"] != new_email
    with pytest.raises(AuthApiError) as deleted:
        anon.auth.sign_in_with_password({"email": new_email, "password": "second-password"})
    assert deleted.value.code == "invalid_credentials"

    # Hard delete removes the user; the profile goes with it (on delete cascade).
    admin.auth.admin.delete_user(user.id)
    with pytest.raises(AuthApiError) as missing:
        admin.auth.admin.get_user_by_id(user.id)
    assert (missing.value.status, missing.value.code) == (404, "user_not_found")
    assert await db.fetchval("select count(*) from public.profiles where id = $1", uuid.UUID(user.id)) == 0


def test_admin_validation_errors(standin: LocalStandIn, admin: Client, new_email: str) -> None:
    with pytest.raises(AuthApiError) as exists:
        admin.auth.admin.create_user({"email": "ALICE@example.com", "password": "whatever-123"})
    assert (exists.value.status, exists.value.code) == (422, "email_exists")

    with pytest.raises(AuthWeakPasswordError) as weak:
        admin.auth.admin.create_user({"email": new_email, "password": "123"})
    assert weak.value.status == 422 and weak.value.reasons == ["length"]

    for attributes, code in (
        ({"password": "no-email-or-phone"}, "validation_failed"),
        ({"email": "not-an-email", "password": "long-enough"}, "validation_failed"),
        ({"email": new_email, "ban_duration": "forever"}, "validation_failed"),
        ({"email": new_email, "id": "not-a-uuid"}, "validation_failed"),
        ({"email": new_email, "password": "long-enough", "password_hash": "$2b$10$x"}, "validation_failed"),
        ({"email": 42}, "bad_json"),
    ):
        with pytest.raises(AuthApiError) as bad:
            admin.auth.admin.create_user(attributes)  # type: ignore[arg-type]
        assert (bad.value.status, bad.value.code) == (400, code), attributes

    key = standin.keys().service_role_key
    r = httpx.get(auth_url(standin, "admin/users/not-a-uuid"), headers=headers(key, bearer=key))
    assert (r.status_code, r.json()["msg"]) == (404, "user_id must be an UUID")
    r = httpx.get(auth_url(standin, "admin/users?page=0"), headers=headers(key, bearer=key))
    assert (r.status_code, r.json()["error_code"]) == (400, "validation_failed")


def test_admin_endpoints_refuse_anon_key_and_user_tokens(standin: LocalStandIn) -> None:
    keys = standin.keys()
    with pytest.raises(AuthApiError) as anon_refused:
        client(standin, keys.anon_key).auth.admin.list_users()
    assert (anon_refused.value.status, anon_refused.value.code, anon_refused.value.message) == (
        403,
        "not_admin",
        "User not allowed",
    )

    alice = sign_in(standin, "alice")
    session = alice.auth.get_session()
    assert session is not None
    for method, path in (
        ("GET", "admin/users"),
        ("POST", "admin/users"),
        ("GET", f"admin/users/{USERS['bob']['id']}"),
        ("PUT", f"admin/users/{USERS['bob']['id']}"),
        ("DELETE", f"admin/users/{USERS['bob']['id']}"),
    ):
        r = httpx.request(
            method, auth_url(standin, path), json={}, headers=headers(keys.anon_key, bearer=session.access_token)
        )
        assert (r.status_code, r.json()["error_code"]) == (403, "not_admin"), path
    r = httpx.get(auth_url(standin, "admin/users"), headers=headers(keys.anon_key))
    assert (r.status_code, r.json()["error_code"]) == (401, "no_authorization")
    # A token signed with another secret claiming service_role is refused, not trusted.
    forged = jwt.encode(
        {"role": "service_role", "exp": 4102444800}, "not-the-secret-of-this-project-at-all", algorithm="HS256"
    )
    r = httpx.get(auth_url(standin, "admin/users"), headers=headers(keys.anon_key, bearer=forged))
    assert (r.status_code, r.json()["error_code"]) == (403, "bad_jwt")
    # Bob is untouched.
    admin = client(standin, keys.service_role_key)
    assert admin.auth.admin.get_user_by_id(USERS["bob"]["id"]).user.email == "bob@example.com"
    alice.auth.sign_out({"scope": "local"})


# ------------------------------------------------------------------------------------------------ keys


def test_jwks_publishes_only_the_public_es256_key(standin: LocalStandIn) -> None:
    doc = httpx.get(auth_url(standin, ".well-known/jwks.json")).json()
    assert len(doc["keys"]) == 1
    key = doc["keys"][0]
    assert (key["kty"], key["crv"], key["alg"], key["kid"]) == ("EC", "P-256", "ES256", standin.keys().es256_jwk["kid"])
    assert "d" not in key and standin.keys().jwt_secret not in str(doc)


def test_hs256_tokens_are_refused_by_a_verifier_with_the_wrong_secret(standin: LocalStandIn) -> None:
    alice = sign_in(standin, "alice")
    token = alice.auth.get_session()
    assert token is not None
    with pytest.raises(InvalidSignature):
        verifier(standin, jwt_secret="some-other-project-secret-of-32-bytes").verify(token.access_token)
    alice.auth.sign_out({"scope": "local"})


def test_parse_go_duration() -> None:
    assert parse_go_duration("24h") == 86400
    assert parse_go_duration("1h30m") == 5400
    assert parse_go_duration("1.5s") == 1.5
    assert parse_go_duration("0") == 0
    assert parse_go_duration("-2m") == -120
    with pytest.raises(Exception, match="invalid duration"):
        parse_go_duration("3 days")


def test_es256_signing_verified_through_the_jwks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stand-in whose API signs ES256: tokens verify by kid from the JWKS, the API accepts them too."""
    monkeypatch.setenv(SIGNING_ENV, "es256")
    es = LocalStandIn(tmp_path / "es256")
    es.start()
    try:
        assert httpx.get(auth_url(es, "health")).json()["signing"] == "ES256"
        c = sign_in(es, "alice")
        session = c.auth.get_session()
        assert session is not None
        header = jwt.get_unverified_header(session.access_token)
        assert (header["alg"], header["kid"]) == ("ES256", es.keys().es256_jwk["kid"])

        jwks_url = auth_url(es, ".well-known/jwks.json")
        claims = verifier(es, jwks_url=jwks_url).verify(session.access_token)  # no secret: JWKS only
        assert claims["sub"] == USERS["alice"]["id"] and claims["role"] == "authenticated"
        # A verifier that only knows the HS256 secret cannot accept it.
        with pytest.raises(UnsupportedAlgorithm):
            verifier(es, jwt_secret=es.keys().jwt_secret).verify(session.access_token)

        # The API verifies its own ES256 tokens (GET /user), and API keys stay HS256.
        user = c.auth.get_user()
        assert user is not None and user.user.email == "alice@example.com"
        admin = client(es, es.keys().service_role_key)
        assert {u.email for u in admin.auth.admin.list_users()} >= {"alice@example.com", "bob@example.com"}

        # A signing choice the API does not know stops it at start-up, with the reason in its log.
        es.stop()
        monkeypatch.setenv(SIGNING_ENV, "rs512")
        with pytest.raises(StandInError, match="api.log"):
            es.start()
        assert "WORKBENCH_AUTH_SIGNING='rs512' is not supported" in (es.data_dir / "api.log").read_text()
    finally:
        es.destroy()
