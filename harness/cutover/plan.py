"""The cutover plan: `[cutover]` in parity.toml (defaults in harness/default_config.toml).

    [cutover]
    identity = ["jwt-sub", "api-key", "forwarded-for", "peer"]  # first present wins
    early_adopters = ["sub:alice", "key:redacted:sha256:1f2e3d4c"]
    needs_auth = ["auth", "strategy", "trade", "mcp"]   # token-exchange check before > 0 %
    token_check_path = "/auth/users/me"                  # 200 with the other side's token
    window_s = 30.0        # the rollback judge's sliding window
    min_count = 20         # judged exchanges before a rate or a p99 can roll back
    p99_multiple = 3.0     # candidate p99 latency above this multiple of the primary's
    error_margin = 0.02    # candidate 5xx rate above the primary's by more than this
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

IDENTITY_SOURCES = ("jwt-sub", "api-key", "forwarded-for", "peer")
IDENTITY_PREFIXES = ("sub:", "key:", "ip:")


@dataclass(frozen=True, slots=True)
class CutoverPlan:
    """How users are told apart, who moves first, and when a group rolls back."""

    identity: tuple[str, ...] = IDENTITY_SOURCES
    early_adopters: tuple[str, ...] = ()
    needs_auth: tuple[str, ...] = ("auth", "strategy", "trade", "mcp")
    token_check_path: str = "/auth/users/me"
    window_s: float = 30.0
    min_count: int = 20
    p99_multiple: float = 3.0
    error_margin: float = 0.02


def parse_plan(check: Any, defaults: dict[str, Any], user: Any) -> CutoverPlan:
    """The plan from the defaults' and the user's `[cutover]` tables; `check` is the config's
    validator (raises ConfigError "file: cutover.key: reason")."""
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
