"""Import of mitmproxy flow files (`mitmdump -w FILE`): each HTTP flow becomes an exchange whose
primary answer is the flow's response."""

from __future__ import annotations

import os
from collections.abc import Iterator

from harness.errors import UserError
from harness.model import Exchange, Request, Response
from harness.store.bodies import body_from_wire


def _headers(fields) -> list[tuple[str, str]]:
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in fields.fields]


def import_flows(path: str | os.PathLike[str]) -> Iterator[Exchange]:
    """Exchanges from a mitmproxy flow file; non-HTTP flows are skipped."""
    from mitmproxy import http, io
    from mitmproxy.exceptions import FlowReadException

    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed in the finally below
    except OSError as exc:
        raise UserError(f"{path}: cannot open flow file ({exc})") from None
    try:
        for flow in io.FlowReader(handle).stream():
            if not isinstance(flow, http.HTTPFlow):
                continue
            req = flow.request
            request = Request(
                method=req.method,
                path=req.path.split("?", 1)[0],
                query=list(req.query.items(multi=True)),
                headers=_headers(req.headers),
                body=body_from_wire(req.raw_content or b"", req.headers.get("content-encoding")),
            )
            primary = Response(error="no response in flow")
            if flow.response is not None:
                resp = flow.response
                latency = None
                if resp.timestamp_end and req.timestamp_start:
                    latency = (resp.timestamp_end - req.timestamp_start) * 1000
                primary = Response(
                    status=resp.status_code,
                    headers=_headers(resp.headers),
                    body=body_from_wire(resp.raw_content or b"",
                                        resp.headers.get("content-encoding")),
                    latency_ms=latency,
                )
            yield Exchange(request=request, primary=primary, ts=req.timestamp_start or 0.0)
    except FlowReadException as exc:
        raise UserError(f"{path}: not a readable mitmproxy flow file ({exc})") from None
    finally:
        handle.close()
