"""Lift an answer into a neutral tree (Diffy's *lift*): lower-cased headers, and the body parsed as
JSON when it is JSON, else kept as text or bytes."""

from __future__ import annotations

import json

import orjson

from comparators.base import Lifted
from harness.model import Response


def _parse_json(raw: bytes) -> object:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        # orjson refuses NaN/Infinity and numbers past 64 bits, which Python's json accepts.
        return json.loads(raw)


def lift(response: Response, *, body: bool = True) -> Lifted:
    """`response` as a `Lifted` tree; a body that claims JSON but does not parse is kept as text
    with `parse_error` set (the comparators then call it incomparable). `body=False` lifts only
    the status and headers."""
    headers: dict[str, list[str]] = {}
    for name, value in response.headers:
        headers.setdefault(name.lower(), []).append(value)
    raw = response.body.raw if body else b""
    lifted = Lifted(status=response.status, headers=headers, raw=raw)
    if not raw:
        return lifted
    content_type = headers.get("content-type", [""])[0].lower()
    text = response.body.text
    looks_json = "json" in content_type or (
        text is not None and not content_type and text.lstrip()[:1] in ("{", "[")
    )
    if looks_json and not response.body.truncated:
        try:
            lifted.body = _parse_json(raw)
            lifted.kind = "json"
            return lifted
        except (ValueError, RecursionError) as exc:
            lifted.parse_error = f"invalid JSON: {exc}"
    if text is not None:
        lifted.kind, lifted.body = "text", text
    else:
        lifted.kind, lifted.body = "bytes", raw
    return lifted
