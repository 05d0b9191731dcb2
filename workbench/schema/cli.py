"""``workbench models export``: SQLAlchemy models of a database, from the command line.

Kept cheap to start: only asyncpg is imported to reflect, the generator is plain Python, and the
connection comes from ``--db-url``, ``SUPABASE_*`` settings, or the local stand-in's state file.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from workbench.schema.codegen import EXTERNAL_MODES, LAYOUTS, VALID_OPTIONS


def add_parser(subparsers: Any) -> None:
    """Add ``models export`` to the ``workbench`` command's subparsers."""
    models = subparsers.add_parser("models", help="SQLAlchemy models of the database schema")
    sub = models.add_subparsers(dest="models_command", required=True)
    export = sub.add_parser(
        "export",
        help="reflect schemas and write SQLAlchemy 2.0 typed models",
        description="Reflect schemas from the catalogs and write SQLAlchemy 2.0 typed declarative models. "
        "Without --out the code goes to standard output.",
    )
    export.add_argument("--schema", action="append", dest="schemas", metavar="S", help="schema (repeatable; public)")
    export.add_argument("--tables", nargs="+", metavar="T", help="only these tables (name or schema.name)")
    export.add_argument(
        "--options",
        nargs="+",
        default=[],
        metavar="OPT",
        help=f"generator options, space or comma separated: {', '.join(sorted(VALID_OPTIONS))}",
    )
    export.add_argument(
        "--external",
        choices=EXTERNAL_MODES,
        default="standin",
        help="tables outside the selection that FKs point to (auth.users): a minimal stand-in model, "
        "full models, or a plain FK kept as DDL (default: standin)",
    )
    export.add_argument("--layout", choices=LAYOUTS, default="file", help="one file, or one module per schema")
    export.add_argument("--out", type=Path, help="a .py file (or a folder for --layout package)")
    export.add_argument("--db-url", help="PostgreSQL URL (default: SUPABASE_DB_URL or the local stand-in)")
    export.add_argument("--dir", type=Path, help="local stand-in data folder (default $WORKBENCH_LOCAL_DIR)")
    export.add_argument("--quiet", action="store_true", help="no progress or summary on standard error")
    export.add_argument(
        "--check",
        action="store_true",
        help="also build the code into a throwaway Supabase-like database with create_all and diff it against "
        "the source; exit status 1 when they differ",
    )
    export.add_argument(
        "--check-server",
        metavar="URL",
        help="server for the throwaway database (default: the source's server, right for the local stand-in)",
    )
    export.set_defaults(func=cmd_export)


def _options(raw: list[str]) -> list[str]:
    return [part.strip() for item in raw for part in item.split(",") if part.strip()]


def _connection(args: argparse.Namespace) -> tuple[str, bool]:
    """(libpq DSN, behind a transaction pooler?) from the cheapest source that has one."""
    from workbench.schema.reflect import plain_dsn

    if args.db_url:
        return plain_dsn(args.db_url), ":6543/" in args.db_url
    configured = any(k.startswith("SUPABASE_") for k in os.environ) or Path(".env").exists()
    if configured:
        from workbench.core.settings import Settings
        from workbench.schema.reflect import dsn_from_settings

        settings = Settings()
        if not settings.is_local:
            return dsn_from_settings(settings)
    from workbench.local.standin import LocalStandIn

    return LocalStandIn(args.dir).dsn(), False


def cmd_export(args: argparse.Namespace) -> int:
    from workbench.notebook.bridge import run_sync
    from workbench.schema.codegen import CodegenError, check_options, generate
    from workbench.schema.reflect import ReflectError, reflect_dsn

    started = time.perf_counter()
    err = sys.stderr
    try:
        options = check_options(_options(args.options))
    except CodegenError as exc:
        print(f"error: {exc}", file=err)
        return 2
    schemas = args.schemas or ["public"]
    dsn, pooled = _connection(args)
    show = not args.quiet and err.isatty()

    def progress(step: str, done: int, total: int) -> None:
        if show:
            print(
                f"\rreflecting {schemas[0] if len(schemas) == 1 else 'schemas'}: {step} ({done}/{total})   ",
                end="",
                file=err,
                flush=True,
            )

    try:
        db = run_sync(reflect_dsn(dsn, schemas, args.tables, progress, pooled=pooled))
    except ReflectError as exc:
        print(f"\nerror: {exc}" if show else f"error: {exc}", file=err)
        return 2
    except OSError as exc:
        print(
            f"error: cannot connect to the database: {exc}. Check --db-url / SUPABASE_DB_URL, or start the "
            "local stand-in with `workbench local start`.",
            file=err,
        )
        return 2
    if show:
        print("\r" + " " * 60 + "\r", end="", file=err)
    command = "workbench models export " + " ".join(_command_args(args, options))
    code = generate(db, options, external=args.external, layout=args.layout, command=command.strip())
    if args.out is None:
        sys.stdout.write(code.text)
    else:
        try:
            written = code.write(args.out)
        except (CodegenError, OSError) as exc:
            print(f"error: {exc}", file=err)
            return 2
        if not args.quiet:
            size = sum(p.stat().st_size for p in written)
            tables = sum(len(s.tables) for s in db.schemas)
            where = written[0] if len(written) == 1 else written[0].parent
            print(
                f"wrote {tables} tables/views of {', '.join(schemas)} ({size:,} bytes) to {where} "
                f"in {time.perf_counter() - started:.2f} s",
                file=err,
            )
    for note in code.notes:
        print(f"note: {note}", file=err)
    if args.check:
        return _check(args, dsn, schemas, options)
    return 0


def _check(args: argparse.Namespace, dsn: str, schemas: list[str], options: frozenset[str]) -> int:
    """The check action: build into a throwaway database, diff against the source, print the report."""
    from workbench.notebook.bridge import run_sync
    from workbench.schema.roundtrip import check

    report = run_sync(
        check(
            dsn,
            schemas,
            server_dsn=args.check_server,
            tables=args.tables,
            options=sorted(options),
            external=args.external,
            layout=args.layout,
        )
    )
    print(f"check: {report.report()}", file=sys.stderr)
    return 0 if report.ok else 1


def _command_args(args: argparse.Namespace, options: frozenset[str]) -> list[str]:
    out: list[str] = []
    for schema in args.schemas or []:
        out += ["--schema", schema]
    if args.tables:
        out += ["--tables", *args.tables]
    if options:
        out += ["--options", ",".join(sorted(options))]
    if args.external != "standin":
        out += ["--external", args.external]
    if args.layout != "file":
        out += ["--layout", args.layout]
    return out
