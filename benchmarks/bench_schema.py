"""Reflection + model generation on synthetic schemas of 100 and 1,000 tables, side by side in one run:

- workbench: a handful of ``pg_catalog`` queries on asyncpg, then :func:`workbench.schema.codegen.generate`;
- sqlacodegen in the same process (its own imports done beforehand): SQLAlchemy's reflection through
  psycopg, then its declarative generator;
- the ``information_schema`` approach: tables, columns, keys and the classic foreign-key join (reflection
  only: it is already the slowest);
- cold command lines: ``workbench models export`` and ``sqlacodegen`` in fresh interpreters.

Each table has about ten columns of mixed types, two foreign keys, a unique constraint, an index and a
comment. Run it with the suite (``python -m benchmarks --suite schema``) or alone::

    python -m benchmarks.bench_schema [--quick] [--dsn postgresql://postgres@127.0.0.1:PORT/postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.common import (
    ROOT,
    Measurement,
    SuiteContext,
    SuiteResult,
    interleaved,
    machine,
    recreate_database,
    render_tables,
    versions,
)

BASELINE = "workbench: reflect + generate (in process)"
SQLACODEGEN = "sqlacodegen: reflect + generate (in process)"
INFO_SCHEMA = "information_schema: reflect only (in process)"
CLI = "workbench models export (cold process)"
SQLACODEGEN_CLI = "sqlacodegen command (cold process)"
PACKAGES = ("sqlalchemy", "sqlacodegen", "asyncpg", "psycopg")

_INFO_QUERIES = {
    "tables": """select table_name, table_type from information_schema.tables
                  where table_schema = $1 order by table_name""",
    "columns": """select table_name, column_name, ordinal_position, data_type, udt_name, is_nullable, column_default,
                         character_maximum_length, numeric_precision, numeric_scale, is_identity,
                         identity_generation, is_generated, generation_expression
                    from information_schema.columns where table_schema = $1 order by table_name, ordinal_position""",
    "keys": """select tc.table_name, tc.constraint_name, tc.constraint_type, kcu.column_name, kcu.ordinal_position
                 from information_schema.table_constraints tc
                 join information_schema.key_column_usage kcu
                   on kcu.constraint_name = tc.constraint_name and kcu.constraint_schema = tc.constraint_schema
                  and kcu.table_name = tc.table_name
                where tc.table_schema = $1 and tc.constraint_type in ('PRIMARY KEY', 'UNIQUE')""",
    "foreign keys": """select tc.table_name, kcu.column_name, ccu.table_schema as foreign_table_schema,
                              ccu.table_name as foreign_table_name, ccu.column_name as foreign_column_name,
                              rc.update_rule, rc.delete_rule
                         from information_schema.table_constraints tc
                         join information_schema.key_column_usage kcu
                           on tc.constraint_name = kcu.constraint_name and tc.table_schema = kcu.table_schema
                         join information_schema.constraint_column_usage ccu
                           on ccu.constraint_name = tc.constraint_name and ccu.table_schema = tc.table_schema
                         join information_schema.referential_constraints rc
                           on rc.constraint_name = tc.constraint_name and rc.constraint_schema = tc.table_schema
                        where tc.constraint_type = 'FOREIGN KEY' and tc.table_schema = $1""",
    "checks": """select tc.table_name, cc.constraint_name, cc.check_clause
                   from information_schema.table_constraints tc
                   join information_schema.check_constraints cc
                     on cc.constraint_name = tc.constraint_name and cc.constraint_schema = tc.constraint_schema
                  where tc.table_schema = $1 and tc.constraint_type = 'CHECK'""",
}


def synthetic_schema(n: int) -> str:
    """``n`` tables of about ten mixed columns, two FKs, a unique constraint, an index and a comment each."""
    parts = []
    for i in range(1, n + 1):
        parent, owner = max(i - 1, 1), max(i // 2, 1)
        fks = (
            f",\n  parent_id bigint references t{parent:04d} (id) on delete set null,\n"
            f"  owner_id bigint not null references t{owner:04d} (id)"
            if i > 1
            else ",\n  parent_id bigint,\n  owner_id bigint not null"
        )
        parts.append(
            f"""create table t{i:04d} (
  id bigint generated always as identity primary key,
  name text not null,
  code varchar(32) unique,
  amount numeric(12, 2) not null default 0,
  ratio double precision,
  active boolean not null default true,
  payload jsonb,
  created_at timestamptz not null default now(),
  day date{fks}
);
create index t{i:04d}_name_idx on t{i:04d} (name);
comment on table t{i:04d} is 'Synthetic table {i} of {n}';"""
        )
    return "\n".join(parts)


async def _prepare(admin_dsn: str, n: int) -> str:
    import asyncpg

    dsn = await recreate_database(admin_dsn, f"bench_schema_{n}")
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(synthetic_schema(n))
        await conn.execute("analyze")
    finally:
        await conn.close()
    return dsn


async def _drop(admin_dsn: str, n: int) -> None:
    import asyncpg

    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f"drop database if exists bench_schema_{n} with (force)")
    finally:
        await conn.close()


async def workbench_in_process(dsn: str, parts: dict[str, list[float]]) -> int:
    from workbench.schema.codegen import generate
    from workbench.schema.reflect import reflect_dsn

    started = time.perf_counter()
    db = await reflect_dsn(dsn, ["public"])
    reflected = time.perf_counter()
    code = generate(db)
    parts.setdefault("reflect", []).append(reflected - started)
    parts.setdefault("generate", []).append(time.perf_counter() - reflected)
    return code.text.count("(Base):")


def sqlacodegen_in_process(dsn: str) -> int:
    from workbench.schema.roundtrip import sqlacodegen_code

    return sqlacodegen_code(dsn, ["public"]).count("(Base):")


async def information_schema(dsn: str, parts: dict[str, list[float]]) -> int:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        rows = 0
        for what, sql in _INFO_QUERIES.items():
            started = time.perf_counter()
            rows += len(await conn.fetch(sql, "public"))
            parts.setdefault(what, []).append(time.perf_counter() - started)
        return rows
    finally:
        await conn.close()


def _cold(cmd: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} failed: {proc.stderr.strip()[-400:]}")
    return elapsed


def _cold_runner(cmd: list[str], env: dict[str, str]) -> Callable[[], float]:
    return lambda: _cold(cmd, env)


def measure(admin_dsn: str, sizes: list[int], runs: int, cold_runs: int, info_runs: int = 3) -> SuiteResult:
    """Build the schemas, time every method on each, drop the schemas."""
    result = SuiteResult()
    loop = asyncio.new_event_loop()
    import sqlacodegen.generators  # noqa: F401 - its import cost (about 1.5 s) is not part of the in-process figure

    from workbench.schema.reflect import reflect_dsn  # noqa: F401 - same for ours (a few ms)

    env = os.environ | {"PYTHONPATH": str(ROOT), "XDG_RUNTIME_DIR": os.environ.get("XDG_RUNTIME_DIR", "/tmp")}
    sqlacodegen_bin = shutil.which("sqlacodegen") or str(Path(sys.executable).parent / "sqlacodegen")
    workdir = Path(tempfile.mkdtemp(prefix="wb-bench-schema-"))
    try:
        for n in sizes:
            dsn = loop.run_until_complete(_prepare(admin_dsn, n))
            table = f"Reflect + generate, {n:,} tables (in process)"
            ours: dict[str, list[float]] = {}
            info: dict[str, list[float]] = {}
            classes: dict[str, int] = {}

            def check(name: str, value: Any, classes: dict[str, int] = classes) -> None:
                classes[name] = value

            times = interleaved(
                {
                    BASELINE: lambda: workbench_in_process(dsn, ours),  # noqa: B023 - called within this iteration
                    SQLACODEGEN: lambda: sqlacodegen_in_process(dsn),  # noqa: B023
                },
                runs,
                loop=loop,
                warmup=1 if runs > 1 else 0,
                check=check,
            )
            # information_schema takes minutes at 1,000 tables: fewer runs, after the others
            times |= interleaved(
                {INFO_SCHEMA: lambda: information_schema(dsn, info)},  # noqa: B023
                min(runs, info_runs),
                loop=loop,
            )
            if classes[BASELINE] != n or classes[SQLACODEGEN] != n:
                raise AssertionError(f"expected {n} classes, got {classes}")
            warm = 1 if runs > 1 else 0
            result.add(
                Measurement(table, BASELINE, "s", times[BASELINE], baseline=True),
                Measurement(table, "  of which reflection (10 pg_catalog queries)", "s", ours["reflect"][warm:]),
                Measurement(table, "  of which generation", "s", ours["generate"][warm:]),
                Measurement(table, SQLACODEGEN, "s", times[SQLACODEGEN]),
                Measurement(table, INFO_SCHEMA, "s", times[INFO_SCHEMA]),
                Measurement(table, "  of which the foreign-key query", "s", info["foreign keys"]),
            )
            cold_table = f"Cold command line, {n:,} tables"
            out = str(workdir / "models.py")
            export = ["models", "export", "--db-url", dsn, "--out", out, "--quiet"]
            cold_methods = {
                CLI: [sys.executable, "-m", "workbench.cli", *export],
                SQLACODEGEN_CLI: [
                    sqlacodegen_bin,
                    "postgresql+psycopg://" + dsn.split("://", 1)[1],
                    "--outfile",
                    str(workdir / "sqlacodegen_models.py"),
                ],
            }
            cold = interleaved({k: _cold_runner(c, env) for k, c in cold_methods.items()}, cold_runs)
            result.add(
                Measurement(cold_table, CLI, "s", cold[CLI], baseline=True),
                Measurement(cold_table, SQLACODEGEN_CLI, "s", cold[SQLACODEGEN_CLI]),
            )
            loop.run_until_complete(_drop(admin_dsn, n))
    finally:
        loop.close()
        shutil.rmtree(workdir, ignore_errors=True)
    result.notes.extend(_notes(result.measurements, sizes))
    return result


def _median(rows: list[Measurement], table: str, method: str) -> float | None:
    found = [m.median for m in rows if m.table == table and m.method == method]
    return found[0] if found else None


def _notes(rows: list[Measurement], sizes: list[int]) -> list[str]:
    n = max(sizes)
    table = f"Reflect + generate, {n:,} tables (in process)"
    ours, theirs = _median(rows, table, BASELINE), _median(rows, table, SQLACODEGEN)
    cold_table = f"Cold command line, {n:,} tables"
    cli, their_cli = _median(rows, cold_table, CLI), _median(rows, cold_table, SQLACODEGEN_CLI)
    notes = []
    if ours and theirs:
        ratio = theirs / ours
        notes.append(
            f"Target: reflect + generate at {n:,} tables at least 6x faster than sqlacodegen in process: "
            f"{ratio:.1f}x ({ours:.3f} s against {theirs:.2f} s) — {'met' if ratio >= 6 else 'missed'}."
        )
    if cli and their_cli:
        notes.append(
            f"Target: under 1 s from a cold command line at {n:,} tables: {cli:.2f} s — "
            f"{'met' if cli < 1 else 'missed'} (sqlacodegen's command: {their_cli:.2f} s)."
        )
    return notes


def run(ctx: SuiteContext) -> SuiteResult:
    """The suite entry point for ``python -m benchmarks``."""
    if ctx.quick:
        return measure(ctx.dsn, [10, 30], runs=1, cold_runs=1)
    return measure(ctx.dsn, [100, 1000], runs=5, cold_runs=3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_schema", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 and 30 tables, one run each (a smoke test)")
    parser.add_argument("--dsn", help="a PostgreSQL superuser DSN (default: a temporary local stand-in)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per method in process (default 5)")
    parser.add_argument("--json", help="write the measurements as JSON here")
    args = parser.parse_args(argv)
    standin = None
    root = None
    dsn = args.dsn
    if dsn is None:
        from workbench.local.standin import LocalStandIn

        root = Path(tempfile.mkdtemp(prefix="wb-bench-"))
        standin = LocalStandIn(root / "standin")
        standin.start(demo=False, api=False)
        dsn = standin.dsn()
    try:
        sizes, runs, cold_runs = ([10, 30], 1, 1) if args.quick else ([100, 1000], args.runs, 3)
        facts = {"Machine": machine(), "Packages": versions(PACKAGES), "PostgreSQL": {"server": _server(dsn)}}
        result = measure(dsn, sizes, runs, cold_runs)
    finally:
        if standin is not None:
            standin.stop()
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)
    for heading, values in facts.items():
        print(f"**{heading}:** " + "; ".join(f"{k} {v}" for k, v in values.items()))
    print()
    print(render_tables(result.measurements))
    for note in result.notes:
        print(f"- {note}")
    if args.json:
        Path(args.json).write_text(json.dumps(json.loads(result.to_json()) | {"facts": facts}, indent=2))
    return 0


def _server(dsn: str) -> str:
    from workbench.notebook.bridge import run_sync

    async def version() -> str:
        import asyncpg

        conn = await asyncpg.connect(dsn)
        try:
            return str(await conn.fetchval("show server_version"))
        finally:
            await conn.close()

    return run_sync(version())


if __name__ == "__main__":
    raise SystemExit(main())
