"""Noise as the real answers showed it: where the secondary (a second Docker copy) answered
otherwise than the primary, and where the candidate differed at a place the rules never compare
(headers other than content-type, a JWT's ``jti``/``exp``, ``created_at``, ids...), each with
counts. Nothing is hidden: the report lists what was set aside, and why.

Per judged exchange, the primary's answer is compared with the secondary's and the candidate's:
status, headers and JSON bodies leaf by leaf (JWTs decoded into their header and claims); each
differing path (generalized, ``[*]`` for indexes) is counted and labelled:

- *ignored by rule*: the route's comparator does not report it (its default ignores, the route's
  options, headers not compared);
- *learned noise*: compared, and the Docker copies differ there too, so a candidate difference
  there is marked noise (or the route is untestable, when the content does not look volatile).

Bodies over `MAX_BODY` bytes are compared by digest only. The first `SAMPLED` judged exchanges
of each route are analysed (the counts say "of how many"), so a long recording costs no more.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeGuard

import orjson

from harness.diff.paths import generalize, index, is_inside, key
from harness.report.pretty import ROOT_NAME, compact
from harness.routes import RouteTable

IGNORED = "ignored by rule"
NOISE = "learned noise"
UNTESTABLE = "untestable"
COMPARED = "compared (a real difference)"
MAX_BODY = 512 * 1024
SAMPLED = 500  # exchanges analysed per route
MAX_LEAVES = 40  # differing leaves taken from one exchange
MAX_ITEMS = 100  # list items walked per list
MAX_DEPTH = 32
MAX_PATHS = 200  # paths counted per route
MAX_ROUTES = 1000
VALUE_CHARS = 120
_JWT_START = "eyJ"


@dataclass(slots=True)
class _PathSeen:
    secondary: int = 0  # exchanges whose secondary differed from the primary here
    candidate: int = 0  # exchanges whose candidate differed here while the rules ignored it
    labels: dict[str, int] = field(default_factory=dict)
    example: tuple[Any, Any] | None = None  # (primary, secondary or candidate)


@dataclass(slots=True)
class _RouteSeen:
    group: str
    analysed: int = 0  # exchanges analysed (with a candidate or secondary answer)
    with_secondary: int = 0  # ... of which with a secondary answer
    beyond: int = 0  # exchanges past the sample, not analysed
    paths: dict[str, _PathSeen] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)  # path -> label from the comparator


class ObservedNoise:
    """Streams judged records; counts what the secondary differed at and what rules ignored.

    `routes` (a `RouteTable`) gives the comparator and options of each route; without it, the
    recorded comparator with default options is used."""

    def __init__(self, routes: RouteTable | None = None) -> None:
        self.routes_table = routes
        self.routes: dict[tuple[str, str], _RouteSeen] = {}
        self.with_secondary = 0

    def add(self, record: dict[str, Any], verdict: str | None) -> None:
        """Count one record (a recordings line) with its verdict."""
        if verdict in (None, "skipped"):
            return
        key_ = (str(record.get("group") or ""), str(record.get("route") or "?"))
        seen = self.routes.get(key_)
        if seen is None:
            if len(self.routes) >= MAX_ROUTES:
                return
            seen = self.routes[key_] = _RouteSeen(key_[0])
        secondary = record.get("secondary")
        has_secondary = _usable(secondary)
        self.with_secondary += has_secondary
        if seen.analysed >= SAMPLED:
            seen.beyond += 1
            return
        primary, candidate = record.get("primary"), record.get("candidate")
        has_candidate = _usable(candidate)
        if not _usable(primary) or not (has_secondary or has_candidate):
            return
        seen.analysed += 1
        seen.with_secondary += has_secondary
        by_secondary = raw_differences(primary, secondary) if _usable(secondary) else {}
        by_candidate = raw_differences(primary, candidate) if _usable(candidate) else {}
        reported = _reported(record.get("differences") or [])
        for path, values in by_secondary.items():
            stat = self._stat(seen, path, values)
            if stat is None:
                continue
            stat.secondary += 1
            label = self._label(record, seen, path, reported, by_candidate, by_secondary,
                                verdict)
            stat.labels[label] = stat.labels.get(label, 0) + 1
        for path, values in by_candidate.items():
            if _covered(path, reported):
                continue  # a reported difference: shown with the differences, not here
            stat = self._stat(seen, path, values)
            if stat is None:
                continue
            stat.candidate += 1
            if path not in by_secondary:
                stat.labels[IGNORED] = stat.labels.get(IGNORED, 0) + 1

    @staticmethod
    def _stat(seen: _RouteSeen, path: str, example: Any) -> _PathSeen | None:
        """The counts of `path` (None past MAX_PATHS), keeping its first values as the example."""
        stat = seen.paths.get(path)
        if stat is None and len(seen.paths) < MAX_PATHS:
            stat = seen.paths[path] = _PathSeen(example=example)
        return stat

    def _label(self, record: dict[str, Any], seen: _RouteSeen, path: str,
               reported: dict[str, bool], by_candidate: dict[str, Any],
               by_secondary: dict[str, Any], verdict: str | None) -> str:
        hit = _covering(path, reported)
        if hit is not None:
            if reported[hit]:
                return NOISE
            return UNTESTABLE if verdict == UNTESTABLE else COMPARED
        if path in by_candidate:
            return IGNORED  # the candidate differed here too and nothing was reported
        label = seen.labels.get(path)
        if label is None:
            label = self._compare(record, path, by_secondary, seen)
        return label

    def _compare(self, record: dict[str, Any], path: str, by_secondary: dict[str, Any],
                 seen: _RouteSeen) -> str:
        """Ask the route's comparator (once per route and path) whether it compares `path`."""
        try:
            from harness.diff import base as registry
            from harness.diff.lift import lift
            from harness.model import Request, Response

            request = Request.from_dict(record["request"])
            options = None
            comparator = str(record.get("comparator") or "json")
            if self.routes_table is not None:
                route = self.routes_table.match(request.method, request.path)
                options = route.options
                comparator = str(record.get("comparator") or route.comparator)
            if options is None:
                from harness.diff.base import CompareOptions

                options = CompareOptions()
            primary = lift(Response.from_dict(record["primary"]) or Response())
            secondary = lift(Response.from_dict(record["secondary"]) or Response())
            found = registry.get(comparator)(primary, secondary, options)
            compared = {generalize(d.path) or ROOT_NAME: False for d in found}
        except Exception:  # a comparator that fails here judges nothing: call it compared
            return NOISE
        for other in by_secondary:
            seen.labels.setdefault(other, NOISE if _covered(other, compared) else IGNORED)
        return seen.labels[path]

    def summary(self) -> dict[str, Any]:
        """The counts: exchanges with a secondary answer, and one row per (route, path). Example
        values go through the store's redactor once more (as every shown value does)."""
        from harness.report.examples import _redactor

        redact = _redactor()
        rows = []
        for (group, route), seen in self.routes.items():
            for path, stat in seen.paths.items():
                label = max(stat.labels.items(), key=lambda kv: kv[1])[0] if stat.labels \
                    else IGNORED
                example = stat.example or (None, None)
                rows.append({
                    "group": group,
                    "route": route,
                    "path": path,
                    "secondary": stat.secondary,
                    "candidate_ignored": stat.candidate,
                    "with_secondary": seen.with_secondary,
                    "analysed": seen.analysed,
                    "not_analysed": seen.beyond,
                    "handling": label,
                    "primary": _small(example[0], redact),
                    "other": _small(example[1], redact),
                })
        rows.sort(key=lambda r: (-(r["secondary"] + r["candidate_ignored"]), r["route"],
                                 r["path"]))
        ignored = sum(1 for r in rows if r["handling"] == IGNORED)
        return {"with_secondary": self.with_secondary, "paths": rows,
                "ignored_by_rule": ignored, "learned": len(rows) - ignored}


def _usable(answer: Any) -> TypeGuard[dict[str, Any]]:
    return isinstance(answer, dict) and not answer.get("error") and bool(answer.get("status"))


def _reported(differences: list[dict[str, Any]]) -> dict[str, bool]:
    """Generalized paths of the recorded differences → whether marked noise."""
    out: dict[str, bool] = {}
    for diff in differences:
        path = generalize(str(diff.get("path", ""))) or ROOT_NAME
        out[path] = out.get(path, False) or bool(diff.get("noise"))
    return out


def _covering(path: str, reported: dict[str, Any]) -> str | None:
    """The reported path at, above or below `path`, if any."""
    if path in reported:
        return path
    for other in reported:
        if other == ROOT_NAME and not path.startswith("@"):
            return other
        if is_inside(path, other) or is_inside(other, path):
            return other
    return None


def _covered(path: str, reported: dict[str, Any]) -> bool:
    return _covering(path, reported) is not None


def _small(value: Any, redact: Callable[[str], str]) -> Any:
    """A shown example value: numbers as they are, text cut and redacted, a subtree as its
    compact JSON text."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return redact(value if len(value) <= VALUE_CHARS else value[: VALUE_CHARS - 1] + "…")
    return redact(compact(value, VALUE_CHARS))


# --- raw differences ---------------------------------------------------------------------------


def raw_differences(primary: dict[str, Any], other: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Every generalized path where two recorded answers differ, with an example pair: status
    (``@status``), headers (``@headers.<name>``) and body leaves (``body`` for the root, or for
    a body that is not JSON)."""
    out: dict[str, tuple[Any, Any]] = {}
    if primary.get("status") != other.get("status"):
        out["@status"] = (primary.get("status"), other.get("status"))
    if primary.get("headers") != other.get("headers"):
        p_headers, o_headers = _headers(primary), _headers(other)
        for name in sorted(p_headers.keys() | o_headers.keys()):
            p_values, o_values = p_headers.get(name), o_headers.get(name)
            if p_values != o_values and sorted(p_values or ()) != sorted(o_values or ()):
                out[f"@headers.{name}"] = (_joined(p_values), _joined(o_values))
    p_body, o_body = primary.get("body") or {}, other.get("body") or {}
    if _same_body(p_body, o_body):
        return out
    p_json = _json(p_body)
    o_json = _json(o_body) if p_json is not _NOT_JSON else _NOT_JSON
    if p_json is _NOT_JSON or o_json is _NOT_JSON:
        out[ROOT_NAME] = (p_body.get("size"), o_body.get("size"))
        return out
    leaves: dict[str, tuple[Any, Any]] = {}
    _walk(p_json, o_json, "", leaves, 0)
    for path, values in leaves.items():
        out.setdefault(generalize(path) or ROOT_NAME, values)
    return out


def _headers(answer: dict[str, Any]) -> dict[str, list[str]]:
    headers: dict[str, list[str]] = {}
    for item in answer.get("headers") or []:
        if isinstance(item, list | tuple) and len(item) == 2:
            headers.setdefault(str(item[0]).lower(), []).append(str(item[1]))
    return headers


def _joined(values: list[str] | None) -> str | None:
    return ", ".join(values) if values else None


def _same_body(a: dict[str, Any], b: dict[str, Any]) -> bool:
    if a.get("sha256") and b.get("sha256"):
        return a["sha256"] == b["sha256"]
    return a.get("text") == b.get("text") and a.get("b64") == b.get("b64")


_NOT_JSON = object()


def _json(body: dict[str, Any]) -> Any:
    text = body.get("text")
    if not isinstance(text, str) or body.get("truncated") or len(text) > MAX_BODY:
        return _NOT_JSON
    if text.lstrip()[:1] not in ("{", "["):
        return _NOT_JSON
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return _NOT_JSON


def _walk(a: Any, b: Any, path: str, out: dict[str, tuple[Any, Any]], depth: int) -> None:
    if len(out) >= MAX_LEAVES or a == b:
        return
    if depth >= MAX_DEPTH:
        out.setdefault(path, (a, b))
        return
    if isinstance(a, dict) and isinstance(b, dict):
        for name in sorted(a.keys() | b.keys())[: MAX_ITEMS * 2]:
            _walk(a.get(name), b.get(name), key(path, name), out, depth + 1)
        return
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out.setdefault(path, (f"{len(a)} items", f"{len(b)} items"))
        for i, (x, y) in enumerate(zip(a[:MAX_ITEMS], b[:MAX_ITEMS], strict=False)):
            _walk(x, y, index(path, i), out, depth + 1)
        return
    if isinstance(a, str) and isinstance(b, str) and a.startswith(_JWT_START) \
            and b.startswith(_JWT_START):
        p_jwt, o_jwt = _jwt_parts(a), _jwt_parts(b)
        if p_jwt is not None and o_jwt is not None:
            _walk(p_jwt, o_jwt, path, out, depth + 1)
            return
    out.setdefault(path, (a, b))


def _jwt_parts(token: str) -> dict[str, Any] | None:
    """A JWT's header and claims (the signature is not compared: it follows from them)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        decoded = [orjson.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))
                   for p in parts[:2]]
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        return None
    if not all(isinstance(d, dict) for d in decoded):
        return None
    return {"header": decoded[0], "claims": decoded[1]}
