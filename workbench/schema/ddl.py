"""The DDL part of a generated module: what SQLAlchemy has no construct for, run by ``create_all``/``drop_all``.

Order matters and is fixed here. Before the tables (a ``before_create`` listener registered after the
models, so the enum and domain types the models create come first): the functions whose signatures do not
name a table. After the tables: functions that do, partitions attached, sequences owned, exclusion
constraints, views (which may call functions), triggers, ``REPLICA IDENTITY``, ``CLUSTER ON``, comments,
row level security and policies. ``drop_all`` drops views, triggers on tables outside the models and the
functions first, and the extensions last.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from workbench.schema import model as m
from workbench.schema.naming import SA, qualified_ident, quote_ident, sql_literal
from workbench.schema.pysource import Imports, chunks, py_block, py_literal, wrap

if TYPE_CHECKING:
    from workbench.schema.codegen import _Entity, _Generator

_CHECK_BODIES_OFF = "SET check_function_bodies = off"  # bodies may read tables created later
_CHECK_BODIES_RESET = "RESET check_function_bodies"
_ENABLED = {"D": "DISABLE TRIGGER", "R": "ENABLE REPLICA TRIGGER", "A": "ENABLE ALWAYS TRIGGER"}
_DROP_KIND = {"aggregate": "AGGREGATE", "procedure": "PROCEDURE"}


def table_key(t: m.Table) -> str:
    """The key of a table in ``MetaData.tables``."""
    return t.name if t.schema == m.DEFAULT_SCHEMA else f"{t.schema}.{t.name}"


def extension_sql(ext: m.Extension) -> str:
    """CASCADE: an extension the models use may require another the source had but the models do not name
    (pgjwt needs pgcrypto); with CASCADE, an extension whose control file fixes its schema lands there too."""
    return f"CREATE EXTENSION IF NOT EXISTS {quote_ident(ext.name)} SCHEMA {quote_ident(ext.schema)} CASCADE"


def function_statements(fn: m.Function) -> list[str]:
    out = [fn.definition]
    if fn.comment is not None:
        kind = _DROP_KIND.get(fn.kind, "FUNCTION")
        out.append(f"COMMENT ON {kind} {_signature(fn)} IS {sql_literal(fn.comment)}")
    return out


def _signature(fn: m.Function) -> str:
    return f"{qualified_ident(fn.schema, fn.name)}({fn.arguments})"


def trigger_sql(trigger: m.Trigger) -> str:
    """``CREATE OR REPLACE TRIGGER``: create_all may run again where a trigger on ``auth.users`` exists."""
    text = trigger.definition
    if text.startswith("CREATE TRIGGER "):
        text = "CREATE OR REPLACE TRIGGER " + text[len("CREATE TRIGGER ") :]
    return text


def trigger_state_sql(trigger: m.Trigger) -> str | None:
    action = _ENABLED.get(trigger.enabled)
    if action is None:
        return None
    return f"ALTER TABLE {qualified_ident(trigger.schema, trigger.table)} {action} {quote_ident(trigger.name)}"


def policy_sql(t: m.Table, pol: m.Policy) -> str:
    roles = ", ".join("PUBLIC" if r == "public" else quote_ident(r) for r in pol.roles)
    sql = (
        f"CREATE POLICY {quote_ident(pol.name)} ON {qualified_ident(t.schema, t.name)} AS "
        f"{'PERMISSIVE' if pol.permissive else 'RESTRICTIVE'} FOR {pol.command} TO {roles}"
    )
    if pol.using is not None:
        sql += f" USING ({pol.using})"
    if pol.with_check is not None:
        sql += f" WITH CHECK ({pol.with_check})"
    return sql


def view_order(views: list[_Entity], functions: list[m.Function] | None = None) -> list[_Entity | m.Function]:
    """Views after the views they read, ``functions`` (those naming views) after the views they name and
    before the views that call them (a stable topological sort)."""
    by_key = {e.key: e for e in views}
    fns = functions or []
    done: set[object] = set()
    out: list[_Entity | m.Function] = []

    def calls(ent: _Entity, fn: m.Function) -> bool:
        body = ent.table.view_definition or ""
        names = [f"{fn.schema}.{fn.name}("] + ([f"{fn.name}("] if fn.schema == m.DEFAULT_SCHEMA else [])
        return any(re.search(r"(?<![\w.])" + re.escape(name), body) for name in names)

    def visit(item: _Entity | m.Function, stack: set[object]) -> None:
        key = ("fn", item.signature) if isinstance(item, m.Function) else item.key
        if key in done or key in stack:
            return
        stack.add(key)
        if isinstance(item, m.Function):
            for dep in sorted(item.relations):
                if dep in by_key:
                    visit(by_key[dep], stack)
        else:
            for dep in sorted(item.table.depends_on):
                if dep in by_key:
                    visit(by_key[dep], stack)
            for fn in fns:
                if calls(item, fn):
                    visit(fn, stack)
        done.add(key)
        out.append(item)

    for ent in views:
        visit(ent, set())
    for fn in fns:
        visit(fn, set())
    return out


def _functions_on_views(functions: list[m.Function], views: list[_Entity]) -> list[m.Function]:
    """The functions that name a view: they cannot be created with the other table-naming functions, which
    come before the views."""
    view_keys = {e.key for e in views}
    return [fn for fn in functions if any(rel in view_keys for rel in fn.relations)]


def _functions(gen: _Generator) -> list[m.Function]:
    if "nofunctions" in gen.options:
        return []
    return [fn for schema in gen.db.schemas for fn in schema.functions]


def _wrapped(fns: list[m.Function]) -> list[str]:
    if not fns:
        return []
    return [_CHECK_BODIES_OFF, *(s for fn in fns for s in function_statements(fn)), _CHECK_BODIES_RESET]


def _statement_lines(stmt: str, key_text: str | None) -> list[str]:
    """One list item: ``(key, statement),`` when there is a key, else the statement alone."""
    head = f"({key_text}, " if key_text is not None else ""
    tail = ")," if key_text is not None else ","
    one = f"    {head}{py_block(stmt)}{tail}"
    if len(one) <= 120 and "\n" not in stmt:
        return [one]
    if "\n" in stmt and max(len(x) for x in stmt.splitlines()) <= 116:
        if key_text is None:
            return [f"    {py_block(stmt)},"]
        return [f"    (\n        {key_text},", f"        {py_block(stmt)},", "    ),"]
    pieces = [py_literal(piece) for piece in chunks(stmt, 100)]
    if key_text is None:
        return ["    ("] + [f"        {p}" for p in pieces] + ["    ),"]
    out = [f"    (\n        {key_text},"] + [f"        {p}" for p in pieces]
    out[-1] += ","
    out.append("    ),")
    return out


def domain_not_null(gen: _Generator) -> list[str]:
    """NOT NULL of domains that also have a named CHECK, set apart: SQLAlchemy renders ``CONSTRAINT name
    NOT NULL CHECK (...)``, and since PostgreSQL 17 the name goes to the NOT NULL, not the CHECK."""
    return [
        f"ALTER DOMAIN {qualified_ident(d.schema, d.name)} SET NOT NULL"
        for d in gen.db.domains()
        if d.key in gen.domain_names and not d.nullable and d.checks
    ]


def render_ddl(gen: _Generator, imp: Imports) -> str:
    """The module's DDL section (empty when there is nothing SQLAlchemy cannot create itself)."""
    after: list[tuple[str | None, str]] = []
    drops: list[str] = []
    after_drops: list[str] = []
    lines: list[str] = []
    functions = _functions(gen)
    before = domain_not_null(gen) + _wrapped([fn for fn in functions if not fn.needs_tables])
    ents = sorted(gen.entities.values(), key=lambda e: e.key)
    views = [e for e in ents if e.form == "view"]
    on_views = _functions_on_views([fn for fn in functions if fn.needs_tables], views)
    after += [(None, s) for s in _wrapped([fn for fn in functions if fn.needs_tables and fn not in on_views])]
    for ent in ents:
        t = ent.table
        if ent.form == "stub":
            continue
        if t.partition_of and (t.partition_of in gen.entities) and t.partition_bound:
            parent = gen.entities[t.partition_of]
            after.append(
                (
                    table_key(t),
                    f"ALTER TABLE {qualified_ident(*t.partition_of)} ATTACH PARTITION "
                    f"{qualified_ident(t.schema, t.name)} {t.partition_bound}",
                )
            )
            child = f"Base.metadata.tables[{py_literal(table_key(t))}]" if ent.form == "class" else ent.name
            lines.append(f"{child}.add_is_dependent_on(Base.metadata.tables[{py_literal(table_key(parent.table))}])")
        for seq in gen.db.sequences():
            if seq.key in gen.seq_names and seq.owned_by and seq.owned_by[:2] == t.key:
                after.append(
                    (
                        table_key(t),
                        f"ALTER SEQUENCE {qualified_ident(seq.schema, seq.name)} OWNED BY "
                        f"{qualified_ident(t.schema, t.name)}.{quote_ident(seq.owned_by[2])}",
                    )
                )
        for oc in t.other_constraints:
            if not oc.inherited and "noconstraints" not in gen.options:
                after.append(
                    (
                        table_key(t),
                        f"ALTER TABLE {qualified_ident(t.schema, t.name)} ADD CONSTRAINT "
                        f"{quote_ident(oc.name)} {oc.definition}",
                    )
                )
        for fk in t.foreign_keys:
            if (
                not fk.inherited
                and not gen._fk_is_rendered(fk)
                and not t.is_view
                and (gen.external == "plain" or (fk.ref_schema, fk.ref_table) in gen.selected)
            ):
                after.append(
                    (
                        table_key(t),
                        f"ALTER TABLE {qualified_ident(t.schema, t.name)} ADD CONSTRAINT "
                        f"{quote_ident(fk.name)} {fk.definition}",
                    )
                )
    for item in view_order(views, on_views):
        if isinstance(item, m.Function):  # names a view's row type or reads a view: right after that view
            after += [(None, stmt) for stmt in _wrapped([item])]
            continue
        ent = item
        t = ent.table
        body = (t.view_definition or "").rstrip().rstrip(";")
        name = qualified_ident(t.schema, t.name)
        with_ = f" WITH ({', '.join(t.view_options)})" if t.view_options else ""
        if t.kind == "view":
            after.append((None, f"CREATE OR REPLACE VIEW {name}{with_} AS\n{body}"))
            drops.insert(0, f"DROP VIEW IF EXISTS {name}")
        else:
            data = "WITH DATA" if t.populated else "WITH NO DATA"
            after.append((None, f"CREATE MATERIALIZED VIEW IF NOT EXISTS {name}{with_} AS\n{body}\n{data}"))
            drops.insert(0, f"DROP MATERIALIZED VIEW IF EXISTS {name}")
            if "noindexes" not in gen.options:
                for ix in t.indexes:
                    after.append(
                        (None, re.sub(r"^CREATE (UNIQUE )?INDEX ", r"CREATE \1INDEX IF NOT EXISTS ", ix.definition))
                    )
        if t.comment and "nocomments" not in gen.options:
            kind = "VIEW" if t.kind == "view" else "MATERIALIZED VIEW"
            after.append((None, f"COMMENT ON {kind} {name} IS {sql_literal(t.comment)}"))
        for col in t.columns:
            if col.comment and "nocomments" not in gen.options:
                after.append((None, f"COMMENT ON COLUMN {name}.{quote_ident(col.name)} IS {sql_literal(col.comment)}"))
    for ent in ents:  # table facts SQLAlchemy has no keyword for
        t = ent.table
        if ent.form == "stub" or t.is_view:
            continue
        name = qualified_ident(t.schema, t.name)
        if t.replica_identity == "index" and t.replica_index:
            index = quote_ident(t.replica_index)
            after.append((table_key(t), f"ALTER TABLE {name} REPLICA IDENTITY USING INDEX {index}"))
        elif t.replica_identity in ("full", "nothing"):
            after.append((table_key(t), f"ALTER TABLE {name} REPLICA IDENTITY {t.replica_identity.upper()}"))
        if t.clustered_index:
            after.append((table_key(t), f"ALTER TABLE {name} CLUSTER ON {quote_ident(t.clustered_index)}"))
    if "nofunctions" not in gen.options:
        for ent in ents:
            if ent.form == "stub":
                continue
            for trigger in ent.table.triggers:
                after.append((table_key(ent.table), trigger_sql(trigger)))
                state = trigger_state_sql(trigger)
                if state:
                    after.append((table_key(ent.table), state))
        for schema in gen.db.schemas:
            for trigger in schema.external_triggers:  # on auth.users, say: it exists before create_all
                after.append((None, trigger_sql(trigger)))
                state = trigger_state_sql(trigger)
                if state:
                    after.append((None, state))
                drops.append(
                    f"DROP TRIGGER IF EXISTS {quote_ident(trigger.name)} ON "
                    f"{qualified_ident(trigger.schema, trigger.table)}"
                )
        for fn in reversed(functions):  # CASCADE: defaults and policies that call it go with their tables
            drops.append(f"DROP {_DROP_KIND.get(fn.kind, 'FUNCTION')} IF EXISTS {_signature(fn)} CASCADE")
    if "nocomments" not in gen.options:
        for schema in gen.db.schemas:
            if schema.comment and not (schema.name == m.DEFAULT_SCHEMA and schema.comment == "standard public schema"):
                after.append((None, f"COMMENT ON SCHEMA {quote_ident(schema.name)} IS {sql_literal(schema.comment)}"))
    for ext in reversed(gen.db.extensions):
        after_drops.append(f"DROP EXTENSION IF EXISTS {quote_ident(ext.name)}")
    if "norls" not in gen.options:
        for ent in ents:
            t = ent.table
            if ent.form == "stub" or t.is_view:
                continue
            name = qualified_ident(t.schema, t.name)
            if t.rls_enabled:
                after.append((table_key(t), f"ALTER TABLE {name} ENABLE ROW LEVEL SECURITY"))
            if t.rls_forced:
                after.append((table_key(t), f"ALTER TABLE {name} FORCE ROW LEVEL SECURITY"))
            for pol in t.policies:
                after.append((table_key(t), policy_sql(t, pol)))
    stubs = [e for e in ents if e.form == "stub"]
    if not after and not lines and not before and not drops and not after_drops and not stubs:
        return ""
    if before or after or drops or after_drops:
        imp.add(SA, "event")
        imp.add(SA, "DDL")
        imp.add(SA, "MetaData")
        imp.add("sqlalchemy.engine", "Connection")
        imp.add("typing", "Any")
    out = []
    if lines:
        out.append("# Partitions are dropped before their parent table.")
        out += lines
        out.append("")
    if stubs:
        imp.add("sqlalchemy.schema", "DropTable")
        out.append("# drop_all leaves the stand-ins alone: those tables belong to the platform (auth.users).")
        names = ", ".join(py_literal(table_key(e.table)) for e in stubs)
        out.append(f"for _name in ({names},):")
        out.append("    _table = Base.metadata.tables[_name]")
        out.append("    _table._dropper_ddl = DropTable(_table).execute_if(callable_=lambda *args, **kw: False)")
        out.append("")
    lists: list[str] = []
    if before:
        lists.append("# Functions whose signatures name no table: created before the tables, after the types.")
        lists.append("_BEFORE_CREATE: list[str] = [")
        for stmt in before:
            lists += _statement_lines(stmt, None)
        lists.append("]")
    if after:
        lists.append("# What SQLAlchemy has no construct for, run by Base.metadata.create_all after the tables:")
        lists.append("# (table key, statement); a statement with a key runs only when that table was created just now.")
        lists.append("_AFTER_CREATE: list[tuple[str | None, str]] = [")
        for key, stmt in after:
            lists += _statement_lines(stmt, py_literal(key) if key else "None")
        lists.append("]")
    if drops:
        lists.append("_BEFORE_DROP: list[str] = [")
        lists += [f"    {py_literal(stmt)}," for stmt in drops]
        lists.append("]")
    if after_drops:
        lists.append("_AFTER_DROP: list[str] = [")
        lists += [f"    {py_literal(stmt)}," for stmt in after_drops]
        lists.append("]")
    out += lists
    listeners = []
    if before:
        listeners += [
            '@event.listens_for(Base.metadata, "before_create")',
            "def _before_create(target: MetaData, connection: Connection, **kw: Any) -> None:",
            "    for statement in _BEFORE_CREATE:",
            '        connection.execute(DDL(statement.replace("%", "%%")))',
        ]
    if after:
        listeners += [
            '@event.listens_for(Base.metadata, "after_create")',
            "def _after_create(target: MetaData, connection: Connection, **kw: Any) -> None:",
            '    created = {table.key for table in kw.get("tables", ())}',
            "    for key, statement in _AFTER_CREATE:",
            "        if key is None or key in created:",
            '            connection.execute(DDL(statement.replace("%", "%%")))',
        ]
    if drops:
        listeners += [
            '@event.listens_for(Base.metadata, "before_drop")',
            "def _before_drop(target: MetaData, connection: Connection, **kw: Any) -> None:",
            "    for statement in _BEFORE_DROP:",
            '        connection.execute(DDL(statement.replace("%", "%%")))',
        ]
    if after_drops:
        listeners += [
            '@event.listens_for(Base.metadata, "after_drop")',
            "def _after_drop(target: MetaData, connection: Connection, **kw: Any) -> None:",
            "    for statement in _AFTER_DROP:",
            '        connection.execute(DDL(statement.replace("%", "%%")))',
        ]
    for line in listeners:
        if line.startswith("@"):
            out += ["", ""]
        out.append(line)
    if gen.layout == "package":
        needed = {
            ent.key: ent
            for ent in ents
            if ent.table.partition_of and ent.table.partition_of in gen.entities and ent.form != "class"
        }
        for ent in sorted(needed.values(), key=lambda e: e.key):
            imp.add("." + ent.module, ent.name)
    return "\n".join(wrap(line) for line in out)
