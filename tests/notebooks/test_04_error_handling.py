"""notebooks/04_error_handling.ipynb runs top to bottom; each failure is provoked for real and explained.

It changes nothing that lasts (every write is refused or rolled back, and it terminates only its own
connections), so it runs on the shared stand-in.
"""

from __future__ import annotations

from notebook_rig import outputs_text, run_notebook

from workbench.local.standin import LocalStandIn


def test_error_handling_runs(standin: LocalStandIn) -> None:
    nb = run_notebook("04_error_handling.ipynb", standin.data_dir)
    text = outputs_text(nb)
    assert "category:  rls_violation   (sqlstate 42501, transient=False)" in text
    assert "403 Not allowed: a row-level security policy refused this change." in text
    assert "category:  syntax" in text
    assert "LINE 3: wher status = 'todo' \n             ^" in text  # the caret under "status"
    assert "category:  timeout   (sqlstate 57014" in text and "statement_timeout" in text
    assert "category:  unique_violation   (sqlstate 23505" in text and "HTTP: 409" in text
    assert "category:  connection" in text and "transient=True" in text and "connection refused" in text
    assert "my-db-password" not in text  # redacted before display
    assert "refused connection: NOT_SENT" in text and "RLS refusal:       PERMANENT" in text
    assert "attempt 1 failed (connection, UNKNOWN); retrying in" in text
    assert "tasks, after 2 attempts on backends" in text
    assert "outcome: UNKNOWN | attempts: 1" in text and "may have run" in text
    assert "rows titled 'Only once': 0" in text
    error_cells = [c for c in nb.cells if any(o.get("output_type") == "error" for o in c.get("outputs", []))]
    assert error_cells == []
