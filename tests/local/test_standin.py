"""The local stand-in: lifecycle, bootstrap fidelity, Supabase-style migrations, recovery."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import pytest

from workbench.local.standin import LocalStandIn


async def fetch(dsn: str, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        if ";" in sql and not args:
            await conn.execute(sql)
            return []
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def as_identity(dsn: str, role: str, claims: dict[str, object] | None, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await conn.execute(
                "select set_config('role', $1, true), set_config('request.jwt.claims', $2, true)",
                role,
                json.dumps(claims or {"role": role}),
            )
            return await conn.fetch(sql)
    finally:
        await conn.close()


async def test_bootstrap_has_supabase_roles_schemas_and_helpers(standin: LocalStandIn) -> None:
    dsn = standin.dsn()
    roles = {r["rolname"]: r for r in await fetch(dsn, "select * from pg_roles")}
    for name in (
        "anon",
        "authenticated",
        "service_role",
        "authenticator",
        "supabase_auth_admin",
        "supabase_storage_admin",
    ):
        assert name in roles, name
    assert roles["service_role"]["rolbypassrls"] and not roles["anon"]["rolbypassrls"]
    assert not roles["anon"]["rolcanlogin"] and not roles["anon"]["rolinherit"]
    schemas = {r[0] for r in await fetch(dsn, "select nspname from pg_namespace")}
    assert {"auth", "storage", "extensions"} <= schemas
    pub = await fetch(dsn, "select pubname from pg_publication")
    assert [r[0] for r in pub] == ["supabase_realtime"]
    uuid = await fetch(dsn, "select extensions.uuid_generate_v4() as u")
    assert len(str(uuid[0]["u"])) == 36


async def test_auth_helpers_follow_supabase_semantics(standin: LocalStandIn) -> None:
    dsn = standin.dsn()
    sub = "11111111-1111-4111-8111-111111111111"
    rows = await as_identity(
        dsn,
        "authenticated",
        {"sub": sub, "role": "authenticated", "email": "a@x.io", "user_role": "admin"},
        "select auth.uid() as uid, auth.role() as role, auth.email() as email, auth.jwt() ->> 'user_role' as ur",
    )
    assert (str(rows[0]["uid"]), rows[0]["role"], rows[0]["email"], rows[0]["ur"]) == (
        sub,
        "authenticated",
        "a@x.io",
        "admin",
    )
    # the legacy per-claim setting wins over the JSON claims
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await conn.execute(
                "select set_config('request.jwt.claim.sub', $1, true), set_config('request.jwt.claims', $2, true)",
                sub,
                json.dumps({"sub": "22222222-2222-4222-8222-222222222222"}),
            )
            assert str(await conn.fetchval("select auth.uid()")) == sub
        # nothing survives the transaction; '' reads as NULL
        assert await conn.fetchval("select auth.uid()") is None
        assert await conn.fetchval("select auth.jwt()") is None
    finally:
        await conn.close()


async def test_demo_rls_differs_by_identity(standin: LocalStandIn) -> None:
    dsn = standin.dsn()
    alice = {"sub": "11111111-1111-4111-8111-111111111111", "role": "authenticated"}
    bob = {"sub": "22222222-2222-4222-8222-222222222222", "role": "authenticated"}
    count = "select count(*) from public.tasks"
    assert (await as_identity(dsn, "anon", None, count))[0][0] == 0
    assert (await as_identity(dsn, "authenticated", alice, count))[0][0] == 3
    assert (await as_identity(dsn, "authenticated", bob, count))[0][0] == 2
    assert (await as_identity(dsn, "authenticated", {**bob, "user_role": "admin"}, count))[0][0] == 7
    assert (await as_identity(dsn, "service_role", None, count))[0][0] == 7
    profiles = await fetch(dsn, "select count(*) from public.profiles")
    assert profiles[0][0] == 3  # created by the trigger on auth.users


SUPABASE_MIGRATION = """
create extension if not exists "pgcrypto" with schema extensions;
create table public.notes (
  id uuid primary key default extensions.uuid_generate_v4(),
  user_id uuid not null references auth.users (id) default auth.uid(),
  body text not null
);
create table public.user_roles (user_id uuid primary key references auth.users (id), role text not null);
alter table public.notes enable row level security;
create policy "own notes" on public.notes for all to authenticated
  using ((select auth.uid()) = user_id) with check ((select auth.uid()) = user_id);
create policy "moderators read all" on public.notes for select to authenticated
  using ((auth.jwt() ->> 'user_role') = 'moderator');
create function public.on_signup() returns trigger language plpgsql security definer set search_path = ''
as $$ begin insert into public.user_roles (user_id, role) values (new.id, 'member'); return new; end $$;
create trigger on_signup after insert on auth.users for each row execute procedure public.on_signup();
insert into auth.users (id, email) values
  ('aaaaaaaa-0000-4000-8000-000000000001', 'm1@example.com'),
  ('aaaaaaaa-0000-4000-8000-000000000002', 'm2@example.com');
insert into public.notes (user_id, body) values
  ('aaaaaaaa-0000-4000-8000-000000000001', 'one'), ('aaaaaaaa-0000-4000-8000-000000000002', 'two');
create policy "m1 files" on storage.objects for select to authenticated
  using (bucket_id = 'documents' and owner_id = (select auth.uid())::text);
alter publication supabase_realtime add table public.notes;
"""


def wait_until_dead(pid: int, timeout: float = 10) -> None:
    import psutil

    try:
        proc = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.01)  # polling for the kill to take effect
    raise TimeoutError(f"process {pid} still alive")


@pytest.fixture()
def fresh(tmp_path: Path):
    inst = LocalStandIn(tmp_path / "fresh")
    yield inst
    inst.destroy()


async def test_supabase_migration_loads_unchanged_and_policies_behave(fresh: LocalStandIn, tmp_path: Path) -> None:
    fresh.start(demo=False, api=False)
    migration = tmp_path / "20240101000000_notes.sql"
    migration.write_text(
        SUPABASE_MIGRATION.replace('create extension if not exists "pgcrypto" with schema extensions;\n', "")
    )
    fresh.run_sql_file(migration)
    dsn = fresh.dsn()
    m1 = {"sub": "aaaaaaaa-0000-4000-8000-000000000001", "role": "authenticated"}
    rows = await as_identity(dsn, "authenticated", m1, "select body from public.notes")
    assert [r[0] for r in rows] == ["one"]
    moderator = {**m1, "user_role": "moderator"}
    assert len(await as_identity(dsn, "authenticated", moderator, "select body from public.notes")) == 2
    assert await as_identity(dsn, "anon", None, "select body from public.notes") == []
    roles = await fetch(dsn, "select count(*) from public.user_roles")
    assert roles[0][0] == 2
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await as_identity(
            dsn,
            "authenticated",
            m1,
            "insert into public.notes (user_id, body) values ('aaaaaaaa-0000-4000-8000-000000000002', 'x')",
        )


def test_start_twice_is_harmless_and_reset_is_clean(fresh: LocalStandIn) -> None:
    first = fresh.start(api=False)
    t0 = time.perf_counter()
    second = fresh.start(api=False)
    assert time.perf_counter() - t0 < 1.0
    assert first.db_port == second.db_port and second.db_running
    from workbench.notebook.bridge import run_sync

    run_sync(fetch(fresh.dsn(), "create table public.leftover (id int)"))
    secret_before = fresh.keys().jwt_secret
    fresh.reset(api=False)
    rows = run_sync(fetch(fresh.dsn(), "select to_regclass('public.leftover') as t, count(*) from public.tasks"))
    assert rows[0]["t"] is None and rows[0][1] == 7
    assert fresh.keys().jwt_secret != secret_before


def test_stop_keeps_data_and_start_comes_back(fresh: LocalStandIn) -> None:
    from workbench.notebook.bridge import run_sync

    fresh.start(demo=False, api=False)
    run_sync(fetch(fresh.dsn(), "create table public.kept (id int); insert into public.kept values (42)"))
    assert fresh.stop().db_running is False
    fresh.start(demo=False, api=False)
    assert run_sync(fetch(fresh.dsn(), "select id from public.kept"))[0][0] == 42


def test_start_recovers_after_postgres_is_killed(fresh: LocalStandIn) -> None:
    from workbench.notebook.bridge import run_sync

    fresh.start(demo=False, api=False)
    run_sync(fetch(fresh.dsn(), "create table public.durable (id int); insert into public.durable values (1)"))
    pid = int((fresh.pg.pgdata / "postmaster.pid").read_text().splitlines()[0])
    os.kill(pid, signal.SIGKILL)
    wait_until_dead(pid)
    assert (fresh.pg.pgdata / "postmaster.pid").exists()  # the stale pid file is left behind
    status = fresh.start(demo=False, api=False)
    assert status.db_running
    assert run_sync(fetch(fresh.dsn(), "select count(*) from public.durable"))[0][0] == 1


def test_start_adopts_a_standin_whose_starter_was_killed(fresh: LocalStandIn) -> None:
    code = (
        "import os, signal; from workbench.local.standin import LocalStandIn; "
        f"LocalStandIn({str(fresh.data_dir)!r}).start(demo=False); os.kill(os.getpid(), signal.SIGKILL)"
    )
    proc = subprocess.run([sys.executable, "-c", code], timeout=120)
    assert proc.returncode == -signal.SIGKILL
    status = fresh.start(demo=False)
    assert status.db_running and status.api_running


def test_cli_status_json(standin: LocalStandIn) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "workbench.cli", "local", "status", "--json", "--dir", str(standin.data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["db_running"] and data["api_running"]
    assert data["anon_key"] == standin.keys().anon_key
    assert data["jwks_url"].endswith("/auth/v1/.well-known/jwks.json")


def test_api_refuses_control_characters_in_paths_as_json(standin: LocalStandIn) -> None:
    import httpx

    key = standin.keys().service_role_key
    resp = httpx.get(
        f"{standin.api_url()}/storage/v1/object/documents/a%0Ab.txt",
        headers={"apikey": key, "Authorization": f"Bearer {key}"},
    )
    assert resp.status_code == 400
    assert resp.json()["error"] == "InvalidKey"
