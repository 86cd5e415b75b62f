"""The shadow proxy's live counts: the proxy's own (captured, dropped, streams...) plus the totals
each mirror worker reports (mirrored, one count per verdict, skipped...), logged periodically and
at exit."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

# Counted by the proxy.
CAPTURED = "captured"  # handed to a worker
DROPPED = "dropped"  # the worker's queue was full: not mirrored, production unaffected
TOO_LARGE = "too-large"  # bodies over the capture limit: not mirrored
NOT_SAMPLED = "not-sampled"
STREAMS = "streams"  # WebSocket upgrades and server-sent events: passed through, not mirrored
RESTARTS = "worker-restarts"

# Counted by the workers.
MIRRORED = "mirrored"  # sent to the candidate (dry runs included)
DRY_RUN = "dry-run"
DUPLICATES = "duplicate-orders"  # an order already sent to the candidate once: skipped
BREAKERS = "breakers-tripped"
ABANDONED = "abandoned"  # still queued when the worker was told to stop
NOT_RECORDED = "not-recorded"
WORKER_ERRORS = "worker-errors"

_SHOWN = (
    ("match", "matched"),
    ("mismatch", "mismatched"),
    ("noise-only", "noise-only"),
    ("untestable", "untestable"),
    ("incomparable", "incomparable"),
    ("candidate-error", "candidate errors"),
)
_EXTRAS = (DRY_RUN, DUPLICATES, BREAKERS, TOO_LARGE, NOT_SAMPLED, RESTARTS, ABANDONED,
           NOT_RECORDED, WORKER_ERRORS)


class Counters:
    """Proxy-side counts plus the latest cumulative counts of every worker (a restarted worker
    reports under a new name, so what the old one counted stays in the totals)."""

    def __init__(self) -> None:
        self.proxy: Counter[str] = Counter()
        self._workers: dict[str, dict[str, int]] = {}

    def add(self, name: str, amount: int = 1) -> None:
        """Count something the proxy did."""
        self.proxy[name] += amount

    def report(self, worker: str, counts: Mapping[str, int]) -> None:
        """A worker's cumulative counts (they replace its previous report)."""
        self._workers[worker] = dict(counts)

    def totals(self) -> dict[str, int]:
        """Everything counted so far, proxy and workers summed."""
        totals: Counter[str] = Counter(self.proxy)
        for counts in self._workers.values():
            totals.update(counts)
        return dict(totals)

    def summary(self) -> str:
        """One log line: what was captured, mirrored and judged, and what was not mirrored."""
        t = Counter(self.totals())
        judged = sum(t[key] for key, _ in _SHOWN) + t["skipped"]
        verdicts = ", ".join(f"{label} {t[key]}" for key, label in _SHOWN)
        line = (f"shadow: captured {t[CAPTURED]}, mirrored {t[MIRRORED]} ({verdicts}), "
                f"skipped {t['skipped']}, dropped {t[DROPPED]}, streams {t[STREAMS]}, "
                f"in flight {max(0, t[CAPTURED] - judged - t[ABANDONED] - t[WORKER_ERRORS])}")
        extras = [f"{name} {t[name]}" for name in _EXTRAS if t[name]]
        return line + (", " + ", ".join(extras) if extras else "")
