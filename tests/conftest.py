"""Shared test rigs: a throwaway local stand-in for the session, PgBouncer in front of it, scratch DBs."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")

from rigs import require_tool  # noqa: E402

from workbench.core.settings import Settings  # noqa: E402
from workbench.local.pgbouncer import LocalPgBouncer  # noqa: E402
from workbench.local.standin import LocalStandIn  # noqa: E402


@pytest.fixture(scope="session")
def standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStandIn]:
    """A real local stand-in (PostgreSQL + Auth/Storage API + demo app) in a temporary data folder."""
    root = tmp_path_factory.mktemp("standin")
    instance = LocalStandIn(root / "local")
    instance.start()
    yield instance
    instance.destroy()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Browser tests last: Playwright's sync API keeps an event loop marked running on the main thread for
    as long as the browser lives, which would break every asyncio test collected after it."""
    items.sort(key=lambda item: "browser" in item.path.parts or item.get_closest_marker("browser") is not None)


@pytest.fixture(scope="session")
def settings(standin: LocalStandIn) -> Settings:
    from workbench.local.settings import standin_settings

    return standin_settings(standin)


@pytest.fixture(scope="session")
def db_url(standin: LocalStandIn) -> str:
    """SQLAlchemy URL of the stand-in's database as the ``postgres`` superuser."""
    return standin.dsn().replace("postgresql://", "postgresql+asyncpg://")


def _create_database(standin: LocalStandIn, name: str) -> str:
    from workbench.notebook.bridge import run_sync

    async def create() -> None:
        import asyncpg

        conn = await asyncpg.connect(standin.dsn())
        try:
            await conn.execute(f'drop database if exists "{name}" with (force)')
            await conn.execute(f'create database "{name}"')
        finally:
            await conn.close()

    run_sync(create())
    return standin.dsn().rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(scope="session")
def pg_dsn(standin: LocalStandIn) -> str:
    """A plain asyncpg DSN to an empty scratch database (superuser) in the stand-in's cluster."""
    return _create_database(standin, "scratch")


@pytest.fixture()
def empty_db(standin: LocalStandIn, request: pytest.FixtureRequest) -> str:
    """A fresh empty database for one test (asyncpg DSN)."""
    name = "t_" + "".join(ch if ch.isalnum() else "_" for ch in request.node.name)[:50].lower()
    return _create_database(standin, name)


@pytest.fixture(scope="session")
def pgbouncer_factory(standin: LocalStandIn) -> Iterator[object]:
    """Start real PgBouncers (transaction mode) in front of the stand-in: ``factory(pool_size=1)``."""
    binary = require_tool("pgbouncer", "needed to test transaction pooling")
    started: list[LocalPgBouncer] = []

    def factory(pool_size: int = 2, max_client_conn: int = 400) -> LocalPgBouncer:
        bouncer = LocalPgBouncer.for_standin(
            standin, pool_size=pool_size, max_client_conn=max_client_conn, binary=binary
        ).start()
        started.append(bouncer)
        return bouncer

    yield factory
    for bouncer in started:
        bouncer.close()


@pytest.fixture(scope="session")
def pgbouncer(pgbouncer_factory) -> LocalPgBouncer:  # type: ignore[no-untyped-def]
    """One shared PgBouncer in transaction mode with a server pool of 2."""
    return pgbouncer_factory(pool_size=2)


@pytest.fixture(scope="session")
def remote_rig(standin: LocalStandIn) -> Iterator[object]:
    """The remote-project rig in front of the session's stand-in: TLS, the two Supavisor-like PgBouncers
    and a latency proxy per endpoint (delay 0 unless a test sets it; tests reset it)."""
    require_tool("pgbouncer", "the remote-project rig runs Supavisor's two modes on PgBouncer")
    from workbench.local.remote_rig import RemoteRig

    rig = RemoteRig(standin=standin).start()
    yield rig
    rig.stop()
