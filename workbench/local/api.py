"""The stand-in's HTTP API process: Supabase's Auth (``/auth/v1``) and Storage (``/storage/v1``) for local use.

Run as ``python -m workbench.local.api --dir DATA --port PORT`` by ``LocalStandIn.start``. Each service
lives in its own module and contributes a Starlette app built from one shared :class:`ApiContext`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from workbench.local.standin import LocalKeys, LocalStandIn

if TYPE_CHECKING:
    import asyncpg

SERVICES = {"/auth/v1": "workbench.local.auth_api", "/storage/v1": "workbench.local.storage_api"}
# The role each service logs in as, as on Supabase: neither is a superuser; Storage can only switch into
# the API roles (through authenticator), so a token whose role claim says `postgres` is refused by
# PostgreSQL itself ("permission denied to set role").
SERVICE_ROLES = {"/auth/v1": "supabase_auth_admin", "/storage/v1": "supabase_storage_admin"}


@dataclass
class ApiContext:
    """What every service needs: where data lives, the keys, and a connection pool (set at startup)."""

    data_dir: Path
    dsn: str = field(repr=False)  # carries a password
    keys: LocalKeys = field(repr=False)
    api_url: str
    pool: asyncpg.Pool | None = None
    dsns: dict[str, str] = field(default_factory=dict, repr=False)  # per service prefix: its own login

    @property
    def storage_dir(self) -> Path:
        return self.data_dir / "storage"

    def require_pool(self) -> asyncpg.Pool:
        if self.pool is None:
            raise RuntimeError("the API's database pool is not open yet")
        return self.pool


def build_app(ctx: ApiContext) -> Starlette:
    """The whole API: health plus each service module found (a missing one is reported by /health)."""
    mounts: list[Any] = []
    services: dict[str, str] = {}
    contexts: list[ApiContext] = [ctx]
    for prefix, module_name in SERVICES.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            services[prefix] = "missing"
            continue
        factory: Callable[[ApiContext], Any] = module.build_app
        service_ctx = ctx
        if prefix in ctx.dsns:  # the service gets its own pool, logged in as its own role
            service_ctx = dataclasses.replace(ctx, dsn=ctx.dsns[prefix], dsns={})
            contexts.append(service_ctx)
        mounts.append(Mount(prefix, app=factory(service_ctx)))
        services[prefix] = "ok"

    async def health(request: Request) -> JSONResponse:
        db_ok = False
        if ctx.pool is not None:
            with contextlib.suppress(Exception):
                db_ok = await ctx.pool.fetchval("select true") is True
        return JSONResponse({"status": "ok", "db": db_ok, "services": services}, status_code=200)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        import asyncpg

        try:
            for each in contexts:
                each.pool = await asyncpg.create_pool(each.dsn, min_size=1, max_size=10, statement_cache_size=0)
            yield
        finally:
            for each in contexts:
                if each.pool is not None:
                    await each.pool.close()

    app = Starlette(routes=[Route("/health", health), *mounts], lifespan=lifespan)
    return _refuse_control_characters(app)


def _refuse_control_characters(app: Starlette) -> Any:
    """Routing regexes do not match a decoded newline, so such a path would get a bare 404 from the outer
    app; answer it the way Supabase's Storage does (an invalid key), as JSON."""

    async def guarded(scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope.get("path", "") if scope.get("type") == "http" else ""
        if path and any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in path):
            response = JSONResponse(
                {
                    "statusCode": "400",
                    "code": "InvalidKey",
                    "error": "InvalidKey",
                    "message": "Invalid key: the path contains control characters",
                },
                status_code=400,
            )
            await response(scope, receive, send)
            return
        await app(scope, receive, send)

    return guarded


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Local Supabase Auth/Storage API of the workbench stand-in")
    parser.add_argument("--dir", required=True, type=Path)
    parser.add_argument("--port", required=True, type=int)
    args = parser.parse_args(argv)
    import uvicorn

    os.umask(0o077)  # stored objects and logs: private to the stand-in's owner
    standin = LocalStandIn(args.dir)
    ctx = ApiContext(
        data_dir=standin.data_dir,
        dsn=standin.dsn("authenticator"),  # /health only
        keys=standin.keys(),
        api_url=f"http://127.0.0.1:{args.port}",
        dsns={prefix: standin.dsn(role) for prefix, role in SERVICE_ROLES.items()},
    )
    uvicorn.run(build_app(ctx), host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
