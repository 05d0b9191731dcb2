"""The schema browser: schemas, tables with RLS badges, and for one table its columns, constraints,
indexes, policies and grants; an ER diagram of the schema.

Thin glue over :mod:`workbench.schema`: every action is a method (:meth:`SchemaBrowser.select_schema`,
:meth:`~SchemaBrowser.select_table`, :meth:`~SchemaBrowser.filter`) that tests drive without a browser,
and every panel is produced by a plain function of the model. Key elements carry ``wb-schema-*`` classes.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from typing import Any

import ipywidgets as w

from workbench.schema import model as m
from workbench.schema.er import er_diagram

Loader = Callable[[list[str], Callable[[str, int, int], None]], m.Database]


def _cls(widget: w.Widget, *names: str) -> w.Widget:
    for name in names:
        widget.add_class(name)
    return widget


def _e(text: object) -> str:
    return html.escape(str(text))


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], css: str) -> str:
    """An HTML table; cells are already escaped HTML."""
    if not rows:
        return f'<div class="{css} wb-schema-empty"><i>none</i></div>'
    head = "".join(f"<th style='text-align:left;padding:2px 8px'>{_e(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td style='padding:2px 8px;vertical-align:top'>{c}</td>" for c in row) + "</tr>"
        for row in rows
    )
    return (
        f'<table class="{css}" style="border-collapse:collapse;width:100%">'
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    )


def _code(sql: str | None) -> str:
    """SQL that wraps inside its cell instead of pushing the table wider than the panel."""
    style = (
        "white-space:pre-wrap;word-break:break-word;font-size:90%;line-height:1.3;display:inline-block;min-width:14em"
    )
    return f"<code style='{style}'>{_e(sql)}</code>" if sql else ""


# -- what each panel shows: plain functions of the model ------------------------------------------------


def rls_badge(table: m.Table) -> str:
    """``RLS on``, ``RLS forced``, ``RLS off`` (a table the API can read in full), or ``view``."""
    if table.is_view:
        return "view"
    if table.rls_forced:
        return "RLS forced"
    return "RLS on" if table.rls_enabled else "RLS off"


def table_label(table: m.Table) -> str:
    """The line of a table in the list: name, kind and RLS badge, policy count."""
    badge = rls_badge(table)
    mark = {"RLS on": "🔒", "RLS forced": "🔒", "RLS off": "⚠️", "view": "👁"}[badge]
    extra = f", {len(table.policies)} polic{'y' if len(table.policies) == 1 else 'ies'}" if table.policies else ""
    kind = "" if table.kind in ("table", "view") else f" [{table.kind.replace('_', ' ')}]"
    return f"{mark} {table.name}{kind} · {badge}{extra}"


def columns_html(table: m.Table) -> str:
    pk = set(table.primary_key.columns) if table.primary_key else set()
    fks = {c: fk for fk in table.foreign_keys for c in fk.columns}
    rows = []
    for col in table.columns:
        keys = []
        if col.name in pk:
            keys.append("PK")
        if col.name in fks:
            fk = fks[col.name]
            keys.append(f"FK → {_e(fk.ref_schema)}.{_e(fk.ref_table)}")
        default = col.default
        if col.identity is not None:
            default = f"identity ({'always' if col.identity.always else 'by default'})"
        elif col.generated is not None:
            default = f"generated: {col.generated}"
        rows.append(
            [
                f"<b>{_e(col.name)}</b>",
                _code(col.type.sql),
                "" if col.nullable else "not null",
                _code(default),
                ", ".join(keys),
                _e(col.comment or ""),
            ]
        )
    return _table(["column", "type", "null", "default", "keys", "comment"], rows, "wb-schema-columns-table")


def constraints_html(table: m.Table) -> str:
    rows = []
    if table.primary_key:
        rows.append(["primary key", _e(table.primary_key.name), _e(", ".join(table.primary_key.columns))])
    for fk in table.foreign_keys:
        rows.append(["foreign key", _e(fk.name), _code(fk.definition)])
    for uq in table.unique_constraints:
        rows.append(["unique", _e(uq.name), _code(uq.definition)])
    for ck in table.check_constraints:
        rows.append(["check", _e(ck.name), _code(ck.definition)])
    for oc in table.other_constraints:
        rows.append([_e(oc.kind), _e(oc.name), _code(oc.definition)])
    return _table(["kind", "name", "definition"], rows, "wb-schema-constraints-table")


def indexes_html(table: m.Table) -> str:
    rows = [[_e(i.name), "unique" if i.unique else "", _e(i.method), _code(i.definition)] for i in table.indexes]
    return _table(["name", "", "method", "definition"], rows, "wb-schema-indexes-table")


def policies_html(table: m.Table) -> str:
    """Policies, with the warning that matters on Supabase: RLS off, or on with no policy at all."""
    note = ""
    if table.is_view:
        note = "<p>Views run with their owner's rights unless created with <code>security_invoker</code>.</p>"
    elif not table.rls_enabled:
        note = (
            "<p class='wb-schema-warning'>⚠️ Row level security is <b>off</b>: with the default grants the "
            "anon and authenticated roles read and write every row through the API.</p>"
        )
    elif not table.policies:
        note = "<p class='wb-schema-warning'>RLS is on and there is no policy: nobody but service_role sees rows.</p>"
    rows = [
        [
            f"<b style='display:inline-block;min-width:11em'>{_e(p.name)}</b>",
            _e(p.command),
            _e(", ".join(p.roles)),
            "permissive" if p.permissive else "restrictive",
            _code(p.using),
            _code(p.with_check),
        ]
        for p in table.policies
    ]
    return note + _table(["policy", "command", "roles", "", "using", "with check"], rows, "wb-schema-policies-table")


def grants_html(table: m.Table) -> str:
    rows = [[_e(role), _e(", ".join(table.grants.get(role, [])) or "—")] for role in m.API_ROLES]
    return _table(["role", "privileges"], rows, "wb-schema-grants-table")


class SchemaBrowser:
    """Browse a database's schemas. ``widget`` is what the notebook displays."""

    def __init__(
        self,
        settings: Any = None,
        *,
        schemas: Sequence[str] | None = None,
        loader: Loader | None = None,
        available: Sequence[str] | None = None,
    ) -> None:
        if loader is None:
            if settings is None:
                raise ValueError("SchemaBrowser needs settings (or a loader): pass workbench.load_settings().")
            loader = _settings_loader(settings)
            if available is None:
                available = list_schemas(settings)
        self._load = loader
        self._cache: dict[str, m.Database] = {}
        self.db: m.Database | None = None
        self.table: m.Table | None = None
        self.available = list(available or schemas or ["public"])
        start = (schemas or ["public" if "public" in self.available else self.available[0]])[0]

        self.title = _cls(w.HTML(), "wb-schema-title")
        self.schema = _cls(w.Dropdown(options=self.available, value=start, description="Schema"), "wb-schema-schemas")
        self.search = _cls(w.Text(placeholder="filter tables…", description="Filter"), "wb-schema-filter")
        self.progress = _cls(w.IntProgress(value=0, min=0, max=8, description="Reading"), "wb-schema-progress")
        self.tables = _cls(w.Select(options=[], rows=14, layout=w.Layout(width="340px")), "wb-schema-tables")
        self.badge = _cls(w.HTML(), "wb-schema-rls-badge")
        self.columns = _cls(w.HTML(), "wb-schema-columns")
        self.constraints = _cls(w.HTML(), "wb-schema-constraints")
        self.indexes = _cls(w.HTML(), "wb-schema-indexes")
        self.policies = _cls(w.HTML(), "wb-schema-policies")
        self.grants = _cls(w.HTML(), "wb-schema-grants")
        self.er = _cls(w.Output(), "wb-schema-er")
        self.tabs = _cls(
            w.Tab(children=[self.columns, self.constraints, self.indexes, self.policies, self.grants, self.er]),
            "wb-schema-tabs",
        )
        for i, name in enumerate(["Columns", "Constraints", "Indexes", "Policies", "Grants", "ER diagram"]):
            self.tabs.set_title(i, name)
        self.status = _cls(w.HTML(), "wb-schema-status")
        left = w.VBox([self.search, self.tables], layout=w.Layout(width="360px"))
        right = w.VBox([self.badge, self.tabs], layout=w.Layout(flex="1"))
        self.widget = _cls(
            w.VBox([self.title, w.HBox([self.schema, self.progress]), w.HBox([left, right]), self.status]),
            "wb-schema-browser",
        )
        self.widget.controller = self  # type: ignore[attr-defined]
        self.schema.observe(lambda ch: self.select_schema(ch["new"]), names="value")
        self.search.observe(lambda ch: self.filter(ch["new"]), names="value")
        self.tables.observe(lambda ch: ch["new"] and self.select_table(ch["new"]), names="value")
        self.select_schema(start)

    # -- actions ----------------------------------------------------------------------------------------
    def select_schema(self, name: str) -> m.Database:
        """Reflect ``name`` (once; cached) and list its tables."""
        if name not in self._cache:
            self.progress.layout.visibility = "visible"

            def step(what: str, done: int, total: int) -> None:
                self.progress.max = total
                self.progress.value = done
                self.progress.description = what[:12]

            try:
                self._cache[name] = self._load([name], step)
            except Exception as exc:  # noqa: BLE001 - shown to the user, who can pick another schema
                from workbench.core.redaction import redact

                self.status.value = (
                    f"<span class='wb-schema-error'>Could not read {_e(name)}: {_e(redact(str(exc)))}</span>"
                )
                raise
            self.progress.layout.visibility = "hidden"
        self.db = self._cache[name]
        if self.schema.value != name:
            self.schema.value = name
        schema = self.db.schema(name)
        off = [t.name for t in schema.tables if not t.is_view and not t.rls_enabled]
        self.title.value = f"<b>{_e(name)}</b>: {len(schema.tables)} tables and views, {len(schema.enums)} enums" + (
            f" · <span class='wb-schema-warning'>RLS off on {_e(', '.join(off))}</span>" if off else ""
        )
        self.status.value = ""
        self.filter(self.search.value)
        self.er.outputs = (
            {
                "output_type": "display_data",
                "data": {"text/vnd.mermaid": self.er_text, "text/plain": self.er_text},
                "metadata": {},
            },
        )
        return self.db

    def filter(self, text: str) -> list[str]:
        """Show the tables whose name contains ``text``; returns their names."""
        if self.db is None:
            return []
        schema = self.db.schema(self.schema.value)
        shown = [t for t in schema.tables if text.lower() in t.name.lower()]
        current = self.tables.value
        self.tables.options = [(table_label(t), t.name) for t in shown]
        if current in {t.name for t in shown}:
            self.tables.value = current
        return [t.name for t in shown]

    def select_table(self, name: str) -> m.Table:
        """Fill the panels for table ``name`` of the current schema."""
        assert self.db is not None
        table = self.db.schema(self.schema.value).table(name)
        self.table = table
        if self.tables.value != name:
            self.tables.value = name
        badge = rls_badge(table)
        color = {"RLS on": "#2e7d32", "RLS forced": "#1b5e20", "RLS off": "#c62828", "view": "#555"}[badge]
        comment = f" — {_e(table.comment)}" if table.comment else ""
        self.badge.value = (
            f"<b>{_e(table.qualified_name)}</b> "
            f"<span class='wb-schema-badge' style='background:{color};color:white;padding:1px 6px;"
            f"border-radius:8px'>{_e(badge)}</span>{comment}"
        )
        self.columns.value = columns_html(table)
        self.constraints.value = constraints_html(table)
        self.indexes.value = indexes_html(table)
        self.policies.value = policies_html(table)
        self.grants.value = grants_html(table)
        return table

    def show_policies(self, name: str) -> str:
        """Open ``name`` on its Policies tab; returns the tab's HTML."""
        self.select_table(name)
        self.tabs.selected_index = 3
        return str(self.policies.value)

    @property
    def er_text(self) -> str:
        """The Mermaid ER diagram of the current schema."""
        return er_diagram(self.db) if self.db is not None else ""


def _settings_loader(settings: Any) -> Loader:
    def load(schemas: list[str], progress: Callable[[str, int, int], None]) -> m.Database:
        from workbench.notebook.bridge import run_sync
        from workbench.schema.reflect import reflect_settings

        return run_sync(reflect_settings(settings, schemas, progress=progress))

    return load


def list_schemas(settings: Any) -> list[str]:
    """The application schemas of the database (system and extension-owned ones left out)."""
    from workbench.notebook.bridge import run_sync
    from workbench.schema.reflect import dsn_from_settings, list_schemas_dsn

    dsn, pooled = dsn_from_settings(settings)
    return run_sync(list_schemas_dsn(dsn, pooled=pooled))


def schema_browser(settings: Any, schemas: Sequence[str] | None = None) -> w.Widget:
    """The schema browser widget for ``settings`` (``widget.controller`` is its :class:`SchemaBrowser`)."""
    return SchemaBrowser(settings, schemas=schemas).widget
