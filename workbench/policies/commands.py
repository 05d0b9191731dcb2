"""The ``%sbpolicies`` / ``%sbadvise`` commands as plain code: option parsing and the async calls they drive.

The magics, the widgets, the CLI and a plain call share these, so a notebook line, a terminal command and
a test run the same path. One parser class turns argparse's print-and-exit into a
:class:`~workbench.policies.model.PolicyMatrixError` naming the fix.
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NoReturn

from workbench.policies.advisors import LEVELS, LINTS, Lint, advisors
from workbench.policies.model import OPERATIONS, PolicyMatrix, PolicyMatrixError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from workbench.policies.initplan import InitplanMeasurement

__all__ = [
    "DEFAULT_ROLES",
    "DEFAULT_USERS",
    "AdviseOptions",
    "CommandParser",
    "MatrixOptions",
    "advise",
    "make_advise_parser",
    "make_matrix_parser",
    "matrix_for",
    "parse_advise_options",
    "parse_matrix_options",
]

DEFAULT_ROLES = ("anon", "service_role")
DEFAULT_USERS = 3


class CommandParser(argparse.ArgumentParser):
    """argparse that raises :class:`PolicyMatrixError` (with the usage) instead of printing and exiting."""

    def error(self, message: str) -> NoReturn:
        raise PolicyMatrixError(f"{self.prog}: {message}.\n{self.format_usage().strip()}")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        raise PolicyMatrixError(message or self.format_usage())


def _split(prog: str, line: str) -> list[str]:
    """Shell-like words, so JSON claims in quotes survive."""
    try:
        return shlex.split(line)
    except ValueError as exc:
        raise PolicyMatrixError(f"{prog}: {exc} (check the quotes).") from None


# -- %sbpolicies ---------------------------------------------------------------------------------------
MATRIX_EXAMPLES = """examples:
  %sbpolicies
  %sbpolicies --as alice@example.com bob@example.com --tables tasks projects
  %sbpolicies --as 'bob@example.com+{"user_role": "admin"}' --roles anon --ops select insert
  %sbpolicies --tables tasks --export tests/test_policies.py
  %sbpolicies --migration supabase/migrations/20260101_teams.sql"""


def make_matrix_parser(prog: str = "%sbpolicies") -> CommandParser:
    parser = CommandParser(
        prog=prog,
        add_help=False,
        description="What each identity may do to each table, really tried in a transaction that is rolled back.",
        epilog=MATRIX_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--as", dest="users", nargs="+", action="extend", metavar="USER",
                        help="users of auth.users (email or uuid), each optionally +{json claims}; default: the first "
                        f"{DEFAULT_USERS}")  # fmt: skip
    parser.add_argument("--roles", nargs="*", default=None, metavar="ROLE",
                        help=f"role identities; default: {' '.join(DEFAULT_ROLES)} (--roles alone: none)")  # fmt: skip
    parser.add_argument("--tables", nargs="+", action="extend", metavar="TABLE",
                        help="tables as schema.table or a table of public; default: every table of public")  # fmt: skip
    parser.add_argument("--ops", nargs="+", choices=OPERATIONS, metavar="OP",
                        help=f"operations among {', '.join(OPERATIONS)}; default: all")  # fmt: skip
    parser.add_argument("--export", metavar="PATH", help="also write the matrix as a pytest file")
    parser.add_argument("--migration", metavar="PATH", help="the matrix before / after this migration (.sql file "
                        "or folder), rolled back, with the changed cells highlighted")  # fmt: skip
    parser.add_argument("--timeout-ms", type=int, default=5000, help="statement timeout of each probe (with "
                        "--migration, also the longest a migration statement waits for a lock)")  # fmt: skip
    parser.add_argument("-h", "--help", action="store_true", help="show this help")
    return parser


@dataclass
class MatrixOptions:
    users: list[str] | None = None
    roles: list[str] = field(default_factory=lambda: list(DEFAULT_ROLES))
    tables: list[str] | None = None
    operations: list[str] = field(default_factory=lambda: list(OPERATIONS))
    export: str | None = None
    migration: str | None = None
    timeout_ms: int = 5000
    help: bool = False


_MAX_TIMEOUT_MS = 2**31 - 1  # statement_timeout / lock_timeout are int4 milliseconds


def parse_matrix_options(line: str, prog: str = "%sbpolicies") -> MatrixOptions:
    """Parse a ``%sbpolicies`` line; unknown options and bad values raise :class:`PolicyMatrixError`."""
    args = make_matrix_parser(prog).parse_args(_split(prog, line))
    if not 0 < args.timeout_ms <= _MAX_TIMEOUT_MS:
        raise PolicyMatrixError(
            f"{prog}: --timeout-ms must be a positive number of milliseconds, at most {_MAX_TIMEOUT_MS} "
            "(PostgreSQL's limit for statement_timeout and lock_timeout)."
        )
    return MatrixOptions(
        users=args.users,
        roles=list(DEFAULT_ROLES) if args.roles is None else args.roles,
        tables=args.tables,
        operations=args.ops or list(OPERATIONS),
        export=args.export,
        migration=args.migration,
        timeout_ms=args.timeout_ms,
        help=args.help,
    )


async def matrix_for(
    engine: AsyncEngine, options: MatrixOptions, *, issuer: str = "http://127.0.0.1/auth/v1"
) -> PolicyMatrix:
    """Resolve the identities (default: the first users of ``auth.users``) and build the matrix."""
    from workbench.core.identity import find_users
    from workbench.policies.matrix import build_matrix, resolve_identities

    async with engine.connect() as sa_conn:
        raw = (await sa_conn.get_raw_connection()).driver_connection
        assert raw is not None
        try:
            users: Sequence[str] | None = options.users
            if users is None:
                users = [str(u["email"] or u["id"]) for u in await find_users(raw, "", DEFAULT_USERS)]
            identities = await resolve_identities(raw, users, options.roles, issuer=issuer)
            return await build_matrix(
                raw, identities, options.tables, options.operations, statement_timeout_ms=options.timeout_ms
            )
        finally:
            await sa_conn.rollback()


# -- %sbadvise -----------------------------------------------------------------------------------------
def make_advise_parser(prog: str = "%sbadvise") -> CommandParser:
    parser = CommandParser(
        prog=prog,
        add_help=False,
        description="Supabase's database lints against the connected database; fixes are shown, never applied.",
    )
    parser.add_argument("--lints", nargs="+", choices=list(LINTS), metavar="LINT", help=f"among {', '.join(LINTS)}")
    parser.add_argument(
        "--schemas", nargs="+", metavar="SCHEMA", help="exposed schemas (default: pgrst.db_schemas or public)"
    )
    parser.add_argument("--level", nargs="+", choices=[lv.lower() for lv in LEVELS] + list(LEVELS), metavar="LEVEL",
                        help="only these levels: error warn info")  # fmt: skip
    parser.add_argument(
        "--measure",
        action="store_true",
        help="also measure auth_rls_initplan: EXPLAIN ANALYZE on a scratch table (rolled back)",
    )
    parser.add_argument("--rows", type=int, default=100_000, help="rows of the measurement table")
    parser.add_argument("-h", "--help", action="store_true", help="show this help")
    return parser


@dataclass
class AdviseOptions:
    lints: list[str] | None = None
    schemas: list[str] | None = None
    levels: list[str] | None = None
    measure: bool = False
    rows: int = 100_000
    help: bool = False


def parse_advise_options(line: str, prog: str = "%sbadvise") -> AdviseOptions:
    """Parse a ``%sbadvise`` line; unknown options and bad values raise :class:`PolicyMatrixError`."""
    args = make_advise_parser(prog).parse_args(_split(prog, line))
    if args.rows < 1:
        raise PolicyMatrixError(f"{prog}: --rows must be at least 1.")
    return AdviseOptions(args.lints, args.schemas, args.level, args.measure, args.rows, args.help)


async def advise(engine: AsyncEngine, options: AdviseOptions) -> tuple[list[Lint], InitplanMeasurement | None]:
    """The lints, and the ``auth_rls_initplan`` measurement when ``options.measure``."""
    from workbench.policies.initplan import measure_initplan

    found = await advisors(engine, lints=options.lints, schemas=options.schemas, levels=options.levels)
    measurement = None
    if options.measure:
        async with engine.connect() as sa_conn:
            raw = (await sa_conn.get_raw_connection()).driver_connection
            assert raw is not None
            try:
                measurement = await measure_initplan(raw, rows=options.rows)
            finally:
                await sa_conn.rollback()
    return found, measurement
