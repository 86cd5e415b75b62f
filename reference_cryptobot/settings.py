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


def _dry_run_from_env() -> bool | None:
    value = os.environ.get("CRYPTOBOT_DRY_RUN", "").strip().lower()
    return None if not value else value in ("1", "true", "yes", "on")


@dataclass(frozen=True, slots=True)
class Settings:
    """What one process serves and how it deviates. `data_dir=None`: a temporary directory,
    removed when the app shuts down."""

    flavor: str = "docker"
    drifts: frozenset[str] = field(default_factory=frozenset)
    seed: int = 7
    data_dir: Path | None = None
    jwt_secret: str = field(default_factory=_jwt_secret)
    # The trade service's runtime switch at start (`GET|PUT /api/v1/settings/dry_run` changes it
    # later). None: from CRYPTOBOT_DRY_RUN, else by flavour: the native candidate starts in
    # dry-run mode, a Docker copy live like production (a secondary is switched on explicitly).
    dry_run: bool | None = field(default_factory=_dry_run_from_env)

    def __post_init__(self) -> None:
        if self.flavor not in FLAVORS:
            raise ValueError(f"flavor must be one of {', '.join(FLAVORS)}, not {self.flavor!r}")
        object.__setattr__(self, "drifts", parse_drifts(self.drifts))
        if self.dry_run is None:
            object.__setattr__(self, "dry_run", self.flavor == "native")
        if self.data_dir is not None:
            object.__setattr__(self, "data_dir", Path(self.data_dir))

    def has(self, drift: str) -> bool:
        """Whether `drift` is switched on."""
        return drift in self.drifts

    def switch_drifts(self, drifts: frozenset[str]) -> None:
        """Switch exactly `drifts` on while the app runs (`PUT /_reference/drifts`). Every
        service holds this one object and asks `has` per request, so the next request sees it."""
        object.__setattr__(self, "drifts", parse_drifts(drifts))
