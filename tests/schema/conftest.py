"""Fixtures for the schema tests: fresh databases, Pagila loaded once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from schema_rig import PAGILA, create_database, run_sql

from workbench.local.standin import BOOTSTRAP_SQL, LocalStandIn
from workbench.notebook.bridge import run_sync


@pytest.fixture()
def fresh_db(standin: LocalStandIn, request: pytest.FixtureRequest) -> Callable[[str], Awaitable[str]]:
    """``await fresh_db("suffix")``: another empty database for this test (targets of round trips)."""
    base = "s_" + "".join(ch if ch.isalnum() else "_" for ch in request.node.name)[:40].lower()

    async def make(suffix: str) -> str:
        return await create_database(standin, f"{base}_{suffix}")

    return make


@pytest.fixture()
def supabase_db(standin: LocalStandIn, request: pytest.FixtureRequest) -> str:
    """A fresh database with only what a new Supabase project has: roles, auth/storage/extensions schemas."""
    name = "sb_" + "".join(ch if ch.isalnum() else "_" for ch in request.node.name)[:50].lower()

    async def make() -> str:
        dsn = await create_database(standin, name)
        await run_sql(dsn, BOOTSTRAP_SQL.read_text())
        return dsn

    return run_sync(make())


@pytest.fixture(scope="session")
def pagila_dsn(standin: LocalStandIn) -> str:
    """Pagila's schema loaded, unpatched, into its own database (read only for tests)."""
    if not PAGILA.exists():
        pytest.fail(f"{PAGILA} is missing: it ships with the repository under data/pagila/; restore the checkout")

    async def load() -> str:
        dsn = await create_database(standin, "pagila_src")
        await run_sql(dsn, PAGILA.read_text())
        return dsn

    return run_sync(load())
