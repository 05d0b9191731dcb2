"""Compare two reflected databases and list every difference, path by path.

Used by the round trip (the source database against what ``create_all`` of the generated models built)
and usable on its own: a local database against production, before against after a migration.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import astuple, dataclass
from typing import Literal

from workbench.schema import model as m

CATEGORIES = (
    "table",  # a table or view missing/extra, or of another kind
    "column",  # a column missing/extra
    "column_order",
    "type",
    "nullable",
    "default",
    "identity",
    "generated",
    "collation",
    "comment",
    "primary_key",
    "foreign_key",
    "unique",
    "check",
    "constraint",  # exclusion constraints
    "index",
    "partition",
    "view",
    "rls",
    "policy",
    "grant",  # of tables and functions to anon, authenticated, service_role
    "enum",
    "domain",
    "sequence",
    "schema",
    "trigger",  # timing, events, function, condition, FOR EACH ROW/STATEMENT, enabled state
    "replica_identity",
    "cluster",  # CLUSTER ON
    "function",  # functions, procedures and aggregates of the schemas: their whole definition and comment
    "extension",
)
DEFAULT_IGNORE = frozenset({"grant"})
"""Grants come from the platform's default privileges, not from models: not compared unless asked."""
NEVER_COMPARED = (
    "owners",
    "publications (Realtime's table list)",
    "table storage parameters",
    "statistics targets",
    "sequence positions",
    "extension versions",
    "data",
)
"""What no category covers: a diff with 0 differences says nothing about these."""


def describe_scope(ignore: Iterable[str] = DEFAULT_IGNORE) -> str:
    """What a diff with these ignored categories compared, and what it did not: for reports and summaries."""
    skip = set(ignore)
    compared = [c.replace("_", " ") for c in CATEGORIES if c not in skip]
    ignored = [c.replace("_", " ") for c in CATEGORIES if c in skip]
    text = "compared: " + ", ".join(compared)
    if ignored:
        text += "; ignored on request: " + ", ".join(ignored)
    return text + "; never compared: " + ", ".join(NEVER_COMPARED)


@dataclass(frozen=True)
class Difference:
    path: str  # where, e.g. "public.tasks.owner_id"
    category: str  # one of CATEGORIES
    kind: Literal["missing", "extra", "changed"]
    expected: str | None = None
    actual: str | None = None

    def __str__(self) -> str:
        if self.kind == "missing":
            return f"- {self.path} [{self.category}]: missing (expected {self.expected})"
        if self.kind == "extra":
            return f"+ {self.path} [{self.category}]: not expected (found {self.actual})"
        return f"~ {self.path} [{self.category}]: expected {self.expected}, found {self.actual}"


def format_diff(differences: Iterable[Difference]) -> str:
    """One line per difference; ``no differences`` when there are none."""
    lines = [str(d) for d in differences]
    return "\n".join(lines) if lines else "no differences"


def diff(
    expected: m.Database,
    actual: m.Database,
    *,
    schemas: Iterable[str] | None = None,
    ignore: Iterable[str] = DEFAULT_IGNORE,
) -> list[Difference]:
    """Every difference between ``expected`` and ``actual`` in ``schemas`` (default: those of ``expected``)."""
    skip = frozenset(ignore)
    unknown = skip - set(CATEGORIES)
    if unknown:
        raise ValueError(f"Unknown categories to ignore: {', '.join(sorted(unknown))}. Known: {', '.join(CATEGORIES)}.")
    names = list(schemas) if schemas is not None else [s.name for s in expected.schemas]
    out = [d for d in _diff(expected, actual, names) if d.category not in skip]
    if "extension" not in skip:
        out += _keyed(
            "extension",
            "extension",
            {x.name: x for x in expected.extensions},
            {x.name: x for x in actual.extensions},
            lambda path, e, a: _changed(f"{path} schema", "extension", e.schema, a.schema),
            lambda x: f"extension in schema {x.schema}",
        )
    return out


def _schema(db: m.Database, name: str) -> m.Schema | None:
    return next((s for s in db.schemas if s.name == name), None)


def _diff(exp_db: m.Database, act_db: m.Database, names: list[str]) -> Iterator[Difference]:
    for name in names:
        exp, act = _schema(exp_db, name), _schema(act_db, name)
        if exp is None or act is None:
            if exp is not act:
                yield Difference(
                    name, "schema", "missing" if act is None else "extra", name if exp else None, name if act else None
                )
            continue
        yield from _changed(f"{name} comment", "comment", exp.comment, act.comment)
        yield from _keyed(
            name, "table", {t.name: t for t in exp.tables}, {t.name: t for t in act.tables}, _table, _kind_text
        )
        yield from _keyed(
            name,
            "function",
            {f"{f.name}({f.arguments})": f for f in exp.functions},
            {f"{f.name}({f.arguments})": f for f in act.functions},
            _function,
            lambda f: f.kind,
        )
        yield from _keyed(
            name,
            "trigger",
            {f"{t.schema}.{t.table} trigger {t.name}": t for t in exp.external_triggers},
            {f"{t.schema}.{t.table} trigger {t.name}": t for t in act.external_triggers},
            _trigger_pair,
            lambda t: t.definition,
        )
        yield from _keyed(
            name, "enum", {e.name: e for e in exp.enums}, {e.name: e for e in act.enums}, _enum, _enum_text
        )
        yield from _keyed(
            name, "domain", {d.name: d for d in exp.domains}, {d.name: d for d in act.domains}, _domain, _domain_text
        )
        yield from _keyed(
            name,
            "sequence",
            {s.name: s for s in exp.sequences},
            {s.name: s for s in act.sequences},
            _sequence,
            _sequence_text,
        )


def _keyed(prefix, category, exp, act, compare, describe):  # type: ignore[no-untyped-def]
    for key in exp:
        path = f"{prefix}.{key}"
        if key not in act:
            yield Difference(path, category, "missing", describe(exp[key]), None)
        else:
            yield from compare(path, exp[key], act[key])
    for key in act:
        if key not in exp:
            yield Difference(f"{prefix}.{key}", category, "extra", None, describe(act[key]))


def _changed(path: str, category: str, exp: object, act: object) -> Iterator[Difference]:
    if exp != act:
        yield Difference(path, category, "changed", _text(exp), _text(act))


def _text(value: object) -> str:
    if value is None:
        return "none"
    if isinstance(value, str):
        return value
    return repr(value)


def _kind_text(t: m.Table) -> str:
    return t.kind.replace("_", " ")


def _table(path: str, exp: m.Table, act: m.Table) -> Iterator[Difference]:
    if exp.kind != act.kind:
        yield Difference(path, "table", "changed", _kind_text(exp), _kind_text(act))
        return
    exp_cols, act_cols = {c.name: c for c in exp.columns}, {c.name: c for c in act.columns}
    for name, col in exp_cols.items():
        if name not in act_cols:
            yield Difference(f"{path}.{name}", "column", "missing", col.type.sql, None)
        else:
            yield from _column(f"{path}.{name}", col, act_cols[name])
    for name, col in act_cols.items():
        if name not in exp_cols:
            yield Difference(f"{path}.{name}", "column", "extra", None, col.type.sql)
    common_exp = [c.name for c in exp.columns if c.name in act_cols]
    common_act = [c.name for c in act.columns if c.name in exp_cols]
    if common_exp != common_act:
        yield Difference(path, "column_order", "changed", ", ".join(common_exp), ", ".join(common_act))
    pk_e = (exp.primary_key.name, exp.primary_key.columns, exp.primary_key.inherited) if exp.primary_key else None
    pk_a = (act.primary_key.name, act.primary_key.columns, act.primary_key.inherited) if act.primary_key else None
    yield from _changed(f"{path} primary key", "primary_key", pk_e, pk_a)
    yield from _named(path, "foreign_key", exp.foreign_keys, act.foreign_keys, lambda c: (c.definition, c.inherited))
    yield from _named(
        path, "unique", exp.unique_constraints, act.unique_constraints, lambda c: (c.definition, c.inherited)
    )
    yield from _named(
        path, "check", exp.check_constraints, act.check_constraints, lambda c: (c.definition, c.inherited)
    )
    yield from _named(
        path, "constraint", exp.other_constraints, act.other_constraints, lambda c: (c.definition, c.inherited)
    )
    yield from _named(path, "index", exp.indexes, act.indexes, lambda i: (i.definition, i.inherited))
    yield from _changed(f"{path} comment", "comment", exp.comment, act.comment)
    yield from _changed(f"{path} partition key", "partition", exp.partition_key, act.partition_key)
    yield from _changed(f"{path} partition of", "partition", exp.partition_of, act.partition_of)
    yield from _changed(f"{path} partition bound", "partition", exp.partition_bound, act.partition_bound)
    yield from _changed(f"{path} unlogged", "table", exp.unlogged, act.unlogged)
    if exp.is_view:
        yield from _changed(f"{path} definition", "view", exp.view_definition, act.view_definition)
        yield from _changed(f"{path} options", "view", exp.view_options, act.view_options)
        yield from _changed(f"{path} populated", "view", exp.populated, act.populated)
    yield from _changed(
        f"{path} row level security", "rls", (exp.rls_enabled, exp.rls_forced), (act.rls_enabled, act.rls_forced)
    )
    yield from _named(
        path, "policy", exp.policies, act.policies, lambda p: (p.command, p.roles, p.permissive, p.using, p.with_check)
    )
    yield from _changed(f"{path} grants", "grant", exp.grants, act.grants)
    yield from _named(path, "trigger", exp.triggers, act.triggers, _trigger_facts)
    yield from _changed(
        f"{path} replica identity",
        "replica_identity",
        (exp.replica_identity, exp.replica_index),
        (act.replica_identity, act.replica_index),
    )
    yield from _changed(f"{path} cluster on", "cluster", exp.clustered_index, act.clustered_index)


def _trigger_facts(t: m.Trigger) -> tuple[object, ...]:
    """Definition first (shown when missing), then what it says, so a change names the part that changed."""
    return (t.definition, t.timing, t.events, t.function, t.condition, t.for_each_row, t.enabled)


def _trigger_pair(path: str, exp: m.Trigger, act: m.Trigger) -> Iterator[Difference]:
    yield from _changed(path, "trigger", _trigger_facts(exp), _trigger_facts(act))


def _function(path: str, exp: m.Function, act: m.Function) -> Iterator[Difference]:
    yield from _changed(path, "function", exp.definition, act.definition)
    yield from _changed(f"{path} comment", "comment", exp.comment, act.comment)
    yield from _changed(f"{path} grants", "grant", exp.grants, act.grants)


def _column(path: str, exp: m.Column, act: m.Column) -> Iterator[Difference]:
    yield from _changed(path, "type", (exp.type.sql, exp.type.dims), (act.type.sql, act.type.dims))
    yield from _changed(f"{path} nullable", "nullable", exp.nullable, act.nullable)
    yield from _changed(f"{path} default", "default", exp.default, act.default)
    yield from _changed(
        f"{path} identity", "identity", exp.identity and astuple(exp.identity), act.identity and astuple(act.identity)
    )
    yield from _changed(f"{path} generated", "generated", exp.generated, act.generated)
    yield from _changed(f"{path} collation", "collation", exp.collation, act.collation)
    yield from _changed(f"{path} comment", "comment", exp.comment, act.comment)


def _named(path, category, exp, act, key):  # type: ignore[no-untyped-def]
    exp_map, act_map = {c.name: c for c in exp}, {c.name: c for c in act}
    for name, item in exp_map.items():
        where = f"{path} {category.replace('_', ' ')} {name}"
        if name not in act_map:
            yield Difference(where, category, "missing", _text(key(item)[0]), None)
        elif key(item) != key(act_map[name]):
            yield Difference(where, category, "changed", _text(key(item)), _text(key(act_map[name])))
    for name, item in act_map.items():
        if name not in exp_map:
            yield Difference(
                f"{path} {category.replace('_', ' ')} {name}", category, "extra", None, _text(key(item)[0])
            )


def _enum_text(e: m.Enum) -> str:
    return "enum (" + ", ".join(e.labels) + ")"


def _enum(path: str, exp: m.Enum, act: m.Enum) -> Iterator[Difference]:
    yield from _changed(path, "enum", exp.labels, act.labels)


def _domain_text(d: m.Domain) -> str:
    return f"domain over {d.base.sql}"


def _domain(path: str, exp: m.Domain, act: m.Domain) -> Iterator[Difference]:
    def facts(d: m.Domain) -> tuple[object, ...]:
        return (d.base.sql, d.nullable, d.default, d.collation, [(c.name, c.expression) for c in d.checks])

    yield from _changed(path, "domain", facts(exp), facts(act))


def _sequence_text(s: m.Sequence) -> str:
    return f"sequence {s.data_type}"


def _sequence(path: str, exp: m.Sequence, act: m.Sequence) -> Iterator[Difference]:
    yield from _changed(path, "sequence", astuple(exp), astuple(act))
