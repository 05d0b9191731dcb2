"""The query path's pipelining (workbench.core.pipeline): fewer round trips, the same answers.

Judged by outcomes on the real stand-in (and PgBouncer in transaction mode): the rows a cell returns after the
table changed under a kept description, results larger than one flight carries, a failing identity prologue
reported as itself, and a connection that keeps working after each of them.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from workbench.core.engine import EngineOptions, create_engine
from workbench.core.identity import Identity
from workbench.core.impersonation import impersonating
from workbench.core.pipeline import Hold, Pipeline, Silent, pipeline_for
from workbench.core.query import FLIGHT_BYTES, FLIGHT_ROWS, QueryError, run_query
from workbench.core.settings import ConnectionMode
from workbench.local.standin import LocalStandIn


@pytest.fixture()
async def pooled(pgbouncer_factory) -> AsyncIterator[AsyncEngine]:  # type: ignore[no-untyped-def]
    """Through PgBouncer in transaction mode with one server connection and one client connection."""
    bouncer = pgbouncer_factory(pool_size=1)
    engine = create_engine(bouncer.url, ConnectionMode.TRANSACTION, EngineOptions(pool_size=1, max_overflow=0))
    yield engine
    await engine.dispose()


@pytest.fixture()
async def direct(db_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(db_url, ConnectionMode.DIRECT, EngineOptions(pool_size=1, max_overflow=0))
    yield engine
    await engine.dispose()


@pytest.fixture(params=["direct", "pooled"])
async def engine(request: pytest.FixtureRequest, db_url: str, pgbouncer_factory) -> AsyncIterator[AsyncEngine]:  # type: ignore[no-untyped-def]
    """Directly, and through PgBouncer in transaction mode (one server connection)."""
    if request.param == "direct":
        made = create_engine(db_url, ConnectionMode.DIRECT, EngineOptions(pool_size=1, max_overflow=0))
    else:
        url = pgbouncer_factory(pool_size=1).url
        made = create_engine(url, ConnectionMode.TRANSACTION, EngineOptions(pool_size=1, max_overflow=0))
    yield made
    await made.dispose()


@pytest.fixture()
async def table(standin: LocalStandIn) -> AsyncIterator[str]:
    name = f"public.wb_pipe_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(standin.dsn())
    try:
        await conn.execute(f"create table {name} (id int primary key, v int); insert into {name} values (1, 7), (2, 8)")
        yield name
    finally:
        await conn.execute(f"drop table if exists {name}")
        await conn.close()


async def test_a_kept_description_that_no_longer_holds_is_not_used(
    pooled: AsyncEngine, table: str, standin: LocalStandIn
) -> None:
    """Behind a transaction pooler a statement's description is kept and the statement parsed again in the
    flight of its Bind; when the table changed meanwhile, the Describe in that flight catches it and the
    cell runs again: the new column type's values, never the old codec's reading of them."""
    sql = f"select id, v from {table} order by id"
    first = await run_query(pooled, sql)
    assert first.frame["v"].tolist() == [7, 8]
    async with pooled.connect() as conn:
        driver = (await conn.get_raw_connection()).driver_connection
        pipe = pipeline_for(driver)
        assert pipe is not None and sql in pipe.described  # kept: the next run is one flight
    admin = await asyncpg.connect(standin.dsn())
    try:  # same column count, a type of the same width: a stale codec would read garbage silently
        await admin.execute(f"alter table {table} alter column v type float4 using (v * 1.5)::float4")
    finally:
        await admin.close()
    again = await run_query(pooled, sql)
    assert again.frame["v"].tolist() == [10.5, 12.0]
    assert (await run_query(pooled, sql)).frame["v"].tolist() == [10.5, 12.0]


async def test_results_larger_than_one_flight_are_complete(engine: AsyncEngine) -> None:
    rows = FLIGHT_ROWS * 2 + 5
    many = await run_query(engine, f"select g from generate_series(1, {rows}) g")
    assert many.frame["g"].tolist() == list(range(1, rows + 1)) and not many.truncated
    capped = await run_query(engine, f"select g from generate_series(1, {rows}) g", limit=10)
    assert capped.frame["g"].tolist() == list(range(1, 11)) and capped.truncated
    at_flight = await run_query(engine, f"select g from generate_series(1, {FLIGHT_ROWS}) g")
    assert len(at_flight.frame) == FLIGHT_ROWS and not at_flight.truncated
    # wider rows than one flight's byte budget: fetched again the bounded way, every row intact
    width = 256 * 1024
    count = FLIGHT_BYTES // width + 8
    wide = await run_query(engine, f"select g, repeat('x', {width}) as pad from generate_series(1, {count}) g")
    assert wide.frame["g"].tolist() == list(range(1, count + 1))
    assert set(wide.frame["pad"].str.len()) == {width}


async def test_a_failing_identity_is_reported_as_itself_and_the_connection_recovers(engine: AsyncEngine) -> None:
    """BEGIN + identity ride with the statement; when the identity fails (a role that does not exist) the
    statement only got "current transaction is aborted": the error shown is the identity's."""
    ghost = Identity(role="wb_no_such_role")
    with pytest.raises(QueryError, match='role "wb_no_such_role" does not exist'):
        await run_query(engine, "select 1 as one", identity=ghost)
    assert (await run_query(engine, "select current_user as u")).frame["u"].tolist() == ["postgres"]
    with pytest.raises(Exception, match='role "wb_no_such_role" does not exist'):
        async with impersonating(engine, ghost).connect() as conn, conn.begin():
            await conn.execute(text("select 1"))
    async with engine.connect() as conn, conn.begin():
        assert (await conn.execute(text("select current_setting('role')"))).scalar_one() == "none"


async def test_a_transaction_that_runs_nothing_leaves_nothing_queued(direct: AsyncEngine) -> None:
    async with impersonating(direct, Identity.for_role("anon")).connect() as conn:
        driver = (await conn.get_raw_connection()).driver_connection
        await conn.begin()
        await conn.commit()  # BEGIN was queued, never sent: dropped
        pipe = pipeline_for(driver)
        assert pipe is not None and not pipe.pending and not driver.is_in_transaction()
        # the next transaction still starts as the identity
        assert (await conn.execute(text("select current_setting('role')"))).scalar_one() == "anon"


def _message(kind: bytes, body: bytes) -> bytes:
    return kind + (len(body) + 4).to_bytes(4, "big") + body


@given(
    rows=st.lists(st.binary(max_size=40), max_size=60),
    budget=st.one_of(st.none(), st.integers(min_value=0, max_value=2_000)),
    cuts=st.lists(st.integers(min_value=1, max_value=97), max_size=40),
)
@settings(max_examples=300, deadline=None)
def test_the_answer_stream_is_split_at_any_boundary_and_rows_past_the_budget_are_dropped(
    rows: list[bytes], budget: int | None, cuts: list[int]
) -> None:
    """The last query's answer (rows, CommandComplete, ReadyForQuery) and the epilogue's (ROLLBACK) arrive
    in chunks the network chooses: asyncpg must see exactly the rows within the byte budget, the command
    tag and one ReadyForQuery carrying the epilogue's status, whatever the chunking."""
    seen: list[bytes] = []
    sink = type("Sink", (), {"data_received": lambda self, data: seen.append(bytes(data))})()
    pipe = Pipeline(protocol=sink, transport=None, _write=None, _writelines=None)
    hold, epilogue = Hold(budget), Silent("rollback")
    pipe._tokens.extend([hold, epilogue])
    data_rows = [_message(b"D", row) for row in rows]
    tag, in_transaction = _message(b"C", b"SELECT 1\x00"), _message(b"Z", b"T")
    stream = b"".join(data_rows) + tag + in_transaction + _message(b"C", b"ROLLBACK\x00") + _message(b"Z", b"I")
    pos = 0
    for cut in [*cuts, len(stream)]:
        pipe.data_received(stream[pos : pos + cut])
        pos += cut
        if pos >= len(stream):
            break
    kept, total = [], 0
    for row in data_rows:
        total += len(row)
        if budget is None or total <= budget:
            kept.append(row)
    assert b"".join(seen) == b"".join(kept) + tag + _message(b"Z", b"I")
    assert hold.row_bytes == sum(map(len, data_rows)) and hold.overflow == (len(kept) < len(data_rows))
    assert epilogue.done and epilogue.status == "I" and hold.status == "T" and not pipe.pending
