"""What the matrix tries on a table: probe statements derived from its reflected shape.

The table comes from :func:`workbench.schema.reflect.reflect` (the one catalog model). Insert probes come
from the columns and constraints: defaults are left to apply, NOT NULL columns get a value of their type
(enum labels, values that pass the check constraints), foreign keys point at rows that exist (preferably
rows the identity itself can see), identity and serial keys get a fresh value computed from the table so
no sequence is consumed. :func:`settle_probe` adjusts the values until the connection's own role could
insert the row (each class 23 error names the constraint or column to change).
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from workbench.core.sqlnames import quote_ident
from workbench.policies.model import Operation, PolicyMatrixError
from workbench.schema import model as m

if TYPE_CHECKING:
    import asyncpg

_LOOKUP_SAVEPOINT = "wb_policy_lookup"
_MAX_PROBE_ATTEMPTS = 25


def is_sequence_default(col: m.Column) -> bool:
    """An identity column or a ``nextval()`` default: the probe computes a fresh key instead."""
    return col.identity is not None or (col.default is not None and col.default.startswith("nextval("))


# -- probe rows ----------------------------------------------------------------------------------------
def candidate_values(db: m.Database, col: m.Column) -> list[str]:
    """Values of the column's type to try, as text input (``$n::text::type``), most likely first."""
    token = secrets.token_hex(4)
    labels = db.enum_labels(col.type) if not col.type.dims else []
    if labels:
        return labels
    category, base = col.type.category, db.base_type(col.type).name
    if col.type.sql.endswith("[]") or col.type.dims or category == "A":
        return ["{}"]
    if base == "uuid":
        import uuid

        return [str(uuid.uuid4()), str(uuid.uuid4())]
    if category == "S":
        limit = _varchar_limit(col.type.sql)
        values = [f"wb-probe-{token}", f"probe{token}@example.com", "x", "1"]
        return [v[:limit] if limit else v for v in values]
    if category == "N":
        return ["1", "0", "100", "-1"]
    if category == "B":
        return ["true", "false"]
    if category == "D":
        return ["now", "epoch"]
    if category == "T":
        return ["1 hour", "0"]
    if base in ("json", "jsonb"):
        return ["{}", "[]", '"probe"']
    if category == "I":
        return ["127.0.0.1"]
    if base == "bytea":
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
        self, table: m.Table, fresh_values: Mapping[str, str] | None = None
    ) -> tuple[str, list[str | None], list[tuple[int, str]]]:
        names = [c.name for c in table.columns if c.name in self.values or c.name in self.fresh]
        if not names:
            return f"insert into {table.sql_name} default values", [], []
        params: list[str | None] = []
        fresh_keys: list[tuple[int, str]] = []
        placeholders = []
        for i, name in enumerate(names):
            placeholders.append(f"${i + 1}::text::{table.column(name).type.sql}")
            if name in self.values:
                params.append(self.values[name])
            else:
                params.append((fresh_values or {}).get(name))
                fresh_keys.append((i, self.fresh[name]))
        always = [n for n in names if (ident := table.column(n).identity) is not None and ident.always]
        override = " overriding system value" if always else ""
        cols = ", ".join(quote_ident(n) for n in names)
        sql = f"insert into {table.sql_name} ({cols}){override} values ({', '.join(placeholders)})"
        return sql, params, fresh_keys


def _fk_for(table: m.Table, column: str) -> m.ForeignKey | None:
    return next((fk for fk in table.foreign_keys if column in fk.columns), None)


def base_probe(db: m.Database, table: m.Table, given: Mapping[str, Any]) -> Probe:
    unknown = set(given) - {c.name for c in table.columns}
    if unknown:
        raise PolicyMatrixError(
            f"Probe values for {table.qualified_name} name no such column: {', '.join(sorted(unknown))}. "
            f"Columns: {', '.join(c.name for c in table.columns)}."
        )
    probe = Probe(values={}, fresh={}, given=set(given))
    for col in table.columns:
        if col.name in given:
            value = given[col.name]
            probe.values[col.name] = None if value is None else _as_text(value)
        elif col.generated is not None:
            continue
        elif is_sequence_default(col):
            probe.fresh[col.name] = f"select coalesce(max({quote_ident(col.name)}), 0) + 1 from {table.sql_name}"
        elif col.default is not None or col.nullable:
            continue
        else:
            probe.values[col.name] = candidate_values(db, col)[0]
            probe.candidate_index[col.name] = 0
    return probe


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


async def _referenced_rows(
    conn: asyncpg.Connection, table: m.Table, fk: m.ForeignKey, limit: int = 5
) -> list[list[str | None]]:
    """Rows of the referenced table (as whoever is applied now), unreferenced ones first when the
    foreign key columns are unique in this table."""
    ref = f"{quote_ident(fk.ref_schema)}.{quote_ident(fk.ref_table)}"
    cols = ", ".join(f"r.{quote_ident(c)}::text" for c in fk.ref_columns)
    order = ", ".join(f"r.{quote_ident(c)}" for c in fk.ref_columns)
    unique = any(sorted(s) == sorted(fk.columns) for s in table.unique_column_sets())
    used = ""
    if unique:
        match = " and ".join(
            f"t.{quote_ident(a)} = r.{quote_ident(b)}" for a, b in zip(fk.columns, fk.ref_columns, strict=True)
        )
        used = f"exists (select 1 from {table.sql_name} t where {match}), "
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
    conn: asyncpg.Connection, table: m.Table, probe: Probe, sub: str | None, columns: set[str]
) -> None:
    """Point the foreign keys covering ``columns`` at rows that exist for whoever is applied now:
    the user's own id for ``auth.users``, else the first row they can see, else keep the value."""
    for fk in table.foreign_keys:
        if not columns & set(fk.columns):
            continue
        if sub and (fk.ref_schema, fk.ref_table, fk.ref_columns) == ("auth", "users", ["id"]):
            probe.values[fk.columns[0]] = sub
            continue
        rows = await _fetch_quietly(conn, lambda fk=fk: _referenced_rows(conn, table, fk, 1))
        if rows:
            for name, value in zip(fk.columns, rows[0], strict=True):
                probe.values[name] = value


async def null_defaults(conn: asyncpg.Connection, table: m.Table, probe: Probe) -> set[str]:
    """NOT NULL columns left to a default that evaluates to NULL now (``auth.uid()`` for service_role)."""
    cols = [
        c
        for c in table.columns
        if not c.nullable
        and c.default is not None
        and not is_sequence_default(c)
        and c.generated is None
        and c.name not in probe.values
    ]
    if not cols:
        return set()
    exprs = ", ".join(f"({c.default}) is null" for c in cols)
    row = await _fetch_quietly(conn, lambda: conn.fetchrow(f"select {exprs}"))
    if row is None:
        return set()
    return {c.name for c, is_null in zip(cols, row, strict=True) if is_null}


async def settle_probe(conn: asyncpg.Connection, db: m.Database, table: m.Table, probe: Probe) -> list[str]:
    """Adjust the probe until the connection's own role can insert it (class 23 errors name the
    constraint or column to change). Returns notes about what could not be satisfied."""
    for name in await null_defaults(conn, table, probe):
        probe.values[name] = candidate_values(db, table.column(name))[0]
        probe.candidate_index[name] = 0
        probe.null_defaults.add(name)
    fk_cols = {c for fk in table.foreign_keys for c in fk.columns if c in probe.values and c not in probe.given}
    await fill_foreign_keys(conn, table, probe, None, fk_cols)
    fk_rows: dict[str, list[list[str | None]]] = {}
    last_error = ""
    for _attempt in range(_MAX_PROBE_ATTEMPTS):
        fresh_values = {name: str(await conn.fetchval(sql)) for name, sql in probe.fresh.items()}
        sql, params, _fresh = probe.statement(table, fresh_values)
        _status, error = await _try(conn, sql, *params)
        if error is None:
            return []
        state = getattr(error, "sqlstate", "") or ""
        last_error = f"{state}: {error_text(error)}"
        if not state.startswith("23"):
            return [f"{table.qualified_name}: the probe row fails as the connection role ({last_error})."]
        column = getattr(error, "column_name", None)
        constraint = getattr(error, "constraint_name", None)
        targets = [column] if column else table.constraint_columns().get(constraint or "", [])
        for name in targets:
            fk = _fk_for(table, name)
            if fk is not None and fk.name not in fk_rows:
                fk_rows[fk.name] = await _referenced_rows(conn, table, fk, 10)
        if not _vary(db, table, probe, targets, fk_rows):
            break
    return [f"{table.qualified_name}: no probe row satisfied every constraint ({last_error}); give one."]


def _vary(
    db: m.Database, table: m.Table, probe: Probe, targets: list[str], fk_rows: dict[str, list[list[str | None]]]
) -> bool:
    """Advance the target columns like an odometer (last one first) to the next combination of
    candidate values; False when every combination was tried."""
    groups: list[tuple[list[str], list[list[str | None]]]] = []  # (columns, options) moved together
    seen: set[str] = set()
    for name in targets:
        if name in seen or name in probe.fresh or name in probe.given:
            continue
        fk = _fk_for(table, name)
        if fk is not None:
            seen.update(fk.columns)
            groups.append((fk.columns, fk_rows.get(fk.name, [])))
        else:
            seen.add(name)
            groups.append(([name], [[v] for v in candidate_values(db, table.column(name))]))
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
def dml_statement(table: m.Table, operation: Operation) -> str | None:
    if operation == "select":
        return f"select count(*) from {table.sql_name}"
    pk = table.primary_key.columns if table.primary_key else []
    updatable = [c for c in table.columns if c.generated is None and not (c.identity and c.identity.always)]
    preferred = [c for c in updatable if c.name not in pk] or updatable
    if operation == "update":
        if not preferred:
            return None
        col = quote_ident(preferred[0].name)
        return f"update {table.sql_name} set {col} = {col}"
    if operation == "delete":
        key = quote_ident((pk or [table.columns[0].name])[0])
        return f"delete from {table.sql_name} where {key} is null or {key} is not null"
    return None


def error_text(exc: BaseException) -> str:
    from workbench.core.redaction import redact

    text = str(getattr(exc, "message", None) or exc)
    detail = getattr(exc, "detail", None)
    return redact(f"{text} ({detail})" if detail else text)
