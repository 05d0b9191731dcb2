"""The body of an upload request, streamed (multipart file part or raw body), never spooled."""

from __future__ import annotations

import contextlib
import json
from collections import deque
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from python_multipart.multipart import MultipartParseError, MultipartParser, parse_options_header
from starlette.requests import Request

if TYPE_CHECKING:
    pass

from workbench.local.storage_errors import entity_too_large, invalid_request

MAX_USER_METADATA = 1024 * 1024

# ---------------------------------------------------------------------------------- upload bodies


class UploadBody:
    """The file of an upload request, streamed: the multipart file part (fields before it are read
    first) or a raw body. Nothing is spooled to a temporary folder; at most one network chunk is held."""

    def __init__(self, request: Request) -> None:
        self._stream = request.stream().__aiter__()
        self.finished = False  # the whole request body has been read
        self.fields: dict[str, str] = {}
        self.filename: str | None = None
        self.mimetype: str | None = None
        self.has_file = False
        self._pending: deque[bytes] = deque()
        self._discard = False
        content_type = request.headers.get("content-type", "")
        self.multipart = content_type.lower().startswith("multipart/form-data")
        self._parser: MultipartParser | None = None
        if self.multipart:
            _, params = parse_options_header(content_type)
            boundary = params.get(b"boundary")
            if not boundary:
                raise invalid_request("No content provided")
            self._part_headers: dict[str, str] = {}
            self._header_field = b""
            self._header_value = b""
            self._part_name: str | None = None
            self._part_is_file = False
            self._file_done = False
            self._field_value = bytearray()
            self._parser = MultipartParser(
                boundary,
                {
                    "on_part_begin": self._on_part_begin,
                    "on_part_data": self._on_part_data,
                    "on_part_end": self._on_part_end,
                    "on_header_field": self._on_header_field,
                    "on_header_value": self._on_header_value,
                    "on_header_end": self._on_header_end,
                    "on_headers_finished": self._on_headers_finished,
                },
            )
        else:
            self.has_file = True
            self._file_done = False
            self.mimetype = content_type or "application/octet-stream"
            if request.headers.get("cache-control"):
                self.fields["cacheControl"] = request.headers["cache-control"]
            if request.headers.get("x-metadata"):
                self.fields["x-metadata"] = request.headers["x-metadata"]

    # -- multipart callbacks (synchronous, called from parser.write)
    def _on_part_begin(self) -> None:
        self._part_headers = {}
        self._part_name = None
        self._part_is_file = False
        self._field_value = bytearray()

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _on_header_end(self) -> None:
        self._part_headers[self._header_field.decode("latin-1").lower()] = self._header_value.decode("latin-1")
        self._header_field = b""
        self._header_value = b""

    def _on_headers_finished(self) -> None:
        _, params = parse_options_header(self._part_headers.get("content-disposition", ""))
        self._part_name = params.get(b"name", b"").decode("utf-8", "replace")
        filename = params.get(b"filename")
        if filename is not None and not self.has_file:
            self._part_is_file = True
            self.has_file = True
            self.filename = filename.decode("utf-8", "replace")
            self.mimetype = self._part_headers.get("content-type") or "application/octet-stream"

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._part_is_file:
            if not self._discard:
                self._pending.append(bytes(data[start:end]))
            return
        self._field_value += data[start:end]
        if len(self._field_value) > MAX_USER_METADATA:
            raise entity_too_large("user_metadata")

    def _on_part_end(self) -> None:
        if self._part_is_file:
            self._file_done = True
        elif self._part_name:
            self.fields[self._part_name] = self._field_value.decode("utf-8", "replace")

    # -- reading
    async def _read(self) -> bool:
        """Feed one network chunk; False once the body is exhausted."""
        if self.finished:
            return False
        try:
            chunk = await self._stream.__anext__()
        except StopAsyncIteration:
            self.finished = True
            if self._parser is not None:
                self._parser.finalize()
            return False
        if self._parser is not None:
            try:
                self._parser.write(chunk)
            except MultipartParseError:
                raise invalid_request("No content provided") from None
        elif chunk and not self._discard:
            self._pending.append(chunk)
        return True

    async def start(self) -> None:
        """Read up to the start of the file's bytes, so its type and the form fields are known."""
        while not self.has_file and await self._read():
            pass
        if not self.has_file:
            raise invalid_request("No content provided")

    async def chunks(self) -> AsyncIterator[bytes]:
        while True:
            while self._pending:
                yield self._pending.popleft()
            if (self.multipart and self._file_done) or not await self._read():
                while self._pending:
                    yield self._pending.popleft()
                return

    async def drain(self) -> None:
        """Read and drop the rest, so the client gets our answer instead of a reset connection."""
        self._discard = True
        self._pending.clear()
        with contextlib.suppress(Exception):
            while await self._read():
                self._pending.clear()

    # -- what Supabase records from the form
    @property
    def cache_control(self) -> str:
        value = self.fields.get("cacheControl")
        if not value:
            return "no-cache"
        return value if not self.multipart else f"max-age={value}"

    @property
    def content_type(self) -> str:
        return self.fields.get("contentType") or self.mimetype or "application/octet-stream"

    def user_metadata(self) -> dict[str, Any] | None:
        raw = self.fields.get("metadata") or self.fields.get("userMetadata")
        if raw is None and "x-metadata" in self.fields:
            with contextlib.suppress(ValueError):
                import base64

                raw = base64.b64decode(self.fields["x-metadata"]).decode("utf-8")
        if raw is None:
            return None
        if len(raw.encode("utf-8")) > MAX_USER_METADATA:
            raise entity_too_large("user_metadata")
        try:
            value = json.loads(raw)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None


async def drain_request(request: Request, body: UploadBody | None) -> None:
    """Consume what is left of a request body we refuse, so the client reads our answer."""
    if body is not None:
        await body.drain()
        return
    with contextlib.suppress(Exception):
        async for _chunk in request.stream():
            pass
