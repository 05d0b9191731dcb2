"""notebooks/11_remote_projects.ipynb runs top to bottom: it connects to the remote-project rig as to a real
project (transaction pooler, verify-full), shows the TLS line and the per-cell round trips beside JupySQL."""

from __future__ import annotations

import re

from notebook_rig import outputs_text, run_notebook
from rigs import require_tool


def test_remote_projects_runs(standin) -> None:  # type: ignore[no-untyped-def]
    require_tool("pgbouncer", "the notebook runs Supavisor's transaction mode on PgBouncer")
    nb = run_notebook("11_remote_projects.ipynb", standin.data_dir, timeout=600)
    text = outputs_text(nb)
    assert not any(o.get("output_type") == "error" for c in nb.cells for o in c.get("outputs", [])), text[-3000:]
    assert "postgres.rigprojectref0000001:[PASSWORD]@127.0.0.1:" in text  # the rig's URLs, password masked
    assert re.search(r"\[ok  \] TLS\s+TLSv1\.[23] .*certificate verified, host name checked", text), text[:3000]
    assert "sslmode=verify-full (SUPABASE_DB_SSLMODE" in text
    line = re.search(r"JupySQL: ([\d.]+) round trip per cell; %%sbquery: up to ([\d.]+)", text)
    assert line, text[-3000:]
    jupysql, sbquery = map(float, line.groups())
    assert jupysql == 1 and sbquery >= jupysql
    for label in ("%%sbquery --as alice@example.com", "%%sbquery --role service_role", "JupySQL %sql (no identity)"):
        assert label in text
    assert "rig stopped" in text
