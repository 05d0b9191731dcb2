"""The policy matrix's result model: what was tried, what happened, which policies applied.

Tables and policies are :mod:`workbench.schema.model`'s (the one catalog model). Plain dataclasses shared
by the runner (:mod:`workbench.policies.matrix`), the probes, the exporter and the widget; ``render_html``
is the static view used by ``_repr_html_``.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from workbench.core.identity import Identity
from workbench.core.query import QueryUsageError
from workbench.schema import model as m

if TYPE_CHECKING:
    import pandas as pd

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
COLOURS = {
    "allowed": "#c6efce",
    "filtered": "#eeeeee",
    "refused": "#ffc7ce",
    "constraint": "#ffeb9c",
    "error": "#e4c1f9",
}


class PolicyMatrixError(QueryUsageError):
    """Input the matrix cannot use (unknown table, duplicate identity labels, ...); says what to do."""


# -- result model ------------------------------------------------------------------------------------
# The tables and their policies are the one catalog model's: workbench.schema.model.Table and .Policy.


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
    tables: list[m.Table]  # as reflected, with their policies
    operations: list[Operation]
    cells: list[Cell]
    notes: list[str] = field(default_factory=list)
    elapsed_ms: float = 0.0
    row_counts: dict[str, int] = field(default_factory=dict)  # schema.table -> rows the connection role sees

    @property
    def labels(self) -> list[str]:
        return [i.describe() for i in self.identities]

    def cell(self, identity: str, table: str, operation: str) -> Cell:
        table = qualify_table(table)
        for c in self.cells:
            if c.identity == identity and c.table == table and c.operation == operation:
                return c
        raise KeyError(f"no cell for {identity!r} x {table} x {operation}; identities: {', '.join(self.labels)}")

    def table(self, name: str) -> m.Table:
        name = qualify_table(name)
        for t in self.tables:
            if t.qualified_name == name:
                return t
        raise KeyError(f"{name} is not in this matrix")

    def policy(self, table: str, name: str) -> m.Policy:
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


# -- names ---------------------------------------------------------------------------------------------


def qualify_table(name: str) -> str:
    return name if "." in name else f"public.{name}"


def split_table_name(name: str) -> tuple[str, str]:
    """``"tasks"`` -> ``("public", "tasks")``; ``"storage.objects"`` -> ``("storage", "objects")``."""
    name = name.strip()
    if not name:
        raise PolicyMatrixError("An empty table name was given; write schema.table or a table of public.")
    schema, _, table = qualify_table(name).partition(".")
    return schema.strip('"'), table.strip('"')


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
