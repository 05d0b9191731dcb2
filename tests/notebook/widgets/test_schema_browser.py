"""The schema browser, driven from Python against the real local stand-in."""

from __future__ import annotations

from typing import Any

import pytest

from workbench.notebook.widgets.schema_browser import (
    SchemaBrowser,
    policies_html,
    rls_badge,
    schema_browser,
    table_label,
)
from workbench.schema import model as m


def _classes(widget: Any) -> set[str]:
    found = set(widget._dom_classes)
    for child in getattr(widget, "children", ()):
        found |= _classes(child)
    return found


def test_opens_a_table_and_shows_its_policies(settings: Any) -> None:
    widget = schema_browser(settings)
    browser: SchemaBrowser = widget.controller
    assert browser.schema.value == "public"
    assert {"public", "auth", "storage"} <= set(browser.schema.options)
    labels = dict((v, k) for k, v in browser.tables.options)
    assert labels["tasks"] == "🔒 tasks · RLS on, 5 policies"
    html = browser.show_policies("tasks")
    assert browser.tabs.selected_index == 3
    for name in ("owners read their tasks", "members add their own tasks", "admins read every task"):
        assert name in html
    assert "with check" in html and "( SELECT auth.uid() AS uid)" in html
    assert "RLS on" in browser.badge.value and "public.tasks" in browser.badge.value
    assert "owner_id" in browser.columns.value and "FK → auth.users" in browser.columns.value
    assert "tasks_title_check" in browser.constraints.value
    assert "tasks_owner_id_idx" in browser.indexes.value
    assert "anon" in browser.grants.value and "SELECT" in browser.grants.value


def test_switching_schema_and_filtering(settings: Any) -> None:
    browser = SchemaBrowser(settings)
    assert browser.filter("task") == ["tasks"]
    assert browser.filter("") == ["announcements", "memberships", "organizations", "profiles", "projects", "tasks"]
    browser.select_schema("storage")
    assert [v for _, v in browser.tables.options] == ["buckets", "objects"]
    html = browser.show_policies("objects")
    assert "avatars are public" in html
    assert "<b>storage</b>" in browser.title.value
    browser.select_schema("public")  # from the cache: no second reflection
    assert browser.db is not None and browser.db.schemas[0].name == "public"


def test_er_diagram_output(settings: Any) -> None:
    browser = SchemaBrowser(settings)
    assert browser.er_text.startswith("erDiagram")
    [output] = browser.er.outputs
    assert output["data"]["text/vnd.mermaid"] == browser.er_text
    assert 'tasks }o--|| projects : "project_id"' in browser.er_text


def test_unknown_schema_is_reported(settings: Any) -> None:
    browser = SchemaBrowser(settings)
    with pytest.raises(Exception, match="No schema named 'nope'"):
        browser.select_schema("nope")
    assert "Could not read nope" in browser.status.value


def test_css_classes_for_browser_tests(settings: Any) -> None:
    widget = schema_browser(settings)
    assert {
        "wb-schema-browser",
        "wb-schema-schemas",
        "wb-schema-tables",
        "wb-schema-filter",
        "wb-schema-tabs",
        "wb-schema-columns",
        "wb-schema-policies",
        "wb-schema-grants",
        "wb-schema-rls-badge",
        "wb-schema-er",
    } <= _classes(widget)


def test_panels_are_plain_functions_of_the_model() -> None:
    open_table = m.Table("public", "notes", columns=[m.Column("id", m.TypeRef("integer", "int4"))])
    assert rls_badge(open_table) == "RLS off"
    assert table_label(open_table) == "⚠️ notes · RLS off"
    assert "Row level security is <b>off</b>" in policies_html(open_table)
    locked = m.Table("public", "vault", rls_enabled=True)
    assert "there is no policy" in policies_html(locked)
    view = m.Table("public", "v", kind="view")
    assert rls_badge(view) == "view" and "security_invoker" in policies_html(view)
    hostile = m.Table("public", "x", rls_enabled=True, policies=[m.Policy("<script>", using="a < b")])
    html = policies_html(hostile)
    assert "<script>" not in html and "&lt;script&gt;" in html and "a &lt; b" in html
