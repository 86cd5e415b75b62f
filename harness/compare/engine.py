"""The judge: lift both answers, diff them with the route's comparator, count noise from the
secondary, and give the exchange its verdict. Never raises for bad data: what cannot be compared
is recorded `incomparable` with the reason."""

from __future__ import annotations

from typing import Any

from comparators import base as comparator_registry
from comparators.base import Incomparable
from comparators.generic import compare_headers
from comparators.paths import generalize
from harness.compare.noise import NoiseModel
from harness.compare.volatile import is_volatile
from harness.config import Config, load_config
from harness.lift import lift
from harness.model import Difference, Exchange, Response, Severity, Verdict
from harness.routes import Route


class Engine:
    """Judges exchanges for one configuration, learning noise as it goes (thread-safe)."""

    def __init__(self, config: Config | None = None) -> None:
        self.config = config or load_config()
        self.noise = NoiseModel(self.config.noise)

    def route_of(self, exchange: Exchange) -> Route:
        """The route of `exchange`, filling its route/group/comparator when empty."""
        route = self.config.routes.match(exchange.request.method, exchange.request.path)
        exchange.route = exchange.route or route.name
        exchange.group = exchange.group or route.group
        exchange.comparator = exchange.comparator or route.comparator
        return route

    def judge(self, exchange: Exchange, route: Route | None = None) -> Exchange:
        """Set `exchange`'s differences, verdict and reason; returns it. `route` overrides the
        route table's (as `parity compare` does with command-line options)."""
        route = route or self.route_of(exchange)
        exchange.differences = []
        exchange.reason = None
        if exchange.mirror.startswith("skipped"):
            exchange.verdict = Verdict.SKIPPED
            exchange.reason = exchange.mirror.partition(":")[2] or "not mirrored"
            return exchange
        candidate = exchange.candidate
        if candidate is None or candidate.error:
            exchange.verdict = Verdict.CANDIDATE_ERROR
            exchange.reason = candidate.error if candidate else "no candidate answer"
            return exchange
        if exchange.primary.error:
            exchange.verdict = Verdict.INCOMPARABLE
            exchange.reason = f"primary failed: {exchange.primary.error}"
            return exchange
        try:
            differences = self._diff(exchange.comparator, exchange.primary, candidate, route)
        except Incomparable as exc:
            exchange.verdict, exchange.reason = Verdict.INCOMPARABLE, str(exc)
            return exchange
        except Exception as exc:  # a comparator bug must not lose the exchange
            exchange.verdict = Verdict.INCOMPARABLE
            exchange.reason = (
                f"comparator {exchange.comparator} failed: {type(exc).__name__}: {exc}"
            )
            return exchange
        untestable = self._learn_from_secondary(exchange, route)
        self._judge_noise(exchange.route, differences, untestable)
        exchange.differences = differences
        exchange.verdict, exchange.reason = _verdict(differences, untestable)
        return exchange

    def _diff(self, comparator: str, primary: Response, candidate: Response,
              route: Route) -> list[Difference]:
        if primary.body.truncated or candidate.body.truncated:
            if primary.body.sha256 == candidate.body.sha256 and primary.status == candidate.status:
                return []
            raise Incomparable("body over the recording cap and the digests differ")
        for side, answer in (("primary", primary), ("candidate", candidate)):
            if answer.body.decode_error:
                if primary.body.raw == candidate.body.raw:
                    return []
                raise Incomparable(f"{side} body: {answer.body.decode_error}")
        compare = comparator_registry.get(comparator)
        if primary.status == candidate.status and primary.body.raw == candidate.body.raw:
            # Fast path: identical bodies need no parsing; only the headers can differ.
            return compare_headers(lift(primary, body=False), lift(candidate, body=False),
                                   route.options)
        return compare(lift(primary), lift(candidate), route.options)

    def _learn_from_secondary(self, exchange: Exchange, route: Route) -> set[str]:
        secondary = exchange.secondary
        if secondary is None or secondary.error:
            return set()
        try:
            noise = self._diff(exchange.comparator, exchange.primary, secondary, route)
        except Exception:  # the secondary only teaches; a failure here judges nothing
            return set()
        paths: dict[str, tuple[Any, Any]] = {}
        untestable: set[str] = set()
        for diff in noise:
            path = generalize(diff.path)
            paths.setdefault(path, (diff.primary, diff.candidate))
            if not is_volatile(diff.path, diff.primary, diff.candidate):
                untestable.add(path)
        self.noise.learn_secondary(exchange.route, paths, untestable)
        return untestable

    def _judge_noise(self, route: str, differences: list[Difference],
                     untestable: set[str]) -> None:
        paths = {generalize(d.path) for d in differences}
        self.noise.learn_candidate(route, paths)
        for diff in differences:
            if diff.severity is Severity.CRITICAL:
                continue  # a critical finding is never explained away
            path = generalize(diff.path)
            diff.noise = path in untestable or self.noise.explains(route, path)


def _verdict(differences: list[Difference], untestable: set[str]) -> tuple[Verdict, str | None]:
    real = [d for d in differences if not d.noise]
    if real:
        return Verdict.MISMATCH, None
    if untestable:
        paths = ", ".join(sorted(untestable)[:5])
        return Verdict.UNTESTABLE, f"the two Docker copies disagree at {paths}"
    if differences:
        return Verdict.NOISE_ONLY, None
    return Verdict.MATCH, None
