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

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from workbench.core.identity import Identity, IdentityError, parse_claims, user_identity
from workbench.core.impersonation import apply_statement
from workbench.core.sqlnames import quote_ident
from workbench.policies.model import (
    COLOURS,
    OPERATIONS,
    OUTCOME_MEANING,
    OUTCOMES,
    POLICY_COMMANDS,
    Cell,
    Operation,
    Outcome,
    PolicyMatrix,
    PolicyMatrixError,
    qualify_table,
    render_html,
    split_table_name,
)
from workbench.policies.probes import (
    Probe,
    base_probe,
    candidate_values,
    dml_statement,
    error_text,
    fill_foreign_keys,
    null_defaults,
    settle_probe,
)
from workbench.schema import model as m
from workbench.schema.reflect import reflect

if TYPE_CHECKING:
    import asyncpg
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = [
    "COLOURS",
    "OPERATIONS",
    "OUTCOMES",
    "OUTCOME_MEANING",
    "POLICY_COMMANDS",
    "Cell",
    "Operation",
    "Outcome",
    "PolicyMatrix",
    "PolicyMatrixError",
    "build_matrix",
    "policy_matrix",
    "quote_ident",
    "render_html",
    "resolve_identities",
    "resolve_tables",
    "split_table_name",
    "split_user_spec",
]

_CELL_SAVEPOINT = "wb_policy_cell"


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


# -- tables --------------------------------------------------------------------------------------------
async def resolve_tables(conn: asyncpg.Connection, tables: Sequence[str] | None) -> list[tuple[str, str]]:
    """``(schema, table)`` of the named tables, in the order given (default: every table of public);
    an unknown name fails listing the tables of its schema."""
    if not tables:
        rows = await conn.fetch(
            """select n.nspname, c.relname from pg_catalog.pg_class c
               join pg_catalog.pg_namespace n on n.oid = c.relnamespace
               where n.nspname = 'public' and c.relkind in ('r', 'p') and not c.relispartition
               order by c.relname"""
        )
        if not rows:
            raise PolicyMatrixError("The public schema has no tables; name tables with --tables schema.table.")
        return [(r[0], r[1]) for r in rows]
    found: list[tuple[str, str]] = []
    for name in tables:
        schema, table = split_table_name(name)
        exists = await conn.fetchval(
            """select 1 from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
               where n.nspname = $1 and c.relname = $2 and c.relkind in ('r', 'p')""",
            schema,
            table,
        )
        if exists is None:
            known = await conn.fetch(
                """select n.nspname || '.' || c.relname from pg_catalog.pg_class c
                   join pg_catalog.pg_namespace n on n.oid = c.relnamespace
                   where n.nspname = $1 and c.relkind in ('r', 'p') order by 1 limit 20""",
                schema,
            )
            listing = ", ".join(r[0] for r in known) or f"none in schema {schema}"
            raise PolicyMatrixError(f"No table {schema}.{table}. Tables you can use: {listing}.")
        if (schema, table) not in found:
            found.append((schema, table))
    return found


# -- the matrix ----------------------------------------------------------------------------------------
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
    conn: asyncpg.Connection, table: m.Table, operation: Operation, role: str | None
) -> tuple[list[str], str | None]:
    """Policies PostgreSQL applies for this role and command (a probe that reads rows adds SELECT's),
    or a note saying why none apply."""
    info = table
    who = role or await conn.fetchval("select current_user")
    bypass = await conn.fetchrow(
        """select r.rolsuper or r.rolbypassrls as bypass, r.rolsuper,
                  (select c.relowner = r.oid from pg_catalog.pg_class c where c.oid = $2::regclass) as owner
           from pg_catalog.pg_roles r where r.rolname = $1""",
        who,
        table.sql_name,
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
           where p.polrelid = $1::regclass and (p.polcmd::text = any($2::text[]) or p.polcmd = '*')
             and (p.polroles = '{0}' or exists (select 1 from unnest(p.polroles) r(oid)
                                                  where pg_catalog.pg_has_role($3, r.oid, 'MEMBER')))
           order by p.polcmd = 'r', p.polname""",
        table.sql_name,
        commands,
        who,
    )
    names = [r[0] for r in rows]
    return names, None if names else "no policy applies: RLS denies every row (default deny)"


async def _run_cell(
    conn: asyncpg.Connection,
    db: m.Database,
    shape: m.Table,
    operation: Operation,
    identity: Identity,
    base: Probe | None,
    statement_timeout_ms: int,
    row_count: int,
) -> Cell:
    import asyncpg

    label, table = identity.describe(), shape.qualified_name
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
            for name in await null_defaults(conn, shape, probe):
                settled = base.values.get(name) if base is not None else None
                probe.values[name] = settled if settled is not None else candidate_values(db, shape.column(name))[0]
            fk_cols = {c for fk in shape.foreign_keys for c in fk.columns if c in probe.values and c not in probe.given}
            await fill_foreign_keys(conn, shape, probe, identity.sub, fk_cols)
            sql, params, fresh = probe.statement(shape, fresh_values)
        else:
            statement = dml_statement(shape, operation)
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
                        sqlstate=exc.sqlstate, message=error_text(exc), note=note,
                        elapsed_ms=(time.perf_counter() - started) * 1000)  # fmt: skip
        outcome: Outcome = "allowed" if rows > 0 else "filtered"
        if outcome == "filtered" and row_count == 0 and operation != "insert":
            note = "the table is empty" + (f"; {note}" if note else "")
        return Cell(label, table, operation, outcome, rows, policies, sql, params, fresh,
                    note=note, elapsed_ms=(time.perf_counter() - started) * 1000)  # fmt: skip
    finally:
        await conn.execute(f"rollback to savepoint {_CELL_SAVEPOINT}; release savepoint {_CELL_SAVEPOINT}")


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
    given = {qualify_table(k): v for k, v in (probe_rows or {}).items()}
    resolved = await resolve_tables(conn, tables)
    unknown = set(given) - {f"{s}.{t}" for s, t in resolved}
    if unknown:
        raise PolicyMatrixError(f"Probe rows given for tables not in the matrix: {', '.join(sorted(unknown))}.")
    db = await reflect(conn, sorted({s for s, _ in resolved}), [f"{s}.{t}" for s, t in resolved])
    shapes = [db.table(s, t) for s, t in resolved]
    before = await _sequence_state(conn)
    cells: list[Cell] = []
    notes: list[str] = []
    row_counts: dict[str, int] = {}
    transaction = conn.transaction()
    await transaction.start()
    try:
        for shape in shapes:
            count = row_counts[shape.qualified_name] = int(
                await conn.fetchval(f"select count(*) from {shape.sql_name}")
            )
            base = None
            if "insert" in operations:
                base = base_probe(db, shape, given.get(shape.qualified_name, {}))
                notes += await settle_probe(conn, db, shape, base)
            for op in operations:
                for identity in identities:
                    cell = await _run_cell(conn, db, shape, op, identity, base, statement_timeout_ms, count)  # type: ignore[arg-type]
                    cells.append(cell)
    finally:
        await transaction.rollback()
    after = await _sequence_state(conn)
    for name, value in after.items():
        if before.get(name) != value:
            notes.append(f"sequence {name} moved from {before.get(name)} to {value} (a trigger or default used it; "
                         "sequences are not transactional)")  # fmt: skip
    return PolicyMatrix(
        identities=list(identities),
        tables=shapes,
        operations=list(operations),  # type: ignore[arg-type]
        cells=cells,
        notes=notes,
        elapsed_ms=(time.perf_counter() - started) * 1000,
        row_counts=row_counts,
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
