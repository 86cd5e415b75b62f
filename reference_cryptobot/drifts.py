"""Migration drifts: realistic ways a native (non-Docker) Cryptobot deviates from the Docker one.

Each drift touches exactly one service, and only the native copy switches it on
(`--drift NAME[,NAME...]`). Two of them are *not* regressions: a parity harness must let them
pass (float noise, an unspecified order), and flag the others.

| drift              | service  | what changes on the native copy                    | regression |
|--------------------|----------|----------------------------------------------------|------------|
| `tz-offset`        | data     | host in local time (UTC+1) rendered as UTC: every  | yes        |
|                    |          | OHLCV candle timestamp +1h (values, ranges same)   |            |
| `token-lifetime`   | auth     | access-token expiry variable not migrated: 15 min  | yes        |
|                    |          | instead of 30 (`exp` and `expires_in`)             |            |
| `float-order`      | backtest | another evaluation order: equity-curve positions   | no         |
|                    |          | valued as invested × (close / entry price),        |            |
|                    |          | volatilities summed exactly; ~1e-16 relative apart |            |
|                    |          | (always below 1e-12)                               |            |
| `fee-rounding`     | backtest | fees rounded to cents per fill (Decimal            | yes        |
|                    |          | ROUND_HALF_UP): fees, pnl, equity, profit differ   |            |
|                    |          | well beyond float noise (> 1e-6 relative)          |            |
| `amount-precision` | trade    | order amounts rounded to 6 decimals instead of 8   | yes        |
|                    |          | (dry runs and persisted orders; not paper trading) |            |
| `list-order`       | strategy | strategy list newest first (its order is           | no         |
|                    |          | unspecified by the API)                            |            |
| `slow`             | data     | every OHLCV answer `SLOW_S` (200 ms) later, same   | yes (the   |
|                    |          | content (a cold cache or a slower disk on the      | latency    |
|                    |          | native host)                                       | gate)      |

The backtest service reads the data service's *unshifted* series, so `tz-offset` stays in the
data service.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

SLOW_S = 0.2  # what the `slow` drift adds to each answer of the data service


@dataclass(frozen=True, slots=True)
class Drift:
    """One switchable deviation of the native copy."""

    name: str
    service: str
    summary: str
    regression: bool
    content: bool = True  # the answers' content changes (`slow` changes only their latency)


DRIFTS: dict[str, Drift] = {
    drift.name: drift
    for drift in (
        Drift("tz-offset", "data",
              "OHLCV candle timestamps +1h (local time rendered as UTC)", True),
        Drift("token-lifetime", "auth",
              "access tokens live 15 min instead of 30 (expiry variable not migrated)", True),
        Drift("float-order", "backtest",
              "another evaluation order: ~1e-16 relative float noise, not a regression", False),
        Drift("fee-rounding", "backtest",
              "fees rounded to cents per fill (Decimal ROUND_HALF_UP)", True),
        Drift("amount-precision", "trade",
              "order amounts rounded to 6 decimals instead of 8", True),
        Drift("list-order", "strategy",
              "strategy list newest first (order unspecified), not a regression", False),
        Drift("slow", "data",
              f"OHLCV answers {SLOW_S * 1000:.0f} ms later, same content (a latency regression)",
              True, content=False),
    )
}


class UnknownDriftError(ValueError):
    """A drift name that does not exist; the message lists the known ones."""


def parse_drifts(names: str | Iterable[str]) -> frozenset[str]:
    """`"a,b"` or `["a", "b"]` → the set of drift names; UnknownDriftError for a bad name."""
    parts = names.split(",") if isinstance(names, str) else list(names)
    drifts = frozenset(part.strip() for part in parts if part and part.strip())
    unknown = sorted(drifts - DRIFTS.keys())
    if unknown:
        raise UnknownDriftError(
            f"unknown drift {unknown[0]!r} (known: {', '.join(DRIFTS)})"
        )
    return drifts


def describe() -> str:
    """One line per drift, for `--help`."""
    return "; ".join(f"{d.name} ({d.service}): {d.summary}" for d in DRIFTS.values())
