"""Round trips: the demo schema and Pagila rebuild with 0 differences; sqlacodegen's output, through the
same path, is reported beside ours."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from schema_rig import run_sql

from workbench.local.standin import LocalStandIn
from workbench.schema.roundtrip import RoundTrip, check, roundtrip, side_by_side, sqlacodegen_code


async def test_demo_schema_round_trip_is_exact(standin: LocalStandIn, supabase_db: str) -> None:
    """Nothing copied from the source: the module creates is_org_member() and the auth.users trigger itself."""
    report = await roundtrip(standin.dsn(), supabase_db, ["public"])
    assert report.ok, report.report()
    assert "class AuthUser(Base)" in report.code  # the stand-in for auth.users (create_all skips it: it exists)
    assert "CREATE OR REPLACE FUNCTION public.is_org_member(org bigint)" in report.code
    assert "CREATE OR REPLACE TRIGGER on_auth_user_created AFTER INSERT ON auth.users" in report.code
    assert set(report.seconds) == {"reflect_source", "generate", "import", "create_all", "reflect_target"}
    assert "trigger" in report.scope().split("; ignored")[0] and "grant" in report.scope().split("ignored")[1]


async def test_demo_round_trip_one_module_per_schema(standin: LocalStandIn, supabase_db: str) -> None:
    report = await roundtrip(standin.dsn(), supabase_db, ["public"], layout="package")
    assert report.ok, report.report()


async def test_pagila_round_trip_is_exact(pagila_dsn: str, empty_db: str) -> None:
    """Into a bare empty database: Pagila needs no Supabase parts, and its 15 triggers, 10 functions and
    group_concat aggregate come from the module."""
    report = await roundtrip(pagila_dsn, empty_db, ["public"])
    assert report.ok, report.report()
    for needle in (
        "CREATE OR REPLACE VIEW public.actor_info",
        "CREATE MATERIALIZED VIEW IF NOT EXISTS",
        "ATTACH PARTITION public.payment_p2022_07",
        'postgresql_partition_by": "RANGE (payment_date)"',
        "CREATE OR REPLACE AGGREGATE public.group_concat(text)",
        "CREATE OR REPLACE TRIGGER film_fulltext_trigger",
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
    from workbench.local.standin import BOOTSTRAP_SQL

    ours_target, theirs_target = await fresh_db("ours"), await fresh_db("theirs")
    for dsn in (ours_target, theirs_target):
        await run_sql(dsn, BOOTSTRAP_SQL.read_text())
    ours = await roundtrip(standin.dsn(), ours_target, ["public"])
    code = sqlacodegen_code(standin.dsn(), ["public"])
    bare = await roundtrip(
        standin.dsn(), await fresh_db("bare"), ["public"], code=code, generator="sqlacodegen, empty db"
    )
    theirs = await roundtrip(standin.dsn(), theirs_target, ["public"], code=code, generator="sqlacodegen, Supabase db")
    with capsys.disabled():
        print("\nDemo schema round trip\n" + side_by_side(ours, bare, theirs))
    assert ours.ok
    assert bare.stage == "create_all" and 'schema "auth" does not exist' in (bare.error or "")
    # the extended diff sees what sqlacodegen leaves out: policies, the function they call, the trigger
    assert theirs.error is None and {"rls", "policy", "function", "trigger"} <= set(theirs.counts())


async def test_import_errors_are_reported_not_raised(standin: LocalStandIn, empty_db: str) -> None:
    report = await roundtrip(standin.dsn(), empty_db, ["public"], code="raise RuntimeError('broken on purpose')")
    assert isinstance(report, RoundTrip) and not report.ok
    assert report.stage == "import" and report.error == "RuntimeError: broken on purpose"
    assert report.summary() == "workbench: failed at import: RuntimeError: broken on purpose"


async def test_extra_tables_in_the_target_are_differences(standin: LocalStandIn, supabase_db: str) -> None:
    await run_sql(supabase_db, "create table public.leftover (id int)")
    report = await roundtrip(standin.dsn(), supabase_db, ["public"])
    assert [(d.path, d.kind) for d in report.differences] == [("public.leftover", "extra")]
