"""The schema browser in a real JupyterLab: ``%sbschema`` lists the demo tables with RLS badges, opens ``tasks``
on its Policies tab, and JupyterLab renders the Mermaid ER diagram. Read-only.
"""

from __future__ import annotations

import pytest
from lab import Lab, open_notebook, output_of, run_all, screenshot, wait_for_output, write_notebook
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

CELLS = [
    "<!--md--># The demo schema\nTables with their RLS state; policies, grants and the ER diagram per table.",
    "%load_ext workbench\n%sbconnect",
    "%sbschema",
]


def test_schema_browser_opens_a_table_and_shows_its_policies(lab: Lab, page) -> None:  # type: ignore[no-untyped-def]
    write_notebook(lab.root_dir, "schema_browser.ipynb", CELLS)
    open_notebook(page, lab, "schema_browser.ipynb")
    run_all(page)

    browser = wait_for_output(page, ".wb-schema-browser")
    tables = browser.locator(".wb-schema-tables select")
    for name in ("announcements", "memberships", "organizations", "profiles", "projects", "tasks"):
        expect(tables.locator("option", has_text=f" {name} ·")).to_have_count(1)
    task_option = tables.locator("option", has_text=" tasks ·")
    label = task_option.inner_text()  # ipywidgets shows the spaces of option labels as no-break spaces
    assert "tasks · RLS on, 5 policies" in label.replace("\xa0", " "), label
    tables.select_option(label=label)

    badge = browser.locator(".wb-schema-rls-badge .wb-schema-badge")
    expect(badge).to_have_text("RLS on")
    expect(browser.locator(".wb-schema-rls-badge")).to_contain_text("public.tasks")
    expect(browser.locator(".wb-schema-columns table")).to_contain_text("owner_id")

    browser.locator(".wb-schema-tabs .lm-TabBar-tab", has_text="Policies").click()
    policies = browser.locator(".wb-schema-policies table.wb-schema-policies-table")
    policies.wait_for()
    for name in ("owners read their tasks", "admins read every task", "members add their own tasks"):
        expect(policies).to_contain_text(name)
    expect(policies).to_contain_text("auth.uid()")
    screenshot(page, "schema_browser_policies", output_of(browser))

    browser.locator(".wb-schema-tabs .lm-TabBar-tab", has_text="ER diagram").click()
    # JupyterLab's Mermaid renderer draws the diagram as an SVG image.
    diagram = browser.locator(".wb-schema-er .jp-RenderedMermaid img").first
    diagram.wait_for()
    expect(diagram).to_have_js_property("complete", True)
    assert diagram.evaluate("el => el.getBoundingClientRect().width") > 200
    screenshot(page, "schema_browser_er_diagram", output_of(browser))
