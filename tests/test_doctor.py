"""``workbench doctor``: every part healthy on a running stand-in; a broken part named, with the fix."""

from __future__ import annotations

import os
import subprocess
import sys


def doctor(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workbench.cli", "doctor", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_doctor_reports_every_part_healthy(standin) -> None:  # type: ignore[no-untyped-def]
    out = doctor("--dir", str(standin.data_dir))
    assert out.returncode == 0, out.stdout + out.stderr
    for part in ("settings", "database", "roles", "auth helpers", "local API", "auth service", "storage service"):
        line = next(ln for ln in out.stdout.splitlines() if f"] {part} " in ln)
        assert line.startswith("[ok  ]"), line
    assert standin.keys().service_role_key not in out.stdout


def test_doctor_fails_with_the_fix_and_no_secret(tmp_path) -> None:  # type: ignore[no-untyped-def]
    secret = "Sup3r-Secret-Pw"
    out = doctor(env={"SUPABASE_DB_URL": f"postgresql://postgres:{secret}@127.0.0.1:1/postgres"})
    assert out.returncode == 1
    assert "[FAIL] database" in out.stdout and "fix:" in out.stdout
    assert secret not in out.stdout + out.stderr


def test_doctor_reports_bad_settings(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = doctor(env={"SUPABASE_DB_MODE": "warp"})
    assert out.returncode == 1
    assert "SUPABASE_DB_MODE" in out.stdout
