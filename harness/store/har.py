"""HAR 1.2 import and export. Our exports keep the candidate's and secondary's answers and the
verdict in `_parity` fields, so a round trip loses nothing; a browser's HAR imports as exchanges
with only a primary answer."""

from __future__ import annotations

import base64
import os
import urllib.parse
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import orjson

from harness.errors import UserError
from harness.model import Body, Exchange, Request, Response

CREATOR = {"name": "cryptobot-parity", "version": "0.1"}


def _har_headers(headers: list[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"name": k, "value": v} for k, v in headers]


def _content_type(headers: list[tuple[str, str]]) -> str:
    return next((v for k, v in headers if k.lower() == "content-type"), "")


def _har_content(body: Body, headers: list[tuple[str, str]]) -> dict[str, Any]:
    content: dict[str, Any] = {"size": body.size, "mimeType": _content_type(headers)}
    if body.text is not None:
        content["text"] = body.text
    elif body.b64 is not None:
        content["text"] = body.b64
        content["encoding"] = "base64"
    return content


def _entry(exchange: Exchange) -> dict[str, Any]:
    request, primary = exchange.request, exchange.primary
    query = urllib.parse.urlencode(request.query)
    url = "http://primary" + request.path + (f"?{query}" if query else "")
    har_request: dict[str, Any] = {
        "method": request.method,
        "url": url,
        "httpVersion": "HTTP/1.1",
        "headers": _har_headers(request.headers),
        "queryString": [{"name": k, "value": v} for k, v in request.query],
        "cookies": [],
        "headersSize": -1,
        "bodySize": request.body.size,
    }
    if request.body.size:
        har_request["postData"] = {
            "mimeType": _content_type(request.headers),
            "text": request.body.text if request.body.text is not None else request.body.b64,
        }
    return {
        "startedDateTime": datetime.fromtimestamp(exchange.ts, UTC).isoformat(),
        "time": primary.latency_ms or 0,
        "request": har_request,
        "response": {
            "status": primary.status,
            "statusText": "",
            "httpVersion": "HTTP/1.1",
            "headers": _har_headers(primary.headers),
            "cookies": [],
            "content": _har_content(primary.body, primary.headers),
            "redirectURL": "",
            "headersSize": -1,
            "bodySize": primary.body.size,
        },
        "cache": {},
        "timings": {"send": 0, "wait": primary.latency_ms or 0, "receive": 0},
        "_parity": exchange.to_dict(),
    }


def export_har(exchanges: Iterable[Exchange], path: str | os.PathLike[str]) -> int:
    """Write `exchanges` as a HAR file; returns how many entries were written."""
    entries = [_entry(exchange) for exchange in exchanges]
    document = {"log": {"version": "1.2", "creator": CREATOR, "pages": [], "entries": entries}}
    with open(path, "wb") as handle:
        handle.write(orjson.dumps(document, option=orjson.OPT_INDENT_2))
    return len(entries)


def _body_from_har(content: dict[str, Any] | None) -> Body:
    if not content or "text" not in content:
        return Body(size=int((content or {}).get("size", 0) or 0))
    text = content["text"]
    if content.get("encoding") == "base64":
        return Body.from_bytes(base64.b64decode(text))
    return Body.from_bytes(text.encode("utf-8"))


def _from_browser_entry(entry: dict[str, Any]) -> Exchange:
    har_request, har_response = entry["request"], entry.get("response") or {}
    url = urllib.parse.urlsplit(har_request["url"])
    post = har_request.get("postData") or {}
    request = Request(
        method=har_request["method"],
        path=url.path or "/",
        query=urllib.parse.parse_qsl(url.query, keep_blank_values=True),
        headers=[(h["name"], h["value"]) for h in har_request.get("headers", [])],
        body=Body.from_bytes(post["text"].encode()) if post.get("text") else Body(),
    )
    primary = Response(
        status=int(har_response.get("status", 0)),
        headers=[(h["name"], h["value"]) for h in har_response.get("headers", [])],
        body=_body_from_har(har_response.get("content")),
        latency_ms=entry.get("time"),
    )
    started = entry.get("startedDateTime")
    ts = datetime.fromisoformat(started.replace("Z", "+00:00")).timestamp() if started else 0.0
    return Exchange(request=request, primary=primary, ts=ts)


def import_har(path: str | os.PathLike[str]) -> Iterator[Exchange]:
    """Exchanges from a HAR file (ours round-trip exactly; others give primary-only exchanges)."""
    try:
        with open(path, "rb") as handle:
            document = orjson.loads(handle.read())
        entries = document["log"]["entries"]
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise UserError(f"{path}: not a readable HAR file ({exc})") from None
    for entry in entries:
        if "_parity" in entry:
            yield Exchange.from_dict(entry["_parity"])
        else:
            yield _from_browser_entry(entry)
