"""workbench.schema.codegen: golden files for tricky cases, each imported, configured and round-tripped;
options; naming helpers."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rigs import ROOT
from schema_rig import CASES, GOLDEN, UPDATE_GOLDEN, run_sql

from workbench.local.standin import LocalStandIn
from workbench.schema import codegen, naming, pysource
from workbench.schema.codegen import CodegenError, generate
from workbench.schema.reflect import reflect_dsn
from workbench.schema.roundtrip import create_all, import_code, metadata_of, roundtrip


@dataclass
class Case:
    name: str
    sql: str
    schemas: list[str] = field(default_factory=lambda: ["public"])
    kwargs: dict[str, Any] = field(default_factory=dict)
    target_setup: str | None = None


# What a Supabase project has before its migrations and the cases use: the auth schema and auth.uid().
AUTH_SETUP = (
    "create schema auth; create function auth.uid() returns uuid language sql stable as "
    "$$ select nullif(current_setting('request.jwt.claim.sub', true), '')::uuid $$;"
)

GOLDEN_CASES = [
    Case("keywords", "keywords"),
    Case("metadata_column", "metadata_column"),
    Case("several_fks", "several_fks"),
    Case("self_reference", "self_reference"),
    Case("non_identifier_names", "non_identifier_names"),
    Case("many_to_many", "many_to_many"),
    Case("enums", "enums", ["public", "billing"]),
    Case("identity_computed", "identity_computed"),
    Case("server_defaults", "server_defaults"),
    Case("comments", "comments"),
    Case("pk_less", "pk_less"),
    Case("primary_keys", "primary_keys"),
    Case("routines", "routines"),
    Case("partitions_views", "partitions_views"),
    Case("auth_users", "auth_users", target_setup=AUTH_SETUP),
    Case("auth_users_include", "auth_users", kwargs={"external": "include"}, target_setup=AUTH_SETUP),
    Case(
        "auth_users_plain",
        "auth_users",
        kwargs={"external": "plain"},
        # a plain FK needs the referenced table to exist, as it does on Supabase
        target_setup=AUTH_SETUP + "create table auth.users (id uuid primary key)",
    ),
]


@pytest.mark.filterwarnings("error::sqlalchemy.exc.SAWarning")  # the generated code configures cleanly
@pytest.mark.parametrize("case", GOLDEN_CASES, ids=lambda c: c.name)
async def test_golden(case: Case, empty_db: str, fresh_db: Callable[[str], Awaitable[str]], tmp_path: Path) -> None:
    from sqlalchemy.orm import configure_mappers

    await run_sql(empty_db, (CASES / f"{case.sql}.sql").read_text())
    db = await reflect_dsn(empty_db, case.schemas)
    code = generate(db, **case.kwargs)
    golden = GOLDEN / f"{case.name}.py"
    if UPDATE_GOLDEN:
        golden.write_text(code.text)
    assert code.text == golden.read_text(), f"generated code differs from {golden} (WORKBENCH_UPDATE_GOLDEN=1 rewrites)"

    module = import_code(golden.read_text(), tmp_path)
    configure_mappers()
    assert metadata_of(module).tables, "the golden file defines no tables"

    target = await fresh_db("target")
    if case.target_setup:
        await run_sql(target, case.target_setup)
    report = await roundtrip(empty_db, target, case.schemas, **case.kwargs)
    assert report.ok, report.report()

    # and drop_all takes it all down again (views first, partitions before parents, FK cycles by name)
    await drop_all(metadata_of(module), target)
    assert await _relations(target, case.schemas) == []


async def drop_all(metadata: Any, dsn: str) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    engine = create_async_engine(dsn.replace("postgresql://", "postgresql+asyncpg://"), poolclass=NullPool)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(metadata.drop_all)
    finally:
        await engine.dispose()


async def _relations(dsn: str, schemas: list[str]) -> list[str]:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            """select n.nspname || '.' || c.relname as name
                 from pg_class c join pg_namespace n on n.oid = c.relnamespace
                where n.nspname = any($1::text[]) and c.relkind in ('r', 'p', 'v', 'm', 'S')
               union all
               select n.nspname || '.' || t.typname from pg_type t join pg_namespace n on n.oid = t.typnamespace
                where n.nspname = any($1::text[]) and t.typtype in ('e', 'd')""",
            schemas,
        )
        return sorted(r["name"] for r in rows)
    finally:
        await conn.close()


def test_goldens_are_ruff_clean() -> None:
    """The generated code passes the project's own lint and format rules."""
    files = sorted(GOLDEN.glob("*.py"))
    assert len(files) == len(GOLDEN_CASES)
    cmd = [sys.executable, "-m", "ruff"]
    config = ["--config", str(ROOT / "pyproject.toml")]
    check = subprocess.run([*cmd, "check", *config, *map(str, files)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    fmt = subprocess.run([*cmd, "format", "--check", *config, *map(str, files)], capture_output=True, text=True)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


async def test_enum_arrays_insert_and_read_back_through_asyncpg(
    empty_db: str, fresh_db: Callable[[str], Awaitable[str]], tmp_path: Path
) -> None:
    """PostgreSQL enum arrays fail on insert with sqlacodegen's output (its issues #450, #454); ours work."""
    from sqlalchemy import select
    from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
    from sqlalchemy.pool import NullPool

    await run_sql(empty_db, (CASES / "enums.sql").read_text())
    module = import_code(generate(await reflect_dsn(empty_db, ["public", "billing"])), tmp_path)
    target = await fresh_db("target")
    await create_all(metadata_of(module), target)
    engine = create_async_engine(target.replace("postgresql://", "postgresql+asyncpg://"), poolclass=NullPool)
    state = module.TicketState
    try:
        async with AsyncSession(engine) as session:
            session.add(
                module.Ticket(
                    state=state.IN_PROGRESS,
                    history=[state.NEW, state.EMPTY, state.V_1ST_LINE],
                    currency=module.BillingCurrency.EUR,
                    priority=3,
                )
            )
            await session.commit()
            ticket = (await session.execute(select(module.Ticket))).scalar_one()
            assert ticket.state is state.IN_PROGRESS
            assert ticket.history == [state.NEW, state.EMPTY, state.V_1ST_LINE]
            assert ticket.currency is module.BillingCurrency.EUR
            assert ticket.id >= 1  # identity generated by the database
        async with engine.connect() as conn:
            raw = (await conn.exec_driver_sql("select history::text, state::text from tickets")).one()
        assert raw == ('{new,"","1st line"}', "in-progress")
    finally:
        await engine.dispose()


# -- options --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_db(standin: LocalStandIn) -> Any:
    from workbench.notebook.bridge import run_sync

    return run_sync(reflect_dsn(standin.dsn(), ["public"]))


def test_unknown_options_are_refused_with_the_valid_ones(demo_db: Any) -> None:
    with pytest.raises(CodegenError) as err:
        generate(demo_db, ["noindexes", "nosuchthing"])
    assert "nosuchthing" in str(err.value) and "noindexes" in str(err.value).split("Valid options:")[1]
    with pytest.raises(CodegenError, match="external='auth'"):
        generate(demo_db, external="auth")  # type: ignore[arg-type]
    with pytest.raises(CodegenError, match="layout='tree'"):
        generate(demo_db, layout="tree")  # type: ignore[arg-type]


def test_options_may_be_comma_separated() -> None:
    assert codegen.check_options(["noindexes,nocomments", " nobidi "]) == {"noindexes", "nocomments", "nobidi"}
    with pytest.raises(CodegenError, match="Unrecognized option"):
        codegen.check_options(["noindexes,bogus"])


def test_default_output_has_what_the_options_remove(demo_db: Any) -> None:
    text = generate(demo_db).text
    for needle in (
        "Index(",
        "comment=",
        "back_populates=",
        "relationship(",
        "enum.StrEnum",
        "class Task(",
        "ROW LEVEL SECURITY",
        "CheckConstraint(",
        "unique=True",
        "owner: Mapped[",
    ):
        assert needle in text, needle


@pytest.mark.parametrize(
    ("option", "absent", "present"),
    [
        ("noindexes", "Index(", "class Task("),
        ("nocomments", "comment=", "class Task("),
        ("nobidi", "back_populates=", "relationship("),
        ("norelationships", "relationship(", "class Task("),
        ("nonativeenums", "enum.StrEnum", 'ENUM("todo", "doing", "done", name="task_status")'),
        ("noinflect", "class Task(", "class Tasks("),
        ("norls", "ROW LEVEL SECURITY", "class Task("),
        ("noconstraints", "CheckConstraint(", "ForeignKey("),
        ("noidsuffix", "owner: Mapped[", "user: Mapped["),
    ],
)
def test_each_option_changes_the_output(demo_db: Any, option: str, absent: str, present: str) -> None:
    text = generate(demo_db, [option]).text
    assert absent not in text
    assert present in text


def test_nonativeenums_types_columns_as_str(demo_db: Any) -> None:
    text = generate(demo_db, ["nonativeenums"]).text
    assert "status: Mapped[str] = mapped_column(" in text


def test_noviews_leaves_views_out(pagila_dsn: str) -> None:
    from workbench.notebook.bridge import run_sync

    db = run_sync(reflect_dsn(pagila_dsn, ["public"]))
    assert "CREATE OR REPLACE VIEW public.film_list" in generate(db).text
    text = generate(db, ["noviews"]).text
    assert "film_list" not in text and "MATERIALIZED VIEW" not in text
    assert "class Film(" in text


def test_package_layout_one_module_per_schema(demo_db: Any, tmp_path: Path) -> None:
    from sqlalchemy.orm import configure_mappers

    code = generate(demo_db, layout="package")
    assert set(code.files) == {"__init__.py", "_base.py", "_ddl.py", "public.py", "auth.py"}
    assert "class AuthUser(Base)" in code.files["auth.py"]
    assert "from .auth import AuthUser" in code.files["public.py"]  # for type checkers only
    written = code.write(tmp_path / "models")
    assert sorted(p.name for p in written) == sorted(code.files)
    with pytest.raises(CodegenError, match="folder"):
        code.write(tmp_path / "models.py")
    module = import_code(code, tmp_path)
    configure_mappers()
    tables = metadata_of(module).tables
    assert {"tasks", "profiles", "auth.users"} <= set(tables)


def test_file_layout_writes_one_file(demo_db: Any, tmp_path: Path) -> None:
    code = generate(demo_db)
    written = code.write(tmp_path / "out" / "models.py")
    assert written == [tmp_path / "out" / "models.py"]
    assert written[0].read_text() == code.text
    assert code.write(tmp_path / "out") == [tmp_path / "out" / "models.py"]  # a folder gets models.py


# -- naming helpers -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("tasks", "task"),
        ("categories", "category"),
        ("addresses", "address"),
        ("status", "status"),
        ("statuses", "status"),
        ("staff", "staff"),
        ("analysis", "analysis"),
        ("boxes", "box"),
        ("news", "news"),
    ],
)
def test_singular(word: str, expected: str) -> None:
    assert naming.singular(word) == expected


def test_pascal_and_snake() -> None:
    assert naming.pascal("film_actors", singularize=True) == "FilmActor"
    assert naming.pascal("Order Items", singularize=True) == "OrderItem"
    assert naming.pascal("1st table") == "T1stTable"
    assert naming.snake("Order Items") == "order_items"
    assert naming.snake("2fa") == "_2fa"


def test_quote_ident() -> None:
    assert naming.quote_ident("tasks") == "tasks"
    assert naming.quote_ident("user") == '"user"'
    assert naming.quote_ident("Order Items") == '"Order Items"'
    assert naming.quote_ident('a"b') == '"a""b"'


@given(st.text())
def test_python_literals_read_back_exactly(text: str) -> None:
    literal = pysource.py_literal(text)
    assert ast.literal_eval(literal) == text


@given(st.text(alphabet=st.sampled_from(list("ab '\"\n(),;")), max_size=400))
def test_statement_chunks_join_to_the_statement(sql: str) -> None:
    pieces = pysource.chunks(sql, 20)
    assert "".join(pieces) == sql


def test_long_lines_wrap_at_arguments() -> None:
    line = "    x: Mapped[int] = mapped_column(" + ", ".join(f"arg_{i}" for i in range(30)) + ")"
    wrapped = pysource.wrap(line)
    assert all(len(ln) <= 120 for ln in wrapped.splitlines())
    assert ast.parse(wrapped.strip()) is not None
