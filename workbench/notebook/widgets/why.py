"""The "why can't Bob see this row?" widget and ``%sbwhy`` / ``%%sbwhy``: one line per candidate row with a
coloured verdict and its reason; clicking a verdict expands every policy's expression with its value.

The widget only shows a :class:`~workbench.policies.why.WhyReport`; everything it does is a method
(:meth:`WhyWidget.expand`) or a plain function (:func:`parse_options`, :func:`why_for`), so tests and the
browser drive it the same way.
"""

from __future__ import annotations

import argparse
import html
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from workbench.policies.why import (
    COLOURS,
    DEFAULT_LIMIT,
    OPERATIONS,
    OUTCOME_MEANING,
    RowExplanation,
    WhyError,
    WhyReport,
    explain,
)

if TYPE_CHECKING:
    from workbench.notebook.session import Workbench

_VALUE_COLOURS = {"true": "#1a7f37", "false": "#b42318", "null": "#8a6d00", "error": "#6f2da8"}
MAX_VALUE_CHARS = 60
CELL_CHARS = 18
GRID_COLUMNS = 4  # the first columns of the row in the grid; the expanded row shows them all


class WhyWidget:
    """ipywidgets view of a :class:`WhyReport`: facts, then one line per row; a click expands a row."""

    def __init__(self, report: WhyReport) -> None:
        self.report = report
        self.buttons: list[w.Button] = []
        self.details: list[w.HTML] = []
        self.expanded: set[int] = set()
        self.header = w.HTML(render_header(report))
        self.header.add_class("wb-why-header")
        self._template = _grid_template(report)
        lines: list[w.Widget] = [
            self._grid(
                [
                    _label("verdict", "wb-why-colhead"),
                    *[_label(c, "wb-why-colhead") for c in report.columns[:GRID_COLUMNS]],
                    _label("reason", "wb-why-colhead"),
                ]
            )
        ]
        for index, row in enumerate(report.rows):
            lines.extend(self._line(index, row))
        if not report.rows:
            lines.append(w.HTML("<i>No candidate row: the filter matches nothing, even for the owner.</i>"))
        self.rows = w.VBox(lines)
        self.rows.add_class("wb-why-rows")
        self.widget = w.VBox([self.header, self.rows])
        self.widget.add_class("wb-why")

    def _grid(self, children: list[w.Widget]) -> w.GridBox:
        """One line: every line shares the same fixed column widths, so the columns align."""
        return w.GridBox(
            children, layout=w.Layout(grid_template_columns=self._template, grid_gap="0 10px", align_items="center")
        )

    def _line(self, index: int, row: RowExplanation) -> list[w.Widget]:
        button = w.Button(
            description=row.outcome,
            tooltip=f"row {index + 1}: {row.outcome}: {OUTCOME_MEANING[row.outcome]} (click for the policies)",
            layout=w.Layout(width="90px", height="26px"),
        )
        button.style.button_color = COLOURS[row.outcome]
        button.add_class("wb-why-verdict")
        button.add_class(f"wb-why-{row.outcome}")
        button.on_click(lambda _b, i=index: self.toggle(i))
        shown = self.report.columns[:GRID_COLUMNS]
        values = [_label_html(_value_cell(row.values.get(c)), "wb-why-value-cell") for c in shown]
        reason = _label_html(render_reason(row), "wb-why-reason-cell")
        line = self._grid([button, *values, reason])
        line.add_class("wb-why-line")
        detail = w.HTML("", layout=w.Layout(display="none"))
        detail.add_class("wb-why-detail")
        self.buttons.append(button)
        self.details.append(detail)
        return [line, detail]

    def toggle(self, index: int) -> None:
        """A click on a verdict: expand the row's policies, or fold them away again."""
        if index in self.expanded:
            self.collapse(index)
        else:
            self.expand(index)

    def expand(self, index: int) -> str:
        """Show every policy of row ``index`` with its expression and value; returns the HTML shown."""
        if not 0 <= index < len(self.report.rows):
            raise WhyError(f"There is no row {index}: the report has {len(self.report.rows)} rows (0-based).")
        detail = self.details[index]
        detail.value = render_detail(self.report, self.report.rows[index])
        detail.layout.display = None
        self.buttons[index].add_class("wb-why-expanded")
        self.expanded.add(index)
        return str(detail.value)

    def collapse(self, index: int) -> None:
        self.details[index].layout.display = "none"
        self.buttons[index].remove_class("wb-why-expanded")
        self.expanded.discard(index)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        bundle = self.widget._repr_mimebundle_(**kwargs)
        if isinstance(bundle, dict):  # a readable plain-text twin for terminals, logs and saved notebooks
            bundle["text/plain"] = render_text(self.report)
        return bundle


def render_text(report: WhyReport) -> str:
    """The report as plain text: the summary, then one line per row (first columns, verdict, reason)."""
    lines = [report.summary]
    for row in report.rows:
        values = ", ".join(f"{c}={_short_text(row.values.get(c))}" for c in report.columns[:GRID_COLUMNS])
        lines.append(f"  {row.outcome:<8} {values}: {row.reason}")
    return "\n".join(lines)


def _short_text(value: Any) -> str:
    text = "NULL" if value is None else str(value)
    return text if len(text) <= CELL_CHARS else text[: CELL_CHARS - 1] + "…"


# -- rendering (plain functions: testable without widgets) ---------------------------------------------
def _yes(flag: bool | None) -> str:
    return "yes" if flag else "no"


def render_header(report: WhyReport) -> str:
    esc = html.escape
    facts = report.facts
    parts = [f"<div class='wb-why-summary'><b>{esc(report.summary)}</b></div>"]
    if facts.kind in ("view", "materialized_view"):
        rls = (
            f"view · security_invoker {'on' if facts.security_invoker else 'off'} · owner {esc(facts.owner)}"
            f" · reads {esc(', '.join(facts.base_tables) or '?')}"
        )
    else:
        rls = (
            f"RLS {'enabled' if facts.rls_enabled else 'disabled'}"
            f"{' and forced' if facts.rls_forced else ''} · owner {esc(facts.owner)}"
        )
    privilege = {"select": "SELECT", "insert": "INSERT", "update": "UPDATE", "delete": "DELETE"}[report.operation]
    if facts.table_privilege:
        grant = f"{privilege} granted"
    elif facts.any_column_privilege:
        cols = [c for c, ok in facts.column_privileges.items() if ok]
        grant = f"{privilege} on columns {', '.join(cols)} only"
    else:
        grant = f"no {privilege} privilege"
    role = f"role <code>{esc(facts.role)}</code>"
    if facts.role_is_superuser:
        role += " (superuser)"
    elif facts.role_bypasses_rls:
        role += " (BYPASSRLS)"
    parts.append(
        f"<div class='wb-why-facts' style='color:#555'><code>{esc(report.table)}</code> · {rls} · {role} · "
        f"{esc(grant)}{'' if facts.schema_usage else ' · no USAGE on the schema'}</div>"
    )
    if report.policies:
        names = ", ".join(
            f"{esc(repr(p.name))} ({'permissive' if p.permissive else 'restrictive'} {p.command})"
            for p in report.policies
        )
        parts.append(f"<div class='wb-why-policies'>Policies that apply: {names}</div>")
    if report.other_policies:
        names = ", ".join(
            f"{esc(repr(p.name))} ({p.command} to {esc(', '.join(p.roles))})" for p in report.other_policies
        )
        parts.append(f"<div class='wb-why-other' style='color:#777'>Not for this role or command: {names}</div>")
    if report.statement:
        parts.append(f"<pre class='wb-why-statement'>{esc(report.statement)}</pre>")
    for note in report.notes:
        parts.append(f"<div class='wb-why-note' style='color:#8a6d00'>{esc(note)}</div>")
    more = f"; more rows exist (raise --limit {report.limit})" if report.truncated else ""
    parts.append(
        f"<div style='color:#777;font-size:90%'>{len(report.rows)} candidate rows read as the owner{more} · "
        f"{report.elapsed_ms:.0f} ms · all rolled back · click a verdict for its policies</div>"
    )
    return "".join(parts)


def _cell(value: Any) -> str:
    text = "NULL" if value is None else str(value)
    if len(text) > MAX_VALUE_CHARS:
        text = text[: MAX_VALUE_CHARS - 1] + "…"
    return html.escape(text)


def _value_cell(value: Any) -> str:
    """A grid cell: short, the whole value in its tooltip."""
    full = "NULL" if value is None else str(value)
    short = full if len(full) <= CELL_CHARS else full[: CELL_CHARS - 1] + "…"
    return f"<code title='{html.escape(full, quote=True)}' style='white-space:nowrap'>{html.escape(short)}</code>"


def _grid_template(report: WhyReport) -> str:
    """Fixed column widths from the longest shown value (capped), then the reason takes the rest."""
    widths = []
    for column in report.columns[:GRID_COLUMNS]:
        longest = max([len(column)] + [min(CELL_CHARS, len(str(r.values.get(column)))) for r in report.rows])
        widths.append(f"{longest * 8 + 8}px")
    return f"96px {' '.join(widths)} minmax(260px, 1fr)"


def _label(text: str, css_class: str) -> w.HTML:
    return _label_html(f"<b>{html.escape(text)}</b>", css_class)


def _label_html(text: str, css_class: str) -> w.HTML:
    label = w.HTML(text)
    label.add_class(css_class)
    return label


def render_reason(row: RowExplanation) -> str:
    observed = ""
    if row.observed is not None and row.observed != row.passes:
        observed = " <b style='color:#b42318'>(the real statement disagrees: please report)</b>"
    return f"<span class='wb-why-reason'>{html.escape(row.reason)}</span>{observed}"


def render_detail(report: WhyReport, row: RowExplanation) -> str:
    esc = html.escape
    parts = [f"<div class='wb-why-verdict-text'><b>{row.outcome}</b>: {esc(OUTCOME_MEANING[row.outcome])}</div>"]
    cells = "".join(
        f"<tr><td style='color:#777;padding-right:8px'>{esc(c)}</td>"
        f"<td><code>{_cell(row.values.get(c))}</code></td></tr>"
        for c in report.columns
    )
    parts.append(f"<table class='wb-why-values'>{cells}</table>")
    if row.new_values is not None:
        changed = {c: v for c, v in row.new_values.items() if row.values.get(c) != v}
        if changed:
            text = ", ".join(f"{esc(c)} → {_cell(v)}" for c, v in changed.items())
            parts.append(f"<div class='wb-why-new'>new row: {text}</div>")
    if not row.checks:
        parts.append(f"<div class='wb-why-nopolicy'>No policy was evaluated: {esc(row.reason)}</div>")
    for check in row.checks:
        colour = _VALUE_COLOURS.get(check.value, "#333")
        stage = f" · for {esc(check.stage)}" if check.stage and check.stage != report.operation else ""
        error = f"<div style='color:#6f2da8'>{esc(check.error)}</div>" if check.error else ""
        parts.append(
            f"<div class='wb-why-check'><span class='wb-why-value wb-why-value-{check.value}' "
            f"style='color:{colour};font-weight:bold'>{check.value}</span> "
            f"{esc(check.kind)} {esc(check.command)} policy <b>{esc(repr(check.name))}</b> "
            f"{esc(check.clause.upper())}{stage}<pre class='wb-why-expression'>{esc(check.expression)}</pre>{error}"
            "</div>"
        )
    if row.observed is not None:
        parts.append(
            f"<div class='wb-why-observed' style='color:#555'>The real statement as the identity "
            f"{'reaches' if row.observed else 'does not reach'} this row (rolled back).</div>"
        )
    style = "margin:2px 0 8px 100px;padding:4px 8px;border-left:3px solid #ccc"
    return f"<div class='wb-why-drilldown' style='{style}'>" + "".join(parts) + "</div>"


# -- %sbwhy ----------------------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    """argparse that raises our error instead of printing and exiting."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        raise WhyError(f"{self.prog}: {message}.\n{self.format_usage().strip()}")

    def exit(self, status: int = 0, message: str | None = None) -> Any:  # type: ignore[override]
        raise WhyError(message or self.format_usage())


USAGE_EXAMPLES = """examples:
  %sbwhy --as bob@example.com tasks
  %sbwhy --as bob@example.com tasks --key 5
  %sbwhy --role anon announcements --where 'published = false'
  %sbwhy --as bob@example.com tasks --op update --where 'project_id = :project'
  %%sbwhy --as bob@example.com
  update tasks set status = 'done' where id = 5"""


def make_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="%sbwhy",
        add_help=False,
        description="Why an identity sees (or may write) each row: every policy evaluated as the identity, "
        "in a transaction that is rolled back.",
        epilog=USAGE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("table", nargs="?", help="a table or view: name of public, or schema.name")
    parser.add_argument("--as", dest="as_user", metavar="USER", help="a user of auth.users (email or uuid)")
    parser.add_argument("--role", help="a database role (anon, authenticated, service_role, ...)")
    parser.add_argument("--claims", help="extra or overriding JWT claims as a JSON object")
    parser.add_argument("--where", help="SQL filter over the table's columns (:name binds a notebook variable)")
    parser.add_argument("--key", help="the primary key of one row")
    parser.add_argument("--op", choices=OPERATIONS, default="select", help="the command to explain")
    parser.add_argument("--limit", type=int, default=DEFAULT_LIMIT, help="at most this many candidate rows")
    parser.add_argument("-h", "--help", action="store_true", help="show this help")
    return parser


@dataclass
class WhyOptions:
    table: str | None = None
    as_user: str | None = None
    role: str | None = None
    claims: str | None = None
    where: str | None = None
    key: str | None = None
    operation: str = "select"
    limit: int = DEFAULT_LIMIT
    help: bool = False


def parse_options(line: str) -> WhyOptions:
    """Parse a ``%sbwhy`` line (shell-like quoting, so filters and JSON claims survive)."""
    try:
        words = shlex.split(line)
    except ValueError as exc:
        raise WhyError(f"%sbwhy: {exc} (check the quotes).") from None
    args = make_parser().parse_args(words)
    if args.limit <= 0:
        raise WhyError("%sbwhy: --limit must be a positive number of rows.")
    return WhyOptions(
        table=args.table,
        as_user=args.as_user,
        role=args.role,
        claims=args.claims,
        where=args.where,
        key=args.key,
        operation=args.op,
        limit=args.limit,
        help=args.help,
    )


async def why_for(
    wb: Workbench, options: WhyOptions, statement: str | None = None, namespace: Mapping[str, object] | None = None
) -> WhyReport:
    """Resolve the identity and explain, on the running loop's engine (nothing is committed)."""
    identity = await wb.resolve_identity(options.as_user, options.role, options.claims)
    if statement is not None and statement.strip():
        return await explain(wb.engine(), identity, statement=statement, params=namespace, limit=options.limit)
    if not options.table:
        raise WhyError("%sbwhy needs a table (%sbwhy --as USER TABLE [--where ...]) or, as a cell magic, a statement.")
    return await explain(
        wb.engine(),
        identity,
        options.table,
        where=options.where,
        params=namespace,
        key=options.key,
        operation=options.operation,
        limit=options.limit,
    )


def why_magic(wb: Workbench, line: str, cell: str | None = None, namespace: Mapping[str, object] | None = None) -> Any:
    """``%sbwhy --as USER TABLE [--where ...] [--key K] [--op OP]``; ``%%sbwhy --as USER`` + a statement."""
    options = parse_options(line)
    if options.help:
        help_text = w.HTML(f"<pre>{html.escape(make_parser().format_help())}</pre>")
        help_text.add_class("wb-why-help")
        return help_text
    if cell is not None and cell.strip() and (options.table or options.where or options.key):
        raise WhyError(
            "%%sbwhy takes the statement from the cell: drop the TABLE/--where/--key options, or use the line "
            "form %sbwhy --as USER TABLE --where '...'."
        )
    report = wb.run(why_for(wb, options, cell, namespace))
    return WhyWidget(report)
