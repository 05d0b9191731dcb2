"""workbench.schema.reflect: what the catalog queries find in the demo schema and in Pagila."""

from __future__ import annotations

from typing import Any

import pytest

from workbench.local.standin import LocalStandIn
from workbench.schema import model as m
from workbench.schema.reflect import ReflectError, reflect_dsn, reflect_settings


async def test_demo_schema_tables_columns_and_keys(standin: LocalStandIn) -> None:
    db = await reflect_dsn(standin.dsn(), ["public"])
    names = [t.name for t in db.tables()]
    assert names == ["announcements", "memberships", "organizations", "profiles", "projects", "tasks"]
    tasks = db.table("public", "tasks")
    assert [c.name for c in tasks.columns] == [
        "id",
        "project_id",
        "owner_id",
        "title",
        "status",
        "details",
        "due_at",
        "created_at",
    ]
    ident = tasks.column("id").identity
    assert ident is not None and ident.always and ident.start == 1
    assert tasks.column("owner_id").default == "auth.uid()"
    assert tasks.column("status").type == m.TypeRef("public.task_status", "task_status", "public", "enum", 0)
    assert tasks.column("status").default == "'todo'::public.task_status"
    assert tasks.column("details").comment == "Free-form JSON: labels, estimates, links."
    assert not tasks.column("title").nullable and tasks.column("due_at").nullable
    assert tasks.primary_key == m.PrimaryKey("tasks_pkey", ["id"])
    fks = {fk.name: fk for fk in tasks.foreign_keys}
    owner = fks["tasks_owner_id_fkey"]
    assert (owner.ref_schema, owner.ref_table, owner.ref_columns, owner.on_delete) == (
        "auth",
        "users",
        ["id"],
        "CASCADE",
    )
    assert [c.name for c in tasks.check_constraints] == ["tasks_title_check"]
    assert "length(title) >= 1" in tasks.check_constraints[0].expression
    assert [i.name for i in tasks.indexes] == ["tasks_owner_id_idx", "tasks_project_id_idx"]
    memberships = db.table("public", "memberships")
    assert memberships.primary_key == m.PrimaryKey("memberships_pkey", ["org_id", "user_id"])
    orgs = db.table("public", "organizations")
    assert orgs.comment == "Tenants: every project belongs to one organization."
    assert [(u.name, u.columns) for u in orgs.unique_constraints] == [("organizations_name_key", ["name"])]
    assert [e.name for e in db.schema("public").enums] == ["member_role", "task_status"]
    assert db.schema("public").enums[1].labels == ["todo", "doing", "done"]


async def test_demo_rls_policies_and_grants(standin: LocalStandIn) -> None:
    db = await reflect_dsn(standin.dsn(), ["public"])
    tasks = db.table("public", "tasks")
    assert tasks.rls_enabled and not tasks.rls_forced
    policies = {p.name: p for p in tasks.policies}
    assert set(policies) == {
        "admins read every task",
        "members add their own tasks",
        "owners delete their tasks",
        "owners read their tasks",
        "owners update their tasks",
    }
    update = policies["owners update their tasks"]
    assert (update.command, update.roles, update.permissive) == ("UPDATE", ["authenticated"], True)
    assert update.using == update.with_check == "(owner_id = ( SELECT auth.uid() AS uid))"
    insert = policies["members add their own tasks"]
    assert insert.using is None and "public.is_org_member(p.org_id)" in (insert.with_check or "")
    published = db.table("public", "announcements").policies[0]
    assert published.roles == ["anon", "authenticated"]
    assert set(tasks.grants) == {"anon", "authenticated", "service_role"}
    assert "SELECT" in tasks.grants["anon"] and "INSERT" in tasks.grants["authenticated"]


async def test_fk_targets_outside_the_selection_are_reflected_apart(standin: LocalStandIn) -> None:
    db = await reflect_dsn(standin.dsn(), ["public"])
    assert [t.qualified_name for t in db.external_tables] == ["auth.users"]
    users = db.external_tables[0]
    assert users.primary_key is not None and users.primary_key.columns == ["id"]
    assert "auth.users" not in [t.qualified_name for t in db.tables()]


async def test_table_filter_and_sequences_that_go_with_it(pagila_dsn: str) -> None:
    db = await reflect_dsn(pagila_dsn, ["public"], ["film", "public.language"])
    assert [t.name for t in db.tables()] == ["film", "language"]
    assert [s.name for s in db.schema("public").sequences] == ["film_film_id_seq", "language_language_id_seq"]
    assert [d.name for d in db.schema("public").domains] == ["bıgınt", "year"]


async def test_pagila_partitions_views_domains_sequences(pagila_dsn: str) -> None:
    steps: list[tuple[str, int, int]] = []
    db = await reflect_dsn(pagila_dsn, ["public"], progress=lambda *a: steps.append(a))
    assert [s[1] for s in steps] == list(range(1, len(steps) + 1)) and steps[-1][1] == steps[-1][2]
    kinds: dict[str, int] = {}
    for t in db.tables():
        kinds[t.kind] = kinds.get(t.kind, 0) + 1
    assert kinds == {"table": 21, "partitioned_table": 1, "view": 7, "materialized_view": 1}
    payment = db.table("public", "payment")
    assert payment.partition_key == "RANGE (payment_date)"
    assert payment.primary_key == m.PrimaryKey("payment_pkey", ["payment_date", "payment_id"])
    part = db.table("public", "payment_p2022_03")
    assert part.partition_of == ("public", "payment")
    # Bounds are printed in UTC whatever the server's or session's time zone.
    assert part.partition_bound == "FOR VALUES FROM ('2022-03-01 00:00:00+00') TO ('2022-04-01 00:00:00+00')"
    assert part.primary_key is not None and part.primary_key.inherited
    assert not any(fk.inherited for fk in part.foreign_keys)
    matview = db.table("public", "rental_by_category")
    assert matview.kind == "materialized_view" and not matview.populated
    assert [i.name for i in matview.indexes] == ["rental_category"] and matview.indexes[0].unique
    assert ("public", "payment") in matview.depends_on
    view = db.table("public", "actor_info")
    assert (view.view_definition or "").lstrip().startswith("SELECT a.actor_id")
    film = db.table("public", "film")
    assert film.column("release_year").type.kind == "domain"
    assert film.column("special_features").type == m.TypeRef("text[]", "text", "pg_catalog", "base", 1)
    assert film.column("film_id").default == "nextval('public.film_film_id_seq'::regclass)"
    gist = next(i for i in film.indexes if i.name == "film_fulltext_idx")
    assert gist.method == "gist"
    year = next(d for d in db.schema("public").domains if d.name == "year")
    assert year.checks == [m.DomainCheck("year_check", "((VALUE >= 1901) AND (VALUE <= 2155))")]
    seq = next(s for s in db.schema("public").sequences if s.name == "payment_payment_id_seq")
    assert (seq.data_type, seq.start, seq.owned_by) == ("bigint", 1, None)
    assert db.schema("public").enums[0].labels == ["G", "PG", "PG-13", "R", "NC-17"]


async def test_index_details(empty_db: str) -> None:
    from schema_rig import run_sql

    await run_sql(
        empty_db,
        """create table t (a text, b int, c int);
           create index t_expr on t (lower(a) text_pattern_ops desc nulls last) include (b) where c > 0;
           create unique index t_nnd on t (b) nulls not distinct with (fillfactor = 70);
           create index t_multi on t (b asc nulls first, c desc);""",
    )
    db = await reflect_dsn(empty_db, ["public"])
    idx = {i.name: i for i in db.table("public", "t").indexes}
    expr = idx["t_expr"]
    assert expr.columns == [m.IndexColumn("lower(a)", True, "text_pattern_ops", True, False)]
    assert (expr.include, expr.where) == (["b"], "(c > 0)")
    assert idx["t_nnd"].nulls_not_distinct and idx["t_nnd"].options == {"fillfactor": "70"}
    assert [(c.descending, c.nulls_first) for c in idx["t_multi"].columns] == [(False, True), (True, None)]


async def test_bad_requests_say_what_exists(standin: LocalStandIn) -> None:
    with pytest.raises(ReflectError, match=r"No schema named 'nope'.*Schemas here: .*public"):
        await reflect_dsn(standin.dsn(), ["nope"])
    with pytest.raises(ReflectError, match="system schema"):
        await reflect_dsn(standin.dsn(), ["pg_catalog"])
    with pytest.raises(ReflectError, match="No table or view missing_table"):
        await reflect_dsn(standin.dsn(), ["public"], ["tasks", "missing_table"])
    with pytest.raises(ReflectError, match="No schema given"):
        await reflect_dsn(standin.dsn(), [])


async def test_through_a_transaction_pooler(pgbouncer: Any, standin: LocalStandIn) -> None:
    """Reflection runs unchanged behind PgBouncer in transaction mode (Supavisor :6543)."""
    direct = await reflect_dsn(standin.dsn(), ["public"])
    pooled = await reflect_dsn(pgbouncer.dsn, ["public"], pooled=True)
    assert pooled == direct


async def test_reflect_settings(settings: Any) -> None:
    db = await reflect_settings(settings, ["public"], ["tasks"])
    assert [t.name for t in db.tables()] == ["tasks"]
