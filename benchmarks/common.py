"""What every suite shares: the context it runs in, measurements, interleaved timing, machine facts, tables.

A suite module ``benchmarks/bench_<name>.py`` exposes ``run(ctx: SuiteContext) -> SuiteResult | list``;
each measurement is a :class:`Measurement` (or a dict with the same keys). The runner starts one process
per suite, so one suite's imports, caches and memory never colour another's figures.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class SuiteContext:
    """Where a suite runs: the stand-in started by the runner, PgBouncer if installed, quick or full."""

    data_dir: str
    dsn: str
    db_port: int
    quick: bool = False
    pgbouncer: str | None = None

    @property
    def db_url(self) -> str:
        """SQLAlchemy URL (asyncpg) of the stand-in's database as ``postgres``."""
        return self.dsn.replace("postgresql://", "postgresql+asyncpg://", 1)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> SuiteContext:
        return cls(**json.loads(text))


@dataclass
class Measurement:
    """One method's runs in one table. Ratios in a table are to its ``baseline`` row."""

    table: str
    method: str
    unit: str  # "s", "ms", "q/s", "round trips", "x"
    values: list[float]
    baseline: bool = False
    higher_is_better: bool = False
    note: str = ""
    cpu: list[float] | None = None  # the client process's CPU seconds per run (all threads), when measured

    @property
    def cpu_median(self) -> float | None:
        return statistics.median(self.cpu) if self.cpu else None

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def low(self) -> float:
        return min(self.values)

    @property
    def high(self) -> float:
        return max(self.values)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_any(cls, item: Measurement | dict[str, Any]) -> Measurement:
        """A measurement from a suite's row (accepts ``median``/``low``/``high`` instead of ``values``)."""
        if isinstance(item, Measurement):
            return item
        known = {f.name for f in fields(cls)}
        data = {k: v for k, v in item.items() if k in known}
        if "values" not in data:
            if "median" not in item:
                raise ValueError(f"a benchmark row needs 'values' or 'median': {sorted(item)}")
            data["values"] = [
                float(item.get("low", item["median"])),
                float(item["median"]),
                float(item.get("high", item["median"])),
            ]
        data.setdefault("unit", "s")
        return cls(**data)


@dataclass
class SuiteResult:
    """What a suite hands back: its measurements and free-text notes (targets met or missed, caveats)."""

    measurements: list[Measurement] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *items: Measurement) -> None:
        self.measurements.extend(items)

    def to_json(self) -> str:
        return json.dumps({"measurements": [m.as_dict() for m in self.measurements], "notes": self.notes})

    @classmethod
    def from_any(cls, value: Any) -> SuiteResult:
        if isinstance(value, SuiteResult):
            return value
        if isinstance(value, dict):
            rows: list[Any] = list(value.get("measurements") or value.get("rows") or [])
            return cls([Measurement.from_any(r) for r in rows], list(value.get("notes") or []))
        return cls([Measurement.from_any(r) for r in value])


class Timings(dict[str, list[float]]):
    """Wall-clock seconds per run by method (it is that dict), and :attr:`cpu`: the client CPU seconds."""

    def __init__(self, wall: dict[str, list[float]], cpu: dict[str, list[float]]) -> None:
        super().__init__(wall)
        self.cpu = cpu


def interleaved(
    methods: dict[str, Callable[[], Any]],
    runs: int,
    *,
    loop: asyncio.AbstractEventLoop | None = None,
    warmup: int = 0,
    check: Callable[[str, Any], None] | None = None,
    verbose: bool = True,
) -> Timings:
    """Time each method ``runs`` times, round-robin (rotating the order each round), so that a busy
    neighbour slows every method alike rather than one. A method returning an awaitable is run on
    ``loop``. ``check(name, result)`` sees each result (to verify row counts) outside the timing.

    Besides wall-clock time, the process's CPU time (every thread: the magics run their queries on a
    background loop) is recorded: on a shared machine it is the steadier measure of the client's work."""
    names = list(methods)
    wall: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    for round_ in range(warmup + runs):
        order = names[round_ % len(names) :] + names[: round_ % len(names)]
        if verbose:
            progress(f"round {round_ + 1} of {warmup + runs}{' (warm-up)' if round_ < warmup else ''}")
        for name in order:
            gc.collect()
            cpu_started, started = time.process_time(), time.perf_counter()
            result = methods[name]()
            if isinstance(result, Awaitable):
                assert loop is not None, f"{name} is async: pass loop="
                result = loop.run_until_complete(result)  # type: ignore[arg-type]
            elapsed, cpu_used = time.perf_counter() - started, time.process_time() - cpu_started
            if check is not None:
                check(name, result)
            del result
            if round_ >= warmup:
                wall[name].append(elapsed)
                cpu[name].append(cpu_used)
    return Timings(wall, cpu)


async def recreate_database(admin_dsn: str, name: str) -> str:
    """Drop (forcing out any session) and create database ``name`` on ``admin_dsn``'s server; its DSN."""
    import asyncpg

    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f"drop database if exists {name} with (force)")
        await conn.execute(f"create database {name}")
    finally:
        await conn.close()
    return admin_dsn.rsplit("/", 1)[0] + f"/{name}"


def progress(message: str) -> None:
    """One line on stderr, so a long suite shows where it is."""
    import sys

    print(f"  {time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


# -- the machine --------------------------------------------------------------------------------------
def machine() -> dict[str, str]:
    """CPU, cores, memory, OS and load: enough to judge whether two figures are comparable."""
    cpu = platform.processor() or platform.machine()
    with_cpuinfo = Path("/proc/cpuinfo")
    if with_cpuinfo.exists():
        for line in with_cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = ""
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        kb = int(meminfo.read_text().split("MemTotal:")[1].split()[0])
        memory = f"{kb / 1024 / 1024:.0f} GiB"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": memory,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "load average (1, 5, 15 min)": load,
    }


def versions(packages: Iterable[str]) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in packages:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def git_commit() -> str:
    try:
        res = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=5
        )
        return res.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# -- rendering ----------------------------------------------------------------------------------------
def _fmt(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value * 1000:,.1f} ms" if value < 1 else f"{value:,.2f} s"
    if unit == "ms":
        return f"{value:,.2f} ms" if value < 10 else f"{value:,.1f} ms"
    if unit == "q/s":
        return f"{value:,.0f} q/s"
    if unit == "round trips":
        return f"{value:g}"
    return f"{value:,.3g} {unit}".strip()


def render_tables(measurements: Sequence[Measurement]) -> str:
    """Markdown: one table per ``table``, rows in insertion order, ratio to the table's baseline row (and
    client-CPU columns when the suite measured them)."""
    tables: dict[str, list[Measurement]] = {}
    for m in measurements:
        tables.setdefault(m.table, []).append(m)
    out: list[str] = []
    for title, rows in tables.items():
        base = next((m for m in rows if m.baseline), None)
        higher = rows[0].higher_is_better
        with_cpu = any(m.cpu for m in rows)
        head = f"| method | median | min – max | runs | ratio{' (higher is better)' if higher else ''} |"
        rule = "|---|---:|---:|---:|---:|"
        if with_cpu:
            head += " client CPU | CPU ratio |"
            rule += "---:|---:|"
        out += [f"#### {title}", "", head, rule]
        for m in rows:
            spread = "–" if m.low == m.high else f"{_fmt(m.low, m.unit)} – {_fmt(m.high, m.unit)}"
            method = f"{m.method} ({m.note})" if m.note else m.method
            line = f"| {method} | {_fmt(m.median, m.unit)} | {spread} | {len(m.values)} | {_ratio(m, base, False)} |"
            if with_cpu:
                cpu = m.cpu_median
                line += f" {'' if cpu is None else _fmt(cpu, m.unit)} | {_ratio(m, base, True)} |"
            out.append(line)
        out.append("")
    return "\n".join(out)


def _ratio(m: Measurement, base: Measurement | None, cpu: bool) -> str:
    if base is None:
        return ""
    mine, theirs = (m.cpu_median, base.cpu_median) if cpu else (m.median, base.median)
    if mine is None or not theirs:
        return ""
    return "1.00 (baseline)" if m is base else f"{mine / theirs:.2f}"


def ratio(
    measurements: Sequence[Measurement], table: str, method: str, baseline: str, cpu: bool = False
) -> float | None:
    """median(method) / median(baseline) in ``table`` (wall clock, or client CPU), or None when missing."""
    found = {m.method: m for m in measurements if m.table == table}
    if method not in found or baseline not in found:
        return None
    mine, theirs = (
        (found[method].cpu_median, found[baseline].cpu_median)
        if cpu
        else (found[method].median, found[baseline].median)
    )
    if mine is None or not theirs:
        return None
    return mine / theirs
