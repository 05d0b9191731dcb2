"""The advisors in a real JupyterLab: ``%sbadvise`` groups findings by level and "Show fix" reveals the remediation
SQL (shown, never applied). The notebook connects to a fresh scratch database seeded with known problems.
"""

from __future__ import annotations

import asyncpg
import pytest
from lab import Lab, open_notebook, output_of, run_all, screenshot, wait_for_output, write_notebook
from playwright.sync_api import expect

from workbench.notebook.bridge import run_sync

pytestmark = pytest.mark.browser

PROBLEMS = """
create table public.open_notes (id bigint primary key, body text);
grant select, insert, update, delete on public.open_notes to anon, authenticated;  -- Supabase's default grants
create table public.parents (id bigint primary key);
alter table public.parents enable row level security;
create table public.children (id bigint primary key, parent_id bigint references public.parents (id));
alter table public.children enable row level security;
create policy "anyone reads children" on public.children for select using (true);
"""


async def rls_enabled(dsn: str, table: str) -> bool:
    conn = await asyncpg.connect(dsn)
    try:
        return bool(await conn.fetchval("select relrowsecurity from pg_class where oid = $1::regclass", table))
    finally:
        await conn.close()


async def seed(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(PROBLEMS)
    finally:
        await conn.close()


def test_advisors_group_findings_and_show_a_fix(lab: Lab, page, empty_db: str) -> None:  # type: ignore[no-untyped-def]
    run_sync(seed(empty_db))
    cells = [
        "<!--md--># Database advisors\nSupabase's lints on this database; each fix is SQL to review, never applied.",
        f"%load_ext workbench\n%sbconnect {empty_db}",
        "%sbadvise",
    ]
    write_notebook(lab.root_dir, "advisors.ipynb", cells)
    open_notebook(page, lab, "advisors.ipynb")
    run_all(page)

    advisors = wait_for_output(page, ".wb-advisors")
    expect(advisors.locator(".wb-advisor-counts")).to_contain_text("ERROR")
    open_notes = advisors.locator(".wb-advisor-level-error .wb-advisor-item", has_text="open_notes")
    expect(open_notes).to_have_count(1)  # RLS disabled on a public table is an error
    expect(advisors.locator(".wb-advisor-item", has_text="parent_id")).not_to_have_count(0)  # the unindexed FK

    fix = open_notes.locator(".wb-advisor-fix")
    expect(fix).to_be_hidden()
    open_notes.locator("button.wb-advisor-fix-button").click()
    expect(fix).to_be_visible()
    expect(fix.locator("pre.wb-advisor-sql")).to_contain_text("enable row level security")
    screenshot(page, "advisors_show_fix", output_of(advisors))
    assert not run_sync(rls_enabled(empty_db, "public.open_notes"))  # shown, not applied
