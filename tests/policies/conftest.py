"""Rigs for the policy tests: fresh databases with the Supabase bootstrap, and whole-database fingerprints."""

from __future__ import annotations

import asyncpg
import pytest

from workbench.local.standin import BOOTSTRAP_SQL


@pytest.fixture()
async def supabase_db(empty_db: str) -> str:
    """A fresh database of the stand-in's cluster with Supabase's roles, schemas and auth helpers."""
    conn = await asyncpg.connect(empty_db)
    try:
        await conn.execute(BOOTSTRAP_SQL.read_text())
    finally:
        await conn.close()
    return empty_db


async def fingerprint(dsn: str) -> dict[str, tuple[int, str]]:
    """Row count and checksum of every table, and the state of every sequence: equal before and after
    means nothing was committed."""
    conn = await asyncpg.connect(dsn)
    try:
        tables = await conn.fetch(
            """select format('%I.%I', n.nspname, c.relname)
               from pg_class c join pg_namespace n on n.oid = c.relnamespace
               where c.relkind in ('r', 'p') and n.nspname not in ('pg_catalog', 'information_schema', 'pg_toast')
               order by 1"""
        )
        result: dict[str, tuple[int, str]] = {}
        for (name,) in tables:
            row = await conn.fetchrow(
                f"select count(*), md5(coalesce(string_agg(t::text, ',' order by t::text), '')) from {name} t"
            )
            result[name] = (row[0], row[1])
        for seq in await conn.fetch("select schemaname, sequencename, last_value from pg_sequences"):
            result[f"sequence {seq[0]}.{seq[1]}"] = (seq[2] or 0, "")
        return result
    finally:
        await conn.close()
