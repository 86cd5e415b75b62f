"""The hot path of a moved request: the candidate answers the client, or the primary does.

- The candidate could not be reached (refused, no route: nothing was sent) → the primary serves,
  which cannot duplicate anything.
- The candidate failed after the request may have reached it (timeout, reset mid-answer) → a
  safe request is served by the primary; an unsafe one is retried nowhere and the client gets a
  502 saying so (an order must never execute twice).
"""

from __future__ import annotations

import time
from typing import Any

import aiohttp
from mitmproxy import http
from yarl import URL

from harness.policy import SAFE_METHODS

# Hop-by-hop and framing headers: aiohttp and mitmproxy set their own.
_HOP = frozenset({b"host", b"content-length", b"transfer-encoding", b"connection", b"keep-alive",
                  b"proxy-connection", b"upgrade", b"te", b"trailer"})

FELL_THROUGH = "fell-through"  # not sent: the primary serves
SERVED = "served"
FAILED = "failed"  # sent, then failed: unsafe, so answered 502


async def serve_from_candidate(client: aiohttp.ClientSession, candidate: str,
                               flow: http.HTTPFlow, timeout_s: float) -> tuple[str, str]:
    """Ask the candidate for `flow`'s answer and set it as `flow.response`; (outcome, error):
    SERVED, FELL_THROUGH (flow untouched: the primary answers) or FAILED (a 502 is set)."""
    request = flow.request
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.fields
               if k.lower() not in _HOP]
    sent = time.time()
    try:
        async with client.request(request.method, URL(candidate + request.path, encoded=True),
                                  headers=headers,
                                  data=request.raw_content or None, allow_redirects=False,
                                  timeout=aiohttp.ClientTimeout(total=timeout_s)) as answer:
            content = await answer.read()
            fields = [(k, v) for k, v in answer.raw_headers if k.lower() not in _HOP]
            status, reason = answer.status, (answer.reason or "").encode("latin-1", "replace")
    except aiohttp.ClientConnectorError as exc:  # nothing was sent
        return FELL_THROUGH, f"connection refused ({exc.os_error})" if isinstance(
            exc.os_error, ConnectionRefusedError) else f"connect error: {exc.os_error}"
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        error = f"timeout after {timeout_s:g}s" if isinstance(exc, TimeoutError) \
            else f"{type(exc).__name__}: {exc}"
        if request.method.upper() in SAFE_METHODS:
            return FELL_THROUGH, error
        flow.response = http.Response.make(
            502, b'{"detail": "the native service failed after the request was sent; it was '
                 b'not retried (it may have been executed once)"}',
            {"content-type": "application/json"})
        return FAILED, error
    fields.append((b"content-length", str(len(content)).encode()))
    flow.response = http.Response(b"HTTP/1.1", status, reason, http.Headers(fields), content,
                                  None, sent, time.time())
    return SERVED, ""


def client_for(timeout_s: float, verify: Any) -> aiohttp.ClientSession:
    """The proxy's own client to the candidate (a bounded pool, no cookies, no env proxy)."""
    connector = aiohttp.TCPConnector(limit=512, limit_per_host=0, ssl=verify,
                                     enable_cleanup_closed=True)
    return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar(),
                                 timeout=aiohttp.ClientTimeout(total=timeout_s),
                                 trust_env=False, auto_decompress=False,
                                 skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept"))
