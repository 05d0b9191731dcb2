"""Async loading patterns on the demo models against the stand-in: raise, selectin, joined, awaitable_attrs,
the Loader helper (filter, order, page, first, count, cache, refresh) and the statement log."""

from __future__ import annotations

import uuid

import asyncpg
import pytest
from rigs import RoundTripCounter
from sqlalchemy import exc as sa_exc
from sqlalchemy import inspect, select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import configure_mappers, joinedload, selectinload

from workbench.core.engine import create_engine
from workbench.core.identity import Identity, user_identity
from workbench.core.impersonation import sessionmaker_for
from workbench.teaching.demo_models import Base, Membership, Organization, Project, Task, TaskStatus
from workbench.teaching.loading import PRE_PING, Loader, LoaderError, Page, ResultCache, log_statements, query

ALICE = uuid.UUID("11111111-1111-4111-8111-111111111111")


@pytest.fixture(scope="module")
async def engine(db_url: str):  # type: ignore[no-untyped-def]
    eng = create_engine(db_url)
    yield eng
    await eng.dispose()


@pytest.fixture(scope="module")
async def alice(standin) -> Identity:  # type: ignore[no-untyped-def]
    conn = await asyncpg.connect(standin.dsn())
    try:
        return await user_identity(conn, "alice@example.com")
    finally:
        await conn.close()


async def test_demo_models_match_the_demo_schema(engine: AsyncEngine) -> None:
    configure_mappers()

    def columns(sync_conn, schema, table):  # type: ignore[no-untyped-def]
        return [c["name"] for c in inspect(sync_conn).get_columns(table, schema=schema)]

    async with engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            in_db = await conn.run_sync(columns, table.schema, table.name)
            in_model = [c.name for c in table.columns]
            if table.schema == "auth":
                assert set(in_model) <= set(in_db), table.fullname
            else:
                assert in_model == in_db, table.fullname


async def test_lazy_raise_names_the_relationship(engine: AsyncEngine, alice: Identity) -> None:
    async with sessionmaker_for(engine, alice)() as session:
        task = (await session.scalars(select(Task).order_by(Task.id).limit(1))).one()
        with pytest.raises(sa_exc.InvalidRequestError, match=r"'Task.project' is not available due to lazy='raise'"):
            _ = task.project


async def test_default_lazy_load_is_missing_greenlet_and_awaitable_attrs_fixes_it(
    engine: AsyncEngine, alice: Identity
) -> None:
    async with sessionmaker_for(engine, alice)() as session:
        org = (await session.scalars(select(Organization).where(Organization.name == "Acme"))).one()
        with pytest.raises(sa_exc.MissingGreenlet):
            _ = org.projects
        projects = await org.awaitable_attrs.projects
    assert [p.name for p in projects] == ["Website", "Mobile app"]


async def test_selectinload_is_two_selects_and_joinedload_one(engine: AsyncEngine, alice: Identity) -> None:
    sessions = sessionmaker_for(engine, alice)
    with log_statements(engine) as selectin_log:
        async with sessions() as session:
            projects = (await session.scalars(select(Project).options(selectinload(Project.tasks)))).all()
    with log_statements(engine) as joined_log:
        async with sessions() as session:
            joined = (await session.scalars(select(Project).options(joinedload(Project.tasks)))).unique().all()
    assert {p.name: [t.title for t in p.tasks] for p in projects} == {
        p.name: [t.title for t in p.tasks] for p in joined
    }
    assert sum(len(p.tasks) for p in projects) == 3, "RLS: alice sees only her own three tasks"
    selects = [s for s in selectin_log.statements if "FROM" in s]
    assert len(selects) == 2 and "IN (" in selects[1].replace("\n", " ").upper() or "ANY" in selects[1]
    assert len([s for s in joined_log.statements if "FROM" in s]) == 1
    assert "LEFT OUTER JOIN" in joined_log.statements[-1]
    assert selectin_log.entries[:3] == [PRE_PING, "BEGIN", selectin_log.statements[0]], "ping, then BEGIN"
    assert not any("set_config" in s for s in selectin_log.statements), "the identity rides in BEGIN's message"
    assert selectin_log.entries[-1] == "ROLLBACK"
    assert selectin_log.pings == 1 and selectin_log.round_trips == len(selectin_log.entries) + 2
    assert selectin_log.round_trips == joined_log.round_trips + 1


async def test_the_log_counts_the_round_trips_on_the_wire(standin, alice: Identity) -> None:  # type: ignore[no-untyped-def]
    proxy = RoundTripCounter(standin.status().db_port, standin.keys().db_password())
    await proxy.start()
    eng = create_engine(proxy.dsn.replace("postgresql://", "postgresql+asyncpg://"))
    try:
        sessions = sessionmaker_for(eng, alice)

        async def load() -> None:
            async with sessions() as session:
                await session.scalars(select(Project).options(selectinload(Project.tasks)))

        await load()
        await load()  # the first pre-ping prepares ';': steady state from here on
        proxy.reset()
        with log_statements(eng) as log:
            await load()
        # BEGIN rides with the first SELECT (one flight the log counts twice), and the check-in session reset
        # rides with the ROLLBACK (one flight the log does not see): the two add up to the wire's count again
        assert (log.round_trips, proxy.round_trips) == (7, 7), (log.show(), proxy.messages)
        assert log.pings == 1, "the pool's pre-ping: BEGIN, ';' and ROLLBACK on the wire"
    finally:
        await eng.dispose()
        await proxy.stop()


async def test_loader_filters_orders_pages_and_counts_under_rls(engine: AsyncEngine, alice: Identity) -> None:
    tasks = query(sessionmaker_for(engine, alice), Task)
    ordered = tasks.order_by(Task.id)
    assert [t.title for t in await ordered.all()] == ["Draft landing page", "Set up analytics", "Ship iOS beta"]
    assert await tasks.count() == 3
    todo = ordered.where(Task.status == TaskStatus.todo)
    assert await todo.count() == 2 and (await todo.first()).title == "Set up analytics"  # type: ignore[union-attr]
    assert (await ordered.filter_by(title="Ship iOS beta").one()).status is TaskStatus.todo
    first, second = await ordered.page(1, 2), await ordered.page(2, 2)
    assert isinstance(first, Page) and [len(first.items), len(second.items)] == [2, 1]
    assert (first.total, first.pages, first.has_next, first.has_previous) == (3, 2, True, False)
    assert (second.has_next, second.has_previous) == (False, True)
    with_projects = ordered.options(selectinload(Task.project))
    assert [t.project.name for t in await with_projects.all()] == ["Website", "Website", "Mobile app"]
    assert ordered.sql().endswith("FROM tasks ORDER BY tasks.id") and "Task" in repr(ordered)


async def test_results_are_cached_until_refreshed(engine: AsyncEngine, alice: Identity) -> None:
    async with sessionmaker_for(engine, alice)() as session:
        cache = ResultCache()
        tasks = Loader(session, Task, cache=cache).order_by(Task.id)
        assert len(await tasks.all()) == 3
        with log_statements(engine) as log:
            assert len(await tasks.all()) == 3
        assert log.entries == [] and cache.hits == 1, "the second read came from the cache"
        session.add(Task(project_id=1, owner_id=ALICE, title="Cached or not?"))
        await session.flush()  # visible in this transaction only: rolled back below
        assert len(await tasks.all()) == 3, "still the cached result"
        assert [t.title for t in await tasks.refresh()][-1] == "Cached or not?"
        assert await tasks.count() == 4
        assert tasks.invalidate() >= 2 and len(cache) == 0
        await session.rollback()
    assert await query(sessionmaker_for(engine, alice), Task).count() == 3, "nothing was committed"


async def test_bad_pages_and_not_exactly_one_are_clear(engine: AsyncEngine) -> None:
    memberships = query(sessionmaker_for(engine, Identity.service_role()), Membership)
    with pytest.raises(LoaderError, match="start at 1"):
        await memberships.page(0)
    with pytest.raises(LoaderError, match="at least one row"):
        await memberships.page(1, 0)
    with pytest.raises(LoaderError, match="found several"):
        await memberships.one()
    with pytest.raises(LoaderError, match="found none"):
        await memberships.filter_by(org_id=999).one()
    assert await memberships.filter_by(org_id=999).first() is None
