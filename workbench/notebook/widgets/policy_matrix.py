"""The policy matrix widget and ``%sbpolicies``: a colour-coded grid, one button per cell; clicking a
cell shows what was tried, what happened and the SQL of the policies that applied.

Everything is a method (:meth:`PolicyMatrixWidget.select`) or a plain function (:func:`parse_options`),
so tests and the browser drive it the same way.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from workbench.policies.commands import (
    DEFAULT_ROLES,
    DEFAULT_USERS,
    MatrixOptions,
    make_matrix_parser,
    matrix_for,
    parse_matrix_options,
)
from workbench.policies.matrix import (
    COLOURS,
    OUTCOME_MEANING,
    OUTCOMES,
    Cell,
    PolicyMatrix,
)

if TYPE_CHECKING:
    from workbench.notebook.session import Workbench

__all__ = [
    "DEFAULT_ROLES",
    "DEFAULT_USERS",
    "MatrixOptions",
    "PolicyMatrixWidget",
    "make_parser",
    "matrix_for",
    "parse_options",
    "policy_matrix_magic",
    "render_cell",
]


class PolicyMatrixWidget:
    """ipywidgets view of a :class:`PolicyMatrix`."""

    def __init__(self, matrix: PolicyMatrix, *, status: str = "") -> None:
        self.matrix = matrix
        self.buttons: dict[tuple[str, str, str], w.Button] = {}
        self.selected: Cell | None = None
        columns = len(matrix.labels)
        children: list[w.Widget] = [_label("table", "wb-policy-header"), _label("operation", "wb-policy-header")]
        children += [_label(label, "wb-policy-header wb-policy-identity") for label in matrix.labels]
        for table in matrix.tables:
            for n, op in enumerate(matrix.operations):
                name = table.qualified_name + ("" if table.rls_enabled else " (RLS off)")
                children.append(_label(name if n == 0 else "", "wb-policy-table"))
                children.append(_label(op, "wb-policy-operation"))
                for label in matrix.labels:
                    children.append(self._button(matrix.cell(label, table.qualified_name, op)))
        self.grid = w.GridBox(
            children,
            layout=w.Layout(
                grid_template_columns=f"minmax(160px, max-content) 80px repeat({columns}, minmax(110px, 1fr))",
                grid_gap="2px 4px",
                align_items="center",
            ),
        )
        self.grid.add_class("wb-policy-grid")
        self.legend = w.HTML(
            " ".join(
                f"<span class='wb-policy-legend-{o}' style='background:{COLOURS[o]};padding:0 .5em;"
                f"margin-right:.3em' title='{html.escape(OUTCOME_MEANING[o])}'>{o}</span>"
                for o in OUTCOMES
            )
            + "<span style='margin-left:1em;color:#666'>click a cell for its statement and policies</span>"
        )
        self.legend.add_class("wb-policy-legend")
        notes = "".join(f"<li>{html.escape(n)}</li>" for n in matrix.notes)
        self.status = w.HTML(
            (f"<div>{html.escape(status)}</div>" if status else "")
            + f"<div style='color:#666'>{len(matrix.cells)} cells in {matrix.elapsed_ms:.0f} ms, all rolled back"
            + "</div>"
            + (f"<ul class='wb-policy-notes'>{notes}</ul>" if notes else "")
        )
        self.status.add_class("wb-policy-status")
        self.detail = w.HTML("<i>Select a cell.</i>")
        self.detail.add_class("wb-policy-detail")
        self.widget = w.VBox([self.legend, self.grid, self.status, self.detail])
        self.widget.add_class("wb-policy-matrix")

    def _button(self, cell: Cell) -> w.Button:
        button = w.Button(
            description=cell.summary(),
            tooltip=f"{cell.identity} · {cell.operation} · {cell.table}: {cell.outcome}",
            layout=w.Layout(width="auto", height="28px"),
        )
        button.style.button_color = COLOURS[cell.outcome]
        button.add_class("wb-policy-cell")
        button.add_class(f"wb-policy-{cell.outcome}")
        button.on_click(lambda _b, key=cell.key: self.select(*key))
        self.buttons[cell.key] = button
        return button

    def select(self, identity: str, table: str, operation: str) -> Cell:
        """Show one cell's drill-down: outcome, statement, error, and the SQL of its policies."""
        cell = self.matrix.cell(identity, table, operation)
        for key, button in self.buttons.items():
            if key == cell.key:
                button.add_class("wb-policy-selected")
            else:
                button.remove_class("wb-policy-selected")
        self.selected = cell
        self.detail.value = render_cell(self.matrix, cell)
        return cell

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


def render_cell(matrix: PolicyMatrix, cell: Cell) -> str:
    """The drill-down HTML of one cell."""
    esc = html.escape
    table = matrix.table(cell.table)
    rows = "" if cell.rows is None else f" · {cell.rows} row(s)"
    parts = [
        f"<div class='wb-policy-cell-title'><b>{esc(cell.identity)}</b> · {cell.operation} · "
        f"<code>{esc(cell.table)}</code>: <span style='background:{COLOURS[cell.outcome]};padding:0 .4em'>"
        f"{cell.outcome}</span>{rows}</div>",
        f"<div style='color:#555'>{esc(OUTCOME_MEANING[cell.outcome])}</div>",
    ]
    if cell.note:
        parts.append(f"<div class='wb-policy-note'>{esc(cell.note)}</div>")
    if cell.message:
        parts.append(
            f"<div class='wb-policy-message' style='color:#a00'>{esc(cell.sqlstate or '')} {esc(cell.message)}</div>"
        )
    if cell.statement:
        params = f"\n-- parameters: {esc(repr(cell.params))}" if cell.params else ""
        parts.append(
            f"<div>Probe (rolled back):</div><pre class='wb-policy-statement'>{esc(cell.statement)}{params}</pre>"
        )
    if cell.policies:
        parts.append(f"<div>Policies that apply ({len(cell.policies)}):</div>")
        for name in cell.policies:
            parts.append(f"<pre class='wb-policy-sql'>{esc(matrix.policy(cell.table, name).sql())}</pre>")
    elif table.policies and table.rls_enabled:
        parts.append(
            f"<div>No policy applies; the table's policies: {esc(', '.join(p.name for p in table.policies))}</div>"
        )
    return "<div class='wb-policy-drilldown'>" + "".join(parts) + "</div>"


def _label(text: str, classes: str) -> w.HTML:
    label = w.HTML(f"<b>{html.escape(text)}</b>" if "header" in classes else html.escape(text))
    for cls in classes.split():
        label.add_class(cls)
    return label


# -- %sbpolicies ---------------------------------------------------------------------------------------
# The command's logic lives in workbench.policies.commands (shared with the CLI and plain calls).
parse_options = parse_matrix_options
make_parser = make_matrix_parser


def policy_matrix_magic(wb: Workbench, line: str) -> Any:
    """``%sbpolicies [--as USER ...] [--roles ROLE ...] [--tables T ...] [--ops OP ...] [--export PATH]``."""
    options = parse_options(line)
    if options.help:
        help_text = w.HTML(f"<pre>{html.escape(make_parser().format_help())}</pre>")
        help_text.add_class("wb-policy-help")
        return help_text
    if options.migration:  # the magic hands --migration to workbench.notebook.widgets.policy_impact
        raise ValueError("--migration belongs to workbench.notebook.widgets.policy_impact.policy_impact_magic")

    async def build() -> PolicyMatrix:  # the engine belongs to the loop wb.run uses
        return await matrix_for(wb.engine(), options, issuer=wb.issuer)

    matrix = wb.run(build())
    status = ""
    if options.export:
        from workbench.policies.export import export_pytest

        path = export_pytest(
            matrix, options.export, source=wb.settings.describe(), statement_timeout_ms=options.timeout_ms
        )
        count = len([c for c in matrix.cells if c.statement])
        status = f"Wrote {count} tests to {path}: run them with `pytest {path}`."
    return PolicyMatrixWidget(matrix, status=status)
