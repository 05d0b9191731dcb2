"""The %sbpolicies / %sbadvise commands as plain code: one parser class, shared by magic, CLI and calls."""

from __future__ import annotations

import pytest

from workbench.core.exceptions import WorkbenchUserError
from workbench.policies import commands
from workbench.policies.model import PolicyMatrixError


def test_both_commands_use_the_one_parser_class() -> None:
    assert type(commands.make_matrix_parser()) is commands.CommandParser
    assert type(commands.make_advise_parser()) is commands.CommandParser


@pytest.mark.parametrize(
    ("parse", "line", "message"),
    [
        (commands.parse_matrix_options, "--colour red", r"%sbpolicies: unrecognized arguments: --colour red"),
        (commands.parse_matrix_options, "--timeout-ms 0", "--timeout-ms must be a positive"),
        (commands.parse_matrix_options, "--timeout-ms 2147483648", "at most 2147483647"),
        (commands.parse_matrix_options, "--timeout-ms 99999999999999999999", "at most 2147483647"),
        (commands.parse_matrix_options, "--as 'unclosed", "check the quotes"),
        (commands.parse_advise_options, "--rows 0", "--rows must be at least 1"),
        (commands.parse_advise_options, "--lints nope", "invalid choice: 'nope'"),
    ],
)
def test_bad_options_fail_with_a_user_error(parse, line: str, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(PolicyMatrixError, match=message) as info:
        parse(line)
    assert isinstance(info.value, WorkbenchUserError)


def test_the_prog_name_follows_the_caller() -> None:
    with pytest.raises(PolicyMatrixError, match="^workbench policies: unrecognized"):
        commands.parse_matrix_options("--nope", prog="workbench policies")


def test_widgets_reexport_the_same_functions() -> None:
    from workbench.notebook.widgets import advisors, policy_matrix

    assert policy_matrix.parse_options is commands.parse_matrix_options
    assert advisors.parse_options is commands.parse_advise_options
    assert policy_matrix.matrix_for is commands.matrix_for


async def test_matrix_for_runs_on_a_plain_engine(db_url: str) -> None:
    """No notebook, no widget: an engine and the parsed options are enough."""
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(db_url)
    try:
        options = commands.parse_matrix_options("--as alice@example.com --roles anon --tables tasks --ops select")
        matrix = await commands.matrix_for(engine, options)
        advise_options = commands.parse_advise_options("--lints rls_disabled_in_public")
        lints, measurement = await commands.advise(engine, advise_options)
    finally:
        await engine.dispose()
    assert [t.qualified_name for t in matrix.tables] == ["public.tasks"]
    assert {c.identity for c in matrix.cells} == {"anon", "alice@example.com"}
    assert measurement is None and all(lint.name == "rls_disabled_in_public" for lint in lints)
