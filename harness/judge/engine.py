"""The judge, Diffy's pipeline for one exchange: *lift* the answers, *diff* them with the route's
comparator, *count* what the candidate and the secondary differ at, *judge* the differences
against the noise. Never raises for bad data: what cannot be compared is recorded `incomparable`
with the reason, a comparator that fails too.

Verdicts: no differences → match; every difference noise → noise-only; a difference where the
Docker copies disagree on content that does not look volatile (and nothing worse) → untestable;
anything else → mismatch. Critical differences (a status code, a missing dry-run proof) are never
explained away as noise; but when the Docker copies themselves answer with different statuses and
the candidate's status differs from the primary's, the exchange is untestable (Diffy's rule for a
field, applied to the status line). A candidate that did not prove the dry run it owed (the
mirror's second check, `unproven`) makes the exchange a mismatch whatever else was found.

This is the one place an exchange's judgement is decided: its differences, verdict and reason are
set together at the end of `Engine.judge`, from the answers and the facts the mirror gathered
(timeouts are the candidate's answer, the dry-run proof outcome is `unproven`); nothing changes
them afterwards.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from harness.config import Config, load_config
from harness.diff import base as comparator_registry
from harness.diff.base import Incomparable, Lifted
from harness.diff.lift import lift, lift_headers
from harness.diff.paths import generalize
from harness.diff.tree import compare_json
from harness.judge.noise import NoiseModel
from harness.judge.volatile import is_volatile
from harness.model import Body, Difference, Exchange, Kind, Response, Severity, Verdict
from harness.routes import Route

# The generic comparator (numpy and deepdiff with it) is imported with the engine, not on the
# first judge: a mirror worker's first judge must not stall the mirrors it has in flight.
_PRELOADED = compare_json
# Exchanges judged again (the settle loop retries a backtest's results) are counted once.
_REMEMBERED_IDS = 4096


class Engine:
    """Judges exchanges for one configuration, learning noise as it goes (thread-safe)."""

    def __init__(self, config: Config | None = None) -> None:
        self.config = config or load_config()
        self.noise = NoiseModel(self.config.noise)
        self._counted: OrderedDict[str, None] = OrderedDict()
        self._counted_lock = threading.Lock()

    def route_of(self, exchange: Exchange) -> Route:
        """The route of `exchange`, filling its route/group/comparator when empty."""
        route = self.config.routes.match(exchange.request.method, exchange.request.path)
        exchange.route = exchange.route or route.name
        exchange.group = exchange.group or route.group
        exchange.comparator = exchange.comparator or route.comparator
        return route

    def judge(self, exchange: Exchange, route: Route | None = None, *,
              unproven: str | None = None) -> Exchange:
        """Set `exchange`'s differences, verdict and reason, and learn from it; returns it.
        `route` overrides the route table's (as `parity compare` does with its options).
        `unproven`: why the candidate did not prove the dry run of a dry-run mirror (the
        mirror's second check, see `harness.mirror.step`); None when it did or owed none."""
        if route is None:
            route = self.route_of(exchange)
        else:
            exchange.route = exchange.route or route.name
            exchange.group = exchange.group or route.group
            exchange.comparator = exchange.comparator or route.comparator
        verdict, reason, differences = self._judgement(exchange, route)
        if unproven is not None:
            # Never explained away, never untestable: a real order may have been placed.
            breach = dry_run_breach(route, unproven)
            differences = [d for d in differences if d.path != breach.path] + [breach]
            verdict = Verdict.MISMATCH
        exchange.differences, exchange.verdict, exchange.reason = differences, verdict, reason
        return exchange

    def _judgement(self, exchange: Exchange,
                   route: Route) -> tuple[Verdict, str | None, list[Difference]]:
        """The verdict, reason and differences of `exchange`'s answers (learning the noise)."""
        if exchange.mirror.startswith("skipped"):
            return Verdict.SKIPPED, exchange.mirror.partition(":")[2] or "not mirrored", []
        candidate = exchange.candidate
        if candidate is None or candidate.error:
            return (Verdict.CANDIDATE_ERROR,
                    candidate.error if candidate else "no candidate answer", [])
        if exchange.primary.error:
            return Verdict.INCOMPARABLE, f"primary failed: {exchange.primary.error}", []
        answers = _Answers(exchange.primary)
        try:
            differences = self._diff(exchange.comparator, answers, candidate, route)
        except Incomparable as exc:
            return Verdict.INCOMPARABLE, str(exc), []
        except Exception as exc:  # a comparator bug must not lose the exchange
            return (Verdict.INCOMPARABLE,
                    f"comparator {exchange.comparator} failed: {type(exc).__name__}: {exc}", [])
        secondary = self._secondary(exchange, answers, route)
        untestable = self._mark_noise(exchange, route, differences, secondary)
        if split := _status_split(exchange):
            return Verdict.UNTESTABLE, split, differences
        verdict, reason = _verdict(differences, untestable)
        return verdict, reason, differences

    # --- diff --------------------------------------------------------------------------------

    def _diff(self, comparator: str, answers: _Answers, other: Response,
              route: Route) -> list[Difference]:
        primary = answers.response
        if primary.body.truncated or other.body.truncated:
            if primary.body.sha256 == other.body.sha256 and primary.status == other.status:
                return []
            raise Incomparable("body over the recording cap and the digests differ")
        same_body = _same_body(primary.body, other.body)
        for side, answer in (("primary", primary), ("candidate", other)):
            if answer.body.decode_error:
                if same_body:
                    return []
                raise Incomparable(f"{side} body: {answer.body.decode_error}")
        compare = comparator_registry.get(comparator)
        if (same_body and primary.status == other.status and route.dry_run is None
                and comparator_registry.identical_is_match(compare, route.options)):
            # Fast path: identical bodies need no parsing; the comparator judges the headers
            # alone (cookies, its ignore globs). Not on a route whose answers carry a dry-run
            # proof (its comparator sees every order it is given), nor for a comparator that
            # reads the body even when identical (keys). The proof itself is the mirror's second
            # check, given to `judge` as `unproven`.
            return compare(answers.headers_only(), _headers_only(other), route.options)
        return compare(answers.lifted(), answers.lift_other(other), route.options)

    # --- count -------------------------------------------------------------------------------

    def _secondary(self, exchange: Exchange, answers: _Answers,
                   route: Route) -> dict[str, tuple[Any, Any]] | None:
        """What the secondary differs from the primary at (generalized path → example values),
        or None when there is no usable secondary answer."""
        secondary = exchange.secondary
        if secondary is None or secondary.error:
            return None
        if secondary.status != exchange.primary.status:
            # A secondary that failed or answered otherwise teaches nothing about the body.
            return {"@status": (exchange.primary.status, secondary.status)}
        try:
            found = self._diff(exchange.comparator, answers, secondary, route)
        except Exception:  # the secondary only teaches; a failure here judges nothing
            return None
        learned: dict[str, tuple[Any, Any]] = {}
        for diff in found:
            learned.setdefault(generalize(diff.path), (diff.primary, diff.candidate))
        return learned

    def _first_count(self, exchange: Exchange) -> bool:
        with self._counted_lock:
            if exchange.id in self._counted:
                return False
            self._counted[exchange.id] = None
            if len(self._counted) > _REMEMBERED_IDS:
                self._counted.popitem(last=False)
            return True

    # --- judge -------------------------------------------------------------------------------

    def _mark_noise(self, exchange: Exchange, route: Route, differences: list[Difference],
                    secondary: dict[str, tuple[Any, Any]] | None) -> set[str]:
        """Mark noise differences, learn the counts; returns the untestable paths the candidate
        differs at. On a route whose answers age (latest candles, balances) everything the
        Docker copies disagree at is noise: they answered at different moments."""
        untestable_now: set[str] = set()
        if secondary:
            for path, (p_value, s_value) in secondary.items():
                if not route.ages and not is_volatile(path, p_value, s_value, exchange.ts):
                    untestable_now.add(path)
        paths = [generalize(d.path) for d in differences]
        if self._first_count(exchange):
            self.noise.learn(exchange.route, set(paths), secondary, untestable_now)
        untestable: set[str] = set()
        if secondary is None and not self.noise.has_samples(exchange.route):
            return untestable  # nothing learned yet explains a difference (below: no path does)
        for diff, path in zip(differences, paths, strict=True):
            if diff.severity is Severity.CRITICAL:
                continue  # a critical finding is never explained away
            if secondary is not None and path in secondary:
                stuck = path in untestable_now
            elif self.noise.explains(exchange.route, path):
                stuck = self.noise.untestable_at(exchange.route, path)
            else:
                continue
            if stuck:
                untestable.add(path)  # kept as a finding: the Docker copies disagree here too
            else:
                diff.noise = True
        return untestable


class _Answers:
    """The primary's answer, lifted once and shared by the candidate's and secondary's diffs; an
    answer byte-identical to it (same content type) shares its parsed body."""

    __slots__ = ("_headers", "_lifted", "response")

    def __init__(self, response: Response) -> None:
        self.response = response
        self._lifted: Lifted | None = None
        self._headers: Lifted | None = None

    def lifted(self) -> Lifted:
        if self._lifted is None:
            self._lifted = lift(self.response)
        return self._lifted

    def headers_only(self) -> Lifted:
        if self._headers is None:
            self._headers = _headers_only(self.response)
        return self._headers

    def lift_other(self, other: Response) -> Lifted:
        primary = self.lifted()
        if not _same_body(self.response.body, other.body):
            return lift(other)
        headers = lift_headers(other)
        if headers.get("content-type") != primary.headers.get("content-type"):
            return lift(other)
        return Lifted(other.status, headers, primary.kind, primary.body, primary.raw,
                      primary.parse_error)


def _same_body(a: Body, b: Body) -> bool:
    """Byte-identical bodies, compared without encoding them when possible."""
    if a is b:
        return True
    if a.size != b.size or a.truncated != b.truncated:
        return False
    if a.sha256 and b.sha256:
        return a.sha256 == b.sha256
    if a.text is not None and b.text is not None:
        return a.text == b.text
    return a.raw == b.raw


def _headers_only(response: Response) -> Lifted:
    return lift(response, body=False)


def _status_split(exchange: Exchange) -> str | None:
    """Diffy's rule applied to the status line: when the two Docker copies answer with different
    statuses and the candidate differs from the primary's, nothing can be said about the candidate
    (which copy is right?): the reason the exchange is untestable, else None."""
    primary, secondary, candidate = exchange.primary, exchange.secondary, exchange.candidate
    if (secondary is None or secondary.error or candidate is None
            or secondary.status == primary.status or candidate.status == primary.status):
        return None
    return (
        f"the two Docker copies disagree on the status (primary {primary.status}, secondary "
        f"{secondary.status}; candidate {candidate.status}): replay it when they agree, or find "
        "what makes the primary's answer differ (state, timing)"
    )


def dry_run_breach(route: Route, why: str) -> Difference:
    """The critical finding of a candidate that did not prove the dry run it owed (`why`), at
    what the route declares as the proof: its answer's `dry_run.proof_path`, else its
    precondition's path."""
    if route.dry_run is not None:
        path, wanted = route.dry_run.proof_path, route.dry_run.proof_value
    elif route.precondition is not None:
        path, wanted = route.precondition.path, route.precondition.expect
    else:
        path, wanted = "", None
    return Difference(
        path, Kind.CHANGED, wanted, None,
        f"candidate did not prove the dry run ({why}): a real order may have been placed on the "
        "candidate; mirroring of this route is stopped",
        Severity.CRITICAL)


def _verdict(differences: list[Difference], untestable: set[str]) -> tuple[Verdict, str | None]:
    real = [d for d in differences if not d.noise]
    if any(generalize(d.path) not in untestable for d in real):
        return Verdict.MISMATCH, None
    if real:
        shown = ", ".join(sorted(untestable)[:5])
        return Verdict.UNTESTABLE, (
            f"the two Docker copies disagree at {shown} (content that does not look volatile): "
            "make it deterministic or ignore the path in parity.toml"
        )
    if differences:
        return Verdict.NOISE_ONLY, None
    return Verdict.MATCH, None
