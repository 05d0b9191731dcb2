"""Errors of the stand-in's Storage API, in Supabase's shape ``{statusCode, code, error, message}``.

Like Supabase, the HTTP status is 400 unless the error is a 500; the real status is the ``statusCode``
string in the body.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import asyncpg
from starlette.responses import JSONResponse

if TYPE_CHECKING:
    pass


# ---------------------------------------------------------------------------------------------- errors


class StorageApiError(Exception):
    """An error answered as Supabase Storage answers it."""

    def __init__(self, status: int, code: str, message: str, error: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.error = error or code

    def body(self) -> dict[str, str]:
        return {"statusCode": str(self.status), "code": self.code, "error": self.error, "message": self.message}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=500 if self.status == 500 else 400)


def no_such_bucket() -> StorageApiError:
    return StorageApiError(404, "NoSuchBucket", "Bucket not found", "Bucket not found")


def no_such_key() -> StorageApiError:
    return StorageApiError(404, "NoSuchKey", "Object not found", "not_found")


def invalid_key(key: str, why: str = "") -> StorageApiError:
    shown = key if len(key) <= 200 else key[:200] + "..."
    return StorageApiError(400, "InvalidKey", f"Invalid key: {shown}{why}")


def invalid_bucket_name(name: str) -> StorageApiError:
    return StorageApiError(400, "InvalidBucketName", "Bucket name invalid", "Invalid Input")


def access_denied(message: str) -> StorageApiError:
    return StorageApiError(403, "AccessDenied", message or "Access denied", "Unauthorized")


def already_exists() -> StorageApiError:
    return StorageApiError(409, "ResourceAlreadyExists", "The resource already exists", "Duplicate")


def entity_too_large(entity: str = "object") -> StorageApiError:
    return StorageApiError(
        413, "EntityTooLarge", f"The {entity} exceeded the maximum allowed size", "Payload too large"
    )


def invalid_mime_type(mimetype: str) -> StorageApiError:
    return StorageApiError(415, "InvalidMimeType", f"mime type {mimetype} is not supported", "invalid_mime_type")


def invalid_request(message: str) -> StorageApiError:
    return StorageApiError(400, "InvalidRequest", message)


def bad_request(message: str) -> StorageApiError:
    """Request validation failures (Supabase's schema errors)."""
    return StorageApiError(400, "InvalidRequest", message, "Bad Request")


def from_db(exc: asyncpg.PostgresError) -> StorageApiError:
    """Supabase's mapping of PostgreSQL errors (``DBError.fromDBError``)."""
    state = exc.sqlstate
    message = str(exc)
    if state == "42501":
        return access_denied(
            "new row violates row-level security policy" if "row-level security" in message else message
        )
    if state == "23505":
        return already_exists()
    if state == "23503":
        return StorageApiError(404, "InvalidRequest", "The related resource does not exist")
    if state in ("55P03",):
        return StorageApiError(423, "ResourceLocked", "The resource is locked")
    if state == "57014":
        return StorageApiError(544, "DatabaseTimeout", "The connection to the database timed out")
    if state == "22P02":
        return StorageApiError(400, "InvalidParameter", message or "Invalid value format or type conversion failed")
    return StorageApiError(500, "DatabaseError", f"database error, code: {state}")
