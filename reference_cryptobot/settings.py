"""Settings of one reference Cryptobot process: flavour, drifts, seed, where state lives."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from reference_cryptobot.drifts import DRIFTS, parse_drifts

# Market data and backtests are computed relative to this fixed instant, never the wall clock,
# so every copy (and every run) answers the same candles and backtests.
REFERENCE_END = datetime(2024, 6, 1, tzinfo=UTC)
# Shared by every copy, as the real deployments share their signing key.
JWT_SECRET_DEFAULT = "reference-cryptobot-shared-signing-secret-not-for-production"
FLAVORS = ("docker", "native")

__all__ = ["DRIFTS", "FLAVORS", "JWT_SECRET_DEFAULT", "REFERENCE_END", "Settings"]


def _jwt_secret() -> str:
    return os.environ.get("CRYPTOBOT_JWT_SECRET") or JWT_SECRET_DEFAULT


@dataclass(frozen=True, slots=True)
class Settings:
    """What one process serves and how it deviates. `data_dir=None`: a temporary directory,
    removed when the app shuts down."""

    flavor: str = "docker"
    drifts: frozenset[str] = field(default_factory=frozenset)
    seed: int = 7
    data_dir: Path | None = None
    jwt_secret: str = field(default_factory=_jwt_secret)

    def __post_init__(self) -> None:
        if self.flavor not in FLAVORS:
            raise ValueError(f"flavor must be one of {', '.join(FLAVORS)}, not {self.flavor!r}")
        object.__setattr__(self, "drifts", parse_drifts(self.drifts))
        if self.data_dir is not None:
            object.__setattr__(self, "data_dir", Path(self.data_dir))

    def has(self, drift: str) -> bool:
        """Whether `drift` is switched on."""
        return drift in self.drifts
