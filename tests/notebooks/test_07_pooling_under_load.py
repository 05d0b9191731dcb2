"""notebooks/07_pooling_under_load.ipynb runs top to bottom: the pool widget updates during a load, the four
set-ups are measured and plotted."""

from __future__ import annotations

import re

from notebook_rig import outputs_text, run_notebook
from rigs import require_tool


def test_pooling_under_load_runs(standin) -> None:  # type: ignore[no-untyped-def]
    require_tool("pgbouncer", "the notebook compares direct connections with a transaction pooler")
    nb = run_notebook("07_pooling_under_load.ipynb", standin.data_dir, timeout=600)
    text = outputs_text(nb)
    assert "PgBouncer (transaction mode, server pool of 4) is listening" in text
    live = re.search(
        r"the widget refreshed (\d+) times during the load; in use peaked at (\d+) of (\d+), with up to (\d+)", text
    )
    assert live, text[:2000]
    refreshes, peak, capacity, waiting = map(int, live.groups())
    assert refreshes >= 10 and peak == capacity == 5 and waiting >= 1, live.group(0)
    assert "errors 0" in text
    widget_outputs = [
        o
        for c in nb.cells
        for o in c.get("outputs", [])
        if "application/vnd.jupyter.widget-view+json" in o.get("data", {})
    ]
    assert len(widget_outputs) == 1, "the pool widget is displayed"
    for label in ("direct, small pool (5+5)", "direct, NullPool", "PgBouncer, NullPool", "PgBouncer, small pool (5+5)"):
        assert label in text
    assert any("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", [])), "the plot"
    assert not any(o.get("output_type") == "error" for c in nb.cells for o in c.get("outputs", []))
