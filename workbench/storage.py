"""Supabase Storage from the workbench: plain async calls over the official ``supabase`` client.

The same code runs against the local stand-in and a real project: an admin client uses the service key;
a client acting as an :class:`~workbench.core.identity.Identity` sends a JWT minted with the project's JWT
secret (the stand-in always has one; a legacy project may) or a signed-in user's access token. Storage's
answers are turned into :class:`StorageError` messages that say who was refused what, and how to fix it.
Every action of the storage browser widget is one function here.
"""

from __future__ import annotations

import csv
import io
import json
import mimetypes
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Literal

import httpx
from storage3.exceptions import StorageApiError
from supabase import AsyncClient, AsyncClientOptions, acreate_client

from workbench.backend.tokens import mint
from workbench.core.identity import Identity
from workbench.core.settings import Settings

__all__ = [
    "PREVIEW_LIMIT",
    "Bucket",
    "DeleteResult",
    "Entry",
    "Listing",
    "Preview",
    "StorageClient",
    "StorageError",
    "UploadResult",
    "admin_client",
    "client_as",
    "delete",
    "download",
    "download_to",
    "identity_for_user",
    "info",
    "known_users",
    "list_buckets",
    "list_folder",
    "move",
    "preview",
    "public_url",
    "rename",
    "signed_url",
    "upload",
    "upload_many",
]

PREVIEW_LIMIT = 10 * 1024 * 1024
SORT_COLUMNS = ("name", "updated_at", "created_at", "last_accessed_at")
Progress = Callable[[int, int], None]  # (bytes sent so far, total bytes)


class StorageError(Exception):
    """A refused or failed storage call, explained: who, what, why, and the fix. Never holds a key."""

    def __init__(self, message: str, *, status: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


# ---------------------------------------------------------------------------------------- clients


@dataclass
class StorageClient:
    """A ``supabase`` async client and who it acts as. Use it only on the event loop that made it."""

    client: AsyncClient = field(repr=False)
    label: str
    role: str

    @property
    def storage(self) -> Any:
        return self.client.storage

    async def aclose(self) -> None:
        await self.client.storage.session.aclose()


def _require(settings: Settings, what: str) -> str:
    value = getattr(settings, what)
    if value is None:
        raise StorageError(
            f"SUPABASE_{what.upper()} is not set. Fix: copy it from the dashboard (Project Settings > API), "
            "or use workbench.local.settings.standin_settings() for the local stand-in."
        )
    return value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)


async def admin_client(settings: Settings) -> StorageClient:
    """The service key: bypasses storage policies, like Supabase's dashboard."""
    url = _require(settings, "url")
    key = _require(settings, "service_role_key")
    return StorageClient(await acreate_client(url, key), label="admin (service role)", role="service_role")


async def client_as(
    settings: Settings,
    identity: Identity | None = None,
    *,
    access_token: str | None = None,
    expires_in: int = 3600,
) -> StorageClient:
    """A client whose requests carry ``identity``'s JWT (or ``access_token``), so policies decide.

    ``None`` / :meth:`Identity.none` / service_role give the admin client and ``anon`` the anon key
    alone. For a user, the token is minted with ``SUPABASE_JWT_SECRET``; for a project without one, pass
    the user's ``access_token`` (from ``auth.sign_in_with_password``).
    """
    url = _require(settings, "url")
    anon_key = _require(settings, "anon_key")
    if access_token is not None:
        label = identity.describe() if identity is not None else "signed-in user"
        return StorageClient(await _client_with_token(url, anon_key, access_token), label=label, role="authenticated")
    if identity is None or identity.role is None or identity.role == "service_role":
        return await admin_client(settings)
    if identity.role == "anon" and not (identity.claims or {}).get("sub"):
        return StorageClient(await acreate_client(url, anon_key), label="anon", role="anon")
    if settings.jwt_secret is None:
        raise StorageError(
            f"Cannot act as {identity.describe()}: no JWT secret to sign a token with. Fix: set "
            "SUPABASE_JWT_SECRET (legacy projects), or sign the user in and pass access_token=."
        )
    now = int(time.time())
    claims = dict(identity.claims or {"role": identity.role}) | {
        "role": identity.role,
        "iat": now,
        "exp": now + expires_in,
    }
    token = mint(claims, secret=settings.jwt_secret.get_secret_value())
    client = await _client_with_token(url, anon_key, token)
    return StorageClient(client, label=identity.describe(), role=identity.role)


async def _client_with_token(url: str, anon_key: str, token: str) -> AsyncClient:
    return await acreate_client(url, anon_key, options=AsyncClientOptions(headers={"Authorization": f"Bearer {token}"}))


async def known_users(settings: Settings, text: str = "", limit: int = 50) -> list[dict[str, Any]]:
    """Users from ``auth.users`` (for "view as"); needs the database settings, not the storage keys."""
    from workbench.core.identity import find_users

    conn = await _connect(settings)
    try:
        return await find_users(conn, text, limit)
    finally:
        await conn.close()


async def identity_for_user(settings: Settings, who: str) -> Identity:
    """The identity (claims as Supabase Auth would mint them) of a user given by email or uuid."""
    from workbench.core.identity import user_identity

    issuer = f"{(settings.url or 'http://127.0.0.1').rstrip('/')}/auth/v1"
    conn = await _connect(settings)
    try:
        return await user_identity(conn, who, issuer=issuer)
    finally:
        await conn.close()


async def _connect(settings: Settings) -> Any:
    import asyncpg

    dsn = settings.database_url().set(drivername="postgresql").render_as_string(hide_password=False)
    return await asyncpg.connect(dsn, timeout=10, statement_cache_size=0)


# ---------------------------------------------------------------------------------------- errors


def explain(exc: StorageApiError, client: StorageClient, action: str, target: str) -> StorageError:
    """Storage's ``{statusCode, error, message}`` as a sentence with a fix."""
    status, code, message = str(exc.status), str(exc.code), str(exc.message)
    who = client.label
    if status == "403" and "row-level security" in message:
        text = (
            f"{who} may not {action} {target}: a policy on storage.objects refused it ({message}). "
            "Fix: add or widen an INSERT policy (upserts and moves also need SELECT and UPDATE policies), "
            "or act as the admin client."
        )
    elif status == "403":
        text = f"{who} may not {action} {target}: {message}. Fix: check the token (expired or from another project)."
    elif code == "Bucket not found":
        text = (
            f"Bucket {target.split('/', 1)[0]!r} does not exist, or {who} cannot see it (storage.buckets has RLS "
            "too). Fix: create it, or add a select policy on storage.buckets."
        )
    elif status == "404":
        text = (
            f"{target} was not found for {who}: it does not exist, or no policy on storage.objects lets "
            f"{who} read it. Fix: check the path, or add a select policy for this identity."
        )
    elif status == "409":
        text = f"{target} already exists. Fix: upload with upsert=True to replace it, or choose another name."
    elif status == "413":
        text = (
            f"{target} is too large: {message}. Fix: raise the bucket's file_size_limit (or the project's upload "
            "limit), or upload a smaller file."
        )
    elif status == "415":
        text = f"{target}: {message}. Fix: add the type to the bucket's allowed_mime_types, or upload another type."
    elif code == "InvalidKey":
        text = (
            f"{message}. Supabase accepts keys of ASCII letters, digits, spaces and !-_.*'()&$@=;:+,? only "
            "(no '..' segments, no leading '/', at most 1024 bytes). Fix: rename the file."
        )
    else:
        text = f"{who} could not {action} {target}: {message} ({code}, {status})."
    return StorageError(text, status=status, code=code)


class _Explained:
    """``async with _Explained(client, "upload", "bucket/path"):`` turns StorageApiError into StorageError."""

    def __init__(self, client: StorageClient, action: str, target: str) -> None:
        self.client, self.action, self.target = client, action, target

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, etype: Any, exc: BaseException | None, tb: Any) -> None:
        if isinstance(exc, StorageApiError):
            raise explain(exc, self.client, self.action, self.target) from None
        if isinstance(exc, httpx.TransportError):
            raise StorageError(
                f"The Storage API is not reachable, so {self.client.label} could not {self.action} {self.target} "
                f"({type(exc).__name__}). Fix: for the local stand-in run `workbench local start` (it restarts the "
                "API process); for a project, check SUPABASE_URL and your network.",
                code="Unreachable",
            ) from None


# ---------------------------------------------------------------------------------------- buckets


@dataclass(frozen=True)
class Bucket:
    id: str
    name: str
    public: bool
    file_size_limit: int | None
    allowed_mime_types: list[str] | None
    created_at: datetime | None
    updated_at: datetime | None


async def list_buckets(client: StorageClient) -> list[Bucket]:
    """The buckets this client may see (a user sees only those a storage.buckets policy allows)."""
    async with _Explained(client, "list", "buckets"):
        rows = await client.storage.list_buckets()
    return [
        Bucket(
            id=b.id,
            name=b.name,
            public=b.public,
            file_size_limit=b.file_size_limit,
            allowed_mime_types=b.allowed_mime_types,
            created_at=b.created_at,
            updated_at=b.updated_at,
        )
        for b in rows
    ]


# ---------------------------------------------------------------------------------------- listing


@dataclass(frozen=True)
class Entry:
    """One line of a folder listing: a folder (no id) or a file."""

    name: str
    path: str
    is_folder: bool
    id: str | None = None
    size: int | None = None
    mimetype: str | None = None
    updated_at: datetime | None = None
    created_at: datetime | None = None


@dataclass(frozen=True)
class Listing:
    bucket: str
    folder: str
    entries: list[Entry]
    offset: int
    limit: int
    has_more: bool


def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def join_path(folder: str, name: str) -> str:
    folder = folder.strip("/")
    return f"{folder}/{name}" if folder else name


async def list_folder(
    client: StorageClient,
    bucket: str,
    folder: str = "",
    *,
    limit: int = 100,
    offset: int = 0,
    sort: str = "name",
    order: Literal["asc", "desc"] = "asc",
    search: str = "",
) -> Listing:
    """One page of a folder: folders first, then files; ``search`` matches the start of names."""
    if sort not in SORT_COLUMNS:
        raise StorageError(f"Cannot sort by {sort!r}. Fix: use one of {', '.join(SORT_COLUMNS)}.")
    if order not in ("asc", "desc"):
        raise StorageError(f"Order must be 'asc' or 'desc', not {order!r}.")
    if limit < 1 or offset < 0:
        raise StorageError("limit must be at least 1 and offset at least 0.")
    folder = folder.strip("/")
    options: dict[str, Any] = {"limit": limit + 1, "offset": offset, "sortBy": {"column": sort, "order": order}}
    if search:
        options["search"] = search
    async with _Explained(client, "list", f"{bucket}/{folder}"):
        rows = await client.storage.from_(bucket).list(folder, options)
    entries = []
    for row in rows[:limit]:
        meta = row.get("metadata") or {}
        entries.append(
            Entry(
                name=row["name"],
                path=join_path(folder, row["name"]),
                is_folder=row.get("id") is None,
                id=row.get("id"),
                size=meta.get("size"),
                mimetype=meta.get("mimetype"),
                updated_at=_parse_time(row.get("updated_at")),
                created_at=_parse_time(row.get("created_at")),
            )
        )
    return Listing(bucket, folder, entries, offset, limit, has_more=len(rows) > limit)


# ---------------------------------------------------------------------------------------- objects


class _ProgressReader(io.BufferedReader):
    """A file object storage3 accepts as is, reporting each read to ``progress`` while httpx sends it."""

    def __init__(self, raw: IO[bytes], total: int, progress: Progress, start: int = 0, overall: int | None = None):
        super().__init__(raw)  # type: ignore[arg-type]
        self._total = overall if overall is not None else total
        self._sent = start
        self._progress = progress

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        if chunk:
            self._sent += len(chunk)
            self._progress(self._sent, self._total)
        return chunk


def guess_type(path: str) -> str:
    return mimetypes.guess_type(path)[0] or "application/octet-stream"


@dataclass(frozen=True)
class UploadResult:
    path: str
    ok: bool
    error: str | None = None


async def upload(
    client: StorageClient,
    bucket: str,
    path: str,
    data: bytes | str | Path | IO[bytes],
    *,
    content_type: str | None = None,
    upsert: bool = False,
    cache_control: int | None = None,
    progress: Progress | None = None,
    _offset: int = 0,
    _overall: int | None = None,
) -> str:
    """Upload bytes, a local file or a binary file object; returns ``bucket/path``.

    ``upsert=True`` replaces an existing object (policies must allow SELECT and UPDATE too);
    ``progress(sent, total)`` is called as the bytes go out.
    """
    options: dict[str, Any] = {
        "content-type": content_type or guess_type(path),
        "upsert": "true" if upsert else "false",
    }
    if cache_control is not None:
        options["cache-control"] = str(cache_control)
    opened: IO[bytes] | None = None
    try:
        if isinstance(data, str | Path):
            opened = open(data, "rb")  # noqa: SIM115 (closed below)
            raw: IO[bytes] = opened
            total = Path(data).stat().st_size
        elif isinstance(data, bytes | bytearray | memoryview):
            raw = io.BytesIO(bytes(data))
            total = len(data)
        else:
            raw = data
            here = raw.tell()
            total = raw.seek(0, io.SEEK_END) - here
            raw.seek(here)
        body: Any = raw if progress is None else _ProgressReader(raw, total, progress, _offset, _overall)
        if not isinstance(body, io.BufferedReader):
            body = io.BufferedReader(body)  # what storage3 accepts as a stream
        async with _Explained(client, "upload", f"{bucket}/{path}"):
            res = await client.storage.from_(bucket).upload(path, body, options)
        return str(res.full_path)
    finally:
        if opened is not None:
            opened.close()


async def upload_many(
    client: StorageClient,
    bucket: str,
    folder: str,
    files: Sequence[tuple[str, bytes] | tuple[str, bytes, str | None]],
    *,
    upsert: bool = False,
    progress: Progress | None = None,
) -> list[UploadResult]:
    """Upload several files into ``folder``, one after another; a refusal does not stop the others."""
    total = sum(len(f[1]) for f in files)
    sent = 0
    results = []
    for item in files:
        name, content = item[0], item[1]
        content_type: str | None = item[2] if len(item) > 2 else None
        path = join_path(folder, name)
        try:
            await upload(
                client,
                bucket,
                path,
                content,
                content_type=content_type or None,
                upsert=upsert,
                progress=progress,
                _offset=sent,
                _overall=total,
            )
            results.append(UploadResult(path, True))
        except StorageError as exc:
            results.append(UploadResult(path, False, str(exc)))
        except ValueError as exc:  # storage3 refuses dot segments before sending
            results.append(UploadResult(path, False, f"{exc}. Fix: rename the file."))
        sent += len(content)
        if progress is not None:
            progress(sent, total)
    return results


async def download(client: StorageClient, bucket: str, path: str) -> bytes:
    async with _Explained(client, "download", f"{bucket}/{path}"):
        return bytes(await client.storage.from_(bucket).download(path))


async def download_to(client: StorageClient, bucket: str, path: str, dest: str | Path) -> Path:
    """Save an object to a local file (a folder ``dest`` keeps the object's file name)."""
    target = Path(dest)
    if target.is_dir():
        target = target / path.rsplit("/", 1)[-1]
    target.write_bytes(await download(client, bucket, path))
    return target


async def info(client: StorageClient, bucket: str, path: str) -> dict[str, Any]:
    """Size, content type, ETag, timestamps and user metadata of one object."""
    async with _Explained(client, "read", f"{bucket}/{path}"):
        return dict(await client.storage.from_(bucket).info(path))


async def signed_url(
    client: StorageClient, bucket: str, path: str, expires_in: int = 3600, *, download: bool | str = False
) -> str:
    """A URL anyone may fetch until it expires (seconds); the caller must be allowed to read the object."""
    if expires_in < 1:
        raise StorageError("expires_in must be at least 1 second.")
    options: dict[str, Any] = {"download": download} if download else {}
    async with _Explained(client, "sign", f"{bucket}/{path}"):
        res = await client.storage.from_(bucket).create_signed_url(path, expires_in, options or None)
    return str(res["signedURL"])


async def public_url(client: StorageClient, bucket: str, path: str) -> str:
    """The URL of an object in a public bucket (no request is made; private buckets refuse it)."""
    return str(await client.storage.from_(bucket).get_public_url(path))


async def move(client: StorageClient, bucket: str, source: str, destination: str) -> str:
    """Move (or rename) an object within a bucket; returns the new path."""
    destination = destination.strip("/")
    if not destination:
        raise StorageError("Give a destination path, such as 'folder/new-name.txt'.")
    async with _Explained(client, "move", f"{bucket}/{source}"):
        await client.storage.from_(bucket).move(source, destination)
    return destination


async def rename(client: StorageClient, bucket: str, path: str, new_name: str) -> str:
    """Rename within the same folder."""
    if not new_name or "/" in new_name:
        raise StorageError(f"{new_name!r} is not a file name. Fix: give a name without '/', or use move().")
    folder = path.rsplit("/", 1)[0] if "/" in path else ""
    return await move(client, bucket, path, join_path(folder, new_name))


@dataclass(frozen=True)
class DeleteResult:
    deleted: list[str]
    refused: list[str]


async def delete(client: StorageClient, bucket: str, paths: Iterable[str]) -> DeleteResult:
    """Delete objects; those a policy (or their absence) kept are listed in ``refused``."""
    wanted = list(dict.fromkeys(paths))
    if not wanted:
        return DeleteResult([], [])
    async with _Explained(client, "delete", f"{bucket}/{wanted[0]}"):
        rows = await client.storage.from_(bucket).remove(wanted)
    gone = {r["name"] for r in rows}
    return DeleteResult([p for p in wanted if p in gone], [p for p in wanted if p not in gone])


# ---------------------------------------------------------------------------------------- preview


@dataclass(frozen=True)
class Preview:
    """What the browser shows for one object: image bytes, text, CSV rows or JSON, or why not."""

    path: str
    kind: Literal["image", "text", "csv", "json", "binary", "too_large"]
    mimetype: str
    size: int
    data: bytes | None = None
    text: str | None = None
    rows: list[list[str]] | None = None
    note: str = ""


TEXT_TYPES = {"application/json", "application/xml", "application/javascript", "application/x-yaml", "application/sql"}
PREVIEW_ROWS = 200


def _kind_of(mimetype: str, path: str) -> str:
    base = mimetype.split(";", 1)[0].strip().lower()
    if base in ("", "application/octet-stream"):
        base = guess_type(path)
    if base.startswith("image/"):
        return "image"
    if base in ("text/csv", "application/csv") or path.lower().endswith(".csv"):
        return "csv"
    if base == "application/json" or path.lower().endswith(".json"):
        return "json"
    if base.startswith("text/") or base in TEXT_TYPES:
        return "text"
    return "binary"


async def preview(client: StorageClient, bucket: str, path: str, *, max_bytes: int = PREVIEW_LIMIT) -> Preview:
    """Fetch what can be shown inline: images and text/CSV/JSON up to ``max_bytes`` (10 MB)."""
    meta = await info(client, bucket, path)
    size = int(meta.get("size") or 0)
    mimetype = str(meta.get("content_type") or guess_type(path))
    kind = _kind_of(mimetype, path)
    if size > max_bytes:
        return Preview(
            path, "too_large", mimetype, size, note=f"{size:,} bytes: larger than the {max_bytes:,}-byte preview limit"
        )
    if kind == "binary":
        return Preview(path, "binary", mimetype, size, note="no preview for this type; download it instead")
    data = await download(client, bucket, path)
    if kind == "image":
        return Preview(path, "image", mimetype, size, data=data)
    if b"\x00" in data[:8192]:
        return Preview(path, "binary", mimetype, size, note="binary content; download it instead")
    text = data.decode("utf-8", errors="replace")
    if kind == "csv":
        rows: list[list[str]] = []
        for row in csv.reader(io.StringIO(text)):
            rows.append(row)
            if len(rows) > PREVIEW_ROWS:
                break
        note = f"first {PREVIEW_ROWS} rows" if len(rows) > PREVIEW_ROWS else ""
        return Preview(path, "csv", mimetype, size, data=data, text=text, rows=rows[:PREVIEW_ROWS], note=note)
    if kind == "json":
        try:
            pretty = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
        except ValueError as exc:
            return Preview(path, "text", mimetype, size, data=data, text=text, note=f"not valid JSON: {exc}")
        return Preview(path, "json", mimetype, size, data=data, text=pretty)
    return Preview(path, "text", mimetype, size, data=data, text=text)


def describe_size(size: int | None) -> str:
    if size is None:
        return ""
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"
