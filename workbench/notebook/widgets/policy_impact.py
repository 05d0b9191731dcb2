"""The policy impact widget (``%sbpolicies --migration PATH``): the matrix before and after a migration
with the changed cells highlighted, and a "before / after / diff" toggle.

Thin glue over :func:`workbench.policies.impact.policy_impact`; :meth:`PolicyImpactWidget.show` and
:meth:`PolicyImpactWidget.select` are what a click does, so tests drive it without a browser.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from workbench.notebook.widgets.policy_matrix import PolicyMatrixWidget
from workbench.policies.impact import CellChange, PolicyImpact
from workbench.policies.impact_report import render_html

if TYPE_CHECKING:
    from workbench.notebook.session import Workbench
    from workbench.policies.commands import MatrixOptions

VIEWS = ("before", "after", "diff")
_CSS = """<style>
.wb-policy-impact-widget .wb-policy-changed { outline: 3px solid #d9480f; outline-offset: -3px; font-weight: bold; }
.wb-policy-impact-widget .wb-policy-unchanged { opacity: 0.35; }
.wb-policy-impact-widget .wb-impact-change { border-left: 4px solid #d9480f; padding-left: .5em; margin: .3em 0; }
</style>"""


class PolicyImpactWidget:
    """Three views of one :class:`PolicyImpact`: the matrix before, after, and the diff (after, with only
    the changed cells lit and labelled ``before → after``)."""

    def __init__(self, impact: PolicyImpact) -> None:
        self.impact = impact
        self.changes: dict[tuple[str, str, str], CellChange] = {c.key: c for c in impact.changes}
        self.views: dict[str, w.Widget] = {}
        self.matrices: dict[str, PolicyMatrixWidget] = {}
        if impact.before is not None:
            self.matrices["before"] = self._matrix(impact.before, "before")
        if impact.after is not None:
            self.matrices["after"] = self._matrix(impact.after, "after")
            self.matrices["diff"] = self._matrix(impact.after, "diff")
        for name, view in self.matrices.items():
            view.widget.add_class(f"wb-policy-impact-{name}")
            self.views[name] = view.widget
        self.summary = w.HTML(_CSS + render_html(impact))
        self.summary.add_class("wb-policy-impact-summary")
        available = [v for v in VIEWS if v in self.views]
        self.toggle = w.ToggleButtons(options=available, value=available[-1] if available else None)
        self.toggle.add_class("wb-policy-impact-toggle")
        self.toggle.observe(lambda change: self.show(change["new"]), names="value")
        self.body = w.Box([self.views[available[-1]]] if available else [])
        self.body.add_class("wb-policy-impact-body")
        self.widget = w.VBox([self.summary, self.toggle, self.body])
        self.widget.add_class("wb-policy-impact-widget")
        self.view = available[-1] if available else ""

    def _matrix(self, matrix: Any, view: str) -> PolicyMatrixWidget:
        widget = PolicyMatrixWidget(matrix, status=f"{view}: {_view_text(view)}")
        for key, button in widget.buttons.items():
            change = self.changes.get(key)
            if change is None:
                if view == "diff":
                    button.add_class("wb-policy-unchanged")
                continue
            button.add_class("wb-policy-changed")
            button.add_class(f"wb-impact-{change.direction}")
            if view == "diff":
                before = change.before.summary() if change.before else "no table"
                button.description = f"{_short(change, 'before')} → {_short(change, 'after')}"
                button.tooltip = f"{button.tooltip} (was {before})"
                button.on_click(lambda _b, key=key, widget=widget: self._explain(widget, key))
        return widget

    def show(self, view: str) -> w.Widget:
        """Switch the body to ``before``, ``after`` or ``diff``."""
        if view not in self.views:
            raise ValueError(f"Unknown view {view!r}; choose from {', '.join(self.views)}.")
        self.view = view
        self.body.children = [self.views[view]]
        if self.toggle.value != view:
            self.toggle.value = view
        return self.views[view]

    def select(self, identity: str, table: str, operation: str) -> CellChange | None:
        """Drill into one cell of the current view (the change's explanation first, in the diff)."""
        matrix = self.matrices[self.view]
        matrix.select(identity, table, operation)
        key = (identity, table if "." in table else f"public.{table}", operation)
        if self.view == "diff":
            self._explain(matrix, key)
        return self.changes.get(key)

    def _explain(self, widget: PolicyMatrixWidget, key: tuple[str, str, str]) -> None:
        change = self.changes.get(key)
        if change is None or "wb-impact-change" in widget.detail.value:
            return
        esc = html.escape
        reads = f"<div>depends on data: reads {esc(', '.join(change.reads))}</div>" if change.reads else ""
        widget.detail.value = (
            f"<div class='wb-impact-change'><b>{esc(change.summary())}</b> ({change.direction})"
            f"<div>because: {esc('; '.join(change.explained_by))}</div>{reads}</div>" + widget.detail.value
        )

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


def _short(change: CellChange, side: str) -> str:
    state = change.before if side == "before" else change.after
    if state is None:
        return "—"
    if state.outcome == "allowed":
        return f"✓ {state.rows}"
    if state.outcome == "filtered":
        return "0"
    return {"refused": "✗", "constraint": "⚠", "error": "!"}.get(state.outcome, state.outcome)


def _view_text(view: str) -> str:
    return {
        "before": "the matrix before the migration; outlined cells change",
        "after": "the matrix after the migration (rolled back); outlined cells changed",
        "diff": "only the changed cells, as before → after; click one for what explains it",
    }[view]


async def impact_for(wb: Workbench, options: MatrixOptions) -> PolicyImpact:
    """Run :func:`policy_impact` for ``%sbpolicies --migration`` options on the workbench's database."""
    from workbench.policies.impact import policy_impact

    assert options.migration is not None
    return await policy_impact(
        wb.engine(),
        options.migration,
        extra_identities=options.users or (),
        tables=options.tables,
        operations=options.operations,
        issuer=wb.issuer,
        statement_timeout_ms=options.timeout_ms,
        full=True,  # the notebook shows the whole matrix before and after, not only the tables that change
    )


def policy_impact_magic(wb: Workbench, line: str) -> PolicyImpactWidget:
    """``%sbpolicies --migration PATH [...]``: the matrix before / after the migration, changes highlighted."""
    from workbench.policies.commands import parse_matrix_options

    return PolicyImpactWidget(wb.run(impact_for(wb, parse_matrix_options(line))))
