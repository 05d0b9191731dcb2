"""The stand-in attacked the way issue 12 found it open: another OS account, a planted folder, a stale pid
file, a wrong ``--dir``, a cell or a token naming a role it must not take. Each attack is refused or harmless,
judged by its outcome (the other account refused, the file untouched, the foreign process alive)."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import psutil
import pytest

from workbench.backend.tokens import access_token_claims, mint
from workbench.cli import main as cli_main
from workbench.core.identity import Identity, IdentityError
from workbench.core.settings import Settings
from workbench.local import postgres as pgmod
from workbench.local.postgres import PostgresError, postmaster_pid
from workbench.local.settings import standin_settings
from workbench.local.standin import MARKER, LocalStandIn, StandInError
from workbench.notebook.session import Workbench

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root to act as another OS account (setpriv)")
ALICE = "11111111-1111-4111-8111-111111111111"
BOB = "22222222-2222-4222-8222-222222222222"


def as_nobody(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run Python ``code`` as the unprivileged ``nobody`` account, without root's groups."""
    cmd = ["setpriv", "--reuid", "nobody", "--regid", "nogroup", "--clear-groups", sys.executable, "-c", code, *args]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/nonexistent", "PGPASSFILE": "/nonexistent"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd="/", env=env)


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStandIn]:
    """A stand-in of this module's own (these tests stop, restart and reset it)."""
    instance = LocalStandIn(tmp_path_factory.mktemp("secure") / "local")
    instance.start(demo=False)
    yield instance
    instance.destroy()


# ------------------------------------------------------------------------------------ item 4: other users


CONNECT = """
import asyncio, sys, asyncpg
async def main():
    try:
        conn = await asyncpg.connect(sys.argv[1], timeout=10, ssl=False)
    except Exception as exc:
        print("REFUSED", type(exc).__name__, exc)
        return
    print("CONNECTED", await conn.fetchval("select current_user"))
    await conn.close()
asyncio.run(main())
"""


@needs_root
def test_another_os_user_cannot_connect_without_the_password(own: LocalStandIn) -> None:
    port = own.status().db_port
    assert port is not None
    for role in ("postgres", "supabase_admin", "authenticator"):
        res = as_nobody(CONNECT, f"postgresql://{role}@127.0.0.1:{port}/postgres")
        assert res.stdout.startswith("REFUSED"), (role, res.stdout, res.stderr)
        assert "password" in res.stdout.lower(), res.stdout
    res = as_nobody(CONNECT, f"postgresql://postgres:wrong-guess@127.0.0.1:{port}/postgres")
    assert res.stdout.startswith("REFUSED") and "password authentication failed" in res.stdout
    # The same account with the generated password gets in: the refusal above is the password's doing.
    res = as_nobody(CONNECT, own.dsn())
    assert res.stdout.strip() == "CONNECTED postgres", res.stderr


async def test_a_standin_from_before_passwords_is_converted_at_its_next_start(own: LocalStandIn) -> None:
    """An existing stand-in whose ``pg_hba.conf`` trusts local connections and whose ``keys.json`` has no
    database passwords: the next start sets them, switches to SCRAM, and the open door is closed."""
    own.stop()
    (own.pg.pgdata / "pg_hba.conf").write_text("local all all trust\nhost all all 127.0.0.1/32 trust\n")
    keys_file = own.data_dir / "keys.json"
    raw = json.loads(keys_file.read_text())
    del raw["db_passwords"]
    keys_file.write_text(json.dumps(raw))
    assert own.pg.trusts_connections()

    port = own.start(demo=False).db_port
    assert not own.pg.trusts_connections()
    assert set(json.loads(keys_file.read_text())["db_passwords"]) >= {"postgres", "authenticator"}
    assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", ssl=False)
    for role in ("postgres", "authenticator", "supabase_storage_admin"):
        conn = await asyncpg.connect(own.dsn(role))
        assert await conn.fetchval("select current_user") == role
        await conn.close()


def _all_paths(own: LocalStandIn) -> list[Path]:
    roots = [own.data_dir, own.pg.pgdata.parent] if own.pg.pgdata.parent != own.data_dir else [own.data_dir]
    found: list[Path] = []
    for root in roots:
        for folder, dirs, files in os.walk(root):
            found.append(Path(folder))
            found += [Path(folder) / name for name in files + dirs if (Path(folder) / name).is_symlink()]
            found += [Path(folder) / name for name in files]
    return found


def test_no_file_of_the_standin_is_readable_by_others(own: LocalStandIn) -> None:
    paths = _all_paths(own)
    assert own.pg.log_file in paths and own.data_dir / "keys.json" in paths
    assert own.pg.log_file.stat().st_size > 0  # the server has written to its log
    loose = []
    for path in paths:
        info = os.lstat(path)
        if stat.S_ISLNK(info.st_mode):
            continue
        if info.st_mode & 0o077:
            loose.append(f"{path}: {oct(info.st_mode & 0o777)}")
    assert loose == []


READ_ALL = """
import os, sys
opened = []
for path in sys.argv[1:]:
    try:
        if os.path.isdir(path):
            os.listdir(path)
        else:
            open(path, "rb").close()
        opened.append(path)
    except OSError:
        pass
print("\\n".join(opened))
"""


@needs_root
def test_another_os_user_reads_nothing_in_the_data_folder(own: LocalStandIn) -> None:
    paths = [str(p) for p in _all_paths(own)]
    assert len(paths) > 100  # the cluster's files, the keys, the logs
    res = as_nobody(READ_ALL, *paths)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == ""


@needs_root
def test_the_server_runs_without_roots_groups(own: LocalStandIn) -> None:
    found = postmaster_pid(own.pg.pgdata)
    assert found is not None
    proc = psutil.Process(found[0])
    assert proc.uids().real != 0 and proc.gids().real != 0 and proc.gids().effective != 0
    status = Path(f"/proc/{found[0]}/status").read_text()
    groups = next(line for line in status.splitlines() if line.startswith("Groups:")).split()[1:]
    assert "0" not in groups, status


# ---------------------------------------------------------------------------------- item 5: planted folders


@needs_root
def test_a_cluster_root_planted_by_another_user_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pwd

    nobody = pwd.getpwnam("nobody")
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    os.chmod(shared, 0o1777)  # a /var/tmp-like sticky, world-writable folder
    planted = shared / "workbench-pg"
    planted.mkdir()
    os.chown(planted, nobody.pw_uid, nobody.pw_gid)
    victim = tmp_path / "victim"  # a root-owned file the attacker wants appended to
    victim.write_text("root's own\n")
    victim.chmod(0o600)
    monkeypatch.setattr(pgmod, "ROOT_CLUSTERS", planted)
    location = tmp_path / "home" / "local"
    digest = pgmod._cluster_dir(location / "pgdata").parent
    digest.mkdir()
    os.chown(digest, nobody.pw_uid, nobody.pw_gid)
    (digest / "postgres.log").symlink_to(victim)

    with pytest.raises(PostgresError, match="owned by uid"):
        LocalStandIn(location).start(demo=False, api=False)
    assert victim.read_text() == "root's own\n" and victim.stat().st_uid == 0
    assert sorted(p.name for p in digest.iterdir()) == ["postgres.log"]  # nothing created in it

    # The root folder right, the cluster folder planted: refused as well, the symlink never followed.
    os.chown(planted, 0, 0)
    os.chmod(planted, 0o711)
    with pytest.raises(PostgresError, match="owned by uid"):
        LocalStandIn(location).start(demo=False, api=False)
    assert victim.read_text() == "root's own\n" and victim.stat().st_uid == 0

    # A symlink in place of the root folder is refused too.
    real = tmp_path / "elsewhere"
    real.mkdir()
    link = shared / "linked-root"
    link.symlink_to(real)
    monkeypatch.setattr(pgmod, "ROOT_CLUSTERS", link)
    with pytest.raises(PostgresError, match="not a plain folder"):
        LocalStandIn(tmp_path / "other" / "local").start(demo=False, api=False)
    assert list(real.iterdir()) == []


def test_a_symlinked_log_file_is_never_followed(own: LocalStandIn, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("untouched\n")
    own.stop()
    log = own.pg.log_file
    saved = log.read_bytes()
    log.unlink()
    log.symlink_to(victim)
    try:
        with pytest.raises(OSError):
            own.start(demo=False)
        assert victim.read_text() == "untouched\n" and victim.stat().st_uid == os.geteuid()
    finally:
        log.unlink()
        fd = os.open(log, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, saved)
        os.close(fd)
    own.start(demo=False)


# ------------------------------------------------------------------------------------ item 6: reset --dir


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(root.rglob("*"))
    }


def test_reset_refuses_a_folder_that_is_not_a_standins(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tree = tmp_path / "project"
    (tree / "src").mkdir(parents=True)
    (tree / "src" / "main.py").write_text("print('hello')\n")
    (tree / "README.md").write_text("# my project\n")
    (tree / "keys.json").write_text("{}")  # even a name the stand-in uses is not its file here
    before = _tree_digest(tree)

    assert cli_main(["local", "stop", "--dir", str(tree)]) == 0  # nothing to stop, nothing claimed
    assert cli_main(["local", "reset", "--dir", str(tree), "--no-demo"]) == 2
    assert "not a local stand-in's folder" in capsys.readouterr().err
    with pytest.raises(StandInError, match="not a local stand-in's folder"):
        LocalStandIn(tree).destroy()
    assert _tree_digest(tree) == before


def test_reset_deletes_only_what_the_standin_created(own: LocalStandIn) -> None:
    notes = own.data_dir / "my-notes.txt"
    notes.write_text("mine\n")
    assert (own.data_dir / MARKER).is_file()
    old_password = own.keys().db_password()
    own.reset(demo=False)
    assert notes.read_text() == "mine\n"
    assert own.keys().db_password() != old_password  # the keys were the stand-in's: renewed
    assert own.status().db_running
    notes.unlink()


# ------------------------------------------------------------------------------------- item 7: stale pids


@pytest.fixture
def foreign() -> Iterator[subprocess.Popen[str]]:
    """A real process that is not ours, waiting on its stdin (so it lives until the test ends it)."""
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE, text=True)
    yield proc
    proc.kill()
    proc.wait(timeout=10)


def test_stale_pid_files_naming_a_foreign_process_are_not_ours(
    own: LocalStandIn, foreign: subprocess.Popen[str]
) -> None:
    db_port = own.status().db_port
    own.stop()
    created = psutil.Process(foreign.pid).create_time()
    dead_port = pgmod.free_port()
    # What a crash leaves behind, after the pid was reused by the foreign process.
    (own.pg.pgdata / "postmaster.pid").write_text(
        f"{foreign.pid}\n{own.pg.pgdata}\n{int(created) - 3600}\n{dead_port}\n{own.pg.pgdata}\n127.0.0.1\n"
    )
    (own.data_dir / "api.pid").write_text(json.dumps({"pid": foreign.pid, "create_time": created - 3600}))

    status = own.status()
    assert not status.db_running and not status.api_running
    own.stop()
    assert foreign.poll() is None

    # Even a file whose start time matches is not enough: the process must run this folder's API.
    (own.data_dir / "api.pid").write_text(json.dumps({"pid": foreign.pid, "create_time": created}))
    assert not own.status().api_running
    status = own.start(demo=False)
    assert status.db_running and status.api_running and status.db_port != dead_port
    assert foreign.poll() is None
    assert psutil.Process(foreign.pid).create_time() == created
    assert db_port is not None


# ------------------------------------------------------------------------- items 2 and 8: roles and tokens


async def test_an_impersonated_cell_cannot_become_postgres_or_run_programs(
    standin: LocalStandIn, tmp_path: Path
) -> None:
    wb = Workbench(standin_settings(standin))
    marker = tmp_path / "ran"
    try:
        for role in ("anon", "authenticated", "service_role"):
            with pytest.raises(Exception, match="permission denied to set role"):
                await wb.query_outcome("set local role postgres; select 1", identity=Identity.for_role(role))
            with pytest.raises(Exception, match="permission denied to set role"):
                await wb.query_outcome(
                    "select set_config('role', 'postgres', true), current_user", identity=Identity.for_role(role)
                )
            cell = "do $$ begin execute 'copy (select 1) to program ''touch " + str(marker) + "'''; end $$"
            with pytest.raises(Exception, match="pg_execute_server_program|superuser|permission denied"):
                await wb.query_outcome(cell, identity=Identity.for_role(role), write=True)
            assert not marker.exists()
        assert "roles enforced by PostgreSQL: identities log in as authenticator" in repr(wb)
        real = Workbench(
            Settings(db_url="postgresql://postgres.abcdefghijklmnop:pw@aws-0-eu.pooler.supabase.com:6543/postgres")
        )
        assert "checked against SUPABASE_ALLOWED_ROLES" in repr(real) and ":pw@" not in repr(real)
        who = await wb.query_outcome("select current_user, session_user", identity=Identity.for_role("anon"))
        assert who.frame.iloc[0].tolist() == ["anon", "authenticator"]
        with pytest.raises(IdentityError, match="not one an identity may take"):
            await wb.query_outcome("select 1", identity=Identity.for_role("postgres"))
    finally:
        await wb.aclose()


async def test_services_log_in_as_roles_that_cannot_become_postgres(standin: LocalStandIn) -> None:
    for role in ("authenticator", "supabase_storage_admin", "supabase_auth_admin"):
        conn = await asyncpg.connect(standin.dsn(role))
        try:
            assert await conn.fetchval("select rolsuper from pg_roles where rolname = current_user") is False
            for target in ("postgres", "supabase_admin"):
                async with conn.transaction():
                    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied to set role"):
                        await conn.execute("select set_config('role', $1, true)", target)
        finally:
            await conn.close()


def test_storage_refuses_a_user_whose_role_is_postgres(standin: LocalStandIn) -> None:
    """Alice's ``auth.users.role`` set to ``postgres`` (as an admin can on Supabase): her token is refused,
    and Bob's folder stays unlisted."""
    secret = standin.keys().jwt_secret
    claims = access_token_claims(ALICE, email="alice@example.com", iss=f"{standin.api_url()}/auth/v1")
    as_postgres = mint(claims | {"role": "postgres"}, secret=secret)
    as_herself = mint(claims, secret=secret)
    url = f"{standin.api_url()}/storage/v1/object/list/documents"
    body = {"prefix": f"{BOB}/", "limit": 100, "offset": 0}
    refused = httpx.post(
        url, json=body, headers={"Authorization": f"Bearer {as_postgres}", "apikey": standin.keys().anon_key}
    )
    # Supabase's Storage answers an access error as HTTP 400 with statusCode "403" in the body.
    assert refused.status_code == 400 and refused.json()["statusCode"] == "403", refused.text
    assert "role not allowed" in refused.text and "plan.txt" not in refused.text
    own_view = httpx.post(
        url, json=body, headers={"Authorization": f"Bearer {as_herself}", "apikey": standin.keys().anon_key}
    )
    assert own_view.status_code == 200 and own_view.json() == []  # RLS: Bob's folder is not hers


async def test_a_user_whose_role_is_postgres_cannot_be_impersonated_as_postgres(standin: LocalStandIn) -> None:
    """``%%sbquery --as`` a user whose ``auth.users.role`` an admin set to ``postgres``: refused before
    anything is sent (the allow-list), and the database would refuse it anyway."""
    admin = await asyncpg.connect(standin.dsn())
    wb = Workbench(standin_settings(standin))
    try:
        await admin.execute("update auth.users set role = 'postgres' where id = $1", ALICE)
        identity = await wb.resolve_identity(as_user="alice@example.com")
        assert identity.role == "postgres"
        with pytest.raises(IdentityError, match="not one an identity may take"):
            await wb.query_outcome("select current_user", identity=identity)
        with pytest.raises(IdentityError, match="not one an identity may take"):
            wb.session(identity)
    finally:
        await admin.execute("update auth.users set role = 'authenticated' where id = $1", ALICE)
        await admin.close()
        await wb.aclose()


async def test_pgbouncer_asks_for_the_password_too(pgbouncer) -> None:  # type: ignore[no-untyped-def]
    # PgBouncer reports a failed SCRAM exchange as "SASL authentication failed" (a protocol violation).
    refused = (asyncpg.InvalidPasswordError, asyncpg.ProtocolViolationError)
    with pytest.raises(refused, match="password|SASL authentication failed"):
        await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{pgbouncer.port}/postgres", ssl=False)
    with pytest.raises(refused, match="password|SASL authentication failed"):
        await asyncpg.connect(f"postgresql://postgres:guess@127.0.0.1:{pgbouncer.port}/postgres", ssl=False)
    conn = await asyncpg.connect(pgbouncer.dsn, statement_cache_size=0)
    assert await conn.fetchval("select current_user") == "postgres"
    await conn.close()
    for name in ("userlist.txt", "pgbouncer.ini"):
        assert stat.S_IMODE((pgbouncer.workdir / name).stat().st_mode) == 0o600, name
    assert stat.S_IMODE(pgbouncer.workdir.stat().st_mode) == 0o700
