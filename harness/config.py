"""`parity.toml`: the route table, noise thresholds, gates, shadow and replay settings.

The package ships the Cryptobot defaults (`default_config.toml`); a user's file overrides or
extends them (a route with the same method and path replaces the default one). Every mistake is
reported as one line naming the file, the key and the reason.
"""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from harness.diff import base as comparator_registry
from harness.diff.base import CompareOptions
from harness.errors import ConfigError
from harness.model import SAFE_METHODS
from harness.routes import (
    GROUPS,
    MIRROR_POLICIES,
    DryRunRewrite,
    Precondition,
    Route,
    RouteTable,
    template_regex,
)
from harness.settings import SafetySettings, ShadowSettings, declared, from_table, setting

T = TypeVar("T")

DEFAULT_NAME = "default_config.toml"
ROUTE_KEYS = {"method", "path", "group", "comparator", "mirror", "correlate", "ages", "options",
              "dry_run", "settle_s", "precondition"}
OPTION_KEYS = {"rtol", "atol", "ignore", "unordered", "ignore_headers", "compare_headers", "extra"}
DRY_RUN_KEYS = {"headers", "query", "body", "path", "proof_path", "proof_value"}
PRECONDITION_KEYS = {"path", "method", "expect", "state"}
# The rule of a group parity.toml (and these defaults) give no `[gates.<group>]` of its own.
DEFAULT_GATE = "default"
NOISE_KEYS = {"relative_threshold", "absolute_threshold", "min_samples"}
# `data` is parsed by harness.datastate.settings.
TOP_KEYS = {"noise", "gates", "shadow", "replay", "routes", "safety", "data", "cutover"}
METHODS = {"GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"}


@dataclass(frozen=True, slots=True)
class NoiseSettings:
    """Diffy's thresholds: a path is a real difference only if (raw − noise) / raw exceeds
    `relative_threshold` and (raw − noise) / total exceeds `absolute_threshold`."""

    relative_threshold: float = 0.20
    absolute_threshold: float = 0.0003
    # Learned counts explain a difference (without this exchange's secondary) only once the route
    # has this many exchanges with a secondary answer.
    min_samples: int = 3


@dataclass(frozen=True, slots=True)
class GateRule:
    """A group's thresholds (parity.toml `[gates.<group>]`, else `[gates.default]`), each declared
    once (`harness.settings.setting`: default, help, bounds).

    Latency: the candidate fails when it is slower than the primary on the same exchanges
    (Wilcoxon signed-rank test, one-sided) and its p50 or p99 is over the primary's by more than
    the margin (a fraction of the primary's, at least `latency_margin_ms`), judged only from
    `latency_min_pairs` exchanges timed on both sides (see `harness.judge.gate.latency_test`)."""

    SECTION: ClassVar[str | None] = "gates"

    max_mismatch_rate: float = setting(
        0.0, "largest share of failing exchanges (mismatch, incomparable, candidate-error) among "
        "the compared ones", low=0.0, high=1.0)
    min_exchanges: int = setting(1, "compared exchanges the group needs at least", low=0)
    allow_untestable: bool = setting(
        False, "whether exchanges the two Docker copies disagree on may pass")
    latency_p50_margin: float = setting(
        0.25, "how much slower the candidate's p50 may be, as a share of the primary's", low=0.0)
    latency_p99_margin: float = setting(
        0.50, "how much slower the candidate's p99 may be, as a share of the primary's", low=0.0)
    latency_margin_ms: float = setting(
        25.0, "the least latency margin in ms, whatever the shares (timing noise)", low=0.0)
    latency_min_pairs: int = setting(
        20, "exchanges timed on both sides the latency test needs to judge", low=1)

    def for_route(self) -> GateRule:
        """The rule one route of the group is held to: the same rates, no minimum count (the
        minimum applies to the whole group)."""
        return replace(self, min_exchanges=0)


IDENTITY_SOURCES = ("jwt-sub", "api-key", "forwarded-for", "peer")
IDENTITY_PREFIXES = ("sub:", "key:", "ip:")


@dataclass(frozen=True, slots=True)
class CutoverPlan:
    """`[cutover]` (harness/cutover/): how users are told apart (the first present identity
    source), who moves first, and when a group rolls back on its own."""

    identity: tuple[str, ...] = IDENTITY_SOURCES
    early_adopters: tuple[str, ...] = ()
    needs_auth: tuple[str, ...] = ("auth", "strategy", "trade", "mcp")
    token_check_path: str = "/auth/users/me"
    window_s: float = 30.0
    min_count: int = 20
    p99_multiple: float = 3.0
    error_margin: float = 0.02


GATE_KEYS = {s.name for s in declared(GateRule)}


@dataclass(frozen=True, slots=True)
class GateRules:
    """`[gates]`: the groups that have a rule of their own, and the one default for the rest."""

    named: dict[str, GateRule] = field(default_factory=dict)
    default: GateRule = field(default_factory=GateRule)

    def rule(self, group: str) -> GateRule:
        """The gate of `group`: its own, else `[gates.default]`."""
        return self.named.get(group, self.default)

    def __getitem__(self, group: str) -> GateRule:
        return self.rule(group)

    def with_overrides(self, overrides: Mapping[str, Any]) -> GateRules:
        """These rules with some groups' fields replaced (`{"trade": {"max_mismatch_rate":
        0.5}}`, or an object with the fields as attributes, e.g. a GateRule)."""
        named = dict(self.named)
        for group, given in overrides.items():
            base = self.rule(group)
            values = {f.name: (given.get(f.name, getattr(base, f.name))
                               if isinstance(given, Mapping)
                               else getattr(given, f.name, getattr(base, f.name)))
                      for f in fields(GateRule)}
            named[group] = GateRule(**values)
        return GateRules(named, self.default)


@dataclass(frozen=True, slots=True)
class Config:
    """Everything parity.toml configures."""

    routes: RouteTable
    noise: NoiseSettings = field(default_factory=NoiseSettings)
    gates: GateRules = field(default_factory=GateRules)
    shadow: ShadowSettings = field(default_factory=ShadowSettings)
    replay: dict[str, Any] = field(default_factory=dict)
    source: str = "<defaults>"
    safety: SafetySettings = field(default_factory=SafetySettings)
    cutover: CutoverPlan = field(default_factory=CutoverPlan)


class _Checker:
    """Validation helpers that raise ConfigError("file: key: reason")."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, reason: str) -> ConfigError:
        return ConfigError(f"{self.source}: {key}: {reason}")

    def table(self, value: Any, key: str, allowed: set[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(key, f"expected a table, got {type(value).__name__}")
        unknown = sorted(set(value) - allowed)
        if unknown:
            raise self.fail(f"{key}.{unknown[0]}" if key else unknown[0],
                            f"unknown key (known: {', '.join(sorted(allowed))})")
        return value

    def number(self, value: Any, key: str, *, low: float = 0.0, high: float | None = None) -> float:
        if (isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value)
                or math.isinf(value)):
            raise self.fail(key, f"expected a number, got {value!r}")
        if value < low or (high is not None and value > high):
            bounds = f">= {low}" if high is None else f"between {low} and {high}"
            raise self.fail(key, f"must be {bounds}, got {value!r}")
        return float(value)

    def integer(self, value: Any, key: str, *, low: int = 0) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise self.fail(key, f"expected an integer >= {low}, got {value!r}")
        return value

    def strings(self, value: Any, key: str) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(key, f"expected a list of strings, got {value!r}")
        return tuple(value)

    def boolean(self, value: Any, key: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(key, f"expected true or false, got {value!r}")
        return value


def _read_toml(path: Path, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{source}: file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML ({exc})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{source}: cannot read ({exc})") from None


def _defaults() -> dict[str, Any]:
    text = resources.files("harness").joinpath(DEFAULT_NAME).read_text(encoding="utf-8")
    return tomllib.loads(text)


def _options(check: _Checker, raw: Any, key: str) -> CompareOptions:
    table = check.table(raw, key, OPTION_KEYS)
    kwargs: dict[str, Any] = {}
    for name in ("rtol", "atol"):
        if name in table:
            kwargs[name] = check.number(table[name], f"{key}.{name}")
    for name in ("ignore", "unordered", "ignore_headers"):
        if name in table:
            kwargs[name] = check.strings(table[name], f"{key}.{name}")
    if "compare_headers" in table:
        kwargs["compare_headers"] = check.boolean(
            table["compare_headers"], f"{key}.compare_headers"
        )
    if "extra" in table:
        kwargs["extra"] = dict(check.table(table["extra"], f"{key}.extra", set(table["extra"])))
        if "require_dry_run" in kwargs["extra"]:
            raise check.fail(f"{key}.extra.require_dry_run",
                             "no longer read: a dry-run proof is declared once, on the route "
                             '(mirror = "dry-run" with dry_run = { proof_path, proof_value } '
                             "or a precondition)")
    return CompareOptions(**kwargs)


def _dry_run(check: _Checker, raw: Any, key: str) -> DryRunRewrite:
    table = check.table(raw, key, DRY_RUN_KEYS)
    for name in ("headers", "query"):
        values = table.get(name, {})
        if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
            raise check.fail(f"{key}.{name}", "expected a table of strings")
    if not isinstance(table.get("body", {}), dict):
        raise check.fail(f"{key}.body", "expected a table")
    path = table.get("path")
    if path is not None:
        try:
            template_regex(path)
        except (ValueError, TypeError) as exc:
            raise check.fail(f"{key}.path", f"bad path {path!r}: {exc}") from None
        if "{" in path:
            raise check.fail(f"{key}.path", f"a dry-run path is sent as is, not a template: "
                                            f"{path!r}")
    return DryRunRewrite(
        headers=dict(table.get("headers", {})),
        query=dict(table.get("query", {})),
        body=dict(table.get("body", {})),
        proof_path=str(table.get("proof_path", "status")),
        proof_value=table.get("proof_value", "dry_run"),
        path=path,
    )


def _precondition(check: _Checker, raw: Any, key: str) -> Precondition:
    table = check.table(raw, key, PRECONDITION_KEYS)
    if "path" not in table:
        raise check.fail(f"{key}.path", "missing")
    path = table["path"]
    if not isinstance(path, str) or not path.startswith("/") or "{" in path:
        raise check.fail(f"{key}.path", f"expected a literal path starting with /, got {path!r}")
    method = str(table.get("method", "GET")).upper()
    if method not in SAFE_METHODS:
        raise check.fail(f"{key}.method", f"a precondition is only read (GET), not {method}")
    expect = check.table(table.get("expect"), f"{key}.expect", set(table.get("expect") or {}))
    if not expect:
        raise check.fail(f"{key}.expect", "name at least one field and the value it must have")
    state = table.get("state", "")
    if not isinstance(state, str):
        raise check.fail(f"{key}.state", f"expected a string, got {state!r}")
    return Precondition(path=path, expect=dict(expect), method=method, state=state)


def _route(check: _Checker, raw: Any, key: str, comparators: list[str]) -> Route:
    table = check.table(raw, key, ROUTE_KEYS)
    for required in ("method", "path", "group"):
        if required not in table:
            raise check.fail(f"{key}.{required}", "missing")
    method = str(table["method"]).upper()
    if method not in METHODS:
        raise check.fail(f"{key}.method", f"unknown method {table['method']!r}")
    try:
        template_regex(table["path"])
    except (ValueError, TypeError) as exc:
        raise check.fail(f"{key}.path", f"bad template {table['path']!r}: {exc}") from None
    if table["group"] not in GROUPS:
        raise check.fail(f"{key}.group", f"unknown group {table['group']!r} "
                                         f"(known: {', '.join(GROUPS)})")
    comparator = table.get("comparator", "json")
    if comparator not in comparators:
        raise check.fail(f"{key}.comparator", f"unknown comparator {comparator!r} "
                                              f"(known: {', '.join(comparators)})")
    mirror = table.get("mirror", "safe")
    if mirror not in MIRROR_POLICIES:
        raise check.fail(f"{key}.mirror", f"unknown mirror policy {mirror!r} "
                                          f"(known: {', '.join(MIRROR_POLICIES)})")
    dry_run = _dry_run(check, table["dry_run"], f"{key}.dry_run") if "dry_run" in table else None
    precondition = (_precondition(check, table["precondition"], f"{key}.precondition")
                    if "precondition" in table else None)
    if mirror == "dry-run" and precondition is None and not (dry_run and dry_run.rewrites):
        raise check.fail(f"{key}.dry_run", "mirror = \"dry-run\" needs a dry_run rewrite "
                                           "(headers, query, body or path) or a precondition")
    # A precondition without `dry_run`: the request goes unchanged, and the second check after
    # each answer is the precondition asked again (harness.mirror.step), not the answer's body.
    return Route(
        method=method,
        template=table["path"],
        group=table["group"],
        comparator=comparator,
        options=_options(check, table.get("options", {}), f"{key}.options"),
        mirror=mirror,
        dry_run=dry_run,
        precondition=precondition,
        correlate=check.strings(table.get("correlate", []), f"{key}.correlate"),
        ages=check.boolean(table.get("ages", False), f"{key}.ages"),
        settle_s=check.number(table.get("settle_s", 0.0), f"{key}.settle_s", high=60.0),
    )


def build_config(data: dict[str, Any], source: str, user: dict[str, Any] | None = None) -> Config:
    """A validated Config from the defaults `data` and a user's table (errors name `source`)."""
    check = _Checker(source)
    user = check.table(user or {}, "", TOP_KEYS)
    comparators = comparator_registry.names()

    merged_routes: dict[tuple[str, str], Any] = {}
    for index, raw in enumerate(data.get("routes", [])):
        merged_routes[(str(raw["method"]).upper(), raw["path"])] = ("<defaults>", index, raw)
    user_routes = user.get("routes", [])
    if not isinstance(user_routes, list):
        raise check.fail("routes", "expected an array of tables ([[routes]])")
    for index, raw in enumerate(user_routes):
        if isinstance(raw, dict) and "method" in raw and "path" in raw:
            merged_routes[(str(raw["method"]).upper(), str(raw["path"]))] = (source, index, raw)
        else:
            check.table(raw, f"routes[{index}]", ROUTE_KEYS)
            raise check.fail(f"routes[{index}]", "needs method and path")
    routes = []
    for origin, index, raw in merged_routes.values():
        route_check = check if origin == source else _Checker(origin)
        routes.append(_route(route_check, raw, f"routes[{index}]", comparators))

    noise_table = {**data.get("noise", {}),
                   **check.table(user.get("noise", {}), "noise", NOISE_KEYS)}
    noise = NoiseSettings(
        relative_threshold=check.number(noise_table.get("relative_threshold", 0.20),
                                        "noise.relative_threshold", high=1.0),
        absolute_threshold=check.number(noise_table.get("absolute_threshold", 0.0003),
                                        "noise.absolute_threshold", high=1.0),
        min_samples=check.integer(noise_table.get("min_samples", 3), "noise.min_samples"),
    )

    gates = _gates(check, data.get("gates", {}), user.get("gates", {}))
    shadow = _section(check, ShadowSettings, data, user)
    replay = {**data.get("replay", {}),
              **check.table(user.get("replay", {}), "replay",
                            {"username", "password", "login_path"})}
    safety = _section(check, SafetySettings, data, user)
    cutover = _cutover(check, data.get("cutover", {}), user.get("cutover", {}))
    return Config(RouteTable(routes), noise, gates, shadow, replay, source, safety, cutover)


def _gates(check: _Checker, defaults: dict[str, Any], user: Any) -> GateRules:
    table = dict(defaults)
    for group, raw in check.table(user, "gates", {*GROUPS, DEFAULT_GATE}).items():
        table[group] = {**table.get(group, {}), **check.table(raw, f"gates.{group}", GATE_KEYS)}
    default = _gate_rule(check, table.pop(DEFAULT_GATE, {}), DEFAULT_GATE, GateRule())
    named = {group: _gate_rule(check, raw, group, default) for group, raw in table.items()}
    return GateRules(named, default)


def _gate_rule(check: _Checker, raw: dict[str, Any], group: str, base: GateRule) -> GateRule:
    """A group's rule: its keys over `base` (the default rule), each parsed as declared."""
    return from_table(GateRule, raw, base,
                      fail=lambda key, why: check.fail(f"gates.{group}.{key.split('.')[-1]}", why))


def _section(check: _Checker, cls: type[T], data: dict[str, Any], user: dict[str, Any]) -> T:
    """The settings of one parity.toml table (`cls.SECTION`, see harness.settings), the user's
    keys over the defaults'."""
    name = cls.SECTION  # type: ignore[attr-defined]
    table = check.table(user.get(name, {}), name, {s.name for s in declared(cls)})
    return from_table(cls, {**data.get(name, {}), **table}, fail=check.fail)


def _cutover(check: _Checker, defaults: dict[str, Any], user: Any) -> CutoverPlan:
    """The plan from the defaults' and the user's `[cutover]` tables."""
    known = {f.name for f in fields(CutoverPlan)}
    table = {**defaults, **check.table(user, "cutover", known)}
    values: dict[str, Any] = {}
    if "identity" in table:
        sources = check.strings(table["identity"], "cutover.identity")
        unknown = [s for s in sources if s not in IDENTITY_SOURCES]
        if unknown or not sources:
            raise check.fail("cutover.identity", f"expected some of {', '.join(IDENTITY_SOURCES)}"
                                                 f", got {list(sources)!r}")
        values["identity"] = sources
    if "early_adopters" in table:
        adopters = check.strings(table["early_adopters"], "cutover.early_adopters")
        bad = [a for a in adopters if not a.startswith(IDENTITY_PREFIXES)]
        if bad:
            raise check.fail("cutover.early_adopters",
                             f"{bad[0]!r} is not an identity (sub:NAME, key:FINGERPRINT or "
                             "ip:ADDRESS)")
        values["early_adopters"] = adopters
    if "needs_auth" in table:
        values["needs_auth"] = check.strings(table["needs_auth"], "cutover.needs_auth")
    if "token_check_path" in table:
        path = table["token_check_path"]
        if not isinstance(path, str) or not path.startswith("/"):
            raise check.fail("cutover.token_check_path", f"expected a path, got {path!r}")
        values["token_check_path"] = path
    for name in ("window_s", "p99_multiple", "error_margin"):
        if name in table:
            values[name] = check.number(table[name], f"cutover.{name}",
                                        low=1.0 if name == "p99_multiple" else 0.0,
                                        high=1.0 if name == "error_margin" else None)
    if "window_s" in values and values["window_s"] <= 0:
        raise check.fail("cutover.window_s", "must be > 0")
    if "min_count" in table:
        values["min_count"] = check.integer(table["min_count"], "cutover.min_count", low=1)
    return CutoverPlan(**values)


def route_toml(route: Route) -> str:
    """`route` as a `[[routes]]` table of parity.toml (what `load_config` reads back)."""

    def lit(value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return repr(value)
        if isinstance(value, dict):
            return "{ " + ", ".join(f"{lit(k)} = {lit(v)}" for k, v in value.items()) + " }"
        if isinstance(value, list | tuple):
            return "[" + ", ".join(lit(v) for v in value) + "]"
        return json.dumps(str(value), ensure_ascii=False)

    lines = ["[[routes]]", f"method = {lit(route.method)}", f"path = {lit(route.template)}",
             f"group = {lit(route.group)}", f"comparator = {lit(route.comparator)}",
             f"mirror = {lit(route.mirror)}"]
    if route.correlate:
        lines.append(f"correlate = {lit(route.correlate)}")
    if route.ages:
        lines.append("ages = true")
    if route.settle_s:
        lines.append(f"settle_s = {lit(route.settle_s)}")
    if route.dry_run is not None:
        rewrite = route.dry_run
        table = {"headers": rewrite.headers, "query": rewrite.query, "body": rewrite.body,
                 "path": rewrite.path, "proof_path": rewrite.proof_path,
                 "proof_value": rewrite.proof_value}
        lines.append("dry_run = " + lit({k: v for k, v in table.items()
                                         if v != {} and v is not None}))
    if route.precondition is not None:
        pre = route.precondition
        table = {"path": pre.path, "method": pre.method, "expect": pre.expect, "state": pre.state}
        lines.append("precondition = " + lit({k: v for k, v in table.items() if v}))
    options = route.options
    lines.append("[routes.options]")
    for name in ("rtol", "atol"):
        if getattr(options, name) is not None:
            lines.append(f"{name} = {lit(getattr(options, name))}")
    if options.unordered:
        lines.append(f"unordered = {lit(options.unordered)}")
    headers = tuple(dict.fromkeys(options.ignore_headers))
    if headers:
        lines.append(f"ignore_headers = {lit(headers)}")
    if not options.compare_headers:
        lines.append("compare_headers = false")
    if options.extra:
        lines.append(f"extra = {lit(dict(options.extra))}")
    globs = tuple(dict.fromkeys(options.ignore))
    if globs:
        lines.append("ignore = [")
        lines.extend(f"    {lit(glob)}," for glob in globs)
        lines.append("]")
    return "\n".join(lines) + "\n"


def load_cutover_plan(path: str | Path, base: CutoverPlan) -> CutoverPlan:
    """`base` overridden by the cutover plan file at `path` (`parity shadow --cutover`): a
    `[cutover]` table, or its keys at the top. ConfigError naming the file and the key."""
    source = str(path)
    data = _read_toml(Path(path), source)
    table = data["cutover"] if set(data) == {"cutover"} else data
    defaults = {f.name: list(value) if isinstance(value := getattr(base, f.name), tuple)
                else value for f in fields(CutoverPlan)}
    return _cutover(_Checker(source), defaults, table)


def load_config(path: str | Path | None = None) -> Config:
    """The Cryptobot defaults, overridden by the parity.toml at `path` when given."""
    if path is None:
        return build_config(_defaults(), "<defaults>")
    source = str(path)
    return build_config(_defaults(), source, _read_toml(Path(path), source))
