"""What the ``auth_rls_initplan`` lint is about, measured: EXPLAIN ANALYZE of the same policy with and
without the ``(select auth.uid())`` wrap on a 100,000-row table.

The table is created in a scratch schema inside a transaction that is rolled back, so it is always gone
afterwards, even if the measurement is interrupted.
"""

from __future__ import annotations

import json
import secrets
import statistics
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from workbench.core.identity import Identity
from workbench.core.impersonation import apply_statement
from workbench.policies.model import PolicyMatrixError

if TYPE_CHECKING:
    import asyncpg


@dataclass
class InitplanMeasurement:
    """EXPLAIN ANALYZE execution times (ms) of one query under the same policy, unwrapped and wrapped."""

    rows: int
    visible_rows: int
    naive_policy: str
    wrapped_policy: str
    naive_ms: list[float]
    wrapped_ms: list[float]
    naive_plan: str
    wrapped_plan: str

    @property
    def naive_median(self) -> float:
        return statistics.median(self.naive_ms)

    @property
    def wrapped_median(self) -> float:
        return statistics.median(self.wrapped_ms)

    @property
    def speedup(self) -> float:
        return self.naive_median / self.wrapped_median if self.wrapped_median else float("inf")

    def summary(self) -> str:
        return (
            f"{self.rows:,} rows, {self.visible_rows:,} visible to the user: using ({self.naive_policy}) "
            f"{self.naive_median:.1f} ms; using ({self.wrapped_policy}) {self.wrapped_median:.1f} ms "
            f"(median of {len(self.naive_ms)}, {self.speedup:.0f}x faster)"
        )


async def measure_initplan(conn: asyncpg.Connection, rows: int = 100_000, repeats: int = 5) -> InitplanMeasurement:
    """Create a ``rows``-row table in a scratch schema, put the policy ``auth.uid() = user_id`` on it, then
    ``(select auth.uid()) = user_id``, and EXPLAIN ANALYZE ``select count(*)`` as a user under each,
    ``repeats`` times, alternating. Everything happens in one transaction that is rolled back."""
    if rows < 1 or repeats < 1:
        raise PolicyMatrixError("rows and repeats must be at least 1.")
    if await conn.fetchval("select to_regprocedure('auth.uid()')") is None:
        raise PolicyMatrixError("This database has no auth.uid() (not a Supabase database?): nothing to measure.")
    schema = f"wb_initplan_{secrets.token_hex(4)}"
    table = f"{schema}.items"
    user = "00000000-0000-4000-8000-000000000001"
    identity = Identity(
        role="authenticated", claims={"sub": user, "role": "authenticated", "iat": int(time.time())}, label="probe"
    )
    policies = {"naive": "auth.uid() = user_id", "wrapped": "(select auth.uid()) = user_id"}
    times: dict[str, list[float]] = {"naive": [], "wrapped": []}
    plans: dict[str, str] = {}
    visible = 0
    transaction = conn.transaction()
    await transaction.start()
    try:
        await conn.execute(
            f"""create schema {schema};
                create table {table} (id bigint primary key, user_id uuid not null, body text not null);
                insert into {table}
                  select g, case when g % 100 = 0 then '{user}'::uuid else gen_random_uuid() end, 'row ' || g
                  from generate_series(1, {int(rows)}) g;
                alter table {table} enable row level security;
                grant usage on schema {schema} to authenticated;
                grant select on {table} to authenticated;
                analyze {table};"""
        )
        for _ in range(repeats):
            for kind, using in policies.items():
                await conn.execute(f"create policy p on {table} for select to authenticated using ({using})")
                await conn.execute("savepoint wb_measure")
                set_sql, set_args = apply_statement(identity)
                await conn.execute(set_sql, *set_args)
                plan = await conn.fetchval(f"explain (analyze, format json) select count(*) from {table}")
                report = (plan if isinstance(plan, list) else json.loads(plan))[0]
                times[kind].append(float(report["Execution Time"]))
                if kind not in plans:
                    text_plan = await conn.fetch(
                        f"explain (analyze, costs off, timing off) select count(*) from {table}"
                    )
                    plans[kind] = "\n".join(r[0] for r in text_plan)
                    visible = int(await conn.fetchval(f"select count(*) from {table}"))
                await conn.execute("rollback to savepoint wb_measure; release savepoint wb_measure")
                await conn.execute(f"drop policy p on {table}")
    finally:
        await transaction.rollback()
    return InitplanMeasurement(
        rows=rows,
        visible_rows=visible,
        naive_policy=policies["naive"],
        wrapped_policy=policies["wrapped"],
        naive_ms=times["naive"],
        wrapped_ms=times["wrapped"],
        naive_plan=plans["naive"],
        wrapped_plan=plans["wrapped"],
    )
