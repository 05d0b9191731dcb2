"""The stand-in's Storage API (``/storage/v1``): the route table over :mod:`workbench.local.storage_service`.

The API is split along its seams: errors (:mod:`~workbench.local.storage_errors`), key/bucket/MIME rules
(:mod:`~workbench.local.storage_names`), the streaming upload body (:mod:`~workbench.local.storage_upload`),
image rendering (:mod:`~workbench.local.storage_images`) and the handlers
(:mod:`~workbench.local.storage_service`). Any route Supabase Storage has and the stand-in does not is a
404 in Supabase's shape, never a misleading answer from a route that happens to match.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import asyncpg
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from workbench.core.identity import IdentityError
from workbench.local import blobs
from workbench.local.storage_errors import StorageApiError, bad_request, from_db
from workbench.local.storage_names import check_key
from workbench.local.storage_service import Handler, StorageService

if TYPE_CHECKING:
    from workbench.local.api import ApiContext


__all__ = ["StorageApiError", "build_app", "check_key"]


# --------------------------------------------------------------------------------------------- app


def _endpoint(handler: Handler) -> Handler:
    """Errors become Supabase's JSON answers; nothing else (no traceback, no SQL) leaks out."""

    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except StorageApiError as exc:
            return exc.response()
        except asyncpg.PostgresError as exc:
            return from_db(exc).response()
        except IdentityError as exc:  # claims PostgreSQL cannot carry (a NUL, absurd nesting)
            return bad_request(str(exc)).response()
        except ClientDisconnect:
            return Response(status_code=499)

    return endpoint


async def _not_found(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 404
    return JSONResponse(
        {
            "statusCode": str(status),
            "error": "Not Found" if status == 404 else "Method Not Allowed",
            "message": f"Route {request.method}:{request.url.path} not found",
        },
        status_code=status,
    )


async def _internal_error(request: Request, exc: Exception) -> Response:
    return JSONResponse(
        {"statusCode": "500", "code": "InternalError", "error": "Internal", "message": "Internal Server Error"},
        status_code=500,
    )


# The first path segments under /object that name a Storage operation, never a bucket to upload into.
RESERVED_OBJECT_WORDS = frozenset(
    {"list", "list-v2", "move", "copy", "sign", "info", "public", "authenticated", "upload", "s3"}
)


async def _unserved(request: Request) -> Response:
    return await _not_found(request, HTTPException(404))


def build_app(ctx: ApiContext) -> Starlette:
    """The Storage API as Starlette routes (mounted at ``/storage/v1`` by :mod:`workbench.local.api`)."""
    s = StorageService(ctx)
    blobs.objects_dir(ctx.storage_dir)
    blobs.sweep_partials(ctx.storage_dir)
    obj = "/object/{bucket}/{path:path}"

    def r(path: str, handler: Handler, methods: list[str]) -> Route:
        return Route(path, _endpoint(handler), methods=methods)

    routes = [
        r("/bucket", s.list_buckets, ["GET"]),
        r("/bucket/", s.list_buckets, ["GET"]),
        r("/bucket", s.create_bucket, ["POST"]),
        r("/bucket/", s.create_bucket, ["POST"]),
        r("/bucket/{bucket}/empty", s.empty_bucket, ["POST"]),
        r("/bucket/{bucket}", s.get_bucket, ["GET"]),
        r("/bucket/{bucket}", s.update_bucket, ["PUT"]),
        r("/bucket/{bucket}", s.delete_bucket, ["DELETE"]),
        r("/object/list/{bucket}", s.list_objects, ["POST"]),
        r("/object/list-v2/{bucket}", s.list_objects_v2, ["POST"]),
        r("/render/image/public/{bucket}/{path:path}", s.render_public, ["GET"]),
        r("/render/image/authenticated/{bucket}/{path:path}", s.render_authenticated, ["GET"]),
        r("/render/image/sign/{bucket}/{path:path}", s.render_signed, ["GET"]),
        r("/object/move", s.move_object, ["POST"]),
        r("/object/copy", s.copy_object, ["POST"]),
        r("/object/sign/{bucket}", s.sign_urls, ["POST"]),
        r("/object/sign/{bucket}/{path:path}", s.sign_url, ["POST"]),
        r("/object/sign/{bucket}/{path:path}", s.signed_download, ["GET"]),
        r("/object/upload/sign/{bucket}/{path:path}", s.sign_upload_url, ["POST"]),
        r("/object/upload/sign/{bucket}/{path:path}", s.signed_upload, ["PUT"]),
        r("/object/info/public/{bucket}/{path:path}", s.info_public, ["GET"]),
        r("/object/info/authenticated/{bucket}/{path:path}", s.info_authenticated, ["GET"]),
        r("/object/info/{bucket}/{path:path}", s.info_default, ["GET"]),
        r("/object/public/{bucket}/{path:path}", s.download_public, ["GET"]),
        r("/object/authenticated/{bucket}/{path:path}", s.download_authenticated, ["GET"]),
        r("/object/{bucket}", s.remove_objects, ["DELETE"]),
        # Routes Supabase has under /object that the stand-in does not serve: a 404, not an upload.
        *(r(f"/object/{word}/{{rest:path}}", _unserved, ["POST", "PUT"]) for word in sorted(RESERVED_OBJECT_WORDS)),
        r(obj, s.upload, ["POST", "PUT"]),
        r(obj, s.download_default, ["GET"]),
        r(obj, s.remove_object, ["DELETE"]),
    ]
    return Starlette(
        routes=routes,
        exception_handlers={404: _not_found, 405: _not_found, Exception: _internal_error},
    )
