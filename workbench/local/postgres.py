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

HBA_CONF = """# workbench local stand-in: every connection proves a generated password (see keys.json)
local   all             all                                     scram-sha-256
host    all             all             127.0.0.1/32            scram-sha-256
host    all             all             ::1/128                 scram-sha-256
local   replication     all                                     scram-sha-256
host    replication     all             127.0.0.1/32            scram-sha-256
host    replication     all             ::1/128                 scram-sha-256
"""


def _check_private_dir(path: Path, owners: set[int], *, create_mode: int | None = None) -> None:
    """Refuse a folder someone else could have planted: it must be a real directory (not a symlink), owned by
    one of ``owners`` and writable by nobody else. Created with ``create_mode`` when missing."""
    import stat

    if create_mode is not None:
        try:
            path.mkdir(mode=create_mode)
            os.chmod(path, create_mode, follow_symlinks=False)
        except FileExistsError:
            pass
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        raise PostgresError(f"{path} does not exist") from None
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise PostgresError(
            f"{path} is not a plain folder (a symlink or a file): someone else may have planted it. "
            "Fix: remove it (check who created it first), or set WORKBENCH_PG_ROOT to a private folder."
        )
    if info.st_uid not in owners or info.st_mode & 0o022:
        raise PostgresError(
            f"{path} is owned by uid {info.st_uid} with mode {oct(info.st_mode & 0o777)}: another account could "
            "control the database files there. Fix: remove it (check who created it first), or set "
            "WORKBENCH_PG_ROOT to a folder only root can write."
        )


def _cluster_dir(location: Path) -> Path:
    """Where the cluster really lives. As root the server runs as the ``pgserver`` user, which must be able
    to traverse every parent folder; private folders (a home, pytest's temp root, which pytest re-privatises
    at every session start) would lock it out. So as root a new cluster lives under a root-owned, traverse-only
    folder (checked before every use, see :meth:`EmbeddedPostgres._prepare_root`) and ``location`` is a symlink
    to it; an existing cluster stays where it is."""
    if location.is_symlink():
        return location.resolve()
    if location.exists() or not _is_root():
        return location
    digest = hashlib.sha1(str(location.resolve()).encode()).hexdigest()[:16]
    return ROOT_CLUSTERS / digest / "pgdata"


def _open_private(path: Path, flags: int = os.O_WRONLY | os.O_APPEND) -> int:
    """Open (creating) ``path`` owner-only without following a symlink planted in its place."""
    fd = os.open(path, flags | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    os.fchmod(fd, 0o600)
    return fd


def _run_as() -> tuple[int, int] | None:
    """(uid, gid) of the ``pgserver`` user when running as root, else None."""
    if not _is_root():
        return None
    import pwd

    entry = pwd.getpwnam(_RUN_AS)
    return entry.pw_uid, entry.pw_gid


def _service_uid() -> set[int]:
    """The ``pgserver`` user's uid, when that user exists yet."""
    import pwd

    try:
        return {pwd.getpwnam(_RUN_AS).pw_uid}
    except KeyError:
        return set()


def postmaster_pid(pgdata: Path) -> tuple[int, int] | None:
    """(pid, port) from ``postmaster.pid`` when that pid is really this cluster's postmaster: a postgres
    process started when the file says (a stale file's pid may now belong to anything)."""
    import psutil

    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
        pid, started, port = int(lines[0]), int(lines[2]), int(lines[3])
    except (OSError, ValueError, IndexError):
        return None
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE or abs(proc.create_time() - started) > 2:
            return None
        if "postgres" not in proc.name() and "postgres" not in " ".join(proc.cmdline()[:1]):
            return None
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    return pid, port


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
        """Run a PostgreSQL tool; as root, as the ``pgserver`` user with its own group only (not root's
        groups), and always with an owner-only umask so every file the server writes is private."""
        cmd = [str(_bin_dir() / tool), *args]
        ids = _run_as()
        return subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            umask=0o077,
            user=ids[0] if ids else None,
            group=ids[1] if ids else None,
            extra_groups=[] if ids else None,
        )

    def _prepare_root(self) -> None:
        """As root, check the cluster's folders are private (nobody else planted them), hand the data
        directory to the ``pgserver`` user without following symlinks, and make the binaries reachable."""
        if not _is_root():
            return
        import stat

        _import_pgserver()
        from pgserver.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

        ensure_user_exists(_RUN_AS)
        ids = _run_as()
        assert ids is not None
        uid, gid = ids
        if self.pgdata.parent.parent == ROOT_CLUSTERS:
            ROOT_CLUSTERS.parent.mkdir(parents=True, exist_ok=True)
            _check_private_dir(ROOT_CLUSTERS, {0}, create_mode=0o711)
            os.chmod(ROOT_CLUSTERS, 0o711, follow_symlinks=False)
            _check_private_dir(self.pgdata.parent, {0, uid}, create_mode=0o700)
            os.chown(self.pgdata.parent, uid, gid, follow_symlinks=False)
            os.chmod(self.pgdata.parent, 0o700, follow_symlinks=False)
        else:
            ensure_prefix_permissions(self.pgdata)
        _check_private_dir(self.pgdata, {0, uid})
        bins = _bin_dir()
        ensure_prefix_permissions(bins)
        read = stat.S_IRGRP | stat.S_IROTH
        ensure_folder_permissions(bins, stat.S_IXGRP | stat.S_IXOTH | read)
        ensure_folder_permissions(bins.parent / "lib", read)
        os.chown(self.pgdata, uid, gid, follow_symlinks=False)
        os.chmod(self.pgdata, 0o700, follow_symlinks=False)
        self._own_log_file()

    def _own_log_file(self) -> None:
        """Create the log owner-only (never through a planted symlink); as root, hand it to ``pgserver``."""
        fd = _open_private(self.log_file)
        try:
            ids = _run_as()
            if ids is not None:
                os.fchown(fd, *ids)
        finally:
            os.close(fd)

    def initialised(self) -> bool:
        return (self.pgdata / "PG_VERSION").exists()

    def init(self, superuser_password: str) -> bool:
        """Create the cluster if it does not exist, with password (SCRAM) authentication from the first
        start: ``superuser_password`` is the ``postgres`` role's. Returns True when it was created now."""
        if self.initialised():
            return False
        if _is_root() and self.pgdata.parent.parent == ROOT_CLUSTERS:
            ROOT_CLUSTERS.parent.mkdir(parents=True, exist_ok=True)
            _check_private_dir(ROOT_CLUSTERS, {0}, create_mode=0o711)
            owners = {0} | _service_uid()
            _check_private_dir(self.pgdata.parent, owners, create_mode=0o700)
            _check_private_dir(self.pgdata, owners, create_mode=0o700)
        else:
            self.pgdata.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.pgdata.chmod(0o700)
        if self.pgdata != self.location:
            self.location.parent.mkdir(parents=True, exist_ok=True)
            self.location.symlink_to(self.pgdata, target_is_directory=True)
        self._prepare_root()
        pwfile = self.pgdata.parent / f".initdb-pw-{os.getpid()}"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, superuser_password.encode() + b"\n")
            ids = _run_as()
            if ids is not None:
                os.fchown(fd, *ids)
            os.close(fd)
            res = self._run(
                "initdb",
                [
                    "-D",
                    str(self.pgdata),
                    "--auth=scram-sha-256",
                    f"--pwfile={pwfile}",
                    "--encoding=utf8",
                    "--locale=C",
                    "-U",
                    "postgres",
                ],
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if res.returncode != 0:
            raise PostgresError(f"initdb failed for {self.pgdata}:\n{res.stderr.strip()}")
        self.write_hba()
        with open(self.pgdata / "postgresql.conf", "a") as conf:
            conf.write(
                "\n# workbench local stand-in\n"
                "max_connections = 200\n"
                "shared_buffers = 128MB\n"
                "fsync = on\n"
                "jit = off\n"
                "wal_level = logical\n"
                "password_encryption = 'scram-sha-256'\n"
                "log_file_mode = 0600\n"
                "unix_socket_permissions = 0700\n"
            )
        return True

    def trusts_connections(self) -> bool:
        """True for a cluster made before passwords (``trust`` in ``pg_hba.conf``): :meth:`write_hba` fixes it."""
        try:
            hba = (self.pgdata / "pg_hba.conf").read_text()
        except OSError:
            return False
        return any(line.split()[-1:] == ["trust"] for line in hba.splitlines() if not line.lstrip().startswith("#"))

    def write_hba(self) -> None:
        """Password (SCRAM) authentication for every connection, local socket and TCP alike."""
        path = self.pgdata / "pg_hba.conf"
        tmp = self.pgdata / "pg_hba.conf.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, HBA_CONF.encode())
            ids = _run_as()
            if ids is not None:
                os.fchown(fd, *ids)
        finally:
            os.close(fd)
        tmp.replace(path)

    def running_port(self) -> int | None:
        """The port of the live server for this data directory, or None (a stale pid file, whose pid may
        now belong to an unrelated process, counts as none)."""
        found = postmaster_pid(self.pgdata)
        return found[1] if found is not None else None

    def start(self, port: int) -> int:
        """Start the server on ``port`` (or adopt one already running); returns the port in use."""
        live = self.running_port()
        if live is not None:
            return live
        self._prepare_root()
        self._own_log_file()
        self._clear_stale_pidfile()
        opts = f"-h 127.0.0.1 -p {port} -k {self.pgdata} -c log_file_mode=0600"
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
