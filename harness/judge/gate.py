"""The gate: does a set of judged exchanges (one route, or one migration group) allow cutover?

One function, `gate_groups` (or `judge_groups` over tallies already counted), used by `parity
replay`, the pytest plugin, `parity demo` and the report: per migration group, the share of
failing exchanges (mismatch, incomparable, candidate-error) among the compared ones stays at or
under the group's `max_mismatch_rate`; at least `min_exchanges` were compared in the group (a
single route has no minimum); no critical difference that is not noise; no untestable route
unless the group's gate allows it; and the candidate is not slower than the primary beyond the
group's latency margins (a paired test on the same exchanges, timed side by side: the shadow
proxy's, a replay's with a live primary). A group parity.toml gives no gate
gets `[gates.default]` (`GateRules.rule`).

Exchanges the mirror policy skipped (a route never mirrored, an unsafe method, an open breaker...)
were not compared: they neither pass nor fail a gate, they are counted and named ("skipped by
policy: 3 (route never mirrored x3)"). A group where nothing was compared because everything was
skipped is `untestable` with that reason, unless its gate asks for no minimum.
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.config import GateRule, GateRules
from harness.diff.paths import generalize
from harness.model import Verdict
from harness.routes import GROUPS

FAILING = tuple(str(v) for v in Verdict if v.is_failure)
SKIPPED = str(Verdict.SKIPPED)
NOT_COMPARED = (SKIPPED,)
UNGROUPED = "other"  # the group of a record that names none
NO_ROUTE = "?"  # the route of a record that names none
MAX_EXAMPLES = 3
MAX_SKIP_REASONS = 8
OTHER_SKIP_REASONS = "(other reasons)"
LATENCY_SAMPLE = 4096  # latency pairs kept per tally (a uniform sample beyond)
LATENCY_ALPHA = 0.01  # the paired test's significance level
# Below this many pairs a p99 is little more than the slowest exchange: shown, not judged.
P99_MIN_PAIRS = 100
LATENCY_TEST = "Wilcoxon signed-rank, one-sided (candidate slower), paired by exchange"


@dataclass(slots=True)
class LatencyPairs:
    """Primary and candidate latencies (ms) of the same exchanges, side by side in two lists: a
    uniform sample of at most `LATENCY_SAMPLE` pairs, with the exact count."""

    primary: list[float] = field(default_factory=list)
    candidate: list[float] = field(default_factory=list)
    count: int = 0
    _rng: random.Random | None = None

    def add(self, primary_ms: float, candidate_ms: float) -> None:
        self.count += 1
        if len(self.primary) < LATENCY_SAMPLE:
            self.primary.append(primary_ms)
            self.candidate.append(candidate_ms)
            return
        if self._rng is None:
            self._rng = random.Random(0)
        slot = self._rng.randrange(self.count)
        if slot < LATENCY_SAMPLE:
            self.primary[slot] = primary_ms
            self.candidate[slot] = candidate_ms

    def merge(self, other: LatencyPairs) -> None:
        """Add another sample, each side weighted by how many pairs it stands for (evenly spaced
        picks: a sample is in no particular order)."""
        total = self.count + other.count
        if len(self.primary) + len(other.primary) <= LATENCY_SAMPLE:
            self.primary.extend(other.primary)
            self.candidate.extend(other.candidate)
        else:
            theirs = min(len(other.primary), round(LATENCY_SAMPLE * other.count / total))
            mine = min(len(self.primary), LATENCY_SAMPLE - theirs)
            self.primary, self.candidate = (
                _spaced(self.primary, mine) + _spaced(other.primary, theirs),
                _spaced(self.candidate, mine) + _spaced(other.candidate, theirs))
        self.count = total

    def __len__(self) -> int:
        return len(self.primary)


def _spaced(values: list[float], k: int) -> list[float]:
    """`k` of `values`, evenly spaced."""
    n = len(values)
    return values if k >= n else [values[i * n // k] for i in range(k)]


def _latency_ms(response: Any) -> float | None:
    value = response.get("latency_ms") if isinstance(response, dict) else None
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


@dataclass(slots=True)
class Tally:
    """Counts of one route or group, with the first findings kept as examples."""

    verdicts: Counter[str] = field(default_factory=Counter)
    critical: int = 0
    findings: Counter[str] = field(default_factory=Counter)  # generalized path of non-noise diffs
    messages: dict[str, str] = field(default_factory=dict)  # first message seen per finding path
    examples: list[str] = field(default_factory=list)  # one line per failing exchange
    untestable_paths: Counter[str] = field(default_factory=Counter)
    skip_reasons: Counter[str] = field(default_factory=Counter)  # why exchanges were not mirrored
    latency: LatencyPairs = field(default_factory=LatencyPairs)  # of the compared exchanges

    def add(self, record: dict[str, Any]) -> None:
        """Count one judged exchange (a recordings line as a dict)."""
        verdict = record.get("verdict") or "unjudged"
        self.verdicts[verdict] += 1
        if verdict == SKIPPED:
            self._skip(str(record.get("reason") or "not mirrored"), 1)
            return
        primary_ms = _latency_ms(record.get("primary"))
        candidate_ms = _latency_ms(record.get("candidate"))
        if primary_ms is not None and candidate_ms is not None:
            self.latency.add(primary_ms, candidate_ms)
        real = [d for d in record.get("differences", []) if not d.get("noise")]
        if verdict == "untestable":
            # The Docker copies disagree there (a critical status difference included): a
            # finding nobody can judge, not a critical one.
            for diff in real:
                self.untestable_paths[generalize(diff["path"])] += 1
        else:
            self.critical += sum(1 for d in real if d.get("severity") == "critical")
        if verdict in FAILING or (verdict != "untestable" and any(
            d.get("severity") == "critical" for d in real
        )):
            for diff in real[:5]:
                path = generalize(diff["path"])
                self.findings[path] += 1
                self.messages.setdefault(path, diff.get("message", ""))
            if len(self.examples) < MAX_EXAMPLES:
                request = record.get("request", {})
                first = real[0]["message"] if real else (record.get("reason") or verdict)
                self.examples.append(
                    f"{request.get('method', '?')} {request.get('path', '?')} → {verdict}: {first}"
                )

    def merge(self, other: Tally) -> None:
        """Add another tally's counts into this one."""
        self.verdicts.update(other.verdicts)
        self.critical += other.critical
        self.findings.update(other.findings)
        for path, message in other.messages.items():
            self.messages.setdefault(path, message)
        self.untestable_paths.update(other.untestable_paths)
        for reason, count in other.skip_reasons.items():
            self._skip(reason, count)
        self.latency.merge(other.latency)
        room = MAX_EXAMPLES - len(self.examples)
        self.examples.extend(other.examples[: max(room, 0)])

    def _skip(self, reason: str, count: int) -> None:
        if reason not in self.skip_reasons and len(self.skip_reasons) >= MAX_SKIP_REASONS:
            reason = OTHER_SKIP_REASONS
        self.skip_reasons[reason] += count

    @property
    def compared(self) -> int:
        return sum(n for v, n in self.verdicts.items() if v not in NOT_COMPARED)

    @property
    def skipped(self) -> int:
        """Exchanges the mirror policy did not send to the candidate."""
        return self.verdicts.get(SKIPPED, 0)

    def skipped_line(self) -> str:
        """'skipped by policy: 3 (route never mirrored x2, unsafe method POST x1)', or ''."""
        if not self.skipped:
            return ""
        reasons = ", ".join(f"{r} x{n}" for r, n in self.skip_reasons.most_common(3))
        more = " ..." if len(self.skip_reasons) > 3 else ""
        return f"skipped by policy: {self.skipped} ({reasons}{more})"

    @property
    def failing(self) -> int:
        return sum(self.verdicts[v] for v in FAILING)

    @property
    def failure_rate(self) -> float:
        return self.failing / self.compared if self.compared else 0.0


@dataclass(frozen=True, slots=True)
class LatencyResult:
    """The paired latency test of a route or group: its sample, the numbers and the outcome."""

    status: str  # faster or same | slower | too few pairs
    pairs: int  # pairs tested (a uniform sample of `timed`)
    timed: int  # exchanges timed on both sides
    min_pairs: int
    primary_p50: float | None = None
    primary_p99: float | None = None
    candidate_p50: float | None = None
    candidate_p99: float | None = None
    margin_p50_ms: float | None = None
    margin_p99_ms: float | None = None
    p_value: float | None = None
    p99_judged: bool = False

    @property
    def slower(self) -> bool:
        return self.status == "slower"

    def line(self) -> str:
        """The finding a person reads: both sides' p50/p99, the margins, n and the p-value."""
        if self.status == "too few pairs":
            return (f"latency: not judged, {self.timed} exchange(s) timed on both sides "
                    f"(the test needs {self.min_pairs})")
        verdict = ("candidate slower than the primary beyond its margin" if self.slower
                   else "candidate not slower than the primary beyond its margin")
        p99_margin = (f"margin {self.margin_p99_ms:.1f} ms" if self.p99_judged
                      else f"not judged below {P99_MIN_PAIRS} pairs")
        return (f"latency: {verdict}: p50 {self.candidate_p50:.1f} ms vs {self.primary_p50:.1f} "
                f"ms (margin {self.margin_p50_ms:.1f} ms), p99 {self.candidate_p99:.1f} ms vs "
                f"{self.primary_p99:.1f} ms ({p99_margin}); Wilcoxon signed-rank "
                f"n={self.pairs}, p={self.p_value:.2g}")

    def to_dict(self) -> dict[str, Any]:
        """The report's view: the test, its sample and its result."""
        return {"test": LATENCY_TEST, "alpha": LATENCY_ALPHA, "status": self.status,
                "pairs": self.pairs, "timed": self.timed, "min_pairs": self.min_pairs,
                "primary": {"p50": _ms(self.primary_p50), "p99": _ms(self.primary_p99)},
                "candidate": {"p50": _ms(self.candidate_p50), "p99": _ms(self.candidate_p99)},
                "margin_ms": {"p50": _ms(self.margin_p50_ms), "p99": _ms(self.margin_p99_ms)},
                "p_value": self.p_value, "p99_judged": self.p99_judged, "line": self.line()}


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def latency_test(sample: LatencyPairs, rule: GateRule) -> LatencyResult:
    """Is the candidate slower than the primary on the same exchanges, beyond `rule`'s margins?
    Slower means both: the one-sided Wilcoxon signed-rank test on the paired differences
    (candidate − primary) is significant at `LATENCY_ALPHA`, and the candidate's p50 or p99 is
    over the primary's by more than its margin (`latency_p50_margin`/`latency_p99_margin` of the
    primary's, at least `latency_margin_ms`; the p99 from `P99_MIN_PAIRS` pairs on)."""
    n = len(sample)
    if n < rule.latency_min_pairs or n == 0:
        return LatencyResult("too few pairs", n, sample.count, rule.latency_min_pairs)
    import numpy as np

    primary = np.array(sample.primary, dtype=float)
    candidate = np.array(sample.candidate, dtype=float)
    p50, p99 = (float(v) for v in np.percentile(primary, [50, 99]))
    c50, c99 = (float(v) for v in np.percentile(candidate, [50, 99]))
    margin50 = max(p50 * rule.latency_p50_margin, rule.latency_margin_ms)
    margin99 = max(p99 * rule.latency_p99_margin, rule.latency_margin_ms)
    p_value = wilcoxon_greater(candidate - primary)
    p99_judged = n >= P99_MIN_PAIRS
    beyond = c50 - p50 > margin50 or (p99_judged and c99 - p99 > margin99)
    status = "slower" if beyond and p_value < LATENCY_ALPHA else "faster or same"
    return LatencyResult(status, n, sample.count, rule.latency_min_pairs, p50, p99, c50, c99,
                         margin50, margin99, p_value, p99_judged)


EXACT_MAX_PAIRS = 50  # the exact null distribution up to this many pairs (without ties)


def wilcoxon_greater(differences: Any) -> float:
    """One-sided p-value of the Wilcoxon signed-rank test that `differences` (candidate −
    primary) are centred above 0. Zero differences carry no sign and are dropped (Wilcoxon's own
    rule); tied magnitudes get their average rank. Exact up to `EXACT_MAX_PAIRS` pairs without
    ties, else the normal approximation with the tie correction of the variance. Written on
    numpy (checked against scipy's `wilcoxon` by the tests): scipy.stats alone takes about a
    second to import, on every replay, pytest run and report."""
    import numpy as np

    values = np.asarray(differences, dtype=float)
    values = values[values != 0]
    n = int(values.size)
    if n == 0:
        return 1.0
    magnitudes = np.abs(values)
    order = np.argsort(magnitudes, kind="mergesort")
    _, first, ties = np.unique(magnitudes[order], return_index=True, return_counts=True)
    ranks = np.empty(n)
    ranks[order] = np.repeat(first + (ties + 1) / 2, ties)  # 1-based, ties averaged
    w_plus = float(ranks[values > 0].sum())
    if n <= EXACT_MAX_PAIRS and ties.size == n:
        # Under the null each rank's sign is + or − alike: count the sign patterns per W+.
        counts = np.zeros(n * (n + 1) // 2 + 1)
        counts[0] = 1.0
        for rank in range(1, n + 1):
            counts[rank:] = counts[rank:] + counts[:-rank]
        return float(counts[round(w_plus):].sum() / 2.0**n)
    mean = n * (n + 1) / 4
    variance = n * (n + 1) * (2 * n + 1) / 24 - float((ties**3 - ties).sum()) / 48
    if variance <= 0:
        return 1.0
    return 0.5 * math.erfc((w_plus - mean) / math.sqrt(variance) / math.sqrt(2))


@dataclass(frozen=True, slots=True)
class GateResult:
    """The gate's decision with the reasons a person reads."""

    status: str  # ready | not ready | untestable | no data
    reasons: tuple[str, ...]
    latency: LatencyResult | None = None

    @property
    def passed(self) -> bool:
        return self.status == "ready"


def evaluate(tally: Tally, rule: GateRule) -> GateResult:
    """Apply `rule` to `tally` (a group's, or a route's with `rule.for_route()`). Exchanges
    skipped by policy count neither way; they are named in the reasons."""
    skipped = tally.skipped_line()
    if tally.compared == 0:
        if not skipped:
            return GateResult("no data", ("no exchange was compared",))
        why = f"no data by policy: nothing was sent to the candidate, {skipped}"
        if rule.min_exchanges <= 0:
            return GateResult("ready", (why,))
        return GateResult("untestable", (
            why, f"the gate needs {rule.min_exchanges} compared exchange(s): mirror these "
            "routes (a dry-run rewrite, or `mirror = \"always\"` where the candidate has no side "
            "effects) or set min_exchanges = 0 for this group in parity.toml"))
    latency = latency_test(tally.latency, rule)
    status, reasons = _judge_compared(tally, rule, latency)
    if skipped:
        reasons = (*reasons, skipped)
    return GateResult(status, reasons, latency)


def _judge_compared(tally: Tally, rule: GateRule,
                    latency: LatencyResult) -> tuple[str, tuple[str, ...]]:
    reasons: list[str] = []
    if tally.compared < rule.min_exchanges:
        reasons.append(
            f"only {tally.compared} compared exchanges (gate needs {rule.min_exchanges})"
        )
    if tally.failure_rate > rule.max_mismatch_rate:
        reasons.append(
            f"failure rate {tally.failure_rate:.1%} ({tally.failing}/{tally.compared}) > "
            f"{rule.max_mismatch_rate:.1%}"
        )
    if tally.critical:
        reasons.append(f"{tally.critical} critical finding(s)")
    if latency.slower:
        reasons.append(latency.line())
    reasons.extend(
        f"finding: {tally.messages.get(path) or path} ({count} times)"
        for path, count in tally.findings.most_common(3)
    )
    blocking = [r for r in reasons if not r.startswith("finding:")]
    untestable = tally.verdicts.get("untestable", 0)
    if untestable and not rule.allow_untestable:
        paths = ", ".join(p for p, _ in tally.untestable_paths.most_common(3))
        reasons.append(
            f"{untestable} untestable exchange(s): the Docker copies disagree at {paths or '?'}; "
            "make that content deterministic or ignore the path in parity.toml"
        )
        return ("not ready" if blocking else "untestable"), tuple(reasons)
    if blocking:
        return "not ready", tuple(reasons)
    return "ready", ()


@dataclass(frozen=True, slots=True)
class GroupGate:
    """One migration group's gate: its rule, result, counts, and its routes' counts."""

    group: str
    rule: GateRule
    result: GateResult
    tally: Tally
    routes: dict[str, Tally]


def route_key(record: Mapping[str, Any]) -> tuple[str, str]:
    """(migration group, route) of a recordings line; a record naming none is `other`/`?`."""
    return str(record.get("group") or UNGROUPED), str(record.get("route") or NO_ROUTE)


def tally_records(records: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], Tally]:
    """Judged exchanges (recordings lines as dicts) counted per (group, route)."""
    tallies: dict[tuple[str, str], Tally] = defaultdict(Tally)
    for record in records:
        tallies[route_key(record)].add(dict(record))
    return dict(tallies)


def judge_groups(routes: Mapping[tuple[str, str], Tally], rules: GateRules,
                 include: Iterable[str] = ()) -> dict[str, GroupGate]:
    """Per migration group (those seen, and those of `include` even without exchanges), in the
    plan's order: the group's routes merged and held to its rule (its own, else the default)."""
    members: dict[str, dict[str, Tally]] = {group: {} for group in include}
    for (group, route), tally in routes.items():
        members.setdefault(group, {})[route] = tally
    gates = {}
    for group in sorted(members, key=group_order):
        tally = Tally()
        for route in sorted(members[group]):
            tally.merge(members[group][route])
        rule = rules.rule(group)
        gates[group] = GroupGate(group, rule, evaluate(tally, rule), tally,
                                 dict(sorted(members[group].items())))
    return gates


def gate_groups(records: Iterable[Mapping[str, Any]], rules: GateRules,
                include: Iterable[str] = ()) -> dict[str, GroupGate]:
    """The gate: judged exchanges (recordings lines) in, per migration group its result out."""
    return judge_groups(tally_records(records), rules, include)


def group_order(group: str) -> tuple[int, str]:
    """The plan's order of migration groups, then any other group by name."""
    return (GROUPS.index(group), "") if group in GROUPS else (len(GROUPS), group)


DATA_FAILING = ("missing", "extra", "differing", "incomparable", "schema")


def evaluate_data_state(counts: dict[str, int], reasons: tuple[str, ...] = ()) -> GateResult:
    """A migration group's data-state gate (`parity data`): ready only when its tables were
    compared and no row is missing, extra or differing, no table or column is on one side only
    ("schema") and none is incomparable. Rows still changing ("in flight") are shown, not failed:
    they are not proven different."""
    if not counts.get("tables"):
        return GateResult("no data", ("no table of this group was compared",))
    failing = {kind: counts.get(kind, 0) for kind in DATA_FAILING if counts.get(kind, 0)}
    if not failing:
        return GateResult("ready", ())
    summary = ", ".join(f"{n} {kind}" for kind, n in failing.items())
    return GateResult("not ready", (f"data differ: {summary}", *reasons))
