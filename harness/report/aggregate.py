"""Count judged exchanges for the report, streaming and in bounded memory (Diffy's *count*).

Feed raw recordings lines (`ReportBuilder.add_record`, the fast path) or `Exchange` objects
(`ReportBuilder.add`). Per route and per migration group the builder keeps:

- the count of each verdict (plus exchanges never judged, and lines that were not exchanges);
- latency samples of primary and candidate (a reservoir of at most `RESERVOIR` values each, so
  p50/p95/p99 are exact up to that many exchanges and a uniform estimate beyond);
- the differing paths (generalized: ``trades[*].fee``) with the number of exchanges showing them,
  real differences and learned noise apart, each with its first example;
- a few example exchanges: the first `FIRST_EXAMPLES` failing ones and a reservoir of the rest.

Readiness is the one gate's (:func:`harness.judge.gate.judge_groups` over the routes' tallies),
so the report, `parity replay`, `pytest -m parity` and `parity demo` agree.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from harness.config import GateRules, load_config
from harness.diff.paths import generalize
from harness.judge.gate import (
    FAILING,
    GroupGate,
    Tally,
    group_order,
    judge_groups,
    route_key,
)
from harness.model import Exchange, Verdict
from harness.report.causes import StateCauses
from harness.report.examples import Keeper, Kept
from harness.report.noise_seen import ObservedNoise
from harness.report.pretty import ROOT_NAME, compact
from harness.routes import GROUPS, RouteTable
from harness.routes_openapi import SpecRoute, UnknownRoutes

VERDICTS: tuple[str, ...] = tuple(str(v) for v in Verdict)

RESERVOIR = 4096  # latency samples kept per route and side
FIRST_EXAMPLES = 3  # the first failing exchanges of a route, always kept
SAMPLED_EXAMPLES = 3  # plus a uniform sample of the later ones
MAX_PATHS = 400  # distinct differing paths counted per route; the rest are "other paths"
MAX_ROUTES = 1000  # distinct routes; unrouted recordings with raw ids could grow without bound
OTHER_PATHS = "(other paths)"
OTHER_ROUTES = "(other routes)"
PERCENTILES = (50, 95, 99)
VALUE_CHARS = 300  # a difference's example values and message are cut at this length
MAX_SKIP_REASONS = 50


class Reservoir:
    """A uniform sample of at most `size` numbers out of a stream (Vitter's algorithm R), with
    the exact count, sum and maximum."""

    __slots__ = ("_rng", "count", "maximum", "size", "total", "values")

    def __init__(self, size: int = RESERVOIR, seed: int = 0) -> None:
        self.size = size
        self.values: list[float] = []
        self.count = 0
        self.total = 0.0
        self.maximum = 0.0
        self._rng = random.Random(seed)

    def add(self, value: float) -> None:
        self.count += 1
        self.total += value
        if value > self.maximum:
            self.maximum = value
        if len(self.values) < self.size:
            self.values.append(value)
        else:
            slot = self._rng.randrange(self.count)
            if slot < self.size:
                self.values[slot] = value

    def summary(self) -> dict[str, Any]:
        """Count, mean, max and p50/p95/p99 (None when empty)."""
        out: dict[str, Any] = {"n": self.count}
        ordered = sorted(self.values)
        for q in PERCENTILES:
            out[f"p{q}"] = _percentile(ordered, q)
        out["mean"] = round(self.total / self.count, 3) if self.count else None
        out["max"] = round(self.maximum, 3) if self.count else None
        return out


def _percentile(ordered: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not ordered:
        return None
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return round(ordered[low] + (ordered[high] - ordered[low]) * (pos - low), 3)


@dataclass(slots=True)
class PathStat:
    """How many exchanges of a route differ at one generalized path, with the first example."""

    path: str
    count: int = 0
    kind: str = ""
    severity: str = ""
    message: str = ""
    primary: Any = None
    candidate: Any = None
    example_id: str = ""

    def to_dict(self, compared: int) -> dict[str, Any]:
        return {
            "path": self.path,
            "count": self.count,
            "rate": round(self.count / compared, 6) if compared else 0.0,
            "kind": self.kind,
            "severity": self.severity,
            "message": self.message,
            "primary": self.primary,
            "candidate": self.candidate,
            "example_id": self.example_id,
        }


def _count_path(table: dict[str, PathStat], path: str, diff: dict[str, Any], ex_id: str) -> None:
    stat = table.get(path)
    if stat is None:
        if len(table) >= MAX_PATHS:
            stat = table.get(OTHER_PATHS)
            if stat is None:
                stat = table[OTHER_PATHS] = PathStat(OTHER_PATHS, message="paths past the cap")
            stat.count += 1
            return
        stat = table[path] = PathStat(
            path,
            kind=str(diff.get("kind", "")),
            severity=str(diff.get("severity", "")),
            message=str(diff.get("message", ""))[:VALUE_CHARS],
            primary=_small(diff.get("primary")),
            candidate=_small(diff.get("candidate")),
            example_id=ex_id,
        )
    stat.count += 1


def _small(value: Any) -> Any:
    """`value` itself when short, else its JSON cut to `VALUE_CHARS` (a missing subtree can be
    a whole answer, and the first example of every path is kept)."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return value if len(value) <= VALUE_CHARS else value[: VALUE_CHARS - 1] + "…"
    text = compact(value, VALUE_CHARS)
    return value if not text.endswith("…") else text


def _is_interesting(verdict: str | None, differences: list[dict[str, Any]]) -> bool:
    """Worth an example: failing, untestable, or carrying a critical real difference."""
    if verdict in FAILING or verdict == "untestable":
        return True
    return any(d.get("severity") == "critical" and not d.get("noise") for d in differences)


class RouteStats:
    """Everything the report shows about one route."""

    __slots__ = (
        "_group_latency",
        "_rng",
        "comparators",
        "differences",
        "examples_first",
        "examples_sampled",
        "group",
        "interesting",
        "keeper",
        "latency_candidate",
        "latency_primary",
        "mirror",
        "noise",
        "noise_example",
        "route",
        "skip_reasons",
        "tally",
        "unjudged",
        "untestable",
    )

    def __init__(self, route: str, group: str, keeper: Keeper, seed: int = 0) -> None:
        self.route = route
        self.keeper = keeper  # holds kept examples in bounded memory
        self.group = group
        self.tally = Tally()  # the gate's view: verdicts, critical count, findings
        self.comparators: Counter[str] = Counter()
        self.mirror: Counter[str] = Counter()
        self.skip_reasons: Counter[str] = Counter()
        self.unjudged = 0
        self.latency_primary = Reservoir(seed=seed)
        self.latency_candidate = Reservoir(seed=seed + 1)
        self.differences: dict[str, PathStat] = {}
        self.noise: dict[str, PathStat] = {}
        self.untestable: dict[str, PathStat] = {}  # real differences of untestable exchanges
        self.interesting = 0
        self.examples_first: list[Kept] = []
        self.examples_sampled: list[Kept] = []
        self.noise_example: Kept | None = None
        self._rng = random.Random(seed + 2)

    def add(self, record: dict[str, Any], verdict: str | None) -> tuple[float | None, float | None]:
        """Count one record; returns its (primary, candidate) latencies for the group's sample."""
        self.comparators[record.get("comparator") or ""] += 1
        self.mirror[_mirror_kind(record.get("mirror"))] += 1
        if verdict is None:
            self.unjudged += 1
        else:
            self.tally.add(record)
        if verdict == "skipped":
            reason = str(record.get("reason") or record.get("mirror") or "skipped")
            if reason in self.skip_reasons or len(self.skip_reasons) < MAX_SKIP_REASONS:
                self.skip_reasons[reason] += 1
            else:
                self.skip_reasons["(other reasons)"] += 1
        primary_ms = _latency(record.get("primary"))
        candidate_ms = _latency(record.get("candidate"))
        if primary_ms is not None:
            self.latency_primary.add(primary_ms)
        if candidate_ms is not None:
            self.latency_candidate.add(candidate_ms)
        differences = record.get("differences") or []
        if differences:
            self._count_differences(record, verdict, differences)
        if _is_interesting(verdict, differences):
            self._keep_example(record)
        elif verdict == "noise-only" and self.noise_example is None:
            self.noise_example = self.keeper.keep(record)
        return primary_ms, candidate_ms

    def _count_differences(
        self, record: dict[str, Any], verdict: str | None, differences: list[dict[str, Any]]
    ) -> None:
        ex_id = str(record.get("id", ""))
        seen: set[tuple[bool, str]] = set()
        for diff in differences:
            noise = bool(diff.get("noise"))
            path = generalize(str(diff.get("path", ""))) or ROOT_NAME
            if (noise, path) in seen:  # count exchanges, not list items
                continue
            seen.add((noise, path))
            if noise:
                _count_path(self.noise, path, diff, ex_id)
            elif verdict == "untestable":  # the Docker copies disagree: not the candidate's fault
                _count_path(self.untestable, path, diff, ex_id)
            else:
                _count_path(self.differences, path, diff, ex_id)

    def _keep_example(self, record: dict[str, Any]) -> None:
        self.interesting += 1
        keeper = self.keeper
        if len(self.examples_first) < FIRST_EXAMPLES:
            self.examples_first.append(keeper.keep(record))
            return
        later = self.interesting - FIRST_EXAMPLES
        if len(self.examples_sampled) < SAMPLED_EXAMPLES:
            self.examples_sampled.append(keeper.keep(record))
        else:
            slot = self._rng.randrange(later)
            if slot < SAMPLED_EXAMPLES:
                keeper.drop(self.examples_sampled[slot])
                self.examples_sampled[slot] = keeper.keep(record)

    @property
    def exchanges(self) -> int:
        return sum(self.tally.verdicts.values()) + self.unjudged

    @property
    def examples(self) -> list[Kept]:
        """The kept examples: the first failing ones, then the sampled ones, then one noise-only."""
        kept = self.examples_first + self.examples_sampled
        if not kept and self.noise_example is not None:
            kept = [self.noise_example]
        return kept

    def summary(self) -> dict[str, Any]:
        """The route's numbers (one row of the route table)."""
        tally = self.tally
        compared = tally.compared
        return {
            "route": self.route,
            "group": self.group,
            "comparator": self.comparators.most_common(1)[0][0] if self.comparators else "",
            "exchanges": self.exchanges,
            "verdicts": {v: tally.verdicts.get(v, 0) for v in VERDICTS},
            "unjudged": self.unjudged,
            "compared": compared,
            "failing": tally.failing,
            "failure_rate": round(tally.failure_rate, 6),
            "critical": tally.critical,
            "mirror": dict(self.mirror),
            "skip_reasons": dict(self.skip_reasons.most_common(10)),
            "latency": {
                "primary": self.latency_primary.summary(),
                "candidate": self.latency_candidate.summary(),
            },
            "differences": [
                s.to_dict(compared)
                for s in sorted(self.differences.values(), key=lambda s: (-s.count, s.path))
            ],
            "noise": [
                s.to_dict(compared)
                for s in sorted(self.noise.values(), key=lambda s: (-s.count, s.path))
            ],
            "untestable_paths": [
                s.to_dict(compared)
                for s in sorted(self.untestable.values(), key=lambda s: (-s.count, s.path))[:20]
            ],
            "findings": [{"finding": f, "count": n} for f, n in tally.findings.most_common(10)],
            "examples": [kept.summary for kept in self.examples],
        }


def _mirror_kind(mirror: Any) -> str:
    text = str(mirror or "mirrored")
    return "skipped" if text.startswith("skipped") else text


def _latency(response: Any) -> float | None:
    if not response:
        return None
    value = response.get("latency_ms")
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


# --- gates -------------------------------------------------------------------------------------


def gate_rules(gates: GateRules | Mapping[str, Any] | None = None) -> GateRules:
    """The rules the report holds groups to: `gates` when they are `GateRules`, else the shipped
    configuration's with the groups of a mapping overridden (`{"trade": {"max_mismatch_rate":
    0.5}}`, or objects with those attributes)."""
    if isinstance(gates, GateRules):
        return gates
    shipped = load_config(None).gates
    return shipped.with_overrides(gates) if gates else shipped


def default_routes() -> RouteTable:
    """The shipped route table."""
    return load_config(None).routes


# --- the builder -------------------------------------------------------------------------------


@dataclass(slots=True)
class _GroupLatency:
    primary: Reservoir = field(default_factory=lambda: Reservoir(seed=11))
    candidate: Reservoir = field(default_factory=lambda: Reservoir(seed=12))


class ReportBuilder:
    """Streams judged exchanges into the report's counts. Memory stays bounded whatever the
    number of exchanges: counters, latency reservoirs and a few examples per route."""

    def __init__(self, gates: GateRules | Mapping[str, Any] | None = None, *, seed: int = 0,
                 routes: RouteTable | None = None, spec_routes: Iterable[SpecRoute] = ()) -> None:
        """`routes`: the route table the traffic is judged against (default: the shipped one),
        to name traffic on routes it does not know; `spec_routes`: the routes the running
        services declared (`harness.routes_openapi`), for those routes' real templates."""
        self.gates = gate_rules(gates)
        table = routes if routes is not None else default_routes()
        self.causes = StateCauses()
        self.observed = ObservedNoise(table)
        self.unknown = UnknownRoutes(table, spec_routes)
        self.routes: dict[tuple[str, str], RouteStats] = {}
        self.group_latency: dict[str, _GroupLatency] = {}
        self.records = 0  # exchange records counted
        self.dropped = 0  # lines that were not exchange records
        self.unjudged = 0
        self._seed = seed
        self.keeper = Keeper()

    def add(self, exchange: Exchange) -> None:
        """Count one `Exchange`."""
        self.add_record(exchange.to_dict())

    def add_record(self, record: Any) -> None:
        """Count one recordings line (the dict of `Exchange.to_dict`)."""
        if not isinstance(record, dict) or not isinstance(record.get("request"), dict):
            self.dropped += 1
            return
        verdict = record.get("verdict") or None
        group = route_key(record)[0]
        route = record.get("route") or _unrouted_name(record)
        stats = self.routes.get((group, route))
        if stats is None:
            if len(self.routes) >= MAX_ROUTES:
                route = OTHER_ROUTES
                stats = self.routes.get((group, route))
            if stats is None:
                stats = self.routes[(group, route)] = RouteStats(
                    route, group, self.keeper, seed=self._seed + 7 * len(self.routes)
                )
        self.records += 1
        if verdict is None:
            self.unjudged += 1
        primary_ms, candidate_ms = stats.add(record, verdict)
        self.causes.add(record, verdict)
        self.observed.add(record, verdict)
        self.unknown.add_record(record)
        latency = self.group_latency.get(group)
        if latency is None:
            latency = self.group_latency[group] = _GroupLatency()
        if primary_ms is not None:
            latency.primary.add(primary_ms)
        if candidate_ms is not None:
            latency.candidate.add(candidate_ms)

    def add_records(self, records: Any) -> None:
        """Count every record of an iterable."""
        add = self.add_record
        for record in records:
            add(record)

    # --- results -------------------------------------------------------------------------------

    def group_gates(self) -> dict[str, GroupGate]:
        """The one gate over the routes counted: every migration group, seen or not."""
        return judge_groups({key: stats.tally for key, stats in self.routes.items()}, self.gates,
                            include=GROUPS)

    def summary(self) -> dict[str, Any]:
        """The machine-readable report: totals, groups with readiness, routes, noise."""
        routes = sorted(self.routes.values(), key=lambda s: (group_order(s.group), s.route))
        route_rows = [s.summary() for s in routes]
        causes = self.causes.causes()
        redact = self.keeper.maker.redact  # what recordings say is redacted again where shown
        for cause in causes:
            cause["message"] = redact(cause["message"])
        for row in route_rows:
            row["causes"] = [c["message"] for c in causes
                             if c["group"] == row["group"] and row["route"] in c["read_routes"]]
        gates = self.group_gates()
        groups = {name: self._group_summary(gate, causes) for name, gate in gates.items()}
        totals = Tally()
        for gate in gates.values():
            totals.merge(gate.tally)
        verdict, headline, blocking = _headline(groups)
        not_ready = [g for g in blocking if groups[g]["status"] == "not ready"]
        noise = [
            {"route": row["route"], "group": row["group"], **path}
            for row in route_rows
            for path in row["noise"]
        ]
        return {
            "verdict": verdict,
            "headline": headline,
            "blocking": blocking,
            "blocked_by": not_ready,
            "untestable": [g for g in blocking if g not in not_ready],
            "totals": {
                "exchanges": self.records,
                "verdicts": {v: totals.verdicts.get(v, 0) for v in VERDICTS},
                "compared": totals.compared,
                "failing": totals.failing,
                "unjudged": self.unjudged,
                "dropped": self.dropped,
                "routes": len(routes),
            },
            "groups": groups,
            "routes": route_rows,
            "noise": sorted(noise, key=lambda n: (-n["rate"], n["route"], n["path"])),
            "noise_observed": self.observed.summary(),
            "causes": causes,
            "unknown_routes": [{**row, "route": redact(row["route"])} for row in
                               self.unknown.rows()],
        }

    def _group_summary(self, gate: GroupGate, causes: list[dict[str, Any]]) -> dict[str, Any]:
        group, tally, rule, result = gate.group, gate.tally, gate.rule, gate.result
        members = [s for s in self.routes.values() if s.group == group]
        latency = self.group_latency.get(group) or _GroupLatency()
        untestable_routes = sorted(s.route for s in members if s.tally.verdicts.get("untestable"))
        top = _top_paths(members, "differences")
        untestable = _top_paths(members, "untestable")
        mine = [c["message"] for c in causes if c["group"] == group]
        if mine and result.status != "ready":
            top_finding = mine[0]  # the cause, not its symptoms
        elif top:
            top_finding = f"{top[0]['path']}: {top[0]['message']}"
        elif untestable:
            top_finding = f"{untestable[0]['path']}: the Docker copies disagree (untestable)"
        else:
            top_finding = ""
        return {
            "status": result.status,
            "reasons": list(result.reasons),
            "gate": asdict(rule),
            "exchanges": sum(s.exchanges for s in members),
            "verdicts": {v: tally.verdicts.get(v, 0) for v in VERDICTS},
            "compared": tally.compared,
            "failing": tally.failing,
            "failure_rate": round(tally.failure_rate, 6),
            "critical": tally.critical,
            "routes": len(members),
            "untestable_routes": untestable_routes,
            "top_finding": top_finding,
            "causes": mine,
            "top_differences": top,
            "top_untestable": untestable,
            "latency": {
                "primary": latency.primary.summary(),
                "candidate": latency.candidate.summary(),
            },
            "latency_gate": result.latency.to_dict() if result.latency else None,
        }


def _top_paths(members: list[RouteStats], table: str, limit: int = 5) -> list[dict[str, Any]]:
    """The most frequent differing paths over a group's routes, each with its route."""
    rows = [
        {"route": stats.route, **stat.to_dict(stats.tally.compared)}
        for stats in members
        for stat in getattr(stats, table).values()
    ]
    rows.sort(key=lambda r: (-r["count"], r["route"], r["path"]))
    return rows[:limit]


def _unrouted_name(record: dict[str, Any]) -> str:
    request = record["request"]
    return f"{request.get('method', '?')} {request.get('path', '?')}"


def _headline(groups: dict[str, dict[str, Any]]) -> tuple[str, str, list[str]]:
    """Overall verdict, the one-line headline and the groups that block cutover: those not ready
    ("blocked by") apart from those untestable. Any other status a gate gives (e.g. one for
    groups skipped by policy) is named as it is, never counted as ready."""
    not_ready = [g for g, s in groups.items() if s["status"] == "not ready"]
    untestable = [g for g, s in groups.items() if s["status"] == "untestable"]
    blocking = not_ready + untestable
    ready = [g for g, s in groups.items() if s["status"] == "ready"]
    missing = [g for g, s in groups.items() if s["status"] == "no data"]
    others: dict[str, list[str]] = {}
    for group, info in groups.items():
        if info["status"] not in ("ready", "not ready", "untestable", "no data"):
            others.setdefault(str(info["status"]), []).append(group)
    if not (blocking or ready or others):
        return "no data", "NO DATA: no exchange was compared", []
    notes = [f"{status} for {_labels(names)}" for status, names in others.items()]
    if missing:
        notes.append(f"no data for {_labels(missing)}")
    tail = f" ({'; '.join(notes)})" if notes else ""
    if blocking:
        parts = []
        if not_ready:
            parts.append(f"blocked by {_labels(not_ready)}")
        if untestable:
            parts.append(f"untestable: {_labels(untestable)}")
        return "not ready", f"NOT READY for cutover: {'; '.join(parts)}", blocking
    if not ready:
        return "no data", f"NO DATA: no exchange was compared{tail}", []
    return "ready", f"READY for cutover: {_labels(ready)}{tail}", []


def _labels(groups: list[str]) -> str:
    return ", ".join(groups)
