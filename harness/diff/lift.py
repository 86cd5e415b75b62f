"""Lift an answer into a neutral tree (Diffy's *lift*): lower-cased headers, and the body parsed as
JSON when it is JSON, else kept as text or bytes."""

from __future__ import annotations

import json
from functools import lru_cache

import orjson

from harness.diff.base import Lifted
from harness.model import Response

# orjson reads integers past 64 bits as floats (rounded): past 2**64 - 1 (20 digits) and below
# -2**63 (a minus and 19 digits). A body with either run of digits is read by Python's json
# instead, which keeps them exact. Both contain a run of 19 digits: one search for it first (the
# body's digits read as zeros) tells most bodies have neither.
_DIGITS = bytes.maketrans(b"123456789", b"000000000")
_RUN_19 = b"0" * 19
_LONG_RUN = b"0" * 20
_LONG_NEGATIVE = b"-" + _RUN_19


def parse_json(raw: bytes) -> object:
    """Parse JSON with orjson; Python's json for what orjson refuses or rounds (NaN, Infinity,
    integers past 64 bits, lone surrogates). Raises ValueError or RecursionError."""
    if len(raw) >= 20:
        digits = raw.translate(_DIGITS)
        if _RUN_19 in digits and (_LONG_RUN in digits or _LONG_NEGATIVE in digits):
            return json.loads(raw)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)


@lru_cache(maxsize=256)  # a service answers with a handful of content types
def claims_json(content_type: str) -> bool:
    """Whether a Content-Type says JSON (application/json, application/problem+json, ...)."""
    media = content_type.split(";", 1)[0].strip().lower()
    return media.endswith("/json") or media.endswith("+json")


def lift_headers(response: Response) -> dict[str, list[str]]:
    """Header names lower-cased, each with its values in order."""
    headers: dict[str, list[str]] = {}
    for name, value in response.headers:
        headers.setdefault(name.lower(), []).append(value)
    return headers


def lift(response: Response, *, body: bool = True) -> Lifted:
    """`response` as a `Lifted` tree. The body is JSON when the Content-Type says so or when it
    starts with ``{``/``[`` and parses; a body that claims JSON but does not parse is kept as text
    with `parse_error` set (comparators then call the answers incomparable); a body that is not
    UTF-8 is bytes. `body=False` lifts only the status and headers."""
    headers = lift_headers(response)
    raw = response.body.raw if body else b""
    lifted = Lifted(status=response.status, headers=headers, raw=raw)
    if not raw:
        return lifted
    content_type = headers.get("content-type", [""])[0]
    says_json = claims_json(content_type)
    text = response.body.text
    if text is None:
        lifted.kind, lifted.body = "bytes", raw
        if says_json:
            lifted.parse_error = "invalid JSON: not UTF-8"
        return lifted
    lifted.kind, lifted.body = "text", text
    if response.body.truncated:
        if says_json:
            lifted.parse_error = f"body cut at {len(raw)} of {response.body.size} bytes"
        return lifted
    if says_json or text[:64].lstrip()[:1] in ("{", "["):
        try:
            lifted.body = parse_json(raw)
            lifted.kind = "json"
        except (ValueError, RecursionError) as exc:
            if says_json:
                lifted.parse_error = f"invalid JSON: {exc}"
    return lifted
