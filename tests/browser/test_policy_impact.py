"""``%sbpolicies --migration`` in a real JupyterLab: the diff view lights only the changed cells, a click
explains one, and the before / after / diff toggle switches views. The migration is rolled back, so the
session's stand-in is left unchanged."""

from __future__ import annotations

import re

import pytest
from lab import (
    OUTPUT,
    Lab,
    cell_at,
    open_notebook,
    output_of,
    run_all,
    run_cell,
    screenshot,
    wait_for_output,
    write_notebook,
)
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

MIGRATION = """-- a refactor: anon may read tasks, owners no longer delete theirs
drop policy "owners delete their tasks" on public.tasks;
create policy "anon reads tasks" on public.tasks for select to anon using (true);
"""


def cells(path: str) -> list[str]:
    return [
        "<!--md--># What does this migration change?\nThe matrix before and after it, rolled back.",
        "%load_ext workbench\n%sbconnect",
        f"%sbpolicies --migration {path} --tables tasks announcements",
    ]


def has_class(css_class: str) -> re.Pattern[str]:
    return re.compile(rf"(^|\s){re.escape(css_class)}(\s|$)")


def test_policy_impact_diff_toggle_and_highlight(lab: Lab, page) -> None:  # type: ignore[no-untyped-def]
    migration = lab.root_dir / "20260101_anon_reads_tasks.sql"
    migration.write_text(MIGRATION)
    write_notebook(lab.root_dir, "policy_impact.ipynb", cells(str(migration)))
    open_notebook(page, lab, "policy_impact.ipynb")
    run_all(page)
    if (
        page.locator(OUTPUT, has_text="Error displaying widget").count()
        or page.locator(".wb-policy-impact-widget", has_text="Click to show javascript error").count()
    ):
        # About 1 run in 30 the front end loses one of the ~400 widget models this cell opens (ipywidgets'
        # "model not found" / a child view's JS error; the kernel sent them all). A user re-runs the cell; so
        # does the test, once: a second loss fails it.
        run_cell(page, cell_at(page, 2))

    widget = wait_for_output(page, ".wb-policy-impact-widget")
    expect(widget.locator(".wb-policy-impact-summary")).to_contain_text("4 cell(s) changed: 1 gained access, 3 lost")
    diff = widget.locator(".wb-policy-impact-diff")
    expect(diff).to_be_visible()
    # 5 identities x 2 tables x 4 operations; the four changed cells are lit, the rest dimmed.
    expect(diff.locator("button.wb-policy-cell")).to_have_count(40)
    changed = diff.locator("button.wb-policy-changed")
    expect(changed).to_have_count(4)
    anon_reads = diff.locator("button.wb-policy-cell[title^='anon · select · public.tasks:']")
    expect(anon_reads).to_have_text("0 → ✓ 7")
    expect(anon_reads).to_have_css("outline-style", "solid")
    unchanged = diff.locator("button.wb-policy-cell[title^='alice@example.com · select · public.tasks:']")
    expect(unchanged).to_have_class(has_class("wb-policy-unchanged"))
    expect(unchanged).to_have_css("opacity", "0.35")

    alice_deletes = diff.locator("button.wb-policy-cell[title^='alice@example.com · delete · public.tasks:']")
    expect(alice_deletes).to_have_text("✓ 3 → 0")
    alice_deletes.click()
    explained = diff.locator(".wb-policy-detail .wb-impact-change")
    expect(explained).to_contain_text("allowed (3 rows) -> filtered (0 rows)")
    expect(explained).to_contain_text('because: policy "owners delete their tasks" dropped')
    screenshot(page, "policy_impact_diff", output_of(widget))

    widget.locator(".wb-policy-impact-toggle button", has_text="before").click()
    before = widget.locator(".wb-policy-impact-before")
    expect(before).to_be_visible()
    expect(diff).to_have_count(0)
    before_anon = before.locator("button.wb-policy-cell[title^='anon · select · public.tasks:']")
    expect(before_anon).to_have_text("0")
    expect(before_anon).to_have_css("outline-style", "solid")
    widget.locator(".wb-policy-impact-toggle button", has_text="after").click()
    after_anon = widget.locator(".wb-policy-impact-after button.wb-policy-cell[title^='anon · select · public.tasks:']")
    expect(after_anon).to_have_text("✓ 7")
