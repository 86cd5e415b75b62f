"""The shadow proxy's live counts: the proxy's own (answered, captured, dropped, streams...) plus
the totals each mirror worker reports (one outcome per exchange, one count per verdict...),
logged periodically and at exit.

Every request the proxy answered ends in exactly one OUTCOME, so the outcomes add up to
`answered` once nothing is in flight (the final counts): compared, skipped by policy, dropped,
abandoned, too large, stream, not sampled, refused by the proxy, not recorded, failed in a
worker. Counting happens here (`WorkerTally` in the workers; the proxy's hot path increments its
Counter directly), so metrics can hook in at one place.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.model import Exchange

# Counted by the proxy.
ANSWERED = "answered"  # every response the proxy passed on to a client
CAPTURED = "captured"  # handed to a worker
DROPPED = "dropped"  # the worker's queue was full: not mirrored, production unaffected
TOO_LARGE = "too-large"  # bodies over the capture limit: not mirrored
NOT_SAMPLED = "not-sampled"
REFUSED = "refused-by-proxy"  # answered 503 by the proxy itself (an order it could not place)
STREAMS = "streams"  # WebSocket upgrades and server-sent events: passed through, not mirrored
RESTARTS = "worker-restarts"

# Counted by the workers.
COMPARED = "compared"  # mirrored, judged and recorded
SKIPPED = "skipped-by-policy"  # judged `skipped` (unsafe method, breaker open...) and recorded
MIRRORED = "mirrored"  # sent to the candidate (dry runs included)
DRY_RUN = "dry-run"
RETRIES_NOT_RESENT = "order-retries-not-resent"  # a client's retry of an order already sent
BREAKERS = "breakers-tripped"
ABANDONED = "abandoned"  # held by a worker told to stop (or lost with a worker that died)
NOT_RECORDED = "not-recorded"
WORKER_ERRORS = "failed-in-worker"  # could not be read or mirrored (a bug: see the worker's log)

# `Exchange.mirror` of the exchanges sent to the other side: forward (to the candidate) and, for
# the users a cutover moved, reverse (to the primary; see harness.cutover.reverse).
SENT_LABELS = ("mirrored", "dry-run", "reverse", "reverse-dry-run")
DRY_RUN_LABELS = ("dry-run", "reverse-dry-run")

# What became of each answered request: (key, label). Their sum is ANSWERED.
OUTCOMES: tuple[tuple[str, str], ...] = (
    (COMPARED, "compared"),
    (SKIPPED, "skipped by policy"),
    (DROPPED, "dropped (queue full)"),
    (ABANDONED, "abandoned at shutdown"),
    (TOO_LARGE, "too large"),
    (STREAMS, "streams"),
    (NOT_SAMPLED, "not sampled"),
    (REFUSED, "refused by the proxy"),
    (NOT_RECORDED, "not recorded"),
    (WORKER_ERRORS, "failed in a worker"),
)
# Outcomes a worker decides: what it reports for the exchanges it was handed.
WORKER_OUTCOMES = (COMPARED, SKIPPED, ABANDONED, NOT_RECORDED, WORKER_ERRORS)

_SHOWN = (
    ("match", "matched"),
    ("mismatch", "mismatched"),
    ("noise-only", "noise-only"),
    ("untestable", "untestable"),
    ("incomparable", "incomparable"),
    ("candidate-error", "candidate errors"),
)
_EXTRAS = (DRY_RUN, RETRIES_NOT_RESENT, BREAKERS, RESTARTS)


def accounted(totals: Mapping[str, int]) -> int:
    """How many answered requests have an outcome."""
    return sum(int(totals.get(key, 0)) for key, _ in OUTCOMES)


def accounting_line(totals: Mapping[str, int], *, keys: bool = False) -> str:
    """'N requests answered: compared X, skipped by policy Y, ...' (every outcome, zeros too),
    plus what is still in flight when the outcomes do not add up yet. `keys`: name the outcomes
    by their keys ('skipped-by-policy 3'), as the log line does for grep."""
    answered = int(totals.get(ANSWERED, 0))
    parts = ", ".join(f"{key if keys else label} {int(totals.get(key, 0))}"
                      for key, label in OUTCOMES)
    line = f"{answered} requests answered: {parts}"
    missing = answered - accounted(totals)
    return line + (f", in flight {missing}" if missing else "")


class WorkerTally:
    """A worker's counts: one outcome per exchange it was handed, plus details (verdicts,
    mirrored, dry runs). Cumulative; sent to the proxy as `counts`."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def finished(self, exchange: Exchange, *, recorded: bool) -> None:
        """`exchange` was judged; `recorded`: whether it was written to the recordings."""
        counts = self.counts
        mirrored = exchange.mirror in SENT_LABELS
        if mirrored:
            counts[MIRRORED] += 1
            if exchange.mirror in DRY_RUN_LABELS:
                counts[DRY_RUN] += 1
        counts[str(exchange.verdict)] += 1
        counts[(COMPARED if mirrored else SKIPPED) if recorded else NOT_RECORDED] += 1

    def failed(self, amount: int = 1) -> None:
        """Exchanges that could not be read or mirrored."""
        self.counts[WORKER_ERRORS] += amount

    def abandoned(self, amount: int) -> None:
        """Exchanges held (or not yet read) when the worker was told to stop."""
        self.counts[ABANDONED] += amount


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

    def decided_by(self, worker: str) -> int:
        """Exchanges worker `worker` reported an outcome for (in its latest report)."""
        counts = self._workers.get(worker, {})
        return sum(int(counts.get(key, 0)) for key in WORKER_OUTCOMES)

    def totals(self) -> dict[str, int]:
        """Everything counted so far, proxy and workers summed."""
        totals: Counter[str] = Counter(self.proxy)
        for counts in self._workers.values():
            totals.update(counts)
        return dict(totals)

    def summary(self) -> str:
        """One log line: what the proxy answered and what became of it (every outcome), the
        verdicts of the mirrored exchanges, and the other notable counts."""
        t = Counter(self.totals())
        verdicts = ", ".join(f"{label} {t[key]}" for key, label in _SHOWN)
        line = (f"shadow: {accounting_line(t, keys=True)}; captured {t[CAPTURED]}, "
                f"mirrored {t[MIRRORED]} ({verdicts})")
        extras = [f"{name} {t[name]}" for name in _EXTRAS if t[name]]
        return line + (", " + ", ".join(extras) if extras else "")
