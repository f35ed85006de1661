"""Lean asyncio HTTP/1.1 clients for the load simulators.

On a 2-core machine the simulator competes with the server for CPU, so its cost per
request matters: httpx's ``AsyncClient`` measured at 1.6 to 4 ms of CPU per request here
(more with larger pools), as much as the server's own work. ``RawHttp`` speaks just the
HTTP/1.1 the benchmarks need — fixed requests with a ``Content-Length`` body, answers
with ``Content-Length`` or chunked bodies — over plain asyncio streams, at a small
fraction of that. ``HttpxClient`` offers the same interface over httpx, for comparison.

Connections: ``keepalive=True`` keeps a pool of up to ``connections`` persistent
connections (as a reverse proxy in front of the server would); ``keepalive=False`` opens
one connection per request and sends ``Connection: close``, as the real agent
(``urllib``) does.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

import httpx


class HttpError(Exception):
    """The connection failed or the answer was not valid HTTP/1.1."""


class Client(Protocol):
    """What the simulators need from an HTTP client."""

    async def request(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        """Send one request; (status, body)."""
        ...

    async def close(self) -> None:
        """Close every connection."""
        ...


_Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class RawHttp:
    """A minimal HTTP/1.1 client over asyncio streams (see the module docstring)."""

    def __init__(self, host: str, port: int, connections: int, *, keepalive: bool = True) -> None:
        self.host, self.port, self.keepalive = host, port, keepalive
        self._slots = asyncio.Semaphore(connections)
        self._idle: list[_Connection] = []
        self._host_header = f"Host: {host}:{port}\r\n".encode()

    async def request(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        """Send one request; (status, body). Raises ``HttpError`` on failure."""
        head = [f"{method} {path} HTTP/1.1\r\n".encode(), self._host_header]
        for name, value in headers.items():
            head.append(f"{name}: {value}\r\n".encode())
        payload = body or b""
        if body is not None or method in ("POST", "PUT"):
            head.append(f"Content-Length: {len(payload)}\r\n".encode())
        if not self.keepalive:
            head.append(b"Connection: close\r\n")
        message = b"".join(head) + b"\r\n" + payload
        async with self._slots:
            reused = bool(self._idle)
            connection = self._idle.pop() if reused else await self._open()
            try:
                status, answer, keep = await self._exchange(connection, message)
            except (OSError, asyncio.IncompleteReadError, HttpError, ValueError) as exc:
                self._discard(connection)
                if not reused:
                    raise HttpError(f"{type(exc).__name__}: {exc}") from exc
                # A kept-alive connection the server closed meanwhile: retry once.
                connection = await self._open()
                try:
                    status, answer, keep = await self._exchange(connection, message)
                except (OSError, asyncio.IncompleteReadError, HttpError, ValueError) as again:
                    self._discard(connection)
                    raise HttpError(f"{type(again).__name__}: {again}") from again
            if keep and self.keepalive:
                self._idle.append(connection)
            else:
                self._discard(connection)
            return status, answer

    async def _open(self) -> _Connection:
        try:
            return await asyncio.open_connection(self.host, self.port)
        except OSError as exc:
            raise HttpError(f"connect: {exc}") from exc

    @staticmethod
    def _discard(connection: _Connection) -> None:
        with contextlib.suppress(Exception):
            connection[1].close()

    @staticmethod
    async def _exchange(connection: _Connection, message: bytes) -> tuple[int, bytes, bool]:
        reader, writer = connection
        writer.write(message)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
            raise HttpError(f"bad status line {lines[0]!r}")
        status = int(parts[1])
        fields: dict[str, str] = {}
        for line in lines[1:]:
            if ":" in line:
                name, _, value = line.partition(":")
                fields[name.strip().lower()] = value.strip()
        keep = fields.get("connection", "").lower() != "close"
        if "content-length" in fields:
            body = await reader.readexactly(int(fields["content-length"]))
        elif fields.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await reader.readuntil(b"\r\n")
                    break
                chunks.append(await reader.readexactly(size))
                await reader.readexactly(2)
            body = b"".join(chunks)
        else:
            body, keep = await reader.read(), False
        return status, body, keep

    async def close(self) -> None:
        """Close the idle connections."""
        while self._idle:
            self._discard(self._idle.pop())


class HttpxClient:
    """The same interface over ``httpx.AsyncClient`` (for comparison)."""

    def __init__(self, base_url: str, connections: int, *, keepalive: bool = True) -> None:
        self._client = httpx.AsyncClient(
            base_url=base_url,
            limits=httpx.Limits(
                max_connections=connections,
                max_keepalive_connections=connections if keepalive else 0,
            ),
            timeout=httpx.Timeout(60.0),
        )

    async def request(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        """Send one request; (status, body). Raises ``HttpError`` on failure."""
        try:
            response = await self._client.request(method, path, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise HttpError(f"{type(exc).__name__}: {exc}") from exc
        return response.status_code, response.content

    async def close(self) -> None:
        """Close the pool."""
        await self._client.aclose()


def make_client(
    kind: str, base_url: str, connections: int, *, keepalive: bool = True
) -> RawHttp | HttpxClient:
    """``raw`` or ``httpx`` client for ``base_url`` (``http://host:port``)."""
    if kind == "httpx":
        return HttpxClient(base_url, connections, keepalive=keepalive)
    host, _, port = base_url.removeprefix("http://").partition(":")
    return RawHttp(host, int(port or 80), connections, keepalive=keepalive)
