"""``workbench doctor``: check each part the workbench relies on and say how to fix what is wrong."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from workbench.core.settings import Settings, SettingsError

SUPABASE_ROLES = ("anon", "authenticated", "service_role", "authenticator")


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


async def diagnose(settings: Settings) -> list[Check]:
    """Run every check against ``settings``; never raises for a failing part."""
    import asyncpg
    import httpx

    from workbench.core.errors import redact

    checks: list[Check] = [Check("settings", True, settings.describe())]
    url = settings.database_url().set(drivername="postgresql")
    from workbench.core import tls

    tls_config = settings.tls()  # already validated when the settings loaded
    args = settings.asyncpg_connect_args()
    try:
        conn = await asyncpg.connect(args["dsn"], ssl=args["ssl"], timeout=10, statement_cache_size=0)
    except Exception as exc:  # any failure to connect is the finding
        explained = tls_config.explain(exc)
        if explained is not None:
            what, _, fix = str(explained).partition(" Fix: ")
            checks.append(Check("TLS", False, redact(what), redact(fix)))
            return checks
        checks.append(
            Check(
                "database",
                False,
                redact(f"{type(exc).__name__}: {exc}"),
                "Check the host, port, user and password; for the local stand-in run `workbench local start`.",
            )
        )
        return checks
    try:
        version = await conn.fetchval("show server_version")
        checks.append(Check("database", True, f"PostgreSQL {version} at {url.host}:{url.port}"))
        line = await tls.describe_connection(conn)
        remote = not tls.is_local_host(url.host)
        tls_ok = line != "not encrypted" or not remote
        checks.append(
            Check(
                "TLS",
                tls_ok,
                f"{line}; {tls_config.describe()}",
                "" if tls_ok else "Set SUPABASE_DB_SSLMODE=require (or verify-full with SUPABASE_DB_SSLROOTCERT).",
            )
        )
        rows = await conn.fetch(
            "select rolname, rolbypassrls from pg_roles where rolname = any($1::text[])", list(SUPABASE_ROLES)
        )
        found = {r["rolname"]: r["rolbypassrls"] for r in rows}
        missing = [r for r in SUPABASE_ROLES if r not in found]
        if missing or not found.get("service_role"):
            checks.append(
                Check(
                    "roles",
                    False,
                    f"missing: {', '.join(missing) or '-'}; service_role BYPASSRLS: {found.get('service_role')}",
                    "Run `workbench local reset` (local) or check that this is a Supabase database.",
                )
            )
        else:
            checks.append(Check("roles", True, ", ".join(SUPABASE_ROLES) + " present; service_role bypasses RLS"))
        helpers = await conn.fetchval(
            "select count(*) from pg_proc p join pg_namespace n on n.oid = p.pronamespace "
            "where n.nspname = 'auth' and p.proname in ('uid', 'role', 'email', 'jwt')"
        )
        checks.append(
            Check(
                "auth helpers",
                helpers == 4,
                f"{helpers} of auth.uid/role/email/jwt",
                "" if helpers == 4 else "Run `workbench local reset` to bootstrap the auth schema.",
            )
        )
    finally:
        await conn.close()

    if settings.url:
        base = settings.url.rstrip("/")
        async with httpx.AsyncClient(timeout=5) as client:
            if settings.is_local or (settings.local_dir is not None):
                try:
                    health = (await client.get(f"{base}/health")).json()
                    checks.append(Check("local API", bool(health.get("db")), f"{base} (database pool ok)"))
                except (httpx.HTTPError, ValueError) as exc:
                    checks.append(Check("local API", False, type(exc).__name__, "Run `workbench local start`."))
                    return checks
                key = settings.service_role_key.get_secret_value() if settings.service_role_key else ""
                headers = {"apikey": key, "Authorization": f"Bearer {key}"}
                probes = {"auth service": "/auth/v1/health", "storage service": "/storage/v1/bucket"}
                for name, path in probes.items():
                    try:
                        resp = await client.get(f"{base}{path}", headers=headers)
                        ok = resp.status_code == 200
                        detail = f"GET {path} -> {resp.status_code}"
                    except httpx.HTTPError as exc:
                        ok, detail = False, f"GET {path} -> {type(exc).__name__}"
                    checks.append(Check(name, ok, detail, "" if ok else "Run `workbench local reset`; see api.log."))
            else:
                try:
                    resp = await client.get(f"{base}/auth/v1/health")
                    checks.append(Check("auth API", resp.status_code < 500, f"HTTP {resp.status_code}"))
                except httpx.HTTPError as exc:
                    checks.append(Check("auth API", False, type(exc).__name__, "Check SUPABASE_URL."))
    return checks


def render(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)
    lines = []
    for c in checks:
        mark = "ok  " if c.ok else "FAIL"
        lines.append(f"[{mark}] {c.name:<{width}}  {c.detail}")
        if not c.ok and c.fix:
            lines.append(f"       {'':<{width}}  fix: {c.fix}")
    return "\n".join(lines)


def run_doctor(local_dir: Path | None = None) -> int:
    """Print the table; exit status 0 only when every check passed."""
    from workbench.local.settings import resolve_settings
    from workbench.notebook.bridge import run_sync

    try:
        settings = resolve_settings(**({"local_dir": local_dir} if local_dir else {}))
    except SettingsError as exc:
        print(render([Check("settings", False, str(exc), "Correct the variable named above.")]))
        return 1
    except Exception as exc:
        from workbench.core.errors import redact

        print(render([Check("local stand-in", False, redact(str(exc)), "Run `workbench local start`.")]))
        return 1
    checks = run_sync(diagnose(settings))
    print(render(checks))
    return 0 if all(c.ok for c in checks) else 1
