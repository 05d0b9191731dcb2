"""Why can (or can't) an identity see or write a row? Row Level Security explained row by row.

PostgreSQL answers a filtered SELECT with fewer rows, an UPDATE or DELETE with "0 rows", and says
nothing about which policy decided. :func:`explain_rows` and :func:`explain_statement` answer per row:

1. The table is read from the catalogs through :mod:`workbench.schema.reflect` (its RLS flags, owner and
   policies), and the identity's role, its ``BYPASSRLS`` attribute and its privileges (schema ``USAGE``,
   table and column privileges: a missing ``GRANT`` looks exactly like a policy that filters everything).
2. Candidate rows are read as the connection's own role (the notebook's owner) with ``row_security = off``:
   at most ``limit`` rows, only the columns that role may read; if RLS would filter them for that role the
   read fails instead of showing less, so nothing is shown beyond what the owner may see anyway.
3. Every policy that applies to the identity's role for the command (``to public`` applies to every
   role; membership counts as PostgreSQL counts it, ``pg_has_role(..., 'USAGE')``) is evaluated **as the
   identity**: inside a savepoint the identity is applied exactly as the query path applies it (one
   transaction-local ``set_config`` of role and claims), and the expression is evaluated over a one-row
   relation built from the row's values, aliased with the table's own name, so column references resolve
   and sub-queries (membership tables, ``security definer`` helpers) run as they do for real. Each policy
   gets true / false / null / error; an error is isolated by its own savepoint.
4. The verdict combines them the way PostgreSQL does (any permissive policy true AND every restrictive
   policy true), with a one-line reason. As a cross-check the real statement is also run as the identity
   (``observed``), still inside the same transaction.

Writes (:func:`explain_statement`): the statement is run as the owner, with the identity's claims (so
``default auth.uid()`` fills in what it would for the identity), inside a savepoint with ``RETURNING``
to learn the proposed rows: new rows of an INSERT, old (via a sub-query that sees the statement's
snapshot) and new rows of an UPDATE, old rows of a DELETE. UPDATE and DELETE need a primary key for that.

Everything runs in ONE transaction that is always rolled back.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from workbench.core.identity import Identity
from workbench.core.impersonation import apply_statement
from workbench.core.query import QueryUsageError
from workbench.core.sqltext import (
    TokenKind,
    bind_parameters,
    first_keyword,
    resolve_arguments,
    split_statements,
    tokenize,
)
from workbench.schema import model as m

if TYPE_CHECKING:
    import asyncpg
    from sqlalchemy.ext.asyncio import AsyncEngine

Operation = Literal["select", "insert", "update", "delete"]
Value = Literal["true", "false", "null", "error", "skipped"]
Outcome = Literal["visible", "hidden", "allowed", "skipped", "refused", "error"]
OPERATIONS: tuple[Operation, ...] = ("select", "insert", "update", "delete")
DEFAULT_LIMIT = 50
OUTCOME_MEANING: dict[str, str] = {
    "visible": "the identity sees this row",
    "hidden": "RLS hides this row from the identity (no error: the row is just not returned)",
    "allowed": "the statement may write this row",
    "skipped": "RLS leaves this row out of the UPDATE/DELETE silently (0 rows, no error)",
    "refused": "the statement fails with an error (missing privilege, or a new row that violates a policy)",
    "error": "evaluating a policy raised an error, so the real statement fails too",
}
COLOURS: dict[str, str] = {
    "visible": "#c6efce",
    "allowed": "#c6efce",
    "hidden": "#e0e0e0",
    "skipped": "#e0e0e0",
    "refused": "#ffc7ce",
    "error": "#e4d0f5",
}
_SAVEPOINT = "wb_why"
_ORD = "wb_why_ord"
_PRIVILEGE = {"select": "SELECT", "insert": "INSERT", "update": "UPDATE", "delete": "DELETE"}


class WhyError(QueryUsageError):
    """Bad input to the explainer (unknown table, unsupported statement): says what to do instead (shown by
    the magics as one short message, like every :class:`~workbench.core.query.QueryUsageError`)."""


# -- result model --------------------------------------------------------------------------------------
@dataclass
class PolicyCheck:
    """One policy's expression evaluated as the identity for one row."""

    name: str
    permissive: bool
    command: str  # the policy's own command: ALL, SELECT, ...
    clause: Literal["using", "with check"]
    expression: str
    value: Value
    error: str | None = None
    stage: str = ""  # what the check is for: "select" (reading the row), "update", "new row", ...

    @property
    def kind(self) -> str:
        return "permissive" if self.permissive else "restrictive"


@dataclass
class RowExplanation:
    """One candidate row: its values (as the owner sees them), the verdict and why."""

    values: dict[str, Any]
    outcome: Outcome
    reason: str
    checks: list[PolicyCheck] = field(default_factory=list)
    new_values: dict[str, Any] | None = None  # UPDATE / INSERT: the proposed row
    observed: bool | None = None  # did the real statement, run as the identity, see/write this row?

    @property
    def passes(self) -> bool:
        """Visible (SELECT) or written (INSERT/UPDATE/DELETE)."""
        return self.outcome in ("visible", "allowed")


@dataclass
class TableFacts:
    """What decides before any policy: RLS flags, owner, the identity's role and its privileges."""

    schema: str
    name: str
    kind: str
    rls_enabled: bool
    rls_forced: bool
    owner: str
    role: str  # the identity's effective database role
    role_bypasses_rls: bool
    role_is_superuser: bool
    role_is_owner: bool
    schema_usage: bool
    table_privilege: bool  # the command's privilege on the whole table
    column_privileges: dict[str, bool] = field(default_factory=dict)  # column -> the command's privilege
    security_invoker: bool | None = None  # views only
    view_owner_bypasses_rls: bool | None = None
    base_tables: list[str] = field(default_factory=list)  # views: the relations the view reads

    @property
    def qualified_name(self) -> str:
        return m.qualified(self.schema, self.name)

    @property
    def any_column_privilege(self) -> bool:
        return self.table_privilege or any(self.column_privileges.values())


@dataclass
class WhyReport:
    """The explanation of one table (or view) and command for one identity."""

    identity: str
    operation: Operation
    facts: TableFacts
    policies: list[m.Policy]  # the policies that apply to the role for the command
    other_policies: list[m.Policy]  # the table's other policies (wrong role or command)
    rows: list[RowExplanation]
    columns: list[str]  # the displayed columns (those the owner may read)
    summary: str
    notes: list[str] = field(default_factory=list)
    statement: str | None = None
    truncated: bool = False
    limit: int = DEFAULT_LIMIT
    observed_status: str | None = None  # what the real statement said as the identity
    elapsed_ms: float = 0.0

    @property
    def table(self) -> str:
        return self.facts.qualified_name

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for row in self.rows:
            out[row.outcome] = out.get(row.outcome, 0) + 1
        return out

    def to_frame(self) -> Any:
        """The rows with their verdict, reason and each policy's value as a DataFrame."""
        import pandas as pd

        records = []
        for row in self.rows:
            record: dict[str, Any] = {"verdict": row.outcome, "reason": row.reason}
            record.update(row.values)
            for check in row.checks:
                label = f"{check.name} ({check.stage})" if check.stage not in ("", self.operation) else check.name
                record[label] = check.value
            records.append(record)
        return pd.DataFrame.from_records(records)


# -- small helpers -------------------------------------------------------------------------------------
def quote_ident(name: str) -> str:
    """Always-quoted identifier (names come from the catalogs)."""
    return '"' + name.replace('"', '""') + '"'


def split_table(name: str) -> tuple[str, str]:
    """``tasks`` -> ``(public, tasks)``; ``storage.objects`` -> ``(storage, objects)``; quotes allowed."""
    text = name.strip()
    if not text:
        raise WhyError("No table given: write a table of public (tasks) or schema.table (storage.objects).")
    parts = re.findall(r'"((?:[^"]|"")*)"|([^."]+)', text)
    names = [q.replace('""', '"') if q else p.strip() for q, p in parts]
    if len(names) == 1:
        return m.DEFAULT_SCHEMA, names[0]
    if len(names) == 2:
        return names[0], names[1]
    raise WhyError(f"{name!r} is not a table name: write tasks or schema.table.")


def _policy_applies(policy: m.Policy, command: str) -> bool:
    return policy.command in ("ALL", command.upper())


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _referenced(expression: str, columns: Sequence[str], values: Mapping[str, Any], table: str = "") -> str:
    """``owner_id=2222...`` for the row's columns the expression mentions (a hint for the reason)."""
    if table:
        expression = expression.replace(f"{table}.", "")
    found = []
    for col in columns:
        pattern = rf'(?<![\w."]){re.escape(col)}(?![\w"])' if re.fullmatch(r"[a-z_][a-z0-9_]*", col) else None
        if pattern and re.search(pattern, expression) and col in values:
            found.append(f"{col}={_short(values[col])}")
    return f" for {', '.join(found[:3])}" if found else ""


def _value_of(result: Any) -> Value:
    return "null" if result is None else ("true" if result else "false")


def _error_text(exc: BaseException) -> str:
    state = getattr(exc, "sqlstate", None)
    return f"{state} {exc}" if state else str(exc)


# -- the database side ---------------------------------------------------------------------------------
class _Session:
    """One connection inside one transaction that is always rolled back; the identity per savepoint."""

    def __init__(self, conn: asyncpg.Connection, identity: Identity, timeout_ms: int) -> None:
        self.conn = conn
        self.identity = identity
        self.timeout_ms = timeout_ms

    async def as_identity(self, sql: str, *args: Any, fetch: str = "fetch") -> Any:
        """Run ``sql`` as the identity inside a savepoint that is rolled back; errors propagate."""
        conn = self.conn
        await conn.execute(f"savepoint {_SAVEPOINT}")
        try:
            apply_sql, values = apply_statement(self.identity, self.timeout_ms)
            await conn.fetchval(apply_sql, *values)
            method = getattr(conn, fetch)
            return await method(sql, *args)
        finally:
            await conn.execute(f"rollback to savepoint {_SAVEPOINT}; release savepoint {_SAVEPOINT}")

    async def as_owner_with_claims(self, sql: str, *args: Any) -> Any:
        """Run ``sql`` as the connection's own role but with the identity's claims (``auth.uid()``
        defaults then fill in what they would for the identity), in a savepoint that is rolled back."""
        conn = self.conn
        await conn.execute(f"savepoint {_SAVEPOINT}")
        try:
            claims_only = Identity(role=None, claims=self.identity.claims)
            apply_sql, values = apply_statement(claims_only, self.timeout_ms)
            await conn.fetchval(apply_sql, *values)
            return await conn.fetch(sql, *args)
        finally:
            await conn.execute(f"rollback to savepoint {_SAVEPOINT}; release savepoint {_SAVEPOINT}")


async def _load_table(conn: asyncpg.Connection, schema: str, name: str) -> m.Table:
    from workbench.schema.reflect import ReflectError, reflect

    try:
        database = await reflect(conn, [schema], [name])
    except ReflectError as exc:
        raise WhyError(str(exc)) from None
    return database.table(schema, name)


async def _facts(session: _Session, table: m.Table, operation: Operation) -> TableFacts:
    conn = session.conn
    role = await session.as_identity("select current_user::text", fetch="fetchval")
    privilege = _PRIVILEGE[operation]
    row = await conn.fetchrow(
        """select c.relrowsecurity, c.relforcerowsecurity, pg_get_userbyid(c.relowner)::text as owner,
                  r.rolbypassrls, r.rolsuper, pg_has_role($2, c.relowner, 'USAGE') as is_owner,
                  has_schema_privilege($2, c.relnamespace, 'USAGE') as schema_usage,
                  has_table_privilege($2, c.oid, $3) as table_privilege,
                  ow.rolbypassrls or ow.rolsuper as owner_bypasses,
                  array(select lower(o) from unnest(c.reloptions) o) as options
             from pg_class c join pg_roles r on r.rolname = $2 join pg_roles ow on ow.oid = c.relowner
            where c.oid = $1::text::regclass""",
        f"{quote_ident(table.schema)}.{quote_ident(table.name)}",
        role,
        privilege,
    )
    columns: dict[str, bool] = {}
    if privilege != "DELETE":
        for col in table.columns:
            columns[col.name] = bool(
                await conn.fetchval(
                    "select has_column_privilege($1, $2::text::regclass, $3, $4)",
                    role,
                    f"{quote_ident(table.schema)}.{quote_ident(table.name)}",
                    col.name,
                    privilege,
                )
            )
    invoker = None
    if table.is_view:
        invoker = any(
            o in ("security_invoker=true", "security_invoker=on", "security_invoker=1") for o in row["options"]
        )
    return TableFacts(
        schema=table.schema,
        name=table.name,
        kind=table.kind,
        rls_enabled=row["relrowsecurity"],
        rls_forced=row["relforcerowsecurity"],
        owner=row["owner"],
        role=role,
        role_bypasses_rls=row["rolbypassrls"],
        role_is_superuser=row["rolsuper"],
        role_is_owner=row["is_owner"],
        schema_usage=row["schema_usage"],
        table_privilege=row["table_privilege"],
        column_privileges=columns,
        security_invoker=invoker,
        view_owner_bypasses_rls=row["owner_bypasses"] if table.is_view else None,
        base_tables=[m.qualified(s, n) for s, n in table.depends_on],
    )


async def _applying(conn: asyncpg.Connection, role: str, table: m.Table) -> list[tuple[m.Policy, bool]]:
    """Each policy of ``table`` and whether it applies to ``role`` (``to public``, or a role it has)."""
    out = []
    for policy in table.policies:
        applies = "public" in policy.roles
        if not applies:
            applies = bool(
                await conn.fetchval(
                    "select bool_or(pg_has_role($1, r, 'USAGE')) from unnest($2::text[]) r "
                    "where exists (select 1 from pg_roles where rolname = r)",
                    role,
                    list(policy.roles),
                )
            )
        out.append((policy, applies))
    return out


async def _readable_columns(conn: asyncpg.Connection, table: m.Table) -> list[str]:
    regclass = f"{quote_ident(table.schema)}.{quote_ident(table.name)}"
    return [
        col.name
        for col in table.columns
        if await conn.fetchval("select has_column_privilege($1::text::regclass, $2, 'SELECT')", regclass, col.name)
    ]


async def _evaluate(
    session: _Session,
    table: m.Table,
    policy: m.Policy,
    clause: Literal["using", "with check"],
    rows: Sequence[str],
    stage: str,
) -> list[PolicyCheck]:
    """``policy``'s expression as the identity for each row (given as the table type's text)."""
    expression = (policy.using if clause == "using" else policy.with_check) or "true"
    type_name = f"{quote_ident(table.schema)}.{quote_ident(table.name)}"
    alias = quote_ident(table.name)
    many = (
        f"select {_ORD}, ({expression}) from (select (r::{type_name}).*, {_ORD} "
        f"from unnest($1::text[]) with ordinality as u(r, {_ORD})) as {alias} order by {_ORD}"
    )

    def check(value: Value, error: str | None = None) -> PolicyCheck:
        return PolicyCheck(policy.name, policy.permissive, policy.command, clause, expression, value, error, stage)

    if not rows:
        return []
    try:
        results = await session.as_identity(many, list(rows))
        return [check(_value_of(r[1])) for r in results]
    except Exception as exc:  # one row's error spoils the batch: find which rows, one savepoint each
        import asyncpg

        if not isinstance(exc, asyncpg.PostgresError):
            raise
    one = f"select ({expression}) from (select ($1::text::{type_name}).*) as {alias}"
    out = []
    for text in rows:
        try:
            out.append(check(_value_of(await session.as_identity(one, text, fetch="fetchval"))))
        except Exception as exc:
            import asyncpg

            if not isinstance(exc, asyncpg.PostgresError):
                raise
            out.append(check("error", _error_text(exc)))
    return out


@dataclass
class _Stage:
    """One policy gate of a command: which policies, which clause, what failing it means."""

    name: str  # "select", "update", "new row", ...
    command: str  # the policy command it draws on
    clause: Literal["using", "with check"]
    on_new_row: bool
    fails_with: Outcome  # hidden / skipped (silently filtered) or refused (an error)


def _stages(operation: Operation, reads: bool) -> list[_Stage]:
    """PostgreSQL's "policies applied by command type" table."""
    if operation == "select":
        return [_Stage("select", "SELECT", "using", False, "hidden")]
    if operation == "insert":
        stages = [_Stage("insert", "INSERT", "with check", True, "refused")]
        if reads:
            stages.append(_Stage("select (returning)", "SELECT", "using", True, "refused"))
        return stages
    if operation == "delete":
        stages = [_Stage("delete", "DELETE", "using", False, "skipped")]
        if reads:
            stages.append(_Stage("select", "SELECT", "using", False, "skipped"))
        return stages
    stages = [
        _Stage("update", "UPDATE", "using", False, "skipped"),
        _Stage("new row", "UPDATE", "with check", True, "refused"),
    ]
    if reads:
        stages.insert(1, _Stage("select", "SELECT", "using", False, "skipped"))
        stages.append(_Stage("new row (select)", "SELECT", "using", True, "refused"))
    return stages


def _clause_for(policy: m.Policy, stage: _Stage) -> Literal["using", "with check"]:
    """WITH CHECK falls back to USING when a policy has none (UPDATE and ALL policies)."""
    if stage.clause == "with check" and policy.with_check is None:
        return "using"
    return stage.clause


def _gate_reason(stage: _Stage, applying: list[m.Policy], checks: list[PolicyCheck], role: str) -> tuple[bool, str]:
    """Whether a row passes one stage, and the reason when it does not (or the deciding policy when it does)."""
    permissive = [c for c in checks if c.permissive]
    restrictive = [c for c in checks if not c.permissive]
    errors = [c for c in checks if c.value == "error"]
    if errors:
        return False, f"policy {errors[0].name!r} raised an error: {errors[0].error}"
    if not any(p.permissive for p in applying):
        what = "new rows" if stage.on_new_row else "rows"
        return False, f"no permissive {stage.command} policy for role {role}: default deny on {what}"
    winner = next((c for c in permissive if c.value == "true"), None)
    if winner is None:
        if len(permissive) == 1:
            c = permissive[0]
            return False, f"policy {c.name!r} is {c.value}" + (" (null counts as false)" if c.value == "null" else "")
        listed = ", ".join(f"{c.name!r} {c.value}" for c in permissive)
        return False, f"no permissive {stage.command} policy is true ({listed})"
    failed = next((c for c in restrictive if c.value != "true"), None)
    if failed is not None:
        return False, f"restrictive policy {failed.name!r} is {failed.value}"
    return True, f"policy {winner.name!r} is true"


# -- explain -------------------------------------------------------------------------------------------
async def _begin(conn: asyncpg.Connection) -> None:
    if conn.is_in_transaction():
        raise WhyError("The connection is inside a transaction already; pass a connection of its own.")
    await conn.execute("begin isolation level read committed read write")


async def explain_rows(
    conn: asyncpg.Connection,
    identity: Identity,
    table: str,
    *,
    where: str | None = None,
    params: Mapping[str, object] | None = None,
    key: object | None = None,
    operation: str = "select",
    limit: int = DEFAULT_LIMIT,
    statement_timeout_ms: int = 5000,
) -> WhyReport:
    """Explain, row by row, whether ``identity`` sees (or may update / delete) the rows of ``table``.

    ``where`` is SQL over the table's columns (``:name`` binds ``params[name]``); ``key`` the primary key
    of one row. UPDATE is explained with the row unchanged as its new row. Nothing is committed.
    """
    op = operation.lower()
    if op not in OPERATIONS:
        raise WhyError(f"Unknown operation {operation!r}: choose one of {', '.join(OPERATIONS)}.")
    if op == "insert":
        raise WhyError(
            "An INSERT has no existing rows to explain: give the statement itself, e.g.\n"
            "%%sbwhy --as bob@example.com\ninsert into tasks (project_id, title) values (1, 'x')"
        )
    if limit <= 0:
        raise WhyError(f"limit must be a positive number of rows, not {limit}.")
    schema, name = split_table(table)
    started = time.perf_counter()
    tbl = await _load_table(conn, schema, name)
    if key is not None and where is not None:
        raise WhyError("Give either a key (one row by its primary key) or a where filter, not both.")
    args: list[object] = []
    alias = quote_ident(tbl.name)
    filter_sql = ""
    if key is not None:
        if tbl.primary_key is None or len(tbl.primary_key.columns) != 1:
            raise WhyError(f"{tbl.qualified_name} has no single-column primary key: use --where instead of --key.")
        pk = tbl.primary_key.columns[0]
        filter_sql = f"where {alias}.{quote_ident(pk)} = $1::text::{tbl.column(pk).type.sql}"
        args = [str(key)]
    elif where:
        bound = bind_parameters(where)
        args = resolve_arguments(bound, params or {}) if bound.names else []
        filter_sql = f"where ({bound.sql})"
    await _begin(conn)
    try:
        session = _Session(conn, identity, statement_timeout_ms)
        report = await _explain_existing(session, tbl, op, filter_sql, args, limit)  # type: ignore[arg-type]
    finally:
        await conn.execute("rollback")
    report.elapsed_ms = (time.perf_counter() - started) * 1000
    return report


async def _candidates(
    session: _Session, tbl: m.Table, filter_sql: str, args: Sequence[object], limit: int
) -> tuple[list[str], list[dict[str, Any]], list[str], list[tuple[int, str]], bool]:
    """Rows read as the owner with RLS off: (columns, values, row texts, (tableoid, ctid)s, truncated)."""
    conn = session.conn
    columns = await _readable_columns(conn, tbl)
    if not columns:
        raise WhyError(f"The connection's role may read no column of {tbl.qualified_name}; nothing to explain.")
    alias = quote_ident(tbl.name)
    type_name = f"{quote_ident(tbl.schema)}.{quote_ident(tbl.name)}"
    unreadable = [c for c in tbl.columns if c.name not in columns]
    if unreadable:  # build the row from what may be read; the rest stays NULL (said in the notes)
        parts = [f"{alias}.{quote_ident(c.name)}" if c.name in columns else f"null::{c.type.sql}" for c in tbl.columns]
        row_text = f"row({', '.join(parts)})::{type_name}::text"
    else:
        row_text = f"{alias}::{type_name}::text"
    order = ""
    if tbl.primary_key is not None:
        order = "order by " + ", ".join(f"{alias}.{quote_ident(c)}" for c in tbl.primary_key.columns)
    ids = "" if tbl.is_view else f", {alias}.tableoid::int8 as wb_oid, {alias}.ctid::text as wb_ctid"
    select_cols = ", ".join(f"{alias}.{quote_ident(c)}" for c in columns)
    sql = (
        f"select {select_cols}, {row_text} as wb_row{ids} from {type_name} as {alias} "
        f"{filter_sql} {order} limit {limit + 1}"
    )
    await conn.execute(f"savepoint {_SAVEPOINT}_read")
    try:
        await conn.execute("set local row_security = off")
        records = await conn.fetch(sql, *args)
    except Exception as exc:
        import asyncpg

        await conn.execute(f"rollback to savepoint {_SAVEPOINT}_read; release savepoint {_SAVEPOINT}_read")
        if isinstance(exc, asyncpg.InsufficientPrivilegeError) and "row-level security" in str(exc):
            raise WhyError(
                f"Row Level Security applies to the connection's own role on {tbl.qualified_name}, so its rows "
                "cannot be read unfiltered; connect as the table owner or a role with BYPASSRLS."
            ) from None
        if isinstance(exc, asyncpg.PostgresError):
            raise WhyError(
                f"The candidate rows could not be read: {_error_text(exc)}. Check the --where filter."
            ) from None
        raise
    await conn.execute(f"rollback to savepoint {_SAVEPOINT}_read; release savepoint {_SAVEPOINT}_read")
    truncated = len(records) > limit
    records = records[:limit]
    values = [{c: r[c] for c in columns} for r in records]
    texts = [r["wb_row"] for r in records]
    ids_out = [] if tbl.is_view else [(r["wb_oid"], r["wb_ctid"]) for r in records]
    return columns, values, texts, ids_out, truncated


def _pre_policy(facts: TableFacts, op: Operation, applying: list[m.Policy]) -> tuple[Outcome | None, str]:
    """What decides before any policy is evaluated (privileges, RLS off, BYPASSRLS, owner)."""
    privilege = _PRIVILEGE[op]
    name = facts.qualified_name
    if not facts.schema_usage:
        return "refused", (
            f"role {facts.role} has no USAGE on schema {facts.schema}: grant usage on schema {facts.schema} "
            f"to {facts.role}"
        )
    if not facts.any_column_privilege:
        return "refused", (
            f"role {facts.role} has no {privilege} privilege on {name} (a missing GRANT looks like a policy that "
            f"filters everything): grant {privilege.lower()} on {name} to {facts.role}"
        )
    if facts.kind in ("view", "materialized_view"):
        return None, ""
    if not facts.rls_enabled:
        return (
            "visible" if op == "select" else "allowed",
            f"RLS is disabled on {name}: every row is {'visible' if op == 'select' else 'writable'}",
        )
    if facts.role_is_superuser:
        return "visible" if op == "select" else "allowed", f"role {facts.role} is a superuser: RLS does not apply"
    if facts.role_bypasses_rls:
        return "visible" if op == "select" else "allowed", f"role {facts.role} has BYPASSRLS: policies are not applied"
    if facts.role_is_owner and not facts.rls_forced:
        return "visible" if op == "select" else "allowed", (
            f"role {facts.role} owns {name} and RLS is not forced (FORCE ROW LEVEL SECURITY would apply policies)"
        )
    return None, ""


async def _explain_existing(
    session: _Session, tbl: m.Table, op: Operation, filter_sql: str, args: Sequence[object], limit: int
) -> WhyReport:
    facts = await _facts(session, tbl, op)
    columns, values, texts, ids, truncated = await _candidates(session, tbl, filter_sql, args, limit)
    notes: list[str] = []
    if len(columns) < len(tbl.columns):
        hidden = [c.name for c in tbl.columns if c.name not in columns]
        notes.append(f"columns the connection's role may not read are left out and taken as NULL: {', '.join(hidden)}")
    if tbl.is_view:
        return await _explain_view(session, tbl, facts, columns, values, texts, truncated, limit, notes)
    if op == "select" and not facts.table_privilege:
        readable = [c for c, ok in facts.column_privileges.items() if ok]
        notes.append(
            f"role {facts.role} may select only some columns ({', '.join(readable)}): `select *` fails with "
            "42501; select those columns by name"
        )
    pairs = await _applying(session.conn, facts.role, tbl)
    reads = True  # rows are picked by a filter, as an API request does: SELECT policies apply too
    rows = await _judge(session, tbl, facts, op, pairs, reads, values, texts, texts, columns)
    observed = await _observe_existing(session, tbl, facts, op, ids)
    for row, seen in zip(rows, observed, strict=True):
        row.observed = seen
    report = _report(session, tbl, facts, op, pairs, reads, rows, columns, truncated, limit)
    report.notes.extend(notes)
    return report


def _report(
    session: _Session,
    tbl: m.Table,
    facts: TableFacts,
    op: Operation,
    pairs: list[tuple[m.Policy, bool]],
    reads: bool,
    rows: list[RowExplanation],
    columns: list[str],
    truncated: bool,
    limit: int,
) -> WhyReport:
    """The report both explanations return: the policies that took part in ``op``, the others, the summary."""
    applying = [p for p, ok in pairs if ok and any(_policy_applies(p, s.command) for s in _stages(op, reads))]
    others = [p for p in tbl.policies if p not in applying]
    return WhyReport(
        identity=session.identity.describe(),
        operation=op,
        facts=facts,
        policies=applying,
        other_policies=others,
        rows=rows,
        columns=columns,
        summary=_summary(session.identity, facts, op, rows, truncated, applying, others),
        truncated=truncated,
        limit=limit,
    )


async def _judge(
    session: _Session,
    tbl: m.Table,
    facts: TableFacts,
    op: Operation,
    pairs: list[tuple[m.Policy, bool]],
    reads: bool,
    values: list[dict[str, Any]],
    old_texts: Sequence[str | None],
    new_texts: Sequence[str | None],
    columns: list[str],
    new_values: list[dict[str, Any]] | None = None,
) -> list[RowExplanation]:
    """Every row through every stage of the command; the first stage it fails decides."""
    applying_all = [p for p, ok in pairs if ok]
    decided, reason = _pre_policy(facts, op, applying_all)
    n = len(values)
    rows = [
        RowExplanation(values=values[i], outcome="visible", reason="", new_values=new_values[i] if new_values else None)
        for i in range(n)
    ]
    if decided is not None:
        for row in rows:
            row.outcome, row.reason = decided, reason
        return rows
    alive = [True] * n
    for stage in _stages(op, reads):
        applying = [p for p in applying_all if _policy_applies(p, stage.command)]
        texts = new_texts if stage.on_new_row else old_texts
        per_policy: list[list[PolicyCheck]] = []
        todo = [i for i in range(n) if alive[i] and texts[i] is not None]
        for policy in applying:
            clause = _clause_for(policy, stage)
            checks = await _evaluate(session, tbl, policy, clause, [texts[i] or "" for i in todo], stage.name)
            per_policy.append(checks)
        for position, i in enumerate(todo):
            checks = [pp[position] for pp in per_policy]
            rows[i].checks.extend(checks)
            ok, why = _gate_reason(stage, applying, checks, facts.role)
            failing = " ".join(c.expression for c in checks if not ok and c.value != "true" and repr(c.name) in why)
            hint = _referenced(failing, columns, rows[i].values, tbl.name) if failing else ""
            if ok:
                rows[i].reason = why
            else:
                alive[i] = False
                error = any(c.value == "error" for c in checks)
                rows[i].outcome = "error" if error else stage.fails_with
                rows[i].reason = (f"{stage.name}: " if op != "select" else "") + why + hint
                if stage.fails_with == "refused" and not error:
                    rows[i].reason += " (new row violates row-level security policy: the statement fails)"
    final: Outcome = "visible" if op == "select" else "allowed"
    for i in range(n):
        if alive[i]:
            rows[i].outcome = final
    return rows


async def _observe_existing(
    session: _Session, tbl: m.Table, facts: TableFacts, op: Operation, ids: list[tuple[int, str]]
) -> list[bool | None]:
    """The real statement as the identity, restricted to the candidate rows: which of them it reaches.

    Rows are matched by ``tableoid`` and ``ctid``, which need the table-level privilege: with column
    grants only, nothing is observed (None)."""
    import asyncpg

    if not ids:
        return []
    if not facts.table_privilege and facts.any_column_privilege:
        return [None] * len(ids)
    alias = quote_ident(tbl.name)
    type_name = f"{quote_ident(tbl.schema)}.{quote_ident(tbl.name)}"
    if op == "select":
        # ctid = any(...) is a TID scan: only the candidate rows are read (and RLS-checked), whatever the size
        sql = (
            f"select {alias}.tableoid::int8, {alias}.ctid::text from {type_name} as {alias} "
            f"where {alias}.ctid = any($1::text[]::tid[])"
        )
        try:
            seen = {(r[0], r[1]) for r in await session.as_identity(sql, sorted({c for _, c in ids}))}
        except asyncpg.InsufficientPrivilegeError:
            return [False] * len(ids)
        except asyncpg.PostgresError:
            return [None] * len(ids)
        return [(o, c) in seen for o, c in ids]
    where = f"{alias}.tableoid = $1::int8::oid and {alias}.ctid = $2::text::tid"
    if op == "update":
        column = next(
            (
                c.name
                for c in tbl.columns
                if c.identity is None and c.generated is None and facts.column_privileges.get(c.name, False)
            ),
            None,
        )
        if column is None:
            return [None] * len(ids)
        col = quote_ident(column)
        sql = f"with t as (update {type_name} as {alias} set {col} = {alias}.{col} where {where} returning 1) "
    else:
        sql = f"with t as (delete from {type_name} as {alias} where {where} returning 1) "
    sql += "select count(*) from t"
    out: list[bool | None] = []
    for oid, ctid in ids:  # one rolled-back savepoint per row: an error on one row says nothing of the others
        try:
            out.append(bool(await session.as_identity(sql, oid, ctid, fetch="fetchval")))
        except asyncpg.InsufficientPrivilegeError:
            out.append(False)
        except asyncpg.PostgresError:
            out.append(None)
    return out


async def _explain_view(
    session: _Session,
    tbl: m.Table,
    facts: TableFacts,
    columns: list[str],
    values: list[dict[str, Any]],
    texts: list[str],
    truncated: bool,
    limit: int,
    notes: list[str],
) -> WhyReport:
    """A view: privileges on the view, then whose rights its base tables are read with."""
    decided, reason = _pre_policy(facts, "select", [])
    type_name = f"{quote_ident(tbl.schema)}.{quote_ident(tbl.name)}"
    alias = quote_ident(tbl.name)
    observed: list[bool | None]
    try:
        seen = await session.as_identity(
            f"select {alias}::{type_name}::text from {type_name} as {alias} "
            f"where {alias}::{type_name}::text = any($1::text[])",
            list(texts),
        )
        got = {r[0] for r in seen}
        observed = [t in got for t in texts]
    except Exception as exc:
        import asyncpg

        if not isinstance(exc, asyncpg.PostgresError):
            raise
        observed = [False if isinstance(exc, asyncpg.InsufficientPrivilegeError) else None] * len(texts)
        if decided is None:
            decided, reason = "refused", f"reading the view as the identity fails: {_error_text(exc)}"
    base = ", ".join(facts.base_tables) or "its base tables"
    if decided is None:
        if facts.security_invoker:
            why = (
                f"security_invoker is on: the policies of {base} apply as {facts.role}; "
                f"explain them with %sbwhy --as ... on {base}"
            )
        elif facts.view_owner_bypasses_rls:
            why = (
                f"security_invoker is off: {base} are read as the view owner {facts.owner}, who bypasses RLS, so "
                "the view shows every row to anyone who may select from it"
            )
        else:
            why = f"security_invoker is off: the policies of {base} apply as the view owner {facts.owner}"
    rows = []
    for value, seen_it in zip(values, observed, strict=True):
        if decided is not None:
            rows.append(RowExplanation(values=value, outcome=decided, reason=reason, observed=seen_it))
        else:
            outcome: Outcome = "visible" if seen_it else "hidden"
            rows.append(RowExplanation(values=value, outcome=outcome, reason=why, observed=seen_it))
    if decided is None:
        notes.append("a view's rows are judged by running it as the identity; its base tables' policies decide")
    report = WhyReport(
        identity=session.identity.describe(),
        operation="select",
        facts=facts,
        policies=[],
        other_policies=[],
        rows=rows,
        columns=columns,
        summary="",
        notes=notes,
        truncated=truncated,
        limit=limit,
    )
    report.summary = _summary(session.identity, facts, "select", rows, truncated, [], [])
    if decided is None:
        report.summary += f" · {why}"
    return report


def _summary(
    identity: Identity,
    facts: TableFacts,
    op: Operation,
    rows: list[RowExplanation],
    truncated: bool,
    applying: list[m.Policy],
    others: list[m.Policy],
) -> str:
    passing = sum(r.passes for r in rows)
    total = f"{len(rows)}{'+' if truncated else ''}"
    verb = {"select": "visible to", "insert": "insertable by", "update": "updatable by", "delete": "deletable by"}[op]
    text = f"{passing} of {total} rows {verb} {identity.describe()} on {facts.qualified_name}"
    reasons: dict[str, int] = {}
    for row in rows:
        if not row.passes:
            key = re.sub(r" for [^()]*$", "", row.reason)
            reasons[key] = reasons.get(key, 0) + 1
    if reasons:
        top = max(reasons.items(), key=lambda kv: kv[1])
        text += f" · most common reason: {top[0]}"
    if facts.kind not in ("view", "materialized_view") and facts.rls_enabled and not applying and others:
        roles = sorted({r for p in others for r in p.roles})
        text += f" · the table's policies are for {', '.join(roles)}, not {facts.role}" if roles else ""
    return text


# -- statements ----------------------------------------------------------------------------------------
def _strip_returning(sql: str) -> tuple[str, bool]:
    """The statement without a top-level RETURNING clause, and whether it had one."""
    depth = 0
    for tok in tokenize(sql):
        if tok.kind is TokenKind.OP and tok.text in "([":
            depth += 1
        elif tok.kind is TokenKind.OP and tok.text in ")]":
            depth -= 1
        elif depth == 0 and tok.kind is TokenKind.WORD and tok.text.upper() == "RETURNING":
            return sql[: tok.start].rstrip(), True
    return sql.rstrip().rstrip(";").rstrip(), False


def _has_where(sql: str) -> bool:
    depth = 0
    for tok in tokenize(sql):
        if tok.kind is TokenKind.OP and tok.text in "([":
            depth += 1
        elif tok.kind is TokenKind.OP and tok.text in ")]":
            depth -= 1
        elif depth == 0 and tok.kind is TokenKind.WORD and tok.text.upper() == "WHERE":
            return True
    return False


def _find_modify(plan: Any) -> dict[str, Any] | None:
    if isinstance(plan, dict):
        if plan.get("Node Type") == "ModifyTable":
            return plan
        for child in plan.get("Plans", []):
            found = _find_modify(child)
            if found is not None:
                return found
    return None


async def explain_statement(
    conn: asyncpg.Connection,
    identity: Identity,
    sql: str,
    *,
    params: Mapping[str, object] | None = None,
    limit: int = DEFAULT_LIMIT,
    statement_timeout_ms: int = 5000,
) -> WhyReport:
    """Explain an INSERT, UPDATE or DELETE (or a SELECT from one table) row by row, as ``identity``.

    The proposed rows come from running the statement as the connection's own role with the identity's
    claims, inside a savepoint, with ``RETURNING``; then the identity's policies are evaluated on them and
    the real statement is run as the identity for comparison. Nothing is committed.
    """
    statements = split_statements(sql)
    if len(statements) != 1:
        raise WhyError(f"Give exactly one statement to explain (got {len(statements)}).")
    stmt = statements[0]
    keyword = first_keyword(stmt)
    if keyword == "SELECT":
        return await _explain_select_statement(conn, identity, stmt, params, limit, statement_timeout_ms)
    if keyword not in ("INSERT", "UPDATE", "DELETE"):
        raise WhyError(
            f"{keyword or 'This statement'} is not explained: give an INSERT, UPDATE or DELETE (or a SELECT "
            "from one table), or use %sbwhy --as USER TABLE --where ... for existing rows."
        )
    op: Operation = keyword.lower()  # type: ignore[assignment]
    bound = bind_parameters(stmt)
    args = resolve_arguments(bound, params or {}) if bound.names else []
    body, had_returning = _strip_returning(bound.sql)
    started = time.perf_counter()
    await _begin(conn)
    try:
        session = _Session(conn, identity, statement_timeout_ms)
        try:
            plan_rows = await session.as_owner_with_claims(f"explain (verbose, format json) {body}", *args)
        except Exception as exc:
            import asyncpg

            if isinstance(exc, asyncpg.PostgresError):
                raise WhyError(f"The statement does not plan: {_error_text(exc)}") from None
            raise
        plan = plan_rows[0][0]
        plan = json.loads(plan) if isinstance(plan, str) else plan
        node = _find_modify(plan[0]["Plan"])
        if node is None:
            raise WhyError("No table is written by this statement; nothing to explain.")
        await conn.execute("rollback")
        tbl = await _load_table(conn, node["Schema"], node["Relation Name"])
        await _begin(conn)
        session = _Session(conn, identity, statement_timeout_ms)
        report = await _explain_write(session, tbl, op, body, args, node.get("Alias") or tbl.name, had_returning, limit)
        report.statement = stmt
    finally:
        if conn.is_in_transaction():
            await conn.execute("rollback")
    report.elapsed_ms = (time.perf_counter() - started) * 1000
    return report


async def _explain_select_statement(
    conn: asyncpg.Connection,
    identity: Identity,
    stmt: str,
    params: Mapping[str, object] | None,
    limit: int,
    timeout_ms: int,
) -> WhyReport:
    """``select ... from T [where ...]`` of one table: explained as ``explain_rows(T, where=...)``."""
    sig = [t for t in tokenize(stmt) if t.kind not in (TokenKind.SPACE, TokenKind.COMMENT)]
    words = [t.text.upper() if t.kind is TokenKind.WORD else t.text for t in sig]
    depth = 0
    from_at = where_at = None
    for i, tok in enumerate(sig):
        if tok.kind is TokenKind.OP and tok.text in "([":
            depth += 1
        elif tok.kind is TokenKind.OP and tok.text in ")]":
            depth -= 1
        elif depth == 0 and words[i] == "FROM" and from_at is None:
            from_at = i
        elif depth == 0 and words[i] == "WHERE" and where_at is None:
            where_at = i
    end = where_at if where_at is not None else len(sig)
    target = sig[from_at + 1 : end] if from_at is not None else []
    names = "".join(t.text for t in target)
    simple = len(target) == 1 or (len(target) == 3 and target[1].text == ".")
    if (
        from_at is None
        or not simple
        or any(w in ("JOIN", ",", "ORDER", "GROUP", "LIMIT") for w in words[from_at + 1 :])
    ):
        raise WhyError(
            "Only a SELECT from one table, without an alias, with an optional WHERE is explained: use "
            "%sbwhy --as USER TABLE --where '...' for anything else."
        )
    where = stmt[sig[where_at].end :].strip().rstrip(";") if where_at is not None else None
    return await explain_rows(
        conn, identity, names, where=where, params=params, limit=limit, statement_timeout_ms=timeout_ms
    )


async def _explain_write(
    session: _Session,
    tbl: m.Table,
    op: Operation,
    body: str,
    args: Sequence[object],
    alias_name: str,
    had_returning: bool,
    limit: int,
) -> WhyReport:
    import asyncpg

    conn = session.conn
    facts = await _facts(session, tbl, op)
    alias = quote_ident(alias_name)
    type_name = f"{quote_ident(tbl.schema)}.{quote_ident(tbl.name)}"
    if op in ("update", "delete") and tbl.primary_key is None:
        raise WhyError(
            f"{tbl.qualified_name} has no primary key, so old and new rows cannot be paired: use "
            f"%sbwhy --as USER {tbl.qualified_name} --op {op} --where '...' instead."
        )
    if op == "insert":
        returning = f"returning null::text as wb_old, {alias}::{type_name}::text as wb_new"
    elif op == "delete":
        returning = f"returning {alias}::{type_name}::text as wb_old, null::text as wb_new"
    else:
        assert tbl.primary_key is not None
        pk = tbl.primary_key.columns
        match = " and ".join(f"o.{quote_ident(c)} = {alias}.{quote_ident(c)}" for c in pk)
        returning = (
            f"returning (select o::{type_name}::text from {type_name} as o where {match}) as wb_old, "
            f"{alias}::{type_name}::text as wb_new"
        )
    try:
        await conn.execute(f"savepoint {_SAVEPOINT}_w")
        await conn.execute("set local row_security = off")
        claims_only = Identity(role=None, claims=session.identity.claims)
        apply_sql, values = apply_statement(claims_only, session.timeout_ms)
        await conn.fetchval(apply_sql, *values)
        records = await conn.fetch(f"{body} {returning}", *args)
    except asyncpg.PostgresError as exc:
        await conn.execute(f"rollback to savepoint {_SAVEPOINT}_w")
        raise WhyError(
            f"The statement fails even for the table's owner, so RLS is not the cause: {_error_text(exc)}"
        ) from None
    finally:
        if conn.is_in_transaction():
            await conn.execute(f"rollback to savepoint {_SAVEPOINT}_w; release savepoint {_SAVEPOINT}_w")
    truncated = len(records) > limit
    records = records[:limit]
    columns = await _readable_columns(conn, tbl)
    old_texts = [r["wb_old"] for r in records]
    new_texts = [r["wb_new"] for r in records]

    async def decode(texts: list[str | None]) -> list[dict[str, Any]]:
        if not any(t is not None for t in texts):
            return [{} for _ in texts]
        cols = ", ".join(f"(r::{type_name}).{quote_ident(c)}" for c in columns)
        out: list[dict[str, Any]] = []
        for text in texts:
            if text is None:
                out.append({})
                continue
            rec = await conn.fetchrow(f"select {cols} from (select $1::text as r) s", text)
            out.append(dict(zip(columns, rec, strict=True)))
        return out

    old_values = await decode(old_texts)
    new_values = await decode(new_texts)
    shown = new_values if op == "insert" else old_values
    pairs = await _applying(conn, facts.role, tbl)
    reads = had_returning or (op != "insert" and _has_where(body))
    rows = await _judge(
        session,
        tbl,
        facts,
        op,
        pairs,
        reads,
        shown,
        old_texts,
        new_texts,
        columns,
        new_values=new_values if op == "update" else None,
    )
    # the real statement as the identity (rolled back): its status, for comparison
    observed_status: str
    try:
        count = await session.as_identity(
            f"with t as ({body} returning 1) select count(*) from t", *args, fetch="fetchval"
        )
        observed_status = f"{op.upper()} {count}"
    except asyncpg.PostgresError as exc:
        observed_status = f"error {_error_text(exc)}"
    report = _report(session, tbl, facts, op, pairs, reads, rows, columns, truncated, limit)
    report.observed_status = observed_status
    if not records:
        report.notes.append(
            "the statement matches no row even for the table's owner: the filter, not RLS, finds nothing"
        )
    if any(r.outcome in ("refused", "error") for r in rows):
        report.summary += " · the statement as a whole fails (one refused row aborts it)"
    report.summary += f" · the real statement as the identity: {observed_status} (rolled back)"
    return report


async def explain(
    engine: AsyncEngine,
    identity: Identity,
    table: str | None = None,
    *,
    statement: str | None = None,
    where: str | None = None,
    params: Mapping[str, object] | None = None,
    key: object | None = None,
    operation: str = "select",
    limit: int = DEFAULT_LIMIT,
) -> WhyReport:
    """:func:`explain_rows` (a ``table``) or :func:`explain_statement` (a ``statement``) on a connection checked
    out of ``engine``'s pool (the workbench's own engine works: ``await explain(wb.engine(), identity, "tasks")``)."""
    if (table is None) == (statement is None):
        raise WhyError("Give a table (explain the rows the identity sees) or a statement (explain a write), not both.")
    async with engine.connect() as sa_conn:
        raw = (await sa_conn.get_raw_connection()).driver_connection
        assert raw is not None
        try:
            if statement is not None:
                return await explain_statement(raw, identity, statement, params=params, limit=limit)
            assert table is not None
            return await explain_rows(
                raw, identity, table, where=where, params=params, key=key, operation=operation, limit=limit
            )
        finally:
            await sa_conn.rollback()
