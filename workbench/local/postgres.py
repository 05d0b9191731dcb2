"""The embedded PostgreSQL: pgserver's binaries, run on a TCP port so PgBouncer and the API process can reach it.

pgserver's own ``get_server`` only listens on a unix socket and ties the server's life to attached
processes; the workbench needs a server that outlives the kernel, listens on 127.0.0.1, and can be
stopped, killed and recovered explicitly, so it drives ``initdb`` / ``pg_ctl`` from the wheel itself.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

_RUN_AS = "pgserver"  # PostgreSQL refuses to run as root; pgserver's convention is this system user


def _import_pgserver() -> None:
    """Import pgserver quietly: it warns at import time when ``XDG_RUNTIME_DIR`` is unset (we never use it)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver  # noqa: F401


def _bin_dir() -> Path:
    _import_pgserver()
    from pgserver._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def free_port(preferred: int | None = None) -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (``preferred`` when it is free)."""
    if preferred and port_is_free(preferred):
        return preferred
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_is_free(port: int) -> bool:
    """Free to listen on (a port in TIME_WAIT counts as free: PostgreSQL binds with SO_REUSEADDR too)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def pid_alive(pid: int) -> bool:
    """True when ``pid`` runs (a zombie left by a killed process whose parent never reaped it does not)."""
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class PostgresError(RuntimeError):
    """The embedded server could not be initialised, started or stopped; the message carries its log."""


ROOT_CLUSTERS = Path(os.environ.get("WORKBENCH_PG_ROOT", "/var/tmp/workbench-pgserver"))


def _cluster_dir(location: Path) -> Path:
    """Where the cluster really lives. As root the server runs as the ``pgserver`` user, which must be able
    to traverse every parent folder; private folders (a home, pytest's temp root, which pytest re-privatises
    at every session start) would lock it out. So as root a new cluster lives under a world-traversable
    folder and ``location`` is a symlink to it; an existing cluster stays where it is."""
    if location.is_symlink():
        return location.resolve()
    if location.exists() or not _is_root():
        return location
    digest = hashlib.sha1(str(location.resolve()).encode()).hexdigest()[:16]
    return ROOT_CLUSTERS / digest / "pgdata"


@dataclass
class EmbeddedPostgres:
    """One PostgreSQL data directory (``location``, possibly a symlink) and the server that serves it."""

    location: Path
    pgdata: Path = field(init=False)

    def __post_init__(self) -> None:
        self.pgdata = _cluster_dir(self.location)

    @property
    def log_file(self) -> Path:
        return self.pgdata.parent / "postgres.log"

    def destroy(self) -> None:
        """Stop the server and delete the cluster (and the symlink to it)."""
        self.stop()
        if self.location.is_symlink():
            self.location.unlink()
            shutil.rmtree(self.pgdata.parent, ignore_errors=True)
        elif self.location.exists():
            shutil.rmtree(self.location, ignore_errors=True)
        self.pgdata = _cluster_dir(self.location)

    def _run(self, tool: str, args: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
        cmd = [str(_bin_dir() / tool), *args]
        user = _RUN_AS if _is_root() else None
        return subprocess.run(cmd, user=user, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def _prepare_root(self) -> None:
        """As root, hand the data directory to the ``pgserver`` user and make the binaries reachable."""
        if not _is_root():
            return
        import pwd
        import stat

        _import_pgserver()
        from pgserver.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

        ensure_user_exists(_RUN_AS)
        ensure_prefix_permissions(self.pgdata)
        bins = _bin_dir()
        ensure_prefix_permissions(bins)
        read = stat.S_IRGRP | stat.S_IROTH
        ensure_folder_permissions(bins, stat.S_IXGRP | stat.S_IXOTH | read)
        ensure_folder_permissions(bins.parent / "lib", read)
        entry = pwd.getpwnam(_RUN_AS)
        os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)
        if self.log_file.exists():
            os.chown(self.log_file, entry.pw_uid, entry.pw_gid)

    def initialised(self) -> bool:
        return (self.pgdata / "PG_VERSION").exists()

    def init(self) -> bool:
        """Create the cluster if it does not exist. Returns True when it was created now."""
        if self.initialised():
            return False
        self.pgdata.mkdir(parents=True, exist_ok=True)
        self.pgdata.chmod(0o700)
        if self.pgdata != self.location:
            self.location.parent.mkdir(parents=True, exist_ok=True)
            self.location.symlink_to(self.pgdata, target_is_directory=True)
        self._prepare_root()
        res = self._run(
            "initdb",
            ["-D", str(self.pgdata), "--auth=trust", "--encoding=utf8", "--locale=C", "-U", "postgres"],
        )
        if res.returncode != 0:
            raise PostgresError(f"initdb failed for {self.pgdata}:\n{res.stderr.strip()}")
        with open(self.pgdata / "postgresql.conf", "a") as conf:
            conf.write(
                "\n# workbench local stand-in\n"
                "max_connections = 200\n"
                "shared_buffers = 128MB\n"
                "fsync = on\n"
                "jit = off\n"
                "wal_level = logical\n"
            )
        return True

    def running_port(self) -> int | None:
        """The port of the live server for this data directory, or None (a stale pid file counts as none)."""
        pidfile = self.pgdata / "postmaster.pid"
        try:
            lines = pidfile.read_text().splitlines()
        except (FileNotFoundError, PermissionError):
            return None
        if len(lines) < 4:
            return None
        try:
            pid, port = int(lines[0]), int(lines[3])
        except ValueError:
            return None
        return port if pid_alive(pid) else None

    def start(self, port: int) -> int:
        """Start the server on ``port`` (or adopt one already running); returns the port in use."""
        live = self.running_port()
        if live is not None:
            return live
        self._prepare_root()
        self.log_file.touch(exist_ok=True)
        if _is_root():
            import pwd

            entry = pwd.getpwnam(_RUN_AS)
            os.chown(self.log_file, entry.pw_uid, entry.pw_gid)
        self._clear_stale_pidfile()
        opts = f"-h 127.0.0.1 -p {port} -k {self.pgdata}"
        res = self._run(
            "pg_ctl",
            ["-D", str(self.pgdata), "-w", "-t", "60", "-l", str(self.log_file), "-o", opts, "start"],
        )
        if res.returncode != 0 or self.running_port() is None:
            tail = _tail(self.log_file)
            raise PostgresError(
                f"PostgreSQL did not start on port {port} (data {self.pgdata}).\n{res.stderr.strip()}\n{tail}"
            )
        return port

    def _clear_stale_pidfile(self) -> None:
        """After a SIGKILL the pid file names a dead (or zombie) postmaster: remove it, and wait for its
        orphaned backends to notice and exit, since they still hold the shared memory segment."""
        import time

        import psutil

        pidfile = self.pgdata / "postmaster.pid"
        if not pidfile.exists() or self.running_port() is not None:
            return
        pidfile.unlink(missing_ok=True)
        for lock in self.pgdata.glob(".s.PGSQL.*.lock"):  # socket locks naming the dead (zombie) postmaster
            lock.unlink(missing_ok=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            orphans = []
            for proc in psutil.process_iter(["name", "cmdline", "status"]):
                cmd = proc.info.get("cmdline") or []
                if proc.info.get("status") == psutil.STATUS_ZOMBIE:
                    continue
                if proc.info.get("name") == "postgres" and any(str(self.pgdata) in c for c in cmd):
                    orphans.append(proc)
            if not orphans:
                return
            psutil.wait_procs(orphans, timeout=0.5)

    def stop(self, mode: str = "fast") -> bool:
        """Stop the server if it runs. Returns True when a server was stopped."""
        if self.running_port() is None:
            return False
        res = self._run("pg_ctl", ["-D", str(self.pgdata), "-m", mode, "-w", "-t", "60", "stop"])
        if res.returncode != 0 and self.running_port() is not None:
            raise PostgresError(f"pg_ctl stop failed: {res.stderr.strip()}")
        return True


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
