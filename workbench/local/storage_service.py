"""The stand-in's Storage API (``/storage/v1``): what ``storage3`` 2.x sends, answered the way Supabase does.

Metadata lives in ``storage.buckets`` / ``storage.objects``; every metadata query that Supabase runs as the
caller runs here as the caller too (one transaction-local ``set_config`` statement first, see
:mod:`workbench.core.impersonation`), so the policies on those tables decide exactly as on Supabase and the
service key bypasses them. Lookups Supabase makes "as super user" (bucket limits, public buckets, signed
URLs) run as the connection's own role. Bytes live in :mod:`workbench.local.blobs` files named by version
id, never by key, so no key can reach outside the data folder.

Errors have Supabase's shape ``{statusCode, code, error, message}`` and, like Supabase, an HTTP status of
400 unless the error is a 500 (the real status is the ``statusCode`` string in the body).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email.utils
import hashlib
import json
import os
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import asyncpg
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from workbench.backend.tokens import (
    InvalidSignature,
    MalformedToken,
    MissingClaim,
    TokenError,
    TokenExpired,
    TokenVerifier,
    mint,
)
from workbench.core.identity import Identity
from workbench.core.impersonation import apply_statement
from workbench.local import blobs
from workbench.local.storage_images import MAX_SOURCE_BYTES, Transform, render

if TYPE_CHECKING:
    from workbench.local.api import ApiContext

from workbench.local.storage_errors import (
    StorageApiError,
    access_denied,
    already_exists,
    bad_request,
    entity_too_large,
    invalid_mime_type,
    no_such_bucket,
    no_such_key,
)
from workbench.local.storage_names import check_bucket_name, check_key, check_mime_rules, mime_allowed, parse_size_limit
from workbench.local.storage_upload import UploadBody, drain_request

# Supabase CLI's default global upload limit ("50MiB"); a project may raise it (see SETTINGS_FILE).
DEFAULT_FILE_SIZE_LIMIT = 50 * 1024 * 1024
SETTINGS_FILE = "settings.json"  # <data>/storage/settings.json: {"file_size_limit": bytes}
SIGNED_UPLOAD_EXPIRES = 2 * 3600
EMPTY_FOLDER_PLACEHOLDER = ".emptyFolderPlaceholder"
LIST_SORT_COLUMNS = ("name", "updated_at", "created_at", "last_accessed_at")
EMPTY_BATCH = 500
MAX_INT64 = 2**63 - 1
MAX_URL_EXPIRY = 100 * 365 * 24 * 3600
LIST_V2_MAX = 1000

# ------------------------------------------------------------------------------------- small helpers


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _json_value(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _uuid_or_none(value: str | None) -> uuid.UUID | None:
    if not value:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def content_disposition(filename: str) -> str:
    """Supabase's download header: ``attachment; filename=x; filename*=UTF-8''x`` (both percent-encoded)."""
    encoded = quote(filename, safe="")
    return f"attachment; filename={encoded}; filename*=UTF-8''{encoded}"


def _encoded(path: str) -> str:
    """A key as a URL path (``?``, ``#``, spaces and the like percent-encoded; slashes kept)."""
    return quote(path, safe="/")


def bucket_json(row: Mapping[str, Any]) -> dict[str, Any]:
    owner = row["owner_id"] or (str(row["owner"]) if row["owner"] else "")
    return {
        "id": row["id"],
        "name": row["name"],
        "owner": owner,
        "public": bool(row["public"]),
        "type": "STANDARD",
        "file_size_limit": row["file_size_limit"],
        "allowed_mime_types": list(row["allowed_mime_types"]) if row["allowed_mime_types"] is not None else None,
        "created_at": _iso(row["created_at"]),
        "updated_at": _iso(row["updated_at"]),
    }


def object_json(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "bucket_id": row["bucket_id"],
        "name": row["name"],
        "owner": str(row["owner"]) if row["owner"] else None,
        "owner_id": row["owner_id"],
        "id": str(row["id"]),
        "version": row["version"],
        "updated_at": _iso(row["updated_at"]),
        "created_at": _iso(row["created_at"]),
        "last_accessed_at": _iso(row["last_accessed_at"]),
        "metadata": _json_value(row["metadata"]),
        "user_metadata": _json_value(row["user_metadata"]),
    }


def global_file_size_limit(storage_dir: Path) -> int:
    """The project-wide upload limit: ``settings.json`` in the storage folder, else Supabase's 50 MiB."""
    try:
        raw = json.loads((storage_dir / SETTINGS_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return DEFAULT_FILE_SIZE_LIMIT
    value = raw.get("file_size_limit") if isinstance(raw, dict) else None
    return int(value) if isinstance(value, int) and value >= 0 else DEFAULT_FILE_SIZE_LIMIT


# ------------------------------------------------------------------------------------------ callers


@dataclass(frozen=True)
class StorageCaller:
    """Who sent the request: verified claims, or nobody (``claims is None``)."""

    claims: dict[str, Any] | None

    @property
    def authenticated(self) -> bool:
        return self.claims is not None

    @property
    def identity(self) -> Identity:
        return Identity.from_claims(self.claims or {"role": "anon"})

    @property
    def owner(self) -> str | None:
        sub = (self.claims or {}).get("sub")
        return str(sub) if sub else None


# jsonwebtoken's messages, which Supabase Storage passes through.
def _jwt_message(exc: TokenError) -> str:
    if isinstance(exc, TokenExpired):
        return "jwt expired"
    if isinstance(exc, InvalidSignature):
        return "invalid signature"
    if isinstance(exc, MalformedToken):
        return "jwt malformed"
    if isinstance(exc, MissingClaim) and exc.reason.endswith(" exp"):
        return (
            "jwt has no exp claim: the local stand-in refuses tokens that never expire (Supabase accepts "
            "them for the service role); mint the token with an expiry"
        )
    return exc.reason


# ------------------------------------------------------------------------------------------ service


Handler = Callable[[Request], Awaitable[Response]]


class StorageService:
    """The request handlers, sharing one :class:`ApiContext` (pool, keys, data folder)."""

    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx
        keys = ctx.keys
        self.jwt_secret = keys.jwt_secret
        # Callers' tokens: anon/service keys have neither aud nor sub, so only role is required.
        self.verifier = TokenVerifier(
            jwt_secret=keys.jwt_secret,
            jwks_url=f"{ctx.api_url}/auth/v1/.well-known/jwks.json",
            audience=None,
            required_claims=("role",),
            leeway=0,
        )
        with contextlib.suppress(Exception):
            self.verifier.jwks.load({"keys": [keys.es256_jwk]})
        # Signed-URL tokens: {url, iat, exp} signed with the JWT secret, checked without leeway.
        self.url_verifier = TokenVerifier(jwt_secret=keys.jwt_secret, audience=None, required_claims=("url",), leeway=0)

    @property
    def storage_dir(self) -> Path:
        return self.ctx.storage_dir

    # -- plumbing ------------------------------------------------------------------------------------
    async def caller(self, request: Request, *, allow_invalid: bool = False) -> StorageCaller:
        header = request.headers.get("authorization", "")
        token = re.sub(r"^Bearer\s+", "", header, flags=re.IGNORECASE).strip()
        if not token and allow_invalid:
            return StorageCaller(None)
        try:
            if not token:
                raise MalformedToken("jwt must be provided")
            claims = await self.verifier.averify(token)
        except TokenError as exc:
            if allow_invalid:
                return StorageCaller(None)
            message = "jwt must be provided" if not token else _jwt_message(exc)
            raise access_denied(message) from None
        return StorageCaller(claims)

    @contextlib.asynccontextmanager
    async def transaction(self, caller: StorageCaller | None) -> AsyncIterator[asyncpg.Connection]:
        """One transaction as ``caller`` (policies apply), or as the connection's role for ``None``."""
        async with self.ctx.require_pool().acquire() as conn, conn.transaction():
            if caller is not None:
                sql, args = apply_statement(caller.identity)
                await conn.execute(sql, *args)
            yield conn

    async def find_bucket(self, bucket_id: str, caller: StorageCaller | None) -> asyncpg.Record:
        async with self.transaction(caller) as conn:
            row = await conn.fetchrow("select * from storage.buckets where id = $1", bucket_id)
        if row is None:
            raise no_such_bucket()
        return row

    async def bucket_or_none(self, bucket_id: str) -> asyncpg.Record | None:
        async with self.transaction(None) as conn:
            return await conn.fetchrow("select * from storage.buckets where id = $1", bucket_id)

    async def find_object(self, bucket_id: str, name: str, caller: StorageCaller | None) -> asyncpg.Record:
        async with self.transaction(caller) as conn:
            row = await conn.fetchrow(
                "select * from storage.objects where bucket_id = $1 and name = $2", bucket_id, name
            )
        if row is None:
            raise no_such_key()
        return row

    @staticmethod
    async def json_body(request: Request) -> dict[str, Any]:
        raw = await request.body()
        if not raw:
            return {}
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise bad_request("Body is not valid JSON") from None
        except RecursionError:
            raise bad_request("Body is not valid JSON: nested too deeply") from None
        if not isinstance(body, dict):
            raise bad_request("body must be object")
        if _has_nul(body):
            raise bad_request("body must not contain NUL characters (\\u0000): PostgreSQL text cannot hold them")
        return body

    @staticmethod
    def required_str(body: Mapping[str, Any], name: str) -> str:
        value = body.get(name)
        if value is None:
            raise bad_request(f"body must have required property '{name}'")
        if not isinstance(value, str):
            raise bad_request(f"body/{name} must be string")
        return value

    # -- buckets -------------------------------------------------------------------------------------
    async def list_buckets(self, request: Request) -> Response:
        caller = await self.caller(request)
        async with self.transaction(caller) as conn:
            rows = await conn.fetch("select * from storage.buckets order by name")
        return JSONResponse([bucket_json(r) for r in rows])

    async def get_bucket(self, request: Request) -> Response:
        caller = await self.caller(request)
        bucket_id = request.path_params["bucket"]
        return JSONResponse(bucket_json(await self.find_bucket(bucket_id, caller)))

    async def create_bucket(self, request: Request) -> Response:
        caller = await self.caller(request)
        body = await self.json_body(request)
        name = self.required_str(body, "name")
        bucket_id = body.get("id") or name
        if not isinstance(bucket_id, str):
            raise bad_request("body/id must be string")
        check_bucket_name(name)
        check_bucket_name(bucket_id)
        limit = self._bucket_limit(body.get("file_size_limit"))
        rules = check_mime_rules(body.get("allowed_mime_types"))
        public = body.get("public", False)
        if not isinstance(public, bool):
            raise bad_request("body/public must be boolean")
        async with self.transaction(caller) as conn:
            await conn.execute(
                """insert into storage.buckets (id, name, owner, owner_id, public, file_size_limit, allowed_mime_types)
                   values ($1, $2, $3, $4, $5, $6, $7)""",
                bucket_id,
                name,
                _uuid_or_none(caller.owner),
                caller.owner,
                public,
                limit,
                rules,
            )
        return JSONResponse({"name": name})

    def _bucket_limit(self, value: Any) -> int | None:
        limit = parse_size_limit(value)
        if limit is not None and limit > global_file_size_limit(self.storage_dir):
            raise entity_too_large()
        return limit

    async def update_bucket(self, request: Request) -> Response:
        caller = await self.caller(request)
        bucket_id = check_bucket_name(request.path_params["bucket"])
        body = await self.json_body(request)
        changes: dict[str, Any] = {}
        if "public" in body:
            if not isinstance(body["public"], bool):
                raise bad_request("body/public must be boolean")
            changes["public"] = body["public"]
        if "file_size_limit" in body:
            changes["file_size_limit"] = self._bucket_limit(body["file_size_limit"])
        if "allowed_mime_types" in body:
            changes["allowed_mime_types"] = check_mime_rules(body["allowed_mime_types"])
        # Column names come from the fixed set above; every value is a bound parameter.
        sets = ", ".join(f"{col} = ${i}" for i, col in enumerate(changes, start=2))
        sql = f"update storage.buckets set {sets + ', ' if sets else ''}updated_at = now() where id = $1"
        async with self.transaction(caller) as conn:
            status = await conn.execute(sql, bucket_id, *changes.values())
        if status.endswith(" 0"):
            raise no_such_bucket()
        return JSONResponse({"message": "Successfully updated"})

    async def empty_bucket(self, request: Request) -> Response:
        caller = await self.caller(request)
        bucket_id = check_bucket_name(request.path_params["bucket"])
        await self.find_bucket(bucket_id, caller)
        while True:
            async with self.transaction(caller) as conn:
                await conn.execute("select set_config('storage.allow_delete_query', 'true', true)")
                listed = await conn.fetch(
                    "select id, name from storage.objects where bucket_id = $1 limit $2", bucket_id, EMPTY_BATCH
                )
                if not listed:
                    break
                deleted = await conn.fetch(
                    "delete from storage.objects where bucket_id = $1 and id = any($2::uuid[]) returning name, version",
                    bucket_id,
                    [r["id"] for r in listed],
                )
            for row in deleted:
                blobs.delete_blob(self.storage_dir, row["version"])
            if len(deleted) != len(listed):
                gone = {r["name"] for r in deleted}
                remaining = [r["name"] for r in listed if r["name"] not in gone]
                raise access_denied(
                    f"Cannot delete: {' ,'.join(remaining)}, you may have SELECT but not DELETE permissions"
                )
        return JSONResponse({"message": "Successfully emptied"})

    async def delete_bucket(self, request: Request) -> Response:
        caller = await self.caller(request)
        bucket_id = check_bucket_name(request.path_params["bucket"])
        async with self.ctx.require_pool().acquire() as conn, conn.transaction():
            found = await conn.fetchval("select id from storage.buckets where id = $1 for update", bucket_id)
            if found is None:
                raise no_such_bucket()
            if await conn.fetchval("select exists(select 1 from storage.objects where bucket_id = $1)", bucket_id):
                raise StorageApiError(409, "ResourceNotEmpty", "The bucket you tried to delete is not empty")
            sql, args = apply_statement(caller.identity)
            await conn.execute(sql, *args)
            await conn.execute("select set_config('storage.allow_delete_query', 'true', true)")
            status = await conn.execute("delete from storage.buckets where id = $1", bucket_id)
            if status.endswith(" 0"):
                raise no_such_bucket()
        return JSONResponse({"message": "Successfully deleted"})

    # -- listing -------------------------------------------------------------------------------------
    async def list_objects(self, request: Request) -> Response:
        caller = await self.caller(request)
        bucket_id = check_bucket_name(request.path_params["bucket"])
        body = await self.json_body(request)
        prefix = body.get("prefix")
        if prefix is None:
            raise bad_request("body must have required property 'prefix'")
        if not isinstance(prefix, str):
            raise bad_request("body/prefix must be string")
        limit = body.get("limit", 100)
        offset = body.get("offset", 0)
        search = body.get("search") or ""
        sort = body.get("sortBy") or {}
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise bad_request("body/limit must be >= 1")
        if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
            raise bad_request("body/offset must be >= 0")
        if limit > MAX_INT64 or offset > MAX_INT64:
            raise bad_request("body/limit and body/offset must fit a 64-bit integer")
        if not isinstance(search, str) or not isinstance(sort, dict):
            raise bad_request("body/search must be string and body/sortBy an object")
        column = sort.get("column") or "name"
        order = str(sort.get("order") or "asc").lower()
        if column not in LIST_SORT_COLUMNS:
            raise bad_request(f"body/sortBy/column must be one of {', '.join(LIST_SORT_COLUMNS)}")
        if order not in ("asc", "desc"):
            raise bad_request("body/sortBy/order must be asc or desc")
        rows = await self.search(caller, bucket_id, prefix, search, column, order, limit, offset)
        return JSONResponse(rows)

    async def list_objects_v2(self, request: Request) -> Response:
        """``POST /object/list-v2/{bucket}``: keys under a prefix in name order, cursor-paged; with
        ``with_delimiter`` one level only, the deeper keys folded into folders (``a/b/``)."""
        caller = await self.caller(request)
        bucket_id = check_bucket_name(request.path_params["bucket"])
        body = await self.json_body(request)
        prefix = body.get("prefix") or ""
        cursor = body.get("cursor")
        delimiter = body.get("with_delimiter", False)
        limit = body.get("limit", LIST_V2_MAX)
        sort = body.get("sortBy") or {}
        if not isinstance(prefix, str):
            raise bad_request("body/prefix must be string")
        if cursor is not None and not isinstance(cursor, str):
            raise bad_request("body/cursor must be string")
        if not isinstance(delimiter, bool):
            raise bad_request("body/with_delimiter must be boolean")
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= LIST_V2_MAX:
            raise bad_request(f"body/limit must be an integer between 1 and {LIST_V2_MAX}")
        if not isinstance(sort, dict):
            raise bad_request("body/sortBy must be object")
        column = sort.get("column") or "name"
        order = str(sort.get("order") or "asc").lower()
        if column != "name":
            raise bad_request(
                f"body/sortBy/column {column!r} is not served by the local stand-in's list-v2: cursor paging "
                "here is by name only (use list() to sort by dates)"
            )
        if order not in ("asc", "desc"):
            raise bad_request("body/sortBy/order must be asc or desc")
        after = _decode_cursor(cursor) if cursor else None
        if bucket_id and await self.bucket_or_none(bucket_id) is None:
            raise no_such_bucket()
        compare = ">" if order == "asc" else "<"
        sql = f"""
            with matched as (
              select name, id, updated_at, created_at, last_accessed_at, metadata,
                     case when $3 and strpos(substr(name, length($2) + 1), '/') > 0
                          then left(name, length($2) + strpos(substr(name, length($2) + 1), '/')) end as folder
              from storage.objects where bucket_id = $1 and starts_with(name, $2)
            ), entries as (
              select folder as name, null::uuid as id, null::timestamptz as updated_at,
                     null::timestamptz as created_at, null::timestamptz as last_accessed_at, null::jsonb as metadata
              from matched where folder is not null group by folder
              union all
              select name, id, updated_at, created_at, last_accessed_at, metadata from matched where folder is null
            )
            select * from entries where $4::text is null or name collate "C" {compare} $4::text collate "C"
            order by name collate "C" {order} limit $5
        """
        async with self.transaction(caller) as conn:
            rows = await conn.fetch(sql, bucket_id, prefix, delimiter, after, limit + 1)
        has_next = len(rows) > limit
        rows = rows[:limit]
        folders = [{"name": r["name"], "key": r["name"]} for r in rows if r["id"] is None]
        objects = [
            {
                "id": str(r["id"]),
                "name": r["name"],
                "key": r["name"],
                "updated_at": _iso(r["updated_at"]),
                "created_at": _iso(r["created_at"]),
                "last_accessed_at": _iso(r["last_accessed_at"]),
                "metadata": _json_value(r["metadata"]),
            }
            for r in rows
            if r["id"] is not None
        ]
        out: dict[str, Any] = {"hasNext": has_next, "folders": folders, "objects": objects}
        if has_next and rows:
            out["nextCursor"] = _encode_cursor(rows[-1]["name"])
        return JSONResponse(out)

    async def search(
        self,
        caller: StorageCaller,
        bucket_id: str,
        prefix: str,
        search: str,
        column: str,
        order: str,
        limit: int,
        offset: int,
    ) -> list[dict[str, Any]]:
        """``storage.search``: the folders, then the files, one level under ``prefix`` (RLS applies)."""
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        level = len(prefix.split("/")) if prefix else 1
        # column and order were checked against fixed lists; everything else is bound.
        sort_key = 'name collate "C"' if column == "name" else f'{column} {order} nulls last, name collate "C"'
        sql = f"""
            with matched as (
              select o.* from storage.objects o
              where o.bucket_id = $1 and o.name like $2 escape '\\' and o.path_tokens[$3] ilike $4 escape '\\'
            ), entries as (
              select path_tokens[$3] as name, null::uuid as id, null::timestamptz as updated_at,
                     null::timestamptz as created_at, null::timestamptz as last_accessed_at,
                     null::jsonb as metadata, 0 as kind
              from matched where array_length(path_tokens, 1) > $3
              group by path_tokens[$3]
              union all
              select path_tokens[$3], id, updated_at, created_at, last_accessed_at, metadata, 1
              from matched where array_length(path_tokens, 1) = $3
            )
            select * from entries order by kind, {sort_key} {order} limit $5 offset $6
        """
        async with self.transaction(caller) as conn:
            rows = await conn.fetch(
                sql, bucket_id, _like_escape(prefix) + "%", level, _like_escape(search) + "%", limit, offset
            )
        return [
            {
                "name": r["name"],
                "id": str(r["id"]) if r["id"] else None,
                "updated_at": _iso(r["updated_at"]),
                "created_at": _iso(r["created_at"]),
                "last_accessed_at": _iso(r["last_accessed_at"]),
                "metadata": _json_value(r["metadata"]),
            }
            for r in rows
        ]

    # -- uploads -------------------------------------------------------------------------------------
    async def upload(self, request: Request) -> Response:
        caller = await self.caller(request)
        bucket_id = check_bucket_name(request.path_params["bucket"])
        name = request.path_params["path"]
        upsert = request.method == "PUT" or request.headers.get("x-upsert", "").lower() == "true"
        result = await self.store_upload(request, bucket_id, name, caller, caller.owner, upsert)
        return JSONResponse(result)

    async def store_upload(
        self,
        request: Request,
        bucket_id: str,
        name: str,
        caller: StorageCaller | None,
        owner: str | None,
        upsert: bool,
    ) -> dict[str, Any]:
        """Check, stream to disk, record. Whatever fails, the request body is drained and no new blob
        survives; a replaced blob is removed only after the new row is committed."""
        body: UploadBody | None = None
        try:
            check_key(name)
            bucket = await self.bucket_or_none(bucket_id)
            if bucket is None:
                raise no_such_bucket()
            await self.check_can_upload(caller, bucket_id, name, owner, upsert)
            body = UploadBody(request)
            await body.start()
            placeholder = name.rsplit("/", 1)[-1] == EMPTY_FOLDER_PLACEHOLDER
            mimetype = body.content_type
            rules = bucket["allowed_mime_types"]
            if rules and not placeholder and not mime_allowed(mimetype, list(rules)):
                raise invalid_mime_type(mimetype)
            limit = global_file_size_limit(self.storage_dir)
            if bucket["file_size_limit"] is not None:
                limit = min(limit, int(bucket["file_size_limit"]))
            if placeholder:
                limit = 0
            user_metadata = body.user_metadata()
            digest = hashlib.md5(usedforsecurity=False)

            async def counted(source: UploadBody) -> AsyncIterator[bytes]:
                async for chunk in source.chunks():
                    digest.update(chunk)
                    yield chunk

            try:
                version, size = await blobs.write_blob_async(self.storage_dir, counted(body), limit)
            except blobs.BlobTooLarge:
                raise entity_too_large() from None
            await body.drain()  # anything after the file part (and the closing boundary)
        except Exception:
            await drain_request(request, body)
            raise
        now = datetime.now(UTC)
        metadata = {
            "eTag": f'"{digest.hexdigest()}"',
            "size": size,
            "mimetype": mimetype,
            "cacheControl": body.cache_control,
            "lastModified": _iso(now),
            "contentLength": size,
            "httpStatusCode": 200,
        }
        try:
            object_id, replaced = await self.record_object(
                caller, bucket_id, name, owner, metadata, user_metadata, version, upsert
            )
        except BaseException:
            blobs.delete_blob(self.storage_dir, version)
            raise
        if replaced and replaced != version:
            blobs.delete_blob(self.storage_dir, replaced)
        return {"Id": str(object_id), "Key": f"{bucket_id}/{name}"}

    async def check_can_upload(
        self, caller: StorageCaller | None, bucket_id: str, name: str, owner: str | None, upsert: bool
    ) -> None:
        """Supabase's ``canUpload``: try the insert (or upsert) as the caller, then roll it back."""
        if caller is None:
            return
        async with self.ctx.require_pool().acquire() as conn:
            tr = conn.transaction()
            await tr.start()
            try:
                sql, args = apply_statement(caller.identity)
                await conn.execute(sql, *args)
                await conn.execute(_insert_sql(upsert), *_object_values(bucket_id, name, owner, None, None, "1"))
            finally:
                await tr.rollback()

    async def record_object(
        self,
        caller: StorageCaller | None,
        bucket_id: str,
        name: str,
        owner: str | None,
        metadata: dict[str, Any],
        user_metadata: dict[str, Any] | None,
        version: str,
        upsert: bool,
    ) -> tuple[uuid.UUID, str | None]:
        """Insert (or upsert) the row as ``caller``, serialised per key; returns (id, replaced version)."""
        async with self.ctx.require_pool().acquire() as conn, conn.transaction():
            await conn.execute("select pg_advisory_xact_lock(hashtextextended($1, 0))", f"{bucket_id}/{name}")
            existing = await conn.fetchrow(
                "select id, version from storage.objects where bucket_id = $1 and name = $2 for update",
                bucket_id,
                name,
            )
            if existing is not None and not upsert:
                raise already_exists()
            if caller is not None:
                sql, args = apply_statement(caller.identity)
                await conn.execute(sql, *args)
            values = _object_values(bucket_id, name, owner, metadata, user_metadata, version)
            await conn.execute(_insert_sql(upsert), *values)
        if existing is not None:
            return existing["id"], existing["version"]
        return values[0], None

    # -- reading -------------------------------------------------------------------------------------
    async def read_target(self, request: Request, mode: str) -> tuple[str, asyncpg.Record]:
        """The object a download / info / HEAD request names, found as Supabase finds it.

        ``mode``: ``"public"`` (public bucket, no auth), ``"authenticated"`` (valid JWT required) or
        ``"default"`` (a JWT if any; without one only public buckets are readable)."""
        bucket_id = check_bucket_name(request.path_params["bucket"])
        name = request.path_params["path"]
        caller = (
            StorageCaller(None) if mode == "public" else await self.caller(request, allow_invalid=mode == "default")
        )
        bucket = await self.bucket_or_none(bucket_id)
        if bucket is None or ((mode == "public" or not caller.authenticated) and not bucket["public"]):
            raise no_such_bucket()
        row = await self.find_object(bucket_id, name, None if bucket["public"] else caller)
        return bucket_id, row

    async def download(self, request: Request, mode: str) -> Response:
        _, row = await self.read_target(request, mode)
        return self.object_response(row, request)

    async def download_default(self, request: Request) -> Response:
        return await self.download(request, "default")

    async def download_public(self, request: Request) -> Response:
        return await self.download(request, "public")

    async def download_authenticated(self, request: Request) -> Response:
        return await self.download(request, "authenticated")

    async def info(self, request: Request, mode: str) -> Response:
        _, row = await self.read_target(request, mode)
        meta = _json_value(row["metadata"]) or {}
        return JSONResponse(
            {
                "id": str(row["id"]),
                "name": row["name"],
                "version": row["version"],
                "bucket_id": row["bucket_id"],
                "size": meta.get("size"),
                "content_type": meta.get("mimetype"),
                "cache_control": meta.get("cacheControl"),
                "etag": meta.get("eTag"),
                "metadata": _json_value(row["user_metadata"]),
                "last_modified": _iso(row["updated_at"]),
                "created_at": _iso(row["created_at"]),
            }
        )

    async def info_default(self, request: Request) -> Response:
        return await self.info(request, "default")

    async def info_public(self, request: Request) -> Response:
        return await self.info(request, "public")

    async def info_authenticated(self, request: Request) -> Response:
        return await self.info(request, "authenticated")

    def object_response(self, row: Mapping[str, Any], request: Request) -> Response:
        """The bytes of one version, streamed from an already-open file (a concurrent replace that
        unlinks it cannot cut the answer short)."""
        try:
            fh = open(blobs.blob_path(self.storage_dir, row["version"]), "rb")  # noqa: SIM115 (closed by the stream)
        except (FileNotFoundError, ValueError):
            raise no_such_key() from None
        size = os.fstat(fh.fileno()).st_size
        meta = _json_value(row["metadata"]) or {}
        headers = {
            "content-type": str(meta.get("mimetype") or "application/octet-stream"),
            "cache-control": str(meta.get("cacheControl") or "no-cache"),
            "content-length": str(size),
            "last-modified": email.utils.format_datetime(row["updated_at"].astimezone(UTC), usegmt=True),
        }
        if meta.get("eTag"):
            headers["etag"] = str(meta["eTag"])
        download = request.query_params.get("download")
        if download is not None:
            filename = download or str(row["name"]).rsplit("/", 1)[-1]
            headers["content-disposition"] = content_disposition(filename)
        if request.method == "HEAD":
            fh.close()
            return Response(status_code=200, headers=headers)
        return StreamingResponse(_file_chunks(fh), headers=headers)

    # -- delete, move, copy --------------------------------------------------------------------------
    async def remove_objects(self, request: Request) -> Response:
        caller = await self.caller(request)
        bucket_id = check_bucket_name(request.path_params["bucket"])
        body = await self.json_body(request)
        prefixes = body.get("prefixes")
        if not isinstance(prefixes, list) or not all(isinstance(p, str) for p in prefixes):
            raise bad_request("body must have required property 'prefixes' (an array of strings)")
        if not 1 <= len(prefixes) <= 1000:
            raise bad_request("body/prefixes must have between 1 and 1000 items")
        async with self.transaction(caller) as conn:
            await conn.execute("select set_config('storage.allow_delete_query', 'true', true)")
            rows = await conn.fetch(
                "delete from storage.objects where bucket_id = $1 and name = any($2::text[]) returning *",
                bucket_id,
                prefixes,
            )
        for row in rows:
            blobs.delete_blob(self.storage_dir, row["version"])
        return JSONResponse([object_json(r) for r in rows])

    async def remove_object(self, request: Request) -> Response:
        caller = await self.caller(request)
        bucket_id = check_bucket_name(request.path_params["bucket"])
        name = request.path_params["path"]
        async with self.transaction(caller) as conn:
            await conn.execute("select set_config('storage.allow_delete_query', 'true', true)")
            version = await conn.fetchval(
                "delete from storage.objects where bucket_id = $1 and name = $2 returning version", bucket_id, name
            )
            if version is None:
                raise no_such_key()
        blobs.delete_blob(self.storage_dir, version)
        return JSONResponse({"message": "Successfully deleted"})

    async def move_object(self, request: Request) -> Response:
        caller = await self.caller(request)
        body = await self.json_body(request)
        bucket_id = check_bucket_name(self.required_str(body, "bucketId"))
        source = self.required_str(body, "sourceKey")
        destination = check_key(self.required_str(body, "destinationKey"))
        target_bucket = check_bucket_name(body.get("destinationBucket") or bucket_id)
        async with self.transaction(caller) as conn:
            await conn.execute(
                "select pg_advisory_xact_lock(hashtextextended($1, 0))", f"{target_bucket}/{destination}"
            )
            found = await conn.fetchval(
                "select id from storage.objects where bucket_id = $1 and name = $2", bucket_id, source
            )
            if found is None:
                raise no_such_key()
            moved = await conn.fetchval(
                """update storage.objects set bucket_id = $3, name = $4, owner = coalesce($5, owner),
                       owner_id = coalesce($6, owner_id)
                   where bucket_id = $1 and name = $2 returning id""",
                bucket_id,
                source,
                target_bucket,
                destination,
                _uuid_or_none(caller.owner),
                caller.owner,
            )
            if moved is None:
                raise no_such_key()
        return JSONResponse({"message": "Successfully moved", "Id": str(moved), "Key": destination})

    async def copy_object(self, request: Request) -> Response:
        caller = await self.caller(request)
        body = await self.json_body(request)
        bucket_id = check_bucket_name(self.required_str(body, "bucketId"))
        source = self.required_str(body, "sourceKey")
        destination = check_key(self.required_str(body, "destinationKey"))
        target_bucket = check_bucket_name(body.get("destinationBucket") or bucket_id)
        upsert = request.headers.get("x-upsert", "").lower() == "true"
        row = await self.find_object(bucket_id, source, caller)
        if await self.bucket_or_none(target_bucket) is None:
            raise no_such_bucket()
        await self.check_can_upload(caller, target_bucket, destination, caller.owner, upsert)
        source_path = blobs.blob_path(self.storage_dir, row["version"])
        try:
            version, _size = await asyncio.to_thread(blobs.write_blob, self.storage_dir, _read_file(source_path))
        except FileNotFoundError:
            raise no_such_key() from None
        metadata = dict(_json_value(row["metadata"]) or {})
        overrides = body.get("metadata")
        if body.get("copyMetadata", True) is False and isinstance(overrides, dict):
            metadata |= {k: v for k, v in overrides.items() if k in ("cacheControl", "mimetype")}
        metadata["lastModified"] = _iso(datetime.now(UTC))
        try:
            object_id, replaced = await self.record_object(
                caller,
                target_bucket,
                destination,
                caller.owner,
                metadata,
                _json_value(row["user_metadata"]),
                version,
                upsert,
            )
        except BaseException:
            blobs.delete_blob(self.storage_dir, version)
            raise
        if replaced and replaced != version:
            blobs.delete_blob(self.storage_dir, replaced)
        return JSONResponse({"Id": str(object_id), "Key": f"{target_bucket}/{destination}"})

    # -- signed URLs ---------------------------------------------------------------------------------
    def _expires_in(self, body: Mapping[str, Any]) -> int:
        raw = body.get("expiresIn")
        if raw is None:
            raise bad_request("body must have required property 'expiresIn'")
        if isinstance(raw, bool):
            raise bad_request("body/expiresIn must be integer")
        try:
            value = int(raw)
        except (TypeError, ValueError, OverflowError):  # OverflowError: 1e400 arrives as infinity
            raise bad_request("body/expiresIn must be integer") from None
        if value < 1:
            raise bad_request("body/expiresIn must be >= 1")
        if value > MAX_URL_EXPIRY:
            raise bad_request(f"body/expiresIn must be <= {MAX_URL_EXPIRY} (100 years)")
        return value

    def _sign(self, claims: dict[str, Any], expires_in: int) -> str:
        now = int(time.time())
        return mint({**claims, "iat": now, "exp": now + expires_in}, secret=self.jwt_secret)

    async def sign_url(self, request: Request) -> Response:
        caller = await self.caller(request)
        bucket_id = check_bucket_name(request.path_params["bucket"])
        name = request.path_params["path"]
        body = await self.json_body(request)
        expires_in = self._expires_in(body)
        transform = body.get("transform")
        if transform is not None and not isinstance(transform, dict):
            raise bad_request("body/transform must be object")
        await self.find_object(bucket_id, name, caller)
        url = f"{bucket_id}/{name}"
        if transform:  # Supabase signs the transformations into the token and points at the render route
            text = Transform.parse(transform).as_text()
            token = self._sign({"url": url, "transformations": text}, expires_in)
            return JSONResponse({"signedURL": f"/render/image/sign/{_encoded(url)}?token={token}"})
        token = self._sign({"url": url}, expires_in)
        return JSONResponse({"signedURL": f"/object/sign/{_encoded(url)}?token={token}"})

    async def sign_urls(self, request: Request) -> Response:
        caller = await self.caller(request)
        bucket_id = check_bucket_name(request.path_params["bucket"])
        body = await self.json_body(request)
        expires_in = self._expires_in(body)
        paths = body.get("paths")
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths) or not paths:
            raise bad_request("body must have required property 'paths' (a non-empty array of strings)")
        async with self.transaction(caller) as conn:
            rows = await conn.fetch(
                "select name from storage.objects where bucket_id = $1 and name = any($2::text[])", bucket_id, paths
            )
        visible = {r["name"] for r in rows}
        out = []
        for path in paths:
            if path in visible:
                url = f"{bucket_id}/{path}"
                token = self._sign({"url": url}, expires_in)
                out.append({"error": None, "path": path, "signedURL": f"/object/sign/{_encoded(url)}?token={token}"})
            else:
                out.append(
                    {
                        "error": "Either the object does not exist or you do not have access to it",
                        "path": path,
                        "signedURL": None,
                    }
                )
        return JSONResponse(out)

    async def verify_url_token(self, request: Request, bucket_id: str, name: str) -> dict[str, Any]:
        token = request.query_params.get("token")
        if not token:
            raise bad_request("querystring must have required property 'token'")
        try:
            claims = await self.url_verifier.averify(token)
        except TokenError as exc:
            raise StorageApiError(400, "InvalidJWT", _jwt_message(exc)) from None
        if claims.get("url") != f"{bucket_id}/{name}":
            raise StorageApiError(400, "InvalidSignature", "Invalid signature")
        return claims

    async def signed_download(self, request: Request) -> Response:
        bucket_id = check_bucket_name(request.path_params["bucket"])
        name = request.path_params["path"]
        await self.verify_url_token(request, bucket_id, name)
        row = await self.find_object(bucket_id, name, None)
        return self.object_response(row, request)

    # -- image rendering -----------------------------------------------------------------------------
    def rendered(self, row: Mapping[str, Any], request: Request, transform: Transform) -> Response:
        """The object's bytes through Pillow (read whole: images to transform are capped at 25 MB)."""
        path = blobs.blob_path(self.storage_dir, row["version"])
        try:
            if path.stat().st_size > MAX_SOURCE_BYTES:
                raise StorageApiError(
                    413, "EntityTooLarge", "Image too large to transform (over 25 MB)", "Payload too large"
                )
            data = path.read_bytes()
        except (FileNotFoundError, ValueError):
            raise no_such_key() from None
        out, mimetype = render(data, transform)
        meta = _json_value(row["metadata"]) or {}
        headers = {"cache-control": str(meta.get("cacheControl") or "no-cache")}
        download = request.query_params.get("download")
        if download is not None:
            headers["content-disposition"] = content_disposition(download or str(row["name"]).rsplit("/", 1)[-1])
        return Response(out, media_type=mimetype, headers=headers)

    async def render_public(self, request: Request) -> Response:
        transform = Transform.parse(request.query_params)
        _, row = await self.read_target(request, "public")
        return self.rendered(row, request, transform)

    async def render_authenticated(self, request: Request) -> Response:
        transform = Transform.parse(request.query_params)
        _, row = await self.read_target(request, "authenticated")
        return self.rendered(row, request, transform)

    async def render_signed(self, request: Request) -> Response:
        bucket_id = check_bucket_name(request.path_params["bucket"])
        name = request.path_params["path"]
        claims = await self.verify_url_token(request, bucket_id, name)
        text = claims.get("transformations")
        transform = Transform.from_text(text) if isinstance(text, str) else Transform()
        row = await self.find_object(bucket_id, name, None)
        return self.rendered(row, request, transform)

    async def sign_upload_url(self, request: Request) -> Response:
        caller = await self.caller(request)
        bucket_id = check_bucket_name(request.path_params["bucket"])
        name = check_key(request.path_params["path"])
        upsert = request.headers.get("x-upsert", "").lower() == "true"
        if await self.bucket_or_none(bucket_id) is None:
            raise no_such_bucket()
        await self.check_can_upload(caller, bucket_id, name, caller.owner, upsert)
        url = f"{bucket_id}/{name}"
        token = self._sign({"owner": caller.owner, "url": url, "upsert": upsert}, SIGNED_UPLOAD_EXPIRES)
        return JSONResponse({"url": f"/object/upload/sign/{_encoded(url)}?token={token}", "token": token})

    async def signed_upload(self, request: Request) -> Response:
        bucket_id = check_bucket_name(request.path_params["bucket"])
        name = request.path_params["path"]
        try:
            claims = await self.verify_url_token(request, bucket_id, name)
        except StorageApiError:
            await drain_request(request, None)
            raise
        owner = claims.get("owner") if isinstance(claims.get("owner"), str) else None
        result = await self.store_upload(request, bucket_id, name, None, owner, bool(claims.get("upsert")))
        return JSONResponse({"Key": result["Key"]})


def _encode_cursor(name: str) -> str:
    return base64.urlsafe_b64encode(f"l:{name}".encode()).decode("ascii")


def _decode_cursor(cursor: str) -> str:
    """The last key of the previous page; anything else is a 400, not a query with garbage."""
    try:
        text = base64.urlsafe_b64decode(cursor.encode("ascii")).decode("utf-8")
    except (ValueError, UnicodeError):
        raise bad_request("body/cursor is not a cursor this API returned") from None
    if not text.startswith("l:") or "\x00" in text:
        raise bad_request("body/cursor is not a cursor this API returned")
    return text[2:]


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _insert_sql(upsert: bool) -> str:
    sql = """insert into storage.objects (id, bucket_id, name, owner, owner_id, metadata, user_metadata, version)
             values ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, $8)"""
    if upsert:
        sql += """ on conflict (bucket_id, name) do update set owner = coalesce(excluded.owner, storage.objects.owner),
                   owner_id = coalesce(excluded.owner_id, storage.objects.owner_id),
                   metadata = excluded.metadata, user_metadata = excluded.user_metadata,
                   version = excluded.version, last_accessed_at = now()"""
    return sql


def _object_values(
    bucket_id: str,
    name: str,
    owner: str | None,
    metadata: dict[str, Any] | None,
    user_metadata: dict[str, Any] | None,
    version: str,
) -> list[Any]:
    return [
        uuid.uuid4(),
        bucket_id,
        name,
        _uuid_or_none(owner),
        owner,
        json.dumps(metadata) if metadata is not None else None,
        json.dumps(user_metadata) if user_metadata is not None else None,
        version,
    ]


def _file_chunks(fh: Any) -> Iterator[bytes]:
    try:
        while chunk := fh.read(blobs.CHUNK):
            yield chunk
    finally:
        fh.close()


def _read_file(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        while chunk := fh.read(blobs.CHUNK):
            yield chunk
