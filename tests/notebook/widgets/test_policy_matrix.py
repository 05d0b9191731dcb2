"""The policy matrix widget and %sbpolicies, driven from Python against the session stand-in."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from workbench.notebook.session import Workbench
from workbench.notebook.widgets.policy_matrix import PolicyMatrixWidget, parse_options, policy_matrix_magic
from workbench.policies.matrix import COLOURS, PolicyMatrixError

BOB_ADMIN = "bob@example.com + user_role=admin"


@pytest.fixture(scope="module")
def wb(settings) -> Iterator[Workbench]:  # type: ignore[no-untyped-def]
    bench = Workbench(settings)
    yield bench
    bench.close()


@pytest.fixture(scope="module")
def view(wb: Workbench) -> PolicyMatrixWidget:
    line = """--as alice@example.com 'bob@example.com+{"user_role": "admin"}' --tables tasks announcements"""
    result = policy_matrix_magic(wb, line)
    assert isinstance(result, PolicyMatrixWidget)
    return result


def test_grid_has_a_coloured_button_per_cell(view: PolicyMatrixWidget) -> None:
    assert view.matrix.labels == ["anon", "service_role", "alice@example.com", BOB_ADMIN]
    assert len(view.buttons) == 2 * 4 * 4
    refused = view.buttons[("anon", "public.tasks", "insert")]
    assert refused.description == "✗" and refused.style.button_color == COLOURS["refused"]
    assert "wb-policy-refused" in refused._dom_classes and "wb-policy-cell" in refused._dom_classes
    admin = view.buttons[(BOB_ADMIN, "public.tasks", "select")]
    assert admin.description == "✓ 7" and admin.style.button_color == COLOURS["allowed"]
    hidden = view.buttons[("alice@example.com", "public.announcements", "update")]
    assert hidden.description == "0" and hidden.style.button_color == COLOURS["filtered"]
    assert "wb-policy-matrix" in view.widget._dom_classes and "wb-policy-grid" in view.grid._dom_classes
    assert "all rolled back" in view.status.value and "refused" in view.legend.value


def test_clicking_a_cell_drills_down_to_its_policies_sql(view: PolicyMatrixWidget) -> None:
    assert "Select a cell" in view.detail.value
    view.buttons[("alice@example.com", "public.tasks", "update")].click()
    assert view.selected is not None and view.selected.key == ("alice@example.com", "public.tasks", "update")
    page = view.detail.value
    assert "allowed" in page and "3 row(s)" in page
    assert page.count("class='wb-policy-sql'") == 3
    assert "create policy &quot;owners update their tasks&quot; on public.tasks" in page
    assert "update public.tasks set" in page
    assert "wb-policy-selected" in view.buttons[("alice@example.com", "public.tasks", "update")]._dom_classes
    view.select("anon", "public.tasks", "insert")
    page = view.detail.value
    assert "42501" in page and "row-level security" in page and "default deny" in page
    assert "wb-policy-selected" not in view.buttons[("alice@example.com", "public.tasks", "update")]._dom_classes


def test_defaults_are_api_roles_first_users_and_public_tables(wb: Workbench) -> None:
    result = policy_matrix_magic(wb, "--ops select")
    assert result.matrix.labels == ["anon", "service_role", "alice@example.com", "bob@example.com", "carol@example.com"]
    assert {t.name for t in result.matrix.tables} >= {"tasks", "projects", "profiles", "memberships"}
    assert result.matrix.operations == ["select"]
    only_users = policy_matrix_magic(wb, "--as carol@example.com --roles --tables public.projects --ops select")
    assert only_users.matrix.labels == ["carol@example.com"]
    assert only_users.matrix.cell("carol@example.com", "projects", "select").rows == 3


def test_export_option_writes_a_runnable_test_file(wb: Workbench, tmp_path: Path) -> None:
    target = tmp_path / "test_exported.py"
    result = policy_matrix_magic(wb, f"--as alice@example.com --tables tasks --export {target}")
    assert f"Wrote 12 tests to {target}" in result.status.value
    ast.parse(target.read_text())
    assert "alice@example.com|public.tasks|insert" in target.read_text()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("--frobnicate", "unrecognized arguments: --frobnicate"),
        ("--ops select truncate", "invalid choice: 'truncate'"),
        ("--as", "expected at least one argument"),
        ("--timeout-ms 0", "--timeout-ms must be a positive"),
        ("--as 'alice@example.com", "No closing quotation"),
        ("--tables nope --ops select", "No table public.nope"),
        ("--as nobody@example.com --ops select", "No user with email 'nobody@example.com'"),
    ],
)
def test_bad_options_are_refused_clearly(wb: Workbench, line: str, message: str) -> None:
    from workbench.core.identity import IdentityError

    with pytest.raises((PolicyMatrixError, IdentityError), match=message) as info:
        policy_matrix_magic(wb, line)
    if "unrecognized" in message:
        assert "usage: %sbpolicies" in str(info.value)


def test_help_and_option_parsing() -> None:
    options = parse_options("""--as a@x.io 'b@x.io+{"r": 1}' --as c@x.io --tables t1 --tables s.t2 --export out.py""")
    assert options.users == ["a@x.io", 'b@x.io+{"r": 1}', "c@x.io"]
    assert options.tables == ["t1", "s.t2"] and options.export == "out.py"
    assert options.roles == ["anon", "service_role"] and options.operations == ["select", "insert", "update", "delete"]
    from workbench.notebook.widgets.policy_matrix import make_parser

    text = make_parser().format_help()
    assert "--as USER" in text and "%sbpolicies --tables tasks --export" in text


def test_the_magic_is_wired_into_ipython(settings) -> None:  # type: ignore[no-untyped-def]
    from IPython import get_ipython
    from IPython.testing.globalipapp import start_ipython

    from workbench.notebook import session as core

    shell = start_ipython() or get_ipython()  # the test shell is process-wide: another module may have made it
    assert shell is not None
    shell.run_line_magic("load_ext", "workbench")
    core.connect(settings)
    try:
        result = shell.run_line_magic("sbpolicies", "--as bob@example.com --tables tasks --ops select")
        assert isinstance(result, PolicyMatrixWidget)
        assert result.matrix.cell("bob@example.com", "tasks", "select").rows == 2
        bundle = result._repr_mimebundle_()
        assert "application/vnd.jupyter.widget-view+json" in bundle
        help_widget = shell.run_line_magic("sbpolicies", "--help")
        assert "usage: %sbpolicies" in help_widget.value
    finally:
        core.current().close()
