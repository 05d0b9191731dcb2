"""The browser rig end to end: a real JupyterLab, a real kernel on the stand-in, a widget round trip in chromium."""

from __future__ import annotations

import sys

import pytest
from lab import Lab, cell_of, open_notebook, output_of, run_all, screenshot, wait_for_output, write_notebook

pytestmark = pytest.mark.browser

CELLS = [
    "<!--md--># Browser rig smoke test\nA dropdown whose `observe` callback asks the stand-in's database.",
    "import os, sys\nprint('kernel python:', sys.executable)\nprint('local dir:', os.environ['WORKBENCH_LOCAL_DIR'])",
    """import asyncpg
import ipywidgets as w
from workbench.notebook.bridge import run_sync
from workbench.local.standin import LocalStandIn

DSN = LocalStandIn(os.environ["WORKBENCH_LOCAL_DIR"]).dsn()


async def user_id(email: str) -> str:
    conn = await asyncpg.connect(DSN)
    try:
        return str(await conn.fetchval("select id from auth.users where email = $1", email))
    finally:
        await conn.close()


picker = w.Dropdown(options=["(choose)", "alice@example.com", "bob@example.com"], description="User")
answer = w.HTML("<i>nothing chosen</i>")
answer.add_class("smoke-answer")


def on_change(change):
    if change["new"] != "(choose)":
        answer.value = f"<b>{change['new']}</b> has id <code>{run_sync(user_id(change['new']))}</code>"


picker.observe(on_change, names="value")
w.VBox([picker, answer])""",
]


def test_dropdown_round_trip_through_the_kernel(lab: Lab, page) -> None:  # type: ignore[no-untyped-def]
    write_notebook(lab.root_dir, "smoke.ipynb", CELLS)
    open_notebook(page, lab, "smoke.ipynb")
    run_all(page)

    # The kernel is this venv's interpreter and sees the session's stand-in.
    wait_for_output(page, f"kernel python: {sys.executable}")
    wait_for_output(page, f"local dir: {lab.local_dir}")

    select = wait_for_output(page, ".widget-dropdown select")
    answer = wait_for_output(page, ".smoke-answer")
    assert "nothing chosen" in answer.inner_text()

    select.select_option("bob@example.com")  # a real change event in the DOM, synced to the kernel
    answer.get_by_text("22222222-2222-4222-8222-222222222222").wait_for()
    assert answer.inner_text().startswith("bob@example.com has id")

    shots = [
        screenshot(page, "lab_smoke_page", show=answer),
        screenshot(page, "lab_smoke_cell", cell_of(select)),
        screenshot(page, "lab_smoke_widget", output_of(select)),
    ]
    for shot in shots:
        assert shot.stat().st_size > 5_000
