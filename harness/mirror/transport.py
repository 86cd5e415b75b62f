"""Sending a recorded request to one environment and capturing its answer as a `Response`.

Used by the replay and the shadow worker alike: whatever goes wrong on the way (refused, reset,
timeout, TLS, an answer that is not HTTP) comes back as a `Response` with `error` set, never as
an exception.

Built on aiohttp: its client costs about 0.1 ms of CPU per request where httpx's costs 1 to 2.4 ms
on this machine (measured side by side against the same server), and the mirror workers and the
replay spend most of their time sending. The timeout bounds the whole request, connect to last
byte, so a candidate that trickles its answer cannot hold a mirror open.
"""

from __future__ import annotations

import asyncio
import errno
import re
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass

import aiohttp
from yarl import URL

from harness.model import Request, Response
from harness.settings import ShadowSettings
from harness.store.bodies import MAX_DECODED_BYTES, body_from_wire

# Hop-by-hop and framing headers: aiohttp sets its own, and the recorded body is already decoded.
_DROP_REQUEST_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "content-encoding",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "proxy-connection",
        "upgrade",
        "te",
        "trailer",
    }
)

Client = aiohttp.ClientSession
_RECEIVED = re.compile(r"received (\d+) of (\d+) bytes")
MAX_ANSWER_BYTES = MAX_DECODED_BYTES  # an answer larger than this is an error, not held


class _TooLarge(Exception):
    pass


@dataclass(frozen=True, slots=True)
class TransportSettings:
    """How to reach an environment: timeout per request, pool size and TLS verification."""

    timeout_s: float = ShadowSettings().timeout_s  # one timeout default, declared with the proxy's
    max_connections: int = 64
    verify: bool = True
    ca_bundle: str | None = None

    def ssl_context(self) -> ssl.SSLContext | bool:
        """What aiohttp takes as `ssl`: False turns verification off."""
        if not self.verify:
            return False
        return ssl.create_default_context(cafile=self.ca_bundle)


def make_client(settings: TransportSettings) -> Client:
    """A client session with a bounded pool, no cookies kept, no proxy from the environment.
    Must be created (and used) inside a running event loop."""
    connector = aiohttp.TCPConnector(limit=settings.max_connections, limit_per_host=0,
                                     ssl=settings.ssl_context(), enable_cleanup_closed=True)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=settings.timeout_s),
        cookie_jar=aiohttp.DummyCookieJar(),
        trust_env=False,
        auto_decompress=False,  # decoded like the primary's answer, bombs included
    )


def _wire_text(text: str) -> str | None:
    """A recorded header value as aiohttp must be given it to put the client's exact bytes on
    the wire (it writes UTF-8). Recorded values were decoded as latin-1, one character per byte;
    None when those bytes are not UTF-8 (aiohttp cannot send them unchanged). Text that never
    came off the wire (a hand-written recording) is sent as it is."""
    if text.isascii():
        return text
    try:
        raw = text.encode("latin-1")
    except UnicodeEncodeError:
        return text
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def unsendable(request: Request) -> str | None:
    """Why `request` cannot be sent as the client sent it, or None: a header value whose bytes
    are not UTF-8."""
    for name, value in request.headers:
        if _wire_text(value) is None:
            return f"request header {name.lower()} is not UTF-8: it cannot be mirrored unchanged"
    return None


def request_headers(request: Request) -> list[tuple[str, str]]:
    """The request's headers fit for re-sending (see `unsendable` for those that are not)."""
    return [(name, _wire_text(value) or value) for name, value in request.headers
            if name.lower() not in _DROP_REQUEST_HEADERS]


def describe_error(exc: BaseException, timeout_s: float) -> str:
    """A short reason for the recordings, naming the fault and where it happened: 'timeout after
    2s', 'connection refused', 'connection reset while reading the answer', 'connection closed
    mid-answer: ...', 'protocol error (not a valid HTTP answer): ...'."""
    if isinstance(exc, _TooLarge):
        return str(exc)
    if isinstance(exc, TimeoutError | asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        return f"timeout after {timeout_s:g}s"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"tls error: certificate not trusted ({exc.certificate_error})"
    if isinstance(exc, aiohttp.ClientSSLError | ssl.SSLError):
        return f"tls error: {exc}"
    # aiohttp sometimes names the reset only in the message of the error it raises.
    reset = "connection reset" in str(exc).lower() or any(
        isinstance(cause, ConnectionResetError)
        or getattr(cause, "errno", None) == errno.ECONNRESET for cause in _causes(exc))
    if isinstance(exc, aiohttp.ClientConnectorError):
        if isinstance(exc.os_error, ConnectionRefusedError) or \
                exc.os_error.errno == errno.ECONNREFUSED:
            return "connection refused"
        return "connection reset while connecting" if reset else f"connect error: {exc.os_error}"
    if isinstance(exc, aiohttp.ClientPayloadError):
        if reset:
            return "connection reset while reading the answer"
        counted = _RECEIVED.search(str(exc))
        return "connection closed mid-answer" + (
            f" (received {counted.group(1)} of {counted.group(2)} bytes)" if counted
            else f": {_short(exc)}")
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "connection closed before an answer (server disconnected without sending a " \
               "response)"
    if isinstance(exc, aiohttp.ClientResponseError):  # the answer could not be parsed
        return f"protocol error (not a valid HTTP answer): {_short(exc.message)}"
    if reset:
        return "connection reset before an answer"
    return f"{type(exc).__name__}: {_short(exc)}"


def _short(value: object, limit: int = 200) -> str:
    text = " ".join(str(value).split())  # parser errors span lines
    return text if len(text) <= limit else text[:limit] + "…"


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def url_of(base_url: str, request: Request) -> URL:
    """The request's URL on the environment at `base_url`: the path exactly as recorded
    (percent-escapes kept); the query exactly as the client sent it when known (a live mirror
    whose query nothing rewrote), else re-encoded from its recorded pairs."""
    url = base_url.rstrip("/") + request.path
    if request.raw_query is not None:
        return URL(f"{url}?{request.raw_query}", encoded=True)
    return URL(url, encoded=True).with_query(request.query) if request.query else \
        URL(url, encoded=True)


async def _read(answer: aiohttp.ClientResponse) -> bytes:
    """The answer's body, or _TooLarge past MAX_ANSWER_BYTES (never held whole beyond that)."""
    length = answer.content_length
    if length is not None and length <= MAX_ANSWER_BYTES:
        return await answer.read()
    content = bytearray()
    async for chunk in answer.content.iter_any():
        content += chunk
        if len(content) > MAX_ANSWER_BYTES:
            raise _TooLarge(f"answer over {MAX_ANSWER_BYTES // 2**20} MiB")
    return bytes(content)


async def send(client: Client, base_url: str, request: Request, *, timeout_s: float) -> Response:
    """Send `request` to the environment at `base_url`; never raises for transport failures."""
    started = time.perf_counter()
    try:
        async with client.request(
            request.method,
            url_of(base_url, request),
            headers=request_headers(request),
            data=request.body.raw or None,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        ) as answer:
            content = await _read(answer)
    except (aiohttp.ClientError, OSError, TimeoutError, ssl.SSLError, ValueError,
            _TooLarge) as exc:
        return Response(
            latency_ms=(time.perf_counter() - started) * 1000,
            error=describe_error(exc, timeout_s),
        )
    return Response(
        status=answer.status,
        headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in answer.raw_headers],
        body=body_from_wire(content, answer.headers.get("content-encoding")),
        latency_ms=(time.perf_counter() - started) * 1000,
    )
