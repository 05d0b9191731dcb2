"""notebooks/09_policy_testing.ipynb runs top to bottom on a stand-in of its own (it changes policies and
seeds a schema), catches the broken policy with the exported tests, and cleans up after itself."""

from __future__ import annotations

import asyncpg
from notebook_rig import outputs_text, run_notebook
from policies.conftest import fingerprint
from policies.standin_rig import private_standin


async def test_policy_testing_notebook_runs() -> None:
    with private_standin("nb09") as standin:
        before = await fingerprint(standin.dsn())
        nb = run_notebook("09_policy_testing.ipynb", standin.data_dir, timeout=600)
        after = await fingerprint(standin.dsn())
        conn = await asyncpg.connect(standin.dsn())
        try:
            policy = await conn.fetchval(
                "select pg_get_expr(polqual, polrelid) from pg_policy where polname = 'owners read their tasks'"
            )
        finally:
            await conn.close()
    text = outputs_text(nb)
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert errors == []
    # the matrix, as a frame and in the drill-down
    assert "✓ 7" in text and "✓ 3" in text
    assert "allowed 1 row · insert into public.tasks" in text
    assert "members add their own tasks" in text
    assert "refused 42501" in text and "default deny" in text
    # the exported tests: green, red on exactly the broken cells, green again
    assert text.count("80 passed") >= 3
    assert "pytest exit code: 1" in text and "2 failed, 78 passed" in text
    assert "test_policy[alice@example.com|public.tasks|select]" in text
    assert "test_policy[bob@example.com|public.tasks|select]" in text
    assert "expected allowed (3 rows), got allowed (7 rows)" in text
    # advisors on the seeded schema: every lint fires, with its fix
    for lint in [
        "rls_disabled_in_public", "policy_exists_rls_disabled", "rls_enabled_no_policy", "auth_rls_initplan",
        "multiple_permissive_policies", "unindexed_foreign_keys", "function_search_path_mutable",
        "security_definer_view", "duplicate_index", "no_primary_key", "auth_users_exposed",
        "rls_references_user_metadata",
    ]:  # fmt: skip
        assert lint in text, lint
    assert 'alter policy "authors read" on lint_demo.comments' in text
    assert "revoke select on lint_demo.user_directory from anon, authenticated;" in text
    # why: the four classic causes of an empty result, each diagnosed in one cell, and an UPDATE 0 explained
    assert "no permissive SELECT policy for role authenticated: default deny on rows" in text
    assert "role authenticated has no SELECT privilege on why_demo.notes" in text
    assert "grant select on why_demo.notes to authenticated" in text
    assert "0 of 2 rows visible to anon on why_demo.posts" in text
    assert "the table's policies are for authenticated, not anon" in text
    assert "policy 'team members read docs' is false for team_id=1" in text
    assert "1 of 2 rows updatable by bob@example.com on public.tasks" in text
    assert "2 of 3 rows visible to bob@example.com on public.tasks" in text
    # the measurement
    assert "100,000 rows, 1,000 visible to the user" in text and "InitPlan" in text
    # cleaned up: the policy restored, the schema gone, the data as it was
    assert "leftover schemas: 0" in text
    assert policy == "(owner_id = ( SELECT auth.uid() AS uid))"
    assert after == before
