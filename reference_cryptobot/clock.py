"""Time formats shared by the services: wall-clock stamps (real noise) and grid instants."""

from __future__ import annotations

from datetime import UTC, datetime


def now_iso() -> str:
    """The wall clock as ISO-8601 UTC with microseconds: `created_at`, `updated_at`, ..."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def iso(moment: datetime) -> str:
    """An instant as ISO-8601 UTC to the second, `Z` suffix."""
    return as_utc(moment).strftime("%Y-%m-%dT%H:%M:%SZ")


def as_utc(moment: datetime) -> datetime:
    """Aware instants converted to UTC; naive ones taken as UTC (what the services assume)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
