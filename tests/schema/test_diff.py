"""workbench.schema.diff on hand-built models: each kind of change is found and said plainly."""

from __future__ import annotations

import copy

import pytest

from workbench.schema import model as m
from workbench.schema.diff import Difference, diff, format_diff


def _db() -> m.Database:
    text = m.TypeRef("text", "text")
    tasks = m.Table(
        "public",
        "tasks",
        columns=[
            m.Column("id", m.TypeRef("bigint", "int8"), nullable=False, identity=m.Identity(always=True)),
            m.Column("title", text, nullable=False),
            m.Column("body", text, default="''::text"),
        ],
        primary_key=m.PrimaryKey("tasks_pkey", ["id"]),
        indexes=[m.Index("tasks_title_idx", [m.IndexColumn("title")], definition="CREATE INDEX tasks_title_idx ...")],
        rls_enabled=True,
        policies=[m.Policy("read", "SELECT", ["authenticated"], True, "true")],
        grants={"anon": ["SELECT"]},
    )
    schema = m.Schema("public", tables=[tasks], enums=[m.Enum("public", "state", ["a", "b"])])
    return m.Database(schemas=[schema])


def test_identical_models_have_no_differences() -> None:
    assert diff(_db(), _db()) == []
    assert format_diff([]) == "no differences"


def test_changes_are_found_by_category() -> None:
    expected, actual = _db(), _db()
    t = actual.table("public", "tasks")
    t.columns[2].default = None
    t.columns[1], t.columns[2] = t.columns[2], t.columns[1]
    t.indexes = []
    t.rls_enabled = False
    t.policies[0].using = "false"
    actual.schema("public").enums[0].labels = ["a", "b", "c"]
    actual.schema("public").tables.append(m.Table("public", "extra"))
    found = {(d.category, d.kind) for d in diff(expected, actual)}
    assert found == {
        ("default", "changed"),
        ("column_order", "changed"),
        ("index", "missing"),
        ("rls", "changed"),
        ("policy", "changed"),
        ("enum", "changed"),
        ("table", "extra"),
    }


def test_view_created_as_table_is_one_difference() -> None:
    expected, actual = _db(), _db()
    expected.table("public", "tasks").kind = "view"
    [d] = diff(expected, actual)
    assert (d.category, d.expected, d.actual) == ("table", "view", "table")
    assert str(d) == "~ public.tasks [table]: expected view, found table"


def test_grants_are_ignored_unless_asked() -> None:
    expected, actual = _db(), _db()
    actual.table("public", "tasks").grants = {}
    assert diff(expected, actual) == []
    [d] = diff(expected, actual, ignore=())
    assert d.category == "grant"


def test_ignore_categories_and_unknown_ones() -> None:
    expected, actual = _db(), copy.deepcopy(_db())
    actual.table("public", "tasks").indexes = []
    assert diff(expected, actual, ignore={"index"}) == []
    with pytest.raises(ValueError, match="Unknown categories to ignore: indexes"):
        diff(expected, actual, ignore={"indexes"})


def test_missing_and_extra_columns_and_schemas() -> None:
    expected, actual = _db(), _db()
    actual.table("public", "tasks").columns.pop()
    actual.table("public", "tasks").columns.append(m.Column("new", m.TypeRef("integer", "int4")))
    out = diff(expected, actual)
    assert Difference("public.tasks.body", "column", "missing", "text", None) in out
    assert Difference("public.tasks.new", "column", "extra", None, "integer") in out
    assert diff(expected, m.Database()) == [Difference("public", "schema", "missing", "public", None)]
