"""What the matrix tries on a table: its shape from the catalogs, and probe statements derived from it.

Insert probes come from the columns and constraints: defaults are left to apply, NOT NULL columns get a
value of their type (enum labels, values that pass the check constraints), foreign keys point at rows that
exist (preferably rows the identity itself can see), identity and serial keys get a fresh value computed
from the table so no sequence is consumed. :func:`settle_probe` adjusts the values until the connection's
own role could insert the row (each class 23 error names the constraint or column to change).
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from workbench.policies.model import (
    POLICY_COMMANDS,
    Operation,
    PolicyInfo,
    PolicyMatrixError,
    TableInfo,
    quote_ident,
    split_table_name,
)

if TYPE_CHECKING:
    import asyncpg

_LOOKUP_SAVEPOINT = "wb_policy_lookup"
_MAX_PROBE_ATTEMPTS = 25


# -- catalog -------------------------------------------------------------------------------------------
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
class TableShape:
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


async def resolve_tables(conn: asyncpg.Connection, tables: Sequence[str] | None) -> list[tuple[int, str, str]]:
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


async def table_shape(conn: asyncpg.Connection, oid: int, schema: str, table: str) -> TableShape:
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
    return TableShape(oid, info, columns, foreign_keys, constraint_columns, unique_sets, pk)


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
class Probe:
    """An insert probe being built: column -> text value, plus keys computed fresh per run."""

    values: dict[str, str | None]
    fresh: dict[str, str]  # column -> SQL computing a fresh key as the connection role
    given: set[str] = field(default_factory=set)  # values the user gave: never changed
    null_defaults: set[str] = field(default_factory=set)  # filled because the default was NULL when settled
    candidate_index: dict[str, int] = field(default_factory=dict)

    def copy(self) -> Probe:
        return Probe(
            dict(self.values), dict(self.fresh), set(self.given), set(self.null_defaults), dict(self.candidate_index)
        )

    def statement(
        self, shape: TableShape, fresh_values: Mapping[str, str] | None = None
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


def _fk_for(shape: TableShape, column: str) -> _ForeignKey | None:
    return next((fk for fk in shape.foreign_keys if column in fk.columns), None)


def base_probe(shape: TableShape, given: Mapping[str, Any]) -> Probe:
    unknown = set(given) - {c.name for c in shape.columns}
    if unknown:
        raise PolicyMatrixError(
            f"Probe values for {shape.info.qualified_name} name no such column: {', '.join(sorted(unknown))}. "
            f"Columns: {', '.join(c.name for c in shape.columns)}."
        )
    probe = Probe(values={}, fresh={}, given=set(given))
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
    conn: asyncpg.Connection, shape: TableShape, fk: _ForeignKey, limit: int = 5
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


async def fill_foreign_keys(
    conn: asyncpg.Connection, shape: TableShape, probe: Probe, sub: str | None, columns: set[str]
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


async def null_defaults(conn: asyncpg.Connection, shape: TableShape, probe: Probe) -> set[str]:
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


async def settle_probe(conn: asyncpg.Connection, shape: TableShape, probe: Probe) -> list[str]:
    """Adjust the probe until the connection's own role can insert it (class 23 errors name the
    constraint or column to change). Returns notes about what could not be satisfied."""
    for name in await null_defaults(conn, shape, probe):
        probe.values[name] = candidate_values(shape.column(name))[0]
        probe.candidate_index[name] = 0
        probe.null_defaults.add(name)
    fk_cols = {c for fk in shape.foreign_keys for c in fk.columns if c in probe.values and c not in probe.given}
    await fill_foreign_keys(conn, shape, probe, None, fk_cols)
    fk_rows: dict[str, list[list[str | None]]] = {}
    last_error = ""
    for _attempt in range(_MAX_PROBE_ATTEMPTS):
        fresh_values = {name: str(await conn.fetchval(sql)) for name, sql in probe.fresh.items()}
        sql, params, _fresh = probe.statement(shape, fresh_values)
        _status, error = await _try(conn, sql, *params)
        if error is None:
            return []
        state = getattr(error, "sqlstate", "") or ""
        last_error = f"{state}: {error_text(error)}"
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


def _vary(shape: TableShape, probe: Probe, targets: list[str], fk_rows: dict[str, list[list[str | None]]]) -> bool:
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


# -- other operations ----------------------------------------------------------------------------------
def dml_statement(shape: TableShape, operation: Operation) -> str | None:
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


def error_text(exc: BaseException) -> str:
    from workbench.redaction import redact

    text = str(getattr(exc, "message", None) or exc)
    detail = getattr(exc, "detail", None)
    return redact(f"{text} ({detail})" if detail else text)
