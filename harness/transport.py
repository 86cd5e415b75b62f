"""Sending a recorded request to one environment and capturing its answer as a `Response`.

Used by the replay and the shadow worker alike: whatever goes wrong on the way (refused, reset,
timeout, TLS) comes back as a `Response` with `error` set, never as an exception.
"""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass

import httpx

from harness.model import Body, Request, Response

# Hop-by-hop and framing headers: httpx sets its own, and the recorded body is already decoded.
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


@dataclass(frozen=True, slots=True)
class TransportSettings:
    """How to reach an environment: timeout per request, pool size and TLS verification."""

    timeout_s: float = 5.0
    max_connections: int = 64
    verify: bool = True
    ca_bundle: str | None = None

    def ssl_context(self) -> ssl.SSLContext | bool:
        """What httpx takes as `verify`."""
        if not self.verify:
            return False
        if self.ca_bundle:
            return ssl.create_default_context(cafile=self.ca_bundle)
        return True


def make_client(settings: TransportSettings) -> httpx.AsyncClient:
    """An async client with a bounded pool, no redirects followed, no cookies kept."""
    limits = httpx.Limits(
        max_connections=settings.max_connections,
        max_keepalive_connections=settings.max_connections,
    )
    return httpx.AsyncClient(
        timeout=httpx.Timeout(settings.timeout_s),
        limits=limits,
        verify=settings.ssl_context(),
        follow_redirects=False,
        trust_env=False,
    )


def request_headers(request: Request) -> list[tuple[str, str]]:
    """The request's headers fit for re-sending."""
    return [(k, v) for k, v in request.headers if k.lower() not in _DROP_REQUEST_HEADERS]


def describe_error(exc: BaseException, timeout_s: float) -> str:
    """A short reason for the recordings: 'timeout after 2.0s', 'connection refused', ..."""
    if isinstance(exc, httpx.TimeoutException):
        return f"timeout after {timeout_s:g}s"
    for cause in _causes(exc):
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, ConnectionResetError):
            return "connection reset"
    if isinstance(exc, httpx.ConnectError):
        text = str(exc).lower()
        if "refused" in text:
            return "connection refused"
        if "ssl" in text or "certificate" in text:
            return f"tls error: {exc}"
        return f"connect error: {exc}"
    if isinstance(exc, httpx.RemoteProtocolError):
        return f"reset or protocol error: {exc}"
    if isinstance(exc, httpx.ReadError | httpx.WriteError):
        return f"connection reset: {exc}"
    return f"{type(exc).__name__}: {exc}"


def _causes(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


async def send(
    client: httpx.AsyncClient,
    base_url: str,
    request: Request,
    *,
    timeout_s: float,
) -> Response:
    """Send `request` to the environment at `base_url`; never raises for transport failures."""
    url = base_url.rstrip("/") + request.path
    started = time.perf_counter()
    try:
        answer = await client.request(
            request.method,
            url,
            params=request.query or None,
            headers=request_headers(request),
            content=request.body.raw or None,
        )
    except (httpx.HTTPError, OSError, ssl.SSLError) as exc:
        return Response(
            latency_ms=(time.perf_counter() - started) * 1000,
            error=describe_error(exc, timeout_s),
        )
    latency_ms = (time.perf_counter() - started) * 1000
    return Response(
        status=answer.status_code,
        headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in answer.headers.raw],
        body=Body.from_bytes(answer.content),
        latency_ms=latency_ms,
    )
