"""The magics in a real IPython shell against the stand-in: options, binding, read-only, dtypes, errors."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator

import pandas as pd
import pytest
from IPython.core.interactiveshell import InteractiveShell

import workbench
from workbench.core.errors import WorkbenchError
from workbench.core.identity import IdentityError
from workbench.core.query import QueryUsageError
from workbench.core.sqltext import MissingParameter
from workbench.notebook import session as core

ALICE = "11111111-1111-4111-8111-111111111111"


@pytest.fixture(scope="module")
def ip(settings) -> Iterator[InteractiveShell]:  # type: ignore[no-untyped-def]
    from IPython.testing.globalipapp import get_ipython, start_ipython

    shell = start_ipython() or get_ipython()  # the testing shell is process-wide; another module may own it
    assert shell is not None
    shell.run_line_magic("load_ext", "workbench")
    core.connect(settings)
    yield shell
    core.current().close()


@pytest.fixture(autouse=True)
def reset_identity(ip: InteractiveShell) -> Iterator[None]:
    core.current().impersonate(workbench.Identity.none())
    yield
    core.current().impersonate(workbench.Identity.none())


def q(ip: InteractiveShell, options: str, sql: str) -> pd.DataFrame:
    return ip.run_cell_magic("sbquery", options, sql)


def test_identity_options_change_what_rls_lets_through(ip: InteractiveShell) -> None:
    count = "select count(*) as n from public.tasks"
    assert q(ip, "--role anon", count)["n"][0] == 0
    assert q(ip, "--as alice@example.com", count)["n"][0] == 3
    assert q(ip, f"--as {ALICE}", count)["n"][0] == 3
    assert q(ip, "--as bob@example.com", count)["n"][0] == 2
    assert q(ip, '--as bob@example.com --claims \'{"user_role": "admin"}\'', count)["n"][0] == 7
    assert q(ip, "--role service_role", count)["n"][0] == 7
    assert q(ip, "", count)["n"][0] == 7  # no impersonation: the connection's own role


def test_result_dtypes_are_useful(ip: InteractiveShell) -> None:
    df = q(
        ip,
        "--as alice@example.com",
        "select id, title, details, due_at, owner_id, null::int as maybe, true as flag from public.tasks order by id",
    )
    assert df["id"].dtype == "int64"
    assert isinstance(df["details"][0], dict) and df["details"][0]["labels"] == ["design"]
    assert str(df["due_at"].dtype) == "datetime64[us, UTC]"
    assert isinstance(df["owner_id"][0], uuid.UUID)
    assert str(df["maybe"].dtype) == "Int64" or df["maybe"].isna().all()
    assert df["flag"].dtype == bool
    assert isinstance(df["due_at"][0], pd.Timestamp) and df["due_at"][0].tzinfo is not None
    assert df["due_at"][0] == pd.Timestamp(dt.datetime(2026, 12, 1, 9, tzinfo=dt.UTC))


def test_output_variable_underscore_and_footer(ip: InteractiveShell) -> None:
    result = ip.run_cell("%%sbquery --as alice@example.com -o mine\nselect title from public.tasks order by id")
    assert result.success
    mine = ip.user_ns["mine"]
    assert list(mine["title"]) == ["Draft landing page", "Set up analytics", "Ship iOS beta"]
    assert ip.user_ns["_"] is result.result
    assert isinstance(result.result, pd.DataFrame)
    html = result.result._repr_html_()
    assert "3 rows" in html and "as alice@example.com" in html and "read-only" in html


def test_notebook_variables_are_bind_parameters(ip: InteractiveShell) -> None:
    ip.user_ns["wanted"] = "Ship iOS beta"
    ip.user_ns["hostile"] = "x'; drop table public.tasks; --"
    df = q(
        ip,
        "--role service_role",
        "select id, :wanted as w, ':wanted' as literal, $$ :wanted $$ as body, id::text as cast_ok "
        "from public.tasks where title = :wanted or title = :hostile",
    )
    assert len(df) == 1 and df["w"][0] == "Ship iOS beta"
    assert df["literal"][0] == ":wanted" and df["body"][0] == " :wanted "
    assert q(ip, "", "select count(*) as n from public.tasks")["n"][0] == 7  # nothing was dropped


def test_line_magic(ip: InteractiveShell) -> None:
    df = ip.run_line_magic("sbquery", "--as bob@example.com select title from public.tasks order by id -- bob's")
    assert list(df["title"]) == ["Load nightly exports", "Retire old warehouse"]


def test_limit_truncates_and_says_how_to_get_more(ip: InteractiveShell) -> None:
    df = q(ip, "--limit 5", "select g from generate_series(1, 100) g")
    assert list(df["g"]) == [1, 2, 3, 4, 5]
    assert "truncated at --limit 5" in df.wb_footer


def test_several_statements_run_in_one_transaction_and_the_last_is_shown(ip: InteractiveShell) -> None:
    df = q(
        ip,
        "--as alice@example.com",
        "select set_config('app.marker', 'same-transaction', true);\nselect current_setting('app.marker') as m, "
        "auth.uid()::text as uid",
    )
    assert (df["m"][0], df["uid"][0]) == ("same-transaction", ALICE)


def test_write_commits_and_read_only_refuses(ip: InteractiveShell) -> None:
    with pytest.raises(WorkbenchError, match="read-only"):
        q(ip, "--as alice@example.com", "insert into public.tasks (project_id, title) values (1, 'nope')")
    inserted = q(
        ip,
        "--write --as alice@example.com",
        "insert into public.tasks (project_id, title) values (1, 'magic write') returning id, owner_id",
    )
    assert str(inserted["owner_id"][0]) == ALICE  # default auth.uid() under the impersonated identity
    new_id = int(inserted["id"][0])
    try:
        assert q(ip, "--as alice@example.com", "select count(*) as n from public.tasks")["n"][0] == 4
    finally:
        q(ip, "--write --role service_role", f"delete from public.tasks where id = {new_id}")
    assert q(ip, "", "select count(*) as n from public.tasks")["n"][0] == 7


def test_rls_refusal_is_explained(ip: InteractiveShell) -> None:
    with pytest.raises(WorkbenchError) as info:
        q(
            ip,
            "--write --as bob@example.com",
            f"insert into public.tasks (project_id, owner_id, title) values (1, '{ALICE}', 'spoof')",
        )
    text = str(info.value)
    assert "INSERT" in text and "tasks" in text and "policy" in text.lower()


def test_read_only_cannot_be_escaped(ip: InteractiveShell) -> None:
    q(
        ip,
        "--write",
        "create or replace function public.wb_side_effect() returns int language sql as "
        "$$ insert into public.announcements (body) values ('side effect') returning 1 $$",
    )
    try:
        attempts = [
            "select public.wb_side_effect()",
            "select * from public.tasks for update",
            "copy public.announcements from program 'true'",
            "select 1; commit; insert into public.announcements (body) values ('after commit')",
            "set transaction read write; insert into public.announcements (body) values ('rw')",
            "select nextval(pg_get_serial_sequence('public.announcements', 'id'))",
            "reset all",
            "set role postgres",
        ]
        for sql in attempts:
            with pytest.raises((WorkbenchError, QueryUsageError)):
                q(ip, "--as alice@example.com", sql)
        assert q(ip, "", "select count(*) as n from public.announcements")["n"][0] == 2
    finally:
        q(ip, "--write", "drop function public.wb_side_effect()")


def test_explain_shows_the_plan_and_changes_nothing(ip: InteractiveShell, capsys) -> None:  # type: ignore[no-untyped-def]
    from IPython.utils.capture import capture_output

    with capture_output() as captured:
        ip.run_cell_magic("sbquery", "--explain --write --role service_role", "delete from public.tasks")
    html = "".join(o.data.get("text/html", "") for o in captured.outputs)
    assert "Delete on public.tasks" in html
    assert q(ip, "", "select count(*) as n from public.tasks")["n"][0] == 7


def test_impersonate_and_whoami(ip: InteractiveShell) -> None:
    from IPython.utils.capture import capture_output

    ip.run_line_magic("sbimpersonate", 'carol@example.com --claims \'{"user_role": "auditor"}\'')
    assert q(ip, "", "select auth.jwt() ->> 'user_role' as r, auth.email() as e")["r"][0] == "auditor"
    with capture_output() as captured:
        ip.run_line_magic("sbwhoami", "")
    html = "".join(o.data.get("text/html", "") for o in captured.outputs)
    assert "carol@example.com" in html and "auditor" in html and "33333333-3333-4333-8333-333333333333" in html
    ip.run_line_magic("sbimpersonate", "--anon")
    assert q(ip, "", "select current_user as u")["u"][0] == "anon"
    ip.run_line_magic("sbimpersonate", "--none")
    assert q(ip, "", "select current_user as u")["u"][0] == "postgres"


def test_bad_input_gets_clear_errors(ip: InteractiveShell) -> None:
    with pytest.raises(IdentityError, match="No user with email"):
        q(ip, "--as nobody@example.com", "select 1")
    with pytest.raises(IdentityError, match="not valid JSON"):
        q(ip, "--claims '{oops'", "select 1")
    with pytest.raises(IdentityError, match="does not exist"):
        q(ip, "--role nonesuch", "select 1")
    with pytest.raises(MissingParameter, match="not_defined_anywhere"):
        q(ip, "", "select :not_defined_anywhere")
    with pytest.raises(WorkbenchError, match=r"(?s)LINE 1: selec 1.*\^"):
        q(ip, "", "selec 1")
    with pytest.raises(QueryUsageError, match="no SQL"):
        q(ip, "", "-- only a comment")


def test_errors_show_without_library_tracebacks(ip: InteractiveShell, capsys) -> None:  # type: ignore[no-untyped-def]
    result = ip.run_cell("%%sbquery\nselect * from public.no_such_table")
    assert not result.success
    out = capsys.readouterr()
    shown = out.out + out.err
    assert "no_such_table" in shown and "does not exist" in shown
    assert "sqlalchemy" not in shown.lower() and "asyncpg" not in shown.lower()
    assert "Traceback" not in shown


def test_user_await_and_magic_share_a_notebook(ip: InteractiveShell) -> None:
    """Top-level await on the kernel's loop and the magic on the background loop, interleaved."""
    cell = (
        "import workbench\n"
        "wb = workbench.current()\n"
        "df_async = await wb.query('select count(*) as n from public.tasks', as_user='alice@example.com')\n"
    )
    for _ in range(2):
        result = ip.run_cell(cell)
        assert result.success, result.error_in_exec
        assert ip.user_ns["df_async"]["n"][0] == 3
        assert q(ip, "--as bob@example.com", "select count(*) as n from public.tasks")["n"][0] == 2
