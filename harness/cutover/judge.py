"""The rollback judge: over a sliding window of one group's judged exchanges (moved and shadowed
alike: both are docker vs native), decide whether the group must go back to 0 %.

A group rolls back on the first of:

- a critical finding (a non-noise difference of critical severity, e.g. a dry-run breach);
- the candidate unreachable (refused, or reset while connecting);
- with at least `min_count` compared exchanges in the window: a failure rate over the group's
  gate (`[gates]`, the rule `parity replay` applies), or the candidate's 5xx rate above the
  primary's by more than `error_margin`;
- with at least `LATENCY_SAMPLES` answers of each side in the window: the candidate's p99
  latency above `p99_multiple` times the primary's ("performance meets or exceeds Docker"). The
  latencies are those clients saw (the candidate's of moved requests, the primary's of the
  others), not the mirrors' (a mirror worker runs at idle priority: its timings are not the
  service's); with no client of the primary left (100 %), the primary's mirrored answers stand
  in. Checked every `LATENCY_EVERY_S`: a sort of the window is not for every batch.

Workers compare and judge; what reaches this module is one small `Judged` line per exchange, so
the proxy process only counts.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

from harness.config import CutoverPlan, GateRules
from harness.judge.gate import FAILING, SKIPPED

UNREACHABLE = ("connection refused", "connect error", "connection reset while connecting")
MAX_WINDOW = 20_000  # exchanges kept per group at most, however busy
LATENCY_SAMPLES = 100  # a p99 of fewer answers is their maximum, not a percentile
LATENCY_EVERY_S = 0.25


@dataclass(frozen=True, slots=True)
class Judged:
    """What the proxy learns of one judged exchange (sent by a worker as a JSON list)."""

    group: str
    served: str  # primary | candidate: who answered the client
    verdict: str
    finding: str = ""  # the first non-noise difference's message
    critical: str = ""  # the message of a critical finding
    primary_status: int = 0  # docker's
    candidate_status: int = 0  # native's
    primary_ms: float | None = None
    candidate_ms: float | None = None
    error: str = ""  # the candidate's transport error

    def to_wire(self) -> list[Any]:
        return [self.group, self.served, self.verdict, self.finding, self.critical,
                self.primary_status, self.candidate_status, self.primary_ms,
                self.candidate_ms, self.error]

    @classmethod
    def from_wire(cls, item: Any) -> Judged:
        """Raises ValueError/TypeError for a malformed item."""
        group, served, verdict, finding, critical, p_status, c_status, p_ms, c_ms, error = item
        return cls(str(group), str(served), str(verdict), str(finding), str(critical),
                   int(p_status or 0), int(c_status or 0), _ms(p_ms), _ms(c_ms), str(error))

    @property
    def unreachable(self) -> bool:
        return self.error.startswith(UNREACHABLE)


def _ms(value: Any) -> float | None:
    return None if value is None else float(value)


def exchange_judged(exchange: Any, served: str) -> Judged:
    """The `Judged` line of a worker's judged `harness.model.Exchange` (docker vs native)."""
    real = [d for d in exchange.differences if not d.noise]
    verdict = str(exchange.verdict or "")
    critical = "" if verdict == "untestable" else next(
        (d.message for d in real if str(d.severity) == "critical"), "")
    candidate = exchange.candidate
    return Judged(
        group=exchange.group or "other", served=served, verdict=verdict,
        finding=real[0].message if real else (exchange.reason or "")[:200]
        if verdict in FAILING else "",
        critical=critical,
        primary_status=exchange.primary.status if exchange.primary else 0,
        candidate_status=candidate.status if candidate else 0,
        primary_ms=exchange.primary.latency_ms if exchange.primary else None,
        candidate_ms=candidate.latency_ms if candidate else None,
        error=(candidate.error or "") if candidate else "")


class _Window:
    """One group's judged exchanges within the window, with running counts."""

    def __init__(self) -> None:
        self.items: deque[tuple[float, Judged]] = deque()
        self.compared = 0
        self.failing = 0
        self.findings: Counter[str] = Counter()
        self.primary_5xx = 0
        self.candidate_5xx = 0

    def _count(self, item: Judged, sign: int) -> None:
        if item.verdict == SKIPPED:
            return
        self.compared += sign
        if item.verdict in FAILING:
            self.failing += sign
            if item.finding:
                self.findings[item.finding] += sign
                if self.findings[item.finding] <= 0:
                    del self.findings[item.finding]
        self.primary_5xx += sign * (item.primary_status >= 500)
        self.candidate_5xx += sign * (item.candidate_status >= 500 or bool(item.error))

    def add(self, at: float, item: Judged) -> None:
        self.items.append((at, item))
        self._count(item, 1)
        if len(self.items) > MAX_WINDOW:
            self._count(self.items.popleft()[1], -1)

    def prune(self, oldest: float) -> None:
        while self.items and self.items[0][0] < oldest:
            self._count(self.items.popleft()[1], -1)


def p99(values: list[float]) -> float:
    """The 99th percentile (nearest rank) of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


class RollbackJudge:
    """Windows per group; `add` a judged exchange, `verdict` for a group's rollback reason."""

    def __init__(self, plan: CutoverPlan, gates: GateRules) -> None:
        self.plan = plan
        self.gates = gates
        self._windows: dict[str, _Window] = {}
        self._latency_checked: dict[str, float] = {}

    def add(self, item: Judged, now: float) -> str | None:
        """Count `item`; the reason its group must roll back at once (a critical finding, the
        candidate unreachable), else None (the rates are for `verdict`)."""
        self._windows.setdefault(item.group, _Window()).add(now, item)
        if item.critical:
            return f"critical finding: {item.critical}"
        if item.unreachable:
            return f"candidate unreachable ({item.error})"
        return None

    def verdict(self, group: str, now: float) -> str | None:
        """Why `group` must roll back now, judged over its window; None while it holds."""
        window = self._windows.get(group)
        if window is None:
            return None
        window.prune(now - self.plan.window_s)
        if window.compared < self.plan.min_count:
            return None
        gate = self.gates.rule(group)
        rate = window.failing / window.compared
        if rate > gate.max_mismatch_rate:
            top = window.findings.most_common(1)
            return (f"failure rate {rate:.0%} ({window.failing}/{window.compared} in "
                    f"{self.plan.window_s:g}s) over the {group} gate's "
                    f"{gate.max_mismatch_rate:.0%}" + (f": {top[0][0]}" if top else ""))
        excess = (window.candidate_5xx - window.primary_5xx) / window.compared
        if excess > self.plan.error_margin:
            return (f"candidate 5xx rate {window.candidate_5xx / window.compared:.1%} above the "
                    f"primary's {window.primary_5xx / window.compared:.1%} by more than "
                    f"{self.plan.error_margin:.1%}")
        if now - self._latency_checked.get(group, -math.inf) >= LATENCY_EVERY_S:
            self._latency_checked[group] = now
            return self._latency(window)
        return None

    def _latency(self, window: _Window) -> str | None:
        candidate = [j.candidate_ms for _, j in window.items
                     if j.served == "candidate" and j.candidate_ms is not None and not j.error]
        if len(candidate) < LATENCY_SAMPLES:
            return None
        primary = [j.primary_ms for _, j in window.items
                   if j.served == "primary" and j.primary_ms is not None]
        if len(primary) < LATENCY_SAMPLES:  # everyone moved: the mirrors' answers stand in
            primary = [j.primary_ms for _, j in window.items if j.primary_ms is not None]
        if len(primary) < LATENCY_SAMPLES:
            return None
        slow, fast = p99(candidate), p99(primary)
        if slow > self.plan.p99_multiple * max(fast, 1.0):
            return (f"candidate p99 latency {slow:.0f} ms over {self.plan.p99_multiple:g}x "
                    f"the primary's {fast:.0f} ms")
        return None

    def reset(self, group: str) -> None:
        """Forget `group`'s window (after its rollback or resume: judge what comes next)."""
        self._windows.pop(group, None)
        self._latency_checked.pop(group, None)
