"""`python -m benchmarks --quick` runs every suite (each in its own process) and each produces its rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from rigs import ROOT


def test_quick_benchmarks_produce_rows_for_every_suite(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out, md = tmp_path / "bench.json", tmp_path / "bench.md"
    env = os.environ | {"XDG_RUNTIME_DIR": os.environ.get("XDG_RUNTIME_DIR", "/tmp")}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--json", str(out), "--out", str(md)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    expected = {"query", "impersonation", "pool"}
    if (ROOT / "benchmarks" / "bench_schema.py").exists():
        expected.add("schema")
    for suite in expected:
        assert data[suite]["error"] is None, (suite, data[suite]["error"])
        assert data[suite]["measurements"], f"{suite} produced no rows"
        assert all(m["values"] for m in data[suite]["measurements"]), suite
    report = md.read_text()
    assert "# Benchmark results" in report and "| ratio |" in report and "**Machine:**" in report
