"""A real PgBouncer in transaction mode in front of the local stand-in: what Supavisor's port 6543 does.

Used by notebooks to show transaction pooling live, and by the test suite. Needs the ``pgbouncer``
binary (``apt-get install pgbouncer``); :func:`find_pgbouncer` says so when it is missing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.local.postgres import free_port

if TYPE_CHECKING:
    from workbench.local.standin import LocalStandIn


class PgBouncerMissing(RuntimeError):
    """The pgbouncer binary is not installed."""


def find_pgbouncer() -> str:
    """The pgbouncer binary, or :class:`PgBouncerMissing` saying how to install it."""
    path = shutil.which("pgbouncer") or ("/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None)
    if path is None:
        raise PgBouncerMissing(
            "pgbouncer is not installed. Install it (Debian/Ubuntu: `apt-get install pgbouncer`, macOS: "
            "`brew install pgbouncer`) to try transaction pooling locally."
        )
    return path


def _wait_port(port: int, open_: bool, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            s.settimeout(0.2)
            if (s.connect_ex(("127.0.0.1", port)) == 0) == open_:
                return
        time.sleep(0.02)  # polling the port until it is in the wanted state
    raise TimeoutError(f"127.0.0.1:{port} did not {'open' if open_ else 'close'} within {timeout}s")


@dataclass
class LocalPgBouncer:
    """One PgBouncer process (``pool_mode = transaction``) forwarding to ``backend_port``.

    Clients and the server both authenticate with ``password`` (the stand-in's ``postgres`` password,
    SCRAM): the pooler is no password-less side door into the database."""

    backend_port: int
    password: str | None = field(default=None, repr=False)
    pool_size: int = 2
    max_client_conn: int = 400
    port: int = field(default_factory=free_port)
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="wb-pgbouncer-")))
    binary: str = field(default_factory=find_pgbouncer)

    @classmethod
    def for_standin(cls, standin: LocalStandIn, **options: Any) -> LocalPgBouncer:
        """A PgBouncer in front of a running stand-in, logging in with its ``postgres`` password."""
        port = standin.status().db_port
        if port is None:
            raise RuntimeError(f"the stand-in in {standin.data_dir} is not running: start it first")
        return cls(backend_port=port, password=standin.keys().db_password("postgres"), **options)

    @property
    def dsn(self) -> str:
        """asyncpg DSN with the password: treat it as a secret."""
        return f"postgresql://postgres:{self._password()}@127.0.0.1:{self.port}/postgres"

    @property
    def url(self) -> str:
        """SQLAlchemy URL (asyncpg driver), with the password."""
        return f"postgresql+asyncpg://postgres:{self._password()}@127.0.0.1:{self.port}/postgres"

    def _password(self) -> str:
        if not self.password:
            raise ValueError(
                "LocalPgBouncer needs the database password: use LocalPgBouncer.for_standin(standin) or pass "
                "password=standin.keys().db_password('postgres')."
            )
        if '"' in self.password or "\n" in self.password:
            raise ValueError("the password cannot be written to PgBouncer's auth_file (quote or newline in it)")
        return self.password

    def _write_private(self, name: str, text: str) -> Path:
        path = self.workdir / name
        path.unlink(missing_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        return path

    def _write_config(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.workdir, 0o700)
        self._write_private("userlist.txt", f'"postgres" "{self._password()}"\n')
        ini = self._write_private(
            "pgbouncer.ini",
            f"""[databases]
postgres = host=127.0.0.1 port={self.backend_port} dbname=postgres user=postgres
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
unix_socket_dir =
auth_type = scram-sha-256
auth_file = {self.workdir}/userlist.txt
pool_mode = transaction
default_pool_size = {self.pool_size}
max_client_conn = {self.max_client_conn}
server_reset_query =
ignore_startup_parameters = extra_float_digits
pidfile = {self.workdir}/pgbouncer.pid
logfile = {self.workdir}/pgbouncer.log
""",
        )
        return ini

    def start(self) -> LocalPgBouncer:
        ini = self._write_config()
        user: list[str] = []
        if hasattr(os, "geteuid") and os.geteuid() == 0:  # pgbouncer refuses to run as root
            import pwd

            from workbench.local.postgres import _RUN_AS

            entry = pwd.getpwnam(_RUN_AS)  # the stand-in's own service user; the folder stays private to it
            user = ["-u", _RUN_AS]
            os.chown(self.workdir, entry.pw_uid, entry.pw_gid, follow_symlinks=False)
            for f in self.workdir.iterdir():
                os.chown(f, entry.pw_uid, entry.pw_gid, follow_symlinks=False)
        res = subprocess.run([self.binary, "-d", *user, str(ini)], capture_output=True, text=True, timeout=30)
        if res.returncode != 0:
            raise RuntimeError(f"pgbouncer did not start: {res.stderr.strip() or res.stdout.strip()}")
        _wait_port(self.port, open_=True)
        return self

    def pid(self) -> int | None:
        try:
            return int((self.workdir / "pgbouncer.pid").read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def stop(self) -> None:
        pid = self.pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            _wait_port(self.port, open_=False)

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop and remove the working folder."""
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> LocalPgBouncer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
