"""What a migration changes about who can see and do what: the policy matrix before and after it.

The migration (a SQL file, a folder of them in file-name order, or SQL text) is applied inside a
transaction that is always rolled back, between two runs of the policy matrix on the same connection;
when it cannot run in a transaction (``create index concurrently``, ``vacuum``, ...) it is applied to a
throwaway copy of the database (``create database ... template``, dropped after). Nothing is committed
to the database being checked either way.

    impact = await policy_impact(engine_or_dsn, "supabase/migrations/20260101_team.sql")
    impact.changes        # every cell identity x table x operation whose outcome or row count changed
    impact.changed        # False: the migration changes nothing about access

The result is plain dataclasses (:class:`PolicyImpact`); :mod:`workbench.policies.impact_report` renders
it as text, markdown or JSON, and ``workbench policies diff`` wraps both for CI.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from workbench.core.identity import Identity, IdentityError, user_identity
from workbench.core.sqltext import SQLSyntaxError, TokenKind, split_statements, tokenize
from workbench.policies.advisors import Lint, run_advisors
from workbench.policies.matrix import (
    OPERATIONS,
    Cell,
    PolicyMatrix,
    PolicyMatrixError,
    build_matrix,
    split_user_spec,
)
from workbench.schema import model as m

if TYPE_CHECKING:
    import asyncpg
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = [
    "CellChange",
    "CellState",
    "FunctionChange",
    "GrantChange",
    "LintChange",
    "Migration",
    "MigrationError",
    "MigrationFailure",
    "MigrationStatement",
    "PolicyChange",
    "PolicyImpact",
    "TableChange",
    "impact_identities",
    "load_migration",
    "policy_impact",
    "policy_impact_sync",
]

DEFAULT_ROLES = ("anon", "service_role")
DEFAULT_MAX_USERS = 20
_LOCK_NOT_AVAILABLE = "55P03"  # lock_timeout ran out

# Statements PostgreSQL refuses inside a transaction block: the migration then runs on a throwaway copy.
_NON_TRANSACTIONAL = re.compile(
    r"^\s*(?:(?:create|drop)\s+(?:unique\s+)?index\s+concurrently|reindex\b.*\bconcurrently|refresh\s+materialized"
    r"\s+view\s+concurrently|vacuum\b|create\s+database\b|drop\s+database\b|alter\s+system\b|create\s+tablespace\b"
    r"|drop\s+tablespace\b|alter\s+database\b.*\bset\s+tablespace)",
    re.IGNORECASE | re.DOTALL,
)
_TRANSACTION_CONTROL = re.compile(r"^\s*(?:begin|commit|end|start\s+transaction)\s*(?:transaction|work)?\s*$", re.I)
_ROLLBACK = re.compile(r"^\s*(?:rollback|abort)\b", re.IGNORECASE)
_PRIVILEGE = {"select": "SELECT", "insert": "INSERT", "update": "UPDATE", "delete": "DELETE"}
# Functions that read the request's claims, not table data.
_CLAIM_FUNCTIONS = {"auth.uid()", "auth.jwt()", "auth.role()", "auth.email()"}


class MigrationError(PolicyMatrixError):
    """A migration that cannot be read (missing file, empty folder, unterminated string); says what to do."""


# -- migration input -----------------------------------------------------------------------------------
@dataclass
class MigrationStatement:
    """One statement of a migration, and where it came from (for failure reports)."""

    source: str  # file path, or "<sql>" for text
    line: int  # 1-based line of its first character in the source
    index: int  # 1-based position in the whole migration
    sql: str

    @property
    def non_transactional(self) -> bool:
        return bool(_NON_TRANSACTIONAL.match(self.sql))

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line} (statement {self.index})"


@dataclass
class Migration:
    name: str
    statements: list[MigrationStatement]
    skipped: list[MigrationStatement] = field(default_factory=list)  # begin / commit: the runner owns those

    @property
    def transactional(self) -> bool:
        """False when a statement cannot run in a transaction block (it then runs on a copy)."""
        return not any(s.non_transactional for s in self.statements)


def load_migration(migration: str | Path | Migration) -> Migration:
    """A migration from a ``.sql`` file, a folder of them (file-name order) or SQL text.

    A string is a path when it names an existing file or folder, or looks like one (one line, ending in
    ``.sql`` or ``/``, without ``;``); anything else is SQL text.
    """
    if isinstance(migration, Migration):
        return migration
    if isinstance(migration, str) and not _looks_like_path(migration):
        return _parse(migration, "<sql>", "SQL text")
    path = Path(migration)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix == ".sql")
        if not files:
            raise MigrationError(
                f"The folder {path} has no .sql files; give a migration file, a folder of them or SQL."
            )
        statements: list[MigrationStatement] = []
        skipped: list[MigrationStatement] = []
        for file in files:
            part = _parse(file.read_text(encoding="utf-8"), str(file), str(file), first_index=len(statements) + 1)
            statements += part.statements
            skipped += part.skipped
        return Migration(str(path), statements, skipped)
    if path.is_file():
        return _parse(path.read_text(encoding="utf-8"), str(path), str(path))
    raise MigrationError(f"No migration file or folder {path}; give a .sql file, a folder of them, or SQL text.")


def _looks_like_path(text: str) -> bool:
    if "\n" in text or ";" in text:
        return False
    stripped = text.strip()
    return Path(stripped).exists() or stripped.endswith((".sql", "/")) or (" " not in stripped and "/" in stripped)


def _parse(sql: str, source: str, name: str, first_index: int = 1) -> Migration:
    try:
        texts = split_statements(sql)
    except SQLSyntaxError as exc:
        raise MigrationError(f"{source}:{exc.line}: {exc}; fix the migration and try again.") from None
    statements: list[MigrationStatement] = []
    skipped: list[MigrationStatement] = []
    cursor = 0
    for text in texts:
        pos = sql.find(text, cursor)
        cursor = pos + len(text)
        # the line of its first token, not of a comment above it
        first = next((t.start for t in tokenize(text) if t.kind not in (TokenKind.SPACE, TokenKind.COMMENT)), 0)
        line = sql.count("\n", 0, pos + first) + 1
        if _ROLLBACK.match(text):
            raise MigrationError(
                f"{source}:{line}: the migration rolls back ({text.split()[0]}); a migration to check must not."
            )
        statement = MigrationStatement(source, line, first_index + len(statements), text)
        (skipped if _TRANSACTION_CONTROL.match(text) else statements).append(statement)
    if not statements:
        raise MigrationError(f"{name} has no SQL statement to apply.")
    return Migration(name, statements, skipped)


# -- result model --------------------------------------------------------------------------------------
@dataclass
class CellState:
    """One side of a changed cell."""

    outcome: str  # allowed / filtered / refused / constraint / error
    rows: int | None
    policies: list[str]

    @classmethod
    def of(cls, cell: Cell) -> CellState:
        return cls(cell.outcome, cell.rows, list(cell.policies))

    def summary(self) -> str:
        """``allowed (3 rows)``, ``filtered (0 rows)``, ``refused``."""
        if self.rows is None:
            return self.outcome
        return f"{self.outcome} ({self.rows} row{'' if self.rows == 1 else 's'})"


@dataclass
class CellChange:
    """A cell whose outcome or row count differs after the migration (``None``: the table did not exist)."""

    identity: str
    table: str
    operation: str
    before: CellState | None
    after: CellState | None
    explained_by: list[str] = field(default_factory=list)  # the catalog changes that explain it
    reads: list[str] = field(default_factory=list)  # tables and functions its policies read: it depends on data

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.identity, self.table, self.operation)

    @property
    def depends_on_data(self) -> bool:
        return bool(self.reads)

    @property
    def direction(self) -> Literal["gained", "lost", "changed"]:
        """``gained``: more rows or newly allowed; ``lost``: fewer or newly refused; else ``changed``."""
        rank = {"allowed": 2, "constraint": 1, "filtered": 0, "refused": -1, "error": -1}
        b = (rank.get(self.before.outcome, 0), self.before.rows or 0) if self.before else (-1, 0)
        a = (rank.get(self.after.outcome, 0), self.after.rows or 0) if self.after else (-1, 0)
        return "gained" if a > b else "lost" if a < b else "changed"

    def summary(self) -> str:
        before = self.before.summary() if self.before else "(no table)"
        after = self.after.summary() if self.after else "(no table)"
        return f"{before} -> {after}"


@dataclass
class PolicyChange:
    table: str
    name: str
    change: Literal["added", "dropped", "altered"]
    command: str
    before_sql: str | None
    after_sql: str | None


@dataclass
class TableChange:
    table: str
    change: str  # added / dropped / RLS enabled / RLS disabled / RLS forced / RLS no longer forced


@dataclass
class GrantChange:
    role: str
    table: str
    privilege: str  # SELECT / INSERT / UPDATE / DELETE
    change: Literal["granted", "revoked"]


@dataclass
class FunctionChange:
    function: str  # schema.name(argument types)
    change: Literal["added", "dropped", "altered"]
    security_definer: bool


@dataclass
class LintChange:
    change: Literal["added", "removed"]
    name: str
    level: str
    title: str
    detail: str
    remediation: str

    @classmethod
    def of(cls, change: Literal["added", "removed"], lint: Lint) -> LintChange:
        return cls(change, lint.name, lint.level, lint.title, lint.detail, lint.remediation)


@dataclass
class MigrationFailure:
    """The statement that failed; everything it and the statements before it did was rolled back."""

    source: str
    line: int
    index: int
    statement: str
    sqlstate: str | None
    message: str

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line} (statement {self.index})"


@dataclass
class PolicyImpact:
    """Everything a migration changes about access. ``before``/``after`` are the two full matrices."""

    migration: str
    identities: list[str]
    mode: Literal["transaction", "copy"]
    before: PolicyMatrix | None
    after: PolicyMatrix | None
    changes: list[CellChange] = field(default_factory=list)
    policy_changes: list[PolicyChange] = field(default_factory=list)
    table_changes: list[TableChange] = field(default_factory=list)
    grant_changes: list[GrantChange] = field(default_factory=list)
    function_changes: list[FunctionChange] = field(default_factory=list)
    lint_changes: list[LintChange] = field(default_factory=list)
    data_dependent: dict[tuple[str, str, str], list[str]] = field(default_factory=dict)  # every such cell after
    failure: MigrationFailure | None = None
    notes: list[str] = field(default_factory=list)
    elapsed_ms: float = 0.0

    @property
    def failed(self) -> bool:
        return self.failure is not None

    @property
    def changed(self) -> bool:
        """True when some identity can do something it could not, or no longer can (cells changed)."""
        return bool(self.changes)

    def change(self, identity: str, table: str, operation: str) -> CellChange:
        table = table if "." in table else f"public.{table}"
        for c in self.changes:
            if c.key == (identity, table, operation):
                return c
        raise KeyError(f"{identity} x {table} x {operation} did not change")

    def changed_cells(self) -> dict[tuple[str, str, str], tuple[str | None, str | None]]:
        """``(identity, table, operation) -> (before, after)`` as short text: what tests compare."""
        return {
            c.key: (c.before.summary() if c.before else None, c.after.summary() if c.after else None)
            for c in self.changes
        }

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (no secrets: identities appear by label only)."""
        from dataclasses import asdict

        return {
            "migration": self.migration,
            "mode": self.mode,
            "identities": self.identities,
            "failed": self.failed,
            "failure": asdict(self.failure) if self.failure else None,
            "changed": self.changed,
            "changes": [
                {
                    "identity": c.identity,
                    "table": c.table,
                    "operation": c.operation,
                    "direction": c.direction,
                    "before": asdict(c.before) if c.before else None,
                    "after": asdict(c.after) if c.after else None,
                    "explained_by": c.explained_by,
                    "depends_on_data": c.depends_on_data,
                    "reads": c.reads,
                }
                for c in self.changes
            ],
            "policy_changes": [asdict(p) for p in self.policy_changes],
            "table_changes": [asdict(t) for t in self.table_changes],
            "grant_changes": [asdict(g) for g in self.grant_changes],
            "function_changes": [asdict(f) for f in self.function_changes],
            "lint_changes": [asdict(lint) for lint in self.lint_changes],
            "data_dependent_cells": [
                {"identity": k[0], "table": k[1], "operation": k[2], "reads": v}
                for k, v in sorted(self.data_dependent.items())
            ],
            "notes": self.notes,
            "elapsed_ms": round(self.elapsed_ms, 1),
        }

    def _repr_html_(self) -> str:
        from workbench.policies.impact_report import render_html

        return render_html(self)


# -- catalog snapshots ---------------------------------------------------------------------------------
@dataclass
class _Snapshot:
    matrix: PolicyMatrix
    lints: list[Lint]
    grants: dict[tuple[str, str, str], bool]  # (role, table, privilege) -> has it
    functions: dict[str, tuple[bool, str]]  # signature -> (security definer, body checksum)
    reads: dict[tuple[str, str], list[str]]  # (table, policy) -> other tables and functions it reads


async def _grants(conn: asyncpg.Connection, roles: list[str], tables: list[str]) -> dict[tuple[str, str, str], bool]:
    rows = await conn.fetch(
        """select r.rolname, n.nspname || '.' || c.relname as tbl, p.priv,
                  pg_catalog.has_table_privilege(r.oid, c.oid, p.priv) as granted
           from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
           cross join pg_catalog.pg_roles r
           cross join unnest(array['SELECT', 'INSERT', 'UPDATE', 'DELETE']) p(priv)
           where n.nspname || '.' || c.relname = any($1::text[]) and r.rolname = any($2::text[])""",
        tables,
        roles,
    )
    return {(r["rolname"], r["tbl"], r["priv"]): r["granted"] for r in rows}


async def _functions(conn: asyncpg.Connection) -> dict[str, tuple[bool, str]]:
    rows = await conn.fetch(
        """select p.oid::pg_catalog.regprocedure::text as sig, n.nspname, p.prosecdef,
                  md5(coalesce(p.prosrc, '') || '|' || coalesce(array_to_string(p.proconfig, ','), '') || '|'
                      || p.provolatile::text || p.proowner::text) as body
           from pg_catalog.pg_proc p join pg_catalog.pg_namespace n on n.oid = p.pronamespace
           where n.nspname not in ('pg_catalog', 'information_schema') and n.nspname not like 'pg\\_%'
             and not exists (select 1 from pg_catalog.pg_depend d
                             where d.classid = 'pg_catalog.pg_proc'::regclass and d.objid = p.oid
                               and d.deptype = 'e')"""
    )
    out = {}
    for r in rows:
        sig = r["sig"] if "." in r["sig"].split("(")[0] else f"{r['nspname']}.{r['sig']}"
        out[sig] = (r["prosecdef"], r["body"])
    return out


async def _policy_reads(conn: asyncpg.Connection) -> dict[tuple[str, str], list[str]]:
    """What each policy reads besides its own table: other tables, and functions other than auth.uid() & co."""
    rows = await conn.fetch(
        """select n.nspname || '.' || c.relname as tbl, p.polname,
                  case when d.refclassid = 'pg_catalog.pg_class'::regclass
                       then (select rn.nspname || '.' || rc.relname from pg_catalog.pg_class rc
                             join pg_catalog.pg_namespace rn on rn.oid = rc.relnamespace where rc.oid = d.refobjid)
                       else (select fn.nspname || '.' || f.oid::pg_catalog.regprocedure::text
                             from pg_catalog.pg_proc f join pg_catalog.pg_namespace fn on fn.oid = f.pronamespace
                             where f.oid = d.refobjid) end as reads,
                  d.refclassid = 'pg_catalog.pg_proc'::regclass as is_function
           from pg_catalog.pg_depend d
           join pg_catalog.pg_policy p on d.classid = 'pg_catalog.pg_policy'::regclass and d.objid = p.oid
           join pg_catalog.pg_class c on c.oid = p.polrelid
           join pg_catalog.pg_namespace n on n.oid = c.relnamespace
           where d.refclassid in ('pg_catalog.pg_class'::regclass, 'pg_catalog.pg_proc'::regclass)
             and d.refobjid <> p.polrelid"""
    )
    out: dict[tuple[str, str], list[str]] = {}
    for r in rows:
        name = r["reads"]
        if name is None:
            continue
        if r["is_function"]:
            # regprocedure prints schema-qualified names only off the search path: keep one schema prefix.
            schema, _, rest = name.partition(".")
            name = rest if rest.startswith(f"{schema}.") else name
            if name in _CLAIM_FUNCTIONS:
                continue
            name = f"{name} (function)"
        reads = out.setdefault((r["tbl"], r["polname"]), [])
        if name not in reads:
            reads.append(name)
    return out


async def _snapshot(
    conn: asyncpg.Connection,
    identities: Sequence[Identity],
    tables: Sequence[str] | None,
    operations: Sequence[str],
    statement_timeout_ms: int,
) -> _Snapshot:
    """The matrix (``tables=[]``: none), advisors and catalog facts, in the transaction's current state."""
    if tables is not None and not tables:
        matrix = PolicyMatrix(identities=list(identities), tables=[], operations=list(operations), cells=[])  # type: ignore[arg-type]
    else:
        matrix = await build_matrix(conn, identities, tables, operations, statement_timeout_ms=statement_timeout_ms)
    lints = await run_advisors(conn)
    roles = sorted({i.role for i in identities if i.role})
    grants = await _grants(conn, roles, [t.qualified_name for t in matrix.tables])
    return _Snapshot(matrix, lints, grants, await _functions(conn), await _policy_reads(conn))


# -- which tables a migration can have changed ---------------------------------------------------------
@dataclass
class _State:
    """What decides a table's cells besides the identities: its catalog entries, its rows, what its
    policies, triggers, defaults and constraints depend on, the API roles, and the functions."""

    signatures: dict[str, str]  # schema.table -> md5 of its catalog entries (and its schema's grants)
    writes: dict[str, int]  # schema.table -> rows inserted, updated or deleted in this transaction
    depends: dict[str, set[str]]  # schema.table -> relations and functions it depends on
    definer: dict[str, bool]  # function -> security definer
    roles: str  # md5 of the roles' attributes and memberships
    functions: dict[str, tuple[bool, str]]


async def _state(conn: asyncpg.Connection) -> _State:
    sig_rows = await conn.fetch(
        """select format('%s.%s', n.nspname, c.relname) as tbl, md5(concat_ws('|', c.relacl::text, c.relrowsecurity,
                  c.relforcerowsecurity, c.relowner, c.relfilenode, c.relkind, n.nspacl::text,
                  (select string_agg(concat_ws(',', a.attname, a.atttypid, a.attnotnull, a.attacl::text,
                          pg_catalog.pg_get_expr(d.adbin, d.adrelid), a.attidentity, a.attgenerated), ';'
                          order by a.attnum)
                   from pg_catalog.pg_attribute a
                   left join pg_catalog.pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
                   where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped),
                  (select string_agg(k.conname || pg_catalog.pg_get_constraintdef(k.oid), ';' order by k.conname)
                   from pg_catalog.pg_constraint k where k.conrelid = c.oid),
                  (select string_agg(pg_catalog.pg_get_triggerdef(t.oid) || t.tgenabled::text, ';' order by t.tgname)
                   from pg_catalog.pg_trigger t where t.tgrelid = c.oid and not t.tgisinternal),
                  (select string_agg(concat_ws(',', p.polname, p.polcmd, p.polpermissive, p.polroles::text,
                          pg_catalog.pg_get_expr(p.polqual, p.polrelid),
                          pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid)), ';' order by p.polname)
                   from pg_catalog.pg_policy p where p.polrelid = c.oid),
                  (select string_agg(pg_catalog.pg_get_indexdef(i.indexrelid), ';' order by i.indexrelid)
                   from pg_catalog.pg_index i where i.indrelid = c.oid and i.indisunique))) as sig
           from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
           where c.relkind in ('r', 'p', 'v', 'm', 'f')
             and n.nspname not in ('pg_catalog', 'information_schema', 'pg_toast')"""
    )
    writes = await conn.fetch(
        """select format('%s.%s', schemaname, relname) as tbl, n_tup_ins + n_tup_upd + n_tup_del as writes
           from pg_catalog.pg_stat_xact_user_tables"""
    )
    dep_rows = await conn.fetch(
        """with objs as (
             select p.polrelid as rel, 'pg_catalog.pg_policy'::regclass as classid, p.oid as objid
               from pg_catalog.pg_policy p
             union all select t.tgrelid, 'pg_catalog.pg_trigger'::regclass, t.oid
               from pg_catalog.pg_trigger t where not t.tgisinternal
             union all select d.adrelid, 'pg_catalog.pg_attrdef'::regclass, d.oid from pg_catalog.pg_attrdef d
             union all select k.conrelid, 'pg_catalog.pg_constraint'::regclass, k.oid
               from pg_catalog.pg_constraint k where k.conrelid <> 0)
           select format('%s.%s', n.nspname, c.relname) as tbl,
                  case when d.refclassid = 'pg_catalog.pg_class'::regclass
                       then (select format('%s.%s', rn.nspname, rc.relname) from pg_catalog.pg_class rc
                             join pg_catalog.pg_namespace rn on rn.oid = rc.relnamespace where rc.oid = d.refobjid)
                       else (select fn.nspname || '.' || f.oid::pg_catalog.regprocedure::text
                             from pg_catalog.pg_proc f join pg_catalog.pg_namespace fn on fn.oid = f.pronamespace
                             where f.oid = d.refobjid) end as dep,
                  d.refclassid = 'pg_catalog.pg_proc'::regclass as is_function
           from objs o join pg_catalog.pg_depend d on d.classid = o.classid and d.objid = o.objid
           join pg_catalog.pg_class c on c.oid = o.rel join pg_catalog.pg_namespace n on n.oid = c.relnamespace
           where d.refclassid in ('pg_catalog.pg_class'::regclass, 'pg_catalog.pg_proc'::regclass)
             and d.refobjid <> o.rel"""
    )
    roles = await conn.fetchval(
        """select md5(coalesce(string_agg(concat_ws(',', r.rolname, r.rolsuper, r.rolbypassrls, r.rolinherit,
                  (select string_agg(m.roleid::text, ',' order by m.roleid) from pg_catalog.pg_auth_members m
                   where m.member = r.oid)), ';' order by r.rolname), ''))
           from pg_catalog.pg_roles r"""
    )
    functions = await _functions(conn)
    depends: dict[str, set[str]] = {}
    for r in dep_rows:
        dep = r["dep"]
        if dep is None:
            continue
        if r["is_function"]:
            schema, _, rest = dep.partition(".")
            dep = rest if rest.startswith(f"{schema}.") else dep
        depends.setdefault(r["tbl"], set()).add(dep)
    return _State(
        signatures={r["tbl"]: r["sig"] for r in sig_rows},
        writes={r["tbl"]: r["writes"] for r in writes},
        depends=depends,
        definer={name: definer for name, (definer, _) in functions.items()},
        roles=roles,
        functions=functions,
    )


def _affected(before: _State, after: _State, names: list[str]) -> set[str]:
    """The tables of ``names`` whose cells the migration may have changed; the others provably keep theirs."""
    if before.roles != after.roles:
        return set(names)
    catalog = {t for t in set(before.signatures) | set(after.signatures)
               if before.signatures.get(t) != after.signatures.get(t)}  # fmt: skip
    data = {t for t, n in after.writes.items() if n != before.writes.get(t, 0)}
    changed_functions = {f for f in set(before.functions) | set(after.functions)
                         if before.functions.get(f) != after.functions.get(f)}  # fmt: skip
    out = set()
    for name in names:
        if name in catalog or name in data:
            out.add(name)
            continue
        for dep in before.depends.get(name, set()) | after.depends.get(name, set()):
            if dep in catalog or dep in data or dep in changed_functions:
                out.add(name)
                break
            # A function body may read any table and call other functions: new rows anywhere or any changed
            # function may change what it returns, and an invoker's function also sees other tables' policies.
            user_function = dep in after.functions and dep not in _CLAIM_FUNCTIONS
            invoker = not after.definer.get(dep, False)
            if user_function and (data or changed_functions or (invoker and catalog)):
                out.add(name)
                break
    return out


async def _matrix_tables(conn: asyncpg.Connection, tables: Sequence[str] | None) -> list[str]:
    """The tables the matrix covers now: those given, else every table of public (as the matrix orders them)."""
    if tables:
        names = [t if "." in t else f"public.{t}" for t in tables]
        return [n for n in names if await conn.fetchval("select pg_catalog.to_regclass($1) is not null", n)]
    rows = await conn.fetch(
        """select n.nspname || '.' || c.relname from pg_catalog.pg_class c
           join pg_catalog.pg_namespace n on n.oid = c.relnamespace
           where n.nspname = 'public' and c.relkind in ('r', 'p') and not c.relispartition order by c.relname"""
    )
    return [r[0] for r in rows]


# -- identities ----------------------------------------------------------------------------------------
async def impact_identities(
    conn: asyncpg.Connection,
    extra: Sequence[str | Identity] = (),
    *,
    roles: Sequence[str] = DEFAULT_ROLES,
    max_users: int = DEFAULT_MAX_USERS,
    issuer: str = "http://127.0.0.1/auth/v1",
) -> list[Identity]:
    """anon, every user of ``auth.users`` (up to ``max_users``), the ``extra`` identities, service_role.

    ``extra`` items are identities, role names, or user specs with claims:
    ``'bob@example.com+{"user_role": "admin"}'`` (so role-based policies reading ``auth.jwt()`` are covered).
    """
    out: list[Identity] = []
    first_roles = [r for r in roles if r != "service_role"]
    for role in first_roles:
        out.append(await _role_identity(conn, role))
    users = await conn.fetch(
        "select coalesce(email, id::text) from auth.users order by email nulls last, id limit $1", max_users
    )
    for (who,) in users:
        out.append(await user_identity(conn, who, issuer=issuer))
    for item in extra:
        if isinstance(item, Identity):
            out.append(item)
            continue
        who, claims = split_user_spec(item)
        if claims is None and await conn.fetchval("select 1 from pg_catalog.pg_roles where rolname = $1", who):
            out.append(await _role_identity(conn, who))
            continue
        try:
            out.append(await user_identity(conn, who, issuer=issuer, extra_claims=claims))
        except IdentityError as exc:
            raise PolicyMatrixError(f"Identity {item!r}: {exc}") from None
    if "service_role" in roles:
        out.append(await _role_identity(conn, "service_role"))
    seen: set[str] = set()
    unique = []
    for identity in out:
        if identity.describe() not in seen:
            seen.add(identity.describe())
            unique.append(identity)
    return unique


async def _role_identity(conn: asyncpg.Connection, role: str) -> Identity:
    if await conn.fetchval("select 1 from pg_catalog.pg_roles where rolname = $1", role) is None:
        raise PolicyMatrixError(
            f"Role {role!r} does not exist in this database (try anon, authenticated, service_role)."
        )
    return Identity.for_role(role)


# -- running the migration -----------------------------------------------------------------------------
async def _apply(conn: asyncpg.Connection, migration: Migration) -> MigrationFailure | None:
    """Run each statement in order; the first failure is returned (the caller rolls everything back)."""
    import asyncpg

    for statement in migration.statements:
        try:
            await conn.execute(statement.sql)
        except asyncpg.PostgresError as exc:
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if exc.sqlstate == _LOCK_NOT_AVAILABLE:
                message += (
                    ": another session holds a lock this statement needs, and the check waits for a lock no longer "
                    "than its statement timeout. Finish or cancel that session (pg_stat_activity, "
                    "pg_blocking_pids) and check again, or raise the timeout (--timeout-ms, statement_timeout_ms)."
                )
            return MigrationFailure(
                statement.source, statement.line, statement.index, statement.sql, exc.sqlstate, message
            )
    # A migration may leave its own role or search path in force: the matrix must run as the admin role.
    await conn.execute("reset role; reset search_path")
    return None


def plain_dsn(engine_or_dsn: AsyncEngine | str) -> str:
    """A libpq DSN (password kept: it never leaves this process) from an engine or a URL."""
    from sqlalchemy.engine import make_url

    url = make_url(engine_or_dsn) if isinstance(engine_or_dsn, str) else engine_or_dsn.url
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


async def policy_impact(
    engine_or_dsn: AsyncEngine | str,
    migration: str | Path | Migration,
    identities: Sequence[str | Identity] | None = None,
    *,
    extra_identities: Sequence[str | Identity] = (),
    tables: Sequence[str] | None = None,
    operations: Sequence[str] = OPERATIONS,
    issuer: str = "http://127.0.0.1/auth/v1",
    statement_timeout_ms: int = 5000,
    full: bool = False,
) -> PolicyImpact:
    """The policy matrix before and after ``migration``, and every difference; nothing is committed.

    ``identities``: the identities to try (identities, role names, or ``email+{claims}`` specs); by default
    anon, every user of ``auth.users``, ``extra_identities`` and service_role. ``tables``: by default every
    table of public (tables the migration adds are included after it). After the migration only the tables
    it may have changed are tried again (their catalog entries, rows, or what they depend on changed);
    ``full=True`` tries every table again. ``statement_timeout_ms`` bounds each matrix cell, and how long a
    migration statement waits for a lock another session holds (it then fails, saying so).
    """
    import asyncpg

    started = time.perf_counter()
    loaded = load_migration(migration)
    dsn = plain_dsn(engine_or_dsn)
    conn = await asyncpg.connect(dsn)
    try:
        if identities is None:
            chosen = await impact_identities(conn, extra_identities, issuer=issuer)
        else:
            chosen = await impact_identities(conn, [*identities, *extra_identities], roles=(), max_users=0,
                                             issuer=issuer)  # fmt: skip
        if loaded.transactional:
            impact = await _in_transaction(conn, loaded, chosen, tables, operations, statement_timeout_ms, full)
        else:
            impact = await _on_copy(conn, dsn, loaded, chosen, tables, operations, statement_timeout_ms)
    finally:
        await conn.close()
    if loaded.skipped:
        impact.notes.append(
            f"{len(loaded.skipped)} transaction-control statement(s) skipped (the check owns the transaction): "
            + ", ".join(s.where for s in loaded.skipped)
        )
    impact.elapsed_ms = (time.perf_counter() - started) * 1000
    return impact


def policy_impact_sync(engine_or_dsn: AsyncEngine | str, migration: str | Path | Migration, *args: Any,
                       **kwargs: Any) -> PolicyImpact:  # fmt: skip
    """:func:`policy_impact` from synchronous code (a script, a CLI, a notebook cell without ``await``)."""
    from workbench.notebook.bridge import run_sync

    return run_sync(policy_impact(engine_or_dsn, migration, *args, **kwargs))


async def _in_transaction(
    conn: asyncpg.Connection,
    migration: Migration,
    identities: Sequence[Identity],
    tables: Sequence[str] | None,
    operations: Sequence[str],
    timeout_ms: int,
    full: bool = False,
) -> PolicyImpact:
    """Everything inside one transaction that is rolled back.

    Unless ``full``, the migration is first applied in a savepoint to see which tables it can affect
    (:func:`_affected`), rolled back to it, and the matrix runs on those tables only, before and after
    applying it again: the cost follows the size of the change, not of the schema.
    """
    sequences = await _sequences(conn)
    moved: dict[str, tuple[int | None, int]] = {}
    notes: list[str] = []
    failure: MigrationFailure | None = None
    transaction = conn.transaction()
    await transaction.start()
    # A migration that waits for a table another session has locked would hang the check (and, holding its
    # own locks meanwhile, block that table for everyone): wait no longer than a matrix cell may run.
    await conn.execute("select pg_catalog.set_config('lock_timeout', $1, true)", f"{int(timeout_ms)}ms")
    try:
        if full:
            before = await _snapshot(conn, identities, tables, operations, timeout_ms)
            failure = await _apply_in_savepoint(conn, migration)
            moved = await _sequences(conn)
            if failure is None:
                after = await _snapshot(conn, identities, tables, operations, timeout_ms)
        else:
            names_before = await _matrix_tables(conn, tables)
            state = await _state(conn)
            trial = conn.transaction()
            await trial.start()
            failure = await _apply(conn, migration)
            if failure is None:
                names_after = await _matrix_tables(conn, tables)
                rerun = _affected(state, await _state(conn), names_after)
            await trial.rollback()
            moved = await _sequences(conn)  # sequences keep what the migration took
            if failure is not None:
                before = await _snapshot(conn, identities, tables, operations, timeout_ms)
            else:
                unknown = [t for t in tables or [] if f"{'' if '.' in t else 'public.'}{t}" not in
                           set(names_before) | set(names_after)]  # fmt: skip
                if unknown:
                    raise PolicyMatrixError(f"No table {', '.join(unknown)} before or after the migration.")
                scope_before = [n for n in names_before if n in rerun or n not in names_after]
                before = await _snapshot(conn, identities, scope_before, operations, timeout_ms)
                failure = await _apply_in_savepoint(conn, migration)
                moved = await _sequences(conn)
                if failure is None:
                    scope_after = [n for n in names_after if n in rerun]
                    after = await _snapshot(conn, identities, scope_after, operations, timeout_ms)
                    skipped = len(set(names_before) | set(names_after)) - len(set(scope_before) | set(scope_after))
                    if skipped:
                        notes.append(
                            f"{skipped} table(s) left out: the migration changes neither their catalog entries, "
                            "their rows, nor anything their policies, triggers, defaults or keys depend on, so "
                            "their cells cannot change (full=True / --full tries every table)"
                        )
    finally:
        await transaction.rollback()
        notes += await _restore_sequences(conn, sequences, moved)
    impact = (
        _failed(migration, identities, "transaction", before, failure)
        if failure is not None
        else compare(migration.name, identities, "transaction", before, after)
    )
    impact.notes += notes
    return impact


async def _sequences(conn: asyncpg.Connection) -> dict[str, tuple[int | None, int]]:
    """``schema.sequence -> (last value or None when never used, start value)``."""
    rows = await conn.fetch(
        """select format('%I.%I', schemaname, sequencename) as name, last_value, start_value
           from pg_catalog.pg_sequences where schemaname not in ('pg_catalog', 'information_schema')"""
    )
    return {r["name"]: (r["last_value"], r["start_value"]) for r in rows}


async def _restore_sequences(
    conn: asyncpg.Connection, before: dict[str, tuple[int | None, int]], moved: dict[str, tuple[int | None, int]]
) -> list[str]:
    """Sequences are not transactional: put back those the migration advanced, unless someone else has
    used them since (then say so instead)."""
    if not moved:
        return []
    now = await _sequences(conn)
    notes = []
    for name, (value, start) in before.items():
        if name not in moved or moved[name][0] == value:
            continue
        if now.get(name, (None, 0))[0] != moved[name][0]:
            notes.append(f"sequence {name} was advanced by the migration and used by another session since: left as is")
            continue
        if value is None:
            await conn.execute("select pg_catalog.setval($1::regclass, $2, false)", name, start)
        else:
            await conn.execute("select pg_catalog.setval($1::regclass, $2, true)", name, value)
    return notes


async def _apply_in_savepoint(conn: asyncpg.Connection, migration: Migration) -> MigrationFailure | None:
    savepoint = conn.transaction()
    await savepoint.start()
    failure = await _apply(conn, migration)
    if failure is not None:
        await savepoint.rollback()
    else:
        await savepoint.commit()  # releases the savepoint; the outer transaction is still rolled back
    return failure


async def _on_copy(
    conn: asyncpg.Connection,
    dsn: str,
    migration: Migration,
    identities: Sequence[Identity],
    tables: Sequence[str] | None,
    operations: Sequence[str],
    timeout_ms: int,
) -> PolicyImpact:
    """Apply a migration that cannot run in a transaction to a throwaway copy of the database."""
    import asyncpg
    from sqlalchemy.engine import make_url

    before = await _snapshot(conn, identities, tables, operations, timeout_ms)
    source = await conn.fetchval("select current_database()")
    copy = f"wb_impact_{uuid.uuid4().hex[:12]}"
    try:
        await conn.execute(f'create database "{copy}" template "{source.replace(chr(34), chr(34) * 2)}"')
    except asyncpg.PostgresError as exc:
        raise PolicyMatrixError(
            f"The migration cannot run in a transaction ({_first_non_transactional(migration)}), so it runs on a "
            f"copy of the database, and copying {source!r} failed: {exc}. A template copy needs no other session "
            "on the database: close other connections (JupyterLab kernels, the app) or check on a database of its "
            "own, or move the statement to a migration of its own."
        ) from None
    copy_conn: asyncpg.Connection | None = None
    try:
        copy_conn = await asyncpg.connect(make_url(dsn).set(database=copy).render_as_string(hide_password=False))
        failure = await _apply(copy_conn, migration)
        if failure is not None:
            return _failed(migration, identities, "copy", before, failure)
        after = await _snapshot(copy_conn, identities, tables, operations, timeout_ms)
    finally:
        if copy_conn is not None:
            await copy_conn.close()
        await conn.execute(f'drop database if exists "{copy}" with (force)')
    impact = compare(migration.name, identities, "copy", before, after)
    impact.notes.append(
        f"{_first_non_transactional(migration)} cannot run in a transaction: the migration ran on a throwaway copy "
        "of the database (dropped after)."
    )
    return impact


def _first_non_transactional(migration: Migration) -> str:
    for s in migration.statements:
        if s.non_transactional:
            return f"{' '.join(s.sql.split()[:4])} at {s.where}"
    return "a statement"


def _failed(
    migration: Migration, identities: Sequence[Identity], mode: Literal["transaction", "copy"], before: _Snapshot,
    failure: MigrationFailure,
) -> PolicyImpact:  # fmt: skip
    return PolicyImpact(
        migration=migration.name,
        identities=[i.describe() for i in identities],
        mode=mode,
        before=before.matrix,
        after=None,
        failure=failure,
        notes=["the migration failed: nothing it did was kept, and no access change is reported"],
    )


# -- comparing -----------------------------------------------------------------------------------------
def compare(
    name: str,
    identities: Sequence[Identity],
    mode: Literal["transaction", "copy"],
    before: _Snapshot,
    after: _Snapshot,
) -> PolicyImpact:
    """Every changed cell, with the catalog changes that explain it."""
    impact = PolicyImpact(
        migration=name, identities=[i.describe() for i in identities], mode=mode, before=before.matrix,
        after=after.matrix,
    )  # fmt: skip
    b_tables = {t.qualified_name: t for t in before.matrix.tables}
    a_tables = {t.qualified_name: t for t in after.matrix.tables}
    for table in [*b_tables, *[t for t in a_tables if t not in b_tables]]:
        bt, at = b_tables.get(table), a_tables.get(table)
        if bt is None:
            impact.table_changes.append(TableChange(table, "added" + ("" if at and at.rls_enabled else " without RLS")))
        elif at is None:
            impact.table_changes.append(TableChange(table, "dropped"))
        else:
            if bt.rls_enabled != at.rls_enabled:
                impact.table_changes.append(TableChange(table, "RLS enabled" if at.rls_enabled else "RLS disabled"))
            if bt.rls_forced != at.rls_forced:
                impact.table_changes.append(TableChange(table, "RLS forced" if at.rls_forced else "RLS not forced"))
        b_pol = {p.name: p for p in (bt.policies if bt else [])}
        a_pol = {p.name: p for p in (at.policies if at else [])}
        for pname in [*b_pol, *[p for p in a_pol if p not in b_pol]]:
            bp, ap = b_pol.get(pname), a_pol.get(pname)
            if bp is None and ap is not None:
                impact.policy_changes.append(PolicyChange(table, pname, "added", ap.command, None, ap.sql()))
            elif ap is None and bp is not None:
                impact.policy_changes.append(PolicyChange(table, pname, "dropped", bp.command, bp.sql(), None))
            elif bp is not None and ap is not None and _policy_differs(bp, ap):
                impact.policy_changes.append(PolicyChange(table, pname, "altered", ap.command, bp.sql(), ap.sql()))
    for key in sorted(set(before.grants) | set(after.grants)):
        was, now = before.grants.get(key), after.grants.get(key)
        if was is not None and now is not None and was != now:
            impact.grant_changes.append(GrantChange(key[0], key[1], key[2], "granted" if now else "revoked"))
    for sig in sorted(set(before.functions) | set(after.functions)):
        bf, af = before.functions.get(sig), after.functions.get(sig)
        if bf is None and af is not None:
            impact.function_changes.append(FunctionChange(sig, "added", af[0]))
        elif af is None and bf is not None:
            impact.function_changes.append(FunctionChange(sig, "dropped", bf[0]))
        elif bf is not None and af is not None and bf != af:
            impact.function_changes.append(FunctionChange(sig, "altered", af[0]))
    b_lints = {_lint_key(lint): lint for lint in before.lints}
    a_lints = {_lint_key(lint): lint for lint in after.lints}
    impact.lint_changes += [LintChange.of("added", lint) for k, lint in a_lints.items() if k not in b_lints]
    impact.lint_changes += [LintChange.of("removed", lint) for k, lint in b_lints.items() if k not in a_lints]

    b_cells = {c.key: c for c in before.matrix.cells}
    a_cells = {c.key: c for c in after.matrix.cells}
    for cell in after.matrix.cells:
        reads = _cell_reads(cell, after.reads)
        if reads:
            impact.data_dependent[cell.key] = reads
    order = [*b_cells, *[k for k in a_cells if k not in b_cells]]
    for key in order:
        bc, ac = b_cells.get(key), a_cells.get(key)
        if bc is not None and ac is not None and (bc.outcome, bc.rows) == (ac.outcome, ac.rows):
            continue
        reads = sorted(
            set(_cell_reads(bc, before.reads) if bc else []) | set(_cell_reads(ac, after.reads) if ac else [])
        )
        change = CellChange(key[0], key[1], key[2], CellState.of(bc) if bc else None, CellState.of(ac) if ac else None,
                            reads=reads)  # fmt: skip
        change.explained_by = _explain(change, impact, identities, bc, ac)
        impact.changes.append(change)
    return impact


def _lint_key(lint: Lint) -> str:
    """Supabase's own identity of a finding (a changed detail, like a policy count, is not a new finding)."""
    return lint.cache_key


def _policy_differs(a: m.Policy, b: m.Policy) -> bool:
    return (a.command, sorted(a.roles), a.permissive, a.using, a.with_check) != (
        b.command, sorted(b.roles), b.permissive, b.using, b.with_check
    )  # fmt: skip


def _cell_reads(cell: Cell | None, reads: dict[tuple[str, str], list[str]]) -> list[str]:
    if cell is None:
        return []
    out: list[str] = []
    for policy in cell.policies:
        for item in reads.get((cell.table, policy), []):
            if item not in out:
                out.append(item)
    return out


def _explain(
    change: CellChange,
    impact: PolicyImpact,
    identities: Sequence[Identity],
    bc: Cell | None,
    ac: Cell | None,
) -> list[str]:
    """The catalog changes behind one changed cell, most specific first."""
    out: list[str] = []
    role = next((i.role for i in identities if i.describe() == change.identity), None)
    for t in impact.table_changes:
        if t.table == change.table:
            out.append(f"table {t.change}")
    applied = set(bc.policies if bc else []) | set(ac.policies if ac else [])
    touched = [p for p in impact.policy_changes if p.table == change.table and p.name in applied]
    # An update or delete also applies SELECT policies; a changed policy of the command itself explains more.
    own = [p for p in touched if p.command in (change.operation.upper(), "ALL")]
    for p in own or touched:
        out.append(f'policy "{p.name}" {p.change}')
    privilege = _PRIVILEGE[change.operation]
    for g in impact.grant_changes:
        if g.table == change.table and g.role == role and g.privilege == privilege:
            out.append(f"{privilege} {g.change} {'to' if g.change == 'granted' else 'from'} {g.role}")
    changed_functions = {f.function: f for f in impact.function_changes}
    for item in change.reads:
        name = item.removesuffix(" (function)")
        if name in changed_functions:
            f = changed_functions[name]
            definer = "security definer " if f.security_definer else ""
            out.append(f"{definer}function {name} {f.change}")
    calls = [r for r in change.reads if r.endswith(" (function)")]
    if not out and calls and impact.function_changes:
        changed = ", ".join(f"{f.function} {f.change}" for f in impact.function_changes)
        out.append(f"a function its policies call may call a changed one: {changed}")
    if not out:
        out.append(
            "no catalog change on this table: the migration changed rows its policies read"
            if change.reads
            else "no catalog change on this table: the migration changed its rows or the rows its checks read"
        )
    return out
