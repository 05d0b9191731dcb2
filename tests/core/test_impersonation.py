"""Impersonating transactions: what auth.uid()/auth.jwt()/RLS see, no leaks through a pooler, round trips."""

from __future__ import annotations

import asyncio
import json
import random

import asyncpg
import pytest
from rigs import RoundTripCounter
from sqlalchemy import text

from workbench.core.engine import EngineOptions, create_engine
from workbench.core.identity import Identity
from workbench.core.impersonation import impersonate, impersonating, sessionmaker_for, whoami
from workbench.core.query import run_on_connection, run_query
from workbench.core.settings import ConnectionMode

ALICE = "11111111-1111-4111-8111-111111111111"
BOB = "22222222-2222-4222-8222-222222222222"


def user(sub: str, **extra: object) -> Identity:
    return Identity(role="authenticated", claims={"sub": sub, "role": "authenticated", **extra}, label=sub)


@pytest.fixture(params=["direct", "transaction"])
async def engine(request, db_url, pgbouncer_factory):  # type: ignore[no-untyped-def]
    if request.param == "direct":
        eng = create_engine(db_url, ConnectionMode.DIRECT)
    else:
        eng = create_engine(pgbouncer_factory(pool_size=1).url, ConnectionMode.TRANSACTION)
    yield eng
    await eng.dispose()


async def test_each_identity_sees_what_supabase_would(engine) -> None:  # type: ignore[no-untyped-def]
    cases = [
        (Identity.none(), "postgres", None, 7),
        (Identity.anon(), "anon", None, 0),
        (user(ALICE), "authenticated", ALICE, 3),
        (user(BOB), "authenticated", BOB, 2),
        (user(BOB, user_role="admin"), "authenticated", BOB, 7),  # custom claim read by a policy
        (Identity.service_role(), "service_role", None, 7),
    ]
    for identity, role, uid, tasks in cases:
        async with impersonate(engine, identity, readonly=True) as conn:
            seen = await whoami(conn)
            count = (await conn.execute(text("select count(*) from public.tasks"))).scalar()
        assert seen["current_user"] == role, identity
        assert (str(seen["uid"]) if seen["uid"] else None) == uid, identity
        assert count == tasks, identity
        if identity.claims:
            assert seen["jwt"]["role"] == identity.claims["role"]


async def test_nothing_survives_the_transaction(engine) -> None:  # type: ignore[no-untyped-def]
    async with engine.connect() as conn:
        async with conn.begin():
            await conn.execute(*_apply(user(ALICE, user_role="admin")))
            assert str((await conn.execute(text("select auth.uid()"))).scalar()) == ALICE
        async with conn.begin():
            row = (await conn.execute(text("select current_user, auth.uid(), auth.jwt(), auth.role()"))).one()
    assert tuple(row) == ("postgres", None, None, None)


def _apply(identity: Identity):  # type: ignore[no-untyped-def]
    from workbench.core.impersonation import apply_statement

    sql, args = apply_statement(identity)
    params = {f"p{i}": v for i, v in enumerate(args, start=1)}
    for i in range(len(args), 0, -1):
        sql = sql.replace(f"${i}", f":p{i}")
    return text(sql), params


async def test_orm_session_runs_every_transaction_as_the_identity(engine) -> None:  # type: ignore[no-untyped-def]
    session_factory = sessionmaker_for(engine, user(ALICE))
    async with session_factory() as session:
        first = (await session.execute(text("select count(*) from public.tasks"))).scalar()
        await session.commit()
        second = (await session.execute(text("select auth.uid()"))).scalar()
        await session.rollback()
    assert first == 3 and str(second) == ALICE
    async with engine.connect() as conn:  # the plain engine is untouched
        assert (await conn.execute(text("select auth.uid()"))).scalar() is None


@pytest.mark.pgbouncer
async def test_ten_thousand_interleaved_transactions_never_leak(pgbouncer_factory) -> None:
    """One PgBouncer server connection shared by everyone: each transaction must see only its own identity."""
    bouncer = pgbouncer_factory(pool_size=1)
    engine = create_engine(bouncer.url, ConnectionMode.TRANSACTION, EngineOptions(pool_size=10, max_overflow=0))
    identities: list[Identity | None] = [None]
    for i in range(12):
        identities.append(user(f"00000000-0000-4000-8000-{i:012d}", marker=f"m{i}"))
    identities += [
        Identity.anon().with_claims({"marker": "anon"}),
        Identity.service_role().with_claims({"marker": "svc"}),
    ]
    total, tasks = 10_000, 25
    leaks: list[str] = []
    failures: list[str] = []
    done = 0

    async def worker(seed: int) -> None:
        nonlocal done
        rnd = random.Random(seed)
        for _ in range(total // tasks):
            identity = rnd.choice(identities)
            try:
                use_fast_path = rnd.random() < 0.5
                if use_fast_path:
                    outcome = await run_query(
                        engine,
                        "select current_user as r, auth.jwt() ->> 'marker' as m, auth.uid()::text as u",
                        identity=identity or Identity.none(),
                    )
                    r, m, u = outcome.frame.iloc[0]["r"], outcome.frame.iloc[0]["m"], outcome.frame.iloc[0]["u"]
                else:
                    target = impersonating(engine, identity) if identity else engine
                    async with target.connect() as conn, conn.begin():
                        row = (
                            await conn.execute(text("select current_user, auth.jwt() ->> 'marker', auth.uid()::text"))
                        ).one()
                    r, m, u = row
                expected_role = identity.role if identity else "postgres"
                expected_marker = (identity.claims or {}).get("marker") if identity else None
                expected_uid = identity.sub if identity else None
                if (r, _none(m), _none(u)) != (expected_role, expected_marker, expected_uid):
                    leaks.append(f"{identity and identity.label}: saw {(r, m, u)}")
            except Exception as exc:
                failures.append(f"{type(exc).__name__}: {exc}")
            done += 1

    try:
        await asyncio.gather(*(worker(s) for s in range(tasks)))
    finally:
        await engine.dispose()
    assert failures == []
    assert leaks == []
    assert done == total


def _none(value: object) -> object:
    return (
        None
        if value is None
        or (isinstance(value, float) and value != value)
        or value is getattr(__import__("pandas"), "NA", object())
        else value
    )


async def _count_round_trips(counter: RoundTripCounter, fn) -> int:  # type: ignore[no-untyped-def]
    """Steady-state flights of ``fn`` (client writes the client waits on: pipelined messages share one):
    the fewest over a few runs after a warm-up (codecs, type introspection and statement caches are filled
    on first use)."""
    await fn()
    counts = []
    for _ in range(3):
        counter.reset()
        await fn()
        counts.append(counter.flights)
    return min(counts)


@pytest.mark.parametrize("statement_cache", [100, 0], ids=["direct", "transaction-pooler-settings"])
async def test_the_query_path_costs_no_extra_round_trip(standin, statement_cache: int) -> None:
    counter = RoundTripCounter(standin.status().db_port, standin.keys().db_password())
    await counter.start()
    conn = await asyncpg.connect(counter.dsn, statement_cache_size=statement_cache)
    sql = "select id, title from public.tasks order by id"
    try:

        async def plain() -> None:
            async with conn.transaction(readonly=True):
                await conn.fetch(sql)

        async def as_alice() -> None:
            await run_on_connection(conn, sql, identity=user(ALICE), pooler_safe=statement_cache == 0)

        baseline = await _count_round_trips(counter, plain)
        impersonated = await _count_round_trips(counter, as_alice)
    finally:
        await conn.close()
        await counter.stop()
    # BEGIN + identity ride with the query and ROLLBACK + reset with it too (workbench.core.pipeline): one
    # flight; with the statement cache off (poolers) the kept description is checked by a Describe in it
    assert baseline >= 3
    assert impersonated == 1


async def test_orm_session_impersonation_costs_no_round_trip(standin) -> None:
    counter = RoundTripCounter(standin.status().db_port, standin.keys().db_password())
    await counter.start()
    engine = create_engine(
        counter.dsn.replace("postgresql://", "postgresql+asyncpg://"),
        ConnectionMode.DIRECT,
        EngineOptions(pre_ping="optimistic"),  # SQLAlchemy's ping would add 3 flights to both
    )
    query = text("select count(*) from public.tasks")
    try:

        async def plain() -> None:
            async with engine.connect() as conn, conn.begin():
                await conn.execute(query)

        async def as_alice() -> None:
            async with impersonating(engine, user(ALICE)).connect() as conn, conn.begin():
                await conn.execute(query)

        baseline = await _count_round_trips(counter, plain)
        baseline_messages = list(counter.messages)
        impersonated = await _count_round_trips(counter, as_alice)
    finally:
        await engine.dispose()
        await counter.stop()
    # BEGIN + identity ride with the first statement; COMMIT carries the session reset: two flights either way
    assert impersonated == baseline == 2, (baseline_messages, counter.messages)


async def test_identity_errors_are_clear(settings) -> None:
    import workbench
    from workbench.core.identity import IdentityError

    wb = workbench.Workbench(settings)
    with pytest.raises(IdentityError, match="No user with email 'nobody@example.com'"):
        await wb.resolve_identity("nobody@example.com")
    with pytest.raises(IdentityError, match="No user with id"):
        await wb.resolve_identity("99999999-9999-4999-8999-999999999999")
    with pytest.raises(IdentityError, match="not valid JSON"):
        await wb.resolve_identity(claims="{user_role: admin}")
    with pytest.raises(IdentityError, match="must be a JSON object"):
        await wb.resolve_identity(claims="[1, 2]")
    with pytest.raises(IdentityError, match="Role 'wizard' does not exist"):
        await wb.resolve_identity(role="wizard")
    with pytest.raises(IdentityError, match="not a valid role name"):
        Identity(role="x; drop table y")
    await wb.aclose()


async def test_user_claims_are_built_like_supabase_access_tokens(settings) -> None:
    import workbench

    wb = workbench.Workbench(settings)
    identity = await wb.resolve_identity("alice@example.com", claims={"user_role": "admin"})
    claims = dict(identity.claims or {})
    await wb.aclose()
    for key in (
        "sub",
        "email",
        "phone",
        "role",
        "aud",
        "iss",
        "iat",
        "exp",
        "app_metadata",
        "user_metadata",
        "aal",
        "amr",
        "session_id",
        "is_anonymous",
    ):
        assert key in claims, key
    assert claims["sub"] == ALICE and claims["email"] == "alice@example.com"
    assert claims["aud"] == "authenticated" and claims["role"] == "authenticated"
    assert claims["user_metadata"] == {"full_name": "Alice Archer"}
    assert claims["app_metadata"]["provider"] == "email"
    assert claims["exp"] - claims["iat"] == 3600 and claims["iss"].endswith("/auth/v1")
    assert claims["user_role"] == "admin"
    assert json.loads(identity.claims_json())["sub"] == ALICE
