"""``workbench policies diff MIGRATION``: what a migration changes about access, for CI.

Exit codes: 0 no access change (or every change is in the allow-file), 1 access changed, 2 the migration
failed (nothing kept) or the check could not run (bad input, no database).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

EXIT_UNCHANGED, EXIT_CHANGED, EXIT_FAILED = 0, 1, 2
FORMATS = ("text", "markdown", "json")


def add_parser(subparsers: Any) -> None:
    """Add ``policies diff`` to the ``workbench`` command's subparsers."""
    policies = subparsers.add_parser("policies", help="RLS policies: what a migration changes about access")
    sub = policies.add_subparsers(dest="policies_command", required=True)
    diff = sub.add_parser(
        "diff",
        help="the policy matrix before and after a migration (rolled back), and every changed cell",
        description="Apply MIGRATION (a .sql file, a folder of them in file-name order, or SQL text) inside a "
        "transaction that is always rolled back, run the policy matrix before and after, and report every "
        "identity x table x operation that changed. Exit 0: no access change; 1: access changed (not covered by "
        "--allow); 2: the migration failed (nothing kept) or the check could not run.",
    )
    diff.add_argument("migration", help="a .sql file, a folder of .sql files, or SQL text")
    diff.add_argument("--project", type=Path, help="project folder: its .env gives SUPABASE_* settings "
                      "(default: the current folder's .env, else the local stand-in)")  # fmt: skip
    diff.add_argument("--db-url", help="PostgreSQL URL as the admin role (overrides --project settings)")
    diff.add_argument("--dir", type=Path, help="local stand-in data folder (default $WORKBENCH_LOCAL_DIR)")
    diff.add_argument("--format", choices=FORMATS, default="text", help="text (default), markdown or json")
    diff.add_argument("--allow", type=Path, metavar="FILE", help="expected changes, one per line: "
                      "IDENTITY | TABLE | OPERATION [| BEFORE -> AFTER]")  # fmt: skip
    diff.add_argument("--as", dest="identities", nargs="+", action="extend", default=[], metavar="USER",
                      help="extra identities: a role, or a user (email or uuid) optionally +{json claims}")  # fmt: skip
    diff.add_argument("--tables", nargs="+", metavar="TABLE", help="only these tables (default: every table of public)")
    diff.add_argument("--full", action="store_true", help="try every table after the migration, not only those "
                      "it can affect (slower; the same changes)")  # fmt: skip
    diff.add_argument("--out", type=Path, help="also write the report to this file (e.g. a PR comment)")
    diff.set_defaults(func=cmd_diff)


def _dsn(args: argparse.Namespace) -> str:
    """The database to check: --db-url, else the project's settings, else the local stand-in."""
    if args.db_url:
        return str(args.db_url)
    from workbench.core.settings import Settings

    project: Path | None = args.project
    if project is not None and not project.is_dir():
        raise ValueError(f"--project {project}: no such folder; give the project's folder (where its .env is).")
    env_file = (project or Path(".")) / ".env"
    configured = env_file.exists() or any(k.startswith("SUPABASE_") for k in os.environ)
    local_dir = args.dir
    if configured:
        settings = Settings(_env_file=env_file) if env_file.exists() else Settings()  # type: ignore[call-arg]
        if not settings.is_local:
            return settings.database_url("asyncpg").render_as_string(hide_password=False)
        local_dir = local_dir or settings.local_dir
    from workbench.local.standin import LocalStandIn

    return LocalStandIn(local_dir).dsn()


def _migration(args: argparse.Namespace) -> str | Path:
    """A path relative to --project when it exists there; else what was given (a path or SQL text)."""
    text: str = args.migration
    if args.project is not None and "\n" not in text and ";" not in text:
        candidate = args.project / text
        if not Path(text).exists() and candidate.exists():
            return candidate
    return text


def cmd_diff(args: argparse.Namespace) -> int:
    from workbench.core.settings import SettingsError
    from workbench.local.standin import StandInError
    from workbench.policies.impact import policy_impact_sync
    from workbench.policies.impact_report import load_allow_file, render_json, render_markdown, render_text
    from workbench.policies.model import PolicyMatrixError

    err = sys.stderr
    try:
        rules = load_allow_file(args.allow) if args.allow else None
        dsn = _dsn(args)
        impact = policy_impact_sync(
            dsn, _migration(args), extra_identities=args.identities, tables=args.tables, full=args.full
        )
    except (PolicyMatrixError, SettingsError, StandInError, ValueError) as exc:
        print(f"error: {exc}", file=err)
        return EXIT_FAILED
    except OSError as exc:
        print(
            f"error: cannot connect to the database: {exc}. Check --db-url / --project / SUPABASE_DB_URL, or start "
            "the local stand-in with `workbench local start`.",
            file=err,
        )
        return EXIT_FAILED
    except Exception as exc:  # asyncpg's own errors: a refused login, an unknown database
        if not type(exc).__module__.startswith("asyncpg"):
            raise
        print(f"error: {type(exc).__name__}: {exc}", file=err)
        return EXIT_FAILED
    from workbench.policies.impact_report import unexpected_changes

    unexpected = unexpected_changes(impact, rules) if rules is not None else None
    render = {"text": render_text, "markdown": render_markdown, "json": render_json}[args.format]
    report = render(impact, unexpected)
    sys.stdout.write(report)
    if args.out is not None:
        args.out.write_text(report, encoding="utf-8")
    if impact.failure is not None:
        return EXIT_FAILED
    blocking = unexpected if unexpected is not None else impact.changes
    return EXIT_CHANGED if blocking else EXIT_UNCHANGED
