"""The RLS policy matrix in a real JupyterLab: ``%sbpolicies`` renders colour-coded cells and a click drills down
to the policies' SQL. Every probe is rolled back, so the session's stand-in is left unchanged.
"""

from __future__ import annotations

import re

import pytest
from lab import Lab, open_notebook, output_of, run_all, screenshot, wait_for_output, write_notebook
from playwright.sync_api import expect

from workbench.policies.matrix import COLOURS

pytestmark = pytest.mark.browser

CELLS = [
    "<!--md--># Who may do what\nEvery identity x table x operation, really tried and rolled back.",
    "%load_ext workbench\n%sbconnect",
    "%sbpolicies --as alice@example.com bob@example.com --roles anon service_role --tables tasks projects",
]


def rgb(hex_colour: str) -> str:
    """``#c6efce`` as the browser's computed ``rgb(198, 239, 206)``."""
    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgb({r}, {g}, {b})"


def has_class(css_class: str) -> re.Pattern[str]:
    """Matches a class list that contains ``css_class`` (for ``expect(...).to_have_class``)."""
    return re.compile(rf"(^|\s){re.escape(css_class)}(\s|$)")


def cell(matrix, identity: str, operation: str, table: str):  # type: ignore[no-untyped-def]
    """A matrix cell by its tooltip, ``<identity> · <operation> · <table>: <outcome>``."""
    return matrix.locator(f"button.wb-policy-cell[title^='{identity} · {operation} · {table}:']")


def test_policy_matrix_renders_colours_and_drills_down(lab: Lab, page) -> None:  # type: ignore[no-untyped-def]
    write_notebook(lab.root_dir, "policy_matrix.ipynb", CELLS)
    open_notebook(page, lab, "policy_matrix.ipynb")
    run_all(page)

    matrix = wait_for_output(page, ".wb-policy-matrix")
    # 4 identities x 2 tables x 4 operations.
    expect(matrix.locator("button.wb-policy-cell")).to_have_count(32)

    bob_reads = cell(matrix, "bob@example.com", "select", "public.tasks")
    expect(bob_reads).to_have_text("✓ 2")  # Bob sees his own two tasks
    expect(bob_reads).to_have_class(has_class("wb-policy-allowed"))
    expect(bob_reads).to_have_css("background-color", rgb(COLOURS["allowed"]))
    anon_inserts = cell(matrix, "anon", "insert", "public.tasks")
    outcome = anon_inserts.get_attribute("title").rsplit(": ", 1)[1]
    assert outcome in ("refused", "filtered"), outcome  # no insert policy for anon
    expect(anon_inserts).to_have_css("background-color", rgb(COLOURS[outcome]))
    colours = set(
        matrix.locator("button.wb-policy-cell").evaluate_all(
            "cells => cells.map(c => getComputedStyle(c).backgroundColor)"
        )
    )
    assert len(colours) >= 2, colours  # colour-coded, not one flat colour

    bob_reads.click()
    detail = matrix.locator(".wb-policy-detail .wb-policy-drilldown")
    detail.wait_for()
    expect(detail.locator(".wb-policy-cell-title")).to_contain_text("bob@example.com")
    # Both select policies of tasks apply to an authenticated user (permissive policies are OR-ed).
    expect(detail.locator("pre.wb-policy-sql")).to_have_count(2)
    expect(detail).to_contain_text('create policy "owners read their tasks"')
    expect(detail).to_contain_text('create policy "admins read every task"')
    expect(bob_reads).to_have_class(has_class("wb-policy-selected"))
    screenshot(page, "policy_matrix_drilldown", output_of(matrix))
