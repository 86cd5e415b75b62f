"""The hot path of a moved request: the candidate answers the client, or the primary does.

- The candidate could not be reached (refused, no route: nothing was sent) → the primary serves,
  which cannot duplicate anything.
- The candidate failed after the request may have reached it (timeout, reset mid-answer) → a
  safe request is served by the primary; an unsafe one is retried nowhere and the client gets a
  502 saying so (an order must never execute twice).
"""

from __future__ import annotations

import time

from mitmproxy import http

from harness.cutover.upstream import CandidateClient, NotSent, SentFailed
from harness.model import SAFE_METHODS

FELL_THROUGH = "fell-through"  # not sent: the primary serves
SERVED = "served"
FAILED = "failed"  # sent, then failed: unsafe, so answered 502


async def serve_from_candidate(client: CandidateClient, flow: http.HTTPFlow
                               ) -> tuple[str, str]:
    """Ask the candidate for `flow`'s answer and set it as `flow.response`; (outcome, error):
    SERVED, FELL_THROUGH (flow untouched: the primary answers) or FAILED (a 502 is set)."""
    request = flow.request
    sent = time.time()
    try:
        status, reason, fields, content = await client.request(
            request.data.method, request.data.path, request.headers.fields,
            request.raw_content or b"")
    except NotSent as exc:  # nothing was sent
        return FELL_THROUGH, str(exc)
    except SentFailed as exc:
        if request.method.upper() in SAFE_METHODS:
            return FELL_THROUGH, str(exc)
        flow.response = http.Response.make(
            502, b'{"detail": "the native service failed after the request was sent; it was '
                 b'not retried (it may have been executed once)"}',
            {"content-type": "application/json"})
        return FAILED, str(exc)
    if request.method.upper() != "HEAD":
        fields.append((b"content-length", str(len(content)).encode()))
    flow.response = http.Response(b"HTTP/1.1", status, reason, http.Headers(fields), content,
                                  None, sent, time.time())
    return SERVED, ""
