"""The stand-in's role model is Supabase's: ``postgres`` owns the project but is not a superuser, so what
Supabase refuses it PostgreSQL refuses here too (issue 12 item 2); extensions come from the server, the
package's folder and trusted copies generated per cluster (PostgreSQL 18's ``extension_control_path``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from workbench.core.identity import Identity
from workbench.local import postgres as pgmod
from workbench.local.settings import standin_settings
from workbench.local.standin import PRECREATED_EXTENSIONS, LocalStandIn, StandInError
from workbench.notebook.session import Workbench


async def _fetchval(dsn: str, sql: str) -> object:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


async def test_the_server_is_postgresql_18_and_postgres_is_not_a_superuser(standin: LocalStandIn) -> None:
    assert int(str(await _fetchval(standin.dsn(), "show server_version_num"))) // 10000 == 18
    conn = await asyncpg.connect(standin.dsn())
    try:
        row = await conn.fetchrow(
            "select rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls from pg_roles "
            "where rolname = current_user"
        )
        assert dict(row) == {
            "rolsuper": False,
            "rolcreaterole": True,
            "rolcreatedb": True,
            "rolreplication": True,
            "rolbypassrls": True,
        }
        # initdb's superuser is supabase_admin, as on Supabase; it is the only superuser.
        assert await conn.fetchval("select array_agg(rolname::text) from pg_roles where rolsuper") == ["supabase_admin"]
        admin = {
            r["role"]: r["admin"]
            for r in await conn.fetch(
                "select m.roleid::regrole::text as role, m.admin_option as admin from pg_auth_members m "
                "where m.member = 'postgres'::regrole"
            )
        }
        assert {admin.get(r) for r in ("anon", "authenticated", "service_role")} == {True}
        owners = await conn.fetch(
            "select c.relname::text as name, c.relowner::regrole::text as owner from pg_class c "
            "where c.oid in ('auth.users'::regclass, 'storage.objects'::regclass, 'public.tasks'::regclass)"
        )
        assert {r["name"]: r["owner"] for r in owners} == {
            "users": "supabase_auth_admin",
            "objects": "supabase_storage_admin",
            "tasks": "postgres",
        }
        assert await conn.fetchval("select nspowner::regrole::text from pg_namespace where nspname = 'public'") == (
            "postgres"
        )
    finally:
        await conn.close()


async def test_a_cell_without_identity_is_postgres_and_postgresql_refuses_superuser_acts(
    standin: LocalStandIn, tmp_path: Path
) -> None:
    """Run through the workbench's own query path with ``--write`` (so nothing of the workbench's stands in
    the way): each refusal is PostgreSQL's "permission denied", and nothing ran."""
    wb = Workbench(standin_settings(standin))
    marker = tmp_path / "ran"
    try:
        who = await wb.query_outcome("select current_user, session_user", identity=Identity.none())
        assert who.frame.iloc[0].tolist() == ["postgres", "postgres"]
        refused = [
            "do $$ begin execute 'copy (select 1) to program ''touch " + str(marker) + "'''; end $$",
            "set local role supabase_admin",
            "select set_config('role', 'supabase_admin', true)",
            "create extension amcheck",
            "create extension file_fdw",
            "alter role postgres superuser",
            "select pg_read_file('/etc/hostname')",
        ]
        for sql in refused:
            with pytest.raises(Exception, match="permission denied") as caught:
                await wb.query_outcome(sql, identity=Identity.none(), write=True)
            assert "permission denied" in str(caught.value), sql
        # An untrusted language is refused too (the server ships no plpython3u: refused as unavailable).
        with pytest.raises(Exception, match="plpython3u"):
            await wb.query_outcome("create extension plpython3u", identity=Identity.none(), write=True)
        # The workbench refuses a bare COPY in a cell itself; on postgres's own connection PostgreSQL does too.
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="pg_execute_server_program"):
            await _fetchval(standin.dsn(), "copy (select 1) to program 'touch " + str(marker) + "'")
        # ALTER SYSTEM cannot run in a cell's transaction at all; outside one PostgreSQL refuses postgres.
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
            await _fetchval(standin.dsn(), "alter system set work_mem = '5MB'")
        assert not marker.exists()
        assert await _fetchval(standin.dsn(), "select count(*) from pg_extension where extname = 'amcheck'") == 0
    finally:
        await wb.aclose()


async def test_postgres_creates_the_extensions_supabase_lets_it(empty_db: str) -> None:
    """In a scratch database postgres made (so nothing stays behind), as postgres: the privileged extensions
    the server ships load through the generated trusted control files, owned by postgres."""
    conn = await asyncpg.connect(empty_db)
    try:
        assert await conn.fetchval("select rolsuper from pg_roles where rolname = current_user") is False
        for name in ("vector", "citext", "pg_trgm", "moddatetime", "hstore", "dblink", "postgres_fdw", "pgrowlocks"):
            await conn.execute(f'create extension "{name}"')
        installed = {
            r["extname"]: r["owner"]
            for r in await conn.fetch("select extname::text, extowner::regrole::text as owner from pg_extension")
        }
        assert installed["vector"] == "postgres" and installed["citext"] == "postgres"
        assert await conn.fetchval("select '[1,2]'::vector <-> '[1,3]'::vector") == 1.0
        assert await conn.fetchval("select 'ABC'::citext = 'abc'::citext") is True
    finally:
        await conn.close()


async def test_supabase_preinstalls_pg_stat_statements_in_extensions(standin: LocalStandIn) -> None:
    conn = await asyncpg.connect(standin.dsn())
    try:
        schema = await conn.fetchval(
            "select extnamespace::regnamespace::text from pg_extension where extname = 'pg_stat_statements'"
        )
        assert schema == "extensions"
        assert await conn.fetchval("select count(*) > 0 from extensions.pg_stat_statements") is True
        available = {r[0] for r in await conn.fetch("select name from pg_available_extensions")}
        installed = {r[0] for r in await conn.fetch("select extname from pg_extension")}
        for name, _schema in PRECREATED_EXTENSIONS:
            assert (name in installed) == (name in available), name
    finally:
        await conn.close()


@pytest.fixture()
def extension_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A package extension folder of our own with two tiny SQL-only extensions (one named like a pre-created
    one), put in place of ``workbench/local/extensions``."""
    root = tmp_path / "pkg-extensions"
    folder = root / "extension"
    folder.mkdir(parents=True)
    for name, body in (
        ("wb_dummy", "create function wb_dummy_answer() returns int language sql as 'select 42';"),
        ("pgjwt", "create function extensions_test_pgjwt() returns text language sql as $$select 'jwt'$$;"),
    ):
        (folder / f"{name}.control").write_text(
            "comment = 'test'\ndefault_version = '1.0'\nrelocatable = true\ntrusted = true\n"
        )
        (folder / f"{name}--1.0.sql").write_text(body + "\n")
    monkeypatch.setattr(pgmod, "PACKAGE_EXTENSIONS", root)
    yield root


async def test_the_package_extension_folder_is_on_the_path(tmp_path: Path, extension_folder: Path) -> None:
    """A fresh stand-in picks up the package's SQL-only extensions: postgres creates one, and one named in
    the pre-create list is created in ``extensions`` at bootstrap."""
    own = LocalStandIn(tmp_path / "local")
    try:
        own.start(demo=False, api=False)
        conn = await asyncpg.connect(own.dsn())
        try:
            path = await conn.fetchval("show extension_control_path")
            assert str(extension_folder) in path and path.endswith("$system")
            await conn.execute("create extension wb_dummy")
            assert await conn.fetchval("select wb_dummy_answer()") == 42
            assert (
                await conn.fetchval("select extnamespace::regnamespace::text from pg_extension where extname = 'pgjwt'")
                == "extensions"
            )
        finally:
            await conn.close()
    finally:
        own.destroy()


def test_a_cluster_made_by_postgresql_16_gives_one_clear_error_and_reset_recreates_it(tmp_path: Path) -> None:
    """A stand-in folder from the pgserver days (PG_VERSION 16): start refuses it, naming the reset command;
    reset recreates it on PostgreSQL 18."""
    own = LocalStandIn(tmp_path / "local")
    own.start(demo=False, api=False)
    own.stop()
    (own.pg.pgdata / "PG_VERSION").write_text("16\n")
    try:
        with pytest.raises(StandInError, match="made by PostgreSQL 16") as caught:
            own.start(demo=False, api=False)
        assert f"workbench local reset --dir {own.data_dir}" in str(caught.value)
        assert "deletes its data" in str(caught.value)
        assert not own.status().db_running
        own.reset(demo=False, api=False)
        assert own.pg.major_version() == "18" and own.status().db_running
    finally:
        own.destroy()


async def test_a_cluster_copied_from_the_cached_template_has_its_own_superuser_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """New clusters are copies of one cached initdb (cold start); each replaces the template's superuser
    password with its own at its first start, so the template's password opens none of them."""
    templates = tmp_path / "templates"
    monkeypatch.setenv("WORKBENCH_PG_TEMPLATE_DIR", str(templates))
    first, second = LocalStandIn(tmp_path / "a"), LocalStandIn(tmp_path / "b")
    try:
        first.start(demo=False, api=False)
        second.start(demo=False, api=False)
        (template,) = templates.glob("template-*")
        assert (template / "ready").is_file()
        for path in (templates, template, template / "password"):
            assert path.stat().st_mode & 0o077 in (0, 0o011), path  # private (as root: traverse-only root)
        template_password = (template / "password").read_text()
        for own in (first, second):
            assert own.pg.pending_superuser_password() is None
            port = own.status().db_port
            with pytest.raises(asyncpg.InvalidPasswordError):
                await asyncpg.connect(f"postgresql://supabase_admin:{template_password}@127.0.0.1:{port}/postgres")
            assert await _fetchval(own.dsn("supabase_admin"), "select current_user") == "supabase_admin"
    finally:
        first.destroy()
        second.destroy()
