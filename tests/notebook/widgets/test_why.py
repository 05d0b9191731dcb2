"""The why-RLS widget and ``%sbwhy`` / ``%%sbwhy``, driven from Python and from a real IPython shell against
the session stand-in's demo app; and the ``%%sbquery`` footer hint that points at it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from IPython.core.interactiveshell import InteractiveShell

from workbench.core.identity import Identity
from workbench.notebook import session as core
from workbench.notebook.session import Workbench
from workbench.notebook.widgets.why import WhyWidget, parse_options, render_detail, why_magic
from workbench.policies.why import COLOURS, WhyError


@pytest.fixture(scope="module")
def wb(settings) -> Iterator[Workbench]:  # type: ignore[no-untyped-def]
    bench = Workbench(settings)
    yield bench
    bench.close()


@pytest.fixture(scope="module")
def bob_tasks(wb: Workbench) -> WhyWidget:
    view = why_magic(wb, "--as bob@example.com tasks")
    assert isinstance(view, WhyWidget)
    return view


def test_one_line_per_row_with_a_coloured_verdict(bob_tasks: WhyWidget) -> None:
    report = bob_tasks.report
    assert len(report.rows) == len(bob_tasks.buttons) == 7
    verdicts = [b.description for b in bob_tasks.buttons]
    assert verdicts.count("visible") == 2 and verdicts.count("hidden") == 5
    for button, row in zip(bob_tasks.buttons, report.rows, strict=True):
        assert button.style.button_color == COLOURS[row.outcome]
        assert f"wb-why-{row.outcome}" in button._dom_classes
    header = bob_tasks.header.value
    assert "2 of 7 rows visible to bob@example.com on public.tasks" in header
    assert "RLS enabled" in header and "role <code>authenticated</code>" in header and "SELECT granted" in header
    assert "&#x27;owners read their tasks&#x27; (permissive SELECT)" in header
    assert "wb-why" in bob_tasks.widget._dom_classes
    plain = bob_tasks._repr_mimebundle_()["text/plain"].splitlines()
    assert plain[0] == report.summary and len(plain) == 8
    assert plain[5] == (
        "  visible  id=5, project_id=3, owner_id=22222222-2222-422…, title=Load nightly expo…: "
        "policy 'owners read their tasks' is true"
    )


def test_clicking_a_verdict_expands_each_policy_with_its_value(bob_tasks: WhyWidget) -> None:
    hidden = next(i for i, r in enumerate(bob_tasks.report.rows) if r.outcome == "hidden")
    detail = bob_tasks.details[hidden]
    assert detail.layout.display == "none" and detail.value == ""
    bob_tasks.buttons[hidden].click()
    assert hidden in bob_tasks.expanded and detail.layout.display is None
    page = detail.value
    assert page.count("class='wb-why-check'") == 2
    assert "wb-why-value-false" in page and "wb-why-value-null" in page
    assert "(owner_id = ( SELECT auth.uid() AS uid))" in page
    assert "does not reach this row" in page
    bob_tasks.buttons[hidden].click()
    assert hidden not in bob_tasks.expanded and detail.layout.display == "none"
    with pytest.raises(WhyError, match="There is no row 99"):
        bob_tasks.expand(99)


def test_the_cell_form_explains_an_update(wb: Workbench) -> None:
    view = why_magic(wb, "--as bob@example.com", "update tasks set status = 'done' where id in (1, 5)")
    outcomes = {r.values["id"]: r.outcome for r in view.report.rows}
    assert outcomes == {1: "skipped", 5: "allowed"}
    assert "update tasks set status" in view.header.value and "UPDATE 1 (rolled back)" in view.header.value
    five = next(i for i, r in enumerate(view.report.rows) if r.values["id"] == 5)
    page = view.expand(five)
    assert "new row: status → done" in page and "for new row" in page


def test_line_options_and_errors(wb: Workbench) -> None:
    options = parse_options("""--as bob@example.com tasks --where 'project_id = 3' --op delete --limit 5""")
    assert (options.table, options.where, options.operation, options.limit) == ("tasks", "project_id = 3", "delete", 5)
    view = why_magic(wb, "--role anon tasks --key 5")
    assert [r.outcome for r in view.report.rows] == ["hidden"]
    assert "no permissive SELECT policy for role anon" in view.report.rows[0].reason
    assert "No policy was evaluated: no permissive SELECT" in render_detail(view.report, view.report.rows[0])
    with pytest.raises(WhyError, match="argument --op: invalid choice"):
        parse_options("tasks --op merge")
    with pytest.raises(WhyError, match="check the quotes"):
        parse_options("tasks --where 'id = 1")
    with pytest.raises(WhyError, match="needs a table"):
        why_magic(wb, "--as bob@example.com")
    with pytest.raises(WhyError, match="takes the statement from the cell"):
        why_magic(wb, "--as bob@example.com tasks", "delete from tasks")
    assert "wb-why-help" in why_magic(wb, "--help")._dom_classes


@pytest.fixture(scope="module")
def ip(settings) -> Iterator[InteractiveShell]:  # type: ignore[no-untyped-def]
    from IPython.testing.globalipapp import get_ipython, start_ipython

    shell = start_ipython() or get_ipython()  # the testing shell is process-wide; another module may own it
    assert shell is not None
    shell.run_line_magic("load_ext", "workbench")
    core.connect(settings)
    yield shell
    core.current().impersonate(Identity.none())
    core.current().close()


def test_magics_in_a_shell_bind_variables_and_point_at_each_other(ip: InteractiveShell) -> None:
    ip.user_ns["project"] = 3
    view = ip.run_line_magic("sbwhy", "--as alice@example.com tasks --where 'project_id = :project'")
    assert isinstance(view, WhyWidget)
    assert {r.values["project_id"] for r in view.report.rows} == {3}
    assert {r.outcome for r in view.report.rows} == {"hidden"}
    cell = ip.run_cell_magic("sbwhy", "--as alice@example.com", "delete from tasks where project_id = :project")
    assert {r.outcome for r in cell.report.rows} == {"skipped"} and "DELETE 0" in cell.report.summary
    # the %%sbquery footer: 0 rows as an impersonated identity points at %sbwhy (no extra query)
    empty = ip.run_cell_magic("sbquery", "--as alice@example.com", "select * from tasks where project_id = :project")
    assert len(empty) == 0
    assert "0 rows visible to alice@example.com: if rows exist, `%sbwhy` explains why" in repr(empty)
    some = ip.run_cell_magic("sbquery", "--as alice@example.com", "select * from tasks")
    assert "%sbwhy" not in repr(some)
    service = ip.run_cell_magic("sbquery", "--role service_role", "select * from tasks where false")
    assert "%sbwhy" not in repr(service)
