"""`parity.toml`: the route table, noise thresholds, gates, shadow and replay settings.

The package ships the Cryptobot defaults (`default_config.toml`); a user's file overrides or
extends them (a route with the same method and path replaces the default one). Every mistake is
reported as one line naming the file, the key and the reason.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from comparators import base as comparator_registry
from comparators.base import CompareOptions
from harness.errors import ConfigError
from harness.gate import GateRule
from harness.routes import (
    GROUPS,
    MIRROR_POLICIES,
    DryRunRewrite,
    Route,
    RouteTable,
    template_regex,
)

DEFAULT_NAME = "default_config.toml"
ROUTE_KEYS = {"method", "path", "group", "comparator", "mirror", "correlate", "ages", "options",
              "dry_run", "settle_s"}
OPTION_KEYS = {"rtol", "atol", "ignore", "unordered", "ignore_headers", "compare_headers", "extra"}
DRY_RUN_KEYS = {"headers", "query", "body", "proof_path", "proof_value"}
GATE_KEYS = {"max_mismatch_rate", "min_exchanges", "allow_untestable"}
SHADOW_KEYS = {"timeout_s", "sample", "queue_size", "workers"}
TOP_KEYS = {"noise", "gates", "shadow", "replay", "routes"}
METHODS = {"GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"}


@dataclass(frozen=True, slots=True)
class NoiseSettings:
    """Diffy's thresholds: a path is a real difference only if (raw − noise) / raw exceeds
    `relative_threshold` and (raw − noise) / total exceeds `absolute_threshold`."""

    relative_threshold: float = 0.20
    absolute_threshold: float = 0.0003


@dataclass(frozen=True, slots=True)
class ShadowSettings:
    """Shadow proxy defaults (each overridable on the command line)."""

    timeout_s: float = 5.0
    sample: float = 1.0
    queue_size: int = 10_000
    workers: int = 1


@dataclass(frozen=True, slots=True)
class Config:
    """Everything parity.toml configures."""

    routes: RouteTable
    noise: NoiseSettings = field(default_factory=NoiseSettings)
    gates: dict[str, GateRule] = field(default_factory=dict)
    shadow: ShadowSettings = field(default_factory=ShadowSettings)
    replay: dict[str, Any] = field(default_factory=dict)
    source: str = "<defaults>"


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
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
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
    return CompareOptions(**kwargs)


def _dry_run(check: _Checker, raw: Any, key: str) -> DryRunRewrite:
    table = check.table(raw, key, DRY_RUN_KEYS)
    for name in ("headers", "query"):
        values = table.get(name, {})
        if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
            raise check.fail(f"{key}.{name}", "expected a table of strings")
    if not (table.get("headers") or table.get("query") or table.get("body")):
        raise check.fail(key, "a dry-run rewrite must set a header, query parameter or body field")
    return DryRunRewrite(
        headers=dict(table.get("headers", {})),
        query=dict(table.get("query", {})),
        body=dict(table.get("body", {})),
        proof_path=str(table.get("proof_path", "status")),
        proof_value=table.get("proof_value", "dry_run"),
    )


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
    if mirror == "dry-run" and dry_run is None:
        raise check.fail(f"{key}.dry_run", "mirror = \"dry-run\" needs a dry_run rewrite")
    return Route(
        method=method,
        template=table["path"],
        group=table["group"],
        comparator=comparator,
        options=_options(check, table.get("options", {}), f"{key}.options"),
        mirror=mirror,
        dry_run=dry_run,
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

    noise_table = {**data.get("noise", {}), **check.table(user.get("noise", {}), "noise",
                                                          {"relative_threshold",
                                                           "absolute_threshold"})}
    noise = NoiseSettings(
        relative_threshold=check.number(noise_table["relative_threshold"],
                                        "noise.relative_threshold", high=1.0),
        absolute_threshold=check.number(noise_table["absolute_threshold"],
                                        "noise.absolute_threshold", high=1.0),
    )

    gates_table = dict(data.get("gates", {}))
    for group, raw in check.table(user.get("gates", {}), "gates", set(GROUPS)).items():
        gates_table[group] = {**gates_table.get(group, {}),
                              **check.table(raw, f"gates.{group}", GATE_KEYS)}
    gates = {
        group: GateRule(
            max_mismatch_rate=check.number(raw.get("max_mismatch_rate", 0.0),
                                           f"gates.{group}.max_mismatch_rate", high=1.0),
            min_exchanges=check.integer(raw.get("min_exchanges", 1),
                                        f"gates.{group}.min_exchanges"),
            allow_untestable=check.boolean(raw.get("allow_untestable", False),
                                           f"gates.{group}.allow_untestable"),
        )
        for group, raw in gates_table.items()
    }

    shadow_table = {**data.get("shadow", {}),
                    **check.table(user.get("shadow", {}), "shadow", SHADOW_KEYS)}
    shadow = ShadowSettings(
        timeout_s=check.number(shadow_table["timeout_s"], "shadow.timeout_s", low=0.001),
        sample=check.number(shadow_table["sample"], "shadow.sample", high=1.0),
        queue_size=check.integer(shadow_table["queue_size"], "shadow.queue_size", low=1),
        workers=check.integer(shadow_table["workers"], "shadow.workers", low=1),
    )
    replay = {**data.get("replay", {}),
              **check.table(user.get("replay", {}), "replay",
                            {"username", "password", "login_path"})}
    return Config(RouteTable(routes), noise, gates, shadow, replay, source)


def load_config(path: str | Path | None = None) -> Config:
    """The Cryptobot defaults, overridden by the parity.toml at `path` when given."""
    if path is None:
        return build_config(_defaults(), "<defaults>")
    source = str(path)
    return build_config(_defaults(), source, _read_toml(Path(path), source))
