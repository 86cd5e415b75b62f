"""Backtest equity curves drawn as inline SVG: primary and candidate overlaid where they differ.

Curves are found by key (``equity_curve``) anywhere in an answer: a list of balances, or of
points ``{timestamp, equity}`` (``value``/``balance``/``total`` also read). Each curve is cut
down to at most `MAX_POINTS` points on the same positions, so the file stays small.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from harness.diff.paths import index, key

CURVE_KEYS = ("equity_curve",)
POINT_KEYS = ("equity", "value", "balance", "total")
MAX_POINTS = 500
WIDTH, HEIGHT = 720, 220
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 64, 12, 12, 8
STRIP = 70  # height of the difference strip under the overlay
RTOL = 1e-9


def find_curves(value: Any, path: str = "", depth: int = 0) -> dict[str, list[float]]:
    """Every equity curve in `value`, by its path (``results.equity_curve``)."""
    found: dict[str, list[float]] = {}
    if depth > 8:
        return found
    if isinstance(value, dict):
        for name, child in value.items():
            child_path = key(path, name)
            if name in CURVE_KEYS and isinstance(child, list):
                curve = _numbers(child)
                if curve:
                    found[child_path] = curve
            elif isinstance(child, dict | list):
                found.update(find_curves(child, child_path, depth + 1))
    elif isinstance(value, list):
        for i, child in enumerate(value[:50]):  # optimisation/walk-forward runs
            if isinstance(child, dict):
                found.update(find_curves(child, index(path, i), depth + 1))
    return found


def _numbers(points: list[Any]) -> list[float]:
    out: list[float] = []
    for point in points:
        if isinstance(point, dict):
            point = next((point[k] for k in POINT_KEYS if k in point), None)
        if isinstance(point, str):
            try:
                point = float(point)
            except ValueError:
                return []
        if not isinstance(point, int | float) or isinstance(point, bool):
            return []
        number = float(point)
        if not math.isfinite(number):
            return []
        out.append(number)
    return out


def first_difference(a: list[float], b: list[float]) -> int | None:
    """The first index where the curves differ beyond a relative 1e-9 (or their length)."""
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if abs(x - y) > RTOL * max(abs(x), abs(y), 1e-12):
            return i
    if len(a) != len(b):
        return min(len(a), len(b))
    return None


def _sample(curve: list[float], count: int) -> list[tuple[float, float]]:
    """At most `count` points (relative position 0..1, value), first and last always kept."""
    n = len(curve)
    if n == 1:
        return [(0.0, curve[0])]
    if n <= count:
        return [(i / (n - 1), v) for i, v in enumerate(curve)]
    step = (n - 1) / (count - 1)
    return [(round(i * step) / (n - 1), curve[round(i * step)]) for i in range(count)]


@dataclass(slots=True)
class Chart:
    """A ready-to-draw overlay of two curves, and a strip of their difference, in SVG units."""

    path: str
    primary_points: str
    candidate_points: str
    delta_points: str
    y_min: float
    y_max: float
    delta_min: float
    delta_max: float
    zero_y: float
    length_primary: int
    length_candidate: int
    first_diff: int
    first_diff_x: float | None
    max_deviation: float
    width: int = WIDTH
    height: int = HEIGHT
    strip_height: int = STRIP
    left: int = PAD_LEFT
    top: int = PAD_TOP
    plot_width: int = WIDTH - PAD_LEFT - PAD_RIGHT
    plot_height: int = HEIGHT - PAD_TOP - PAD_BOTTOM


def _scale(low: float, high: float) -> tuple[float, float]:
    if high - low < 1e-12:
        return low - 1, high + 1
    return low, high


def chart(path: str, primary: list[float], candidate: list[float]) -> Chart | None:
    """The overlay of two curves and their difference, or None when they do not differ."""
    first = first_difference(primary, candidate)
    if first is None:
        return None
    sample_p = _sample(primary, MAX_POINTS)
    sample_c = _sample(candidate, MAX_POINTS)
    common = min(len(primary), len(candidate))
    deltas = [candidate[i] - primary[i] for i in range(common)]
    sample_d = _sample(deltas, MAX_POINTS) if deltas else []
    low, high = _scale(*_bounds([v for _, v in sample_p] + [v for _, v in sample_c]))
    d_low, d_high = _scale(min(0.0, *deltas), max(0.0, *deltas)) if deltas else (-1.0, 1.0)
    span_x = WIDTH - PAD_LEFT - PAD_RIGHT
    span_y = HEIGHT - PAD_TOP - PAD_BOTTOM
    longest = max(len(primary), len(candidate))
    # The difference strip spans the common part of the curves, on the same x scale.
    common_share = (common - 1) / max(longest - 1, 1)

    def points(
        sample: list[tuple[float, float]],
        lo: float,
        hi: float,
        top: float,
        height: float,
        share: float = 1.0,
    ) -> str:
        return " ".join(
            f"{PAD_LEFT + x * share * span_x:.1f},{top + (hi - v) / (hi - lo) * height:.1f}"
            for x, v in sample
        )

    strip_top, strip_span = HEIGHT + 4, STRIP - 8
    return Chart(
        path=path,
        primary_points=points(sample_p, low, high, PAD_TOP, span_y),
        candidate_points=points(sample_c, low, high, PAD_TOP, span_y),
        delta_points=points(sample_d, d_low, d_high, strip_top, strip_span, common_share),
        y_min=low,
        y_max=high,
        delta_min=d_low,
        delta_max=d_high,
        zero_y=round(strip_top + d_high / (d_high - d_low) * strip_span, 1),
        length_primary=len(primary),
        length_candidate=len(candidate),
        first_diff=first,
        first_diff_x=round(PAD_LEFT + (first / max(longest - 1, 1)) * span_x, 1),
        max_deviation=max((abs(d) for d in deltas), default=0.0),
    )


def _bounds(values: list[float]) -> tuple[float, float]:
    return min(values), max(values)


def charts(primary_body: Any, candidate_body: Any, limit: int = 2) -> list[Chart]:
    """Overlays of the equity curves that differ between the two answers (at most `limit`)."""
    if not isinstance(primary_body, dict | list) or not isinstance(candidate_body, dict | list):
        return []
    mine = find_curves(primary_body)
    theirs = find_curves(candidate_body)
    out = []
    for path, curve in mine.items():
        other = theirs.get(path)
        if other is None:
            continue
        drawn = chart(path, curve, other)
        if drawn is not None:
            out.append(drawn)
            if len(out) >= limit:
                break
    return out
