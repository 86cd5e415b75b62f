"""Import of mitmproxy flow files (``mitmdump -w FILE``): each HTTP flow becomes an exchange whose
primary answer is the flow's response (or its error). Other flows (TCP, UDP, DNS) are skipped.
A file cut short by a killed mitmdump gives the flows before the cut, with a warning."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

from harness.errors import UserError
from harness.model import Exchange, Request, Response
from harness.store.bodies import body_from_wire

if TYPE_CHECKING:  # mitmproxy is imported only to read a flow file
    from mitmproxy import http

log = logging.getLogger("parity.store")


def _headers(headers: http.Headers) -> list[tuple[str, str]]:
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers.fields]


def _exchange(flow: http.HTTPFlow) -> Exchange:
    req = flow.request
    request = Request(
        method=req.method,
        path=req.path.split("?", 1)[0],
        query=list(req.query.items(multi=True)),
        headers=_headers(req.headers),
        body=body_from_wire(req.raw_content or b"", req.headers.get("content-encoding")),
    )
    if flow.response is not None:
        resp = flow.response
        latency = None
        if resp.timestamp_end and req.timestamp_start:
            latency = (resp.timestamp_end - req.timestamp_start) * 1000
        primary = Response(
            status=resp.status_code,
            headers=_headers(resp.headers),
            body=body_from_wire(resp.raw_content or b"", resp.headers.get("content-encoding")),
            latency_ms=latency,
        )
    else:
        primary = Response(error=flow.error.msg if flow.error else "no response in flow")
    return Exchange(request=request, primary=primary, ts=req.timestamp_start or 0.0)


def import_flows(path: str | os.PathLike[str]) -> Iterator[Exchange]:
    """Exchanges from a mitmproxy flow file, streamed. UserError when it is not one."""
    from mitmproxy import http, io
    from mitmproxy.exceptions import FlowReadException

    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed in the finally below
    except OSError as exc:
        raise UserError(f"{path}: cannot open flow file ({exc.strerror or exc})") from None
    count = 0
    try:
        for flow in io.FlowReader(handle).stream():
            if isinstance(flow, http.HTTPFlow):
                count += 1
                yield _exchange(flow)
    except FlowReadException as exc:
        if not count:
            raise UserError(f"{path}: not a readable mitmproxy flow file ({exc})") from None
        log.warning("%s: flow file cut short after %d flows, the rest skipped (%s)",
                    path, count, exc)
    finally:
        handle.close()
