"""The policy matrix widget and ``%sbpolicies``: a colour-coded grid, one button per cell; clicking a
cell shows what was tried, what happened and the SQL of the policies that applied.

Everything is a method (:meth:`PolicyMatrixWidget.select`) or a plain function (:func:`parse_options`),
so tests and the browser drive it the same way.
"""

from __future__ import annotations

import argparse
import html
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from workbench.policies.matrix import (
    COLOURS,
    OPERATIONS,
    OUTCOME_MEANING,
    OUTCOMES,
    Cell,
    PolicyMatrix,
    PolicyMatrixError,
    build_matrix,
    resolve_identities,
)

if TYPE_CHECKING:
    from workbench.core import Workbench

DEFAULT_ROLES = ("anon", "service_role")
DEFAULT_USERS = 3


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
class _Parser(argparse.ArgumentParser):
    """argparse that raises our error instead of printing and exiting."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        raise PolicyMatrixError(f"{self.prog}: {message}.\n{self.format_usage().strip()}")

    def exit(self, status: int = 0, message: str | None = None) -> Any:  # type: ignore[override]
        raise PolicyMatrixError(message or self.format_usage())


USAGE_EXAMPLES = """examples:
  %sbpolicies
  %sbpolicies --as alice@example.com bob@example.com --tables tasks projects
  %sbpolicies --as 'bob@example.com+{"user_role": "admin"}' --roles anon --ops select insert
  %sbpolicies --tables tasks --export tests/test_policies.py
  %sbpolicies --migration supabase/migrations/20260101_teams.sql"""


def make_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="%sbpolicies",
        add_help=False,
        description="What each identity may do to each table, really tried in a transaction that is rolled back.",
        epilog=USAGE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--as", dest="users", nargs="+", action="extend", metavar="USER",
                        help="users of auth.users (email or uuid), each optionally +{json claims}; default: the first "
                        f"{DEFAULT_USERS}")  # fmt: skip
    parser.add_argument("--roles", nargs="*", default=None, metavar="ROLE",
                        help=f"role identities; default: {' '.join(DEFAULT_ROLES)} (--roles alone: none)")  # fmt: skip
    parser.add_argument("--tables", nargs="+", action="extend", metavar="TABLE",
                        help="tables as schema.table or a table of public; default: every table of public")  # fmt: skip
    parser.add_argument("--ops", nargs="+", choices=OPERATIONS, metavar="OP",
                        help=f"operations among {', '.join(OPERATIONS)}; default: all")  # fmt: skip
    parser.add_argument("--export", metavar="PATH", help="also write the matrix as a pytest file")
    parser.add_argument("--migration", metavar="PATH", help="the matrix before / after this migration (.sql file "
                        "or folder), rolled back, with the changed cells highlighted")  # fmt: skip
    parser.add_argument("--timeout-ms", type=int, default=5000, help="statement timeout of each probe")
    parser.add_argument("-h", "--help", action="store_true", help="show this help")
    return parser


@dataclass
class MatrixOptions:
    users: list[str] | None = None
    roles: list[str] = field(default_factory=lambda: list(DEFAULT_ROLES))
    tables: list[str] | None = None
    operations: list[str] = field(default_factory=lambda: list(OPERATIONS))
    export: str | None = None
    migration: str | None = None
    timeout_ms: int = 5000
    help: bool = False


def parse_options(line: str) -> MatrixOptions:
    """Parse a ``%sbpolicies`` line (shell-like quoting, so JSON claims survive)."""
    try:
        words = shlex.split(line)
    except ValueError as exc:
        raise PolicyMatrixError(f"%sbpolicies: {exc} (check the quotes).") from None
    args = make_parser().parse_args(words)
    if args.timeout_ms <= 0:
        raise PolicyMatrixError("%sbpolicies: --timeout-ms must be a positive number of milliseconds.")
    return MatrixOptions(
        users=args.users,
        roles=list(DEFAULT_ROLES) if args.roles is None else args.roles,
        tables=args.tables,
        operations=args.ops or list(OPERATIONS),
        export=args.export,
        migration=args.migration,
        timeout_ms=args.timeout_ms,
        help=args.help,
    )


async def matrix_for(wb: Workbench, options: MatrixOptions) -> PolicyMatrix:
    """Resolve the identities and build the matrix on the running loop's engine."""
    from workbench.identity import find_users

    async with wb.engine().connect() as sa_conn:
        raw = (await sa_conn.get_raw_connection()).driver_connection
        assert raw is not None
        try:
            users: Sequence[str] | None = options.users
            if users is None:
                users = [str(u["email"] or u["id"]) for u in await find_users(raw, "", DEFAULT_USERS)]
            identities = await resolve_identities(raw, users, options.roles, issuer=wb.issuer)
            return await build_matrix(
                raw, identities, options.tables, options.operations, statement_timeout_ms=options.timeout_ms
            )
        finally:
            await sa_conn.rollback()


def policy_matrix_magic(wb: Workbench, line: str) -> Any:
    """``%sbpolicies [--as USER ...] [--roles ROLE ...] [--tables T ...] [--ops OP ...] [--export PATH]``."""
    options = parse_options(line)
    if options.help:
        help_text = w.HTML(f"<pre>{html.escape(make_parser().format_help())}</pre>")
        help_text.add_class("wb-policy-help")
        return help_text
    if options.migration:
        from workbench.widgets.policy_impact import PolicyImpactWidget, impact_for

        return PolicyImpactWidget(wb.run(impact_for(wb, options)))
    matrix = wb.run(matrix_for(wb, options))
    status = ""
    if options.export:
        from workbench.policies.export import export_pytest

        path = export_pytest(
            matrix, options.export, source=wb.settings.describe(), statement_timeout_ms=options.timeout_ms
        )
        count = len([c for c in matrix.cells if c.statement])
        status = f"Wrote {count} tests to {path}: run them with `pytest {path}`."
    return PolicyMatrixWidget(matrix, status=status)
