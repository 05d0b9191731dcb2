"""workbench.schema.ddl: what the generated module creates besides tables comes in dependency order, and the
round trip target gets the extensions the source uses (with the ones those require)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from schema_rig import run_sql

from workbench.schema.roundtrip import roundtrip

# Broke the fixed order (every table-naming function before every view): a function returning a view's rows
# was created before the view ("type public.open_tasks does not exist"), and a SQL-standard body reading a
# table was created before the tables. Also: an enum only a function signature names, a policy calling an
# enum-typed function, and a view calling a function that reads a view.
ORDER_CASE = """
create type public.task_state as enum ('open', 'done');
create type public.urgency as enum ('low', 'high');
create table public.tasks (
  id bigint generated always as identity primary key,
  title text not null,
  state public.task_state not null default 'open',
  owner uuid
);
create function public.weight(u public.urgency) returns integer language sql immutable
  as $$ select case u when 'low' then 1 else 10 end $$;
create function public.is_open(s public.task_state) returns boolean language sql immutable
  return s = 'open';
create view public.open_tasks as select id, title, owner from public.tasks where public.is_open(state);
create function public.open_tasks_of(who uuid) returns setof public.open_tasks language sql stable
  as $$ select * from public.open_tasks where owner = who $$;
create function public.task_total() returns bigint language sql stable
  begin atomic select count(*) from public.tasks; end;
create view public.open_task_counts as
  select o.owner, (select count(*) from public.open_tasks_of(o.owner)) as n from public.open_tasks o;
alter table public.tasks enable row level security;
create policy "open tasks are readable" on public.tasks for select using (public.is_open(state));
"""


async def test_dependency_order_round_trips_exactly(fresh_db: Callable[[str], Awaitable[str]]) -> None:
    source = await fresh_db("src")
    await run_sql(source, ORDER_CASE)
    report = await roundtrip(source, await fresh_db("tgt"), ["public"])
    assert report.ok, report.report()
    code = report.code
    # the view-row function after its view and before the view that calls it
    view = code.index("CREATE OR REPLACE VIEW public.open_tasks AS")
    fn = code.index("CREATE OR REPLACE FUNCTION public.open_tasks_of(who uuid)")
    caller = code.index("CREATE OR REPLACE VIEW public.open_task_counts")
    assert view < fn < caller
    # the BEGIN ATOMIC body that reads a table: after the tables (in _AFTER_CREATE), not before them
    assert code.index("_AFTER_CREATE") < code.index("FUNCTION public.task_total()")
    assert code.index("FUNCTION public.weight(") < code.index("_AFTER_CREATE")


async def test_extensions_come_with_the_extensions_they_require(
    fresh_db: Callable[[str], Awaitable[str]],
) -> None:
    """pgjwt requires pgcrypto; the models name only pgjwt (a default calls extensions.url_encode)."""
    source = await fresh_db("src")
    await run_sql(
        source,
        """
        create schema if not exists extensions;
        create extension if not exists pgjwt schema extensions cascade;
        create table public.links (
          id bigint generated always as identity primary key,
          token text not null default extensions.url_encode('\\x00ff'::bytea)
        );
        """,
    )
    report = await roundtrip(source, await fresh_db("tgt"), ["public"])
    assert report.ok, report.report()
    assert "CREATE EXTENSION IF NOT EXISTS pgjwt SCHEMA extensions CASCADE" in report.code
    assert "pgcrypto" not in report.code  # CASCADE brings it, the module does not name it
