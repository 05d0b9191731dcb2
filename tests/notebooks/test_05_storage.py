"""notebooks/05_storage.ipynb runs top to bottom on its own stand-in (it makes buckets, policies and files)."""

from __future__ import annotations

from pathlib import Path

from notebook_rig import outputs_text, run_notebook

from workbench.local.standin import LocalStandIn

ALICE = "11111111-1111-4111-8111-111111111111"
BOB = "22222222-2222-4222-8222-222222222222"


def test_storage_notebook_runs(tmp_path: Path) -> None:
    standin = LocalStandIn(tmp_path / "nb05")
    standin.start()
    try:
        nb = run_notebook("05_storage.ipynb", standin.data_dir)
        keys = standin.keys()
    finally:
        standin.destroy()
    text = outputs_text(nb)
    assert "uploaded team-files/handbook/welcome.txt" in text
    assert "'size': 21, 'content_type': 'text/plain'" in text
    assert "token claims: {'url': 'team-files/handbook/welcome.txt', 'valid for (s)': 60}" in text
    assert "with the token:    200 text/plain 'Welcome to the team!\\n'" in text
    assert "public URL:        400 {'statusCode': '404', 'code': 'NoSuchBucket', 'error': 'Bucket not found'" in text
    assert "tampered token:    400 {'statusCode': '400', 'code': 'InvalidJWT'" in text
    # the policy table, then each attempt's outcome
    assert (
        "notes: read own folder    SELECT  ((bucket_id = 'private-notes'::text) AND "
        "((storage.foldername(name))[1] = (( SELECT auth.uid() AS uid))::text))"
    ) in text
    outcomes = nb.cells[[i for i, c in enumerate(nb.cells) if "outcomes = [" in c.source][0]].outputs[0]
    table = outcomes["data"]["text/plain"]
    for line, outcome in [
        ("alice writes in her folder", "allowed"),
        ("bob writes in his folder", "allowed"),
        ("alice reads her file", "allowed"),
        ("alice reads bob's file", "refused"),
        ("alice writes in bob's folder", "refused"),
        ("bob overwrites alice's file", "refused"),
        ("bob moves alice's file", "refused"),
    ]:
        assert any(line in row and outcome in row for row in table.splitlines()), (line, outcome, table)
    assert f"alice@example.com      sees ['{ALICE}']" in text
    assert f"bob@example.com        sees ['{BOB}']" in text
    assert f"admin (service role)   sees ['{ALICE}', '{BOB}']" in text
    assert f"refused=['{ALICE}/diary.txt']" in text and "alice's diary is still there: Dear diary" in text
    assert f"as bob:   ['{BOB}']" in text and f"as admin: ['{ALICE}', '{BOB}']" in text
    widget_views = [
        o
        for c in nb.cells
        for o in c.get("outputs", [])
        if "application/vnd.jupyter.widget-view+json" in o.get("data", {})
    ]
    assert len(widget_views) == 2  # the browser built by hand, and %sbstorage
    error_cells = [c for c in nb.cells if any(o.get("output_type") == "error" for o in c.get("outputs", []))]
    assert error_cells == []
    for secret in (keys.jwt_secret, keys.service_role_key, keys.anon_key):
        assert secret not in text
