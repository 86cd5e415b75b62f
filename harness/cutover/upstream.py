"""A small HTTP/1.1 keep-alive client for moved requests, the proxy's hot path.

aiohttp costs about as much CPU per request as the rest of the proxy's work on one (it builds a
dozen objects per request); this client writes the request in one call and parses the answer
with bytes operations, so serving a moved request costs the proxy no more than forwarding it to
the primary. It knows whether a failed request was sent: `NotSent` (the connection could not be
opened: nothing reached the candidate) or `SentFailed` (it may have been received).

A kept-alive connection may be closed by the server at any moment (uvicorn after 5 idle
seconds), and a request written into one that is closing fails without having been read. So an
unsafe request always gets a fresh connection (a failure after it is sent is then a real doubt),
idle connections are dropped after `IDLE_S`, and a safe request that failed on a reused one is
sent once more on a fresh one.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Sequence
from urllib.parse import urlsplit

MAX_BODY = 64 * 1024 * 1024
MAX_HEAD = 1024 * 1024
IDLE_MAX = 256
IDLE_S = 3.0  # under uvicorn's (and most servers') keep-alive timeout
SAFE = (b"GET", b"HEAD", b"OPTIONS")
HOP = frozenset({b"host", b"content-length", b"transfer-encoding", b"connection", b"keep-alive",
                 b"proxy-connection", b"upgrade", b"te", b"trailer", b"expect"})
Fields = list[tuple[bytes, bytes]]


class _Stale(Exception):
    """A reused connection was closed under a safe request: send it again."""


class NotSent(Exception):
    """The candidate could not be reached: nothing was sent."""


class SentFailed(Exception):
    """The request may have reached the candidate, then the exchange failed."""


class CandidateClient:
    """Keep-alive connections to one base URL (http or https)."""

    def __init__(self, base_url: str, timeout_s: float, verify: bool | ssl.SSLContext = True
                 ) -> None:
        parts = urlsplit(base_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.prefix = parts.path.rstrip("/").encode()
        self.host_header = parts.netloc.encode()
        self.timeout_s = timeout_s
        self.ssl: ssl.SSLContext | None = None
        if parts.scheme == "https":
            if isinstance(verify, ssl.SSLContext):
                self.ssl = verify
            else:
                self.ssl = ssl.create_default_context()
                if not verify:
                    self.ssl.check_hostname = False
                    self.ssl.verify_mode = ssl.CERT_NONE
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []

    async def request(self, method: bytes, target: bytes, fields: Sequence[tuple[bytes, bytes]],
                      body: bytes) -> tuple[int, bytes, Fields, bytes]:
        """(status, reason, header fields without hop-by-hop ones, body) of the answer; NotSent
        or SentFailed (with a short reason) otherwise."""
        safe = method in SAFE
        try:
            return await self._request(method, target, fields, body, fresh=not safe)
        except _Stale:  # a safe request into a connection the server was closing
            return await self._request(method, target, fields, body, fresh=True)

    async def _request(self, method: bytes, target: bytes, fields: Sequence[tuple[bytes, bytes]],
                       body: bytes, *, fresh: bool) -> tuple[int, bytes, Fields, bytes]:
        try:
            async with asyncio.timeout(self.timeout_s):
                reader, writer, reused = await self._connection(fresh)
        except TimeoutError:
            raise NotSent(f"connect timeout after {self.timeout_s:g}s") from None
        head = [method, b" ", self.prefix + target, b" HTTP/1.1\r\nHost: ", self.host_header,
                b"\r\n"]
        for name, value in fields:
            if name.lower() not in HOP:
                head += [name, b": ", value, b"\r\n"]
        if body or method not in (b"GET", b"HEAD", b"OPTIONS", b"DELETE"):
            head += [b"Content-Length: ", str(len(body)).encode(), b"\r\n"]
        head.append(b"\r\n")
        try:
            async with asyncio.timeout(self.timeout_s):
                writer.write(b"".join(head) + body)
                status, reason, answer, content, keep = await self._answer(
                    reader, method == b"HEAD")
        except TimeoutError:
            writer.close()
            raise SentFailed(f"timeout after {self.timeout_s:g}s") from None
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ValueError) as exc:
            writer.close()
            if reused and method in SAFE and isinstance(
                    exc, asyncio.IncompleteReadError | ConnectionResetError):
                raise _Stale from None
            raise SentFailed(_describe(exc)) from None
        if keep and len(self._idle) < IDLE_MAX:
            self._idle.append((reader, writer, time.monotonic()))
        else:
            writer.close()
        return status, reason, answer, content

    async def _connection(self, fresh: bool
                          ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bool]:
        oldest = time.monotonic() - IDLE_S
        while self._idle and not fresh:
            reader, writer, since = self._idle.pop()
            if since > oldest and not reader.at_eof() and not writer.is_closing():
                return reader, writer, True
            writer.close()
        try:
            reader, writer = await asyncio.open_connection(self.host, self.port, ssl=self.ssl,
                                                           limit=MAX_HEAD)
            return reader, writer, False
        except OSError as exc:  # refused, unreachable, TLS failure: nothing was sent
            why = _describe(exc)
            raise NotSent(why if why == "connection refused" else f"connect error: {why}") \
                from None

    async def _answer(self, reader: asyncio.StreamReader, head_only: bool
                      ) -> tuple[int, bytes, Fields, bytes, bool]:
        while True:
            lines = (await reader.readuntil(b"\r\n\r\n"))[:-4].split(b"\r\n")
            version, _, rest = lines[0].partition(b" ")
            code, _, reason = rest.partition(b" ")
            status = int(code)
            if not version.startswith(b"HTTP/1.") or not 100 <= status < 600:
                raise ValueError(f"not an HTTP/1.1 answer: {lines[0][:60]!r}")
            if status >= 200 or status == 101:
                break
        fields: Fields = []
        length: int | None = None
        chunked, close = False, version == b"HTTP/1.0"
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            value = value.strip()
            lower = name.lower()
            if lower == b"content-length":
                length = int(value)
            elif lower == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif lower == b"connection":
                close = b"close" in value.lower() or (close and b"keep-alive" not in
                                                      value.lower())
            if lower not in HOP:
                fields.append((name, value))
        if head_only or status in (204, 304) or status < 200:
            body = b""
        elif chunked:
            body = await _chunks(reader)
        elif length is not None:
            if length > MAX_BODY:
                raise ValueError(f"answer over {MAX_BODY // 2**20} MiB")
            body = await reader.readexactly(length)
        else:
            body, close = await reader.read(MAX_BODY + 1), True
            if len(body) > MAX_BODY:
                raise ValueError(f"answer over {MAX_BODY // 2**20} MiB")
        return status, reason, fields, body, not close

    async def close(self) -> None:
        """Close the idle connections."""
        for _, writer, _ in self._idle:
            writer.close()
        self._idle.clear()


async def _chunks(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0].strip(), 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass  # trailers
            return bytes(body)
        body += await reader.readexactly(size)
        if len(body) > MAX_BODY:
            raise ValueError(f"answer over {MAX_BODY // 2**20} MiB")
        await reader.readexactly(2)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, asyncio.IncompleteReadError):
        return "connection closed mid-answer"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    with contextlib.suppress(Exception):
        return f"{type(exc).__name__}: {exc}"[:200]
    return type(exc).__name__
