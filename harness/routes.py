"""The route table: METHOD + path template → migration group, comparator and its options, mirror
policy (the dry-run rewrite and proof, the precondition a side must prove first), identifier paths
to correlate, and whether answers age."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any, Literal

import orjson

from harness.diff import paths
from harness.diff.base import CompareOptions, Lifted
from harness.diff.values import show
from harness.model import Body, Request

MirrorPolicyName = Literal["safe", "dry-run", "always", "never"]
MIRROR_POLICIES = ("safe", "dry-run", "always", "never")
GROUPS = ("data", "backtest", "strategy", "auth", "trade", "mcp", "other")

# Where an unknown route belongs, by path prefix (first match wins).
GROUP_PREFIXES = (
    ("/api/v1/data", "data"),
    ("/ws/", "data"),
    ("/api/backtest", "backtest"),
    ("/api/strategies", "strategy"),
    ("/auth", "auth"),
    ("/api-keys", "auth"),
    ("/admin", "auth"),
    ("/api/trades", "trade"),
    ("/api/v1/settings", "trade"),
    ("/mcp", "mcp"),
)

_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(:path)?\}")


@dataclass(frozen=True, slots=True)
class Precondition:
    """What a mirrored side must prove before it gets an unsafe request of the route: `method`
    `path` on that side answers 200 with `expect`'s fields (dotted paths) at those values.
    `state` names it in reasons ("in dry-run mode")."""

    path: str
    expect: dict[str, Any]
    method: str = "GET"
    state: str = ""

    @property
    def key(self) -> str:
        """Identifies the check: routes declaring the same one share what a side proved."""
        return f"{self.method} {self.path} " + orjson.dumps(
            self.expect, option=orjson.OPT_SORT_KEYS).decode()

    @property
    def described(self) -> str:
        """How reasons name what is proven: `state`, else the check itself."""
        return self.state or f"by {self.method} {self.path}"

    def unmet(self, status: int, body: Any) -> str | None:
        """Why an answer (`status`, parsed JSON `body`) does not prove it; None when it does."""
        if status != 200:
            return f"{self.method} {self.path} answered HTTP {status}"
        for dotted, wanted in self.expect.items():
            found = _at(body, dotted)
            if found is _MISSING:
                return f"{self.method} {self.path} answered no {dotted}"
            if found != wanted or isinstance(found, bool) != isinstance(wanted, bool):
                return f"{self.method} {self.path} answered {dotted} = {show(found)}"
        return None


_MISSING = object()


def _at(node: Any, path: str) -> Any:
    """The value at `path` (the difference-path grammar: ``dry_run``, ``order.mode``,
    ``items[0].status``) in a parsed answer body, or _MISSING."""
    for step in paths.steps(path):
        in_list = isinstance(step, int) and isinstance(node, list) and step < len(node)
        if not (in_list or (isinstance(step, str) and isinstance(node, dict) and step in node)):
            return _MISSING
        node = node[step]
    return node


@dataclass(frozen=True, slots=True)
class DryRunRewrite:
    """How a request becomes a dry run on a mirrored side (headers, query, body fields, or another
    path such as a dry-run echo), and how its answer proves it was one. With no rewrite, the
    request goes unchanged and the route's precondition is what makes it a dry run."""

    headers: dict[str, str] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] = field(default_factory=dict)
    proof_path: str = "status"
    proof_value: Any = "dry_run"
    path: str | None = None

    @property
    def rewrites(self) -> bool:
        """Whether it changes the request at all."""
        return bool(self.headers or self.query or self.body or self.path)

    def apply(self, request: Request) -> Request:
        """A new request carrying the dry-run marker(s); the input is not changed."""
        names = {name.lower() for name in self.headers}
        headers = [(k, v) for k, v in request.headers if k.lower() not in names]
        headers += list(self.headers.items())
        query = [(k, v) for k, v in request.query if k not in self.query]
        query += list(self.query.items())
        body = request.body
        if self.body:
            try:
                data = orjson.loads(body.raw) if body.raw else {}
            except orjson.JSONDecodeError:
                data = None
            if isinstance(data, dict):
                body = Body.from_bytes(orjson.dumps({**data, **self.body}))
        raw_query = request.raw_query if query == request.query else None
        return replace(request, path=self.path or request.path, headers=headers, query=query,
                       body=body, raw_query=raw_query)

    def proven(self, answer: Lifted) -> bool:
        """Whether a side's answer says it was a dry run (`proof_path` == `proof_value`)."""
        return bool(_at(answer.body, self.proof_path) == self.proof_value)


@dataclass(frozen=True, slots=True)
class Route:
    """One entry of the route table."""

    method: str
    template: str
    group: str
    comparator: str = "json"
    options: CompareOptions = field(default_factory=CompareOptions)
    mirror: MirrorPolicyName = "safe"
    dry_run: DryRunRewrite | None = None
    # Checked on each mirrored side before an unsafe request of this route is sent to it.
    precondition: Precondition | None = None
    correlate: tuple[str, ...] = ()
    ages: bool = False
    # Answers that become final shortly after a write (a backtest's status and results): a safe
    # request whose answers disagree is sent again for up to this many seconds.
    settle_s: float = 0.0

    @property
    def name(self) -> str:
        """``GET /api/backtest/results/{id}``: how the route is named everywhere."""
        return f"{self.method} {self.template}"


def template_regex(template: str) -> re.Pattern[str]:
    """The regex a path template matches (`{id}` one segment, `{rest:path}` the rest); a trailing
    slash is optional. Raises ValueError for a malformed template."""
    if not template.startswith("/"):
        raise ValueError("must start with /")
    literals = _PARAM.split(template)[::3]
    if any("{" in part or "}" in part for part in literals):
        raise ValueError("bad parameter or unbalanced braces (use {name} or {name:path})")
    pattern, last = [], 0
    for match in _PARAM.finditer(template):
        pattern.append(re.escape(template[last : match.start()]))
        pattern.append(".+" if match.group(2) else "[^/]+")
        last = match.end()
    pattern.append(re.escape(template[last:].rstrip("/")))
    return re.compile("^" + "".join(pattern) + "/?$")


_ID_SEGMENT = re.compile(r"^(?:\d+|[0-9a-fA-F-]{16,})$")


def generic_template(path: str) -> str:
    """A template for a path no route names: numeric and uuid/hex segments become `{id}`."""
    return "/".join("{id}" if _ID_SEGMENT.match(seg) else seg for seg in path.split("/"))


def _specificity(template: str) -> tuple[int, int]:
    literal = _PARAM.sub("", template)
    return (-len(literal.strip("/").split("/")), -len(literal))


def guess_group(path: str) -> str:
    """The migration group of a path no route names."""
    for prefix, group in GROUP_PREFIXES:
        if path.startswith(prefix):
            return group
    return "other"


class RouteTable:
    """Matches requests to routes; unknown ones get a catch-all route (json, safe methods only).

    Templates are compiled to regexes and indexed by method and first path segment, most
    specific first; answers are cached (recent paths)."""

    def __init__(self, routes: list[Route]) -> None:
        self.routes = list(routes)
        compiled = [
            (_first_segment(route.template), template_regex(route.template), route)
            for route in sorted(self.routes, key=lambda r: _specificity(r.template))
        ]
        index: dict[str, dict[str | None, list[tuple[re.Pattern[str], Route]]]] = {}
        for method in {route.method for route in self.routes}:
            mine = [(seg, rx, r) for seg, rx, r in compiled if r.method == method]
            segments = {seg for seg, _, _ in mine if seg is not None}
            buckets: dict[str | None, list[tuple[re.Pattern[str], Route]]] = {
                seg: [(rx, r) for s, rx, r in mine if s in (seg, None)] for seg in segments
            }
            buckets[None] = [(rx, r) for s, rx, r in mine if s is None]
            index[method] = buckets
        self._index = index
        self.match = lru_cache(maxsize=8192)(self._match)

    def _match(self, method: str, path: str) -> Route:
        """The route of `method` `path` (catch-all when no template matches)."""
        method = method.upper()
        buckets = self._index.get(method)
        if buckets:
            segment = path.split("/", 2)[1] if path.startswith("/") and len(path) > 1 else ""
            candidates = buckets.get(segment)
            for regex, route in candidates if candidates is not None else buckets[None]:
                if regex.match(path):
                    return route
        return Route(method=method, template=generic_template(path), group=guess_group(path))

    def get(self, method: str, template: str) -> Route | None:
        """The route declared for exactly `method` `template`, if any."""
        method = method.upper()
        return next((r for r in self.routes if r.method == method and r.template == template),
                    None)

    def __iter__(self) -> Iterator[Route]:
        return iter(self.routes)

    def __len__(self) -> int:
        return len(self.routes)


def _first_segment(template: str) -> str | None:
    """The first path segment when it is a literal (None when it is a parameter)."""
    first = template.split("/", 2)[1] if len(template) > 1 else ""
    return None if "{" in first else first
