"""notebooks/10_policy_impact.ipynb runs top to bottom on a stand-in of its own: each of its three changes
shows the cells it changes and why, the CLI gives CI its exit codes, and nothing is committed."""

from __future__ import annotations

from notebook_rig import outputs_text, run_notebook
from policies.conftest import fingerprint
from policies.standin_rig import private_standin


async def test_policy_impact_notebook_runs() -> None:
    with private_standin("nb10") as standin:
        before = await fingerprint(standin.dsn())
        nb = run_notebook("10_policy_impact.ipynb", standin.data_dir, timeout=600)
        after = await fingerprint(standin.dsn())
    text = outputs_text(nb)
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert errors == []
    # change 1: members gain their organizations' tasks, judged with the membership rows
    assert "carol@example.com                allowed (2 rows) -> allowed (7 rows)  [gained]" in text
    assert 'because: policy "team members can read projects\' tasks" added' in text
    assert "depends on data: True ['public.is_org_member(bigint) (function)', 'public.projects']" in text
    # change 2: owners lose delete, nobody gains anything
    assert "allowed (3 rows) -> filtered (0 rows)  [lost]" in text and "{'lost'}" in text
    # change 3: the leaky security definer helper, named, with the advisor finding it adds
    assert (
        'because: policy "project members read tasks" added; security definer function '
        "public.is_project_member(bigint) added" in text
    )
    assert "+ added WARN function_search_path_mutable" in text
    assert "bob@example.com                  allowed (2 rows) -> allowed (7 rows)  [gained]" in text
    # the fix: Bob gains only the task of his own organization's projects, no advisor finding
    assert "bob@example.com', 'public.tasks', 'select') allowed (2 rows) -> allowed (3 rows)" in text
    assert "advisor findings added: []" in text
    # the widget, the failure, the CLI
    assert "wb-policy-impact-widget" in text
    assert "MIGRATION FAILED at" in text and '002_typo.sql:2 (statement 2): 42P01 relation "public.taks"' in text
    assert "exit code: 1" in text and "with the allow-file, exit code: 0" in text
    assert "an unexpected change, exit code: 1" in text and "a broken migration, exit code: 2" in text
    assert "| `public.tasks` | select | carol@example.com | allowed (2 rows) | 🔓 allowed (7 rows) |" in text
    assert "unchanged: True" in text
    assert after == before
