"""Correlation across environments: identifiers the primary and the candidate minted differently
(ids from create calls, backtest and order ids, access and refresh tokens) are learned as pairs and
substituted into later requests to the candidate, so stateful flows stay comparable:
create → get → update → delete, start → poll → results, login → authorised calls."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import replace
from typing import Any

import orjson

from harness.lift import lift
from harness.model import Body, Request, Response

MAX_PAIRS = 10_000
TTL_S = 3600.0
# Short values ("5") are only substituted as whole path segments; in query strings and bodies
# they would collide with ordinary numbers (limit=5).
MIN_FREE_TEXT_LENGTH = 8


def _at(tree: Any, dotted: str) -> Any:
    node = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


class Correlator:
    """A bounded, expiring map from the primary's identifiers to another environment's."""

    def __init__(self, max_pairs: int = MAX_PAIRS, ttl_s: float = TTL_S) -> None:
        self._pairs: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._max = max_pairs
        self._ttl = ttl_s
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._pairs)

    def learn(self, route, primary: Response, other: Response | None) -> None:
        """Pair the values at the route's `correlate` paths in both answers."""
        if other is None or other.error or not route.correlate:
            return
        p_body, o_body = lift(primary).body, lift(other).body
        if not isinstance(p_body, dict) or not isinstance(o_body, dict):
            return
        for path in route.correlate:
            p_value, o_value = _at(p_body, path), _at(o_body, path)
            if p_value is None or o_value is None or isinstance(p_value, dict | list):
                continue
            if p_value != o_value:
                self.add(str(p_value), str(o_value))

    def add(self, primary_value: str, other_value: str) -> None:
        """Remember one pair (the oldest goes when the map is full)."""
        with self._lock:
            self._pairs[primary_value] = (other_value, time.monotonic() + self._ttl)
            self._pairs.move_to_end(primary_value)
            while len(self._pairs) > self._max:
                self._pairs.popitem(last=False)

    def get(self, value: str) -> str | None:
        """The other environment's value for the primary's `value`, if known and fresh."""
        entry = self._pairs.get(value)
        if entry is None:
            return None
        other, expires = entry
        if expires < time.monotonic():
            with self._lock:
                self._pairs.pop(value, None)
            return None
        return other

    def translate(self, request: Request) -> Request:
        """`request` with every known primary identifier replaced (path segments, query,
        Authorization and JSON body values)."""
        if not self._pairs:
            return request
        segments = request.path.split("/")
        path = "/".join(self.get(s) or s for s in segments)
        query = [(k, self._free(v)) for k, v in request.query]
        headers = [(k, self._header(k, v)) for k, v in request.headers]
        body = self._body(request.body)
        if (path, query, headers, body) == (request.path, request.query, request.headers,
                                            request.body):
            return request
        return replace(request, path=path, query=query, headers=headers, body=body)

    def _free(self, value: str) -> str:
        if len(value) < MIN_FREE_TEXT_LENGTH:
            return value
        return self.get(value) or value

    def _header(self, name: str, value: str) -> str:
        if name.lower() != "authorization":
            return value
        scheme, sep, token = value.partition(" ")
        other = self.get(token) if sep else None
        return f"{scheme} {other}" if other else value

    def _body(self, body: Body) -> Body:
        text = body.text
        if not text or text.lstrip()[:1] not in ("{", "["):
            return body
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError:
            return body
        swapped = self._walk(data)
        return body if swapped == data else Body.from_bytes(orjson.dumps(swapped))

    def _walk(self, node: Any) -> Any:
        if isinstance(node, dict):
            return {k: self._walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [self._walk(v) for v in node]
        if isinstance(node, str):
            return self._free(node)
        return node
