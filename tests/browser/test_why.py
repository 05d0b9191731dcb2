"""``%sbwhy`` in a real JupyterLab: one coloured verdict per row, and a click expands each policy's expression
with its value, evaluated as the identity. Everything is rolled back, so the session's stand-in is unchanged.
"""

from __future__ import annotations

import re

import pytest
from lab import Lab, cell_of, open_notebook, run_all, screenshot, wait_for_output, write_notebook
from playwright.sync_api import expect

from workbench.policies.why import COLOURS

pytestmark = pytest.mark.browser

CELLS = [
    "<!--md--># Why can't Bob see these tasks?\nEvery policy evaluated as Bob, row by row, and rolled back.",
    "%load_ext workbench\n%sbconnect",
    "%sbwhy --as bob@example.com tasks",
]


def rgb(hex_colour: str) -> str:
    """``#c6efce`` as the browser's computed ``rgb(198, 239, 206)``."""
    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgb({r}, {g}, {b})"


def test_why_widget_shows_verdicts_and_expands_policies(lab: Lab, page) -> None:  # type: ignore[no-untyped-def]
    write_notebook(lab.root_dir, "why.ipynb", CELLS)
    open_notebook(page, lab, "why.ipynb")
    run_all(page)

    why = wait_for_output(page, ".wb-why")
    expect(why.locator(".wb-why-summary")).to_contain_text("2 of 7 rows visible to bob@example.com on public.tasks")
    verdicts = why.locator("button.wb-why-verdict")
    expect(verdicts).to_have_count(7)
    expect(why.locator("button.wb-why-visible")).to_have_count(2)
    expect(why.locator("button.wb-why-hidden")).to_have_count(5)
    expect(why.locator("button.wb-why-visible").first).to_have_css("background-color", rgb(COLOURS["visible"]))
    expect(why.locator("button.wb-why-hidden").first).to_have_css("background-color", rgb(COLOURS["hidden"]))
    expect(why.locator(".wb-why-reason").first).to_contain_text("'owners read their tasks' false")

    # Click Alice's first task (hidden from Bob): both SELECT policies with their values as Bob.
    first_hidden = why.locator("button.wb-why-hidden").first
    first_hidden.click()
    detail = why.locator(".wb-why-detail .wb-why-drilldown").first
    detail.wait_for()
    expect(detail.locator(".wb-why-check")).to_have_count(2)
    expect(detail.locator(".wb-why-value-false")).to_have_text("false")
    expect(detail.locator(".wb-why-value-null")).to_have_text("null")
    expect(detail).to_contain_text("'owners read their tasks'")
    expect(detail.locator("pre.wb-why-expression", has_text="auth.uid()")).to_have_count(1)
    expect(first_hidden).to_have_class(re.compile(r"(^|\s)wb-why-expanded(\s|$)"))
    screenshot(page, "why_widget", cell_of(why))
