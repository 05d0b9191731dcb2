"""A TCP proxy in front of PostgreSQL (or PgBouncer) that counts the client's round trips.

Every simple ``Query`` ('Q'), extended-protocol ``Sync`` ('S') and ``Flush`` ('H') message ends an exchange
the client then waits on, so counting them counts round trips. (The same idea as ``tests/rigs.py``.)
"""

from __future__ import annotations

import asyncio
import contextlib

_SSL_OR_GSS = (80877103, 80877104)


class RoundTripCounter:
    """``await start()``, point clients at :attr:`port`, read :attr:`round_trips`, ``await stop()``."""

    def __init__(self, backend_port: int) -> None:
        self.backend_port = backend_port
        self.port = 0
        self.round_trips = 0
        self._server: asyncio.Server | None = None

    def reset(self) -> None:
        self.round_trips = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self.backend_port)

        async def pump_back() -> None:
            try:
                while data := await server_reader.read(65536):
                    client_writer.write(data)
                    await client_writer.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                client_writer.close()

        back = asyncio.create_task(pump_back())
        try:
            startup, buf = True, b""
            while data := await client_reader.read(65536):
                server_writer.write(data)
                await server_writer.drain()
                buf += data
                while True:
                    if startup:
                        if len(buf) < 8 or len(buf) < int.from_bytes(buf[:4], "big"):
                            break
                        length, code = int.from_bytes(buf[:4], "big"), int.from_bytes(buf[4:8], "big")
                        buf = buf[length:]
                        startup = code in _SSL_OR_GSS
                        continue
                    if len(buf) < 5 or len(buf) < 1 + int.from_bytes(buf[1:5], "big"):
                        break
                    kind = chr(buf[0])
                    buf = buf[1 + int.from_bytes(buf[1:5], "big") :]
                    if kind in "QSH":
                        self.round_trips += 1
        except (ConnectionError, OSError):
            pass
        finally:
            server_writer.close()
            back.cancel()
