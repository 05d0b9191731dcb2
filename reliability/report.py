"""Run the reliability suite and print its figures table: ``python -m reliability.report``.

``--write`` also saves the table to ``reliability/README-figures.md``; ``--soak-minutes N`` adds a soak of
N minutes (``python -m reliability.soak``) to the table. Extra arguments after ``--`` go to pytest.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reliability.figures import ENV_FILE, Figures

ROOT = Path(__file__).resolve().parents[1]
SUITE = "tests/reliability"
OUTPUT = ROOT / "reliability" / "README-figures.md"

# Bugs this suite found in the workbench; each was fixed, and the test that caught it now guards it.
FINDINGS = [
    "`%%sbquery` without `--write` ran `COPY ... TO PROGRAM` / `TO 'file'` (a shell command, which could write back "
    "through psql): cells now refuse COPY (`test_read_only.py`).",
    "Session advisory locks and `PREPARE`d statements outlived a read-only cell on the pooled / PgBouncer server "
    "connection: PREPARE/EXECUTE/DEALLOCATE refused, every cell ends with `reset all; select "
    "pg_advisory_unlock_all()` in the same message (`test_read_only.py`).",
    "The default result cap counted rows only (400 rows of 1 MB were held whole): a byte budget now stops near "
    "200 MB and says how to get more (`test_bad_input.py`).",
    "Pooler users `postgres.` / `.ref` passed the settings check and met Supavisor's 'Tenant or user not found' "
    "(`test_bad_input.py`).",
    "A query cancelled while its BEGIN + identity was in flight went back to the pool idle in transaction: the "
    "next checkout failed, and through PgBouncer with one server connection everyone stalled until "
    "query_wait_timeout; a cancelled query's connection is now closed (`test_identity_leaks.py`).",
    "With the Storage API down, `workbench.storage` raised httpx's raw ConnectError; it now says what to start "
    "(`test_faults_survived.py`).",
    '`--claims \'{"role": "service_role"}\'` switched the database role but the footer, `%sbwhoami` and '
    "'Now running as' still named the user; the label now shows the role (`test_bad_input.py`).",
]


@dataclass
class FileResult:
    passed: int = 0
    failed: int = 0
    xfailed: int = 0
    skipped: int = 0
    seconds: float = 0.0


@dataclass
class SuiteResult:
    files: dict[str, FileResult] = field(default_factory=lambda: defaultdict(FileResult))
    xfail_reasons: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    wall_seconds: float = 0.0

    @property
    def total(self) -> FileResult:
        out = FileResult()
        for r in self.files.values():
            out.passed += r.passed
            out.failed += r.failed
            out.xfailed += r.xfailed
            out.skipped += r.skipped
            out.seconds += r.seconds
        return out


def parse_junit(path: Path) -> SuiteResult:
    """Per-file counts and times from pytest's JUnit XML (xfails are ``skipped`` of type ``pytest.xfail``)."""
    result = SuiteResult()
    for case in ET.parse(path).getroot().iter("testcase"):
        name = (case.get("classname") or "").rsplit(".", 1)[-1] + ".py"
        entry = result.files[name]
        entry.seconds += float(case.get("time") or 0)
        skipped = case.find("skipped")
        if case.find("failure") is not None or case.find("error") is not None:
            entry.failed += 1
            result.failures.append(f"{name}::{case.get('name')}")
        elif skipped is not None and skipped.get("type") == "pytest.xfail":
            entry.xfailed += 1
            reason = skipped.get("message", "").removeprefix("reason: ")
            if reason not in result.xfail_reasons:
                result.xfail_reasons.append(reason)
        elif skipped is not None:
            entry.skipped += 1
        else:
            entry.passed += 1
    return result


def run_suite(pytest_args: list[str]) -> tuple[SuiteResult, Figures, int]:
    with tempfile.TemporaryDirectory(prefix="wb-reliability-") as tmp:
        junit = Path(tmp) / "junit.xml"
        figures_file = Path(tmp) / "figures.json"
        env = os.environ | {ENV_FILE: str(figures_file), "XDG_RUNTIME_DIR": os.environ.get("XDG_RUNTIME_DIR", "/tmp")}
        cmd = [
            sys.executable,
            "-m",
            "pytest",
            SUITE,
            "-q",
            "-p",
            "no:cacheprovider",
            f"--junitxml={junit}",
            *pytest_args,
        ]
        started = dt.datetime.now()
        code = subprocess.call(cmd, cwd=ROOT, env=env)
        wall = (dt.datetime.now() - started).total_seconds()
        result = parse_junit(junit) if junit.exists() else SuiteResult()
        result.wall_seconds = wall
        figures = Figures.from_dict(json.loads(figures_file.read_text())) if figures_file.exists() else Figures()
    return result, figures, code


def run_soak(minutes: float) -> dict[str, Any] | None:
    with tempfile.TemporaryDirectory(prefix="wb-soak-report-") as tmp:
        out = Path(tmp) / "soak.json"
        subprocess.call(
            [sys.executable, "-m", "reliability.soak", "--minutes", str(minutes), "--json", str(out)], cwd=ROOT
        )
        return dict(json.loads(out.read_text())) if out.exists() else None


def _n(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def render(result: SuiteResult, figures: Figures, soak: dict[str, Any] | None, commit: str, command: str) -> str:
    c = figures.counts
    f = c.get("faults", {})
    lk = c.get("leaks", {})
    se = c.get("secrets", {})
    ro = c.get("read_only", {})
    bi = c.get("bad_input", {})
    ld = c.get("load", {})
    hyp = sum(v for k, v in bi.items() if k.startswith("hypothesis_"))
    direct = sum(v for k, v in bi.items() if not k.startswith("hypothesis_") and k != "capped_result_rss_growth_mb")
    known = [r for r in result.xfail_reasons if r]
    rows = [
        (
            "Faults survived",
            f"{_n(f.get('survived', 0))} fault scenarios, each followed by a successful next operation or a clear, "
            "classified error (CONNECTION, StorageError); 0 committed rows lost or duplicated; retry helper recovered "
            f"{_n(f.get('retries_recovered', 0))}x",
            "counts + md5 of every public/auth/storage table before/after; object bytes compared",
        ),
        (
            "Identity leaks",
            f"**{_n(lk.get('leaks_found', 0))} leaks** in {_n(lk.get('transactions_checked', 0))} checked transactions "
            f"({_n(lk.get('cancellations', 0))} task cancels, {_n(lk.get('kernel_interrupts', 0))} kernel interrupts, "
            f"{_n(lk.get('errors_inside_transactions', 0))} errors inside transactions, "
            f"{_n(lk.get('nested_sessions', 0))} nested sessions, "
            f"{_n(lk.get('hijack_attempts', 0))} session-wide hijacks); stalls of the one server connection: "
            f"{_n(lk.get('stalls', 0))}",
            "PgBouncer transaction mode, ONE server connection; each transaction checks current_user, auth.uid(), "
            "request.jwt.claim.sub and a claim marker unique to it",
        ),
        (
            "Secrets shown",
            f"**{_n(se.get('secrets_found', 0))} occurrences** in {_n(se.get('texts_scanned', 0))} texts "
            f"({se.get('chars_scanned', 0) / 1e6:,.1f} M characters) from {_n(se.get('notebooks_run', 0))} notebooks "
            f"({_n(se.get('widgets_scanned', 0))} widget states), library reprs and errors, api.log, postgres.log",
            "DB password, JWT secret, service key, ES256 key; raw, URL-encoded, base64, any 16-char piece",
        ),
        (
            "Read-only",
            f"**{_n(ro.get('changes_found', 0))} changes** in {_n(ro.get('attempts', 0))} write attempts without "
            f"--write ({_n(ro.get('refused', 0))} refused, {_n(ro.get('ran_and_rolled_back', 0))} ran and rolled "
            f"back); session state left on the pooled connection: {_n(ro.get('session_state_left', 0))}",
            "snapshot of every public/auth/storage table, sequence and large object after each attempt",
        ),
        (
            "Bad input",
            f"{_n(direct)} hand-written bad inputs + {_n(hyp)} hypothesis examples, each a documented error "
            f"with a fix; 0 data changed; default-cap fetch of 10M rows grew RSS by "
            f"{_n(bi.get('capped_result_rss_growth_mb', 0))} MB",
            "SQL, identities, passwords, pooler URLs, tokens, oversized results, storage names, 60 MB upload",
        ),
        (
            "Load held (suite)",
            f"{_n(ld.get('seconds', 0))} s, {_n(ld.get('operations', 0))} operations, "
            f"{_n(ld.get('errors', 0))} errors, {_n(ld.get('wrong_answers', 0))} wrong answers; growth: connections "
            f"{_n(ld.get('connection_growth', 0))}, tasks {_n(ld.get('task_growth', 0))}, RSS "
            f"{_n(ld.get('rss_growth_mb', 0))} MB, traced {_n(ld.get('traced_growth_mb', 0))} MB",
            "bounds: connections +2, tasks +0, RSS +64 MB, traced +16 MB (reliability/soak.py BOUNDS)",
        ),
    ]
    if soak is not None:
        conn, tasks, rss, traced = soak["connections"], soak["tasks"], soak["rss_mb"], soak["traced_mb"]
        kinds = ", ".join(f"{k} {v:,}" for k, v in sorted(soak["operations"].items()))
        rows.append(
            (
                "Load held (long soak)",
                f"{soak['seconds']:,.0f} s, {soak['total']:,} operations ({kinds}), {len(soak['errors'])} errors, "
                f"{len(soak['wrong_answers'])} wrong answers; connections {conn['start']}→{conn['end']} (peak "
                f"{conn['peak']}), tasks {tasks['start']}→{tasks['end']}, RSS {rss['start']:.0f}→{rss['end']:.0f} MB, "
                f"traced {traced['start']:.1f}→{traced['end']:.1f} MB: "
                f"**{'held' if not soak['violations'] else 'BROKEN: ' + '; '.join(soak['violations'])}**",
                "python -m reliability.soak on a fresh stand-in, PgBouncer pool of 2, same bounds",
            )
        )
    total = result.total
    lines = [
        "## Reliability and security figures",
        "",
        f"Run of {dt.date.today().isoformat()} at commit `{commit}`: `{command}`.",
        "",
        "| Area | Result | How it is measured |",
        "|---|---|---|",
        *(f"| {a} | {b} | {m} |" for a, b, m in rows),
        "",
        f"Tests: {total.passed} passed, {total.failed} failed, {total.xfailed} xfailed (known bugs), "
        f"{total.skipped} skipped; {total.seconds:,.0f} s of test time ({result.wall_seconds:,.0f} s wall clock).",
        "",
        "| Test file | Passed | xfailed | Failed | Seconds |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| `{name}` | {r.passed} | {r.xfailed} | {r.failed} | {r.seconds:,.1f} |"
            for name, r in sorted(result.files.items())
        ),
    ]
    if known:
        lines += ["", "Known bugs (strict xfail tests that will start failing when fixed):", ""]
        lines += [f"- {reason}" for reason in known]
    if result.failures:
        lines += ["", "Failing tests:", ""] + [f"- `{name}`" for name in result.failures]
    notes = [n for section in ("faults",) for n in figures.notes.get(section, [])]
    if notes:
        lines += ["", "Faults, one by one:", ""] + [f"- {n}" for n in notes]
    lines += ["", "Bugs this suite found (each fixed; its test now guards it):", ""] + [f"- {f}" for f in FINDINGS]
    lines += [
        "",
        "Reproduce (from the repository root, in the project's virtualenv, with `pgbouncer` installed):",
        "",
        "```",
        "python -m reliability.report --write --soak-minutes 3  # this file: the suite, then a 3-minute soak",
        "python -m pytest tests/reliability                      # the suite alone (~2-3 minutes)",
        "python -m reliability.soak --minutes 3                  # the long soak alone, on a fresh stand-in",
        "```",
        "",
    ]
    return "\n".join(lines)


def _commit() -> str:
    try:
        return subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True).strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    parser = argparse.ArgumentParser(description="Run tests/reliability and print the figures table.")
    parser.add_argument("--write", action="store_true", help=f"also write {OUTPUT.relative_to(ROOT)}")
    parser.add_argument("--soak-minutes", type=float, default=0, help="add a long soak of this many minutes")
    args = parser.parse_args(argv)
    result, figures, code = run_suite(extra)
    soak = run_soak(args.soak_minutes) if args.soak_minutes > 0 else None
    command = "python -m reliability.report" + (" --write" if args.write else "")
    command += f" --soak-minutes {args.soak_minutes:g}" if soak else ""
    table = render(result, figures, soak, _commit(), command)
    print(table)
    if args.write:
        OUTPUT.write_text(table)
    return code or (1 if soak is not None and soak["violations"] else 0)


if __name__ == "__main__":
    sys.exit(main())
