"""The measured effect of the auth_rls_initplan fix: 100,000 rows, nothing left behind."""

from __future__ import annotations

import asyncpg
import pytest

from workbench.policies.initplan import measure_initplan
from workbench.policies.matrix import PolicyMatrixError


async def test_initplan_wrap_measured_on_100k_rows(standin) -> None:  # type: ignore[no-untyped-def]
    conn = await asyncpg.connect(standin.dsn())
    try:
        before = await conn.fetchval("select count(*) from pg_namespace where nspname like 'wb_initplan_%'")
        result = await measure_initplan(conn, rows=100_000, repeats=5)
        after = await conn.fetchval("select count(*) from pg_namespace where nspname like 'wb_initplan_%'")
    finally:
        await conn.close()
    assert before == after == 0
    assert result.rows == 100_000 and result.visible_rows == 1_000
    assert len(result.naive_ms) == len(result.wrapped_ms) == 5
    assert "InitPlan" in result.wrapped_plan and "InitPlan" not in result.naive_plan
    assert "current_setting" in result.naive_plan  # auth.uid() inlined and evaluated for each row
    assert result.naive_median > 1.5 * result.wrapped_median, result.summary()
    assert "100,000 rows" in result.summary() and "x faster" in result.summary()
    print(result.summary())


async def test_refuses_bad_sizes_and_non_supabase_databases(standin, empty_db: str) -> None:  # type: ignore[no-untyped-def]
    conn = await asyncpg.connect(standin.dsn())
    try:
        with pytest.raises(PolicyMatrixError, match="at least 1"):
            await measure_initplan(conn, rows=0)
    finally:
        await conn.close()
    conn = await asyncpg.connect(empty_db)  # a plain PostgreSQL database: no auth schema
    try:
        with pytest.raises(PolicyMatrixError, match="no auth.uid"):
            await measure_initplan(conn, rows=10)
    finally:
        await conn.close()
