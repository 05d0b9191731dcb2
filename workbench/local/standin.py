"""The local Supabase stand-in: embedded PostgreSQL + bootstrap + keys + the Auth/Storage API process.

Everything lives in one data folder (``WORKBENCH_LOCAL_DIR``, default ``~/.workbench/local``) so that
several stand-ins can run side by side and the folder survives restarts:

    pgdata/        PostgreSQL cluster          state.json   ports in use
    storage/       object bytes                keys.json    JWT secret, API keys, ES256 key (mode 0600)
    api.pid/.log   the HTTP API process        postgres.log server log
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

from workbench.exceptions import WorkbenchUserError
from workbench.local.postgres import EmbeddedPostgres, free_port, pid_alive

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
        tmp = self.data_dir / "state.json.tmp"
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.data_dir / "state.json")

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """Serialise start/stop/reset across processes sharing this data folder."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.data_dir / ".lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def keys(self) -> LocalKeys:
        """The stand-in's credentials, created on first use and kept in ``keys.json`` (0600)."""
        path = self.data_dir / "keys.json"
        if path.exists():
            raw = json.loads(path.read_text())
            return LocalKeys(**raw)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        keys = _new_keys()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(keys.__dict__, fh)
        return keys

    # -- lifecycle -----------------------------------------------------------------------------------
    def start(self, *, demo: bool = True, api: bool = True) -> StandInStatus:
        """Start PostgreSQL (initialising and bootstrapping a new folder) and the API process."""
        with self._lock():
            self.keys()
            created = self.pg.init()
            state = self._state()
            port = self.pg.running_port() or self.pg.start(free_port(state.get("db_port")))
            self._save_state(db_port=port)
            if created or not state.get("bootstrapped"):
                self._bootstrap(demo=demo)
                self._save_state(bootstrapped=True)
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
        """Stop, delete the data folder (keys too) and start a clean stand-in."""
        self.stop()
        with self._lock():
            self._delete_contents()
        return self.start(demo=demo, api=api)

    def destroy(self) -> None:
        """Stop and delete everything of this stand-in, the data folder included (tests, scripts)."""
        self.stop()
        with self._lock():
            self._delete_contents()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def _delete_contents(self) -> None:
        self.pg.destroy()
        for child in self.data_dir.iterdir():
            if child.name == ".lock":
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()

    def status(self) -> StandInStatus:
        db_port = self.pg.running_port()
        api_port = self._api_port() if self._api_pid() is not None else None
        return StandInStatus(
            data_dir=self.data_dir,
            db_running=db_port is not None,
            db_port=db_port,
            api_running=api_port is not None,
            api_port=api_port,
            db_url=f"postgresql://postgres@127.0.0.1:{db_port}/postgres" if db_port else None,
            api_url=f"http://127.0.0.1:{api_port}" if api_port else None,
        )

    def dsn(self) -> str:
        """An asyncpg DSN for the superuser; raises with the fix when the stand-in is not running."""
        port = self.pg.running_port()
        if port is None:
            raise StandInError(
                f"The local stand-in in {self.data_dir} is not running. Start it with `workbench local start` "
                "or `LocalStandIn().start()`."
            )
        return f"postgresql://postgres@127.0.0.1:{port}/postgres"

    def api_url(self) -> str:
        port = self._api_port() if self._api_pid() is not None else None
        if port is None:
            raise StandInError(
                f"The local Auth/Storage API of {self.data_dir} is not running. Start it with `workbench local start`."
            )
        return f"http://127.0.0.1:{port}"

    # -- bootstrap -----------------------------------------------------------------------------------
    def _bootstrap(self, *, demo: bool) -> None:
        from workbench._sync import run_sync
        from workbench.local import demo as demo_data

        run_sync(self._execute_script(BOOTSTRAP_SQL.read_text()))
        if demo:
            run_sync(demo_data.load(self.dsn(), self))

    def bootstrap(self) -> None:
        """Re-run the idempotent Supabase bootstrap (after upgrading the workbench, for example)."""
        from workbench._sync import run_sync

        run_sync(self._execute_script(BOOTSTRAP_SQL.read_text()))

    async def _execute_script(self, sql: str) -> None:
        import asyncpg

        conn = await asyncpg.connect(self.dsn())
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    def run_sql_file(self, path: Path | str) -> None:
        """Apply a SQL file (a migration written for Supabase) as ``postgres``, in one transaction."""
        from workbench._sync import run_sync

        sql = Path(path).read_text()
        run_sync(self._execute_script(f"begin;\n{sql}\n;commit;"))

    # -- the API process -----------------------------------------------------------------------------
    def _api_pid(self) -> int | None:
        try:
            pid = int((self.data_dir / "api.pid").read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def _api_port(self) -> int | None:
        port = self._state().get("api_port")
        return int(port) if port else None

    def _start_api(self) -> None:
        if self._api_pid() is not None and self._api_healthy():
            return
        self._stop_api()
        port = free_port(self._state().get("api_port"))
        self._save_state(api_port=port)
        with open(self.data_dir / "api.log", "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "workbench.local.api", "--dir", str(self.data_dir), "--port", str(port)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        (self.data_dir / "api.pid").write_text(str(proc.pid))
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
        pid = self._api_pid()
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
    )
