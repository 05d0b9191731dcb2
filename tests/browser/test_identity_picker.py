"""The identity picker in a real JupyterLab: choose a user in the DOM, then ``%%sbquery`` sees only their rows."""

from __future__ import annotations

import pytest
from lab import (
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

BOB = "22222222-2222-4222-8222-222222222222"
BOB_TASKS = ["Load nightly exports", "Retire old warehouse"]
OTHER_TASKS = ["Draft landing page", "Fix login crash", "Review access rules"]

CELLS = [
    "<!--md--># Run as a user\nPick an identity, then every `%%sbquery` runs as it, with RLS applied.",
    "%load_ext workbench\n%sbconnect",
    "%sbimpersonate",
    "%%sbquery\nselect title, status from tasks order by title",
]
PICKER, QUERY = 2, 3  # cell indexes (the markdown cell counts)


def test_picker_chooses_a_user_and_sbquery_shows_only_their_rows(lab: Lab, page) -> None:  # type: ignore[no-untyped-def]
    write_notebook(lab.root_dir, "identity_picker.ipynb", CELLS)
    open_notebook(page, lab, "identity_picker.ipynb")
    run_all(page)

    # Before choosing: no impersonation, the connection's own role sees every task.
    query_out = cell_at(page, QUERY).locator(".jp-OutputArea-output")
    for title in BOB_TASKS + OTHER_TASKS:
        query_out.get_by_text(title).wait_for()
    screenshot(page, "identity_picker_sbquery_before", output_of(query_out.first))

    picker = wait_for_output(page, ".wb-identity-picker")
    picker.locator(".wb-identity-search input").fill("bob")
    users = picker.locator(".wb-identity-users select")
    # The search runs in the kernel and narrows the list to Bob.
    expect(users.locator("option")).to_have_count(1)
    expect(users.locator("option")).to_contain_text("bob@example.com")
    # Widen the search again and pick Bob among several (a real change event on the <select>).
    picker.locator(".wb-identity-search input").fill("@example.com")
    users.locator("option", has_text="alice@example.com").wait_for(state="attached")
    users.select_option(label=f"bob@example.com · {BOB}")
    picker.locator("button.wb-identity-apply").click()
    status = picker.locator(".wb-identity-status .wb-identity-ok")
    status.wait_for()
    assert "bob@example.com" in status.inner_text()
    assert BOB in picker.locator(".wb-identity-preview").inner_text()  # the claims in force: sub is Bob's id

    run_cell(page, cell_at(page, QUERY))
    query_out.get_by_text(BOB_TASKS[0]).wait_for()
    shown = query_out.inner_text()
    assert all(title in shown for title in BOB_TASKS), shown
    assert not any(title in shown for title in OTHER_TASKS), shown
    assert "bob@example.com" in query_out.locator(".wb-query-footer").inner_text()

    screenshot(page, "identity_picker_page", show=query_out)
    screenshot(page, "identity_picker_widget", output_of(picker))
    screenshot(page, "identity_picker_sbquery_as_bob", output_of(query_out.first))

    # A malformed claims object is refused in the widget with the reason, and the identity stays Bob.
    picker.locator(".wb-identity-claims textarea").fill('{"user_role": ')
    picker.locator("button.wb-identity-apply").click()
    error = picker.locator(".wb-identity-status .wb-identity-error")
    error.wait_for()
    assert "claims" in error.inner_text().lower()
    assert BOB in picker.locator(".wb-identity-preview").inner_text()
