"""Reusable test rigs: real services started for tests (PgBouncer, notebooks) and tool requirements."""

from __future__ import annotations

import os
import shutil
import socket
import time
from pathlib import Path

import pytest

REQUIRE_TOOLS = os.environ.get("WORKBENCH_REQUIRE_TOOLS") == "1"
ROOT = Path(__file__).resolve().parents[1]


def require_tool(name: str, why: str) -> str:
    """The tool's path; skip (or fail under CI, where ``.ci/run`` installs it) when it is missing."""
    path = shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None)
    if path is None:
        message = f"{name} is not installed ({why}); install it with `apt-get install {name}`"
        if REQUIRE_TOOLS:
            pytest.fail(f"{message} -- WORKBENCH_REQUIRE_TOOLS=1 makes a missing tool a failure")
        pytest.skip(message)
    return path


def wait_for_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)  # polling until the port accepts connections
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def wait_for_port_closed(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) != 0:
                return
        time.sleep(0.02)  # polling until the port is released
    raise TimeoutError(f"127.0.0.1:{port} still accepts connections after {timeout}s")


class RoundTripCounter:
    """A TCP proxy in front of PostgreSQL that counts client round trips: every simple ``Query`` ('Q'),
    extended-protocol ``Sync`` ('S') and ``Flush`` ('H') message ends an exchange the client waits on."""

    def __init__(self, backend_port: int, password: str = "") -> None:
        self.backend_port = backend_port
        self.password = password  # the client authenticates through the proxy
        self.port = 0
        self.round_trips = 0
        self.flights = 0  # client writes that follow an answer: what pipelining saves (issue 13)
        self.messages: list[str] = []
        self._server: object | None = None
        self._client_spoke_last = False

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres:{self.password}@127.0.0.1:{self.port}/postgres"

    def reset(self) -> None:
        self.round_trips = self.flights = 0
        self.messages.clear()

    async def start(self) -> None:
        import asyncio

        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self._server = server
        self.port = server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        server = self._server
        if server is not None:
            server.close()  # type: ignore[attr-defined]
            await server.wait_closed()  # type: ignore[attr-defined]

    async def _handle(self, client_reader, client_writer) -> None:  # type: ignore[no-untyped-def]
        import asyncio

        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self.backend_port)

        async def pump_server() -> None:
            try:
                while data := await server_reader.read(65536):
                    self._client_spoke_last = False
                    client_writer.write(data)
                    await client_writer.drain()
            finally:
                client_writer.close()

        task = asyncio.create_task(pump_server())
        try:
            startup = True
            buf = b""
            while data := await client_reader.read(65536):
                if not self._client_spoke_last and not startup:
                    self.flights += 1
                self._client_spoke_last = True
                server_writer.write(data)
                await server_writer.drain()
                buf += data
                while True:
                    if startup:
                        if len(buf) < 4:
                            break
                        length = int.from_bytes(buf[:4], "big")
                        if len(buf) < length:
                            break
                        code = int.from_bytes(buf[4:8], "big")
                        buf = buf[length:]
                        if code not in (80877103, 80877104):  # SSLRequest / GSSENCRequest
                            startup = False
                        continue
                    if len(buf) < 5:
                        break
                    kind = chr(buf[0])
                    length = int.from_bytes(buf[1:5], "big")
                    if len(buf) < 1 + length:
                        break
                    buf = buf[1 + length :]
                    self.messages.append(kind)
                    if kind in "QSH":
                        self.round_trips += 1
        finally:
            server_writer.close()
            task.cancel()
