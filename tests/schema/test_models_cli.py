"""``workbench models export``: in-process for behaviour, one cold subprocess for the real command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from workbench.cli import main
from workbench.local.standin import LocalStandIn


def test_export_to_stdout_and_file(pagila_dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "export", "--db-url", pagila_dsn, "--tables", "film", "language"]) == 0
    out = capsys.readouterr().out
    assert "class Film(Base):" in out and "class Language(Base):" in out and "class Actor(" not in out
    assert "workbench models export --tables film language" in out  # how to regenerate, in the header

    target = tmp_path / "models.py"
    assert (
        main(["models", "export", "--db-url", pagila_dsn, "--options", "noindexes,nocomments", "--out", str(target)])
        == 0
    )
    err = capsys.readouterr().err
    assert f"to {target}" in err and "wrote 30 tables/views of public" in err
    text = target.read_text()
    assert "Index(" not in text and "--options nocomments,noindexes" in text


def test_package_layout_and_external_mode(
    pagila_dsn: str, standin: LocalStandIn, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "models"
    assert (
        main(
            [
                "models",
                "export",
                "--db-url",
                standin.dsn(),
                "--layout",
                "package",
                "--external",
                "include",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert sorted(p.name for p in out.iterdir()) == ["__init__.py", "_base.py", "_ddl.py", "auth.py", "public.py"]
    assert "email: Mapped[" in (out / "auth.py").read_text()  # auth.users in full


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--options", "bogus"], "Unrecognized option(s): bogus"),
        (["--schema", "nope"], "No schema named 'nope'"),
        (["--tables", "no_such_table"], "No table or view no_such_table"),
    ],
)
def test_bad_input_exits_2_with_the_fix(
    pagila_dsn: str, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["models", "export", "--db-url", pagila_dsn, *args]) == 2
    assert message in capsys.readouterr().err


def test_local_stand_in_by_default(
    standin: LocalStandIn, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in [k for k in os.environ if k.startswith("SUPABASE_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(standin.data_dir)  # no .env here
    assert main(["models", "export", "--dir", str(standin.data_dir), "--tables", "tasks", "--quiet"]) == 0
    assert "class Task(Base):" in capsys.readouterr().out


def test_cold_command_line(pagila_dsn: str, tmp_path: Path) -> None:
    """The real console command in a fresh interpreter writes importable models."""
    target = tmp_path / "pagila_models.py"
    proc = subprocess.run(
        [sys.executable, "-m", "workbench.cli", "models", "export", "--db-url", pagila_dsn, "--out", str(target)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    compile(target.read_text(), str(target), "exec")
    assert "class Payment(Base):" in target.read_text()


def test_check_builds_the_export_and_reports_the_diff(
    pagila_dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "models.py"
    assert main(["models", "export", "--db-url", pagila_dsn, "--out", str(out), "--check"]) == 0
    err = capsys.readouterr().err
    assert "check: workbench: 0 differences" in err and "compared: table, column" in err
    assert "never compared: owners" in err
    # leaving indexes out is a difference the check reports, with exit status 1
    assert main(["models", "export", "--db-url", pagila_dsn, "--options", "noindexes", "--check", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "check: workbench: 34 differences" in err and "[index]: missing" in err
