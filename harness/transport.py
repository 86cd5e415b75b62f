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
import ssl
import time
from dataclasses import dataclass

import aiohttp
from yarl import URL

from harness.model import Request, Response
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
MAX_ANSWER_BYTES = MAX_DECODED_BYTES  # an answer larger than this is an error, not held


class _TooLarge(Exception):
    pass


@dataclass(frozen=True, slots=True)
class TransportSettings:
    """How to reach an environment: timeout per request, pool size and TLS verification."""

    timeout_s: float = 5.0
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


def request_headers(request: Request) -> list[tuple[str, str]]:
    """The request's headers fit for re-sending."""
    return [(k, v) for k, v in request.headers if k.lower() not in _DROP_REQUEST_HEADERS]


def describe_error(exc: BaseException, timeout_s: float) -> str:
    """A short reason for the recordings: 'timeout after 2s', 'connection refused', ..."""
    if isinstance(exc, _TooLarge):
        return str(exc)
    if isinstance(exc, TimeoutError | asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        return f"timeout after {timeout_s:g}s"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"tls error: certificate not trusted ({exc.certificate_error})"
    if isinstance(exc, aiohttp.ClientSSLError | ssl.SSLError):
        return f"tls error: {exc}"
    for cause in _causes(exc):
        if isinstance(cause, ConnectionRefusedError) or getattr(cause, "errno", None) == \
                errno.ECONNREFUSED:
            return "connection refused"
        if isinstance(cause, ConnectionResetError) or getattr(cause, "errno", None) == \
                errno.ECONNRESET:
            return "connection reset"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"connect error: {exc.os_error}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "connection closed before an answer"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return f"answer cut short: {exc}"
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"not an HTTP answer: {exc.message}"
    return f"{type(exc).__name__}: {exc}"


def _causes(exc: BaseException):
    seen = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def url_of(base_url: str, request: Request) -> URL:
    """The request's URL on the environment at `base_url`: the path exactly as recorded
    (percent-escapes kept), the query re-encoded from its recorded pairs."""
    url = URL(base_url.rstrip("/") + request.path, encoded=True)
    return url.with_query(request.query) if request.query else url


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
