"""Round trips: the demo schema and Pagila rebuild with 0 differences; sqlacodegen's output, through the
same path, is reported beside ours."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from schema_rig import run_sql

from workbench.local.standin import LocalStandIn
from workbench.schema.roundtrip import (
    RoundTrip,
    check,
    forget,
    import_code,
    metadata_of,
    roundtrip,
    side_by_side,
    sqlacodegen_code,
)

APPS_DIR = Path(__file__).parent / "apps"


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


# -- schemas written in the style of real apps (tests/schema/apps): built with create_all alone ----------

APPS = {
    "supabase_app": ["public"],
    "business": ["public"],
    "multischema": ["ref", "sales", "reporting"],
}


async def _source(fresh_db: Callable[[str], Awaitable[str]], app: str) -> str:
    """The app's migration applied to a fresh Supabase-like database (its own source, never the target)."""
    from workbench.local.standin import BOOTSTRAP_SQL

    dsn = await fresh_db("source")
    await run_sql(dsn, BOOTSTRAP_SQL.read_text())
    await run_sql(dsn, (APPS_DIR / f"{app}.sql").read_text())
    return dsn


@pytest.mark.parametrize("app", sorted(APPS))
async def test_app_round_trip_is_exact_and_drop_all_removes_it(
    app: str, fresh_db: Callable[[str], Awaitable[str]], supabase_db: str, tmp_path: Path
) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    source = await _source(fresh_db, app)
    report = await roundtrip(source, supabase_db, APPS[app])
    assert report.ok, report.report()
    before = await _objects(supabase_db, APPS[app])
    assert before["relations"] and before == await _objects(source, APPS[app])

    module = import_code(report.code, tmp_path)
    try:
        engine = create_async_engine(supabase_db.replace("postgresql://", "postgresql+asyncpg://"), poolclass=NullPool)
        try:
            async with engine.begin() as conn:
                await conn.run_sync(metadata_of(module).drop_all)
        finally:
            await engine.dispose()
    finally:
        forget(module)
    after = await _objects(supabase_db, APPS[app])
    assert after == {"relations": [], "types": [], "functions": [], "triggers": [], "extensions": []}


async def test_supabase_app_module_says_what_it_builds(fresh_db: Callable[[str], Awaitable[str]]) -> None:
    from workbench.schema.codegen import generate
    from workbench.schema.reflect import reflect_dsn

    db = await reflect_dsn(await _source(fresh_db, "supabase_app"), ["public"])
    code = generate(db).text
    for needle in (
        "CREATE EXTENSION IF NOT EXISTS vector SCHEMA extensions",  # found through the column and index
        "CREATE OR REPLACE FUNCTION public.has_team_role(team uuid, wanted public.team_role)",
        "CREATE OR REPLACE TRIGGER on_auth_user_updated AFTER UPDATE OF email ON auth.users",
        "ALTER TABLE public.messages REPLICA IDENTITY FULL",
        "ALTER TABLE public.messages CLUSTER ON messages_channel_created_idx",
        "ALTER TABLE public.teams DISABLE TRIGGER teams_audit",
        "DROP TRIGGER IF EXISTS on_auth_user_created ON auth.users",
    ):
        assert needle in code, needle
    assert "CREATE OR REPLACE FUNCTION" not in generate(db, ["nofunctions"]).text


async def test_the_diff_sees_triggers_functions_replica_identity_and_cluster(
    fresh_db: Callable[[str], Awaitable[str]], supabase_db: str
) -> None:
    """The losses the old diff could not see: leave functions out, undo replica identity and CLUSTER ON."""
    source = await _source(fresh_db, "supabase_app")
    report = await roundtrip(source, supabase_db, ["public"], options=["nofunctions"], ignore={"grant", "policy"})
    assert report.stage == "create_all"  # the policies call has_team_role(): without functions they cannot be made
    target = await fresh_db("target2")
    from workbench.local.standin import BOOTSTRAP_SQL

    await run_sql(target, BOOTSTRAP_SQL.read_text())
    report = await roundtrip(source, target, ["public"], options=["nofunctions", "norls"], ignore={"grant"})
    assert report.error is None
    counts = report.counts()
    assert counts["function"] == 6 and counts["trigger"] == 6, report.report()
    await run_sql(
        target,
        "alter table public.messages replica identity default; alter table public.messages set without cluster;",
    )
    from workbench.schema.diff import diff
    from workbench.schema.reflect import reflect_dsn

    found = diff(await reflect_dsn(source, ["public"]), await reflect_dsn(target, ["public"]))
    cats = {d.category for d in found}
    assert {"replica_identity", "cluster", "function", "trigger", "rls", "policy"} <= cats


async def test_check_builds_into_a_throwaway_database_and_drops_it(standin: LocalStandIn) -> None:
    import asyncpg

    report = await check(standin.dsn(), ["public"])
    assert report.ok, report.report()
    conn = await asyncpg.connect(standin.dsn())
    try:
        left = await conn.fetchval("select count(*) from pg_database where datname like 'wb_check_%'")
    finally:
        await conn.close()
    assert left == 0


async def _objects(dsn: str, schemas: list[str]) -> dict[str, list[str]]:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        queries = {
            "relations": """select n.nspname || '.' || c.relname
                              from pg_class c join pg_namespace n on n.oid = c.relnamespace
                             where n.nspname = any($1::text[]) and c.relkind in ('r', 'p', 'v', 'm', 'S')
                               and not exists (select 1 from pg_depend e where e.objid = c.oid and e.deptype = 'e')""",
            "types": """select n.nspname || '.' || t.typname
                          from pg_type t join pg_namespace n on n.oid = t.typnamespace
                         where n.nspname = any($1::text[]) and t.typtype in ('e', 'd')""",
            "functions": """select n.nspname || '.' || p.proname
                              from pg_proc p join pg_namespace n on n.oid = p.pronamespace
                             where n.nspname = any($1::text[])
                               and not exists (select 1 from pg_depend e where e.objid = p.oid and e.deptype = 'e')""",
            "triggers": """select c.relname || '.' || t.tgname from pg_trigger t join pg_class c on c.oid = t.tgrelid
                            join pg_proc p on p.oid = t.tgfoid join pg_namespace n on n.oid = p.pronamespace
                           where not t.tgisinternal and n.nspname = any($1::text[])""",
            "extensions": "select extname from pg_extension where extname <> 'plpgsql' and $1::text[] is not null",
        }
        return {k: sorted(r[0] for r in await conn.fetch(q, schemas)) for k, q in queries.items()}
    finally:
        await conn.close()


async def test_demo_round_trip_with_grants_compared(standin: LocalStandIn, supabase_db: str) -> None:
    """Grants on request: a new Supabase project's default privileges give the rebuilt tables and functions
    the same grants to anon, authenticated and service_role as the source's."""
    report = await roundtrip(standin.dsn(), supabase_db, ["public"], ignore=())
    assert report.ok, report.report()
    assert "ignored on request" not in report.scope()
