"""``%sbpolicies --migration``: the impact widget's before / after / diff views, driven from Python."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from workbench.notebook.session import Workbench
from workbench.notebook.widgets.policy_impact import PolicyImpactWidget, policy_impact_magic
from workbench.notebook.widgets.policy_matrix import parse_options

MIGRATION = """drop policy "owners delete their tasks" on public.tasks;
create policy "anon reads tasks" on public.tasks for select to anon using (true);
"""


@pytest.fixture(scope="module")
def wb(settings) -> Iterator[Workbench]:  # type: ignore[no-untyped-def]
    bench = Workbench(settings)
    yield bench
    bench.close()


@pytest.fixture(scope="module")
def view(wb: Workbench, tmp_path_factory: pytest.TempPathFactory) -> PolicyImpactWidget:
    path = tmp_path_factory.mktemp("impact") / "change.sql"
    path.write_text(MIGRATION)
    result = policy_impact_magic(wb, f"--migration {path} --tables tasks announcements")
    assert isinstance(result, PolicyImpactWidget)
    return result


def test_diff_view_lights_only_the_changed_cells(view: PolicyImpactWidget) -> None:
    assert (
        view.view == "diff" and view.toggle.value == "diff" and list(view.toggle.options) == ["before", "after", "diff"]
    )
    diff = view.matrices["diff"]
    changed = {k for k, b in diff.buttons.items() if "wb-policy-changed" in b._dom_classes}
    assert changed == {
        ("anon", "public.tasks", "select"),
        ("alice@example.com", "public.tasks", "delete"),
        ("bob@example.com", "public.tasks", "delete"),
        ("carol@example.com", "public.tasks", "delete"),
    }
    assert diff.buttons[("anon", "public.tasks", "select")].description == "0 → ✓ 7"
    assert diff.buttons[("bob@example.com", "public.tasks", "delete")].description == "✓ 2 → 0"
    unchanged = diff.buttons[("alice@example.com", "public.tasks", "select")]
    assert "wb-policy-unchanged" in unchanged._dom_classes and unchanged.description == "✓ 3"
    assert "4 cell(s) changed: 1 gained access, 3 lost access" in view.summary.value


def test_toggle_switches_views_and_highlights_changes(view: PolicyImpactWidget) -> None:
    view.toggle.value = "before"
    assert view.view == "before" and view.body.children == (view.matrices["before"].widget,)
    before = view.matrices["before"].buttons[("anon", "public.tasks", "select")]
    assert before.description == "0" and "wb-policy-changed" in before._dom_classes
    view.show("after")
    assert view.toggle.value == "after"
    assert view.matrices["after"].buttons[("anon", "public.tasks", "select")].description == "✓ 7"
    with pytest.raises(ValueError, match="Unknown view 'sideways'"):
        view.show("sideways")
    view.show("diff")


def test_clicking_a_changed_cell_explains_it(view: PolicyImpactWidget) -> None:
    view.matrices["diff"].buttons[("alice@example.com", "public.tasks", "delete")].click()
    page = view.matrices["diff"].detail.value
    assert "allowed (3 rows) -&gt; filtered (0 rows)" in page and "(lost)" in page
    assert "because: policy &quot;owners delete their tasks&quot; dropped" in page
    change = view.select("anon", "tasks", "select")
    assert change is not None and change.after is not None and change.after.rows == 7
    assert "policy &quot;anon reads tasks&quot; added" in view.matrices["diff"].detail.value


def test_failed_migration_shows_the_statement(wb: Workbench, tmp_path: Path) -> None:
    path = tmp_path / "bad.sql"
    path.write_text("select 1;\nalter table public.nope enable row level security;\n")
    result = policy_impact_magic(wb, f"--migration {path} --tables tasks")
    assert isinstance(result, PolicyImpactWidget)
    assert list(result.toggle.options) == ["before"]
    assert f"{path}:2 (statement 2)" in result.summary.value and "database is unchanged" in result.summary.value
    assert parse_options(f"--migration {path}").migration == str(path)
