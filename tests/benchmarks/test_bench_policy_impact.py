"""Smoke test of benchmarks/bench_policy_impact.py: a quick run produces both rows, finds the same changes
scoped and full, and leaves no database behind (figures are not asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
from rigs import ROOT

from workbench.local.standin import LocalStandIn


async def test_quick_run_produces_its_rows(standin: LocalStandIn, tmp_path: Path) -> None:
    out = tmp_path / "impact.json"
    env = os.environ | {"PYTHONPATH": str(ROOT), "XDG_RUNTIME_DIR": os.environ.get("XDG_RUNTIME_DIR", "/tmp")}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_policy_impact", "--quick", "--dsn", standin.dsn(), "--json", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(out.read_text())
    methods = [m["method"] for m in data["measurements"]]
    assert methods == [
        "policy_impact (tables the migration can affect: 4)",
        "policy_impact(full=True): every table before and after (13)",
    ]
    assert all(m["table"] == "Policy impact of a migration: 10 tables, 5 identities" for m in data["measurements"])
    assert all(v > 0 for m in data["measurements"] for v in m["values"])
    assert "45 changed cells found, the same with full=True" in data["notes"][0]
    conn = await asyncpg.connect(standin.dsn())
    try:
        assert await conn.fetchval("select count(*) from pg_database where datname = 'wb_bench_policy_impact'") == 0
    finally:
        await conn.close()
