"""Causes, not symptoms: reads that diverge after writes on the same resource were not mirrored.

When a write (POST, PUT, DELETE...) reaches the primary but not the candidate (skipped by policy,
by a missing dry-run proof, or because the route table did not know the route), the two copies'
state drifts apart, and every later read of that resource differs. Those reads are symptoms; the
report names the writes: "state diverged: 6 writes to `POST /api/strategies/` not mirrored".

A *resource* is a route template up to its first parameter, without the trailing slash:
``POST /api/strategies/``, ``PUT /api/strategies/{id}`` and ``GET /api/strategies/{id}/versions``
all touch ``/api/strategies``. A catch-all template (``{rest:path}``) uses the request's path.
"""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from harness.model import SAFE_METHODS
from harness.routes import generic_template

DIVERGING = frozenset({"mismatch", "untestable", "incomparable"})
MAX_READ_TIMES = 20_000  # diverging read times kept per resource (bounded memory)
MAX_RESOURCES = 2_000


def resource_of(route: str, path: str) -> str:
    """The resource a request touches (see the module docstring)."""
    template = route.partition(" ")[2]
    if not template or ":path}" in template:
        template = generic_template(path)
    return template.split("{", 1)[0].rstrip("/") or "/"


@dataclass(slots=True)
class _Writes:
    first_ts: float = float("inf")
    routes: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)


@dataclass(slots=True)
class _Reads:
    times: list[float] = field(default_factory=list)  # sorted
    unkept: int = 0  # diverging reads past MAX_READ_TIMES (counted as later ones)
    routes: dict[str, list[float]] = field(default_factory=dict)  # route -> sorted times


class StateCauses:
    """Streams judged records; names the unmirrored writes behind later diverging reads."""

    def __init__(self) -> None:
        self._writes: dict[tuple[str, str], _Writes] = {}
        self._reads: dict[tuple[str, str], _Reads] = {}

    def add(self, record: dict[str, Any], verdict: str | None) -> None:
        """Count one record (a recordings line) with its verdict."""
        if verdict != "skipped" and verdict not in DIVERGING:
            return
        request = record.get("request") or {}
        method = str(request.get("method", "")).upper()
        route = str(record.get("route") or "")
        key = (str(record.get("group") or ""), resource_of(route, str(request.get("path", ""))))
        ts = _number(record.get("ts"))
        if verdict == "skipped" and method not in SAFE_METHODS:
            writes = self._writes.get(key)
            if writes is None:
                if len(self._writes) >= MAX_RESOURCES:
                    return
                writes = self._writes[key] = _Writes()
            writes.first_ts = min(writes.first_ts, ts)
            name = route or f"{method} {generic_template(str(request.get('path', '')))}"
            writes.routes[name] += 1
            reason = record.get("reason") or record.get("mirror") or "not mirrored"
            writes.reasons[str(reason).removeprefix("skipped:")] += 1
        elif verdict in DIVERGING and method in SAFE_METHODS:
            reads = self._reads.get(key)
            if reads is None:
                if len(self._reads) >= MAX_RESOURCES:
                    return
                reads = self._reads[key] = _Reads()
            if len(reads.times) >= MAX_READ_TIMES:
                reads.unkept += 1
                return
            bisect.insort(reads.times, ts)
            bisect.insort(reads.routes.setdefault(route, []), ts)

    def causes(self) -> list[dict[str, Any]]:
        """One entry per resource whose diverging reads came after unmirrored writes."""
        out = []
        for key, writes in self._writes.items():
            reads = self._reads.get(key)
            if reads is None:
                continue
            later = _at_or_after(reads.times, writes.first_ts) + reads.unkept
            if not later:
                continue
            by_route = {route: _at_or_after(times, writes.first_ts)
                        for route, times in reads.routes.items()}
            group, resource = key
            out.append(_cause(group, resource, writes, later,
                              {r: n for r, n in by_route.items() if n}))
        out.sort(key=lambda c: (-c["reads"], c["group"], c["resource"]))
        return out


def _cause(group: str, resource: str, writes: _Writes, later: int,
           read_routes: dict[str, int]) -> dict[str, Any]:
    count = sum(writes.routes.values())
    named = ", ".join(f"`{route}`" + (f" ({n})" if len(writes.routes) > 1 else "")
                      for route, n in writes.routes.most_common(3))
    reason = writes.reasons.most_common(1)[0][0]
    message = (f"state diverged: {count} write{'s' if count != 1 else ''} to {named} not "
               f"mirrored ({reason}); {later} later read{'s' if later != 1 else ''} of "
               f"{resource} differ")
    return {
        "group": group,
        "resource": resource,
        "writes": count,
        "write_routes": dict(writes.routes.most_common()),
        "write_reasons": dict(writes.reasons.most_common(5)),
        "reads": later,
        "read_routes": read_routes,
        "message": message,
    }


def _at_or_after(times: list[float], ts: float) -> int:
    return len(times) - bisect.bisect_left(times, ts)


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0
