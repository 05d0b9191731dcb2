"""workbench.schema.diff on hand-built models: each kind of change is found and said plainly."""

from __future__ import annotations

import copy

import pytest

from workbench.schema import model as m
from workbench.schema.diff import Difference, describe_scope, diff, format_diff


def _db() -> m.Database:
    text = m.TypeRef("text", "text")
    tasks = m.Table(
        "public",
        "tasks",
        columns=[
            m.Column("id", m.TypeRef("bigint", "int8"), nullable=False, identity=m.ColumnIdentity(always=True)),
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


def _routines() -> m.Database:
    db = _db()
    schema = db.schemas[0]
    schema.comment = "app tables"
    schema.functions = [
        m.Function(
            "public",
            "is_member",
            "org bigint",
            definition="CREATE OR REPLACE FUNCTION ... $$ select 1 $$",
            grants={"anon": ["EXECUTE"]},
        )
    ]
    schema.external_triggers = [
        m.Trigger(
            "on_signup",
            "auth",
            "users",
            "CREATE TRIGGER on_signup AFTER INSERT ON auth.users ...",
            "AFTER",
            ["INSERT"],
            "public.handle_new_user",
        )
    ]
    tasks = schema.tables[0]
    tasks.triggers = [
        m.Trigger(
            "touch",
            "public",
            "tasks",
            "CREATE TRIGGER touch BEFORE UPDATE ON public.tasks ...",
            "BEFORE",
            ["UPDATE"],
            "public.touch",
        )
    ]
    tasks.replica_identity = "full"
    tasks.clustered_index = "tasks_title_idx"
    db.extensions = [m.Extension("vector", "public")]
    return db


def test_triggers_functions_replica_identity_cluster_and_schema_comments_are_compared() -> None:
    exp, act = _routines(), _routines()
    assert diff(exp, act, ignore=()) == []
    t = act.schemas[0].tables[0]
    t.triggers[0] = m.Trigger(
        "touch",
        "public",
        "tasks",
        "CREATE TRIGGER touch AFTER UPDATE ...",
        "AFTER",
        ["UPDATE"],
        "public.touch",
        enabled="D",
    )
    t.replica_identity, t.clustered_index = "default", None
    act.schemas[0].comment = None
    act.schemas[0].functions[0].definition += " -- changed"
    act.schemas[0].functions[0].grants = {}
    act.schemas[0].external_triggers = []
    act.extensions = []
    found = {(d.category, d.kind) for d in diff(exp, act, ignore=())}
    assert found == {
        ("trigger", "changed"),
        ("replica_identity", "changed"),
        ("cluster", "changed"),
        ("comment", "changed"),
        ("function", "changed"),
        ("grant", "changed"),
        ("trigger", "missing"),
        ("extension", "missing"),
    }
    changed = next(d for d in diff(exp, act) if d.category == "trigger" and d.kind == "changed")
    assert "'BEFORE'" in (changed.expected or "") and "'AFTER'" in (changed.actual or "")
    assert "grant" not in {d.category for d in diff(exp, act)}  # grants only on request


def test_scope_says_what_was_and_was_not_compared() -> None:
    text = describe_scope()
    compared, rest = text.split("; ignored on request: ")
    assert "trigger" in compared and "replica identity" in compared and "function" in compared
    assert rest.startswith("grant;") and "never compared: owners" in rest
    assert "ignored" not in describe_scope(())
