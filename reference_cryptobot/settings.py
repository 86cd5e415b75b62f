"""Settings of one reference Cryptobot process, and the migration drifts it can switch on."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

# Answers are computed relative to this fixed instant, never the wall clock, so two copies (and
# two runs) give the same candles and backtests.
REFERENCE_END = datetime(2024, 6, 1, tzinfo=UTC)
JWT_SECRET_DEFAULT = "reference-cryptobot-shared-signing-secret"

# Each drift is a realistic Docker→native divergence touching exactly one service.
DRIFTS: dict[str, str] = {
    "tz-offset": "data: the native host runs in local time; OHLCV candle timestamps are +1h",
    "token-lifetime": "auth: the access-token expiry variable was not migrated (30 → 15 min)",
    "float-order": "backtest: another summation order; ~1e-15 relative noise (not a regression)",
    "fee-rounding": "backtest: fees rounded up to cents with Decimal instead of kept as floats",
    "amount-precision": "trade: order amounts rounded to 6 decimals instead of 8",
    "list-order": "strategy: the list comes back newest first (order is unspecified)",
}


@dataclass(frozen=True, slots=True)
class Settings:
    """What one process serves and how it deviates."""

    flavor: str = "docker"
    drifts: frozenset[str] = field(default_factory=frozenset)
    seed: int = 7
    data_dir: Path = Path(".")
    jwt_secret: str = field(
        default_factory=lambda: os.environ.get("CRYPTOBOT_JWT_SECRET", JWT_SECRET_DEFAULT)
    )

    def has(self, drift: str) -> bool:
        """Whether `drift` is switched on."""
        return drift in self.drifts
