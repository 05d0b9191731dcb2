"""Dev-only pytest plugin: run tests/local/test_extensions.py and test_migration_sets.py against the PostgreSQL 18
cluster of notes/supaext/devpg.py before pg18's stand-in lands. Not used by CI.

    PYTHONPATH=notes/supaext .venv/bin/python -m pytest --noconftest -p devplugin tests/local/test_extensions.py
"""

from __future__ import annotations

import pathlib

import pytest

DATA = pathlib.Path("/tmp/supaext/pg")


class DevStandIn:
    """Just what the tests call: dsn(role, database) (the dev cluster trusts local TCP)."""

    def __init__(self, port: str) -> None:
        self.port = port

    def dsn(self, role: str = "postgres", database: str = "postgres") -> str:
        return f"postgresql://{role}@127.0.0.1:{self.port}/{database}"


@pytest.fixture(scope="session")
def standin() -> DevStandIn:
    conf = (DATA / "postgresql.conf").read_text().splitlines()
    return DevStandIn(next(line.split("=")[1].strip() for line in conf if line.startswith("port = ")))


def pytest_collection_finish(session: pytest.Session) -> None:
    """Until pg18's bootstrap grants the demoted postgres what Supabase grants it, add those grants here."""
    import sys

    for name, module in list(sys.modules.items()):
        if name.endswith("test_migration_sets"):
            module.BOOTSTRAP.append(pathlib.Path(__file__).parent / "demote_postgres.sql")
