"""workbench.backend.fastapi: a small FastAPI app on the demo tables, called with tokens from the local Auth API."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import jwt
import pytest
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession
from supabase import ClientOptions, create_client

from workbench.backend.fastapi import AuthUser, SupabaseAuth, add_exception_handlers
from workbench.backend.tokens import TokenVerifier, access_token_claims, generate_es256_key, mint
from workbench.core.engine import create_engine
from workbench.core.identity import Identity
from workbench.core.impersonation import sessionmaker_for
from workbench.core.settings import Settings
from workbench.local.demo import demo_users
from workbench.local.standin import LocalStandIn

USERS = {u["email"].split("@")[0]: u for u in demo_users()}
OWN_TASKS = {
    "alice": ["Draft landing page", "Set up analytics", "Ship iOS beta"],
    "bob": ["Load nightly exports", "Retire old warehouse"],
}


class NewTask(BaseModel):
    project_id: int
    title: str


def build_app(auth: SupabaseAuth) -> FastAPI:
    """The kind of app the workbench is for: RLS does the filtering, the dependencies do the rest."""
    app = FastAPI()
    add_exception_handlers(app)

    @app.get("/me")
    async def me(user: AuthUser = auth.user) -> dict[str, Any]:
        return {"id": user.id, "email": user.email, "role": user.role}

    @app.get("/tasks")
    async def tasks(db: AsyncSession = auth.rls) -> list[str]:
        rows = await db.execute(text("select title from public.tasks order by id"))
        return list(rows.scalars())

    @app.get("/whoami")
    async def whoami(db: AsyncSession = auth.rls) -> dict[str, Any]:
        row = (await db.execute(text("select current_user as role, auth.uid()::text as uid"))).one()
        return dict(row._mapping)

    @app.post("/tasks", status_code=201)
    async def add_task(task: NewTask, fail: bool = False, db: AsyncSession = auth.rls) -> dict[str, Any]:
        new_id = (
            await db.execute(
                text("insert into public.tasks (project_id, title) values (:p, :t) returning id"),
                {"p": task.project_id, "t": task.title},
            )
        ).scalar_one()
        if fail:
            raise HTTPException(status_code=418, detail="changed my mind")
        return {"id": new_id}

    @app.get("/plain/whoami")
    async def plain_whoami(db: AsyncSession = auth.session) -> dict[str, Any]:
        row = (await db.execute(text("select current_user as role, auth.uid()::text as uid"))).one()
        return dict(row._mapping)

    @app.post("/plain/organizations", status_code=201)
    async def add_org(name: str, db: AsyncSession = auth.session) -> dict[str, Any]:
        await db.execute(text("insert into public.organizations (name) values (:n)"), {"n": name})
        return {"name": name}

    @app.post("/plain/fails-at-commit")
    async def fails_at_commit(db: AsyncSession = auth.session) -> dict[str, str]:
        # A deferred unique constraint is checked only at COMMIT, after the endpoint has returned.
        await db.execute(
            text("create temp table wb_deferred (id int unique deferrable initially deferred) on commit drop")
        )
        await db.execute(text("insert into wb_deferred values (1), (1)"))
        return {"status": "looked fine"}

    @app.get("/admin/tasks/count")
    async def count_all(db: AsyncSession = auth.admin) -> dict[str, Any]:
        row = (await db.execute(text("select count(*) as n, current_user as role from public.tasks"))).one()
        return dict(row._mapping)

    return app


class Tokens(dict[str, str]):
    """Access tokens by user; the repr names the users only, so a failing test does not print tokens."""

    def __repr__(self) -> str:
        return f"Tokens({sorted(self)})"


@pytest.fixture(scope="module")
def tokens(standin: LocalStandIn) -> dict[str, str]:
    """Real access tokens: alice and bob sign in with the supabase client against the local Auth API."""
    out = Tokens()
    for who in ("alice", "bob"):
        c = create_client(standin.api_url(), standin.keys().anon_key, options=ClientOptions(auto_refresh_token=False))
        res = c.auth.sign_in_with_password({"email": USERS[who]["email"], "password": USERS[who]["password"]})
        assert res.session is not None
        out[who] = res.session.access_token
    return out


@pytest.fixture(scope="module")
async def auth(settings: Settings) -> AsyncIterator[SupabaseAuth]:
    instance = SupabaseAuth.from_settings(settings)
    yield instance
    await instance.aclose()


@pytest.fixture(scope="module")
async def api(auth: SupabaseAuth) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=build_app(auth))
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        yield client


@pytest.fixture
async def db(standin: LocalStandIn) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(standin.dsn())
    yield conn
    await conn.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# ---------------------------------------------------------------------------------------- who sees what


async def test_each_user_sees_only_their_own_tasks(api: httpx.AsyncClient, tokens: dict[str, str]) -> None:
    for who in ("alice", "bob"):
        me = await api.get("/me", headers=bearer(tokens[who]))
        assert me.status_code == 200
        assert me.json() == {"id": USERS[who]["id"], "email": USERS[who]["email"], "role": "authenticated"}
        tasks = await api.get("/tasks", headers=bearer(tokens[who]))
        assert tasks.status_code == 200 and tasks.json() == OWN_TASKS[who]


async def test_rls_session_runs_as_the_user_and_leaves_nothing_behind(
    api: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    inside = await api.get("/whoami", headers=bearer(tokens["alice"]))
    assert inside.json() == {"role": "authenticated", "uid": USERS["alice"]["id"]}
    for _ in range(3):  # the same pooled connections, now without an identity
        plain = await api.get("/plain/whoami")
        assert plain.json() == {"role": "postgres", "uid": None}


# --------------------------------------------------------------------------------------------- the 401s


def _user_claims(standin: LocalStandIn, **changes: Any) -> dict[str, Any]:
    claims = access_token_claims(USERS["alice"]["id"], email="alice@example.com", iss=f"{standin.api_url()}/auth/v1")
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _bad_tokens(standin: LocalStandIn, good: str) -> dict[str, tuple[str, str]]:
    """name -> (token, the reason the 401 must carry)."""
    secret = standin.keys().jwt_secret
    now = int(time.time())
    header, payload, signature = good.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = USERS["bob"]["id"]  # alice tries to pass as bob
    tampered_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    none_header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    stranger_pem, _ = generate_es256_key("not-published-anywhere")
    return {
        "garbage": ("not-a-jwt", "token is not a compact JWS"),
        "expired": (mint(_user_claims(standin, iat=now - 7200, exp=now - 3600), secret=secret), "token expired"),
        "not yet valid": (mint(_user_claims(standin, nbf=now + 3600), secret=secret), "token not yet valid (nbf)"),
        "wrong audience": (mint(_user_claims(standin, aud="someone-else"), secret=secret), "invalid audience"),
        "api key as user token": (standin.keys().anon_key, "missing required claim sub"),
        "wrong issuer": (
            mint(_user_claims(standin, iss="https://evil.example/auth/v1"), secret=secret),
            "invalid issuer",
        ),
        "wrong secret": (
            mint(_user_claims(standin), secret="another-project-secret-of-32-bytes!"),
            "invalid signature",
        ),
        "tampered payload": (f"{header}.{tampered_payload}.{signature}", "invalid signature"),
        "alg none": (f"{none_header}.{payload}.", "alg none is not allowed"),
        "unknown kid": (
            mint(_user_claims(standin), private_key=stranger_pem, kid="not-published-anywhere"),
            "unknown signing key",
        ),
        "no sub": (mint(_user_claims(standin, sub=None), secret=secret), "missing required claim sub"),
        "10 MB": ("e" * 10_000_000, "token too large"),
    }


async def test_every_401_reason(api: httpx.AsyncClient, tokens: dict[str, str], standin: LocalStandIn) -> None:
    for name, headers in (
        ("missing", {}),
        ("basic auth", {"Authorization": "Basic YWxpY2U6c2VjcmV0"}),
        ("empty bearer", {"Authorization": "Bearer "}),
    ):
        r = await api.get("/tasks", headers=headers)
        assert r.status_code == 401, name
        assert r.headers["WWW-Authenticate"] == "Bearer", name  # no credentials: a plain challenge

    for name, (token, reason) in _bad_tokens(standin, tokens["alice"]).items():
        r = await api.get("/tasks", headers=bearer(token))
        assert r.status_code == 401, name
        assert r.headers["WWW-Authenticate"] == f'Bearer error="invalid_token", error_description="{reason}"', name
        assert r.json() == {"detail": reason}, name
        assert token[:40] not in r.text or name == "10 MB", name  # the token is never echoed


async def test_unreachable_jwks_is_a_503_not_a_401(settings: Settings, standin: LocalStandIn) -> None:
    verifier = TokenVerifier(jwks_url="http://127.0.0.1:1/auth/v1/.well-known/jwks.json", jwks_timeout=2)
    auth = SupabaseAuth(create_engine(settings), verifier, owns_engine=True)
    pem, _ = generate_es256_key("some-kid")
    token = mint(_user_claims(standin), private_key=pem, kid="some-kid")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(auth)), base_url="http://app") as c:
        r = await c.get("/me", headers=bearer(token))
    await auth.aclose()
    assert r.status_code == 503 and r.json() == {"detail": "signing keys unavailable"}


# ------------------------------------------------------------------------------------ transactions, errors


async def test_commit_on_success(api: httpx.AsyncClient, tokens: dict[str, str], db: asyncpg.Connection) -> None:
    title = f"wb-fastapi {uuid.uuid4().hex[:8]}"
    try:
        r = await api.post("/tasks", json={"project_id": 1, "title": title}, headers=bearer(tokens["alice"]))
        assert r.status_code == 201
        row = await db.fetchrow("select id, owner_id::text as owner from public.tasks where title = $1", title)
        assert row is not None and row["id"] == r.json()["id"]
        assert row["owner"] == USERS["alice"]["id"]  # owner_id defaulted to auth.uid()
        assert title in (await api.get("/tasks", headers=bearer(tokens["alice"]))).json()
        assert title not in (await api.get("/tasks", headers=bearer(tokens["bob"]))).json()
    finally:
        await db.execute("delete from public.tasks where title = $1", title)


async def test_rollback_when_the_endpoint_raises(
    api: httpx.AsyncClient, tokens: dict[str, str], db: asyncpg.Connection
) -> None:
    title = f"wb-fastapi {uuid.uuid4().hex[:8]}"
    r = await api.post("/tasks?fail=true", json={"project_id": 1, "title": title}, headers=bearer(tokens["alice"]))
    assert r.status_code == 418 and r.json() == {"detail": "changed my mind"}
    assert await db.fetchval("select count(*) from public.tasks where title = $1", title) == 0


async def test_database_errors_become_short_http_errors(
    api: httpx.AsyncClient, tokens: dict[str, str], db: asyncpg.Connection
) -> None:
    before = await db.fetchval("select count(*) from public.tasks")
    # Alice is no member of project 3's organization: the INSERT policy's WITH CHECK refuses the row.
    r = await api.post("/tasks", json={"project_id": 3, "title": "sneaky"}, headers=bearer(tokens["alice"]))
    assert r.status_code == 403
    assert r.json() == {"detail": "Not allowed: a row-level security policy refused this change."}
    r = await api.post("/tasks", json={"project_id": 1, "title": ""}, headers=bearer(tokens["alice"]))
    assert r.status_code == 422 and r.json()["detail"] == "Invalid data: a value breaks a check constraint."
    r = await api.post("/plain/organizations", params={"name": "Acme"})
    assert r.status_code == 409 and r.json()["detail"] == "Conflict: a row with this key already exists."
    assert "Acme" not in r.text and "organizations" not in r.text  # no SQL details for API clients
    # A failure at COMMIT (after the endpoint returned) is an error response, not a 200 and a lost write.
    r = await api.post("/plain/fails-at-commit")
    assert r.status_code == 409
    assert await db.fetchval("select count(*) from public.tasks") == before


async def test_database_unreachable_is_a_503(settings: Settings, tokens: dict[str, str]) -> None:
    engine = create_engine("postgresql+asyncpg://postgres@127.0.0.1:1/postgres")
    auth = SupabaseAuth.from_settings(settings, engine=engine)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(auth)), base_url="http://app") as c:
        r = await c.get("/tasks", headers=bearer(tokens["alice"]))
    await engine.dispose()
    assert r.status_code == 503 and r.headers["Retry-After"] == "1"


async def test_admin_session_needs_the_service_role_key(
    api: httpx.AsyncClient, tokens: dict[str, str], standin: LocalStandIn, db: asyncpg.Connection
) -> None:
    keys = standin.keys()
    r = await api.get("/admin/tasks/count", headers=bearer(keys.service_role_key))
    assert r.status_code == 200
    assert r.json() == {"n": await db.fetchval("select count(*) from public.tasks"), "role": "service_role"}
    for token in (keys.anon_key, tokens["alice"]):
        r = await api.get("/admin/tasks/count", headers=bearer(token))
        assert r.status_code == 403 and 'error="insufficient_scope"' in r.headers["WWW-Authenticate"]
    r = await api.get("/admin/tasks/count")
    assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer"
    forged = jwt.encode({"role": "service_role", "exp": 4102444800}, "not-the-project-secret-at-all-12345", "HS256")
    r = await api.get("/admin/tasks/count", headers=bearer(forged))
    assert r.status_code == 401 and "invalid signature" in r.headers["WWW-Authenticate"]


# ----------------------------------------------------------------------------------------------- pooler


@pytest.mark.pgbouncer
async def test_through_pgbouncer_no_identity_leaks(settings: Settings, pgbouncer: Any, tokens: dict[str, str]) -> None:
    """Many interleaved requests of two users over a 2-connection transaction pool: each sees its own rows,
    and plain sessions afterwards see no leftover role or claims."""
    import asyncio

    engine = create_engine(pgbouncer.url, mode="transaction")
    auth = SupabaseAuth.from_settings(settings, engine=engine)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(auth)), base_url="http://app") as c:
        order = ["alice", "bob"] * 15
        answers = await asyncio.gather(*(c.get("/tasks", headers=bearer(tokens[who])) for who in order))
        for who, answer in zip(order, answers, strict=True):
            assert answer.status_code == 200 and answer.json() == OWN_TASKS[who], who
        ids = await asyncio.gather(*(c.get("/whoami", headers=bearer(tokens[who])) for who in order))
        assert [r.json()["uid"] for r in ids] == [USERS[who]["id"] for who in order]
        plain = await asyncio.gather(*(c.get("/plain/whoami") for _ in range(10)))
        assert all(r.json() == {"role": "postgres", "uid": None} for r in plain)
        r = await c.post("/tasks", json={"project_id": 3, "title": "sneaky"}, headers=bearer(tokens["alice"]))
        assert r.status_code == 403
    await engine.dispose()


# ------------------------------------------------------------------------------------------- packaging


def test_without_fastapi_the_import_says_what_to_install() -> None:
    code = "import sys; sys.modules['fastapi'] = None\nimport workbench.backend.fastapi"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "ImportError: workbench.backend.fastapi needs FastAPI" in proc.stderr
    assert "pip install supabase-workbench[fastapi]" in proc.stderr


def test_the_fastapi_layer_does_not_load_the_notebook_layer() -> None:
    code = (
        "import sys, workbench.backend.fastapi\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('IPython', 'ipywidgets', 'ipykernel')"
        " or m.startswith(('workbench.notebook.magics', 'workbench.notebook.widgets')))\n"
        "print(bad)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


# ------------------------------------------------------------------------------ roles outside the API roles


async def test_a_token_whose_role_is_postgres_is_a_403_and_postgres_refuses_it_too(
    api: httpx.AsyncClient, auth: SupabaseAuth, standin: LocalStandIn, db: asyncpg.Connection
) -> None:
    """A user whose ``auth.users.role`` an admin set to ``postgres`` gets a validly signed token with that
    role: the allow-list refuses it before the database is touched, and the RLS engine logs in as the
    authenticator, so even past the allow-list PostgreSQL itself refuses the role."""
    token = mint(_user_claims(standin, role="postgres"), secret=standin.keys().jwt_secret)
    for path in ("/tasks", "/whoami", "/me"):
        r = await api.get(path, headers=bearer(token))
        assert r.status_code == 403, path
        assert r.json() == {"detail": "role not allowed"}, path
        assert (
            r.headers["WWW-Authenticate"] == 'Bearer error="insufficient_scope", error_description="role not allowed"'
        )

    # the owner's own connection: bypasses RLS, yet no superuser (as on Supabase)
    assert await db.fetchval("select rolbypassrls and not rolsuper from pg_roles where rolname = current_user") is True
    async with sessionmaker_for(auth.rls_engine, Identity.for_role("postgres"))() as session:
        with pytest.raises(DBAPIError, match="permission denied to set role"):
            await session.execute(text("select 1"))
    async with sessionmaker_for(auth.rls_engine, Identity.for_role("anon"))() as session:
        with pytest.raises(DBAPIError, match="permission denied to set role"):
            await session.execute(text("set local role postgres"))
