"""notebooks/06_schema_and_models.ipynb runs top to bottom on its own stand-in (its round trip creates
scratch databases in the cluster)."""

from __future__ import annotations

from pathlib import Path

from notebook_rig import outputs_text, run_notebook

from workbench.local.standin import LocalStandIn


def test_schema_and_models_runs(tmp_path: Path) -> None:
    standin = LocalStandIn(tmp_path / "nb06")
    standin.start()
    try:
        nb = run_notebook("06_schema_and_models.ipynb", standin.data_dir)
        keys = standin.keys()
    finally:
        standin.destroy()
    text = outputs_text(nb)
    assert "outside the schema, referenced by foreign keys: ['auth.users']" in text
    assert "owners read their tasks" in text and "WITH CHECK" in text
    assert "erDiagram" in text and "class Task(Base):" in text
    assert "Unrecognized option(s): noindex" in text
    assert "exported: ['demo_models.py']" in text
    for title in ("Draft landing page", "Set up analytics", "Ship iOS beta"):
        assert title in text
    assert "Fix login crash" not in text.split("Draft landing page", 1)[1].split("anon sees", 1)[0]
    assert "anon sees 0 tasks" in text
    assert "workbench: 0 differences" in text
    widgets = [
        o
        for c in nb.cells
        for o in c.get("outputs", [])
        if "application/vnd.jupyter.widget-view+json" in o.get("data", {})
    ]
    assert len(widgets) == 2  # the schema browser and the model preview
    for secret in (keys.jwt_secret, keys.anon_key, keys.service_role_key):
        assert secret not in text
