"""Correlation across environments: identifiers the primary and another environment minted
differently (ids from create calls, backtest and order ids, access and refresh tokens) are learned
as pairs from the answers at a route's `correlate` paths, and swapped into later requests sent to
that environment, so stateful flows stay comparable: create → get → update → delete,
start backtest → poll → results, login → authorised calls → refresh.

Where a value is swapped: whole path segments; query values, form fields and JSON body values
(strings and integers) when they are long enough to be unique (8 characters and more) or sit under
an identifier-like name (``id``, ``strategy_id``, ``backtestId``, ``refresh_token``...); the token
of ``Authorization: Bearer …``; cookie values and other header values that are long enough.
Short values (``5``) are kept per migration group, so strategy 5 and API key 5 do not collide.

The map is bounded (least recently used pairs go first) and pairs expire after an hour unused.
Used by the shadow workers and the replay, through `harness.mirror.Mirror`.
One correlator per environment; not thread-safe (it lives in one event loop).
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeGuard
from urllib.parse import parse_qsl, urlencode

import orjson

from harness.diff import paths
from harness.diff.lift import lift
from harness.model import Body, Request, Response, header
from harness.routes import Route, guess_group

MAX_PAIRS = 10_000
TTL_S = 3600.0
# Values at least this long are unique enough to swap wherever they appear whole.
LONG = 8

_CAMEL_ID = re.compile(r"[a-z0-9]Ids?$")
_AUTH_HEADERS = frozenset({"authorization", "proxy-authorization"})
_FORM = "application/x-www-form-urlencoded"

Scalar = str | int


def is_identifier_key(name: str) -> bool:
    """Whether a field or parameter name says it holds an identifier or a token."""
    lower = name.lower()
    return (lower in ("id", "ids") or lower.endswith(("_id", "-id", "_ids", "-ids"))
            or bool(_CAMEL_ID.search(name)) or "token" in lower)


def values_at(tree: Any, path: str) -> list[Any]:
    """The values at `path` in a parsed JSON body: ``id``, ``order.id``, ``items[0].id``,
    ``items[*].id`` (every item)."""
    nodes = [tree]
    for step in paths.steps(path):
        found: list[Any] = []
        for node in nodes:
            if isinstance(node, list):
                if step == "*":
                    found.extend(node)
                elif isinstance(step, int) and step < len(node):
                    found.append(node[step])
            elif isinstance(node, dict) and isinstance(step, str) and step in node:
                found.append(node[step])
        nodes = found
    return nodes


def _scalar(value: Any) -> TypeGuard[Scalar]:
    return isinstance(value, str | int) and not isinstance(value, bool) and value != ""


class Correlator:
    """A bounded, expiring map from the primary's identifiers to one other environment's."""

    def __init__(self, max_pairs: int = MAX_PAIRS, ttl_s: float = TTL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._pairs: OrderedDict[tuple[str, str], tuple[Scalar, float]] = OrderedDict()
        self._max = max_pairs
        self._ttl = ttl_s
        self._clock = clock

    def __len__(self) -> int:
        return len(self._pairs)

    # --- learning ----------------------------------------------------------------------------

    def learn(self, route: Route, primary: Response, other: Response | None) -> int:
        """Pair the values at `route.correlate` paths (body paths, or ``@headers.<name>``) in
        the primary's and the other environment's answers; returns how many pairs were new or
        refreshed. Nothing is learned from a failed answer."""
        if other is None or other.error or primary.error or not route.correlate:
            return 0
        mine, theirs = lift(primary), lift(other)
        scope = guess_group(route.template)
        learned = 0
        for path in route.correlate:
            if path.startswith("@headers."):
                name = path.removeprefix("@headers.").lower()
                pairs = [(mine.headers.get(name, [None])[0], theirs.headers.get(name, [None])[0])]
            else:
                pairs = list(zip(values_at(mine.body, path), values_at(theirs.body, path),
                                 strict=False))
            for p_value, o_value in pairs:
                if _scalar(p_value) and _scalar(o_value) and str(p_value) != str(o_value):
                    self.add(p_value, o_value, scope=scope)
                    learned += 1
        return learned

    def add(self, primary_value: Scalar, other_value: Scalar, *, scope: str = "") -> None:
        """Remember one pair; a short value only within `scope` (a migration group)."""
        key = self._key(str(primary_value), scope)
        now = self._clock()
        self._pairs[key] = (other_value, now + self._ttl)
        self._pairs.move_to_end(key)
        while len(self._pairs) > self._max:
            self._pairs.popitem(last=False)
        while self._pairs:  # the least recently used end holds the expired ones
            oldest = next(iter(self._pairs))
            if self._pairs[oldest][1] >= now:
                break
            del self._pairs[oldest]

    def get(self, value: str, scope: str = "") -> Scalar | None:
        """The other environment's value for the primary's `value`, if known and fresh."""
        key = self._key(value, scope)
        entry = self._pairs.get(key)
        if entry is None:
            return None
        other, expires = entry
        now = self._clock()
        if expires < now:
            del self._pairs[key]
            return None
        self._pairs[key] = (other, now + self._ttl)
        self._pairs.move_to_end(key)
        return other

    @staticmethod
    def _key(value: str, scope: str) -> tuple[str, str]:
        return ("", value) if len(value) >= LONG else (scope, value)

    # --- translating -------------------------------------------------------------------------

    def translate(self, request: Request) -> Request:
        """`request` with every known primary identifier replaced by the other environment's;
        the same object when nothing is known or nothing changes."""
        if not self._pairs:
            return request
        scope = guess_group(request.path)
        path = "/".join(self._segment(s, scope) for s in request.path.split("/"))
        query = [(k, self._field(k, v, scope)) for k, v in request.query]
        headers = [(k, self._header(k, v, scope)) for k, v in request.headers]
        body = self._body(request, scope)
        if (path == request.path and query == request.query and headers == request.headers
                and body is request.body):
            return request
        raw_query = request.raw_query if query == request.query else None
        return replace(request, path=path, query=query, headers=headers, body=body,
                       raw_query=raw_query)

    def _segment(self, segment: str, scope: str) -> str:
        if not segment:
            return segment
        other = self.get(segment, scope)
        return segment if other is None else str(other)

    def _field(self, name: str, value: str, scope: str) -> str:
        if len(value) < LONG and not is_identifier_key(name):
            return value
        other = self.get(value, scope)
        return value if other is None else str(other)

    def _header(self, name: str, value: str, scope: str) -> str:
        lower = name.lower()
        if lower in _AUTH_HEADERS:
            scheme, sep, credential = value.partition(" ")
            other = self.get(credential.strip(), scope) if sep else None
            return value if other is None else f"{scheme} {other}"
        if lower == "cookie":
            crumbs = [crumb.strip() for crumb in value.split(";")]
            swapped = [self._cookie(crumb, scope) for crumb in crumbs]
            return value if swapped == crumbs else "; ".join(swapped)
        if len(value) < LONG:
            return value
        other = self.get(value, scope)
        return value if other is None else str(other)

    def _cookie(self, crumb: str, scope: str) -> str:
        name, sep, value = crumb.partition("=")
        return f"{name}={self._field(name, value, scope)}" if sep else crumb

    def _body(self, request: Request, scope: str) -> Body:
        body = request.body
        text = body.text
        if not text or body.truncated:
            return body
        content_type = (header(request.headers, "content-type") or "").lower()
        if content_type.startswith(_FORM):
            pairs = parse_qsl(text, keep_blank_values=True)
            swapped = [(k, self._field(k, v, scope)) for k, v in pairs]
            return body if swapped == pairs else Body.from_bytes(urlencode(swapped).encode())
        if text.lstrip()[:1] not in ("{", "["):
            return body
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError:
            return body
        changed: list[bool] = []
        swapped = self._walk(data, "", scope, changed)
        return Body.from_bytes(orjson.dumps(swapped)) if changed else body

    def _walk(self, node: Any, key: str, scope: str, changed: list[bool]) -> Any:
        if isinstance(node, dict):
            return {k: self._walk(v, k, scope, changed) for k, v in node.items()}
        if isinstance(node, list):
            return [self._walk(v, key, scope, changed) for v in node]
        if isinstance(node, str):
            if len(node) < LONG and not is_identifier_key(key):
                return node
            other = self.get(node, scope)
            if other is None:
                return node
            changed.append(True)
            return str(other)
        if isinstance(node, int) and not isinstance(node, bool) and is_identifier_key(key):
            other = self.get(str(node), scope)
            if other is None:
                return node
            changed.append(True)
            return other if isinstance(other, int) else int(other) if other.isdigit() else other
        return node
