"""The one plain model of a database that every output shares: browser, ER diagram, code generator, diff.

Filled by :mod:`workbench.schema.reflect` from the PostgreSQL catalogs. SQL fragments (defaults, checks,
view bodies, policy expressions) are kept as PostgreSQL deparsed them with ``search_path=pg_catalog``, so
two databases built the same way compare equal text for text.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from workbench.core.sqlnames import qualified_name, quote_ident

TableKind = Literal["table", "partitioned_table", "view", "materialized_view", "foreign_table"]
TypeKind = Literal["base", "enum", "domain", "composite", "range", "multirange", "pseudo"]
PolicyCommand = Literal["ALL", "SELECT", "INSERT", "UPDATE", "DELETE"]
API_ROLES = ("anon", "authenticated", "service_role")
DEFAULT_SCHEMA = "public"


def qualified(schema: str, name: str) -> str:
    """``schema.name`` for messages and keys (not quoted: not for SQL)."""
    return f"{schema}.{name}"


@dataclass(frozen=True)
class TypeRef:
    """A column's type: what PostgreSQL prints (``sql``) and what the element type is (shared, immutable)."""

    sql: str  # format_type(), e.g. "character varying(255)", "public.task_status[]", "numeric(4,2)"
    name: str  # the element type's own name (pg_type.typname), e.g. "varchar", "task_status"
    schema: str = "pg_catalog"  # the element type's schema
    kind: TypeKind = "base"
    dims: int = 0  # declared array dimensions; 0 = not an array
    # pg_type.typcategory of the element type (of a domain's base): "N", "S", "D", "A", ...; derived, not compared
    category: str = field(default="", compare=False)

    @property
    def element_sql(self) -> str:
        """``sql`` without the array brackets."""
        text = self.sql
        while text.endswith("[]"):
            text = text[:-2]
        return text


@dataclass
class ColumnIdentity:
    """``GENERATED {ALWAYS|BY DEFAULT} AS IDENTITY`` and its sequence options (not ``workbench.core.identity.Identity``,
    who a query runs as)."""

    always: bool
    start: int = 1
    increment: int = 1
    minvalue: int | None = None
    maxvalue: int | None = None
    cache: int = 1
    cycle: bool = False


@dataclass
class Column:
    name: str
    type: TypeRef
    nullable: bool = True
    default: str | None = None  # deparsed DEFAULT expression
    identity: ColumnIdentity | None = None
    generated: str | None = None  # expression of a STORED generated column
    comment: str | None = None
    collation: str | None = None  # only when it differs from the type's default collation


@dataclass
class PrimaryKey:
    name: str
    columns: list[str]
    inherited: bool = False  # created by attaching a partition to its parent


@dataclass
class ForeignKey:
    name: str
    columns: list[str]
    ref_schema: str
    ref_table: str
    ref_columns: list[str]
    on_update: str = "NO ACTION"
    on_delete: str = "NO ACTION"
    match: str = "SIMPLE"
    deferrable: bool = False
    initially_deferred: bool = False
    definition: str = ""  # pg_get_constraintdef
    inherited: bool = False


@dataclass
class UniqueConstraint:
    name: str
    columns: list[str]
    nulls_not_distinct: bool = False
    deferrable: bool = False
    initially_deferred: bool = False
    definition: str = ""
    inherited: bool = False


@dataclass
class CheckConstraint:
    name: str
    expression: str  # the condition, without CHECK ( )
    definition: str = ""
    inherited: bool = False
    columns: list[str] = field(default_factory=list)  # the columns the condition reads


@dataclass
class OtherConstraint:
    """A constraint SQLAlchemy has no construct for (exclusion constraints): kept as its definition."""

    name: str
    kind: str
    definition: str
    inherited: bool = False
    columns: list[str] = field(default_factory=list)


@dataclass
class IndexColumn:
    expression: str  # a (quoted if needed) column name or an expression, as PostgreSQL prints it
    is_expression: bool = False
    opclass: str | None = None  # only when not the type's default operator class
    descending: bool = False
    nulls_first: bool | None = None  # only when not the default for the direction
    collation: str | None = None

    @property
    def column(self) -> str | None:
        """The plain column name (unquoted), or None for an expression."""
        if self.is_expression:
            return None
        text = self.expression
        return text[1:-1].replace('""', '"') if text.startswith('"') and text.endswith('"') else text


@dataclass
class Index:
    name: str
    columns: list[IndexColumn]
    unique: bool = False
    method: str = "btree"
    where: str | None = None
    include: list[str] = field(default_factory=list)
    nulls_not_distinct: bool = False
    options: dict[str, str] = field(default_factory=dict)  # WITH (...) storage parameters
    definition: str = ""  # pg_get_indexdef
    inherited: bool = False  # an index partition created by attaching a partition

    @property
    def column_names(self) -> list[str] | None:
        """The key columns, or None when a key is an expression."""
        names = [c.column for c in self.columns]
        return None if any(n is None for n in names) else [n for n in names if n is not None]


@dataclass
class Policy:
    name: str
    command: PolicyCommand = "ALL"
    roles: list[str] = field(default_factory=lambda: ["public"])
    permissive: bool = True
    using: str | None = None
    with_check: str | None = None
    # the table the policy is on (set by reflect; not part of comparisons)
    schema: str = field(default="", compare=False)
    table: str = field(default="", compare=False)

    @property
    def qualified_table(self) -> str:
        return qualified(self.schema, self.table)

    def sql(self) -> str:
        """The ``create policy`` statement that recreates it."""
        roles = ", ".join(r if r == "public" else quote_ident(r) for r in self.roles)
        parts = [
            f"create policy {quote_ident(self.name)} on {qualified_name(self.schema, self.table)}",
            f"  as {'permissive' if self.permissive else 'restrictive'} for {self.command.lower()} to {roles}",
        ]
        if self.using is not None:
            parts.append(f"  using ({self.using})")
        if self.with_check is not None:
            parts.append(f"  with check ({self.with_check})")
        return "\n".join(parts) + ";"


@dataclass
class Trigger:
    """A user trigger (``CREATE TRIGGER``), on a table of the selection or on one outside it (``auth.users``)."""

    name: str
    schema: str  # of the table it is on
    table: str
    definition: str  # pg_get_triggerdef: timing, events, function, condition all in one
    timing: str = "AFTER"  # BEFORE, AFTER, INSTEAD OF
    events: list[str] = field(default_factory=list)  # INSERT, UPDATE, DELETE, TRUNCATE
    function: str = ""  # schema.name of the trigger function
    condition: str | None = None  # the WHEN condition
    for_each_row: bool = True
    enabled: str = "O"  # pg_trigger.tgenabled: O origin, D disabled, R replica, A always


@dataclass
class Function:
    """A function, procedure or aggregate of a generated schema, kept as the DDL that recreates it."""

    schema: str
    name: str
    arguments: str  # pg_get_function_identity_arguments, e.g. "org bigint"
    kind: str = "function"  # function, procedure, aggregate, window
    definition: str = ""  # CREATE OR REPLACE FUNCTION ... (pg_get_functiondef), or CREATE AGGREGATE ...
    needs_tables: bool = False  # it names a table or view (signature row type, SQL-standard body): created after
    relations: list[tuple[str, str]] = field(default_factory=list)  # the tables and views it names
    comment: str | None = None
    grants: dict[str, list[str]] = field(default_factory=dict)  # API role -> privileges (EXECUTE)

    @property
    def signature(self) -> str:
        return f"{self.schema}.{self.name}({self.arguments})"


@dataclass
class Extension:
    """An installed extension (``plpgsql`` is left out: every database has it)."""

    name: str
    schema: str
    version: str = ""


@dataclass
class Table:
    """A table, partitioned table, partition, view or materialized view."""

    schema: str
    name: str
    kind: TableKind = "table"
    columns: list[Column] = field(default_factory=list)
    primary_key: PrimaryKey | None = None
    foreign_keys: list[ForeignKey] = field(default_factory=list)
    unique_constraints: list[UniqueConstraint] = field(default_factory=list)
    check_constraints: list[CheckConstraint] = field(default_factory=list)
    other_constraints: list[OtherConstraint] = field(default_factory=list)
    indexes: list[Index] = field(default_factory=list)
    comment: str | None = None
    rls_enabled: bool = False
    rls_forced: bool = False
    policies: list[Policy] = field(default_factory=list)
    grants: dict[str, list[str]] = field(default_factory=dict)  # API role -> privileges
    partition_key: str | None = None  # "RANGE (payment_date)" for a partitioned table
    partition_of: tuple[str, str] | None = None  # (schema, table) of the parent
    partition_bound: str | None = None  # "FOR VALUES FROM (...) TO (...)"
    view_definition: str | None = None
    view_options: list[str] = field(default_factory=list)  # reloptions, e.g. "security_invoker=true"
    populated: bool = True  # materialized views: WITH DATA
    depends_on: list[tuple[str, str]] = field(default_factory=list)  # relations a view reads
    unlogged: bool = False
    triggers: list[Trigger] = field(default_factory=list)  # user triggers (not those of constraints)
    replica_identity: str = "default"  # "default", "full", "nothing" or "index" (see replica_index)
    replica_index: str | None = None  # the index of REPLICA IDENTITY USING INDEX
    clustered_index: str | None = None  # ALTER TABLE ... CLUSTER ON this index

    @property
    def key(self) -> tuple[str, str]:
        return (self.schema, self.name)

    @property
    def qualified_name(self) -> str:
        return qualified(self.schema, self.name)

    @property
    def is_view(self) -> bool:
        return self.kind in ("view", "materialized_view")

    def column(self, name: str) -> Column:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(f"{self.qualified_name} has no column {name!r}")

    @property
    def sql_name(self) -> str:
        """``schema.name`` quoted for SQL text."""
        return qualified_name(self.schema, self.name)

    def unique_column_sets(self) -> list[list[str]]:
        """Column sets that are unique: the primary key, unique constraints, plain unique indexes."""
        sets = [self.primary_key.columns] if self.primary_key else []
        sets += [u.columns for u in self.unique_constraints]
        for index in self.indexes:
            names = index.column_names
            if index.unique and index.where is None and names is not None:
                sets.append(names)
        return sets

    def constraint_columns(self) -> dict[str, list[str]]:
        """Constraint (or unique index) name -> its columns: what a class 23 error's name points at."""
        found: dict[str, list[str]] = {}
        if self.primary_key:
            found[self.primary_key.name] = self.primary_key.columns
        for fk in self.foreign_keys:
            found[fk.name] = fk.columns
        for u in self.unique_constraints:
            found[u.name] = u.columns
        for c in self.check_constraints:
            found[c.name] = c.columns
        for o in self.other_constraints:
            found[o.name] = o.columns
        for index in self.indexes:
            names = index.column_names
            if index.unique and index.where is None and names is not None:
                found[index.name] = names
        return found


@dataclass
class Enum:
    schema: str
    name: str
    labels: list[str]
    comment: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.schema, self.name)


@dataclass
class DomainCheck:
    name: str
    expression: str  # without CHECK ( )


@dataclass
class Domain:
    schema: str
    name: str
    base: TypeRef
    nullable: bool = True
    default: str | None = None
    collation: str | None = None
    checks: list[DomainCheck] = field(default_factory=list)
    comment: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.schema, self.name)


@dataclass
class Sequence:
    """A stand-alone sequence (identity sequences belong to their column and are not listed)."""

    schema: str
    name: str
    data_type: str = "bigint"
    start: int = 1
    increment: int = 1
    minvalue: int | None = None  # None: the default for the type and direction
    maxvalue: int | None = None
    cache: int = 1
    cycle: bool = False
    owned_by: tuple[str, str, str] | None = None  # (schema, table, column)

    @property
    def key(self) -> tuple[str, str]:
        return (self.schema, self.name)


@dataclass(repr=False)
class Schema:
    name: str
    comment: str | None = None
    tables: list[Table] = field(default_factory=list)
    enums: list[Enum] = field(default_factory=list)
    domains: list[Domain] = field(default_factory=list)
    sequences: list[Sequence] = field(default_factory=list)
    functions: list[Function] = field(default_factory=list)  # extensions' own functions left out
    external_triggers: list[Trigger] = field(default_factory=list)  # on tables elsewhere, calling this schema

    def __repr__(self) -> str:  # short: a large schema's full repr takes long to build and to read
        return (
            f"Schema({self.name!r}, tables={len(self.tables)}, enums={len(self.enums)}, "
            f"domains={len(self.domains)}, sequences={len(self.sequences)})"
        )

    def table(self, name: str) -> Table:
        for table in self.tables:
            if table.name == name:
                return table
        raise KeyError(f"schema {self.name!r} has no table or view {name!r}")


@dataclass(repr=False)
class Database:
    """What was reflected: the chosen schemas, and the tables outside them that their FKs reference."""

    schemas: list[Schema] = field(default_factory=list)
    external_tables: list[Table] = field(default_factory=list)  # FK targets outside the selection
    external_enums: list[Enum] = field(default_factory=list)  # types used but defined elsewhere
    external_domains: list[Domain] = field(default_factory=list)
    server_version: str = ""
    extensions: list[Extension] = field(default_factory=list)

    def __repr__(self) -> str:
        tables = sum(len(s.tables) for s in self.schemas)
        return (
            f"Database(schemas={[s.name for s in self.schemas]}, tables={tables}, "
            f"external_tables={[t.qualified_name for t in self.external_tables]})"
        )

    def schema(self, name: str) -> Schema:
        for schema in self.schemas:
            if schema.name == name:
                return schema
        raise KeyError(f"no schema {name!r} was reflected (have: {', '.join(s.name for s in self.schemas)})")

    def tables(self) -> Iterator[Table]:
        for schema in self.schemas:
            yield from schema.tables

    def table(self, schema: str, name: str) -> Table:
        return self.schema(schema).table(name)

    def all_tables(self) -> Iterator[Table]:
        """The selected tables, then the external ones."""
        yield from self.tables()
        yield from self.external_tables

    def find_table(self, key: tuple[str, str]) -> Table | None:
        for table in self.all_tables():
            if table.key == key:
                return table
        return None

    def enums(self) -> Iterator[Enum]:
        for schema in self.schemas:
            yield from schema.enums
        yield from self.external_enums

    def domains(self) -> Iterator[Domain]:
        for schema in self.schemas:
            yield from schema.domains
        yield from self.external_domains

    def sequences(self) -> Iterator[Sequence]:
        for schema in self.schemas:
            yield from schema.sequences

    def base_type(self, type_: TypeRef) -> TypeRef:
        """A domain's base type (followed through domains over domains); other types as they are."""
        seen = 0
        while type_.kind == "domain" and seen < 16:
            domain = next((d for d in self.domains() if (d.schema, d.name) == (type_.schema, type_.name)), None)
            if domain is None:
                break
            type_, seen = domain.base, seen + 1
        return type_

    def enum_labels(self, type_: TypeRef) -> list[str]:
        """The labels of an enum type (or of a domain over one), in sort order; [] for other types."""
        base = self.base_type(type_)
        if base.kind != "enum":
            return []
        enum = next((e for e in self.enums() if (e.schema, e.name) == (base.schema, base.name)), None)
        return list(enum.labels) if enum else []
