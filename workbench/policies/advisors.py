"""Database advisors: Supabase's lints ("splinter") run against the connected database.

Each result says which object is wrong and why (``detail``), how bad it is (``level``) and gives the SQL
that fixes it (``remediation``). Nothing here changes the database: the checks only read the catalogs,
inside a read-only transaction that is rolled back, and remediation SQL is only ever shown.

What ``auth_rls_initplan`` is worth is measured by :func:`workbench.policies.initplan.measure_initplan`.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from workbench.core.sqlnames import qualified_name, quote_ident
from workbench.policies.model import POLICY_COMMANDS, PolicyMatrixError

if TYPE_CHECKING:
    import asyncpg
    from sqlalchemy.ext.asyncio import AsyncEngine

Level = Literal["ERROR", "WARN", "INFO"]
LEVELS: tuple[Level, ...] = ("ERROR", "WARN", "INFO")
DOCS = "https://supabase.com/docs/guides/database/database-linter?lint="
# Schemas Supabase and its extensions own: lints look at the user's own schemas only.
SYSTEM_SCHEMAS = (
    "_timescaledb_cache", "_timescaledb_catalog", "_timescaledb_config", "_timescaledb_internal", "auth", "cron",
    "extensions", "graphql", "graphql_public", "information_schema", "net", "pg_catalog", "pg_toast", "pgbouncer",
    "pgmq", "pgroonga", "pgsodium", "pgsodium_masks", "pgtle", "realtime", "repack", "storage", "supabase_functions",
    "supabase_migrations", "tiger", "topology", "vault",
)  # fmt: skip
AUTH_CALL = re.compile(r"\bauth\.(uid|jwt|role|email)\(\)|\bcurrent_setting\(", re.IGNORECASE)


@dataclass
class Lint:
    """One finding, shaped like Supabase's lint results."""

    name: str
    title: str
    level: Level
    facing: str
    categories: list[str]
    description: str
    detail: str
    remediation: str  # SQL to review and run yourself; never applied by the workbench
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def docs_url(self) -> str:
        return DOCS + LINTS[self.name].code if self.name in LINTS else ""

    @property
    def cache_key(self) -> str:
        parts = [self.name] + [str(self.metadata.get(k, "")) for k in ("schema", "name", "policy", "role", "action")]
        return "_".join(p for p in parts if p)


@dataclass
class _Context:
    exposed: list[str]  # schemas the Data API serves
    api_roles: list[str]  # anon / authenticated, those that exist


@dataclass(frozen=True)
class LintSpec:
    name: str
    code: str  # Supabase's lint number, for the docs link
    title: str
    level: Level
    categories: tuple[str, ...]
    description: str
    check: Callable[[asyncpg.Connection, _Context, LintSpec], Awaitable[list[Lint]]]

    def result(self, detail: str, remediation: str, **metadata: Any) -> Lint:
        return Lint(
            name=self.name,
            title=self.title,
            level=self.level,
            facing="EXTERNAL",
            categories=list(self.categories),
            description=self.description,
            detail=detail,
            remediation=remediation.strip() + "\n",
            metadata=metadata,
        )


def _api_privilege_sql(ctx: _Context, oid_expr: str) -> str:
    """SQL true when an API role may select from the relation (false when there are no API roles)."""
    checks = [f"pg_catalog.has_table_privilege('{role}', {oid_expr}, 'SELECT')" for role in ctx.api_roles]
    return "(" + " or ".join(checks) + ")" if checks else "false"


# -- security ------------------------------------------------------------------------------------------
async def _rls_disabled_in_public(conn: asyncpg.Connection, ctx: _Context, spec: LintSpec) -> list[Lint]:
    rows = await conn.fetch(
        f"""select n.nspname, c.relname,
                  array(select r from unnest($2::text[]) r where pg_catalog.has_table_privilege(r, c.oid, 'SELECT'))
                    as readers
           from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
           where c.relkind in ('r', 'p') and not c.relispartition and not c.relrowsecurity
             and n.nspname = any($1::text[]) and {_api_privilege_sql(ctx, "c.oid")}
           order by 1, 2""",
        ctx.exposed,
        ctx.api_roles,
    )
    out = []
    for schema, table, readers in rows:
        who = " and ".join(readers)
        out.append(
            spec.result(
                f"Table `{schema}.{table}` is in the exposed schema `{schema}` with row level security off: "
                f"{who} can read (and with the default grants, change) every row through the Data API.",
                f"""alter table {qualified_name(schema, table)} enable row level security;
-- then add a policy for each thing each role may do, for example:
-- create policy "signed-in users read" on {qualified_name(schema, table)} for select to authenticated using (true);""",
                schema=schema,
                name=table,
                type="table",
                exposed_to=list(readers),
            )
        )
    return out


async def _policy_exists_rls_disabled(conn: asyncpg.Connection, ctx: _Context, spec: LintSpec) -> list[Lint]:
    rows = await conn.fetch(
        """select n.nspname, c.relname, array_agg(p.polname::text order by p.polname) as policies
           from pg_catalog.pg_policy p join pg_catalog.pg_class c on c.oid = p.polrelid
           join pg_catalog.pg_namespace n on n.oid = c.relnamespace
           where not c.relrowsecurity and n.nspname <> all($1::text[])
           group by 1, 2 order by 1, 2""",
        list(SYSTEM_SCHEMAS),
    )
    return [
        spec.result(
            f"Table `{schema}.{table}` has row level security policies ({', '.join(policies)}) but RLS is "
            "disabled, so none of them is applied: grants alone decide who sees what.",
            f"alter table {qualified_name(schema, table)} enable row level security;",
            schema=schema,
            name=table,
            type="table",
            policies=list(policies),
        )
        for schema, table, policies in rows
    ]


async def _rls_enabled_no_policy(conn: asyncpg.Connection, ctx: _Context, spec: LintSpec) -> list[Lint]:
    rows = await conn.fetch(
        """select n.nspname, c.relname from pg_catalog.pg_class c
           join pg_catalog.pg_namespace n on n.oid = c.relnamespace
           where c.relkind in ('r', 'p') and not c.relispartition and c.relrowsecurity
             and n.nspname <> all($1::text[])
             and not exists (select 1 from pg_catalog.pg_policy p where p.polrelid = c.oid)
           order by 1, 2""",
        list(SYSTEM_SCHEMAS),
    )
    return [
        spec.result(
            f"Table `{schema}.{table}` has row level security enabled but no policy: every row is hidden from "
            "anon and authenticated (only roles that bypass RLS, like service_role, see it).",
            f"""-- If only the service role should use this table, this is fine as it is. Otherwise add a policy
-- for each thing each role may do, for example (choose the condition):
-- create policy "owners read their rows" on {qualified_name(schema, table)}
--   for select to authenticated using ((select auth.uid()) = user_id);""",
            schema=schema,
            name=table,
            type="table",
        )
        for schema, table in rows
    ]


async def _function_search_path_mutable(conn: asyncpg.Connection, ctx: _Context, spec: LintSpec) -> list[Lint]:
    rows = await conn.fetch(
        """select n.nspname, p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid) as args,
                  p.prosecdef, case p.prokind when 'p' then 'procedure' else 'function' end as kind
           from pg_catalog.pg_proc p join pg_catalog.pg_namespace n on n.oid = p.pronamespace
           where p.prokind in ('f', 'p') and n.nspname <> all($1::text[])
             and not exists (select 1 from pg_catalog.pg_depend d where d.objid = p.oid and d.deptype = 'e')
             and not exists (select 1 from unnest(coalesce(p.proconfig, '{}')) c where c like 'search_path=%')
           order by 1, 2, 3""",
        list(SYSTEM_SCHEMAS),
    )
    out = []
    for schema, name, args, definer, kind in rows:
        risk = " It is SECURITY DEFINER, so a caller's search_path could make it run their objects." if definer else ""
        out.append(
            spec.result(
                f"{kind.capitalize()} `{schema}.{name}({args})` has a role mutable search_path: names in its body "
                f"resolve through the caller's search_path.{risk}",
                f"""alter {kind} {qualified_name(schema, name)}({args}) set search_path = '';
-- and schema-qualify every table and function its body uses (public.t, auth.uid(), ...)""",
                schema=schema,
                name=name,
                type=kind,
                arguments=args,
                security_definer=definer,
            )
        )
    return out


_SECURITY_INVOKER = "lower(coalesce(c.reloptions::text, '{}'))::text[] && array['security_invoker=1', 'security_invoker=true', 'security_invoker=yes', 'security_invoker=on']"  # noqa: E501


async def _security_definer_view(conn: asyncpg.Connection, ctx: _Context, spec: LintSpec) -> list[Lint]:
    rows = await conn.fetch(
        f"""select n.nspname, c.relname from pg_catalog.pg_class c
           join pg_catalog.pg_namespace n on n.oid = c.relnamespace
           where c.relkind = 'v' and n.nspname = any($1::text[]) and {_api_privilege_sql(ctx, "c.oid")}
             and not ({_SECURITY_INVOKER})
             and not exists (select 1 from pg_catalog.pg_depend d where d.objid = c.oid and d.deptype = 'e')
           order by 1, 2""",
        ctx.exposed,
    )
    return [
        spec.result(
            f"View `{schema}.{view}` is SECURITY DEFINER (the default for views): it reads its tables with the "
            "view owner's rights, so their row level security policies do not apply to the API roles using it.",
            f"alter view {qualified_name(schema, view)} set (security_invoker = true);",
            schema=schema,
            name=view,
            type="view",
        )
        for schema, view in rows
    ]


async def _auth_users_exposed(conn: asyncpg.Connection, ctx: _Context, spec: LintSpec) -> list[Lint]:
    if await conn.fetchval("select to_regclass('auth.users')") is None:
        return []
    rows = await conn.fetch(
        f"""select distinct n.nspname, c.relname, c.relkind::text = 'm' as materialized,
                  array(select r from unnest($2::text[]) r where pg_catalog.has_table_privilege(r, c.oid, 'SELECT'))
                    as readers
           from pg_catalog.pg_depend d join pg_catalog.pg_rewrite rw on rw.oid = d.objid
           join pg_catalog.pg_class c on c.oid = rw.ev_class
           join pg_catalog.pg_namespace n on n.oid = c.relnamespace
           where d.refobjid = 'auth.users'::regclass and d.deptype = 'n' and c.relkind in ('v', 'm')
             and n.nspname = any($1::text[]) and {_api_privilege_sql(ctx, "c.oid")}
             and (c.relkind = 'm' or not ({_SECURITY_INVOKER}))
           order by 1, 2""",
        ctx.exposed,
        ctx.api_roles,
    )
    out = []
    for schema, name, materialized, readers in rows:
        kind = "materialized view" if materialized else "view"
        out.append(
            spec.result(
                f"{kind.capitalize()} `{schema}.{name}` reads auth.users and {' and '.join(readers)} can select "
                "from it through the Data API: emails, phones and metadata of every user may be exposed.",
                f"""revoke select on {qualified_name(schema, name)} from {", ".join(readers)};
-- or keep it readable but subject to the caller's rights (views only):
-- alter view {qualified_name(schema, name)} set (security_invoker = true);""",
                schema=schema,
                name=name,
                type=kind,
                exposed_to=list(readers),
            )
        )
    return out


@dataclass
class _PolicyRow:
    schema: str
    table: str
    name: str
    command: str
    roles: list[str]
    permissive: bool
    using: str | None
    with_check: str | None
    rls_enabled: bool


async def _policy_rows(conn: asyncpg.Connection) -> list[_PolicyRow]:
    rows = await conn.fetch(
        """select n.nspname, c.relname, p.polname, p.polcmd::text as cmd, p.polpermissive, c.relrowsecurity,
                  case when p.polroles = '{0}' then array['public']
                       else array(select r.rolname::text from pg_catalog.pg_roles r
                                  where r.oid = any(p.polroles) order by r.rolname) end as roles,
                  pg_catalog.pg_get_expr(p.polqual, p.polrelid) as using_expr,
                  pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid) as check_expr
           from pg_catalog.pg_policy p join pg_catalog.pg_class c on c.oid = p.polrelid
           join pg_catalog.pg_namespace n on n.oid = c.relnamespace
           where n.nspname <> all($1::text[])
           order by 1, 2, 3""",
        list(SYSTEM_SCHEMAS),
    )
    return [
        _PolicyRow(
            r[0],
            r[1],
            r[2],
            POLICY_COMMANDS[r["cmd"]],
            list(r["roles"]),
            r[4],
            r["using_expr"],
            r["check_expr"],
            r["relrowsecurity"],
        )  # fmt: skip
        for r in rows
    ]


def _alter_policy(p: _PolicyRow, using: str | None, with_check: str | None) -> str:
    parts = [f"alter policy {quote_ident(p.name)} on {qualified_name(p.schema, p.table)}"]
    if using is not None:
        parts.append(f"  using {_parenthesized(using)}")
    if with_check is not None:
        parts.append(f"  with check {_parenthesized(with_check)}")
    return "\n".join(parts) + ";"


async def _rls_references_user_metadata(conn: asyncpg.Connection, ctx: _Context, spec: LintSpec) -> list[Lint]:
    pattern = re.compile(
        r"(auth\.jwt\(\)|current_setting\('request\.jwt\.claims?'[^)]*\)).*user_metadata", re.IGNORECASE | re.DOTALL
    )
    out = []
    for p in await _policy_rows(conn):
        exprs = [e for e in (p.using, p.with_check) if e]
        if not any(pattern.search(e) for e in exprs):
            continue

        def fix(expr: str | None) -> str | None:
            return expr.replace("'user_metadata'", "'app_metadata'") if expr else expr

        out.append(
            spec.result(
                f"Policy `{p.name}` on `{p.schema}.{p.table}` reads `user_metadata` from the JWT. Every user can "
                "change their own user_metadata (supabase.auth.updateUser({data: ...})), so they can make this "
                "policy say yes.",
                f"""-- Keep authorization data in app_metadata (raw_app_meta_data): only the service role can write it.
{_alter_policy(p, fix(p.using), fix(p.with_check))}""",
                schema=p.schema,
                name=p.table,
                type="table",
                policy=p.name,
            )
        )
    return out


# -- performance ---------------------------------------------------------------------------------------
def wrap_auth_calls(expr: str) -> str:
    """``expr`` with every ``auth.uid()``/``auth.jwt()``/``auth.role()``/``auth.email()``/``current_setting(...)``
    call that is not already the whole target of a ``select`` wrapped as ``(select ...)``, so the planner
    evaluates it once per statement (an InitPlan) instead of once per row."""
    out: list[str] = []
    pos = 0
    for start, end in _unwrapped_calls(expr):
        out.append(expr[pos:start])
        out.append(f"(select {expr[start:end]})")
        pos = end
    out.append(expr[pos:])
    return "".join(out)


def _unwrapped_calls(expr: str) -> list[tuple[int, int]]:
    strings = _string_spans(expr)
    found: list[tuple[int, int]] = []
    for m in AUTH_CALL.finditer(expr):
        start = m.start()
        if any(a <= start < b for a, b in strings):
            continue
        end = m.end() if not m.group(0).lower().startswith("current_setting") else _close_paren(expr, m.end() - 1)
        if end is None or _wrapped(expr, start, strings):
            continue
        if found and start < found[-1][1]:
            continue  # inside a call already being wrapped
        found.append((start, end))
    return found


def _string_spans(expr: str) -> list[tuple[int, int]]:
    spans = []
    i = 0
    while i < len(expr):
        if expr[i] == "'":
            j = i + 1
            while j < len(expr):
                if expr[j] == "'" and expr[j + 1 : j + 2] == "'":
                    j += 2
                    continue
                if expr[j] == "'":
                    break
                j += 1
            spans.append((i, j + 1))
            i = j + 1
        else:
            i += 1
    return spans


def _close_paren(expr: str, open_at: int) -> int | None:
    depth = 0
    strings = _string_spans(expr)
    for i in range(open_at, len(expr)):
        if any(a <= i < b for a, b in strings):
            continue
        if expr[i] == "(":
            depth += 1
        elif expr[i] == ")":
            depth -= 1
            if depth == 0:
                return i + 1
    return None


def _enclosing_open(expr: str, pos: int, strings: list[tuple[int, int]]) -> int | None:
    depth = 0
    for i in range(pos - 1, -1, -1):
        if any(a <= i < b for a, b in strings):
            continue
        if expr[i] == ")":
            depth += 1
        elif expr[i] == "(":
            if depth == 0:
                return i
            depth -= 1
    return None


def _wrapped(expr: str, start: int, strings: list[tuple[int, int]]) -> bool:
    """True when the call is the select list of a scalar subquery: ``( SELECT auth.uid() AS uid)``, also
    through parentheses that start right there: ``( SELECT (auth.jwt() ->> 'role'))``."""
    pos = start
    while True:
        opening = _enclosing_open(expr, pos, strings)
        if opening is None:
            return False
        prefix = expr[opening + 1 : pos].strip().lower()
        if prefix == "select":
            return True
        if prefix:
            return False
        pos = opening


async def _auth_rls_initplan(conn: asyncpg.Connection, ctx: _Context, spec: LintSpec) -> list[Lint]:
    out = []
    for p in await _policy_rows(conn):
        if not p.rls_enabled:
            continue
        using = wrap_auth_calls(p.using) if p.using else None
        check = wrap_auth_calls(p.with_check) if p.with_check else None
        if using == p.using and check == p.with_check:
            continue
        calls = sorted({m.group(0) for e in (p.using, p.with_check) if e for m in AUTH_CALL.finditer(e)})
        out.append(
            spec.result(
                f"Policy `{p.name}` on `{p.schema}.{p.table}` calls {', '.join(c + ('...)' if c.endswith('(') else '') for c in calls)} "  # noqa: E501
                "for every row it checks. Wrapped as `(select auth.uid())` the call runs once per statement "
                "(an InitPlan): the same result, often 10-100x faster on large tables.",
                _alter_policy(p, using, check),
                schema=p.schema,
                name=p.table,
                type="table",
                policy=p.name,
            )
        )
    return out


async def _multiple_permissive_policies(conn: asyncpg.Connection, ctx: _Context, spec: LintSpec) -> list[Lint]:
    policies = [p for p in await _policy_rows(conn) if p.permissive]
    bypass = {r[0] for r in await conn.fetch("select rolname from pg_catalog.pg_roles where rolbypassrls or rolsuper")}
    named = {r for p in policies for r in p.roles if r != "public"}
    roles = sorted((named | set(ctx.api_roles)) - bypass)
    actions = ["SELECT", "INSERT", "UPDATE", "DELETE"]
    groups: dict[tuple[str, str, str, str], list[_PolicyRow]] = {}
    for p in policies:
        for role in roles:
            if "public" not in p.roles and role not in p.roles:
                continue
            for action in actions:
                if p.command in (action, "ALL"):
                    groups.setdefault((p.schema, p.table, role, action), []).append(p)
    out = []
    for (schema, table, role, action), members in sorted(groups.items()):
        if len(members) < 2:
            continue
        names = [m.name for m in members]
        out.append(
            spec.result(
                f"Table `{schema}.{table}` has {len(members)} permissive policies for role `{role}` and action "
                f"`{action}` ({', '.join(names)}): PostgreSQL evaluates every one of them for each row.",
                _merge_policies(schema, table, role, action, members),
                schema=schema,
                name=table,
                type="table",
                role=role,
                action=action,
                policies=names,
            )
        )
    return out


def _merge_policies(schema: str, table: str, role: str, action: str, members: list[_PolicyRow]) -> str:
    """One policy equivalent to the permissive ones it replaces (when they are for exactly this action and
    role), else advice."""
    mergeable = all(m.command == action and m.roles == [role] for m in members)
    names = ", ".join(quote_ident(m.name) for m in members)
    if not mergeable:
        return (
            f"-- Policies {names} also cover other actions or roles: rewrite them so that each action and role\n"
            f"-- has one permissive policy whose condition ORs the conditions, e.g. using ((a) or (b))."
        )
    drops = "\n".join(f"drop policy {quote_ident(m.name)} on {qualified_name(schema, table)};" for m in members)
    new_name = quote_ident(" or ".join(m.name for m in members)[:63])
    parts = [
        f"create policy {new_name} on {qualified_name(schema, table)}",
        f"  for {action.lower()} to {quote_ident(role)}",
    ]
    if action != "INSERT":
        parts.append("  using (" + " or ".join(_parenthesized(m.using or "true") for m in members) + ")")
    if action in ("INSERT", "UPDATE"):
        checks = [m.with_check or (m.using if action == "UPDATE" else None) or "true" for m in members]
        parts.append("  with check (" + " or ".join(_parenthesized(c) for c in checks) + ")")
    return f"-- one policy with the same meaning, evaluated once per row:\n{drops}\n" + "\n".join(parts) + ";"


def _parenthesized(expr: str) -> str:
    """``expr`` in parentheses, unless it already is one parenthesized whole."""
    if expr.startswith("(") and _close_paren(expr, 0) == len(expr):
        return expr
    return f"({expr})"


async def _unindexed_foreign_keys(conn: asyncpg.Connection, ctx: _Context, spec: LintSpec) -> list[Lint]:
    rows = await conn.fetch(
        """select n.nspname, c.relname, k.conname,
                  array(select a.attname::text from unnest(k.conkey) with ordinality u(n, i)
                        join pg_catalog.pg_attribute a on a.attrelid = k.conrelid and a.attnum = u.n order by u.i)
                    as cols
           from pg_catalog.pg_constraint k join pg_catalog.pg_class c on c.oid = k.conrelid
           join pg_catalog.pg_namespace n on n.oid = c.relnamespace
           where k.contype = 'f' and n.nspname <> all($1::text[])
             and not exists (select 1 from pg_catalog.pg_depend d where d.objid = c.oid and d.deptype = 'e')
             and not exists (
               select 1 from pg_catalog.pg_index i
               where i.indrelid = k.conrelid and i.indisvalid and i.indpred is null
                 and (i.indkey::int2[])[0:cardinality(k.conkey) - 1] @> k.conkey
                 and (i.indkey::int2[])[0:cardinality(k.conkey) - 1] <@ k.conkey)
           order by 1, 2, 3""",
        list(SYSTEM_SCHEMAS),
    )
    out = []
    for schema, table, fkey, cols in rows:
        index = quote_ident(f"{table}_{'_'.join(cols)}_idx"[:63])
        out.append(
            spec.result(
                f"Foreign key `{fkey}` on `{schema}.{table}` ({', '.join(cols)}) has no index starting with its "
                "columns: joins on it and every delete or key update in the referenced table scan this table.",
                f"create index {index} on {qualified_name(schema, table)} ({', '.join(quote_ident(c) for c in cols)});",
                schema=schema,
                name=table,
                type="table",
                fkey_name=fkey,
                fkey_columns=list(cols),
            )
        )
    return out


async def _duplicate_index(conn: asyncpg.Connection, ctx: _Context, spec: LintSpec) -> list[Lint]:
    rows = await conn.fetch(
        """select n.nspname, c.relname,
                  array_agg(ic.relname::text order by (k.oid is null), i.indisprimary desc, ic.oid) as indexes,
                  array_agg(k.conname::text order by (k.oid is null), i.indisprimary desc, ic.oid) as constraints
           from pg_catalog.pg_index i join pg_catalog.pg_class ic on ic.oid = i.indexrelid
           join pg_catalog.pg_class c on c.oid = i.indrelid
           join pg_catalog.pg_namespace n on n.oid = c.relnamespace
           left join pg_catalog.pg_constraint k on k.conindid = i.indexrelid and k.conrelid = i.indrelid
           where c.relkind in ('r', 'm', 'p') and n.nspname <> all($1::text[])
             and not exists (select 1 from pg_catalog.pg_depend d where d.objid = c.oid and d.deptype = 'e')
           group by n.nspname, c.relname, i.indrelid, ic.relam, i.indkey::text, i.indclass::text,
                    i.indcollation::text, i.indoption::text, i.indisunique, i.indnullsnotdistinct,
                    coalesce(pg_catalog.pg_get_expr(i.indexprs, i.indrelid), ''),
                    coalesce(pg_catalog.pg_get_expr(i.indpred, i.indrelid), '')
           having count(*) > 1
           order by 1, 2, 3""",
        list(SYSTEM_SCHEMAS),
    )
    out = []
    for schema, table, indexes, constraints in rows:
        keep, *extra = indexes
        drops = []
        for index, constraint in zip(extra, constraints[1:], strict=True):
            if constraint is not None:
                drops.append(f"alter table {qualified_name(schema, table)} drop constraint {quote_ident(constraint)};")
            else:
                drops.append(f"drop index {qualified_name(schema, index)};")
        out.append(
            spec.result(
                f"Table `{schema}.{table}` has identical indexes {', '.join(indexes)}: every write maintains each "
                f"of them and none adds anything. Keep `{keep}`.",
                "\n".join(drops),
                schema=schema,
                name=table,
                type="table",
                indexes=list(indexes),
            )
        )
    return out


async def _no_primary_key(conn: asyncpg.Connection, ctx: _Context, spec: LintSpec) -> list[Lint]:
    rows = await conn.fetch(
        """select n.nspname, c.relname,
                  (select ic.relname from pg_catalog.pg_index i join pg_catalog.pg_class ic on ic.oid = i.indexrelid
                   where i.indrelid = c.oid and i.indisunique and i.indisvalid and i.indpred is null
                     and i.indexprs is null and ic.relam = (select oid from pg_catalog.pg_am where amname = 'btree')
                     and not exists (select 1 from unnest(i.indkey::int2[]) u(n) join pg_catalog.pg_attribute a
                                     on a.attrelid = c.oid and a.attnum = u.n where not a.attnotnull)
                   order by i.indnatts, ic.relname limit 1) as candidate
           from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
           where c.relkind in ('r', 'p') and not c.relispartition and n.nspname <> all($1::text[])
             and not exists (select 1 from pg_catalog.pg_depend d where d.objid = c.oid and d.deptype = 'e')
             and not exists (select 1 from pg_catalog.pg_constraint k where k.conrelid = c.oid and k.contype = 'p')
           order by 1, 2""",
        list(SYSTEM_SCHEMAS),
    )
    out = []
    for schema, table, candidate in rows:
        if candidate:
            fix = f"alter table {qualified_name(schema, table)} add primary key using index {quote_ident(candidate)};"
        else:
            target = qualified_name(schema, table)
            fix = f"alter table {target} add column id bigint generated always as identity primary key;"
        out.append(
            spec.result(
                f"Table `{schema}.{table}` has no primary key: rows cannot be addressed one by one (updates and "
                "deletes through the API, ORMs, logical replication and Realtime need one).",
                fix,
                schema=schema,
                name=table,
                type="table",
            )
        )
    return out


LINTS: dict[str, LintSpec] = {
    spec.name: spec
    for spec in [
        LintSpec("rls_disabled_in_public", "0013_rls_disabled_in_public", "RLS Disabled in Public", "ERROR",
                 ("SECURITY",), "Detects tables in an exposed schema that API roles can read while row level "
                 "security is off.", _rls_disabled_in_public),
        LintSpec("policy_exists_rls_disabled", "0007_policy_exists_rls_disabled", "Policy Exists RLS Disabled",
                 "ERROR", ("SECURITY",), "Detects tables that have policies while row level security is disabled.",
                 _policy_exists_rls_disabled),
        LintSpec("security_definer_view", "0010_security_definer_view", "Security Definer View", "ERROR",
                 ("SECURITY",), "Detects views that API roles can read and that bypass the row level security of "
                 "their tables (no security_invoker).", _security_definer_view),
        LintSpec("auth_users_exposed", "0002_auth_users_exposed", "Exposed Auth Users", "ERROR", ("SECURITY",),
                 "Detects views or materialized views that expose auth.users to anon or authenticated.",
                 _auth_users_exposed),
        LintSpec("rls_references_user_metadata", "0015_rls_references_user_metadata",
                 "RLS references user metadata", "ERROR", ("SECURITY",),
                 "Detects policies that trust user_metadata, which end users can edit.",
                 _rls_references_user_metadata),
        LintSpec("function_search_path_mutable", "0011_function_search_path_mutable",
                 "Function Search Path Mutable", "WARN", ("SECURITY",),
                 "Detects functions whose search_path is not fixed.", _function_search_path_mutable),
        LintSpec("auth_rls_initplan", "0003_auth_rls_initplan", "Auth RLS Initialization Plan", "WARN",
                 ("PERFORMANCE",), "Detects policies that re-evaluate auth.<function>() or current_setting() for "
                 "each row.", _auth_rls_initplan),
        LintSpec("multiple_permissive_policies", "0006_multiple_permissive_policies",
                 "Multiple Permissive Policies", "WARN", ("PERFORMANCE",),
                 "Detects several permissive policies for the same table, role and action.",
                 _multiple_permissive_policies),
        LintSpec("duplicate_index", "0009_duplicate_index", "Duplicate Index", "WARN", ("PERFORMANCE",),
                 "Detects identical indexes on one table.", _duplicate_index),
        LintSpec("rls_enabled_no_policy", "0008_rls_enabled_no_policy", "RLS Enabled No Policy", "INFO",
                 ("SECURITY",), "Detects tables with row level security enabled and no policy.",
                 _rls_enabled_no_policy),
        LintSpec("unindexed_foreign_keys", "0001_unindexed_foreign_keys", "Unindexed foreign keys", "INFO",
                 ("PERFORMANCE",), "Detects foreign keys without an index covering their columns.",
                 _unindexed_foreign_keys),
        LintSpec("no_primary_key", "0004_no_primary_key", "No Primary Key", "INFO", ("PERFORMANCE",),
                 "Detects tables without a primary key.", _no_primary_key),
    ]
}  # fmt: skip


async def exposed_schemas(conn: asyncpg.Connection) -> list[str]:
    """The schemas the Data API serves: PostgREST's ``pgrst.db_schemas`` when set, else public."""
    setting = await conn.fetchval("select current_setting('pgrst.db_schemas', true)")
    schemas = [s.strip().strip('"') for s in (setting or "").split(",") if s.strip()]
    return schemas or ["public"]


async def run_advisors(
    conn: asyncpg.Connection,
    *,
    lints: Sequence[str] | None = None,
    schemas: Sequence[str] | None = None,
    levels: Sequence[str] | None = None,
) -> list[Lint]:
    """Run the lints (all by default) and return their findings, ERROR first. ``schemas`` overrides the
    exposed schemas; ``levels`` keeps only those levels."""
    chosen = list(lints) if lints else list(LINTS)
    unknown = [n for n in chosen if n not in LINTS]
    if unknown:
        raise PolicyMatrixError(f"Unknown lint(s) {', '.join(unknown)}; choose from {', '.join(LINTS)}.")
    bad_levels = [lv for lv in levels or [] if lv.upper() not in LEVELS]
    if bad_levels:
        raise PolicyMatrixError(f"Unknown level(s) {', '.join(bad_levels)}; choose from {', '.join(LEVELS)}.")
    wanted_levels = {lv.upper() for lv in levels} if levels else set(LEVELS)
    transaction = conn.transaction(readonly=True)
    await transaction.start()
    try:
        await conn.execute("set local search_path = pg_catalog")  # expressions print schema-qualified
        api_roles = [
            r[0]
            for r in await conn.fetch(
                "select rolname from pg_catalog.pg_roles where rolname = any($1::text[]) order by rolname",
                ["anon", "authenticated"],
            )
        ]
        ctx = _Context(exposed=list(schemas) if schemas else await exposed_schemas(conn), api_roles=api_roles)
        found: list[Lint] = []
        for name in chosen:
            spec = LINTS[name]
            if spec.level in wanted_levels:
                found += await spec.check(conn, ctx, spec)
    finally:
        await transaction.rollback()
    return sorted(found, key=lambda lint: LEVELS.index(lint.level))


async def advisors(engine: AsyncEngine, **kwargs: Any) -> list[Lint]:
    """:func:`run_advisors` on a connection of ``engine``."""
    async with engine.connect() as sa_conn:
        raw = (await sa_conn.get_raw_connection()).driver_connection
        assert raw is not None
        try:
            return await run_advisors(raw, **kwargs)
        finally:
            await sa_conn.rollback()


def group_by_level(lints: Sequence[Lint]) -> dict[str, list[Lint]]:
    """``{"ERROR": [...], "WARN": [...], "INFO": [...]}`` (every level present, maybe empty)."""
    return {level: [lint for lint in lints if lint.level == level] for level in LEVELS}
