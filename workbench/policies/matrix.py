"""The policy matrix: for identities x tables x operations, what RLS (and grants) actually let through.

Every operation is really tried, as the identity, inside ONE transaction that is always rolled back,
with a savepoint per cell (the identity is applied after each savepoint, so ``rollback to savepoint``
undoes it too). Probe rows come from the table's columns and constraints: defaults are left to apply,
NOT NULL columns get a value of their type (enum labels, values that pass the check constraints),
foreign keys point at rows that exist (preferably rows the identity itself can see), identity and serial
keys get a fresh value so no sequence is consumed; values can also be given per table.

Probes, read the way PostgREST runs requests:

- ``select``: ``select count(*) from t``: the rows the identity sees;
- ``insert``: one probe row, without ``returning`` (``Prefer: return=minimal``);
- ``update``: ``update t set c = c``: the rows it may update (reading ``c`` applies SELECT policies too,
  as the filter of a real request does);
- ``delete``: ``delete from t where c is null or c is not null``: the rows it may delete.
"""

from __future__ import annotations

import html
import json
import re
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from workbench.identity import Identity, IdentityError, parse_claims, user_identity
from workbench.impersonation import apply_statement
from workbench.query import QueryUsageError

if TYPE_CHECKING:
    import asyncpg
    import pandas as pd
    from sqlalchemy.ext.asyncio import AsyncEngine

Operation = Literal["select", "insert", "update", "delete"]
Outcome = Literal["allowed", "filtered", "refused", "constraint", "error"]
OPERATIONS: tuple[Operation, ...] = ("select", "insert", "update", "delete")
OUTCOMES: tuple[Outcome, ...] = ("allowed", "filtered", "refused", "constraint", "error")
OUTCOME_MEANING: dict[str, str] = {
    "allowed": "the statement ran and saw or changed rows",
    "filtered": "the statement ran but saw or changed no row (RLS hid them, or the table is empty)",
    "refused": "refused: no grant, a WITH CHECK policy, or a trigger raising insufficient_privilege (42501)",
    "constraint": "the policies let it through, but the probe row broke a constraint (class 23)",
    "error": "another error: the probe could not decide (see the message)",
}
POLICY_COMMANDS = {"r": "SELECT", "a": "INSERT", "w": "UPDATE", "d": "DELETE", "*": "ALL"}
_CELL_SAVEPOINT = "wb_policy_cell"
_LOOKUP_SAVEPOINT = "wb_policy_lookup"
_MAX_PROBE_ATTEMPTS = 25


class PolicyMatrixError(QueryUsageError):
    """Input the matrix cannot use (unknown table, duplicate identity labels, ...); says what to do."""


# -- result model ------------------------------------------------------------------------------------
@dataclass
class PolicyInfo:
    """One row of ``pg_policy``, with its expressions as PostgreSQL prints them."""

    schema: str
    table: str
    name: str
    command: str  # SELECT / INSERT / UPDATE / DELETE / ALL
    roles: list[str]
    permissive: bool = True
    using: str | None = None
    with_check: str | None = None

    @property
    def qualified_table(self) -> str:
        return f"{self.schema}.{self.table}"

    def sql(self) -> str:
        """The ``create policy`` statement that recreates it."""
        roles = ", ".join(r if r == "public" else quote_ident(r) for r in self.roles)
        parts = [
            f"create policy {quote_ident(self.name)} on {quote_ident(self.schema)}.{quote_ident(self.table)}",
            f"  as {'permissive' if self.permissive else 'restrictive'} for {self.command.lower()} to {roles}",
        ]
        if self.using is not None:
            parts.append(f"  using ({self.using})")
        if self.with_check is not None:
            parts.append(f"  with check ({self.with_check})")
        return "\n".join(parts) + ";"


@dataclass
class TableInfo:
    schema: str
    name: str
    rls_enabled: bool
    rls_forced: bool
    row_count: int  # as the connection's own role
    policies: list[PolicyInfo] = field(default_factory=list)

    @property
    def qualified_name(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass
class Cell:
    """What one identity got when it tried one operation on one table."""

    identity: str  # the identity's label
    table: str  # schema.table
    operation: Operation
    outcome: Outcome
    rows: int | None  # rows seen (select) or changed; None when the statement failed
    policies: list[str]  # names of the policies that apply to this identity, table and command
    statement: str
    params: list[str | None]
    fresh_keys: list[tuple[int, str]] = field(default_factory=list)  # (param index, SQL run as the connection role)
    sqlstate: str | None = None
    message: str | None = None
    note: str | None = None
    elapsed_ms: float = 0.0

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.identity, self.table, self.operation)

    def summary(self) -> str:
        """Short text for a matrix cell: ``✓ 3``, ``0``, ``✗``, ``⚠``, ``!``."""
        if self.outcome == "allowed":
            return f"✓ {self.rows}"
        if self.outcome == "filtered":
            return "0"
        return {"refused": "✗", "constraint": "⚠", "error": "!"}[self.outcome]


@dataclass
class PolicyMatrix:
    identities: list[Identity]
    tables: list[TableInfo]
    operations: list[Operation]
    cells: list[Cell]
    notes: list[str] = field(default_factory=list)
    elapsed_ms: float = 0.0

    @property
    def labels(self) -> list[str]:
        return [i.describe() for i in self.identities]

    def cell(self, identity: str, table: str, operation: str) -> Cell:
        table = _qualify(table)
        for c in self.cells:
            if c.identity == identity and c.table == table and c.operation == operation:
                return c
        raise KeyError(f"no cell for {identity!r} x {table} x {operation}; identities: {', '.join(self.labels)}")

    def table(self, name: str) -> TableInfo:
        name = _qualify(name)
        for t in self.tables:
            if t.qualified_name == name:
                return t
        raise KeyError(f"{name} is not in this matrix")

    def policy(self, table: str, name: str) -> PolicyInfo:
        for p in self.table(table).policies:
            if p.name == name:
                return p
        raise KeyError(f"no policy {name!r} on {table}")

    def outcomes(self) -> dict[tuple[str, str, str], tuple[str, int | None]]:
        """``(identity, table, operation) -> (outcome, rows)``: what tests compare."""
        return {c.key: (c.outcome, c.rows) for c in self.cells}

    def to_frame(self) -> pd.DataFrame:
        """One row per table and operation, one column per identity, cells as :meth:`Cell.summary`."""
        import pandas as pd

        rows = []
        for t in self.tables:
            for op in self.operations:
                row: dict[str, Any] = {"table": t.qualified_name, "operation": op}
                for label in self.labels:
                    row[label] = self.cell(label, t.qualified_name, op).summary()
                rows.append(row)
        return pd.DataFrame(rows).set_index(["table", "operation"])

    def to_html(self) -> str:
        return render_html(self)

    def _repr_html_(self) -> str:
        return self.to_html()


# -- identities ----------------------------------------------------------------------------------------
async def resolve_identities(
    conn: asyncpg.Connection,
    users: Sequence[str] = (),
    roles: Sequence[str] = ("anon", "service_role"),
    *,
    issuer: str = "http://127.0.0.1/auth/v1",
) -> list[Identity]:
    """Identities for the matrix: each role (anon, service_role, any role), then each user.

    A user is an email or uuid of ``auth.users``, optionally followed by ``+`` and a JSON object of extra
    claims: ``bob@example.com+{"user_role": "admin"}``.
    """
    identities: list[Identity] = []
    for role in roles:
        if await conn.fetchval("select 1 from pg_roles where rolname = $1", role) is None:
            raise PolicyMatrixError(
                f"Role {role!r} does not exist in this database (try anon, authenticated, service_role)."
            )
        identities.append(Identity.for_role(role))
    for spec in users:
        who, extra = split_user_spec(spec)
        identities.append(await user_identity(conn, who, issuer=issuer, extra_claims=extra))
    return identities


def split_user_spec(spec: str) -> tuple[str, dict[str, Any] | None]:
    """``"bob@example.com+{...}"`` -> ``("bob@example.com", {...})``."""
    pos = spec.find("+{")
    if pos == -1:
        return spec.strip(), None
    try:
        claims = parse_claims(spec[pos + 1 :])
    except IdentityError as exc:
        raise PolicyMatrixError(f"In {spec!r}: {exc}") from None
    return spec[:pos].strip(), claims


# -- catalog -------------------------------------------------------------------------------------------
def quote_ident(name: str) -> str:
    """An identifier quoted when PostgreSQL needs it (names come from the catalogs, never from users)."""
    if re.fullmatch(r"[a-z_][a-z0-9_$]*", name) and name not in _RESERVED:
        return name
    return '"' + name.replace('"', '""') + '"'


_RESERVED = {
    "all", "analyse", "analyze", "and", "any", "array", "as", "asc", "asymmetric", "both", "case", "cast",
    "check", "collate", "column", "constraint", "create", "current_catalog", "current_date", "current_role",
    "current_time", "current_timestamp", "current_user", "default", "deferrable", "desc", "distinct", "do",
    "else", "end", "except", "false", "fetch", "for", "foreign", "from", "grant", "group", "having", "in",
    "initially", "intersect", "into", "lateral", "leading", "limit", "localtime", "localtimestamp", "not",
    "null", "offset", "on", "only", "or", "order", "placing", "primary", "references", "returning", "select",
    "session_user", "some", "symmetric", "table", "then", "to", "trailing", "true", "union", "unique", "user",
    "using", "variadic", "when", "where", "window", "with", "authorization", "binary", "collation",
    "concurrently", "cross", "current_schema", "freeze", "full", "ilike", "inner", "is", "isnull", "join",
    "left", "like", "natural", "notnull", "outer", "overlaps", "right", "similar", "tablesample", "verbose",
}  # fmt: skip


def _qualify(name: str) -> str:
    return name if "." in name else f"public.{name}"


def split_table_name(name: str) -> tuple[str, str]:
    """``"tasks"`` -> ``("public", "tasks")``; ``"storage.objects"`` -> ``("storage", "objects")``."""
    name = name.strip()
    if not name:
        raise PolicyMatrixError("An empty table name was given; write schema.table or a table of public.")
    schema, _, table = _qualify(name).partition(".")
    return schema.strip('"'), table.strip('"')


@dataclass
class _Column:
    name: str
    type_sql: str  # qualified, as format_type prints it under search_path = pg_catalog
    not_null: bool
    identity: str  # '' / 'a' (always) / 'd' (by default)
    generated: bool
    default: str | None
    category: str  # pg_type.typcategory of the (base) type
    base: str  # base type name
    labels: list[str]
    attnum: int

    @property
    def sequence_default(self) -> bool:
        return bool(self.identity) or (self.default is not None and self.default.startswith("nextval("))


@dataclass
class _ForeignKey:
    name: str
    columns: list[str]
    ref_schema: str
    ref_table: str
    ref_columns: list[str]


@dataclass
class _TableShape:
    oid: int
    info: TableInfo
    columns: list[_Column]
    foreign_keys: list[_ForeignKey]
    constraint_columns: dict[str, list[str]]  # constraint or unique index name -> its columns
    unique_sets: list[list[str]]
    pk: list[str]

    def column(self, name: str) -> _Column:
        return next(c for c in self.columns if c.name == name)

    @property
    def sql_name(self) -> str:
        return f"{quote_ident(self.info.schema)}.{quote_ident(self.info.name)}"


async def _resolve_tables(conn: asyncpg.Connection, tables: Sequence[str] | None) -> list[tuple[int, str, str]]:
    if not tables:
        rows = await conn.fetch(
            """select c.oid, n.nspname, c.relname from pg_catalog.pg_class c
               join pg_catalog.pg_namespace n on n.oid = c.relnamespace
               where n.nspname = 'public' and c.relkind in ('r', 'p') and not c.relispartition
               order by c.relname"""
        )
        if not rows:
            raise PolicyMatrixError("The public schema has no tables; name tables with --tables schema.table.")
        return [(r[0], r[1], r[2]) for r in rows]
    found = []
    for name in tables:
        schema, table = split_table_name(name)
        oid = await conn.fetchval(
            """select c.oid from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
               where n.nspname = $1 and c.relname = $2 and c.relkind in ('r', 'p')""",
            schema,
            table,
        )
        if oid is None:
            known = await conn.fetch(
                """select n.nspname || '.' || c.relname from pg_catalog.pg_class c
                   join pg_catalog.pg_namespace n on n.oid = c.relnamespace
                   where n.nspname = $1 and c.relkind in ('r', 'p') order by 1 limit 20""",
                schema,
            )
            listing = ", ".join(r[0] for r in known) or f"none in schema {schema}"
            raise PolicyMatrixError(f"No table {schema}.{table}. Tables you can use: {listing}.")
        found.append((oid, schema, table))
    return found


async def _policies(conn: asyncpg.Connection, oid: int, schema: str, table: str) -> list[PolicyInfo]:
    rows = await conn.fetch(
        """select p.polname, p.polcmd::text as cmd, p.polpermissive,
                  case when p.polroles = '{0}' then array['public']
                       else array(select r.rolname from pg_catalog.pg_roles r
                                  where r.oid = any(p.polroles) order by r.rolname) end as roles,
                  pg_catalog.pg_get_expr(p.polqual, p.polrelid) as using_expr,
                  pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid) as check_expr
           from pg_catalog.pg_policy p where p.polrelid = $1 order by p.polname""",
        oid,
    )
    return [
        PolicyInfo(
            schema=schema,
            table=table,
            name=r["polname"],
            command=POLICY_COMMANDS[r["cmd"]],
            roles=list(r["roles"]),
            permissive=r["polpermissive"],
            using=r["using_expr"],
            with_check=r["check_expr"],
        )
        for r in rows
    ]


async def _shape(conn: asyncpg.Connection, oid: int, schema: str, table: str) -> _TableShape:
    """Columns, keys and constraints, with type names and defaults printed schema-qualified."""
    await conn.execute("savepoint wb_policy_catalog; set local search_path = pg_catalog")
    try:
        cols = await conn.fetch(
            """select a.attnum, a.attname, format_type(a.atttypid, a.atttypmod) as type_sql, a.attnotnull,
                      a.attidentity::text as ident, a.attgenerated::text as gen,
                      pg_get_expr(d.adbin, d.adrelid) as default_expr,
                      bt.typcategory::text as category, bt.typname as base,
                      case when bt.typtype = 'e' then array(select e.enumlabel from pg_enum e
                           where e.enumtypid = bt.oid order by e.enumsortorder) end as labels
               from pg_attribute a
               join pg_type t on t.oid = a.atttypid
               join pg_type bt on bt.oid = case when t.typtype = 'd' then t.typbasetype else t.oid end
               left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
               where a.attrelid = $1 and a.attnum > 0 and not a.attisdropped
               order by a.attnum""",
            oid,
        )
        fks = await conn.fetch(
            """select c.conname,
                      array(select a.attname from unnest(c.conkey) with ordinality k(n, i)
                            join pg_attribute a on a.attrelid = c.conrelid and a.attnum = k.n order by k.i) as cols,
                      rn.nspname as ref_schema, rc.relname as ref_table,
                      array(select a.attname from unnest(c.confkey) with ordinality k(n, i)
                            join pg_attribute a on a.attrelid = c.confrelid and a.attnum = k.n order by k.i) as ref_cols
               from pg_constraint c join pg_class rc on rc.oid = c.confrelid
               join pg_namespace rn on rn.oid = rc.relnamespace
               where c.conrelid = $1 and c.contype = 'f' order by c.conname""",
            oid,
        )
        constraints = await conn.fetch(
            """select c.conname as name, c.contype::text as kind,
                      array(select a.attname from unnest(c.conkey) k(n)
                            join pg_attribute a on a.attrelid = c.conrelid and a.attnum = k.n) as cols
               from pg_constraint c where c.conrelid = $1
               union all
               select ic.relname, case when i.indisprimary then 'p' else 'u' end,
                      array(select a.attname from unnest(i.indkey::int2[]) k(n)
                            join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.n)
               from pg_index i join pg_class ic on ic.oid = i.indexrelid
               where i.indrelid = $1 and i.indisunique and i.indexprs is null and i.indpred is null""",
            oid,
        )
        rls = await conn.fetchrow("select relrowsecurity, relforcerowsecurity from pg_class where oid = $1", oid)
    finally:
        await conn.execute("rollback to savepoint wb_policy_catalog; release savepoint wb_policy_catalog")
    columns = [
        _Column(
            name=r["attname"],
            type_sql=r["type_sql"],
            not_null=r["attnotnull"],
            identity=r["ident"],
            generated=bool(r["gen"]),
            default=r["default_expr"],
            category=r["category"],
            base=r["base"],
            labels=list(r["labels"] or []),
            attnum=r["attnum"],
        )
        for r in cols
    ]
    constraint_columns = {r["name"]: list(r["cols"]) for r in constraints}
    unique_sets = [list(r["cols"]) for r in constraints if r["kind"] in ("p", "u")]
    pk = next((list(r["cols"]) for r in constraints if r["kind"] == "p"), [])
    foreign_keys = [
        _ForeignKey(r["conname"], list(r["cols"]), r["ref_schema"], r["ref_table"], list(r["ref_cols"])) for r in fks
    ]
    qualified = f"{quote_ident(schema)}.{quote_ident(table)}"
    count = int(await conn.fetchval(f"select count(*) from {qualified}"))
    info = TableInfo(
        schema=schema,
        name=table,
        rls_enabled=rls["relrowsecurity"],
        rls_forced=rls["relforcerowsecurity"],
        row_count=count,
        policies=await _policies(conn, oid, schema, table),
    )
    return _TableShape(oid, info, columns, foreign_keys, constraint_columns, unique_sets, pk)


# -- probe rows ----------------------------------------------------------------------------------------
def candidate_values(col: _Column) -> list[str]:
    """Values of the column's type to try, as text input (``$n::text::type``), most likely first."""
    token = secrets.token_hex(4)
    if col.labels:
        return list(col.labels)
    if col.type_sql.endswith("[]") or col.category == "A":
        return ["{}"]
    if col.base == "uuid":
        import uuid

        return [str(uuid.uuid4()), str(uuid.uuid4())]
    if col.category == "S":
        limit = _varchar_limit(col.type_sql)
        values = [f"wb-probe-{token}", f"probe{token}@example.com", "x", "1"]
        return [v[:limit] if limit else v for v in values]
    if col.category == "N":
        return ["1", "0", "100", "-1"]
    if col.category == "B":
        return ["true", "false"]
    if col.category == "D":
        return ["now", "epoch"]
    if col.category == "T":
        return ["1 hour", "0"]
    if col.base in ("json", "jsonb"):
        return ["{}", "[]", '"probe"']
    if col.category == "I":
        return ["127.0.0.1"]
    if col.base == "bytea":
        return ["\\x00"]
    return [f"wb-probe-{token}", "0"]


def _varchar_limit(type_sql: str) -> int | None:
    m = re.search(r"\((\d+)\)$", type_sql)
    return int(m.group(1)) if m and ("char" in type_sql or "bit" in type_sql) else None


@dataclass
class _Probe:
    """An insert probe being built: column -> text value, plus keys computed fresh per run."""

    values: dict[str, str | None]
    fresh: dict[str, str]  # column -> SQL computing a fresh key as the connection role
    given: set[str] = field(default_factory=set)  # values the user gave: never changed
    null_defaults: set[str] = field(default_factory=set)  # filled because the default was NULL when settled
    candidate_index: dict[str, int] = field(default_factory=dict)

    def copy(self) -> _Probe:
        return _Probe(
            dict(self.values), dict(self.fresh), set(self.given), set(self.null_defaults), dict(self.candidate_index)
        )

    def statement(
        self, shape: _TableShape, fresh_values: Mapping[str, str] | None = None
    ) -> tuple[str, list[str | None], list[tuple[int, str]]]:
        names = [c.name for c in shape.columns if c.name in self.values or c.name in self.fresh]
        if not names:
            return f"insert into {shape.sql_name} default values", [], []
        params: list[str | None] = []
        fresh_keys: list[tuple[int, str]] = []
        placeholders = []
        for i, name in enumerate(names):
            placeholders.append(f"${i + 1}::text::{shape.column(name).type_sql}")
            if name in self.values:
                params.append(self.values[name])
            else:
                params.append((fresh_values or {}).get(name))
                fresh_keys.append((i, self.fresh[name]))
        override = " overriding system value" if any(shape.column(n).identity == "a" for n in names) else ""
        cols = ", ".join(quote_ident(n) for n in names)
        sql = f"insert into {shape.sql_name} ({cols}){override} values ({', '.join(placeholders)})"
        return sql, params, fresh_keys


def _fk_for(shape: _TableShape, column: str) -> _ForeignKey | None:
    return next((fk for fk in shape.foreign_keys if column in fk.columns), None)


def _base_probe(shape: _TableShape, given: Mapping[str, Any]) -> _Probe:
    unknown = set(given) - {c.name for c in shape.columns}
    if unknown:
        raise PolicyMatrixError(
            f"Probe values for {shape.info.qualified_name} name no such column: {', '.join(sorted(unknown))}. "
            f"Columns: {', '.join(c.name for c in shape.columns)}."
        )
    probe = _Probe(values={}, fresh={}, given=set(given))
    for col in shape.columns:
        if col.name in given:
            value = given[col.name]
            probe.values[col.name] = None if value is None else _as_text(value)
        elif col.generated:
            continue
        elif col.sequence_default:
            probe.fresh[col.name] = f"select coalesce(max({quote_ident(col.name)}), 0) + 1 from {shape.sql_name}"
        elif col.default is not None or not col.not_null:
            continue
        else:
            probe.values[col.name] = candidate_values(col)[0]
            probe.candidate_index[col.name] = 0
    return probe


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


async def _referenced_rows(
    conn: asyncpg.Connection, shape: _TableShape, fk: _ForeignKey, limit: int = 5
) -> list[list[str | None]]:
    """Rows of the referenced table (as whoever is applied now), unreferenced ones first when the
    foreign key columns are unique in this table."""
    ref = f"{quote_ident(fk.ref_schema)}.{quote_ident(fk.ref_table)}"
    cols = ", ".join(f"r.{quote_ident(c)}::text" for c in fk.ref_columns)
    order = ", ".join(f"r.{quote_ident(c)}" for c in fk.ref_columns)
    unique = any(sorted(s) == sorted(fk.columns) for s in shape.unique_sets)
    used = ""
    if unique:
        match = " and ".join(
            f"t.{quote_ident(a)} = r.{quote_ident(b)}" for a, b in zip(fk.columns, fk.ref_columns, strict=True)
        )
        used = f"exists (select 1 from {shape.sql_name} t where {match}), "
    rows = await conn.fetch(f"select {cols} from {ref} r order by {used}{order} limit {int(limit)}")
    return [list(r) for r in rows]


async def _try(conn: asyncpg.Connection, sql: str, *args: Any) -> tuple[str | None, BaseException | None]:
    """Run ``sql`` in a savepoint that is always rolled back: (status, error)."""
    import asyncpg

    await conn.execute(f"savepoint {_LOOKUP_SAVEPOINT}")
    try:
        return await conn.execute(sql, *args), None
    except asyncpg.PostgresError as exc:
        return None, exc
    finally:
        await conn.execute(f"rollback to savepoint {_LOOKUP_SAVEPOINT}; release savepoint {_LOOKUP_SAVEPOINT}")


async def _fetch_quietly(conn: asyncpg.Connection, coro_factory: Any) -> Any:
    """Run a lookup in a savepoint; errors (no grant, ...) give None. Kept on success."""
    import asyncpg

    await conn.execute(f"savepoint {_LOOKUP_SAVEPOINT}")
    try:
        result = await coro_factory()
    except asyncpg.PostgresError:
        await conn.execute(f"rollback to savepoint {_LOOKUP_SAVEPOINT}; release savepoint {_LOOKUP_SAVEPOINT}")
        return None
    await conn.execute(f"release savepoint {_LOOKUP_SAVEPOINT}")
    return result


async def _fill_foreign_keys(
    conn: asyncpg.Connection, shape: _TableShape, probe: _Probe, sub: str | None, columns: set[str]
) -> None:
    """Point the foreign keys covering ``columns`` at rows that exist for whoever is applied now:
    the user's own id for ``auth.users``, else the first row they can see, else keep the value."""
    for fk in shape.foreign_keys:
        if not columns & set(fk.columns):
            continue
        if sub and (fk.ref_schema, fk.ref_table, fk.ref_columns) == ("auth", "users", ["id"]):
            probe.values[fk.columns[0]] = sub
            continue
        rows = await _fetch_quietly(conn, lambda fk=fk: _referenced_rows(conn, shape, fk, 1))
        if rows:
            for name, value in zip(fk.columns, rows[0], strict=True):
                probe.values[name] = value


async def _null_defaults(conn: asyncpg.Connection, shape: _TableShape, probe: _Probe) -> set[str]:
    """NOT NULL columns left to a default that evaluates to NULL now (``auth.uid()`` for service_role)."""
    cols = [
        c
        for c in shape.columns
        if c.not_null
        and c.default is not None
        and not c.sequence_default
        and not c.generated
        and c.name not in probe.values
    ]
    if not cols:
        return set()
    exprs = ", ".join(f"({c.default}) is null" for c in cols)
    row = await _fetch_quietly(conn, lambda: conn.fetchrow(f"select {exprs}"))
    if row is None:
        return set()
    return {c.name for c, is_null in zip(cols, row, strict=True) if is_null}


async def _settle_probe(conn: asyncpg.Connection, shape: _TableShape, probe: _Probe) -> list[str]:
    """Adjust the probe until the connection's own role can insert it (class 23 errors name the
    constraint or column to change). Returns notes about what could not be satisfied."""
    for name in await _null_defaults(conn, shape, probe):
        probe.values[name] = candidate_values(shape.column(name))[0]
        probe.candidate_index[name] = 0
        probe.null_defaults.add(name)
    fk_cols = {c for fk in shape.foreign_keys for c in fk.columns if c in probe.values and c not in probe.given}
    await _fill_foreign_keys(conn, shape, probe, None, fk_cols)
    fk_rows: dict[str, list[list[str | None]]] = {}
    last_error = ""
    for _attempt in range(_MAX_PROBE_ATTEMPTS):
        fresh_values = {name: str(await conn.fetchval(sql)) for name, sql in probe.fresh.items()}
        sql, params, _fresh = probe.statement(shape, fresh_values)
        _status, error = await _try(conn, sql, *params)
        if error is None:
            return []
        state = getattr(error, "sqlstate", "") or ""
        last_error = f"{state}: {_error_text(error)}"
        if not state.startswith("23"):
            return [f"{shape.info.qualified_name}: the probe row fails as the connection role ({last_error})."]
        column = getattr(error, "column_name", None)
        constraint = getattr(error, "constraint_name", None)
        targets = [column] if column else shape.constraint_columns.get(constraint or "", [])
        for name in targets:
            fk = _fk_for(shape, name)
            if fk is not None and fk.name not in fk_rows:
                fk_rows[fk.name] = await _referenced_rows(conn, shape, fk, 10)
        if not _vary(shape, probe, targets, fk_rows):
            break
    return [f"{shape.info.qualified_name}: no probe row satisfied every constraint ({last_error}); give one."]


def _vary(shape: _TableShape, probe: _Probe, targets: list[str], fk_rows: dict[str, list[list[str | None]]]) -> bool:
    """Advance the target columns like an odometer (last one first) to the next combination of
    candidate values; False when every combination was tried."""
    groups: list[tuple[list[str], list[list[str | None]]]] = []  # (columns, options) moved together
    seen: set[str] = set()
    for name in targets:
        if name in seen or name in probe.fresh or name in probe.given:
            continue
        fk = _fk_for(shape, name)
        if fk is not None:
            seen.update(fk.columns)
            groups.append((fk.columns, fk_rows.get(fk.name, [])))
        else:
            seen.add(name)
            groups.append(([name], [[v] for v in candidate_values(shape.column(name))]))
    for columns, options in reversed(groups):
        index = probe.candidate_index.get(columns[0], 0) + 1
        wrapped = index >= len(options)
        if wrapped:
            index = 0
        if options:
            for col_name, value in zip(columns, options[index], strict=True):
                probe.values[col_name] = value
                probe.candidate_index[col_name] = index
        if not wrapped:
            return True
    return False


# -- the matrix ----------------------------------------------------------------------------------------
def _dml_statement(shape: _TableShape, operation: Operation) -> str | None:
    if operation == "select":
        return f"select count(*) from {shape.sql_name}"
    updatable = [c for c in shape.columns if not c.generated and c.identity != "a"]
    preferred = [c for c in updatable if c.name not in shape.pk] or updatable
    if operation == "update":
        if not preferred:
            return None
        col = quote_ident(preferred[0].name)
        return f"update {shape.sql_name} set {col} = {col}"
    if operation == "delete":
        key = quote_ident((shape.pk or [shape.columns[0].name])[0])
        return f"delete from {shape.sql_name} where {key} is null or {key} is not null"
    return None


def rows_from_status(status: str) -> int:
    """``'UPDATE 3'`` -> 3, ``'INSERT 0 1'`` -> 1."""
    parts = status.split()
    return int(parts[-1]) if parts and parts[-1].isdigit() else 0


def classify_error(sqlstate: str | None) -> Outcome:
    if sqlstate == "42501":
        return "refused"
    if sqlstate and sqlstate.startswith("23"):
        return "constraint"
    return "error"


async def _applicable_policies(
    conn: asyncpg.Connection, shape: _TableShape, operation: Operation, role: str | None
) -> tuple[list[str], str | None]:
    """Policies PostgreSQL applies for this role and command (a probe that reads rows adds SELECT's),
    or a note saying why none apply."""
    info = shape.info
    who = role or await conn.fetchval("select current_user")
    bypass = await conn.fetchrow(
        """select r.rolsuper or r.rolbypassrls as bypass, r.rolsuper,
                  (select c.relowner = r.oid from pg_catalog.pg_class c where c.oid = $2) as owner
           from pg_catalog.pg_roles r where r.rolname = $1""",
        who,
        shape.oid,
    )
    if not info.rls_enabled:
        return [], "RLS is disabled on this table: grants alone decide"
    if bypass is not None and bypass["bypass"]:
        return [], f"{who} bypasses RLS ({'superuser' if bypass['rolsuper'] else 'BYPASSRLS'})"
    if bypass is not None and bypass["owner"] and not info.rls_forced:
        return [], f"{who} owns the table and RLS is not forced: policies do not apply"
    commands = {"select": ["r"], "insert": ["a"], "update": ["w", "r"], "delete": ["d", "r"]}[operation]
    rows = await conn.fetch(
        """select p.polname from pg_catalog.pg_policy p
           where p.polrelid = $1 and (p.polcmd::text = any($2::text[]) or p.polcmd = '*')
             and (p.polroles = '{0}' or exists (select 1 from unnest(p.polroles) r(oid)
                                                  where pg_catalog.pg_has_role($3, r.oid, 'MEMBER')))
           order by p.polcmd = 'r', p.polname""",
        shape.oid,
        commands,
        who,
    )
    names = [r[0] for r in rows]
    return names, None if names else "no policy applies: RLS denies every row (default deny)"


async def _run_cell(
    conn: asyncpg.Connection,
    shape: _TableShape,
    operation: Operation,
    identity: Identity,
    base: _Probe | None,
    statement_timeout_ms: int,
) -> Cell:
    import asyncpg

    label, table = identity.describe(), shape.info.qualified_name
    policies, note = await _applicable_policies(conn, shape, operation, identity.role)
    started = time.perf_counter()
    await conn.execute(f"savepoint {_CELL_SAVEPOINT}")
    try:
        params: list[str | None] = []
        fresh: list[tuple[int, str]] = []
        probe = base.copy() if base is not None else None
        fresh_values = {}
        if operation == "insert" and probe is not None:
            fresh_values = {name: str(await conn.fetchval(sql)) for name, sql in probe.fresh.items()}
        set_sql, set_args = apply_statement(identity, statement_timeout_ms)
        await conn.execute(set_sql, *set_args)
        if operation == "insert":
            assert probe is not None
            for name in probe.null_defaults:
                probe.values.pop(name, None)
            for name in await _null_defaults(conn, shape, probe):
                settled = base.values.get(name) if base is not None else None
                probe.values[name] = settled if settled is not None else candidate_values(shape.column(name))[0]
            fk_cols = {c for fk in shape.foreign_keys for c in fk.columns if c in probe.values and c not in probe.given}
            await _fill_foreign_keys(conn, shape, probe, identity.sub, fk_cols)
            sql, params, fresh = probe.statement(shape, fresh_values)
        else:
            statement = _dml_statement(shape, operation)
            if statement is None:
                return Cell(label, table, operation, "error", None, policies, "", [],
                            message="the table has no column an update can set", note=note)  # fmt: skip
            sql = statement
        try:
            if operation == "select":
                rows = int(await conn.fetchval(sql, *params))
            else:
                rows = rows_from_status(await conn.execute(sql, *params))
        except asyncpg.PostgresError as exc:
            failed = classify_error(exc.sqlstate)
            if failed == "constraint":
                note = "the policies let it through; the probe row broke a constraint" + (f" ({note})" if note else "")
            return Cell(label, table, operation, failed, None, policies, sql, params, fresh,
                        sqlstate=exc.sqlstate, message=_error_text(exc), note=note,
                        elapsed_ms=(time.perf_counter() - started) * 1000)  # fmt: skip
        outcome: Outcome = "allowed" if rows > 0 else "filtered"
        if outcome == "filtered" and shape.info.row_count == 0 and operation != "insert":
            note = "the table is empty" + (f"; {note}" if note else "")
        return Cell(label, table, operation, outcome, rows, policies, sql, params, fresh,
                    note=note, elapsed_ms=(time.perf_counter() - started) * 1000)  # fmt: skip
    finally:
        await conn.execute(f"rollback to savepoint {_CELL_SAVEPOINT}; release savepoint {_CELL_SAVEPOINT}")


def _error_text(exc: BaseException) -> str:
    from workbench.errors import redact

    text = str(getattr(exc, "message", None) or exc)
    detail = getattr(exc, "detail", None)
    return redact(f"{text} ({detail})" if detail else text)


async def _sequence_state(conn: asyncpg.Connection) -> dict[str, int | None]:
    rows = await conn.fetch(
        "select schemaname || '.' || sequencename as name, last_value from pg_catalog.pg_sequences "
        "where schemaname not in ('pg_catalog', 'information_schema')"
    )
    return {r["name"]: r["last_value"] for r in rows}


async def build_matrix(
    conn: asyncpg.Connection,
    identities: Sequence[Identity],
    tables: Sequence[str] | None = None,
    operations: Sequence[str] = OPERATIONS,
    *,
    probe_rows: Mapping[str, Mapping[str, Any]] | None = None,
    statement_timeout_ms: int = 5000,
) -> PolicyMatrix:
    """Try every operation as every identity on every table, in one transaction that is rolled back.

    ``conn`` is an asyncpg connection as the project's admin role (``postgres``), outside a transaction.
    ``probe_rows`` gives insert values per table (``{"public.tasks": {"title": "x"}}``).
    """
    started = time.perf_counter()
    if not identities:
        raise PolicyMatrixError("Give at least one identity (anon, a user, service_role, ...).")
    labels = [i.describe() for i in identities]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise PolicyMatrixError(f"Two identities share the label {', '.join(duplicates)}; give each a distinct label.")
    bad_ops = [op for op in operations if op not in OPERATIONS]
    if bad_ops:
        raise PolicyMatrixError(f"Unknown operation(s) {', '.join(bad_ops)}; choose from {', '.join(OPERATIONS)}.")
    for identity in identities:
        if identity.role and await conn.fetchval("select 1 from pg_roles where rolname = $1", identity.role) is None:
            raise PolicyMatrixError(f"Identity {identity.describe()!r}: role {identity.role!r} does not exist.")
    given = {_qualify(k): v for k, v in (probe_rows or {}).items()}
    resolved = await _resolve_tables(conn, tables)
    unknown = set(given) - {f"{s}.{t}" for _, s, t in resolved}
    if unknown:
        raise PolicyMatrixError(f"Probe rows given for tables not in the matrix: {', '.join(sorted(unknown))}.")
    before = await _sequence_state(conn)
    cells: list[Cell] = []
    notes: list[str] = []
    infos: list[TableInfo] = []
    transaction = conn.transaction()
    await transaction.start()
    try:
        for oid, schema, table in resolved:
            shape = await _shape(conn, oid, schema, table)
            infos.append(shape.info)
            base = None
            if "insert" in operations:
                base = _base_probe(shape, given.get(shape.info.qualified_name, {}))
                notes += await _settle_probe(conn, shape, base)
            for op in operations:
                for identity in identities:
                    cells.append(await _run_cell(conn, shape, op, identity, base, statement_timeout_ms))  # type: ignore[arg-type]
    finally:
        await transaction.rollback()
    after = await _sequence_state(conn)
    for name, value in after.items():
        if before.get(name) != value:
            notes.append(f"sequence {name} moved from {before.get(name)} to {value} (a trigger or default used it; "
                         "sequences are not transactional)")  # fmt: skip
    return PolicyMatrix(
        identities=list(identities),
        tables=infos,
        operations=list(operations),  # type: ignore[arg-type]
        cells=cells,
        notes=notes,
        elapsed_ms=(time.perf_counter() - started) * 1000,
    )


async def policy_matrix(
    engine: AsyncEngine,
    identities: Sequence[Identity],
    tables: Sequence[str] | None = None,
    operations: Sequence[str] = OPERATIONS,
    **kwargs: Any,
) -> PolicyMatrix:
    """:func:`build_matrix` on a connection of ``engine`` (which must connect as the admin role)."""
    async with engine.connect() as sa_conn:
        raw = (await sa_conn.get_raw_connection()).driver_connection
        assert raw is not None
        try:
            return await build_matrix(raw, identities, tables, operations, **kwargs)
        finally:
            await sa_conn.rollback()


# -- rendering -----------------------------------------------------------------------------------------
COLOURS = {
    "allowed": "#c6efce",
    "filtered": "#eeeeee",
    "refused": "#ffc7ce",
    "constraint": "#ffeb9c",
    "error": "#e4c1f9",
}


def render_html(matrix: PolicyMatrix) -> str:
    """A static colour-coded table; each cell's ``<details>`` shows its statement and policies' SQL."""
    esc = html.escape
    head = "".join(f"<th>{esc(label)}</th>" for label in matrix.labels)
    body = []
    for t in matrix.tables:
        for n, op in enumerate(matrix.operations):
            first = (
                f"<th rowspan='{len(matrix.operations)}' style='text-align:left'>{esc(t.qualified_name)}"
                + ("" if t.rls_enabled else " <span title='RLS disabled'>(RLS off)</span>")
                + "</th>"
            )
            row = [first if n == 0 else "", f"<td><b>{op}</b></td>"]
            for label in matrix.labels:
                c = matrix.cell(label, t.qualified_name, op)
                pols = "".join(f"<pre>{esc(matrix.policy(t.qualified_name, p).sql())}</pre>" for p in c.policies)
                explain = esc(c.note or "") + (f"<br>{esc(c.message)}" if c.message else "")
                row.append(
                    f"<td class='wb-policy-cell wb-policy-{c.outcome}' style='background:{COLOURS[c.outcome]}'>"
                    f"<details><summary>{esc(c.summary())}</summary><div>{esc(OUTCOME_MEANING[c.outcome])}</div>"
                    f"<div>{explain}</div><pre>{esc(c.statement)}</pre>{pols}</details></td>"
                )
            body.append("<tr>" + "".join(row) + "</tr>")
    legend = " ".join(f"<span style='background:{COLOURS[o]};padding:0 .4em'>{o}</span>" for o in OUTCOMES)
    notes = "".join(f"<li>{esc(n)}</li>" for n in matrix.notes)
    return (
        "<div class='wb-policy-matrix-static'><table><thead><tr><th>table</th><th>operation</th>"
        f"{head}</tr></thead><tbody>{''.join(body)}</tbody></table><div>{legend}</div>"
        f"{f'<ul>{notes}</ul>' if notes else ''}</div>"
    )
