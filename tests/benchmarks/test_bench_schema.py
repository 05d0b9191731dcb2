"""Smoke test of benchmarks/bench_schema.py: a quick run produces every row (figures are not asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from rigs import ROOT

from workbench.local.standin import LocalStandIn


def test_quick_run_produces_its_rows(standin: LocalStandIn, tmp_path: Path) -> None:
    out = tmp_path / "schema.json"
    env = os.environ | {"PYTHONPATH": str(ROOT), "XDG_RUNTIME_DIR": os.environ.get("XDG_RUNTIME_DIR", "/tmp")}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_schema", "--quick", "--dsn", standin.dsn(), "--json", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(out.read_text())
    rows = {(m["table"], m["method"]) for m in data["measurements"]}
    for n in (10, 30):
        for method in (
            "workbench: reflect + generate (in process)",
            "sqlacodegen: reflect + generate (in process)",
            "information_schema: reflect only (in process)",
            "  of which the foreign-key query",
        ):
            assert (f"Reflect + generate, {n} tables (in process)", method) in rows
        for method in ("workbench models export (cold process)", "sqlacodegen command (cold process)"):
            assert (f"Cold command line, {n} tables", method) in rows
    assert all(v > 0 for m in data["measurements"] for v in m["values"])
    assert any(note.startswith("Target: reflect + generate at 30 tables") for note in data["notes"])
    assert "| workbench: reflect + generate (in process) |" in proc.stdout
    assert data["facts"]["Machine"]["cores"]
