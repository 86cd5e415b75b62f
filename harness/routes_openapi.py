"""Routes from the running services: their OpenAPI specs (`GET /openapi.json`, which FastAPI
serves) against the route table.

Deployed routers drift from the specs people keep (Cryptobot's strategy routes moved from
``/api/strategies/strategies/`` to ``/api/strategies/``), so the harness asks the running primary
what it serves. Three uses:

- `parity shadow` reads the primary's spec at start (short timeout, never fatal), logs the routes
  the table does not know and saves them beside the recordings (`SAVED_NAME`), so the report
  names unknown traffic by its real template;
- `UnknownRoutes` counts traffic on routes the table does not declare (report, replay);
- `routes_toml` writes a parity.toml route table from live specs with safe defaults
  (`parity routes`).
"""

from __future__ import annotations

import datetime
import logging
import re
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson

from harness.config import METHODS, Config, route_toml
from harness.errors import UserError
from harness.model import SAFE_METHODS
from harness.routes import GROUPS, Route, RouteTable, guess_group, template_regex
from harness.store.reader import files_beside

SPEC_PATH = "/openapi.json"
SAVED_NAME = "openapi-routes.json"  # beside the recordings; read by the report
SAVED_GLOB = "openapi-routes*.json"
FETCH_TIMEOUT_S = 2.0
MAX_SPEC_BYTES = 20 * 1024 * 1024
MAX_UNKNOWN = 500  # distinct unknown routes counted; the rest are summed in one row
METHOD_ORDER = {m: i for i, m in enumerate(("GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH",
                                            "DELETE"))}
_PARAM = re.compile(r"\{[^}]*\}")

log = logging.getLogger("parity.routes")


@dataclass(frozen=True, slots=True)
class SpecRoute:
    """One operation a running service declares."""

    method: str
    template: str
    source: str = ""

    @property
    def name(self) -> str:
        return f"{self.method} {self.template}"


def spec_url(location: str) -> str:
    """Where a service's spec is: `location` itself when it names a .json document, else
    `location` + ``/openapi.json``."""
    if location.split("?", 1)[0].endswith(".json"):
        return location
    return location.rstrip("/") + SPEC_PATH


def fetch_spec(location: str, timeout_s: float = FETCH_TIMEOUT_S) -> dict[str, Any]:
    """The OpenAPI document at `location` (a service URL, a spec URL or a local file); a
    `UserError` with one line saying why not."""
    if not location.startswith(("http://", "https://")):
        path = Path(location)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise UserError(f"{location}: not an http(s) URL, and cannot read it as a file "
                            f"({exc.strerror or exc})") from None
        return _parse_spec(data, location)
    url = spec_url(location)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, headers={"accept": "application/json"})
    try:
        with opener.open(request, timeout=timeout_s) as answer:
            data = answer.read(MAX_SPEC_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise UserError(f"{url}: HTTP {exc.code} (does the service serve its OpenAPI spec?)") \
            from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise UserError(f"{url}: cannot fetch the spec ({reason})") from None
    if len(data) > MAX_SPEC_BYTES:
        raise UserError(f"{url}: the spec is over {MAX_SPEC_BYTES // 1024 // 1024} MB")
    return _parse_spec(data, url)


def _parse_spec(data: bytes, source: str) -> dict[str, Any]:
    try:
        spec = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise UserError(f"{source}: not JSON ({exc})") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("paths"), dict):
        raise UserError(f"{source}: not an OpenAPI document (no 'paths' object)")
    return spec


def spec_routes(spec: dict[str, Any], source: str = "") -> list[SpecRoute]:
    """The operations of an OpenAPI document, with the path prefix of its first server (a
    service mounted under a root path) applied."""
    prefix = ""
    servers = spec.get("servers")
    if isinstance(servers, list) and servers and isinstance(servers[0], dict):
        url = str(servers[0].get("url", ""))
        prefix = "/" + url.split("://", 1)[-1].partition("/")[2] if "://" in url else url
        prefix = prefix.rstrip("/")
    out = []
    for path, item in spec["paths"].items():
        if not isinstance(path, str) or not isinstance(item, dict):
            continue
        template = prefix + path if path.startswith("/") else f"{prefix}/{path}"
        try:
            template_regex(template)
        except ValueError:
            log.warning("%s: path %r is not a template the route table can hold: skipped",
                        source, path)
            continue
        for method in item:
            if str(method).upper() in METHODS:
                out.append(SpecRoute(str(method).upper(), template, source))
    return out


def read_routes(locations: Iterable[str], timeout_s: float = FETCH_TIMEOUT_S) -> list[SpecRoute]:
    """The operations of every spec, de-duplicated by method and path shape (first wins)."""
    seen: dict[tuple[str, str], SpecRoute] = {}
    for location in locations:
        for route in spec_routes(fetch_spec(location, timeout_s), location):
            seen.setdefault((route.method, shape(route.template)), route)
    return list(seen.values())


def shape(template: str) -> str:
    """A template with its parameter names dropped and no trailing slash: two templates of the
    same shape match the same paths."""
    return _PARAM.sub("{}", template).rstrip("/") or "/"


def _sample_path(template: str) -> str:
    """A concrete path the template matches (parameters become ``1``)."""
    return _PARAM.sub("1", template)


def declared_route(table: RouteTable, method: str, path: str) -> Route | None:
    """The route the table declares for `method` `path`, or None when only the catch-all takes
    it (then the request is judged as json and never mirrored unless safe)."""
    route = table.match(method, path)
    return route if any(route is r for r in table.routes) else None


class _SpecIndex:
    """Finds the spec template of a concrete path."""

    def __init__(self, routes: Iterable[SpecRoute]) -> None:
        ordered = sorted(routes, key=lambda r: -len(_PARAM.sub("", r.template)))
        self._routes = [(r.method, template_regex(r.template), r.template) for r in ordered]
        self._cache: dict[tuple[str, str], str | None] = {}

    def template(self, method: str, path: str) -> str | None:
        key = (method, path)
        if key not in self._cache:
            if len(self._cache) > 8192:
                self._cache.clear()
            self._cache[key] = next((t for m, rx, t in self._routes
                                     if m == method and rx.match(path)), None)
        return self._cache[key]


class UnknownRoutes:
    """Counts traffic on routes the table does not declare, by method and template (the spec's
    template when a running service declared one, else the path with ids as ``{id}``)."""

    def __init__(self, table: RouteTable, spec: Iterable[SpecRoute] = ()) -> None:
        self.table = table
        self._declared = {id(route) for route in table.routes}
        self._spec = _SpecIndex(spec)
        self.counts: dict[str, Counter[str]] = {}
        self.in_spec: set[str] = set()
        self._names: dict[tuple[str, str], str | None] = {}

    def add(self, method: str, path: str, verdict: str | None, route: str = "") -> None:
        """Count one exchange (its request's method and path, its verdict; `route`: the route
        name it was recorded with, which lets paths of one route share one look-up)."""
        method = method.upper()
        key = (method, route or path)
        name = self._names.get(key, "")
        if name == "":
            name = self._names[key] = self._unknown_name(method, path)
            if len(self._names) > 8192:
                self._names.clear()
        if name is None:
            return
        counts = self.counts.get(name)
        if counts is None:
            if len(self.counts) >= MAX_UNKNOWN:
                name = "(other unknown routes)"
            counts = self.counts.setdefault(name, Counter())
        counts[verdict or "unjudged"] += 1

    def _unknown_name(self, method: str, path: str) -> str | None:
        """The name of an unknown route (the spec's template when known), None when declared."""
        route = self.table.match(method, path)
        if id(route) in self._declared:
            return None
        template = self._spec.template(method, path)
        name = f"{method} {template or route.template}"
        if template:
            self.in_spec.add(name)
        return name

    def add_record(self, record: dict[str, Any]) -> None:
        """Count one recordings line."""
        request = record.get("request") or {}
        self.add(str(request.get("method", "")), str(request.get("path", "")),
                 record.get("verdict"), str(record.get("route") or ""))

    def rows(self) -> list[dict[str, Any]]:
        """One row per unknown route, most exchanges first."""
        rows: list[dict[str, Any]] = []
        for name, counts in self.counts.items():
            total = sum(counts.values())
            skipped = counts.get("skipped", 0)
            rows.append({"route": name, "exchanges": total, "skipped": skipped,
                         "compared": total - skipped - counts.get("unjudged", 0),
                         "in_spec": name in self.in_spec})
        rows.sort(key=lambda r: (-r["exchanges"], r["route"]))
        return rows

    def lines(self) -> list[str]:
        """Printable lines (empty when every exchange hit a declared route)."""
        rows = self.rows()
        if not rows:
            return []
        out = [f"routes the route table does not know ({len(rows)}): their unsafe requests "
               "were not mirrored; declare them in parity.toml (parity routes --from URL)"]
        out += [f"  {r['route']:<48} {r['exchanges']:>6} exchanges, {r['skipped']} skipped"
                for r in rows[:20]]
        return out


def unknown_routes(config: Config, recordings: Iterable[str | Path]) -> UnknownRoutes:
    """A counter of unknown routes for `config`'s table, with the templates the shadow proxy
    saved beside `recordings`."""
    return UnknownRoutes(config.routes, saved_routes(recordings))


# --- what the shadow proxy saves beside the recordings -------------------------------------------


def save_routes(directory: str | Path, routes: list[SpecRoute], source: str) -> Path:
    """Save the spec's routes in `directory` for the report. Files there are never rewritten
    (recordings are append-only): the same routes as a saved file leave it as it is; other
    routes (the primary was redeployed) go to a new file beside it."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    pairs = [[r.method, r.template] for r in routes]
    for existing in sorted(folder.glob(SAVED_GLOB)):
        try:
            if orjson.loads(existing.read_bytes()).get("routes") == pairs:
                return existing
        except (OSError, orjson.JSONDecodeError, AttributeError):
            continue
    now = datetime.datetime.now(datetime.UTC)
    path = folder / SAVED_NAME
    if path.exists():
        path = folder / f"{path.stem}-{now.strftime('%Y%m%dT%H%M%S%f')}.json"
    data = {"source": source, "fetched": now.isoformat(timespec="seconds"), "routes": pairs}
    path.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")
    return path


def saved_routes(paths: Iterable[str | Path]) -> list[SpecRoute]:
    """The spec routes saved in the directories among `paths` (searched recursively); a file
    that cannot be read is skipped with a warning."""
    out: list[SpecRoute] = []
    for file in files_beside(paths, SAVED_GLOB):
        try:
            data = orjson.loads(file.read_bytes())
            for method, template in data["routes"]:
                template_regex(str(template))
                out.append(SpecRoute(str(method).upper(), str(template), str(file)))
        except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            log.warning("%s: not a saved routes file, ignored: %s", file, exc)
    return out


def announce(primary: str, table: RouteTable, recordings: str | Path,
             timeout_s: float = FETCH_TIMEOUT_S) -> list[SpecRoute]:
    """At shadow start: read the primary's spec, log the routes the table does not know and
    save the spec's routes beside the recordings. Never raises: without a spec, unknown traffic
    is still counted, named by its path."""
    try:
        routes = read_routes([primary], timeout_s)
    except UserError as exc:
        log.info("routes from the primary: %s; unknown routes will be named by their paths", exc)
        return []
    unknown = [r for r in routes if declared_route(table, r.method, _sample_path(r.template))
               is None]
    try:
        save_routes(recordings, routes, spec_url(primary))
    except OSError as exc:
        log.warning("cannot save the primary's routes in %s: %s", recordings, exc)
    if unknown:
        shown = ", ".join(r.name for r in unknown[:8]) + (" ..." if len(unknown) > 8 else "")
        log.warning("the primary serves %d route(s) the route table does not know: %s; their "
                    "unsafe requests will not be mirrored (parity routes --from %s writes a "
                    "table)", len(unknown), shown, primary)
    else:
        log.info("the route table knows all %d routes of the primary's spec", len(routes))
    return routes


# --- parity routes ----------------------------------------------------------------------------


def routes_toml(routes: list[SpecRoute], defaults: Config, sources: list[str]) -> str:
    """A parity.toml route table for the live `routes`: the default table's group, comparator
    and options where it declares the path; unsafe methods never mirrored until the user
    decides (the default table's policy is named in a comment)."""
    stamp = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    parts = [
        "# parity.toml route table written by `parity routes` from the running services' specs:",
        *(f"#   {spec_url(s) if s.startswith('http') else s}" for s in sources),
        f"# on {stamp}. Safe methods are mirrored; every unsafe method is mirror = \"never\"",
        "# until you decide: \"always\" when the candidate's own copy of that state may change,",
        "# \"dry-run\" with a rewrite and its proof for anything with real effects (orders).",
        "",
    ]
    for spec in sorted(routes, key=lambda r: (GROUPS.index(guess_group(r.template)), r.template,
                                              METHOD_ORDER.get(r.method, 9))):
        default = declared_route(defaults.routes, spec.method, _sample_path(spec.template))
        same = default is not None and shape(default.template) == shape(spec.template)
        if default is not None:
            route = replace(default, method=spec.method,
                            template=default.template if same else spec.template)
        else:
            route = Route(method=spec.method, template=spec.template,
                          group=guess_group(spec.template))
        comment = f"# {spec.name} (from {spec.source})"
        if default is None:
            comment += ": not in the default table"
        elif not same:
            comment += f": the default table covers it with {default.name}"
        if spec.method not in SAFE_METHODS:
            policy = f'"{default.mirror}"' if default is not None else "none"
            comment += (f"\n# Unsafe: not mirrored until you decide (the default table's policy:"
                        f" {policy}).")
            route = replace(route, mirror="never")
        parts.append(comment)
        parts.append(route_toml(route))
    return "\n".join(parts)

