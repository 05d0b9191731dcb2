"""notebooks/01_engine_and_pooling.ipynb runs top to bottom (live through PgBouncer when installed)."""

from __future__ import annotations

from notebook_rig import outputs_text, run_notebook
from rigs import require_tool


def test_engine_and_pooling_runs(standin) -> None:  # type: ignore[no-untyped-def]
    require_tool("pgbouncer", "the notebook shows transaction pooling live")
    nb = run_notebook("01_engine_and_pooling.ipynb", standin.data_dir)
    text = outputs_text(nb)
    assert "not-a-real-password" not in text
    assert "transaction-mode engine: 600 ok, 0 wrong, 0 failed" in text
    assert "naive engine:" in text and "Tenant or user not found" in text
    assert "heartbeats:" in text
