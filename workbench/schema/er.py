"""Mermaid ER diagrams of a reflected database (JupyterLab 4.1+ renders ``text/vnd.mermaid`` outputs)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from workbench.schema import model as m


def _entity_id(table: m.Table) -> str:
    name = table.name if table.schema == m.DEFAULT_SCHEMA else f"{table.schema}__{table.name}"
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def _word(text: str) -> str:
    """Mermaid attribute names and types must be single words."""
    return re.sub(r"[^A-Za-z0-9_]", "_", text) or "_"


def _label(text: str) -> str:
    return '"' + text.replace('"', "'").replace("\n", " ") + '"'


def er_diagram(
    db: m.Database,
    *,
    tables: Iterable[str] | None = None,
    columns: bool = True,
    external: bool = True,
) -> str:
    """``erDiagram`` text: tables (and views) with their columns and keys, one edge per foreign key.

    ``tables`` limits the diagram (names or ``schema.name``); ``external`` adds the tables outside the
    selection that foreign keys point to (``auth.users``), with only their key columns.
    """
    wanted = set(tables) if tables is not None else None
    chosen = [t for t in db.tables() if wanted is None or t.name in wanted or t.qualified_name in wanted]
    keys = {t.key for t in chosen}
    extra: list[m.Table] = []
    if external:
        refs = {(fk.ref_schema, fk.ref_table) for t in chosen for fk in t.foreign_keys} - keys
        extra = [t for t in db.all_tables() if t.key in refs]
    lines = ["erDiagram"]
    for table in [*chosen, *extra]:
        lines.extend(_entity(table, columns, table in extra))
    for table in chosen:
        for fk in table.foreign_keys:
            target = db.find_table((fk.ref_schema, fk.ref_table))
            if target is None or (target.key not in keys and target not in extra) or fk.inherited:
                continue
            edge = f"{_entity_id(table)} {_cardinality(table, fk)} {_entity_id(target)}"
            lines.append(f"    {edge} : {_label(', '.join(fk.columns))}")
    return "\n".join(lines)


def _entity(table: m.Table, columns: bool, external: bool) -> list[str]:
    title = table.qualified_name
    if table.kind != "table":
        title += f" ({table.kind.replace('_', ' ')})"
    ident = _entity_id(table)
    head = f"    {ident}[{_label(title)}] {{"
    if not columns:
        return [head, "    }"]
    pk = set(table.primary_key.columns) if table.primary_key else set()
    fk = {c for f in table.foreign_keys for c in f.columns}
    uq = {u.columns[0] for u in table.unique_constraints if len(u.columns) == 1}
    out = [head]
    cols = table.columns
    if external:
        cols = [c for c in cols if c.name in pk] or cols[:1]
    for col in cols:
        marks = [k for k, s in (("PK", pk), ("FK", fk), ("UK", uq)) if col.name in s]
        type_name = col.type.name + ("_array" if col.type.dims else "")
        line = f"        {_word(type_name)} {_word(col.name)}"
        if marks:
            line += " " + ", ".join(marks)
        if not col.nullable and not marks:
            line += ' "not null"'
        out.append(line)
    out.append("    }")
    return out


def _cardinality(table: m.Table, fk: m.ForeignKey) -> str:
    """Child-to-parent crow's feet: many (or one, when the FK is unique) to exactly one (or zero or one)."""
    from workbench.schema.codegen import is_unique

    nullable = any(table.column(c).nullable for c in fk.columns)
    child = "|o" if is_unique(table, fk.columns) else "}o"
    parent = "o|" if nullable else "||"
    return f"{child}--{parent}"


@dataclass
class MermaidDiagram:
    """Displays as a diagram in JupyterLab (and as its Mermaid text elsewhere)."""

    text: str

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {
            "text/vnd.mermaid": self.text,
            "text/markdown": f"```mermaid\n{self.text}\n```",
            "text/plain": self.text,
        }

    def __str__(self) -> str:
        return self.text
