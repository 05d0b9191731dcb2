"""Migration sets written the way real Supabase apps write them (tests/local/migration_sets/<name>/supabase/):
each loads unchanged into a fresh database of the stand-in, as `supabase db reset` would apply it (migrations
in order, then seed.sql, as ``postgres``), and its RLS answers per identity through the workbench's own
impersonation; Database Webhooks and pg_net triggers leave their requests in net.http_request_queue."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import jwt
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from workbench.core.engine import create_engine
from workbench.core.identity import Identity, user_identity
from workbench.core.impersonation import impersonate

SETS = Path(__file__).parent / "migration_sets"
# What the stand-in runs as the superuser to make a database look like a new Supabase project's.
NAMES = sorted(p.name for p in SETS.iterdir() if (p / "supabase" / "migrations").is_dir())


class MigrationFailed(AssertionError):
    """A migration file did not load; says which file and what PostgreSQL said."""


async def load_set(standin: Any, name: str, root: Path = SETS) -> str:
    """A fresh database with the Supabase bootstrap, then the set's migrations in order and its seed, each
    file in one call as ``postgres`` (not a superuser on Supabase). Returns the ``postgres`` DSN."""
    database = f"ms_{name}"
    admin = await asyncpg.connect(standin.dsn("supabase_admin"))
    try:
        await admin.execute(f'drop database if exists "{database}" with (force)')
        await admin.execute(f'create database "{database}" owner postgres')
    finally:
        await admin.close()
    await standin.abootstrap_database(database)
    admin = await asyncpg.connect(standin.dsn("supabase_admin", database))
    try:
        await admin.execute(f'alter database "{database}" set search_path = "$user", public, extensions')
    finally:
        await admin.close()
    folder = root / name / "supabase"
    files = sorted((folder / "migrations").glob("*.sql")) + [folder / "seed.sql"]
    conn = await asyncpg.connect(standin.dsn("postgres", database))
    try:
        for path in files:
            try:
                await conn.execute(path.read_text())
            except asyncpg.PostgresError as exc:
                raise MigrationFailed(f"{path.relative_to(root)} failed: {exc.__class__.__name__}: {exc}") from exc
    finally:
        await conn.close()
    return standin.dsn("postgres", database)


DSNS: dict[AsyncEngine, str] = {}


@pytest.fixture(scope="module")
async def loaded(standin: Any) -> AsyncIterator[dict[str, AsyncEngine]]:
    """Every set loaded once for this module: name -> an engine on its database (as postgres)."""
    engines: dict[str, AsyncEngine] = {}
    for name in NAMES:
        dsn = await load_set(standin, name)
        engines[name] = create_engine(dsn.replace("postgresql://", "postgresql+asyncpg://"))
        DSNS[engines[name]] = dsn
    yield engines
    for engine in engines.values():
        await engine.dispose()


async def identity(engine: AsyncEngine, who: str, **extra: Any) -> Identity:
    """anon, service_role, or a seeded user (by email) with the claims Supabase Auth would mint."""
    if who == "anon":
        return Identity.anon()
    if who == "service_role":
        return Identity.service_role()
    conn = await asyncpg.connect(DSNS[engine])
    try:
        return await user_identity(conn, who, extra_claims=extra or None)
    finally:
        await conn.close()


async def scalar(engine: AsyncEngine, who: str | Identity, sql: str, **params: Any) -> Any:
    """One value of ``sql`` run read-only as ``who`` (anon, service_role, or a seeded user's email)."""
    ident = who if isinstance(who, Identity) else await identity(engine, who)
    async with impersonate(engine, ident, readonly=True) as conn:
        return (await conn.execute(text(sql), params)).scalar()


async def counts(engine: AsyncEngine, who: str, tables: list[str]) -> list[int]:
    return [await scalar(engine, who, f"select count(*) from {table}") for table in tables]


def test_there_are_at_least_four_sets_each_with_migrations_and_a_seed() -> None:
    assert len(NAMES) >= 4
    for name in NAMES:
        folder = SETS / name / "supabase"
        assert list((folder / "migrations").glob("*.sql")) and (folder / "seed.sql").is_file(), name


def test_one_set_starts_with_a_full_supabase_db_dump_header() -> None:
    first = sorted((SETS / "team_tasks_dump" / "supabase" / "migrations").glob("*.sql"))[0].read_text()
    for line in (
        "SELECT pg_catalog.set_config('search_path', '', false);",
        'CREATE EXTENSION IF NOT EXISTS "pgsodium" WITH SCHEMA "pgsodium";',
        'CREATE EXTENSION IF NOT EXISTS "pg_graphql" WITH SCHEMA "graphql";',
        'CREATE EXTENSION IF NOT EXISTS "pg_stat_statements" WITH SCHEMA "extensions";',
        'CREATE EXTENSION IF NOT EXISTS "pgcrypto" WITH SCHEMA "extensions";',
        'CREATE EXTENSION IF NOT EXISTS "pgjwt" WITH SCHEMA "extensions";',
        'CREATE EXTENSION IF NOT EXISTS "supabase_vault" WITH SCHEMA "vault";',
        'CREATE EXTENSION IF NOT EXISTS "uuid-ossp" WITH SCHEMA "extensions";',
        "COMMENT ON SCHEMA \"public\" IS 'standard public schema';",
    ):
        assert line in first, line


async def test_a_failing_migration_names_its_file(standin: Any, tmp_path: Path) -> None:
    broken = tmp_path / "broken_set"
    (broken / "supabase" / "migrations").mkdir(parents=True)
    (broken / "supabase" / "migrations" / "20240101000000_bad.sql").write_text(
        "create extension if not exists pgcrypto with schema extensions;\nselect no_such_function();\n"
    )
    (broken / "supabase" / "seed.sql").write_text("")
    with pytest.raises(MigrationFailed, match=r"broken_set/supabase/migrations/20240101000000_bad.sql failed"):
        await load_set(standin, "broken_set", root=tmp_path)


# -- team_tasks_dump: a `supabase db dump` with citext, uuid-ossp, pgcrypto, moddatetime and a webhook ---------


async def test_team_tasks_rls_per_identity(loaded: dict[str, AsyncEngine]) -> None:
    engine = loaded["team_tasks_dump"]
    tables = ["public.tasks", "public.organizations", "public.memberships"]
    assert await counts(engine, "anon", tables) == [0, 0, 0]
    assert await counts(engine, "olivia@acme.test", tables) == [3, 1, 1]
    assert await counts(engine, "max@acme.test", tables) == [3, 1, 1]
    assert await counts(engine, "nina@globex.test", tables) == [1, 1, 1]
    assert await counts(engine, "service_role", tables) == [4, 2, 3]


async def test_team_tasks_members_update_only_their_tasks_and_moddatetime_stamps(
    loaded: dict[str, AsyncEngine],
) -> None:
    engine = loaded["team_tasks_dump"]
    max_ = await identity(engine, "max@acme.test")
    async with impersonate(engine, max_, commit=False) as conn:
        before = (await conn.execute(text("select updated_at from public.tasks where title = 'Ship v1'"))).scalar_one()
        changed = await conn.execute(
            text(
                "update public.tasks set status = 'done'"
                " where org_id = (select org_id from public.tasks where title = 'Ship v1')"
            )
        )
        assert changed.rowcount == 2  # his two tasks, not Olivia's
        after = (await conn.execute(text("select updated_at from public.tasks where title = 'Ship v1'"))).scalar_one()
        assert after > before  # extensions.moddatetime
    # citext: the billing address matches whatever its case
    assert (
        await scalar(
            engine,
            "service_role",
            "select count(*) from public.organizations where billing_email = 'BILLING@acme.TEST'",
        )
        == 1
    )
    secret = await scalar(
        engine, "service_role", "select invite_secret from public.organizations order by name limit 1"
    )
    assert len(secret) == 24  # base64 of extensions.gen_random_bytes(18)


async def test_team_tasks_webhook_recorded_each_insert(loaded: dict[str, AsyncEngine]) -> None:
    engine = loaded["team_tasks_dump"]
    async with engine.connect() as conn:
        rows = (
            (
                await conn.execute(
                    text(
                        "select q.method, q.url, q.headers, convert_from(q.body, 'UTF8') as body,"
                        " q.timeout_milliseconds, h.hook_name from net.http_request_queue q"
                        " join supabase_functions.hooks h on h.request_id = q.id order by q.id"
                    )
                )
            )
            .mappings()
            .all()
        )
    assert len(rows) == 4
    titles = []
    for row in rows:
        assert (row["method"], row["hook_name"]) == ("POST", "task-created")
        assert row["url"] == "http://host.docker.internal:54321/functions/v1/notify-assignee"
        assert row["headers"]["Authorization"] == "Bearer local-function-key"
        assert row["timeout_milliseconds"] == 5000
        payload = json.loads(row["body"])
        assert (payload["type"], payload["table"], payload["schema"], payload["old_record"]) == (
            "INSERT",
            "tasks",
            "public",
            None,
        )
        titles.append(payload["record"]["title"])
    assert titles == ["Ship v1", "Write docs", "Fix login", "Quarterly report"]


# -- notes_app: quickstart profiles, notes, bcrypt'd API keys, a vault secret ---------------------------------------


async def test_notes_app_rls_per_identity(loaded: dict[str, AsyncEngine]) -> None:
    engine = loaded["notes_app"]
    tables = ["public.notes", "public.profiles", "public.api_keys"]
    assert await counts(engine, "anon", tables[:2]) == [1, 2]
    assert await counts(engine, "ada@notes.test", tables) == [2, 2, 1]
    assert await counts(engine, "grace@notes.test", tables) == [2, 2, 0]
    assert await counts(engine, "service_role", tables) == [3, 2, 1]
    # the auth.users trigger made the profiles; usernames are citext
    assert (
        await scalar(engine, "anon", "select full_name from public.profiles where username = 'ADA'") == "Ada Lovelace"
    )


async def test_notes_app_api_keys_are_bcrypt_and_the_vault_holds_the_key(loaded: dict[str, AsyncEngine]) -> None:
    engine = loaded["notes_app"]
    async with engine.connect() as conn:
        owner = (await conn.execute(text("select public.check_api_key('ada-key')"))).scalar()
        assert str(owner) == "a1a1a1a1-0000-4000-8000-000000000001"
        assert (await conn.execute(text("select public.check_api_key('not-a-key')"))).scalar() is None
        secret = (
            await conn.execute(
                text("select decrypted_secret from vault.decrypted_secrets where name = 'stripe_secret_key'")
            )
        ).scalar()
        assert secret == "sk_test_local_only"
    ada = await identity(engine, "ada@notes.test")
    async with impersonate(engine, ada, commit=False) as conn:
        raw = (await conn.execute(text("select public.create_api_key()"))).scalar_one()
        assert len(raw) == 48
        assert (await conn.execute(text("select count(*) from public.api_keys"))).scalar() == 2
    with pytest.raises(Exception, match="permission denied for function check_api_key"):
        await scalar(engine, "anon", "select public.check_api_key('ada-key')")
    with pytest.raises(Exception, match="permission denied"):
        await scalar(engine, ada, "select count(*) from vault.decrypted_secrets")


# -- shop_orders: pg_net in a trigger with a vault key, pg_cron, a pg_jsonschema check ------------------------------


async def test_shop_orders_rls_per_identity(loaded: dict[str, AsyncEngine]) -> None:
    engine = loaded["shop_orders"]
    tables = ["public.orders", "public.products"]
    assert await counts(engine, "anon", tables) == [0, 2]
    assert await counts(engine, "carla@shop.test", tables) == [2, 2]
    assert await counts(engine, "dan@shop.test", tables) == [1, 2]
    assert await counts(engine, "sam@shop.test", tables) == [3, 3]  # staff, from app_metadata
    assert await counts(engine, "service_role", tables) == [3, 3]


async def test_shop_orders_trigger_recorded_pg_net_requests_with_the_vault_key(loaded: dict[str, AsyncEngine]) -> None:
    engine = loaded["shop_orders"]
    async with engine.connect() as conn:
        rows = (
            (
                await conn.execute(
                    text(
                        "select url, headers, convert_from(body, 'UTF8') as body, timeout_milliseconds"
                        " from net.http_request_queue order by id"
                    )
                )
            )
            .mappings()
            .all()
        )
        jobs = (await conn.execute(text("select jobname, schedule, active from cron.job"))).all()
    assert [json.loads(r["body"])["status"] for r in rows] == ["pending", "pending", "pending", "paid"]
    for row in rows:
        assert row["url"] == "https://fulfilment.example.com/v1/orders"
        assert row["headers"]["Authorization"] == "Bearer fulfilment-test-key"
        assert row["timeout_milliseconds"] == 3000
    assert [tuple(j) for j in jobs] == [("cancel-stale-orders", "0 * * * *", True)]


async def test_shop_orders_customers_place_orders_and_the_schema_check_applies(loaded: dict[str, AsyncEngine]) -> None:
    engine = loaded["shop_orders"]
    dan = await identity(engine, "dan@shop.test")
    good = {"name": "Dan", "street": "2 High St", "postcode": "SW1A 1AA", "country": "GB"}
    async with impersonate(engine, dan, commit=False) as conn:
        await conn.execute(
            text("insert into public.orders (customer_id, shipping) values (:uid, cast(:s as jsonb))"),
            {"uid": uuid.UUID(dan.sub or ""), "s": json.dumps(good)},
        )
        assert (await conn.execute(text("select count(*) from public.orders"))).scalar() == 2
    with pytest.raises(Exception, match="shipping_is_an_address"):
        async with impersonate(engine, dan, commit=False) as conn:
            await conn.execute(
                text("insert into public.orders (customer_id, shipping) values (:uid, cast(:s as jsonb))"),
                {"uid": uuid.UUID(dan.sub or ""), "s": json.dumps(good | {"country": "XX"})},
            )
    with pytest.raises(Exception, match="row-level security"):
        async with impersonate(engine, dan, commit=False) as conn:
            await conn.execute(
                text("insert into public.orders (customer_id, shipping) values (:uid, cast(:s as jsonb))"),
                {"uid": uuid.UUID("c0c0c0c0-0000-4000-8000-000000000001"), "s": json.dumps(good)},
            )


# -- chat_rbac: enums -> authorize() -> policies, a custom claim, pgjwt invites, a GET webhook -----------------------


async def test_chat_rbac_rls_per_identity_and_custom_claim(loaded: dict[str, AsyncEngine]) -> None:
    engine = loaded["chat_rbac"]
    tables = ["public.channels", "public.messages"]
    assert await counts(engine, "anon", tables) == [0, 0]
    assert await counts(engine, "user@chat.test", tables) == [2, 2]
    assert await counts(engine, "mod@chat.test", tables) == [2, 2]
    user = await identity(engine, "user@chat.test")
    moderator = await identity(engine, "mod@chat.test", user_role="moderator")
    for who, deleted in ((user, 0), (moderator, 2)):
        async with impersonate(engine, who, commit=False) as conn:
            assert (await conn.execute(text("delete from public.messages"))).rowcount == deleted
    async with engine.connect() as conn:
        event = {"user_id": "f1f1f1f1-0000-4000-8000-000000000001", "claims": {"role": "authenticated"}}
        out = (
            await conn.execute(
                text("select public.custom_access_token_hook(cast(:e as jsonb))"), {"e": json.dumps(event)}
            )
        ).scalar_one()
    assert out["claims"]["user_role"] == "moderator"


async def test_chat_rbac_invites_are_jwts_pyjwt_accepts(loaded: dict[str, AsyncEngine]) -> None:
    engine = loaded["chat_rbac"]
    secret = "invite-secret-" + "k" * 40
    user = await identity(engine, "user@chat.test")
    async with impersonate(engine, user, commit=False) as conn:
        await conn.execute(text("select set_config('app.invite_secret', :s, true)"), {"s": secret})
        token = (await conn.execute(text("select public.channel_invite(2)"))).scalar_one()
    claims = jwt.decode(token, secret, algorithms=["HS256"])
    assert claims["channel"] == 2 and claims["by"] == "f2f2f2f2-0000-4000-8000-000000000002"
    assert claims["exp"] > time.time() + 6 * 86400


async def test_chat_rbac_get_webhook_recorded_with_params(loaded: dict[str, AsyncEngine]) -> None:
    engine = loaded["chat_rbac"]
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "select q.method, q.url, q.body, h.hook_name from net.http_request_queue q"
                    " join supabase_functions.hooks h on h.request_id = q.id order by q.id"
                )
            )
        ).all()
    assert [tuple(r) for r in rows] == [
        ("GET", "http://localhost:3000/api/ping?source=messages", None, "message-ping")
    ] * 2
