"""Helpers shared by the schema tests (fixtures live in this folder's conftest.py)."""

from __future__ import annotations

import os
from pathlib import Path

from rigs import ROOT

from workbench.local.standin import LocalStandIn

CASES = Path(__file__).parent / "cases"
GOLDEN = Path(__file__).parent / "golden"
PAGILA = ROOT / "data" / "pagila" / "pagila-schema.sql"
UPDATE_GOLDEN = os.environ.get("WORKBENCH_UPDATE_GOLDEN") == "1"


async def create_database(standin: LocalStandIn, name: str) -> str:
    """A fresh empty database in the stand-in's cluster; returns its DSN."""
    import asyncpg

    conn = await asyncpg.connect(standin.dsn())
    try:
        await conn.execute(f'drop database if exists "{name}" with (force)')
        await conn.execute(f'create database "{name}"')
    finally:
        await conn.close()
    return standin.dsn().rsplit("/", 1)[0] + f"/{name}"


async def run_sql(dsn: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()
