"""``workbench local pull``: a real project's schema (and optionally sample rows) copied into the stand-in.

So a user can impersonate, run the policy matrix and the advisors on their real schema without touching
production. What is copied:

- the user's schemas (everything but Supabase's and PostgreSQL's own) with their tables, types, functions,
  triggers, views, policies, grants and comments, from ``pg_dump --schema-only --no-owner`` limited to those
  schemas (pg_dump knows the dependency order; objects end up owned by ``postgres`` as on Supabase). The
  output is adjusted: psql meta-commands (``\\restrict`` of PostgreSQL 18's pg_dump) and settings the target
  server does not know are dropped, ``create extension`` is done beforehand, grants to roles the stand-in
  does not have are left out (and counted);
- the extensions the source uses (``create extension if not exists``; one the stand-in's server does not
  ship is reported, and only objects that use it fail);
- storage buckets (rows of ``storage.buckets``), the policies on ``storage.objects`` / ``storage.buckets``
  and the user's triggers on ``auth.users`` and ``storage.objects`` (from the catalogs);
- with ``rows=N``, up to N rows per table, loaded in foreign-key order with the tables' own triggers off;
  rows that violate a constraint are skipped and counted. ``auth.users`` is never read: rows that
  reference it get placeholder users with the same ids, no password and ``user-<n>@example.invalid``.

The source password reaches pg_dump through the ``PGPASSWORD`` environment variable only (never its
command line), and no error, log line or progress line shows it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.core.exceptions import WorkbenchUserError

if TYPE_CHECKING:
    from workbench.core.settings import Settings
    from workbench.local.standin import LocalStandIn

__all__ = ["PullError", "PullReport", "apull", "pull_into_standin", "user_schemas"]

# Schemas that are Supabase's or PostgreSQL's own: never pulled (shell patterns).
NOT_USER_SCHEMAS = (
    "auth",
    "storage",
    "realtime",
    "_realtime",
    "extensions",
    "graphql*",
    "vault",
    "pgsodium*",
    "net",
    "supabase_functions",
    "supabase_migrations",
    "cron",
    "pgbouncer",
    "pgtle",
    "_analytics",
    "pg_*",
    "information_schema",
)
Progress = Callable[[str], None]


class PullError(WorkbenchUserError, RuntimeError):
    """The pull could not be done; the message says why and what to do (never a password)."""


@dataclass
class PullReport:
    """What a pull copied."""

    schemas: list[str] = field(default_factory=list)
    extensions: list[str] = field(default_factory=list)
    missing_extensions: list[str] = field(default_factory=list)
    tables: int = 0
    functions: int = 0
    policies: int = 0
    triggers: int = 0
    buckets: int = 0
    storage_policies: int = 0
    dropped_grants: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    skipped_rows: dict[str, int] = field(default_factory=dict)
    placeholder_users: int = 0
    warnings: list[str] = field(default_factory=list)
    elapsed_ms: float = 0.0

    def describe(self) -> str:
        lines = [f"warning: {w}" for w in self.warnings]
        lines.append(
            f"pulled schemas {', '.join(self.schemas) or '-'}: {self.tables} tables, {self.functions} functions, "
            f"{self.policies} policies, {self.triggers} triggers; extensions {', '.join(self.extensions) or '-'}; "
            f"{self.buckets} buckets, {self.storage_policies} storage policies ({self.elapsed_ms:.0f} ms)"
        )
        if self.rows or self.skipped_rows:
            lines.append(
                f"sample rows: {sum(self.rows.values())} loaded, {sum(self.skipped_rows.values())} skipped "
                "(they broke a constraint, e.g. a parent row not in the sample)"
            )
        if self.placeholder_users:
            lines.append(
                f"{self.placeholder_users} placeholder auth.users rows (same ids, no password, "
                "emails user-<n>@example.invalid): no user data was copied from auth.users"
            )
        return "\n".join(lines)


@dataclass(frozen=True)
class _Source:
    """How to reach the source: asyncpg's arguments and the libpq environment for pg_dump (secret)."""

    dsn: str = field(repr=False)
    ssl: Any = field(repr=False)
    env: dict[str, str] = field(repr=False)
    where: str = ""


def _source(settings: Settings) -> _Source:
    """The source from settings (``--db-url`` or ``SUPABASE_DB_URL`` etc.), TLS as configured."""
    if settings.is_local:
        raise PullError(
            "no source project to pull from: pass --db-url postgresql://... (the direct or session-pooler "
            "connection string from the dashboard's Connect dialog) or set SUPABASE_DB_URL / "
            "SUPABASE_PROJECT_REF + SUPABASE_DB_PASSWORD."
        )
    args = settings.asyncpg_connect_args()
    url = settings.database_url()
    tls = settings.tls()
    env = {
        "PGHOST": url.host or "",
        "PGPORT": str(url.port or 5432),
        "PGUSER": url.username or "postgres",
        "PGDATABASE": url.database or "postgres",
        "PGPASSWORD": url.password or "",  # type: ignore[dict-item]
        "PGSSLMODE": tls.mode.value,
        "PGCONNECT_TIMEOUT": "20",
    }
    if tls.rootcert is not None:
        env["PGSSLROOTCERT"] = str(tls.rootcert)
    where = url.set(drivername="postgresql").render_as_string(hide_password=True)
    return _Source(dsn=args["dsn"], ssl=args["ssl"], env=env, where=where)


def _pg_dump() -> Path:
    """pg_dump from the stand-in's own PostgreSQL (the bin folder :mod:`workbench.local.postgres` uses)."""
    from workbench.local import postgres

    path = postgres._bin_dir() / "pg_dump"
    if not path.exists():
        found = shutil.which("pg_dump")
        if found is None:
            raise PullError(f"pg_dump not found in {path.parent} nor on PATH. Fix: reinstall the [local] extra.")
        return Path(found)
    return path


def user_schemas(names: list[str]) -> list[str]:
    import fnmatch

    return [n for n in names if not any(fnmatch.fnmatchcase(n, p) for p in NOT_USER_SCHEMAS)]


# -- the schema ------------------------------------------------------------------------------------------
def _dump(source: _Source, schemas: list[str]) -> str:
    cmd = [str(_pg_dump()), "--schema-only", "--no-owner", "--no-tablespaces", "--no-subscriptions"]
    for schema in schemas:
        cmd += ["--schema", schema]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")} | source.env
    try:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    except subprocess.TimeoutExpired:
        raise PullError(f"pg_dump of {source.where} did not finish in 300 s.") from None
    if done.returncode != 0:
        message = _scrub(done.stderr.strip(), source)
        fix = "Fix: check the URL, password and TLS settings (SUPABASE_DB_SSLMODE / SUPABASE_DB_SSLROOTCERT)."
        if "server version mismatch" in message:
            fix = (
                "Fix: the stand-in's pg_dump is older than the source server; pg_dump dumps only servers of its "
                "own major version or older (the stand-in on PostgreSQL 18 dumps every Supabase project)."
            )
        raise PullError(f"pg_dump of {source.where} failed: {message}\n{fix}")
    return done.stdout


def _scrub(text: str, source: _Source) -> str:
    password = source.env.get("PGPASSWORD")
    return text.replace(password, "***") if password else text


_SKIP_SETTINGS = re.compile(r"^SET\s+(transaction_timeout)\s*=", re.I)
_GRANT_ROLES = re.compile(
    r"\b(?:TO|FROM)\s+(.+?)(?:\s+WITH\s+GRANT\s+OPTION)?(?:\s+GRANTED\s+BY\s+\S+)?\s*$", re.I | re.S
)
_FOR_ROLE = re.compile(r"\bFOR\s+ROLE\s+(\S+)", re.I)


def adjust_dump(text: str, roles: set[str], publications: set[str] | None = None) -> tuple[str, int]:
    """The dump as the stand-in can run it, and how many statements were left out because they name roles
    (grants) or publications (``alter publication ... add table``) the stand-in does not have."""
    from workbench.core.sqltext import split_statements

    lines = [ln for ln in text.splitlines() if not ln.startswith("\\")]  # \restrict, \connect: psql only
    statements = split_statements("\n".join(lines))
    kept: list[str] = []
    dropped = 0
    for statement in statements:
        body = _without_leading_comments(statement)
        if not body:
            continue
        head = body.split(None, 2)
        first = " ".join(head[:2]).upper()
        if _SKIP_SETTINGS.match(body) or first == "CREATE EXTENSION" or body.upper().startswith("COMMENT ON EXTENSION"):
            continue  # extensions are created beforehand, and only where the server ships them
        if first == "CREATE SCHEMA" and "IF NOT EXISTS" not in body.upper():
            body = "CREATE SCHEMA IF NOT EXISTS " + body[len("CREATE SCHEMA ") :]
        if head[0].upper() in ("GRANT", "REVOKE") or first == "ALTER DEFAULT":
            named = _statement_roles(body)
            if named - roles:
                dropped += 1
                continue
        publication = head[2].split(None, 1)[0].strip('"') if first == "ALTER PUBLICATION" else None
        if publications is not None and publication is not None and publication not in publications:
            dropped += 1
            continue
        kept.append(body)
    return ";\n\n".join(kept) + (";\n" if kept else ""), dropped


def _without_leading_comments(statement: str) -> str:
    """The statement without the ``--`` comment lines pg_dump puts before it (its body is left alone)."""
    lines = statement.splitlines()
    while lines and (not lines[0].strip() or lines[0].lstrip().startswith("--")):
        lines.pop(0)
    return "\n".join(lines).strip()


def _statement_roles(body: str) -> set[str]:
    names: set[str] = set()
    match = _GRANT_ROLES.search(body)
    if match:
        for part in match.group(1).split(","):
            name = part.strip().strip('"')
            if name.upper() not in ("PUBLIC", "CURRENT_USER", "SESSION_USER", "CURRENT_ROLE"):
                names.add(name)
    for role in _FOR_ROLE.findall(body):
        names.add(role.strip('"'))
    return names


# -- the pull --------------------------------------------------------------------------------------------
async def apull(
    settings: Settings,
    target_dsn: str,
    *,
    rows: int = 0,
    progress: Progress | None = None,
    work_dir: Path | None = None,
) -> PullReport:
    """Pull the source project of ``settings`` into the database at ``target_dsn`` (as ``postgres``)."""
    import asyncio

    import asyncpg

    from workbench.local import project

    if rows < 0:
        raise PullError(f"--rows must be 0 or more, got {rows}.")
    say = progress or (lambda _line: None)
    started = time.perf_counter()
    source = _source(settings)
    report = PullReport()
    say(f"connecting to {source.where}")
    try:
        src = await asyncpg.connect(source.dsn, ssl=source.ssl, timeout=20, statement_cache_size=0)
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        raise PullError(
            f"cannot connect to {source.where}: {_scrub(str(exc), source)}. Fix: check the URL, password and TLS "
            "settings."
        ) from None
    dst = await asyncpg.connect(target_dsn)
    try:
        await project._refuse_foreign_tables(
            dst,
            "a pulled schema",
            "Fix: pull into a fresh stand-in (`workbench local pull --dir NEW_FOLDER ...`), or `workbench local reset "
            "--no-demo` first (that deletes this stand-in's data).",
        )
        names = [r["nspname"] for r in await src.fetch(_SCHEMAS_SQL)]
        report.schemas = user_schemas(names)
        say(f"schemas: {', '.join(report.schemas) or '(none)'}")
        await _extensions(src, dst, report, say)
        roles = {r["rolname"] for r in await dst.fetch("select rolname from pg_roles")}
        say("pg_dump --schema-only ...")
        dump = await asyncio.to_thread(_dump, source, report.schemas) if report.schemas else ""
        publications = {r["pubname"] for r in await dst.fetch("select pubname from pg_publication")}
        script, report.dropped_grants = adjust_dump(dump, roles, publications)
        if report.dropped_grants:
            report.warnings.append(
                f"{report.dropped_grants} grant(s) or publication membership(s) naming roles or publications the "
                "stand-in does not have were left out"
            )
        if work_dir is not None:
            (work_dir / "pull-schema.sql").write_text(script)
        say("applying the schema")
        step = project.LoadEvent("pull", "pull-schema.sql", 1, 1, "applying")
        try:
            await project._apply_file(dst, script, step, None, [], None)
        except project.MigrationFailed as exc:
            kept_at = f" ({work_dir / 'pull-schema.sql'})" if work_dir is not None else ""
            statement = f"\nstatement:\n{project._first_lines(exc.statement)}" if exc.statement else ""
            missing = (
                f"\nThe stand-in's server lacks these extensions of the source: {', '.join(report.missing_extensions)}."
                if report.missing_extensions
                else ""
            )
            raise PullError(
                f"the pulled schema failed to load at line {exc.line} of pull-schema.sql{kept_at}: {exc.pg_message}"
                f"{statement}{missing}\nNothing of the schema was kept (it runs in one transaction); the stand-in "
                "is usable. Fix: read that line; an object that needs a missing extension or role cannot load here."
            ) from None
        await dst.execute("reset all")  # pg_dump's session settings (search_path = '') end with the script
        counts = await dst.fetchrow(_COUNTS_SQL, report.schemas)
        report.tables, report.functions, report.policies, report.triggers = (
            counts["tables"],
            counts["functions"],
            counts["policies"],
            counts["triggers"],
        )
        await _storage(src, dst, report, say)
        if rows:
            await _rows(src, dst, report, rows, say)
        await _outside_triggers(src, dst, report, say)
    finally:
        await src.close()
        await dst.close()
    report.elapsed_ms = (time.perf_counter() - started) * 1000
    return report


_SCHEMAS_SQL = """
select n.nspname from pg_namespace n
where not exists (select 1 from pg_depend d where d.classid = 'pg_namespace'::regclass and d.objid = n.oid
                  and d.deptype = 'e')
order by 1
"""
_COUNTS_SQL = """
select
  (select count(*) from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where c.relkind in ('r', 'p') and n.nspname = any($1::text[]))::int as tables,
  (select count(*) from pg_proc p join pg_namespace n on n.oid = p.pronamespace
    where n.nspname = any($1::text[]))::int as functions,
  (select count(*) from pg_policies where schemaname = any($1::text[]))::int as policies,
  (select count(*) from pg_trigger t join pg_class c on c.oid = t.tgrelid join pg_namespace n on n.oid = c.relnamespace
    where not t.tgisinternal and n.nspname = any($1::text[]))::int as triggers
"""


async def _extensions(src: Any, dst: Any, report: PullReport, say: Progress) -> None:
    """``create extension if not exists`` for each extension of the source, in the same schema."""
    import asyncpg

    from workbench.core.sqlnames import quote_ident

    rows = await src.fetch(
        "select e.extname, n.nspname from pg_extension e join pg_namespace n on n.oid = e.extnamespace "
        "where e.extname <> 'plpgsql' order by 1"
    )
    available = {r["name"] for r in await dst.fetch("select name from pg_available_extensions")}
    for row in rows:
        name, schema = row["extname"], row["nspname"]
        installed = await dst.fetchval("select 1 from pg_extension where extname = $1", name)
        if installed:
            report.extensions.append(name)
            continue
        if name not in available:
            report.missing_extensions.append(name)
            continue
        try:
            await dst.execute(f"create schema if not exists {quote_ident(schema)}")
            await dst.execute(f"create extension if not exists {quote_ident(name)} with schema {quote_ident(schema)}")
            report.extensions.append(name)
        except asyncpg.PostgresError as exc:
            report.missing_extensions.append(name)
            report.warnings.append(f"extension {name}: {exc}")
    if report.missing_extensions:
        report.warnings.append(
            "extensions the source has but this stand-in's PostgreSQL does not ship: "
            + ", ".join(report.missing_extensions)
            + " (objects that use them will fail to load)"
        )
    say(f"extensions: {', '.join(report.extensions) or '-'}")


async def _storage(src: Any, dst: Any, report: PullReport, say: Progress) -> None:
    """Bucket rows and the policies on storage's tables (their definitions from the source catalog)."""
    has_storage = await src.fetchval("select to_regclass('storage.buckets') is not null")
    if not has_storage:
        return
    columns = {
        r["column_name"]
        for r in await dst.fetch(
            "select column_name from information_schema.columns where table_schema = 'storage' "
            "and table_name = 'buckets'"
        )
    }
    src_columns = {
        r["column_name"]
        for r in await src.fetch(
            "select column_name from information_schema.columns where table_schema = 'storage' "
            "and table_name = 'buckets'"
        )
    }
    wanted = [
        c for c in ("id", "name", "public", "file_size_limit", "allowed_mime_types") if c in columns & src_columns
    ]
    from workbench.core.sqlnames import quote_ident

    cols = ", ".join(quote_ident(c) for c in wanted)
    for bucket in await src.fetch(f"select {cols} from storage.buckets order by id"):
        params = ", ".join(f"${i}" for i in range(1, len(wanted) + 1))
        updates = ", ".join(f"{quote_ident(c)} = excluded.{quote_ident(c)}" for c in wanted if c != "id")
        await dst.execute(
            f"insert into storage.buckets ({cols}) values ({params}) on conflict (id) do update set {updates}",
            *[bucket[c] for c in wanted],
        )
        report.buckets += 1
    policies = await src.fetch(_POLICIES_SQL)
    for policy in policies:
        await dst.execute(f"drop policy if exists {quote_ident(policy['name'])} on {policy['tbl']}")
        await dst.execute(_policy_sql(policy))
        report.storage_policies += 1
    say(f"storage: {report.buckets} buckets, {report.storage_policies} policies")


_POLICIES_SQL = """
select p.polname as name, format('%I.%I', n.nspname, c.relname) as tbl, p.polpermissive as permissive,
       p.polcmd::text as cmd,
       coalesce((select array_agg(case when r = 0 then 'public' else quote_ident(pg_get_userbyid(r)) end)
                 from unnest(p.polroles) r), '{public}') as roles,
       pg_get_expr(p.polqual, p.polrelid) as using_expr, pg_get_expr(p.polwithcheck, p.polrelid) as check_expr
from pg_policy p join pg_class c on c.oid = p.polrelid join pg_namespace n on n.oid = c.relnamespace
where n.nspname = 'storage' and c.relname in ('objects', 'buckets')
order by c.relname, p.polname
"""
_COMMANDS = {"r": "select", "a": "insert", "w": "update", "d": "delete", "*": "all"}


def _policy_sql(p: Any) -> str:
    """``create policy`` from the source catalog: the text comes from ``pg_get_expr`` of the same server
    kind, names are quoted; nothing user-typed is pasted."""
    from workbench.core.sqlnames import quote_ident

    sql = (
        f"create policy {quote_ident(p['name'])} on {p['tbl']} as "
        f"{'permissive' if p['permissive'] else 'restrictive'} for {_COMMANDS[p['cmd']]} "
        f"to {', '.join(p['roles'])}"
    )
    if p["using_expr"]:
        sql += f" using ({p['using_expr']})"
    if p["check_expr"]:
        sql += f" with check ({p['check_expr']})"
    return sql


async def _outside_triggers(src: Any, dst: Any, report: PullReport, say: Progress) -> None:
    """The user's triggers on ``auth.users`` and ``storage.objects`` (e.g. ``on_auth_user_created``) whose
    function lives in a pulled schema. Created last, so the placeholder users do not fire them."""
    rows = await src.fetch(
        """select t.tgname, format('%I.%I', cn.nspname, c.relname) as tbl, pg_get_triggerdef(t.oid) as ddl,
                  pn.nspname as fn_schema
           from pg_trigger t join pg_class c on c.oid = t.tgrelid join pg_namespace cn on cn.oid = c.relnamespace
           join pg_proc p on p.oid = t.tgfoid join pg_namespace pn on pn.oid = p.pronamespace
           where not t.tgisinternal and cn.nspname in ('auth', 'storage')"""
    )
    from workbench.core.sqlnames import quote_ident

    created = 0
    for row in rows:
        if row["fn_schema"] not in report.schemas:
            continue
        await dst.execute(f"drop trigger if exists {quote_ident(row['tgname'])} on {row['tbl']}")
        await dst.execute(row["ddl"])
        created += 1
    report.triggers += created
    if created:
        say(f"triggers on auth/storage tables: {created}")


# -- sample rows -----------------------------------------------------------------------------------------
_TABLES_SQL = """
select c.oid, format('%I.%I', n.nspname, c.relname) as name,
       array(select quote_ident(a.attname) from pg_attribute a where a.attrelid = c.oid and a.attnum > 0
             and not a.attisdropped and a.attgenerated = '' order by a.attnum) as columns,
       array(select distinct format('%I.%I', pn.nspname, pc.relname) from pg_constraint k
             join pg_class pc on pc.oid = k.confrelid join pg_namespace pn on pn.oid = pc.relnamespace
             where k.conrelid = c.oid and k.contype = 'f' and k.confrelid <> c.oid) as parents,
       array(select quote_ident(a.attname) from pg_constraint k
             join pg_attribute a on a.attrelid = k.conrelid and a.attnum = k.conkey[1]
             where k.conrelid = c.oid and k.contype = 'f' and k.confrelid = 'auth.users'::regclass
               and array_length(k.conkey, 1) = 1) as auth_user_columns
from pg_class c join pg_namespace n on n.oid = c.relnamespace
where c.relkind in ('r', 'p') and not c.relispartition and n.nspname = any($1::text[])
order by 2
"""


def _dependency_order(tables: list[Any]) -> list[Any]:
    """Parents before children (cycles broken in name order)."""
    by_name = {t["name"]: t for t in tables}
    done: list[Any] = []
    seen: set[str] = set()

    def visit(name: str, stack: set[str]) -> None:
        if name in seen or name in stack or name not in by_name:
            return
        stack.add(name)
        for parent in by_name[name]["parents"]:
            visit(parent, stack)
        seen.add(name)
        done.append(by_name[name])

    for name in sorted(by_name):
        visit(name, set())
    return done


async def _rows(src: Any, dst: Any, report: PullReport, limit: int, say: Progress) -> None:
    """Up to ``limit`` rows per table as JSON (every type travels as its text form), loaded in FK order
    with the table's own triggers disabled; a row that breaks a constraint is skipped and counted."""
    import asyncpg

    tables = await dst.fetch(_TABLES_SQL, report.schemas)
    users: dict[str, int] = {}
    for table in _dependency_order(list(tables)):
        name = table["name"]
        sample = await src.fetch(f"select row_to_json(t)::text as j from {name} t limit {int(limit)}")
        ids: set[str] = set()
        if table["auth_user_columns"]:
            cols = ", ".join(table["auth_user_columns"])
            picked = await src.fetch(
                f"select distinct u::text as id from (select {cols} from {name} limit {int(limit)}) s, "
                f"lateral unnest(array[{cols}]::text[]) u where u is not null"
            )
            ids = {r["id"] for r in picked}
        for user_id in sorted(ids - users.keys()):
            users[user_id] = len(users) + 1
            await dst.execute(
                "insert into auth.users (id, email) values ($1::uuid, $2) on conflict (id) do nothing",
                user_id,
                f"user-{users[user_id]}@example.invalid",
            )
        columns = ", ".join(table["columns"])
        insert = (
            f"insert into {name} ({columns}) overriding system value "
            f"select {columns} from json_populate_record(null::{name}, $1::json)"
        )
        loaded = skipped = 0
        reasons: dict[str, str] = {}
        await dst.execute(f"alter table {name} disable trigger user")
        try:
            for record in sample:
                try:
                    async with dst.transaction():
                        await dst.execute(insert, record["j"])
                    loaded += 1
                except asyncpg.PostgresError as exc:
                    skipped += 1
                    reasons.setdefault(type(exc).__name__, str(exc))
        finally:
            await dst.execute(f"alter table {name} enable trigger user")
        await _advance_sequences(dst, table["oid"], name)
        report.rows[name] = loaded
        if skipped:
            report.skipped_rows[name] = skipped
        why = f" ({'; '.join(reasons.values())})" if reasons else ""
        say(f"rows {name}: {loaded} loaded" + (f", {skipped} skipped{why}" if skipped else ""))
    report.placeholder_users = len(users)


async def _advance_sequences(dst: Any, oid: int, name: str) -> None:
    """Identity and serial sequences past the loaded rows, so the user's next insert does not collide."""
    from workbench.core.sqlnames import quote_ident

    rows = await dst.fetch(
        """select a.attname, pg_get_serial_sequence($2, a.attname) as seq from pg_attribute a
           where a.attrelid = $1 and a.attnum > 0 and not a.attisdropped""",
        oid,
        name,
    )
    for row in rows:
        if row["seq"]:
            column = quote_ident(row["attname"])
            with contextlib.suppress(Exception):
                await dst.execute(
                    f"select setval($1::regclass, coalesce((select max({column}) from {name}), 0) + 1, false)",
                    row["seq"],
                )


# -- the stand-in ----------------------------------------------------------------------------------------
def pull_into_standin(
    standin: LocalStandIn,
    *,
    db_url: str | None = None,
    rows: int = 0,
    progress: Progress | None = None,
    settings: Settings | None = None,
) -> PullReport:
    """Sync entry point: pull into the stand-in (started without the demo app when new). The source is
    ``db_url``, else ``settings``, else the configured project (environment / ``.env``)."""
    from workbench.core.settings import Settings, SettingsError, load_settings
    from workbench.notebook.bridge import run_sync

    try:
        source = Settings(db_url=db_url) if db_url else (settings or load_settings())
    except SettingsError as exc:
        raise PullError(f"the source settings are not valid: {exc}") from None
    if not standin.is_standin_folder() or not standin.status().db_running:
        standin.start(demo=False)
    return run_sync(apull(source, standin.dsn(), rows=rows, progress=progress, work_dir=standin.data_dir))
