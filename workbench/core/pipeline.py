"""Pipelining workbench-made messages with asyncpg's own, so a cell or a request costs one flight.

asyncpg has no public pipeline API: each operation writes its messages and waits for ReadyForQuery. A
round trip to a remote project costs 20-200 ms, and a cell used to pay one for ``BEGIN`` + identity, one per
statement and one for ``ROLLBACK`` + the session reset. :class:`Pipeline` sits between the connection's
transport and asyncpg's protocol and lets the workbench send its *own* simple-protocol messages (``BEGIN``
and ``set_config``, ``ROLLBACK`` and the reset; workbench-made SQL with values quoted by
:func:`workbench.core.impersonation.quote_literal_dollar`, never user text) in the same write as asyncpg's
next extended-protocol operation, and strips their answers before asyncpg sees them:

- :meth:`Pipeline.prefix` queues a message sent just before the next operation (the prologue);
- :meth:`Pipeline.trail` queues one sent just after the next operation that ends with ``Sync`` (the
  epilogue). That operation's ``ReadyForQuery`` is held back until the epilogue's arrives, so asyncpg's
  transaction status is the one after the epilogue; the held status is kept in :attr:`Pipeline.held_status`.

User statements still go through asyncpg's extended protocol, one statement per Parse, so PostgreSQL itself
refuses a hidden second command (issue 12). What the workbench messages answered (an error, the final
transaction status) is recorded on the :class:`Silent` each call returns; the caller decides what it means.

Writes are corked while something is queued and flushed on the next turn of the event loop, so the
prologue, asyncpg's messages (a Parse and its Bind/Execute/Sync are separate writes) and the epilogue
leave as one write: one flight on the wire. Installing needs a pure-Python asyncio transport (plain TCP
or TLS); on any other (uvloop) :func:`pipeline_for` returns None and callers keep their round trips.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import struct
from dataclasses import dataclass, field
from typing import Any

_Z = ord("Z")
_E = ord("E")
_D = ord("D")
_PASS_ALONG = {ord("S"), ord("A")}  # ParameterStatus, NotificationResponse: asyncpg tracks them in any state
SYNC = b"S\x00\x00\x00\x04"
DESCRIBE_UNNAMED = b"D\x00\x00\x00\x06S\x00"
_LENGTH = struct.Struct(">I")  # a message's length, after its kind byte
_PARAMS, _COLUMNS, _NO_DATA = ord("t"), ord("T"), ord("n")


@dataclass
class Silent:
    """The answer to one workbench message whose response asyncpg never sees."""

    sql: str
    error: dict[str, str] | None = None
    status: str = ""  # ReadyForQuery's transaction status: I (idle), T (in transaction), E (failed)
    done: bool = False

    def exception(self) -> Exception | None:
        """The server's error as the asyncpg exception asyncpg itself would have raised, or None."""
        if self.error is None:
            return None
        import asyncpg

        return asyncpg.PostgresError.new(self.error, query=self.sql)


@dataclass
class Hold:
    """Forward one operation's answer but keep its ReadyForQuery until the epilogue's arrives. Rows past
    ``max_row_bytes`` (wire bytes) are dropped, not decoded, and :attr:`overflow` says so: the caller then
    runs the statement again the bounded way."""

    max_row_bytes: int | None = None
    row_bytes: int = 0
    overflow: bool = False
    status: str = ""
    # (parameter type oids, (column name, type oid) pairs): the description a statement parsed again must
    # match, checked by a Describe sent after its Parse; a mismatch sets ``stale`` and drops its rows
    expect: tuple[tuple[int, ...], tuple[tuple[str, int], ...]] | None = None
    stale: bool = False


@dataclass
class Pipeline:
    """Per asyncpg connection: see the module docstring."""

    protocol: Any
    transport: Any
    _write: Any
    _writelines: Any
    held_status: str = ""
    # statements described on this connection, for the unnamed statement (statement cache off, poolers):
    # parsed again in the same flight as their Bind, their description checked by a Describe (see Hold)
    described: collections.OrderedDict[str, Any] = field(default_factory=collections.OrderedDict)
    _prefix: list[tuple[bytes, Silent]] = field(default_factory=list)
    _trailer: tuple[bytes, Hold, Silent] | None = None
    _corked: list[bytes] | None = None
    _tokens: collections.deque[Silent | Hold] = field(default_factory=collections.deque)
    _buf: bytearray = field(default_factory=bytearray)
    _held_z: bytes | None = None

    # -- queueing ------------------------------------------------------------------------------------
    def prefix(self, sql: str) -> Silent:
        """Send ``sql`` (simple protocol) just before the next operation, in the same write."""
        silent = Silent(sql)
        self._prefix.append((_query_message(sql), silent))
        return silent

    def trail(
        self,
        sql: str,
        max_row_bytes: int | None = None,
        expect: tuple[tuple[int, ...], tuple[tuple[str, int], ...]] | None = None,
    ) -> tuple[Hold, Silent]:
        """Send ``sql`` (simple protocol) right after the next operation that ends with Sync; that
        operation's answer is described by the returned :class:`Hold`, ``sql``'s by the :class:`Silent`."""
        if self._trailer is not None:
            raise RuntimeError("an epilogue is already queued on this connection")
        hold, silent = Hold(max_row_bytes, expect=expect), Silent(sql)
        self._trailer = (_query_message(sql), hold, silent)
        return hold, silent

    def discard_queued(self) -> None:
        """Forget messages not yet sent (a transaction that ran no statement needs no BEGIN)."""
        self._prefix.clear()
        self._trailer = None

    @property
    def pending(self) -> bool:
        """Messages queued or answers outstanding."""
        return bool(self._prefix or self._trailer or self._tokens or self._corked)

    # -- the transport side --------------------------------------------------------------------------
    def write(self, data: Any) -> None:
        if self._corked is None and not self._prefix and self._trailer is None:
            self._write(data)
            return
        chunk = bytes(data)
        if self._corked is None:
            self._corked = []
            asyncio.get_running_loop().call_soon(self._flush)
        for message, silent in self._prefix:
            self._corked.append(message)
            self._tokens.append(silent)
        self._prefix.clear()
        self._corked.append(chunk)
        if self._trailer is not None and self._trailer[1].expect is not None and chunk[:1] == b"P":
            self._corked.append(DESCRIBE_UNNAMED)  # the description is checked against the expected one
        if self._trailer is not None and chunk.endswith(SYNC):
            message, hold, silent = self._trailer
            self._trailer = None
            self._corked.append(message)
            self._tokens.append(hold)
            self._tokens.append(silent)

    def writelines(self, chunks: Any) -> None:
        if self._corked is None and not self._prefix and self._trailer is None:
            self._writelines(chunks)
            return
        for chunk in chunks:
            self.write(chunk)

    def _flush(self) -> None:
        corked, self._corked = self._corked, None
        if corked and not self.transport.is_closing():
            self._write(b"".join(corked))

    # -- the protocol side ---------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if not self._tokens and not self._buf:
            self.protocol.data_received(data)
            return
        self._buf += data
        out = self._strip()
        if out:
            self.protocol.data_received(out)

    def _strip(self) -> bytes:
        """Walk whole messages while answers are expected; return what asyncpg should see, in order."""
        buf, pos, size, out = self._buf, 0, len(self._buf), bytearray()
        start = 0  # start of the run of messages to forward
        while self._tokens and pos + 5 <= size:
            end = pos + 1 + _LENGTH.unpack_from(buf, pos + 1)[0]
            if end > size:
                break
            kind, token = buf[pos], self._tokens[0]
            if kind == _D and isinstance(token, Hold) and not token.stale:
                skipped = _skip_rows(token, buf, pos, size)  # the bulk of a result, in a tight loop
                if skipped != pos:
                    pos = skipped
                    continue
                # else a row at or past the budget: the general case below drops it
            if isinstance(token, Hold):
                if token.expect is not None and kind in (_PARAMS, _COLUMNS, _NO_DATA):
                    out += buf[start:pos]
                    start = end  # our Describe's answer: checked here, never shown to asyncpg
                    if not _matches(kind, bytes(buf[pos + 5 : end]), token.expect):
                        token.stale = True
                elif kind == _D and token.stale:
                    out += buf[start:pos]
                    start = end  # decoded with the wrong types otherwise: dropped, the caller runs again
                elif kind == _D and token.max_row_bytes is not None:
                    token.row_bytes += end - pos
                    if token.row_bytes > token.max_row_bytes:
                        token.overflow = True
                        out += buf[start:pos]
                        start = end  # dropped: never decoded
                elif kind == _Z:
                    out += buf[start:pos]
                    token.status = chr(buf[pos + 5])
                    self._held_z = bytes(buf[pos:end])
                    self._tokens.popleft()
                    start = end
            else:
                if kind in _PASS_ALONG:
                    pos = end
                    continue  # part of the run: forwarded with what surrounds it
                out += buf[start:pos]
                start = end
                if kind == _E:
                    token.error = token.error or _error_fields(bytes(buf[pos + 5 : end]))
                elif kind == _Z:
                    token.status = chr(buf[pos + 5])
                    token.done = True
                    self._tokens.popleft()
                    if self._held_z is not None and not any(isinstance(t, Silent) for t in self._tokens):
                        self.held_status = self._held_z[5:6].decode()
                        out += self._held_z[:5] + buf[pos + 5 : end]  # the epilogue's final status
                        self._held_z = None
            pos = end
        if not self._tokens:
            out += buf[start:]
            self._buf = bytearray()
        else:
            out += buf[start:pos]
            del buf[:pos]
        return bytes(out)

    def __getattr__(self, name: str) -> Any:
        # connection_lost, eof_received, pause_writing, resume_writing, ...: asyncpg's protocol handles them
        return getattr(self.protocol, name)


def _skip_rows(hold: Hold, buf: bytearray, pos: int, size: int) -> int:
    """Past the whole DataRow messages from ``pos`` that fit ``hold``'s byte budget (they are forwarded as
    they are); the position of the first message that is not one of them. Per row this is one header read,
    which keeps a 10^5-row result's walk a small fraction of asyncpg's decoding of it."""
    room = float("inf") if hold.max_row_bytes is None else hold.max_row_bytes - hold.row_bytes
    start, unpack = pos, _LENGTH.unpack_from
    while pos + 5 <= size and buf[pos] == _D:
        end = pos + 1 + unpack(buf, pos + 1)[0]
        if end > size or end - start > room:
            break
        pos = end
    hold.row_bytes += pos - start
    return pos


def _matches(kind: int, body: bytes, expect: tuple[tuple[int, ...], tuple[tuple[str, int], ...]]) -> bool:
    """Does a ParameterDescription / RowDescription / NoData answer match the expected description?"""
    params, columns = expect
    if kind == _NO_DATA:
        return not columns
    count = int.from_bytes(body[:2], "big")
    if kind == _PARAMS:
        return tuple(int.from_bytes(body[2 + 4 * i : 6 + 4 * i], "big") for i in range(count)) == params
    seen, pos = [], 2
    for _ in range(count):
        nul = body.index(b"\x00", pos)
        name = body[pos:nul].decode(errors="replace")
        type_oid = int.from_bytes(body[nul + 7 : nul + 11], "big")
        seen.append((name, type_oid))
        pos = nul + 19
    return tuple(seen) == columns


def _query_message(sql: str) -> bytes:
    body = sql.encode() + b"\x00"
    return b"Q" + (len(body) + 4).to_bytes(4, "big") + body


def _error_fields(body: bytes) -> dict[str, str]:
    fields: dict[str, str] = {}
    for part in body.split(b"\x00"):
        if part:
            fields[chr(part[0])] = part[1:].decode(errors="replace")
    return fields


def pipeline_for(conn: Any) -> Pipeline | None:
    """The connection's :class:`Pipeline`, installed on first use (it is the transport's protocol, so it
    lives exactly as long as the connection); None where it cannot be (a transport that is not asyncio's
    own, a closed connection), and callers then send each message on its own."""
    transport = getattr(conn, "_transport", None)
    current = transport.get_protocol() if transport is not None else None
    if isinstance(current, Pipeline):
        return current
    with contextlib.suppress(Exception):
        return _install(conn)
    return None


def _install(conn: Any) -> Pipeline | None:
    transport, protocol = conn._transport, conn._protocol
    if conn.is_closed() or transport is None or not type(transport).__module__.startswith("asyncio."):
        return None
    if getattr(transport, "get_protocol", lambda: None)() is not protocol:
        return None
    pipeline = Pipeline(protocol, transport, transport.write, transport.writelines)
    transport.write = pipeline.write
    transport.writelines = pipeline.writelines
    transport.set_protocol(pipeline)
    return pipeline
