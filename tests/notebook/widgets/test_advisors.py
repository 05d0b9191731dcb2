"""The advisors widget and %sbadvise, driven from Python: grouped by level, fixes shown and never applied."""

from __future__ import annotations

import html
from collections.abc import Iterator

import asyncpg
import pytest

from workbench.core.settings import Settings
from workbench.local.standin import BOOTSTRAP_SQL
from workbench.notebook.session import Workbench
from workbench.notebook.widgets.advisors import AdvisorsWidget, advisors_magic, parse_options
from workbench.policies.matrix import PolicyMatrixError

PROBLEMS = """
create table public.notes (id int primary key, owner uuid, body text);
create table public.logs (line text);
create table public.items (id int primary key, owner uuid);
alter table public.items enable row level security;
create policy "own items" on public.items for select to authenticated using (auth.uid() = owner);
create policy "all items" on public.items for select to authenticated using (true);
create function public.touch() returns int language sql as 'select 1';
"""


@pytest.fixture()
async def problem_db(empty_db: str) -> str:
    conn = await asyncpg.connect(empty_db)
    try:
        await conn.execute(BOOTSTRAP_SQL.read_text())
        await conn.execute(PROBLEMS)
    finally:
        await conn.close()
    return empty_db


@pytest.fixture()
def wb(problem_db: str) -> Iterator[Workbench]:
    bench = Workbench(Settings(db_url=problem_db))
    yield bench
    bench.close()


async def lint_names(dsn: str) -> list[str]:
    from workbench.policies.advisors import run_advisors

    conn = await asyncpg.connect(dsn)
    try:
        return sorted(f.name for f in await run_advisors(conn))
    finally:
        await conn.close()


def test_findings_are_grouped_by_level_with_fix_buttons(wb: Workbench, problem_db: str) -> None:
    view = advisors_magic(wb, "")
    assert isinstance(view, AdvisorsWidget)
    levels = list(view.widget.children[1:])
    classes = [next(c for c in s._dom_classes if c.startswith("wb-advisor-level-")) for s in levels]
    assert classes == ["wb-advisor-level-error", "wb-advisor-level-warn", "wb-advisor-level-info"]
    assert "2 ERROR" in view.header.value and "3 WARN" in view.header.value and "1 INFO" in view.header.value
    assert [(i.lint.level, i.lint.name, i.lint.metadata["name"]) for i in view.items] == [
        ("ERROR", "rls_disabled_in_public", "logs"),
        ("ERROR", "rls_disabled_in_public", "notes"),
        ("WARN", "function_search_path_mutable", "touch"),
        ("WARN", "auth_rls_initplan", "items"),
        ("WARN", "multiple_permissive_policies", "items"),
        ("INFO", "no_primary_key", "logs"),
    ]
    notes = view.item("rls_disabled_in_public", name="notes")
    assert "<code>public.notes</code>" in notes.summary.value
    assert "wb-advisor-error" in notes.widget._dom_classes


def test_show_fix_reveals_the_sql_and_never_runs_it(wb: Workbench, problem_db: str) -> None:
    import asyncio

    before = asyncio.run(lint_names(problem_db))
    view = advisors_magic(wb, "")
    item = view.item("auth_rls_initplan", policy="own items")
    assert not item.fix_shown and item.button.description == "Show fix"
    item.button.click()
    assert item.fix_shown and item.button.description == "Hide fix"
    shown = html.unescape(item.fix.value)
    assert 'alter policy "own items" on public.items\n  using ((select auth.uid()) = owner);' in shown
    assert "Not applied" in shown
    item.button.click()
    assert not item.fix_shown
    sql = view.show_fix("rls_disabled_in_public", name="logs")
    assert sql.startswith("alter table public.logs enable row level security;")
    assert view.item("rls_disabled_in_public", name="logs").fix_shown
    assert asyncio.run(lint_names(problem_db)) == before  # showing a fix changes nothing


def test_options_filter_and_measure(wb: Workbench) -> None:
    errors = advisors_magic(wb, "--level error")
    assert {i.lint.level for i in errors.items} == {"ERROR"}
    one = advisors_magic(wb, "--lints no_primary_key unindexed_foreign_keys")
    assert sorted(i.lint.name for i in one.items) == ["no_primary_key"]
    measured = advisors_magic(wb, "--lints auth_rls_initplan --measure --rows 20000")
    page = measured.initplan.value
    assert "20,000 rows" in page and "InitPlan" in page and "x faster" in page
    assert "wb-advisor-initplan" in measured.initplan._dom_classes


def test_a_clean_database_says_so(wb: Workbench) -> None:
    clean = advisors_magic(wb, "--lints security_definer_view")
    assert clean.items == []
    assert any("wb-advisor-clean" in child._dom_classes for child in clean.widget.children)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("--fix-everything", "unrecognized arguments: --fix-everything"),
        ("--lints nope", "invalid choice: 'nope'"),
        ("--level fatal", "invalid choice: 'fatal'"),
        ("--rows 0", "--rows must be at least 1"),
    ],
)
def test_bad_options_are_refused_clearly(line: str, message: str) -> None:
    with pytest.raises(PolicyMatrixError, match=message):
        parse_options(line)


def test_help() -> None:
    options = parse_options("--help")
    assert options.help
    assert "--measure" in advisors_magic(None, "--help").value  # type: ignore[arg-type]


def test_the_magic_is_wired_into_ipython(problem_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    from IPython import get_ipython
    from IPython.testing.globalipapp import start_ipython

    from workbench.notebook import session as core

    shell = start_ipython() or get_ipython()  # the test shell is process-wide: another module may have made it
    assert shell is not None
    shell.run_line_magic("load_ext", "workbench")
    core.connect(Settings(db_url=problem_db))
    try:
        view = shell.run_line_magic("sbadvise", "--lints no_primary_key")
        assert isinstance(view, AdvisorsWidget)
        assert [i.lint.metadata["name"] for i in view.items] == ["logs"]
        result = shell.run_cell("%sbadvise --apply-fixes")
        assert isinstance(result.error_in_exec, PolicyMatrixError)
        shown = capsys.readouterr()
        assert "unrecognized arguments: --apply-fixes" in shown.out + shown.err
        assert "Traceback" not in shown.out + shown.err  # one short message, no library traceback
    finally:
        core.current().close()
