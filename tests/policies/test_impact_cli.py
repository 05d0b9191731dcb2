"""``workbench policies diff``: reports in three formats, the allow-file, and the exit codes CI relies on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from workbench.cli import main
from workbench.policies.impact_report import parse_allow_rules
from workbench.policies.model import PolicyMatrixError

from .conftest import fingerprint

DROP_DELETE = 'drop policy "owners delete their tasks" on public.tasks;\n'


@pytest.fixture()
def migration(tmp_path: Path) -> Path:
    path = tmp_path / "20260101_drop_delete.sql"
    path.write_text(DROP_DELETE)
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["policies", "diff", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_access_change_exits_1_in_every_format(standin, migration: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    dsn = standin.dsn()
    code, text, _ = run(capsys, str(migration), "--db-url", dsn, "--tables", "tasks")
    assert code == 1
    assert "alice@example.com" in text and "allowed (3 rows) -> filtered (0 rows)  [lost]" in text
    assert 'because: policy "owners delete their tasks" dropped' in text
    assert '- dropped "owners delete their tasks" on public.tasks (DELETE)' in text

    code, markdown, _ = run(capsys, str(migration), "--db-url", dsn, "--tables", "tasks", "--format", "markdown")
    assert code == 1
    assert markdown.startswith(f"### Policy impact of `{migration}`")
    assert "| `public.tasks` | delete | alice@example.com | allowed (3 rows) | 🔒 filtered (0 rows) |" in markdown

    code, raw, _ = run(capsys, str(migration), "--db-url", dsn, "--tables", "tasks", "--format", "json")
    data = json.loads(raw)
    assert code == 1 and data["changed"] and not data["failed"]
    changed = {(c["identity"], c["operation"]) for c in data["changes"]}
    assert changed == {("alice@example.com", "delete"), ("bob@example.com", "delete"), ("carol@example.com", "delete")}
    assert data["identities"] == ["anon", "alice@example.com", "bob@example.com", "carol@example.com", "service_role"]
    assert "password" not in raw and dsn not in raw


def test_no_change_exits_0(standin, capsys) -> None:  # type: ignore[no-untyped-def]
    code, text, _ = run(capsys, "comment on table public.tasks is 'tasks';", "--db-url", standin.dsn(),
                        "--tables", "tasks")  # fmt: skip
    assert code == 0 and "No access change" in text


def test_allow_file_passes_reviewed_changes_only(standin, migration: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    allow = tmp_path / "allow.txt"
    allow.write_text("# reviewed in PR 42\n*@example.com | tasks | delete | allowed -> filtered\n")
    code, text, _ = run(capsys, str(migration), "--db-url", standin.dsn(), "--tables", "tasks", "--allow", str(allow))
    assert code == 0 and text.count("(allowed)") == 3

    allow.write_text("alice@example.com | public.tasks | delete\n")
    code, text, _ = run(capsys, str(migration), "--db-url", standin.dsn(), "--tables", "tasks", "--allow", str(allow),
                        "--format", "markdown")  # fmt: skip
    assert code == 1 and "(2 not in the allow-file)" in text and text.count("⚠️") == 2

    allow.write_text("alice@example.com public.tasks delete\n")
    code, _, err = run(capsys, str(migration), "--db-url", standin.dsn(), "--allow", str(allow))
    assert code == 2 and "allow.txt:1: expected IDENTITY | TABLE | OPERATION" in err


def test_failing_migration_exits_2_and_leaves_the_database_unchanged(standin, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from workbench.notebook.bridge import run_sync

    dsn = standin.dsn()
    before = run_sync(fingerprint(dsn))
    bad = tmp_path / "bad.sql"
    bad.write_text(DROP_DELETE + "delete from public.tasks;\n\ninsert into public.tasks (title) values (null);\n")
    code, text, _ = run(capsys, str(bad), "--db-url", dsn, "--tables", "tasks")
    assert code == 2
    assert f"MIGRATION FAILED at {bad}:4 (statement 3): 23502" in text
    assert "insert into public.tasks (title) values (null)" in text
    assert run_sync(fingerprint(dsn)) == before


def test_project_folder_settings_and_relative_migration(standin, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    project = tmp_path / "app"
    (project / "supabase" / "migrations").mkdir(parents=True)
    (project / "supabase" / "migrations" / "001.sql").write_text(DROP_DELETE)
    (project / ".env").write_text(f"SUPABASE_DB_URL={standin.dsn()}\n")
    code, text, _ = run(capsys, "supabase/migrations", "--project", str(project), "--tables", "tasks")
    assert code == 1 and "owners delete their tasks" in text

    code, _, err = run(capsys, "x.sql", "--project", str(tmp_path / "nowhere"))
    assert code == 2 and "--project" in err and "no such folder" in err


def test_bad_input_exits_2_with_the_fix(standin, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    code, _, err = run(capsys, str(tmp_path / "missing.sql"), "--db-url", standin.dsn())
    assert code == 2 and "No migration file or folder" in err
    code, _, err = run(capsys, "select 1;", "--db-url", standin.dsn(), "--as", "nobody@example.com")
    assert code == 2 and "nobody@example.com" in err and "auth.users" in err


def test_allow_rules_parse() -> None:
    rules = parse_allow_rules("a | tasks | select\n* | storage.objects | * | none -> allowed  # new table\n")
    assert [(r.identity, r.table, r.operation, r.before, r.after) for r in rules] == [
        ("a", "public.tasks", "select", "*", "*"),
        ("*", "storage.objects", "*", "none", "allowed"),
    ]
    with pytest.raises(PolicyMatrixError, match="unknown operation 'read'"):
        parse_allow_rules("a | tasks | read")
    with pytest.raises(PolicyMatrixError, match="BEFORE -> AFTER"):
        parse_allow_rules("a | tasks | select | allowed")


def test_the_installed_command_runs(standin, migration: Path) -> None:  # type: ignore[no-untyped-def]
    result = subprocess.run(
        [sys.executable, "-m", "workbench.cli", "policies", "diff", str(migration), "--db-url", standin.dsn(),
         "--tables", "tasks", "--format", "json"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert len(json.loads(result.stdout)["changes"]) == 3
