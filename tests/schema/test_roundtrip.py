"""Round trips: the demo schema and Pagila rebuild with 0 differences; sqlacodegen's output, through the
same path, is reported beside ours."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from schema_rig import run_sql

from workbench.local.standin import LocalStandIn
from workbench.schema.roundtrip import RoundTrip, copy_functions, roundtrip, side_by_side, sqlacodegen_code


async def test_demo_schema_round_trip_is_exact(standin: LocalStandIn, empty_db: str) -> None:
    report = await roundtrip(standin.dsn(), empty_db, ["public"])
    assert report.ok, report.report()
    assert report.functions_copied >= 3  # auth.uid(), auth.jwt(), public.is_org_member(), ...
    assert "class AuthUser(Base)" in report.code  # the stand-in for auth.users, created in the empty database
    assert set(report.seconds) == {"reflect_source", "generate", "import", "create_all", "reflect_target"}


async def test_demo_round_trip_one_module_per_schema(standin: LocalStandIn, empty_db: str) -> None:
    report = await roundtrip(standin.dsn(), empty_db, ["public"], layout="package")
    assert report.ok, report.report()


async def test_pagila_round_trip_is_exact(pagila_dsn: str, empty_db: str) -> None:
    report = await roundtrip(pagila_dsn, empty_db, ["public"])
    assert report.ok, report.report()
    for needle in (
        "CREATE OR REPLACE VIEW public.actor_info",
        "CREATE MATERIALIZED VIEW IF NOT EXISTS",
        "ATTACH PARTITION public.payment_p2022_07",
        'postgresql_partition_by": "RANGE (payment_date)"',
    ):
        assert needle in report.code


async def test_options_that_drop_things_show_up_in_the_diff(pagila_dsn: str, empty_db: str) -> None:
    """The diff is not blind: leaving indexes out is reported, index by index."""
    report = await roundtrip(pagila_dsn, empty_db, ["public"], options=["noindexes"])
    assert report.error is None
    assert set(report.counts()) == {"index"}
    assert report.counts()["index"] == 34  # every CREATE INDEX of the Pagila dump


@pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning")  # sqlacodegen's code warns; ours must not
@pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SADeprecationWarning")  # raised inside sqlacodegen 4.0.4
async def test_sqlacodegen_beside_ours_on_pagila(
    pagila_dsn: str, fresh_db: Callable[[str], Awaitable[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    ours = await roundtrip(pagila_dsn, await fresh_db("ours"), ["public"])
    code = sqlacodegen_code(pagila_dsn, ["public"])
    as_produced = await roundtrip(
        pagila_dsn, await fresh_db("theirs"), ["public"], code=code, generator="sqlacodegen as produced"
    )
    # The hand patch: import MetaData, and let the domain be created with the tables.
    patched_code = code.replace(", metadata=MetaData()", "").replace("create_type=False", "create_type=True")
    patched = await roundtrip(
        pagila_dsn, await fresh_db("patched"), ["public"], code=patched_code, generator="sqlacodegen hand-patched"
    )
    with capsys.disabled():
        print("\nPagila round trip\n" + side_by_side(ours, as_produced, patched))
    assert ours.ok
    assert as_produced.stage == "import" and "MetaData" in (as_produced.error or "")
    assert patched.error is None
    counts = patched.counts()
    assert counts["table"] >= 8  # 7 views and the materialized view created as tables, the partitioned table
    assert counts["partition"] >= 14 and counts["default"] >= 7 and counts["column_order"] >= 5


@pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning")
async def test_sqlacodegen_beside_ours_on_the_demo(
    standin: LocalStandIn, fresh_db: Callable[[str], Awaitable[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    ours = await roundtrip(standin.dsn(), await fresh_db("ours"), ["public"])
    code = sqlacodegen_code(standin.dsn(), ["public"])
    bare = await roundtrip(
        standin.dsn(), await fresh_db("bare"), ["public"], code=code, functions=False, generator="sqlacodegen, empty db"
    )
    theirs = await roundtrip(
        standin.dsn(), await fresh_db("theirs"), ["public"], code=code, generator="sqlacodegen + functions"
    )
    with capsys.disabled():
        print("\nDemo schema round trip\n" + side_by_side(ours, bare, theirs))
    assert ours.ok
    assert bare.stage == "create_all" and 'schema "auth" does not exist' in (bare.error or "")
    assert theirs.error is None and {"rls", "policy"} <= set(theirs.counts())


async def test_functions_are_copied_and_late_ones_retried(
    pagila_dsn: str, fresh_db: Callable[[str], Awaitable[str]]
) -> None:
    import asyncpg

    target = await fresh_db("functions")
    source_conn, target_conn = await asyncpg.connect(pagila_dsn), await asyncpg.connect(target)
    try:
        created, deferred = await copy_functions(source_conn, target_conn)
        # rewards_report() returns SETOF public.customer: it waits for the table
        assert any("rewards_report" in s for s in deferred)
        assert created >= 9
        names = {
            r["proname"]
            for r in await target_conn.fetch(
                "select proname from pg_proc p join pg_namespace n on n.oid = p.pronamespace where nspname = 'public'"
            )
        }
        assert {"group_concat", "_group_concat", "last_day", "film_in_stock"} <= names
    finally:
        await source_conn.close()
        await target_conn.close()


async def test_import_errors_are_reported_not_raised(standin: LocalStandIn, empty_db: str) -> None:
    report = await roundtrip(standin.dsn(), empty_db, ["public"], code="raise RuntimeError('broken on purpose')")
    assert isinstance(report, RoundTrip) and not report.ok
    assert report.stage == "import" and report.error == "RuntimeError: broken on purpose"
    assert report.summary() == "workbench: failed at import: RuntimeError: broken on purpose"


async def test_extra_tables_in_the_target_are_differences(standin: LocalStandIn, empty_db: str) -> None:
    await run_sql(empty_db, "create table public.leftover (id int)")
    report = await roundtrip(standin.dsn(), empty_db, ["public"])
    assert [(d.path, d.kind) for d in report.differences] == [("public.leftover", "extra")]
