"""notebooks/02_rls_impersonation.ipynb runs top to bottom; identities see different rows."""

from __future__ import annotations

from notebook_rig import outputs_text, run_notebook


def test_rls_impersonation_runs(standin) -> None:  # type: ignore[no-untyped-def]
    nb = run_notebook("02_rls_impersonation.ipynb", standin.data_dir)
    text = outputs_text(nb)
    assert "0 rows" in text  # anon
    assert "3 rows · " in text and "as alice@example.com" in text
    assert "2 rows · " in text and "as bob@example.com" in text
    assert "7 rows · " in text and "as service_role" in text
    assert "row-level security" in text.lower() and "tasks" in text
    assert "Now running as" in text and "carol@example.com" in text
    error_cells = [c for c in nb.cells if any(o.get("output_type") == "error" for o in c.get("outputs", []))]
    assert len(error_cells) == 1 and "raises-exception" in error_cells[0].metadata.get("tags", [])
