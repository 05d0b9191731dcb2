"""notebooks/08_loading_patterns.ipynb runs top to bottom: the errors, the SQL and the round trips shown."""

from __future__ import annotations

import re

from notebook_rig import outputs_text, run_notebook


def test_loading_patterns_runs(standin) -> None:  # type: ignore[no-untyped-def]
    nb = run_notebook("08_loading_patterns.ipynb", standin.data_dir)
    text = outputs_text(nb)
    assert "running as carol@example.com" in text
    assert "MissingGreenlet - greenlet_spawn has not been called" in text
    assert "'Task.project' is not available due to lazy='raise'" in text
    counts = {
        name: (int(statements), int(trips))
        for name, statements, trips in re.findall(
            r"^(selectinload|joinedload|awaitable_attrs in a loop): (\d+) statements, (\d+) round trips", text, re.M
        )
    }
    # the SELECTs (the identity rides in BEGIN's message); round trips add the pre-ping (3), BEGIN and ROLLBACK
    assert counts == {"selectinload": (2, 7), "joinedload": (1, 6), "awaitable_attrs in a loop": (3, 8)}, counts
    assert "LEFT OUTER JOIN" in text and "IN (" in text
    assert "Mobile app" in text and "Fix login crash" in text and "Draft landing page" not in text, "RLS as carol"
    assert "cached read: 2 tasks, 0 round trips" in text
    assert re.search(r"refresh\(\): 2 tasks, \d+ round trips", text)
    assert not any(o.get("output_type") == "error" for c in nb.cells for o in c.get("outputs", []))
