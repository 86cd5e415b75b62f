"""What the proxy captures of one finished flow, and how a worker turns it back into an exchange.

Capturing runs inside the proxy for every request, so it only collects references mitmproxy
already holds (raw bytes, header tuples, timestamps) into a plain tuple that pickles in about a
microsecond. Everything else (decoding bodies, parsing the query, building the `Exchange`) is the
worker's job. Both sides of the format live here, so they cannot drift apart.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from harness.model import Exchange, Request, Response, header
from harness.store.bodies import body_from_wire

if TYPE_CHECKING:  # workers read captured tuples without loading mitmproxy
    from mitmproxy import http

# The captured tuple, in order.
FIELDS = (
    "method",  # bytes
    "target",  # bytes: path and query as the client sent them
    "request_headers",  # tuple[tuple[bytes, bytes], ...]
    "request_body",  # bytes, as on the wire (Content-Encoding not undone)
    "status",  # int
    "response_headers",  # tuple[tuple[bytes, bytes], ...]
    "response_body",  # bytes, as on the wire
    "started",  # float: the request's first byte (epoch seconds)
    "sent",  # float | None: the request's last byte, when the primary was asked
    "answered",  # float | None: the primary's last byte
    "client",  # str: the client's IP address
)

Captured = tuple[Any, ...]


def capture(flow: http.HTTPFlow) -> Captured:
    """The tuple handed to a worker for `flow`, a finished flow (with its response)."""
    request, response = flow.request, flow.response
    if response is None:
        raise ValueError("capture() needs a flow with its response")
    peer = flow.client_conn.peername
    return (
        request.data.method,
        request.data.path,
        request.data.headers.fields,
        request.data.content or b"",
        response.data.status_code,
        response.data.headers.fields,
        response.data.content or b"",
        request.timestamp_start,
        request.timestamp_end,
        response.timestamp_end,
        peer[0] if peer else "",
    )


def _text(pairs: tuple[tuple[bytes, bytes], ...]) -> list[tuple[str, str]]:
    # latin-1 maps every byte, as the transport does for the candidate's headers.
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in pairs]


def client_address(headers: tuple[tuple[bytes, bytes], ...], peer: str) -> str:
    """The client a request came from: the first X-Forwarded-For hop behind a load balancer,
    else the connection's address (raw header fields, as captured)."""
    for name, value in headers:
        if name.lower() == b"x-forwarded-for":
            first = value.split(b",", 1)[0].strip()
            if first:
                return first.decode("latin-1")
            break
    return peer


def session_of(client: str) -> str:
    """The recorded session of a client: a stable digest, not the address itself. Requests of
    one session keep their order when mirrored and replayed."""
    return "client:" + hashlib.sha256(client.encode("utf-8", "replace")).hexdigest()[:12]


def to_exchange(captured: Captured) -> Exchange:
    """The exchange for a captured flow: request and the primary's answer, bodies decoded."""
    (method, target, request_headers, request_body, status, response_headers, response_body,
     started, sent, answered, peer) = captured
    path, _, query = target.partition(b"?")
    req_headers = _text(request_headers)
    resp_headers = _text(response_headers)
    latency_ms = None
    if answered is not None and (sent or started) is not None:
        latency_ms = max(0.0, (answered - (sent or started)) * 1000)
    return Exchange(
        request=Request(
            method=method.decode("ascii", "replace"),
            path=path.decode("utf-8", "replace"),
            query=parse_qsl(query.decode("utf-8", "replace"), keep_blank_values=True),
            raw_query=query.decode("latin-1") if query else None,
            headers=req_headers,
            body=body_from_wire(request_body, header(req_headers, "content-encoding")),
        ),
        primary=Response(
            status=status,
            headers=resp_headers,
            body=body_from_wire(response_body, header(resp_headers, "content-encoding")),
            latency_ms=latency_ms,
        ),
        ts=started,
        session=session_of(client_address(request_headers, peer) or "unknown"),
    )
