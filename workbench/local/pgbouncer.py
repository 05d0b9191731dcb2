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

from workbench.local.postgres import free_port


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
    """One PgBouncer process (``pool_mode = transaction``) forwarding to ``backend_port``."""

    backend_port: int
    pool_size: int = 2
    max_client_conn: int = 400
    port: int = field(default_factory=free_port)
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="wb-pgbouncer-")))
    binary: str = field(default_factory=find_pgbouncer)

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def url(self) -> str:
        """SQLAlchemy URL (asyncpg driver)."""
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def _write_config(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "userlist.txt").write_text('"postgres" ""\n')
        ini = self.workdir / "pgbouncer.ini"
        ini.write_text(
            f"""[databases]
postgres = host=127.0.0.1 port={self.backend_port} dbname=postgres user=postgres
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
unix_socket_dir =
auth_type = trust
auth_file = {self.workdir}/userlist.txt
pool_mode = transaction
default_pool_size = {self.pool_size}
max_client_conn = {self.max_client_conn}
server_reset_query =
ignore_startup_parameters = extra_float_digits
pidfile = {self.workdir}/pgbouncer.pid
logfile = {self.workdir}/pgbouncer.log
"""
        )
        return ini

    def start(self) -> LocalPgBouncer:
        ini = self._write_config()
        user: list[str] = []
        if hasattr(os, "geteuid") and os.geteuid() == 0:  # pgbouncer refuses to run as root
            user = ["-u", "nobody"]
            os.chmod(self.workdir, 0o777)
            for f in self.workdir.iterdir():
                os.chmod(f, 0o666)
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
