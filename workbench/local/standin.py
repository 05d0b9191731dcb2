"""The local Supabase stand-in: embedded PostgreSQL + bootstrap + keys + the Auth/Storage API process.

Everything lives in one data folder (``WORKBENCH_LOCAL_DIR``, default ``~/.workbench/local``) so that
several stand-ins can run side by side and the folder survives restarts:

    pgdata/        PostgreSQL cluster          state.json   ports in use
    storage/       object bytes                keys.json    JWT secret, API keys, ES256 key, database
    api.pid/.log   the HTTP API process                     passwords (mode 0600)
    postgres.log   server log                  .workbench-standin   marker: this folder is a stand-in's

The folder is private to its owner (0700, files 0600), and the database asks every connection for a
generated password (SCRAM): another account on the machine can neither read the files nor log in.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench.core.exceptions import WorkbenchUserError
from workbench.local.postgres import BOOTSTRAP_SUPERUSER, ClusterVersionError, EmbeddedPostgres, free_port, pid_alive
from workbench.local.postgres import _open_private as open_private

MARKER = ".workbench-standin"
# Everything a stand-in creates in its folder: reset and destroy delete these and nothing else.
OWN_FILES = (
    "pgdata",
    "storage",
    "state.json",
    "state.json.tmp",
    "keys.json",
    "keys.json.tmp",
    "api.pid",
    "api.log",
    "postgres.log",
    "auth.json",  # the Auth API's settings (auto-confirm, anonymous sign-ins)
    "inbox",  # the Auth API's caught mail
    "pull-schema.sql",  # the schema `workbench local pull` applied (to read a failing line in)
    ".lock",
    MARKER,
)
# The roles the stand-in's services log in as (each with a generated password) and what they are for.
LOGIN_ROLES = (
    "postgres",  # the project owner (not a superuser, as on Supabase): notebooks, migrations, tests
    "supabase_admin",  # the bootstrap superuser, as on Supabase: only the workbench's own admin tasks
    "authenticator",  # impersonated cells, ORM sessions and FastAPI's auth.rls (PostgREST's login role)
    "supabase_auth_admin",  # the local Auth API
    "supabase_storage_admin",  # the local Storage API
)
ROLES_SQL = Path(__file__).parent / "sql" / "roles.sql"
CLUSTER_SQL = Path(__file__).parent / "sql" / "cluster.sql"
POSTGRES_GRANTS_SQL = Path(__file__).parent / "sql" / "postgres_grants.sql"
SUPABASE_FUNCTIONS_SQL = Path(__file__).parent / "sql" / "supabase_functions.sql"  # Database Webhooks, via pg_net
# What a fresh Supabase project has created before the first migration: (extension, schema), each only when
# its control file exists (the server's own, or workbench/local/extensions). Created by supabase_admin.
PRECREATED_EXTENSIONS = (
    ("pg_stat_statements", "extensions"),
    ("pgcrypto", "extensions"),
    ("uuid-ossp", "extensions"),
    ("pgjwt", "extensions"),
    ("pgsodium", "pgsodium"),
    ("supabase_vault", "vault"),
    ("pg_graphql", "graphql"),
)

ENV_DIR = "WORKBENCH_LOCAL_DIR"
LOCAL_REF = "local"
BOOTSTRAP_SQL = Path(__file__).parent / "sql" / "bootstrap.sql"


def default_dir() -> Path:
    """The data folder: ``$WORKBENCH_LOCAL_DIR`` or ``~/.workbench/local``."""
    env = os.environ.get(ENV_DIR)
    return Path(env).expanduser().resolve() if env else Path.home() / ".workbench" / "local"


class StandInError(WorkbenchUserError, RuntimeError):
    """The stand-in could not do what was asked; the message says what to do."""


@dataclass(frozen=True)
class LocalKeys:
    """Credentials of one stand-in. ``repr`` shows none of them."""

    jwt_secret: str = field(repr=False)
    anon_key: str = field(repr=False)
    service_role_key: str = field(repr=False)
    es256_private_key: str = field(repr=False)
    es256_jwk: dict[str, Any] = field(repr=False)
    db_passwords: dict[str, str] = field(default_factory=dict, repr=False)

    def db_password(self, role: str = "postgres") -> str:
        """The generated password of one of :data:`LOGIN_ROLES`."""
        try:
            return self.db_passwords[role]
        except KeyError:
            raise StandInError(
                f"The stand-in has no password for role {role!r}; its login roles are {LOGIN_ROLES}."
            ) from None


@dataclass(frozen=True)
class StandInStatus:
    """What ``workbench local status`` reports, like ``supabase status``."""

    data_dir: Path
    db_running: bool
    db_port: int | None
    api_running: bool
    api_port: int | None
    db_url: str | None
    api_url: str | None

    def as_dict(self, keys: LocalKeys | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "data_dir": str(self.data_dir),
            "db_running": self.db_running,
            "db_url": self.db_url,
            "api_running": self.api_running,
            "api_url": self.api_url,
        }
        if keys is not None:
            out |= {
                "db_password": keys.db_passwords.get("postgres"),
                "jwt_secret": keys.jwt_secret,
                "anon_key": keys.anon_key,
                "service_role_key": keys.service_role_key,
                "jwks_url": f"{self.api_url}/auth/v1/.well-known/jwks.json" if self.api_url else None,
            }
        return out


class LocalStandIn:
    """Start, stop, inspect and reset one local Supabase stand-in. All methods are idempotent."""

    def __init__(self, data_dir: Path | str | None = None) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve() if data_dir else default_dir()
        self.pg = EmbeddedPostgres(self.data_dir / "pgdata")

    def __repr__(self) -> str:
        return f"LocalStandIn({str(self.data_dir)!r})"

    # -- files ---------------------------------------------------------------------------------------
    @property
    def storage_dir(self) -> Path:
        return self.data_dir / "storage"

    def _state(self) -> dict[str, Any]:
        try:
            return dict(json.loads((self.data_dir / "state.json").read_text()))
        except (FileNotFoundError, ValueError):
            return {}

    def _save_state(self, **changes: Any) -> None:
        state = self._state() | changes
        self._write_private("state.json", json.dumps(state, indent=2))

    def _write_private(self, name: str, text: str) -> None:
        """Replace ``name`` atomically with an owner-only file (never through a planted symlink)."""
        tmp = self.data_dir / f"{name}.tmp"
        tmp.unlink(missing_ok=True)
        fd = open_private(tmp, os.O_WRONLY | os.O_EXCL)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        tmp.replace(self.data_dir / name)

    def _ensure_folder(self, *, mark: bool = False) -> None:
        """Create the data folder owner-only; ``mark`` (only ``start`` does) claims it as a stand-in's (see
        :meth:`is_standin_folder`). A folder that is not a stand-in's is never marked or re-permissioned."""
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        marker = self.data_dir / MARKER
        if mark and not marker.exists():
            os.close(open_private(marker))
        if self.is_standin_folder():
            os.chmod(self.data_dir, 0o700)

    def is_standin_folder(self) -> bool:
        """True when the folder carries the marker a stand-in writes (reset and destroy check it)."""
        return (self.data_dir / MARKER).is_file() and not (self.data_dir / MARKER).is_symlink()

    @contextlib.contextmanager
    def _lock(self, *, mark: bool = False) -> Iterator[None]:
        """Serialise start/stop/reset across processes sharing this data folder."""
        if not mark and self._foreign_folder():
            yield  # not a stand-in's folder: nothing of ours to guard, and no lock file left in it
            return
        self._ensure_folder(mark=mark)
        fd = open_private(self.data_dir / ".lock", os.O_WRONLY)
        with os.fdopen(fd, "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def keys(self) -> LocalKeys:
        """The stand-in's credentials, created on first use and kept in ``keys.json`` (0600). A file from
        before database passwords gets them added."""
        path = self.data_dir / "keys.json"
        if path.exists():
            raw = json.loads(path.read_text())
            keys = LocalKeys(**raw)
            missing = [role for role in LOGIN_ROLES if role not in keys.db_passwords]
            if not missing:
                return keys
            passwords = keys.db_passwords | {role: _new_password() for role in missing}
            keys = LocalKeys(**(raw | {"db_passwords": passwords}))
            self._write_private("keys.json", json.dumps(keys.__dict__))
            return keys
        self._ensure_folder()
        keys = _new_keys()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(keys.__dict__, fh)
        return keys

    # -- lifecycle -----------------------------------------------------------------------------------
    def start(self, *, demo: bool = True, api: bool = True) -> StandInStatus:
        """Start PostgreSQL (initialising and bootstrapping a new folder) and the API process."""
        with self._lock(mark=True):
            keys = self.keys()
            try:
                created = self.pg.init(keys.db_password(BOOTSTRAP_SUPERUSER))
            except ClusterVersionError as exc:
                raise StandInError(
                    f"This stand-in's data was made by PostgreSQL {exc.found} (pgserver); the workbench now runs "
                    f"PostgreSQL 18, which cannot open it. Run `workbench local reset --dir {self.data_dir}` to "
                    "recreate it (this deletes its data)."
                ) from None
            state = self._state()
            port = self.pg.running_port() or self.pg.start(free_port(state.get("db_port")))
            self._save_state(db_port=port)
            pending = self.pg.pending_superuser_password()
            if pending is not None:
                self._replace_template_password(port, pending, keys)
            if self.pg.trusts_connections():
                self._require_passwords(port, keys)
            if created or not state.get("bootstrapped"):
                self._bootstrap(demo=demo)
                self._save_state(bootstrapped=True)
            self._apply_roles(keys)
            if api:
                self._start_api()
            return self.status()

    def stop(self) -> StandInStatus:
        """Stop the API process and PostgreSQL; the data folder is kept."""
        with self._lock():
            self._stop_api()
            self.pg.stop()
            return self.status()

    def reset(self, *, demo: bool = True, api: bool = True) -> StandInStatus:
        """Stop, delete what the stand-in created in its folder (keys too) and start a clean stand-in.
        Refuses a folder that is not a stand-in's, and leaves files it did not create alone."""
        self._refuse_foreign_folder("reset")
        self.stop()
        with self._lock():
            self._delete_contents()
        return self.start(demo=demo, api=api)

    def destroy(self) -> None:
        """Stop and delete everything of this stand-in, and the folder when nothing else is left in it."""
        if not self.data_dir.exists():
            return
        self._refuse_foreign_folder("destroy")
        self.stop()
        with self._lock():
            self._delete_contents()
        (self.data_dir / ".lock").unlink(missing_ok=True)
        (self.data_dir / MARKER).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self.data_dir.rmdir()  # only when empty: files the stand-in did not create stay

    def _foreign_folder(self) -> bool:
        """A folder with files in it but no stand-in marker: someone else's, not to be touched."""
        return self.data_dir.is_dir() and any(self.data_dir.iterdir()) and not self.is_standin_folder()

    def _refuse_foreign_folder(self, action: str) -> None:
        if self._foreign_folder():
            raise StandInError(
                f"{self.data_dir} is not a local stand-in's folder (it has no {MARKER} marker), so `{action}` "
                "will not delete anything in it. Fix: pass the folder `workbench local start` created "
                "(default ~/.workbench/local)."
            )

    def _delete_contents(self) -> None:
        """Delete the stand-in's own files (:data:`OWN_FILES`), never anything else in the folder."""
        self.pg.destroy()
        for name in OWN_FILES:
            if name in (".lock", MARKER):
                continue
            child = self.data_dir / name
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            elif child.exists() or child.is_symlink():
                child.unlink()

    def status(self) -> StandInStatus:
        db_port = self.pg.running_port()
        api_port = self._api_port() if self.api_pid() is not None else None
        return StandInStatus(
            data_dir=self.data_dir,
            db_running=db_port is not None,
            db_port=db_port,
            api_running=api_port is not None,
            api_port=api_port,
            db_url=f"postgresql://postgres@127.0.0.1:{db_port}/postgres" if db_port else None,  # no password
            api_url=f"http://127.0.0.1:{api_port}" if api_port else None,
        )

    def dsn(self, role: str = "postgres", database: str = "postgres") -> str:
        """An asyncpg DSN logging in as ``role`` (default the ``postgres`` owner) with its generated
        password; raises with the fix when the stand-in is not running. Treat it as a secret."""
        port = self.pg.running_port()
        if port is None:
            raise StandInError(
                f"The local stand-in in {self.data_dir} is not running. Start it with `workbench local start` "
                "or `LocalStandIn().start()`."
            )
        return _dsn(role, self.keys().db_password(role), port, database)

    def api_url(self) -> str:
        port = self._api_port() if self.api_pid() is not None else None
        if port is None:
            raise StandInError(
                f"The local Auth/Storage API of {self.data_dir} is not running. Start it with `workbench local start`."
            )
        return f"http://127.0.0.1:{port}"

    # -- bootstrap -----------------------------------------------------------------------------------
    def _bootstrap(self, *, demo: bool) -> None:
        from workbench.local import demo as demo_data
        from workbench.notebook.bridge import run_sync

        run_sync(self._bootstrap_database())
        self._apply_roles(self.keys())  # postgres's password, before the demo data is loaded as postgres
        if demo:
            run_sync(demo_data.load(self.dsn(), self))

    async def abootstrap_database(self, database: str) -> None:
        """Make ``database`` (created by the caller) look like a fresh Supabase project's database."""
        await self._bootstrap_database(database)

    def bootstrap(self) -> None:
        """Re-run the idempotent Supabase bootstrap (after upgrading the workbench, for example)."""
        from workbench.notebook.bridge import run_sync

        run_sync(self._bootstrap_database())

    async def _bootstrap_database(self, database: str = "postgres") -> None:
        """Roles, schemas, auth and storage, the pre-created extensions, ``supabase_functions`` and postgres's
        grants in ``database``, as ``supabase_admin`` (the superuser; ``postgres`` could not create most of it,
        as on Supabase). Idempotent; also what a scratch database gets to look like a fresh project."""
        import asyncpg

        conn = await asyncpg.connect(self.dsn(BOOTSTRAP_SUPERUSER, database))
        try:
            await conn.execute(BOOTSTRAP_SQL.read_text())
            await conn.execute(CLUSTER_SQL.read_text())
            available = {r[0] for r in await conn.fetch("select name from pg_catalog.pg_available_extensions")}
            for name, schema in PRECREATED_EXTENSIONS:
                if name in available:
                    await conn.execute(f'create schema if not exists "{schema}"')
                    await conn.execute(f'create extension if not exists "{name}" with schema "{schema}"')
            if "pg_net" in available:
                await conn.execute(SUPABASE_FUNCTIONS_SQL.read_text())
            await conn.execute(POSTGRES_GRANTS_SQL.read_text())
        finally:
            await conn.close()

    async def _execute_script(self, sql: str, role: str = "postgres") -> None:
        import asyncpg

        conn = await asyncpg.connect(self.dsn(role))
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    def _replace_template_password(self, port: int, template_password: str, keys: LocalKeys) -> None:
        """A cluster copied from the cached initdb template starts with the template's superuser password
        (private to this account, like the template): replace it with this stand-in's own at once."""
        from workbench.notebook.bridge import run_sync

        async def replace() -> None:
            import asyncpg

            conn = await asyncpg.connect(_dsn(BOOTSTRAP_SUPERUSER, template_password, port))
            try:
                await conn.execute(_password_sql(BOOTSTRAP_SUPERUSER, keys.db_password(BOOTSTRAP_SUPERUSER)))
            finally:
                await conn.close()

        run_sync(replace())
        self.pg.clear_pending_superuser_password()

    def _require_passwords(self, port: int, keys: LocalKeys) -> None:
        """A cluster from before passwords trusts local TCP: set the generated passwords over that last
        trusted connection, then switch ``pg_hba.conf`` to SCRAM and reload."""
        from workbench.notebook.bridge import run_sync

        async def secure() -> None:
            import asyncpg

            conn = await asyncpg.connect(f"postgresql://{BOOTSTRAP_SUPERUSER}@127.0.0.1:{port}/postgres")
            try:
                await conn.execute(_password_sql(BOOTSTRAP_SUPERUSER, keys.db_password(BOOTSTRAP_SUPERUSER)))
                self.pg.write_hba()
                await conn.execute("select pg_reload_conf()")
            finally:
                await conn.close()

        run_sync(secure())

    def _apply_roles(self, keys: LocalKeys) -> None:
        """The login roles and their generated passwords (idempotent, at every start: older stand-ins get
        them too). Each service logs in as a role that can only become the API roles. Run as the superuser:
        ``postgres`` may not change other roles' attributes."""
        from workbench.notebook.bridge import run_sync

        statements = [ROLES_SQL.read_text()]
        statements += [
            _password_sql(role, keys.db_password(role)) for role in LOGIN_ROLES if role != BOOTSTRAP_SUPERUSER
        ]
        run_sync(self._execute_script(";\n".join(statements), role=BOOTSTRAP_SUPERUSER))

    def run_sql_file(self, path: Path | str) -> None:
        """Apply a SQL file (a migration written for Supabase) as ``postgres``, in one transaction."""
        from workbench.notebook.bridge import run_sync

        sql = Path(path).read_text()
        run_sync(self._execute_script(f"begin;\n{sql}\n;commit;"))

    # -- the API process -----------------------------------------------------------------------------
    def api_pid(self) -> int | None:
        """The API process's pid when it is really ours: the recorded pid must be alive, started when the
        pid file says, and run this folder's API (a stale file's pid may now belong to anything)."""
        import psutil

        try:
            record = json.loads((self.data_dir / "api.pid").read_text())
            pid, started = int(record["pid"]), float(record["create_time"])
        except (OSError, ValueError, TypeError, KeyError):
            return None
        if not pid_alive(pid):
            return None
        try:
            proc = psutil.Process(pid)
            if abs(proc.create_time() - started) > 0.01:
                return None
            cmdline = proc.cmdline()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return None
        if "workbench.local.api" not in cmdline or str(self.data_dir) not in cmdline:
            return None
        return pid

    def _api_port(self) -> int | None:
        port = self._state().get("api_port")
        return int(port) if port else None

    def _start_api(self) -> None:
        if self.api_pid() is not None and self._api_healthy():
            return
        self._stop_api()
        port = free_port(self._state().get("api_port"))
        self._save_state(api_port=port)
        with os.fdopen(open_private(self.data_dir / "api.log"), "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "workbench.local.api", "--dir", str(self.data_dir), "--port", str(port)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        import psutil

        self._write_private(
            "api.pid", json.dumps({"pid": proc.pid, "create_time": psutil.Process(proc.pid).create_time()})
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise StandInError(
                    f"The local API process exited with code {proc.returncode}; see {self.data_dir / 'api.log'}"
                )
            if self._api_healthy():
                return
            time.sleep(0.05)  # polling a health check, not a fixed wait
        raise StandInError(f"The local API did not answer in 30 s; see {self.data_dir / 'api.log'}")

    def _api_healthy(self) -> bool:
        import httpx

        port = self._api_port()
        if port is None:
            return False
        try:
            return httpx.get(f"http://127.0.0.1:{port}/health", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def _stop_api(self) -> None:
        pid = self.api_pid()
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                break
            time.sleep(0.05)  # waiting for the process to exit
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        (self.data_dir / "api.pid").unlink(missing_ok=True)


def _new_password() -> str:
    return secrets.token_urlsafe(32)


def _password_sql(role: str, password: str) -> str:
    """``ALTER ROLE ... PASSWORD`` takes no bind parameters; the generated password is URL-safe base64
    (checked here), so the literal needs no escaping. The server stores a SCRAM verifier, not the text."""
    if not password or not all(ch.isalnum() or ch in "-_" for ch in password) or role not in LOGIN_ROLES:
        raise StandInError("refusing to set an unexpected role or password")
    return f"alter role {role} with login password '{password}'"


def _dsn(role: str, password: str, port: int, database: str = "postgres") -> str:
    return f"postgresql://{role}:{password}@127.0.0.1:{port}/{database}"


def _new_keys() -> LocalKeys:
    import jwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    secret = secrets.token_urlsafe(40)
    now = int(time.time())

    def api_key(role: str) -> str:
        claims = {
            "iss": "supabase",
            "ref": LOCAL_REF,
            "role": role,
            "iat": now,
            "exp": now + 10 * 365 * 86400,
        }
        return jwt.encode(claims, secret, algorithm="HS256")

    private = ec.generate_private_key(ec.SECP256R1())
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private.public_key()))
    jwk |= {"kid": secrets.token_hex(8), "alg": "ES256", "use": "sig", "key_ops": ["verify"]}
    return LocalKeys(
        jwt_secret=secret,
        anon_key=api_key("anon"),
        service_role_key=api_key("service_role"),
        es256_private_key=pem,
        es256_jwk=jwk,
        db_passwords={role: _new_password() for role in LOGIN_ROLES},
    )
