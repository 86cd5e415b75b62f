"""Noise learning, Diffy-style but surfaced: per route and generalized path, count how often the
candidate differs from the primary (raw) and how often the secondary Docker copy does (noise),
out of how many exchanges. A candidate difference the noise explains is kept, marked ``noise``;
it is never dropped. Paths where the Docker copies disagree on content that does not look
volatile are *untestable*: listed per route so a person fixes the determinism or ignores them.

Diffy's rule: a path is a real difference only if (raw − noise) / raw exceeds the relative
threshold (20 %) and (raw − noise) / total exceeds the absolute threshold (0.03 %).
"""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from harness.config import NoiseSettings


@dataclass(slots=True)
class RouteNoise:
    """The counts of one route."""

    compared: int = 0  # exchanges compared primary ↔ candidate
    with_secondary: int = 0  # of those, exchanges that also had a usable secondary answer
    raw: Counter[str] = field(default_factory=Counter)  # path → exchanges the candidate differed
    noise: Counter[str] = field(default_factory=Counter)  # path → exchanges the secondary differed
    untestable: Counter[str] = field(default_factory=Counter)  # ... on non-volatile content
    examples: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # path → (primary, second.)


class NoiseModel:
    """Learned noise of every route. Thread-safe; one lock acquisition per exchange."""

    def __init__(self, settings: NoiseSettings | None = None) -> None:
        self.settings = settings or NoiseSettings()
        self.routes: dict[str, RouteNoise] = defaultdict(RouteNoise)
        self._lock = threading.Lock()

    def learn(self, route: str, candidate_paths: set[str],
              secondary_paths: dict[str, tuple[Any, Any]] | None,
              untestable: Iterable[str] = frozenset()) -> None:
        """Count one exchange: the generalized paths where the candidate differed, and (when it
        had a secondary answer) where the secondary differed, with an example pair each."""
        with self._lock:
            counts = self.routes[route]
            counts.compared += 1
            counts.raw.update(candidate_paths)
            if secondary_paths is None:
                return
            counts.with_secondary += 1
            counts.noise.update(secondary_paths.keys())
            counts.untestable.update(untestable)
            for path, values in secondary_paths.items():
                if path not in counts.examples:
                    counts.examples[path] = values

    def has_samples(self, route: str) -> bool:
        """Whether `route` has had enough exchanges with a secondary answer for `explains` to
        explain anything (it explains nothing before)."""
        counts = self.routes.get(route)
        return counts is not None and counts.with_secondary >= self.settings.min_samples

    def explains(self, route: str, path: str) -> bool:
        """Diffy's judgement from the learned counts: is a candidate difference at generalized
        `path` explained by noise?"""
        if not self.has_samples(route):
            return False
        counts = self.routes[route]
        noise = counts.noise.get(path, 0)
        if not noise:
            return False
        raw = counts.raw.get(path, 0)
        if raw == 0:
            return True
        # Not every exchange had a secondary: scale its count to all compared exchanges.
        excess = raw - noise * counts.compared / counts.with_secondary
        real = (excess / raw > self.settings.relative_threshold
                and excess / counts.compared > self.settings.absolute_threshold)
        return not real

    def untestable_at(self, route: str, path: str) -> bool:
        """Whether the Docker copies mostly disagree at `path` on content that is not volatile."""
        counts = self.routes.get(route)
        if counts is None:
            return False
        bad = counts.untestable.get(path, 0)
        return bad > 0 and 2 * bad >= counts.noise.get(path, 0)

    def summary(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Per route, per path the secondary differed at: ``noise_count`` (exchanges where it
        did), ``candidate_count`` (where the candidate did), ``total`` (exchanges with a
        secondary), ``rate``, ``untestable`` and one ``example`` {primary, secondary}."""
        with self._lock:
            out: dict[str, dict[str, dict[str, Any]]] = {}
            for route, counts in self.routes.items():
                if not counts.noise:
                    continue
                total = counts.with_secondary
                out[route] = {}
                for path, count in counts.noise.most_common():
                    primary, secondary = counts.examples.get(path, (None, None))
                    out[route][path] = {
                        "noise_count": count,
                        "candidate_count": counts.raw.get(path, 0),
                        "total": total,
                        "rate": count / total if total else 0.0,
                        "untestable": counts.untestable.get(path, 0) > 0,
                        "example": {"primary": primary, "secondary": secondary},
                    }
            return out

    def untestable_routes(self) -> dict[str, dict[str, float]]:
        """Routes whose Docker copies disagree on content that is not volatile: path → rate (of
        the exchanges with a secondary answer)."""
        with self._lock:
            return {
                route: {p: n / max(c.with_secondary, 1) for p, n in c.untestable.most_common()}
                for route, c in self.routes.items()
                if c.untestable
            }
