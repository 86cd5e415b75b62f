"""The gate: does a set of judged exchanges (one route, or one migration group) allow cutover?

One rule, used by `parity replay`, the pytest plugin, `parity demo` and the report: the share of
failing exchanges (mismatch, incomparable, candidate-error) among the compared ones stays at or
under the group's `max_mismatch_rate`; at least `min_exchanges` were compared in the group (a
single route has no minimum); no critical difference that is not noise; no untestable route
unless the group's gate allows it.

Exchanges the mirror policy skipped (a route never mirrored, an unsafe method, an open breaker...)
were not compared: they neither pass nor fail a gate, they are counted and named ("skipped by
policy: 3 (route never mirrored x3)"). A group where nothing was compared because everything was
skipped is `untestable` with that reason, unless its gate asks for no minimum.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from harness.config import GateRule
from harness.diff.paths import generalize

FAILING = ("mismatch", "incomparable", "candidate-error")
SKIPPED = "skipped"
NOT_COMPARED = (SKIPPED,)
MAX_EXAMPLES = 3
MAX_SKIP_REASONS = 8
OTHER_SKIP_REASONS = "(other reasons)"


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

    def add(self, record: dict[str, Any]) -> None:
        """Count one judged exchange (a recordings line as a dict)."""
        verdict = record.get("verdict") or "unjudged"
        self.verdicts[verdict] += 1
        if verdict == SKIPPED:
            self._skip(str(record.get("reason") or "not mirrored"), 1)
            return
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
class GateResult:
    """The gate's decision with the reasons a person reads."""

    status: str  # ready | not ready | untestable | no data
    reasons: tuple[str, ...]

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
    result = _judge_compared(tally, rule)
    if skipped:
        return GateResult(result.status, (*result.reasons, skipped))
    return result


def _judge_compared(tally: Tally, rule: GateRule) -> GateResult:
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
    reasons.extend(
        f"finding: {tally.messages.get(path) or path} ({count} times)"
        for path, count in tally.findings.most_common(3)
    )
    untestable = tally.verdicts.get("untestable", 0)
    if untestable and not rule.allow_untestable:
        paths = ", ".join(p for p, _ in tally.untestable_paths.most_common(3))
        blocking = [r for r in reasons if not r.startswith("finding:")]
        status = "not ready" if blocking else "untestable"
        reasons.append(
            f"{untestable} untestable exchange(s): the Docker copies disagree at {paths or '?'}; "
            "make that content deterministic or ignore the path in parity.toml"
        )
        return GateResult(status, tuple(reasons))
    blocking = [r for r in reasons if not r.startswith("finding:")]
    if blocking:
        return GateResult("not ready", tuple(reasons))
    return GateResult("ready", ())


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
