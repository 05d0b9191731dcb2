"""``workbench local pull`` from a SECOND stand-in acting as the remote project, end to end through the CLI."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from workbench.cli import main
from workbench.local import project, pull
from workbench.local.standin import LocalStandIn
from workbench.notebook.bridge import run_sync

ALICE = "aaaaaaaa-0000-4000-8000-000000000001"
BOB = "bbbbbbbb-0000-4000-8000-000000000002"
CAROL = "cccccccc-0000-4000-8000-000000000003"
HASH_MARKER = "$2a$10$source-password-hash-that-must-never-travel"

SCHEMA = """\
create extension if not exists vector with schema extensions;
create type public.note_status as enum ('draft', 'published');
create schema app;
comment on schema app is 'private helpers';

create table public.profiles (
  id uuid primary key references auth.users (id) on delete cascade,
  display_name text
);
create table public.notes (
  id bigint generated always as identity primary key,
  owner_id uuid not null references public.profiles (id),
  title text not null,
  status public.note_status not null default 'draft',
  embedding extensions.vector(3),
  tags text[] not null default '{}'
);
comment on table public.notes is 'one owner each';
create table public.audit_log (
  id bigint generated always as identity primary key,
  note_id bigint references public.notes (id),
  what text
);

create function app.is_owner(note_owner uuid) returns boolean language sql stable security definer
  set search_path = '' as $$ select (select auth.uid()) = note_owner $$;
alter table public.notes enable row level security;
alter table public.profiles enable row level security;
create policy "owners read notes" on public.notes for select to authenticated using (app.is_owner(owner_id));
create policy "published notes" on public.notes for select to anon using (status = 'published');
create policy "own profile" on public.profiles for select to authenticated using ((select auth.uid()) = id);
grant usage on schema app to authenticated, anon;
grant select, insert on public.notes to authenticated, anon;
grant select on public.profiles to authenticated;

create view public.published_notes with (security_invoker = true) as
  select id, title from public.notes where status = 'published';

create function public.handle_new_user() returns trigger language plpgsql security definer
  set search_path = '' as $$
begin
  insert into public.profiles (id, display_name) values (new.id, split_part(new.email, '@', 1));
  return new;
end;
$$;
create trigger on_auth_user_created after insert on auth.users
  for each row execute function public.handle_new_user();

create function public.stamp_title() returns trigger language plpgsql set search_path = '' as $$
begin
  new.title := upper(new.title);
  return new;
end;
$$;
create trigger notes_stamp before insert on public.notes for each row execute function public.stamp_title();

insert into storage.buckets (id, name, public, file_size_limit) values ('avatars', 'avatars', true, 1048576);
create policy "own avatar folder" on storage.objects for insert to authenticated
  with check (bucket_id = 'avatars' and (storage.foldername(name))[1] = (select auth.uid())::text);
"""
SEED = f"""\
insert into auth.users (id, email, encrypted_password) values
  ('{ALICE}', 'alice@real.example', '{HASH_MARKER}'),
  ('{BOB}', 'bob@real.example', '{HASH_MARKER}'),
  ('{CAROL}', 'carol@real.example', '{HASH_MARKER}');
insert into public.notes (owner_id, title, status, embedding, tags)
select (array['{ALICE}', '{BOB}', '{CAROL}']::uuid[])[1 + i % 3], 'note ' || i,
       case when i % 2 = 0 then 'published' else 'draft' end::public.note_status,
       ('[' || i || ',0,1]')::extensions.vector, array['t' || i]
from generate_series(1, 12) i;
-- the first audit row is about note 12, which a 5-row sample of notes does not hold
insert into public.audit_log (note_id, what) select id, 'created' from public.notes order by id = 12 desc, id;
"""


CITEXT = """\
create extension if not exists citext with schema extensions;
alter table public.profiles add column handle extensions.citext unique;
"""


def has_citext(standin: LocalStandIn) -> bool:
    sql = "select count(*)::int as n from pg_available_extensions where name = 'citext'"
    return bool(fetch(standin.dsn(), sql)[0]["n"])


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStandIn]:
    """The "remote project": a second stand-in (no demo) with its own project folder loaded."""
    root = tmp_path_factory.mktemp("remote-project")
    (root / "supabase" / "migrations").mkdir(parents=True)
    (root / "supabase" / "migrations" / "20240101000000_app.sql").write_text(SCHEMA)
    (root / "supabase" / "seed.sql").write_text(SEED)
    remote = LocalStandIn(tmp_path_factory.mktemp("remote-standin") / "local")
    remote.start(demo=False, api=False)
    if has_citext(remote):  # pgserver's PostgreSQL 16 lacks it; the PostgreSQL 18 stand-in ships it
        (root / "supabase" / "migrations" / "20240102000000_citext.sql").write_text(CITEXT)
    report = project.load_project(root, dsn=remote.dsn())
    assert report.seeded == ["seed.sql"]
    yield remote
    remote.destroy()


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStandIn]:
    standin = LocalStandIn(tmp_path_factory.mktemp("pull-target") / "local")
    yield standin
    standin.destroy()


def fetch(dsn: str, sql: str, *args: object) -> list[asyncpg.Record]:
    async def go() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(dsn)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    return run_sync(go())


def on_both(source: LocalStandIn, target: LocalStandIn, sql: str) -> tuple[list[Any], list[Any]]:
    return [tuple(r) for r in fetch(source.dsn(), sql)], [tuple(r) for r in fetch(target.dsn(), sql)]


@pytest.fixture(scope="module")
def pulled(source: LocalStandIn, target: LocalStandIn) -> tuple[int, str, str]:
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["local", "pull", "--dir", str(target.data_dir), "--db-url", source.dsn(), "--rows", "5"])
    return code, out.getvalue(), err.getvalue()


def test_pull_reports_progress_and_never_shows_the_password(
    pulled: tuple[int, str, str], source: LocalStandIn, target: LocalStandIn
) -> None:
    code, out, err = pulled
    assert code == 0, err
    assert "connecting to postgresql://postgres:***@127.0.0.1" in out
    assert "schemas: app, public" in out
    assert "storage: 1 buckets, 1 policies" in out
    assert "triggers on auth/storage tables: 1" in out  # on_auth_user_created
    assert "placeholder auth.users rows" in out
    password = source.keys().db_password("postgres")
    assert password not in out and password not in err
    applied = (target.data_dir / "pull-schema.sql").read_text()  # kept to read a failing line in
    assert "CREATE TABLE public.notes" in applied and "\\restrict" not in applied


def test_pull_copies_tables_types_functions_policies_triggers_views_grants(
    pulled: tuple[int, str, str], source: LocalStandIn, target: LocalStandIn
) -> None:
    assert pulled[0] == 0, pulled[2]
    checks = {
        "tables": "select table_schema, table_name, table_type from information_schema.tables "
        "where table_schema in ('public', 'app') order by 1, 2",
        "columns": "select table_name, column_name, data_type, udt_name, column_default, is_identity "
        "from information_schema.columns where table_schema = 'public' order by 1, 2",
        "policies": "select schemaname, tablename, policyname, permissive, roles::text, cmd, qual, with_check "
        "from pg_policies where schemaname in ('public', 'storage') order by 1, 2, 3",
        "functions": "select n.nspname, p.proname, p.prosecdef, p.proconfig::text from pg_proc p "
        "join pg_namespace n on n.oid = p.pronamespace where n.nspname in ('public', 'app') order by 1, 2",
        "triggers": "select c.relname, t.tgname, pg_get_triggerdef(t.oid) from pg_trigger t "
        "join pg_class c on c.oid = t.tgrelid where not t.tgisinternal order by 1, 2",
        "grants": "select table_name, grantee, privilege_type from information_schema.role_table_grants "
        "where table_schema = 'public' and grantee in ('anon', 'authenticated') order by 1, 2, 3",
        "enum": "select e.enumlabel from pg_enum e where e.enumtypid = 'public.note_status'::regtype order by 1",
        "comments": "select obj_description('public.notes'::regclass, 'pg_class'), "
        "obj_description('app'::regnamespace, 'pg_namespace')",
        "rls": "select relname, relrowsecurity from pg_class where relnamespace = 'public'::regnamespace "
        "and relkind = 'r' order by 1",
        "buckets": "select id, name, public, file_size_limit from storage.buckets order by 1",
        "extensions": "select extname, extnamespace::regnamespace::text from pg_extension where extname = 'vector'",
    }
    for what, sql in checks.items():
        src, dst = on_both(source, target, sql)
        assert src, what
        assert dst == src, what
    # owned by postgres as on Supabase (pg_dump --no-owner), whatever owned them in the source
    owners = fetch(
        target.dsn(),
        "select distinct pg_get_userbyid(relowner) as o from pg_class "
        "where relnamespace = 'public'::regnamespace and relkind in ('r', 'v')",
    )
    assert [r["o"] for r in owners] == ["postgres"]


def test_sample_rows_are_fk_consistent_with_placeholder_users_and_no_passwords(
    pulled: tuple[int, str, str], target: LocalStandIn
) -> None:
    assert pulled[0] == 0, pulled[2]
    counts = {
        r["t"]: r["n"]
        for r in fetch(
            target.dsn(),
            "select 'notes' as t, count(*)::int as n from public.notes union all "
            "select 'profiles', count(*)::int from public.profiles union all "
            "select 'audit_log', count(*)::int from public.audit_log",
        )
    }
    assert counts["profiles"] == 3 and 1 <= counts["notes"] <= 5 and counts["audit_log"] <= 5, pulled[1]
    orphans = fetch(
        target.dsn(),
        "select count(*) as n from public.audit_log a "
        "where a.note_id is not null and not exists (select 1 from public.notes n where n.id = a.note_id)",
    )
    assert orphans[0]["n"] == 0
    users = fetch(target.dsn(), "select id::text, email, encrypted_password from auth.users order by email")
    assert {u["id"] for u in users} == {ALICE, BOB, CAROL}
    assert [u["email"] for u in users] == [f"user-{n}@example.invalid" for n in (1, 2, 3)]
    assert all(u["encrypted_password"] in (None, "") for u in users)
    everything = fetch(target.dsn(), "select string_agg(t::text, ' ') as s from auth.users t")[0]["s"]
    assert HASH_MARKER not in everything and "real.example" not in everything
    # the notes' own trigger was off while loading: titles arrive as in the source, not upper-cased again
    titles = [r["title"] for r in fetch(target.dsn(), "select title from public.notes")]
    assert all(t.startswith("NOTE ") for t in titles)
    # identity sequence moved past the loaded rows: the next insert works
    fetch(target.dsn(), f"insert into public.notes (owner_id, title) values ('{ALICE}', 'new')")
    assert "rows public.audit_log: 4 loaded, 1 skipped" in pulled[1]  # its note was not in the sample


def test_policy_matrix_and_advisors_run_on_the_pulled_schema(
    pulled: tuple[int, str, str], source: LocalStandIn, target: LocalStandIn
) -> None:
    from workbench.policies.advisors import run_advisors
    from workbench.policies.matrix import build_matrix, resolve_identities

    assert pulled[0] == 0, pulled[2]

    async def lints(dsn: str) -> list[tuple[str, str]]:
        conn = await asyncpg.connect(dsn)
        try:
            return sorted((lint.name, lint.detail) for lint in await run_advisors(conn, schemas=["public"]))
        finally:
            await conn.close()

    src_lints, dst_lints = run_sync(lints(source.dsn())), run_sync(lints(target.dsn()))
    assert ("rls_disabled_in_public" in {n for n, _ in dst_lints}) and dst_lints == src_lints

    async def matrix() -> dict[tuple[str, str, str], tuple[str, int | None]]:
        conn = await asyncpg.connect(target.dsn())
        try:
            who = await resolve_identities(conn, users=["user-1@example.invalid"])
            return (await build_matrix(conn, who, ["public.notes"], ["select"])).outcomes()
        finally:
            await conn.close()

    outcomes = run_sync(matrix())
    mine = fetch(
        target.dsn(),
        "select count(*)::int as n from public.notes n join auth.users u on u.id = n.owner_id "
        "where u.email = 'user-1@example.invalid'",
    )[0]["n"]
    published = fetch(target.dsn(), "select count(*)::int as n from public.notes where status = 'published'")[0]["n"]
    by_identity = {key[0]: value for key, value in outcomes.items()}
    assert any(rows == mine for label, (_, rows) in by_identity.items() if "user-1" in label)
    assert any(rows == published for label, (_, rows) in by_identity.items() if label == "anon")


def test_pull_without_a_source_or_with_a_wrong_password_is_a_clear_error(
    source: LocalStandIn, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("SUPABASE_DB_URL", "SUPABASE_PROJECT_REF", "SUPABASE_DB_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no .env here
    target = tmp_path / "t"
    assert main(["local", "pull", "--dir", str(target)]) == 1
    assert "no source project to pull from: pass --db-url" in capsys.readouterr().err
    wrong = source.dsn().replace(source.keys().db_password("postgres"), "not-the-password")
    assert main(["local", "pull", "--dir", str(target), "--db-url", wrong]) == 1
    err = capsys.readouterr().err
    assert "cannot connect to postgresql://postgres:***@" in err and "password authentication failed" in err
    assert "not-the-password" not in err
    LocalStandIn(target).destroy()


def test_adjust_dump_drops_meta_commands_unknown_settings_and_foreign_role_grants() -> None:
    dump = "\n".join(
        [
            "\\restrict abc123",
            "SET transaction_timeout = 0;",
            "SET check_function_bodies = false;",
            "CREATE EXTENSION IF NOT EXISTS citext WITH SCHEMA public;",
            "COMMENT ON EXTENSION citext IS 'x';",
            "CREATE SCHEMA app;",
            "CREATE TABLE app.t (id integer);",
            "GRANT ALL ON TABLE app.t TO anon;",
            "GRANT ALL ON TABLE app.t TO supabase_realtime_admin WITH GRANT OPTION;",
            "ALTER DEFAULT PRIVILEGES FOR ROLE supabase_admin IN SCHEMA app GRANT ALL ON TABLES TO anon;",
            "ALTER PUBLICATION supabase_realtime ADD TABLE ONLY app.t;",
            "ALTER PUBLICATION my_own_pub ADD TABLE ONLY app.t;",
            "--",
            "-- Name: f(); Type: FUNCTION",
            "--",
            "CREATE FUNCTION app.f() RETURNS integer LANGUAGE plpgsql AS $$",
            "begin",
            "-- a comment inside the body stays",
            "  return 1;",
            "end $$;",
            "\\unrestrict abc123",
        ]
    )
    script, dropped = pull.adjust_dump(dump, {"anon", "postgres"}, {"supabase_realtime"})
    assert dropped == 3
    assert script == (
        "SET check_function_bodies = false;\n\nCREATE SCHEMA IF NOT EXISTS app;\n\n"
        "CREATE TABLE app.t (id integer);\n\nGRANT ALL ON TABLE app.t TO anon;\n\n"
        "ALTER PUBLICATION supabase_realtime ADD TABLE ONLY app.t;\n\n"
        "CREATE FUNCTION app.f() RETURNS integer LANGUAGE plpgsql AS $$\nbegin\n"
        "-- a comment inside the body stays\n  return 1;\nend $$;\n"
    )
    assert pull.user_schemas(["app", "auth", "graphql_public", "pgsodium_masks", "pg_toast", "public", "vault"]) == [
        "app",
        "public",
    ]


def test_pull_creates_the_extensions_the_source_uses(
    pulled: tuple[int, str, str], source: LocalStandIn, target: LocalStandIn
) -> None:
    assert pulled[0] == 0, pulled[2]
    used = {r["extname"] for r in fetch(source.dsn(), "select extname from pg_extension where extname <> 'plpgsql'")}
    created = {r["extname"] for r in fetch(target.dsn(), "select extname from pg_extension")}
    assert "vector" in used and used <= created
    if not has_citext(source):
        pytest.skip("this server has no citext (pgserver's PostgreSQL 16); vector was checked above")
    assert "citext" in created
    column = "select udt_name from information_schema.columns where table_name = 'profiles' and column_name = 'handle'"
    assert fetch(target.dsn(), column)[0]["udt_name"] == "citext"


def test_pull_refuses_a_standin_that_already_has_tables(
    pulled: tuple[int, str, str], source: LocalStandIn, target: LocalStandIn, capsys: pytest.CaptureFixture[str]
) -> None:
    assert pulled[0] == 0, pulled[2]
    before = fetch(target.dsn(), "select count(*)::int as n from public.notes")[0]["n"]
    assert main(["local", "pull", "--dir", str(target.data_dir), "--db-url", source.dsn()]) == 1
    err = capsys.readouterr().err
    assert "Loading a pulled schema on top would mix the two" in err and "--dir NEW_FOLDER" in err
    assert fetch(target.dsn(), "select count(*)::int as n from public.notes")[0]["n"] == before


def test_a_schema_that_cannot_load_is_named_by_line_and_nothing_is_kept(
    source: LocalStandIn, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A table whose type lives in Supabase's ``extensions`` schema (never pulled) cannot load here."""
    admin = source.dsn(role="supabase_admin")
    fetch(admin, "drop database if exists broken with (force)")
    fetch(admin, "create database broken")
    broken = source.dsn(role="supabase_admin", database="broken")
    fetch(broken, "create schema extensions")
    fetch(broken, "create type extensions.mood as enum ('ok', 'meh')")
    fetch(broken, "create table public.moods (id int primary key, mood extensions.mood)")
    target = LocalStandIn(tmp_path / "t")
    try:
        assert main(["local", "pull", "--dir", str(target.data_dir), "--db-url", broken]) == 1
        err = capsys.readouterr().err
        assert "the pulled schema failed to load at line" in err
        assert 'type "extensions.mood" does not exist' in err and "CREATE TABLE public.moods" in err
        line = int(err.split("failed to load at line ", 1)[1].split(" ", 1)[0])
        applied = (target.data_dir / "pull-schema.sql").read_text().splitlines()
        assert "extensions.mood" in applied[line - 1]
        assert fetch(target.dsn(), "select to_regclass('public.moods') is null as gone")[0]["gone"]
    finally:
        target.destroy()
        fetch(admin, "drop database if exists broken with (force)")
