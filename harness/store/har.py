"""HAR 1.2 export and import.

An exported entry is a plain HAR entry for the request and the primary's answer (any HAR viewer
shows it), plus custom fields (HAR allows ``_``-prefixed ones) that make the round trip exact:
``_candidate`` and ``_secondary`` (HAR response objects, or absent), ``_parity`` (id, exact ts,
route, group, comparator, mirror, session, verdict, reason, differences), ``_path`` on the
request, and on every body ``_sha256``/``_truncated``/``_decode_error`` (plus ``_size`` for a
request body), on every answer ``_latency_ms``/``_error``. Exports are redacted like recordings.

A browser's HAR imports as exchanges with only a primary answer; non-HTTP entries (data:,
chrome-extension:…) are skipped and HTTP/2 pseudo-headers (``:authority``…) dropped. Import
reads the whole file (HAR is one JSON document); export streams.
"""

from __future__ import annotations

import base64
import logging
import os
import urllib.parse
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any

import orjson

from harness.errors import UserError
from harness.model import Body, Difference, Exchange, Request, Response, Verdict, header
from harness.store.redact import redact_exchange

log = logging.getLogger("parity.store")

CREATOR = {"name": "cryptobot-parity", "version": "0.1"}
_META = ("id", "ts", "route", "group", "comparator", "mirror", "session", "verdict", "reason")


def _har_headers(headers: list[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"name": k, "value": v} for k, v in headers]


def _put_body(body: Body, target: dict[str, Any]) -> None:
    """The body's text (base64-encoded when binary) and our extras, into a HAR content or
    postData object."""
    if body.text is not None:
        target["text"] = body.text
    elif body.b64 is not None:
        target["text"] = body.b64
        target["encoding"] = "base64"
    target.update({f"_{name}": value for name, value in body.to_dict().items()
                   if name in ("sha256", "truncated", "decode_error")})


def _har_content(body: Body, headers: list[tuple[str, str]]) -> dict[str, Any]:
    content: dict[str, Any] = {"size": body.size, "mimeType": header(headers, "content-type", "")}
    _put_body(body, content)
    return content


def _har_response(response: Response) -> dict[str, Any]:
    try:
        reason = HTTPStatus(response.status).phrase
    except ValueError:
        reason = ""
    har: dict[str, Any] = {
        "status": response.status,
        "statusText": reason,
        "httpVersion": "HTTP/1.1",
        "headers": _har_headers(response.headers),
        "cookies": [],
        "content": _har_content(response.body, response.headers),
        "redirectURL": header(response.headers, "location", "") or "",
        "headersSize": -1,
        "bodySize": -1,
        "_latency_ms": response.latency_ms,
    }
    if response.error:
        har["_error"] = response.error
    return har


def _har_request(request: Request) -> dict[str, Any]:
    host = header(request.headers, "host") or "primary"
    query = urllib.parse.urlencode(request.query, quote_via=urllib.parse.quote)
    har: dict[str, Any] = {
        "method": request.method,
        "url": f"http://{host}{request.path}" + (f"?{query}" if query else ""),
        "httpVersion": "HTTP/1.1",
        "headers": _har_headers(request.headers),
        "queryString": [{"name": k, "value": v} for k, v in request.query],
        "cookies": [],
        "headersSize": -1,
        "bodySize": request.body.size,
        "_path": request.path,
    }
    body = request.body
    if body.text is not None or body.b64 is not None or body.size:
        post: dict[str, Any] = {"mimeType": header(request.headers, "content-type", ""),
                                "_size": body.size}
        _put_body(body, post)
        har["postData"] = post
    return har


def _entry(exchange: Exchange) -> dict[str, Any]:
    latency = exchange.primary.latency_ms
    entry: dict[str, Any] = {
        "startedDateTime": datetime.fromtimestamp(exchange.ts, UTC).isoformat(),
        "time": latency if latency is not None else -1,
        "request": _har_request(exchange.request),
        "response": _har_response(exchange.primary),
        "cache": {},
        "timings": {"send": 0, "wait": latency if latency is not None else -1, "receive": 0},
    }
    if exchange.candidate is not None:
        entry["_candidate"] = _har_response(exchange.candidate)
    if exchange.secondary is not None:
        entry["_secondary"] = _har_response(exchange.secondary)
    meta = {name: value for name, value in exchange.to_dict().items() if name in _META}
    meta["differences"] = [d.to_dict() for d in exchange.differences]
    entry["_parity"] = meta
    return entry


def export_har(exchanges: Iterable[Exchange], path: str | os.PathLike[str]) -> int:
    """Write `exchanges` (redacted) as a HAR 1.2 file, streamed; returns how many entries were
    written. The file appears complete or not at all (written aside, then renamed)."""
    target = Path(path)
    partial = target.with_name(target.name + ".partial")
    count = 0
    try:
        with partial.open("wb") as handle:
            head = {"version": "1.2", "creator": CREATOR, "pages": []}
            handle.write(b'{"log": ' + orjson.dumps(head)[:-1] + b', "entries": [\n')
            for exchange in exchanges:
                if count:
                    handle.write(b",\n")
                handle.write(orjson.dumps(_entry(redact_exchange(exchange)),
                                          option=orjson.OPT_NON_STR_KEYS))
                count += 1
            handle.write(b"\n]}}\n")
        os.replace(partial, target)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise UserError(f"cannot write HAR file {target}: {exc.strerror or exc}") from None
    except BaseException:  # the exchanges' source failed: leave no half-written file behind
        partial.unlink(missing_ok=True)
        raise
    return count


def _body_from_fields(fields: dict[str, Any], size: int) -> Body:
    """A body exported by us: every field as it was."""
    text = fields.get("text")
    base64_encoded = fields.get("encoding") == "base64"
    return Body(
        text=None if base64_encoded else text,
        b64=text if base64_encoded else None,
        size=size,
        sha256=fields.get("_sha256", ""),
        truncated=bool(fields.get("_truncated", False)),
        decode_error=fields.get("_decode_error"),
    )


def _body_from_browser(fields: dict[str, Any]) -> Body:
    text = fields.get("text")
    if text is None:
        return Body()
    if fields.get("encoding") == "base64":
        try:
            return Body.from_bytes(base64.b64decode(text))
        except ValueError:
            pass
    return Body.from_bytes(text.encode("utf-8", "surrogatepass"))


def _content_body(content: dict[str, Any] | None, ours: bool) -> Body:
    content = content or {}
    if ours:
        return _body_from_fields(content, int(content.get("size", 0) or 0))
    return _body_from_browser(content)


def _response(har: dict[str, Any] | None, ours: bool, time_ms: Any = None) -> Response | None:
    if har is None:
        return None
    latency = har.get("_latency_ms") if ours else time_ms
    return Response(
        status=int(har.get("status", 0) or 0),
        headers=[(h["name"], h["value"]) for h in har.get("headers", [])
                 if not h["name"].startswith(":")],
        body=_content_body(har.get("content"), ours),
        latency_ms=float(latency) if isinstance(latency, int | float) and latency >= 0 else None,
        error=har.get("_error"),
    )


def _request(har: dict[str, Any], ours: bool) -> Request:
    url = urllib.parse.urlsplit(har["url"])
    post = har.get("postData")
    if ours:
        query = [(q["name"], q["value"]) for q in har.get("queryString", [])]
        path = har.get("_path", url.path or "/")
        body = _body_from_fields(post, int(post.get("_size", 0))) if post else Body()
    else:
        query = urllib.parse.parse_qsl(url.query, keep_blank_values=True)
        path = url.path or "/"
        if post and post.get("text") is None and post.get("params"):
            post = {"text": urllib.parse.urlencode(
                [(p["name"], p.get("value", "")) for p in post["params"]])}
        body = _body_from_browser(post) if post else Body()
    return Request(
        method=har["method"],
        path=path,
        query=query,
        headers=[(h["name"], h["value"]) for h in har.get("headers", [])
                 if not h["name"].startswith(":")],
        body=body,
    )


def _timestamp(started: str | None) -> float:
    if not started:
        return 0.0
    try:
        return datetime.fromisoformat(started.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def _exchange(entry: dict[str, Any]) -> Exchange | None:
    meta = entry.get("_parity")
    if isinstance(meta, dict) and "request" in meta:
        return Exchange.from_dict(meta)  # an export of an earlier version: the whole record
    ours = isinstance(meta, dict)
    request = _request(entry["request"], ours)
    if not ours and not entry["request"]["url"].lower().startswith(("http:", "https:")):
        return None
    exchange = Exchange(
        request=request,
        primary=_response(entry.get("response"), ours, entry.get("time")) or Response(),
        candidate=_response(entry.get("_candidate"), ours),
        secondary=_response(entry.get("_secondary"), ours),
        ts=_timestamp(entry.get("startedDateTime")),
    )
    if isinstance(meta, dict):  # ours
        verdict = meta.get("verdict")
        exchange.id = meta.get("id") or exchange.id
        exchange.ts = float(meta.get("ts", exchange.ts))
        exchange.route = meta.get("route", "")
        exchange.group = meta.get("group", "")
        exchange.comparator = meta.get("comparator", "")
        exchange.mirror = meta.get("mirror", "mirrored")
        exchange.session = meta.get("session")
        exchange.verdict = Verdict(verdict) if verdict else None
        exchange.reason = meta.get("reason")
        exchange.differences = [Difference.from_dict(d) for d in meta.get("differences", [])]
    return exchange


def import_har(path: str | os.PathLike[str]) -> Iterator[Exchange]:
    """Exchanges from a HAR file: our exports round-trip exactly; a browser's entries become
    exchanges with only a primary answer. UserError when the file is not a HAR."""
    try:
        with open(path, "rb") as handle:
            document = orjson.loads(handle.read())
        entries = document["log"]["entries"]
        if not isinstance(entries, list):
            raise TypeError("log.entries is not a list")
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise UserError(f"{path}: not a readable HAR file ({exc})") from None
    for number, entry in enumerate(entries, start=1):
        try:
            exchange = _exchange(entry)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise UserError(f"{path}: HAR entry {number} is malformed ({exc!r})") from None
        if exchange is not None:
            yield exchange
