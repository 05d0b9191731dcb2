"""The stand-in's HTTP API process: Supabase's Auth (``/auth/v1``) and Storage (``/storage/v1``) for local use.

Run as ``python -m workbench.local.api --dir DATA --port PORT`` by ``LocalStandIn.start``. Each service
lives in its own module and contributes a Starlette app built from one shared :class:`ApiContext`.
"""

from __future__ import annotations

import argparse
import asyncio
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
# Every request body except a Storage upload (streamed to disk under the bucket's own limit) is read into
# memory, so it is bounded: JSON bodies here are small (Storage's largest, 1,000 keys to delete, is ~1 MB).
MAX_BODY_BYTES = 2 * 1024 * 1024
HEADER_TIMEOUT = 10.0  # seconds a client may take to send a request line and headers
READ_TIMEOUT = 60.0  # seconds a request body may stall (uploads keep sending, so they never hit it)
KEEP_ALIVE_TIMEOUT = 5.0  # uvicorn's default: idle keep-alive connections close
_UPLOAD_EXCLUDED = {"list", "list-v2", "move", "copy", "sign", "info", "public", "authenticated"}


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
    return _bound_bodies(_refuse_control_characters(app))


def is_streamed_upload(method: str, path: str) -> bool:
    """Storage uploads stream to disk and enforce the bucket's size limit themselves."""
    if method not in ("POST", "PUT") or not path.startswith("/storage/v1/object/"):
        return False
    first = path[len("/storage/v1/object/") :].split("/", 1)[0]
    if first == "upload":
        return method == "PUT"  # PUT /object/upload/sign/...: a signed upload; POST creates the URL
    return first not in _UPLOAD_EXCLUDED


def too_large_response(path: str, limit: int) -> JSONResponse:
    """413 in the shape the service behind ``path`` uses for its errors."""
    message = f"The request body exceeded the maximum allowed size of {limit} bytes"
    if path.startswith("/auth/"):
        body: dict[str, Any] = {"code": 413, "error_code": "request_too_large", "msg": message}
    else:
        body = {"statusCode": "413", "code": "EntityTooLarge", "error": "Payload too large", "message": message}
    return JSONResponse(body, status_code=413, headers={"Connection": "close"})


def _bound_bodies(app: Any, limit: int = MAX_BODY_BYTES) -> Any:
    """Read at most ``limit`` bytes of a body before the app sees it; more is a 413 and the connection
    closes without reading the rest, so one request cannot grow the process by its body's size."""

    async def bounded(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("type") != "http" or is_streamed_upload(scope.get("method", ""), scope.get("path", "")):
            await app(scope, receive, send)
            return
        path = scope.get("path", "")
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await too_large_response(path, limit)(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await too_large_response(path, limit)(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return dict(await receive())

        await app(scope, replay, send)

    return bounded


def guarded_protocol() -> type:
    """uvicorn's h11 protocol with a header deadline and a body read timeout.

    uvicorn closes idle keep-alive connections, but a client that opens a connection and sends part
    of a request (or nothing) is otherwise held forever; two hundred of them starve the server. A
    watchdog per connection closes one whose request line and headers take longer than
    ``HEADER_TIMEOUT``, or whose body stalls for ``READ_TIMEOUT`` while the server is reading.
    """
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class GuardedH11Protocol(H11Protocol):
        header_timeout = HEADER_TIMEOUT
        read_timeout = READ_TIMEOUT

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            now = self.loop.time()
            self._waiting_since = now
            self._last_data = now
            self._watchdog: asyncio.TimerHandle | None = self.loop.call_later(1.0, self._watch)

        def data_received(self, data: bytes) -> None:
            self._last_data = self.loop.time()
            super().data_received(data)

        def on_response_complete(self) -> None:
            self._waiting_since = self.loop.time()
            super().on_response_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._watchdog is not None:
                self._watchdog.cancel()
                self._watchdog = None
            super().connection_lost(exc)

        def _watch(self) -> None:
            self._watchdog = None
            if self.transport.is_closing():
                return
            now = self.loop.time()
            theirs = self.conn.their_state
            waiting = theirs is h11.IDLE and self.conn.our_state is h11.IDLE
            stalled = theirs is h11.SEND_BODY and not self.flow.read_paused
            if (waiting and now - self._waiting_since > self.header_timeout) or (
                stalled and now - self._last_data > self.read_timeout
            ):
                self.transport.close()
                return
            self._watchdog = self.loop.call_later(1.0, self._watch)

    return GuardedH11Protocol


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
    parser.add_argument("--header-timeout", type=float, default=HEADER_TIMEOUT, help="seconds (default %(default)s)")
    parser.add_argument("--read-timeout", type=float, default=READ_TIMEOUT, help="seconds (default %(default)s)")
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
    protocol = guarded_protocol()
    protocol.header_timeout = args.header_timeout  # type: ignore[attr-defined]
    protocol.read_timeout = args.read_timeout  # type: ignore[attr-defined]
    uvicorn.run(
        build_app(ctx),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        http=protocol,
        timeout_keep_alive=int(KEEP_ALIVE_TIMEOUT),
        h11_max_incomplete_event_size=16 * 1024,
    )


if __name__ == "__main__":
    main()
