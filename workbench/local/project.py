"""A Supabase CLI project folder in the stand-in: ``supabase/migrations`` in order, then the seed.

What ``supabase start`` / ``supabase db reset`` do with a project folder, reproduced for the local stand-in:

- migrations are the files ``supabase/migrations/<digits>_<name>.sql``, applied in the order of their
  numeric version (the CLI's pattern ``^([0-9]+)_(.*)\\.sql$``; other files are skipped with a warning);
- each file runs as ``postgres`` in its own transaction and is recorded in
  ``supabase_migrations.schema_migrations (version, statements, name)`` like the CLI records it, so a
  second load applies only the files that are new;
- the seed (``supabase/seed.sql``, or ``[db.seed] sql_paths`` of ``supabase/config.toml``: globs relative
  to ``supabase/``, in the order listed, each glob's matches sorted, duplicates once) runs after the
  migrations, only when the project is loaded into a database for the first time (``reset`` re-seeds).

A migration is the project OWNER's trusted code, not a cell run as an impersonated identity: its text goes
to PostgreSQL unchanged, with the simple protocol in one message, exactly as ``psql -f`` or the CLI would
run it (dollar-quoted bodies, ``do`` blocks and several statements per file work as written). When it
fails, the failing statement and its line are found from PostgreSQL's error position or, for errors that
have none (a duplicate table, a failed check), by re-running the file statement by statement inside a
transaction that is always rolled back.
"""

from __future__ import annotations

import glob
import re
import time
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.core.exceptions import WorkbenchUserError

if TYPE_CHECKING:
    from workbench.local.standin import LocalStandIn

__all__ = [
    "LoadEvent",
    "LoadReport",
    "Migration",
    "MigrationFailed",
    "ProjectError",
    "ProjectFolder",
    "aload_project",
    "find_project",
    "load_project",
    "reset_project",
]

MIGRATION_FILE = re.compile(r"^([0-9]+)_(.*)\.sql$")  # the Supabase CLI's migrateFilePattern
_OLD_INIT = re.compile(r"([0-9]{14})_init\.sql")  # the CLI skips a first "<ts>_init.sql" older than this:
_OLD_INIT_BEFORE = 20211209000000
# Schemas that belong to Supabase or PostgreSQL, never to the user (used to spot a database that already
# holds someone else's tables before a project is loaded into it).
SUPABASE_SCHEMAS = (
    "auth",
    "storage",
    "realtime",
    "extensions",
    "graphql",
    "graphql_public",
    "vault",
    "pgsodium",
    "pgsodium_masks",
    "net",
    "supabase_functions",
    "supabase_migrations",
    "cron",
    "pgbouncer",
    "information_schema",
)
TRACKING_SQL = """
create schema if not exists supabase_migrations;
create table if not exists supabase_migrations.schema_migrations (version text not null primary key);
alter table supabase_migrations.schema_migrations add column if not exists statements text[];
alter table supabase_migrations.schema_migrations add column if not exists name text;
"""


class ProjectError(WorkbenchUserError, ValueError):
    """The folder is not a Supabase project folder, or its configuration is wrong; the message says why."""


@dataclass(frozen=True)
class Migration:
    """One migration file: its version (the numeric prefix) and name, as the CLI records them."""

    version: str
    name: str
    path: Path

    @property
    def filename(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class ProjectFolder:
    """What a project folder holds: migrations in the order they apply, the seed files, the warnings."""

    supabase_dir: Path
    migrations: tuple[Migration, ...]
    seed_files: tuple[Path, ...]
    seed_enabled: bool = True
    warnings: tuple[str, ...] = ()

    @property
    def root(self) -> Path:
        return self.supabase_dir.parent


@dataclass(frozen=True)
class LoadEvent:
    """A progress step: ``state`` is ``applying`` (before), then ``ok`` or ``failed`` (after)."""

    kind: str  # "migration" or "seed"
    filename: str
    index: int
    total: int
    state: str
    elapsed_ms: float = 0.0

    def describe(self) -> str:
        """``applying 20240101000000_init.sql (3/12) ... ok 45 ms`` (the line the CLI prints)."""
        head = f"{'seeding' if self.kind == 'seed' else 'applying'} {self.filename} ({self.index}/{self.total})"
        if self.state == "applying":
            return f"{head} ..."
        return f"{head} ... {self.state} {self.elapsed_ms:.0f} ms"


Progress = Callable[[LoadEvent], None]


@dataclass
class LoadReport:
    """What a load did: files applied now, files already applied before, seed files run, warnings."""

    project: Path
    applied: list[str] = field(default_factory=list)
    already_applied: list[str] = field(default_factory=list)
    seeded: list[str] = field(default_factory=list)
    seed_skipped_reason: str | None = None
    warnings: list[str] = field(default_factory=list)
    elapsed_ms: float = 0.0

    def describe(self) -> str:
        lines = [*(f"warning: {w}" for w in self.warnings)]
        lines.append(
            f"{len(self.applied)} migration(s) applied, {len(self.already_applied)} already applied"
            f"{', seed: ' + ', '.join(self.seeded) if self.seeded else ''} ({self.elapsed_ms:.0f} ms)"
        )
        if self.seed_skipped_reason:
            lines.append(f"seed not run: {self.seed_skipped_reason}")
        return "\n".join(lines)


class MigrationFailed(WorkbenchUserError, RuntimeError):
    """A migration or seed file failed: which file, statement and line, PostgreSQL's message and hint."""

    def __init__(
        self,
        *,
        filename: str,
        line: int | None,
        statement: str | None,
        message: str,
        hint: str | None,
        sqlstate: str | None,
        applied_before: Sequence[str],
        kind: str = "migration",
    ) -> None:
        self.filename = filename
        self.line = line
        self.statement = statement
        self.pg_message = message
        self.hint = hint
        self.sqlstate = sqlstate
        self.applied_before = list(applied_before)
        where = f"{filename}, line {line}" if line is not None else filename
        parts = [f"{kind} {where} failed: {message}" + (f" (SQLSTATE {sqlstate})" if sqlstate else "")]
        if statement:
            parts.append("statement:\n" + _first_lines(statement))
        if hint:
            parts.append(f"hint: {hint}")
        kept = (
            f"the {len(self.applied_before)} file(s) before it stay applied"
            if self.applied_before
            else "no file of this load was applied"
        )
        parts.append(
            f"{filename} was rolled back; {kept}; the stand-in (database, Auth, Storage) is usable. "
            f"Fix: correct {filename} and run the same command again (only files not yet applied run), or "
            "`workbench local reset --project PATH` to rebuild from scratch."
        )
        super().__init__("\n".join(parts))


# -- the folder -----------------------------------------------------------------------------------------
def find_project(path: Path | str) -> ProjectFolder:
    """Read a project folder (the project root or its ``supabase/`` folder) without touching a database."""
    given = Path(path).expanduser()
    if not given.is_dir():
        raise ProjectError(
            f"{given} is not a folder. Fix: pass the project root (the folder holding supabase/) or its "
            "supabase/ folder."
        )
    candidates = [given / "supabase", given] if given.name != "supabase" else [given]
    supabase_dir = next((c for c in candidates if (c / "migrations").is_dir()), None)
    if supabase_dir is None:
        raise ProjectError(
            f"{given} is not a Supabase project folder: expected {given / 'supabase' / 'migrations'} (or "
            f"{given / 'migrations'} when given the supabase/ folder itself). Fix: pass the folder where "
            "`supabase init` ran, or create supabase/migrations/ with files named <timestamp>_<name>.sql."
        )
    supabase_dir = supabase_dir.resolve()
    warnings: list[str] = []
    migrations = _migrations(supabase_dir / "migrations", warnings)
    enabled, seeds = _seed_files(supabase_dir, warnings)
    return ProjectFolder(supabase_dir, tuple(migrations), tuple(seeds), enabled, tuple(warnings))


def _migrations(folder: Path, warnings: list[str]) -> list[Migration]:
    found: list[Migration] = []
    for i, entry in enumerate(sorted(folder.iterdir(), key=lambda p: p.name)):
        if entry.is_dir():
            continue
        old_init = _OLD_INIT.search(entry.name)
        if i == 0 and old_init and int(old_init.group(1)) < _OLD_INIT_BEFORE:
            warnings.append(f"skipping migration {entry.name} (an old `supabase init` file; the CLI skips it too)")
            continue
        match = MIGRATION_FILE.match(entry.name)
        if match is None:
            warnings.append(f'skipping migration {entry.name} (file name must match pattern "<timestamp>_name.sql")')
            continue
        found.append(Migration(match.group(1), match.group(2), entry.resolve()))
    found.sort(key=lambda m: (int(m.version), m.filename))
    seen: dict[str, str] = {}
    for m in found:
        if m.version in seen:
            raise ProjectError(
                f"two migrations share the version {m.version}: {seen[m.version]} and {m.filename}. Fix: rename "
                "one (`supabase migration new` makes a fresh timestamp); the version is the tracking key."
            )
        seen[m.version] = m.filename
    return found


def _seed_files(supabase_dir: Path, warnings: list[str]) -> tuple[bool, list[Path]]:
    """``[db.seed]`` of config.toml (``enabled``, ``sql_paths``) or the default ``supabase/seed.sql``."""
    config_path = supabase_dir / "config.toml"
    enabled, patterns = True, ["./seed.sql"]
    if config_path.is_file():
        try:
            config = tomllib.loads(config_path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ProjectError(f"{config_path} is not valid TOML ({exc}). Fix the file or remove it.") from None
        seed = config.get("db", {}).get("seed", {})
        if not isinstance(seed, dict):
            raise ProjectError(f"{config_path}: [db.seed] must be a table. Fix: see `supabase init`'s config.toml.")
        enabled = bool(seed.get("enabled", True))
        if "sql_paths" in seed:
            paths = seed["sql_paths"]
            if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
                raise ProjectError(
                    f"{config_path}: [db.seed] sql_paths must be a list of paths or globs relative to "
                    f"supabase/, e.g. sql_paths = ['./seed.sql', './seeds/*.sql']; got {paths!r}."
                )
            patterns = list(paths)
    explicit = patterns != ["./seed.sql"]
    chosen: list[Path] = []
    for pattern in patterns:
        matches = sorted(
            Path(p).resolve() for p in glob.glob(str(supabase_dir / pattern), recursive=True) if Path(p).is_file()
        )
        if not matches and explicit:
            warnings.append(f"no seed file matches {pattern!r} (relative to {supabase_dir})")
        chosen += [m for m in matches if m not in chosen]  # a file matched by two patterns runs once
    return enabled, chosen


# -- applying -------------------------------------------------------------------------------------------
async def aload_project(
    path: Path | str | ProjectFolder,
    dsn: str,
    *,
    seed: bool | None = None,
    progress: Progress | None = None,
    allow_existing_tables: bool = False,
) -> LoadReport:
    """Apply the project's pending migrations to the database at ``dsn`` (log in as ``postgres``), then
    the seed when the project was never loaded there before (``seed=True/False`` forces it).

    Refuses a database that already holds user tables but no migration history (the demo app, say), so a
    project's schema is never mixed with other tables; ``allow_existing_tables=True`` loads anyway.
    """
    import asyncpg

    project = path if isinstance(path, ProjectFolder) else find_project(path)
    report = LoadReport(project=project.root, warnings=list(project.warnings))
    started = time.perf_counter()
    conn = await asyncpg.connect(dsn)
    try:
        first_load = not await conn.fetchval("select to_regclass('supabase_migrations.schema_migrations') is not null")
        if first_load and not allow_existing_tables:
            await _refuse_foreign_tables(conn)
        await conn.execute(TRACKING_SQL)
        done = {r["version"] for r in await conn.fetch("select version from supabase_migrations.schema_migrations")}
        local_versions = {m.version for m in project.migrations}
        unknown = sorted(done - local_versions)
        if unknown:
            report.warnings.append(
                f"the database has applied versions with no file in {project.supabase_dir / 'migrations'}: "
                + ", ".join(unknown)
            )
        pending = [m for m in project.migrations if m.version not in done]
        report.already_applied = [m.filename for m in project.migrations if m.version in done]
        for i, migration in enumerate(pending, 1):
            step = LoadEvent("migration", migration.filename, i, len(pending), "applying")
            await _apply_file(conn, migration.path.read_text(), step, progress, report.applied, migration)
            report.applied.append(migration.filename)
        run_seed = first_load if seed is None else seed
        if not project.seed_enabled and seed is None:
            run_seed = False
            report.seed_skipped_reason = "[db.seed] enabled = false in config.toml"
        elif not run_seed:
            report.seed_skipped_reason = "the project was loaded here before (seed runs on a first load and on reset)"
        if run_seed:
            for i, seed_file in enumerate(project.seed_files, 1):
                label = _label(seed_file, project.supabase_dir)
                step = LoadEvent("seed", label, i, len(project.seed_files), "applying")
                await _apply_file(conn, seed_file.read_text(), step, progress, report.applied, None)
                report.seeded.append(label)
    finally:
        await conn.close()
    report.elapsed_ms = (time.perf_counter() - started) * 1000
    return report


def _label(path: Path, base: Path) -> str:
    return str(path.relative_to(base)) if path.is_relative_to(base) else str(path)


_PROJECT_FIX = (
    "Fix: `workbench local reset --project PATH` (rebuilds the database from the project only), or use another "
    "folder: `workbench local start --dir NEW_FOLDER --project PATH`."
)


async def _refuse_foreign_tables(conn: Any, what: str = "a project", fix: str = _PROJECT_FIX) -> None:
    rows = await conn.fetch(
        """select n.nspname || '.' || c.relname as name from pg_class c join pg_namespace n on n.oid = c.relnamespace
           where c.relkind in ('r', 'p') and n.nspname <> all($1::text[]) and n.nspname not like 'pg\\_%'
           order by 1 limit 5""",
        list(SUPABASE_SCHEMAS),
    )
    if rows:
        names = ", ".join(r["name"] for r in rows)
        raise ProjectError(
            f"this database already has tables that no project migration created ({names}, ...): the demo app "
            f"or earlier work. Loading {what} on top would mix the two. {fix}"
        )


async def _apply_file(
    conn: Any,
    sql: str,
    step: LoadEvent,
    progress: Progress | None,
    applied_before: Sequence[str],
    migration: Migration | None,
) -> None:
    """Run one file in its own transaction (plus its tracking row for a migration); on failure roll it
    back, locate the statement and raise :class:`MigrationFailed`."""
    import dataclasses

    import asyncpg

    if progress is not None:
        progress(step)
    t0 = time.perf_counter()
    await conn.execute("begin")
    try:
        await conn.execute(sql)  # simple protocol, the whole file in one message: the owner's own migration
        if migration is not None:
            await conn.execute(
                "insert into supabase_migrations.schema_migrations (version, name, statements) values ($1, $2, $3)",
                migration.version,
                migration.name,
                _statements(sql),
            )
        await conn.execute("commit")
    except asyncpg.PostgresError as exc:
        await conn.execute("rollback")
        if progress is not None:
            progress(dataclasses.replace(step, state="failed", elapsed_ms=(time.perf_counter() - t0) * 1000))
        line, statement = await _locate(conn, sql, exc)
        raise MigrationFailed(
            filename=step.filename,
            line=line,
            statement=statement,
            message=str(exc.args[0]) if exc.args else exc.__class__.__name__,
            hint=getattr(exc, "hint", None),
            sqlstate=getattr(exc, "sqlstate", None),
            applied_before=applied_before,
            kind=step.kind,
        ) from None
    if progress is not None:
        progress(dataclasses.replace(step, state="ok", elapsed_ms=(time.perf_counter() - t0) * 1000))


def _statements(sql: str) -> list[str]:
    from workbench.core.sqltext import SQLSyntaxError, split_statements

    try:
        return split_statements(sql)
    except SQLSyntaxError:
        return [sql]


def _spans(sql: str) -> list[tuple[int, str]]:
    """Each statement with the character offset where it starts in ``sql``."""
    spans: list[tuple[int, str]] = []
    cursor = 0
    for statement in _statements(sql):
        at = sql.find(statement, cursor)
        if at < 0:
            return spans
        spans.append((at, statement))
        cursor = at + len(statement)
    return spans


def _line_of(sql: str, offset: int) -> int:
    return sql.count("\n", 0, offset) + 1


def _first_significant(statement: str) -> int:
    """Offset of the first line of a statement that is not a comment or blank."""
    offset = 0
    for line in statement.splitlines(keepends=True):
        if line.strip() and not line.strip().startswith("--"):
            return offset
        offset += len(line)
    return 0


_TRANSACTION_CONTROL = {"begin", "commit", "rollback", "end", "start", "savepoint", "release", "abort"}


async def _locate(conn: Any, sql: str, exc: BaseException) -> tuple[int | None, str | None]:
    """The line and statement of the failure: PostgreSQL's ``position`` when the error has one, else the
    first statement that fails when the file is re-run one statement at a time in a rolled-back
    transaction (statements that end or start transactions themselves are not re-run)."""
    import asyncpg

    spans = _spans(sql)
    position = getattr(exc, "position", None)
    if position:
        offset = int(position) - 1
        statement = next((s for at, s in reversed(spans) if at <= offset), None)
        return _line_of(sql, offset), statement
    if len(spans) <= 1:
        if spans:
            at, statement = spans[0]
            return _line_of(sql, at + _first_significant(statement)), statement
        return None, None
    await conn.execute("begin")
    try:
        for at, statement in spans:
            words = statement.split(None, 1)
            if words and words[0].lower().rstrip(";") in _TRANSACTION_CONTROL:
                continue
            try:
                await conn.execute(statement)
            except asyncpg.PostgresError:
                return _line_of(sql, at + _first_significant(statement)), statement
    finally:
        await conn.execute("rollback")
    return None, "(every statement ran alone: the failure came at COMMIT, e.g. a deferred constraint)"


def _first_lines(statement: str, lines: int = 4) -> str:
    parts = statement.strip().splitlines()
    shown = "\n".join(f"    {p}" for p in parts[:lines])
    return shown + (f"\n    ... ({len(parts) - lines} more lines)" if len(parts) > lines else "")


# -- the stand-in ---------------------------------------------------------------------------------------
def load_project(
    path: Path | str,
    standin: LocalStandIn | None = None,
    *,
    dsn: str | None = None,
    seed: bool | None = None,
    progress: Progress | None = None,
    allow_existing_tables: bool = False,
) -> LoadReport:
    """Sync twin of :func:`aload_project`: load into ``dsn``, or into the stand-in (started without the demo
    app when new; default folder when none is given)."""
    from workbench.notebook.bridge import run_sync

    project = find_project(path)  # bad input fails before anything starts
    if dsn is None:
        from workbench.local.standin import LocalStandIn

        standin = standin or LocalStandIn()
        status = standin.status()
        if not (status.db_running and status.api_running):
            standin.start(demo=False)
        dsn = standin.dsn()
    return run_sync(
        aload_project(project, dsn, seed=seed, progress=progress, allow_existing_tables=allow_existing_tables)
    )


def reset_project(path: Path | str, standin: LocalStandIn, *, progress: Progress | None = None) -> LoadReport:
    """What ``supabase db reset`` does: drop and recreate the stand-in's database, bootstrap Supabase's
    schemas (auth, storage, roles, grants) again, apply every migration and the seed. Keys, ports, the
    Auth/Storage API and files on disk are kept; users and rows in the old database are gone (as on
    Supabase). Refuses a folder that is not a stand-in's."""
    from workbench.local.standin import StandInError
    from workbench.notebook.bridge import run_sync

    project = find_project(path)
    if not standin.is_standin_folder() and standin.data_dir.exists() and any(standin.data_dir.iterdir()):
        raise StandInError(
            f"{standin.data_dir} is not a local stand-in's folder, so `reset` will not touch it. Fix: pass the "
            "folder `workbench local start` created (default ~/.workbench/local)."
        )
    status = standin.status()
    if not status.db_running:
        standin.start(demo=False, api=False)
    standin._stop_api()  # its pooled connections die with the database
    run_sync(_recreate_database(standin))
    standin._bootstrap(demo=False)
    standin._apply_roles(standin.keys())
    standin._start_api()
    return run_sync(aload_project(project, standin.dsn(), seed=None, progress=progress))


async def _recreate_database(standin: LocalStandIn, name: str = "postgres") -> None:
    """Drop and create the database as the bootstrap superuser, from a maintenance database."""
    import asyncpg

    from workbench.core.sqlnames import quote_ident

    conn = await asyncpg.connect(standin.dsn(role="supabase_admin", database="template1"))
    try:
        owner = await conn.fetchval("select pg_get_userbyid(datdba) from pg_database where datname = $1", name)
        await conn.execute(f"drop database if exists {quote_ident(name)} with (force)")
        await conn.execute(f"create database {quote_ident(name)} owner {quote_ident(owner or 'postgres')}")
    finally:
        await conn.close()
