"""A :class:`~workbench.policies.impact.PolicyImpact` as text (a terminal), markdown (a pull-request
comment), JSON (tools) or HTML (a notebook), and the allow-file that lets CI pass a reviewed change.

Allow-file: one expected change per line, ``#`` starts a comment, fields separated by ``|``::

    # identity            | table         | operation | before -> after (optional)
    alice@example.com     | public.tasks  | select
    *                     | public.notes  | *
    bob@example.com       | tasks         | delete    | allowed -> filtered

Each field is a shell-style pattern (``*``, ``?``, ``[abc]``); a table without a schema means public.
The optional fourth field matches the outcomes (allowed / filtered / refused / constraint / error, or
``none`` when the table does not exist on that side), not the row counts.
"""

from __future__ import annotations

import fnmatch
import html
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from workbench.policies.model import COLOURS, PolicyMatrixError

if TYPE_CHECKING:
    from workbench.policies.impact import CellChange, PolicyImpact

__all__ = [
    "AllowRule",
    "load_allow_file",
    "parse_allow_rules",
    "render_html",
    "render_json",
    "render_markdown",
    "render_text",
    "unexpected_changes",
]

_OUTCOMES = {"allowed", "filtered", "refused", "constraint", "error", "none", "*"}


# -- allow-file ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AllowRule:
    """One line of an allow-file: the changes it covers."""

    identity: str
    table: str
    operation: str
    before: str = "*"
    after: str = "*"
    line: int = 0

    def covers(self, change: CellChange) -> bool:
        before = change.before.outcome if change.before else "none"
        after = change.after.outcome if change.after else "none"
        return (
            fnmatch.fnmatchcase(change.identity, self.identity)
            and fnmatch.fnmatchcase(change.table, self.table)
            and fnmatch.fnmatchcase(change.operation, self.operation)
            and fnmatch.fnmatchcase(before, self.before)
            and fnmatch.fnmatchcase(after, self.after)
        )


def parse_allow_rules(text: str, source: str = "<allow>") -> list[AllowRule]:
    """Parse allow-file text; a malformed line fails with its number and the expected shape."""
    rules: list[AllowRule] = []
    shape = "IDENTITY | TABLE | OPERATION [| BEFORE -> AFTER]"
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = [f.strip() for f in line.split("|")]
        if len(fields) not in (3, 4) or not all(fields[:3]):
            raise PolicyMatrixError(f"{source}:{number}: expected {shape}, got {raw.strip()!r}.")
        identity, table, operation = fields[:3]
        if "." not in table and table != "*":
            table = f"public.{table}"
        if operation not in ("select", "insert", "update", "delete", "*"):
            raise PolicyMatrixError(
                f"{source}:{number}: unknown operation {operation!r}; use select, insert, update, delete or *."
            )
        before = after = "*"
        if len(fields) == 4:
            parts = [p.strip() for p in fields[3].split("->")]
            if len(parts) != 2 or not set(parts) <= _OUTCOMES:
                raise PolicyMatrixError(
                    f"{source}:{number}: the fourth field is BEFORE -> AFTER with outcomes among "
                    f"{', '.join(sorted(_OUTCOMES))}; got {fields[3]!r}."
                )
            before, after = parts
        rules.append(AllowRule(identity, table, operation, before, after, number))
    return rules


def load_allow_file(path: str | Path) -> list[AllowRule]:
    path = Path(path)
    if not path.is_file():
        raise PolicyMatrixError(f"No allow-file {path}; create it (one expected change per line) or drop --allow.")
    return parse_allow_rules(path.read_text(encoding="utf-8"), str(path))


def unexpected_changes(impact: PolicyImpact, rules: Sequence[AllowRule]) -> list[CellChange]:
    """The changed cells no rule covers: what should fail CI."""
    return [c for c in impact.changes if not any(rule.covers(c) for rule in rules)]


# -- text ----------------------------------------------------------------------------------------------
def _counts(impact: PolicyImpact) -> str:
    gained = sum(c.direction == "gained" for c in impact.changes)
    lost = sum(c.direction == "lost" for c in impact.changes)
    data = sum(c.depends_on_data for c in impact.changes)
    return (
        f"{len(impact.changes)} cell(s) changed: {gained} gained access, {lost} lost access, "
        f"{len(impact.changes) - gained - lost} changed otherwise; {data} depend on data"
    )


def _mode(impact: PolicyImpact) -> str:
    if impact.mode == "copy":
        return "applied to a throwaway copy of the database (dropped after)"
    return "applied inside a transaction that was rolled back"


def render_text(impact: PolicyImpact, unexpected: Sequence[CellChange] | None = None) -> str:
    """A report for a terminal or a CI log."""
    out = [f"Policy impact of {impact.migration} ({_mode(impact)})", f"identities: {', '.join(impact.identities)}"]
    if impact.failure is not None:
        f = impact.failure
        out += [
            "",
            f"MIGRATION FAILED at {f.where}: {f.sqlstate or ''} {f.message}".rstrip(),
            _indent(f.statement, "    "),
            "Nothing was kept: the database is unchanged.",
        ]
        return "\n".join(out) + "\n"
    out.append("")
    if not impact.changes:
        out.append("No access change: every identity can do exactly what it could before.")
    else:
        out.append(_counts(impact))
        flagged = {c.key for c in unexpected} if unexpected is not None else None
        for table in _tables(impact):
            out.append("")
            out.append(table)
            for c in [c for c in impact.changes if c.table == table]:
                mark = "" if flagged is None else ("  NOT ALLOWED" if c.key in flagged else "  (allowed)")
                out.append(f"  {c.operation:<7} {c.identity:<32} {c.summary()}  [{c.direction}]{mark}")
                out.append(f"          because: {'; '.join(c.explained_by)}")
                if c.reads:
                    out.append(f"          depends on data: reads {', '.join(c.reads)}")
    out += _catalog_text(impact)
    if impact.notes:
        out += ["", "notes:"] + [f"  {n}" for n in impact.notes]
    return "\n".join(out) + "\n"


def _catalog_text(impact: PolicyImpact) -> list[str]:
    out: list[str] = []
    if impact.table_changes:
        out += ["", "tables:"] + [f"  {t.table}: {t.change}" for t in impact.table_changes]
    if impact.policy_changes:
        out += ["", "policies:"]
        for p in impact.policy_changes:
            out.append(f'  {_sign(p.change)} {p.change} "{p.name}" on {p.table} ({p.command})')
            if p.change == "altered":
                out += [_indent(p.before_sql or "", "      was: "), _indent(p.after_sql or "", "      now: ")]
    if impact.grant_changes:
        out += ["", "grants:"]
        out += [f"  {_sign(g.change)} {g.privilege} on {g.table} {g.change} for {g.role}" for g in impact.grant_changes]
    if impact.function_changes:
        out += ["", "functions:"]
        out += [
            f"  {_sign(f.change)} {f.function} {f.change}" + (" (security definer)" if f.security_definer else "")
            for f in impact.function_changes
        ]
    if impact.lint_changes:
        out += ["", "advisors:"]
        for lint in impact.lint_changes:
            out.append(f"  {_sign(lint.change)} {lint.change} {lint.level} {lint.name}: {lint.detail}")
    return out


def _sign(change: str) -> str:
    return {"added": "+", "granted": "+", "dropped": "-", "removed": "-", "revoked": "-"}.get(change, "~")


def _indent(text: str, prefix: str) -> str:
    pad = " " * len(prefix)
    return "\n".join((prefix if n == 0 else pad) + line for n, line in enumerate(text.splitlines()))


def _tables(impact: PolicyImpact) -> list[str]:
    seen: list[str] = []
    for c in impact.changes:
        if c.table not in seen:
            seen.append(c.table)
    return seen


# -- markdown ------------------------------------------------------------------------------------------
def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(impact: PolicyImpact, unexpected: Sequence[CellChange] | None = None) -> str:
    """A pull-request comment: a verdict, the changed cells as a table, then what explains them."""
    out = [f"### Policy impact of `{impact.migration}`", ""]
    if impact.failure is not None:
        f = impact.failure
        out += [
            f"**The migration failed** at `{f.where}`: `{f.sqlstate or ''}` {_md(f.message)}",
            "",
            "```sql",
            f.statement,
            "```",
            "",
            "Nothing was kept: the database is unchanged.",
        ]
        return "\n".join(out) + "\n"
    if not impact.changes:
        out.append("**No access change**: every identity can do exactly what it could before.")
    else:
        verdict = "**Access changes**"
        if unexpected is not None:
            verdict += f" ({len(unexpected)} not in the allow-file)" if unexpected else " (all in the allow-file)"
        out += [f"{verdict}: {_counts(impact)}.", ""]
        flagged = {c.key for c in unexpected} if unexpected is not None else set()
        out += [
            "| table | operation | identity | before | after | because | depends on data |",
            "|---|---|---|---|---|---|---|",
        ]
        for c in impact.changes:
            icon = {"gained": "🔓", "lost": "🔒", "changed": "↔"}[c.direction]
            warn = " ⚠️" if c.key in flagged else ""
            out.append(
                f"| `{c.table}` | {c.operation} | {_md(c.identity)} | {c.before.summary() if c.before else '—'} | "
                f"{icon} {c.after.summary() if c.after else '—'}{warn} | {_md('; '.join(c.explained_by))} | "
                f"{_md(', '.join(c.reads)) or '—'} |"
            )
    catalog = _catalog_text(impact)
    if catalog:
        out += ["", "<details><summary>What the migration changed in the catalogs</summary>", "", "```text"]
        out += [line for line in catalog if line] + ["```", "", "</details>"]
    if impact.notes:
        out += [""] + [f"> {_md(n)}" for n in impact.notes]
    out += ["", f"Identities: {', '.join(_md(i) for i in impact.identities)}. {_mode(impact).capitalize()}."]
    return "\n".join(out) + "\n"


# -- JSON / HTML ---------------------------------------------------------------------------------------
def render_json(impact: PolicyImpact, unexpected: Sequence[CellChange] | None = None) -> str:
    data = impact.to_dict()
    if unexpected is not None:
        data["unexpected"] = [{"identity": c.identity, "table": c.table, "operation": c.operation} for c in unexpected]
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def render_html(impact: PolicyImpact) -> str:
    """A static table of the changed cells (the notebook view; the widget adds the toggles)."""
    esc = html.escape
    if impact.failure is not None:
        f = impact.failure
        return (
            f"<div class='wb-policy-impact wb-policy-impact-failed'><b>The migration failed</b> at "
            f"<code>{esc(f.where)}</code>: {esc(f.sqlstate or '')} {esc(f.message)}<pre>{esc(f.statement)}</pre>"
            "Nothing was kept: the database is unchanged.</div>"
        )
    if not impact.changes:
        body = "<p>No access change: every identity can do exactly what it could before.</p>"
    else:
        rows = []
        for c in impact.changes:
            b = c.before.outcome if c.before else "filtered"
            a = c.after.outcome if c.after else "filtered"
            rows.append(
                f"<tr class='wb-impact-{c.direction}'><td>{esc(c.table)}</td><td>{c.operation}</td>"
                f"<td>{esc(c.identity)}</td><td style='background:{COLOURS.get(b, '#fff')}'>"
                f"{esc(c.before.summary() if c.before else '(no table)')}</td>"
                f"<td style='background:{COLOURS.get(a, '#fff')}'>{esc(c.after.summary() if c.after else '(no table)')}"
                f"</td><td>{esc('; '.join(c.explained_by))}</td><td>{esc(', '.join(c.reads))}</td></tr>"
            )
        body = (
            f"<p>{esc(_counts(impact))}</p><table><thead><tr><th>table</th><th>operation</th><th>identity</th>"
            "<th>before</th><th>after</th><th>because</th><th>depends on data</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>"
        )
    catalog = "\n".join(line for line in _catalog_text(impact) if line)
    return (
        f"<div class='wb-policy-impact'><div><b>Policy impact of {esc(impact.migration)}</b> ({esc(_mode(impact))})"
        f"</div>{body}{f'<pre>{esc(catalog)}</pre>' if catalog else ''}</div>"
    )
