"""Noise learning, Diffy-style but surfaced: per route and generalized path, count how often the
candidate differs from the primary (raw) and how often the secondary Docker copy does (noise). A
candidate difference that the noise explains is kept, marked ``noise``; it is never dropped."""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from comparators.paths import generalize
from harness.config import NoiseSettings


@dataclass(slots=True)
class RouteNoise:
    """Counts of one route."""

    compared: int = 0  # exchanges compared primary ↔ candidate
    with_secondary: int = 0  # of those, exchanges that also had a secondary answer
    raw: Counter[str] = field(default_factory=Counter)
    noise: Counter[str] = field(default_factory=Counter)
    untestable: Counter[str] = field(default_factory=Counter)
    examples: dict[str, tuple[Any, Any]] = field(default_factory=dict)


class NoiseModel:
    """Learned noise of every route; thread-safe, cheap per exchange."""

    def __init__(self, settings: NoiseSettings | None = None) -> None:
        self.settings = settings or NoiseSettings()
        self.routes: dict[str, RouteNoise] = defaultdict(RouteNoise)
        self._lock = threading.Lock()

    def learn_secondary(self, route: str, paths: dict[str, tuple[Any, Any]],
                        untestable: set[str]) -> None:
        """Record what the secondary differed at in one exchange (generalized paths)."""
        with self._lock:
            counts = self.routes[route]
            counts.with_secondary += 1
            counts.noise.update(paths.keys())
            counts.untestable.update(untestable)
            for path, values in paths.items():
                counts.examples.setdefault(path, values)

    def learn_candidate(self, route: str, paths: set[str]) -> None:
        """Record what the candidate differed at in one exchange (generalized paths)."""
        with self._lock:
            counts = self.routes[route]
            counts.compared += 1
            counts.raw.update(paths)

    def explains(self, route: str, path: str) -> bool:
        """Diffy's judgement: is a candidate difference at `path` explained by noise?"""
        counts = self.routes.get(route)
        if counts is None:
            return False
        noise = counts.noise.get(path, 0)
        if not noise:
            return False
        raw = counts.raw.get(path, 0)
        if raw == 0:
            return True
        excess = raw - noise * counts.compared / max(counts.with_secondary, 1)
        relative = excess / raw
        absolute = excess / max(counts.compared, 1)
        real = (relative > self.settings.relative_threshold
                and absolute > self.settings.absolute_threshold)
        return not real

    def summary(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Per route, per noisy path: counts, rate and one example pair (primary, secondary)."""
        with self._lock:
            return {
                route: {
                    path: {
                        "noise": count,
                        "raw": counts.raw.get(path, 0),
                        "total": counts.with_secondary,
                        "rate": count / counts.with_secondary if counts.with_secondary else 0.0,
                        "example": counts.examples.get(path),
                        "untestable": path in counts.untestable,
                    }
                    for path, count in counts.noise.most_common()
                }
                for route, counts in self.routes.items()
                if counts.noise
            }

    def untestable_routes(self) -> dict[str, dict[str, float]]:
        """Routes whose Docker copies disagree on non-volatile content: path → rate."""
        with self._lock:
            return {
                route: {p: n / max(c.with_secondary, 1) for p, n in c.untestable.most_common()}
                for route, c in self.routes.items()
                if c.untestable
            }

    def export_ignore_rules(self, routes) -> str:
        """A parity.toml snippet that ignores the learned noise, for a person to review.

        `routes` is the RouteTable, so each exported route keeps its group, comparator and
        policy (a user route replaces the default one with the same method and path)."""
        lines = ["# Learned noise: review before adopting. Each path differed between the two",
                 "# Docker copies (rate = share of exchanges with a secondary answer).", ""]
        for name, paths in sorted(self.summary().items()):
            method, _, template = name.partition(" ")
            route = routes.match(method, template)
            ignore = sorted(set(route.options.ignore) | set(paths))
            lines += [
                "[[routes]]",
                f'method = "{method}"',
                f'path = "{template}"',
                f'group = "{route.group}"',
                f'comparator = "{route.comparator}"',
                f'mirror = "{route.mirror}"',
            ]
            if route.correlate:
                lines.append("correlate = [" + ", ".join(f'"{c}"' for c in route.correlate) + "]")
            lines.append("[routes.options]")
            lines.append("ignore = [")
            for path in ignore:
                stats = paths.get(path)
                note = f"  # rate {stats['rate']:.0%}" if stats else ""
                lines.append(f'    "{path}",{note}')
            lines += ["]", ""]
        return "\n".join(lines)


def generalized(paths) -> set[str]:
    """The generalized form of each difference path."""
    return {generalize(p) for p in paths}
