"""Render the report as one self-contained HTML file: inline CSS, JS and SVG, nothing fetched.

Safety: Jinja2 autoescaping is on and every recorded value goes through it; no recorded data is
embedded in JavaScript (the script only reads the DOM); a Content-Security-Policy allows no
network at all and only the report's own script (by its sha256), so even markup that slipped
through could neither run nor load anything.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from harness.judge.gate import FAILING, LATENCY_ALPHA, LATENCY_TEST, P99_MIN_PAIRS
from harness.report.aggregate import VERDICTS, ReportBuilder
from harness.report.examples import BODY_CAP, ExampleView
from harness.report.pretty import compact
from harness.report.sources import not_mirrored_rows

TEMPLATES = Path(__file__).parent / "templates"
NO_VALUE = "\u2013"  # en dash
BODY_BUDGET = 1_500_000  # characters of body text in all examples together
MIN_BODY_CAP = 1_000
SLOWER = 1.2  # candidate p95 above this times the primary p95 is flagged
GROUP_TITLES = {
    "data": "Data",
    "backtest": "Backtest",
    "strategy": "Strategy",
    "auth": "Auth",
    "trade": "Trade",
    "mcp": "MCP",
}


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,  # the template is .html.j2; never rely on the extension for this
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        ms=fmt_ms,
        pct=fmt_pct,
        num=fmt_num,
        ratio=fmt_ratio,
        group_title=group_title,
        compact=compact,
    )
    env.globals.update(verdict_class=verdict_class, latency_class=latency_class,
                       latency_test_name=LATENCY_TEST, latency_alpha=LATENCY_ALPHA,
                       p99_min_pairs=P99_MIN_PAIRS)
    return env


@cache
def _asset(name: str) -> str:
    return (TEMPLATES / name).read_text(encoding="utf-8")


def fmt_ms(value: float | None) -> str:
    """A latency in milliseconds, short."""
    if value is None:
        return NO_VALUE
    return f"{value:.1f}" if value < 10 else f"{value:.0f}"


def fmt_pct(rate: float | None) -> str:
    """A rate as a percentage that never shows a non-zero rate as 0%."""
    if rate is None:
        return NO_VALUE
    if rate == 0:
        return "0%"
    if rate < 0.0001:
        return "<0.01%"
    return f"{rate * 100:.2f}%".replace(".00%", "%")


def fmt_num(value: int | None) -> str:
    """A count with thin thousands separators."""
    return NO_VALUE if value is None else f"{value:,}".replace(",", "\u2009")


def fmt_ratio(candidate: float | None, primary: float | None) -> str:
    """Candidate over primary, as "x1.08" (with a multiplication sign)."""
    if not candidate or not primary:
        return ""
    return f"\u00d7{candidate / primary:.2f}"


def latency_class(candidate: float | None, primary: float | None) -> str:
    """ "slower" when the candidate is clearly slower than the primary, "faster" when faster."""
    if not candidate or not primary:
        return ""
    if candidate > primary * SLOWER:
        return "slower"
    if candidate < primary / SLOWER:
        return "faster"
    return ""


def verdict_class(verdict: str) -> str:
    """The CSS class of a verdict or readiness status."""
    return "v-" + verdict.replace(" ", "-")


def group_title(group: str) -> str:
    """The group's display name."""
    return GROUP_TITLES.get(group, group)


def route_verdicts(row: dict[str, Any]) -> str:
    """Space-separated verdicts present in a route (what the verdict filter matches)."""
    present = [v for v in VERDICTS if row["verdicts"].get(v)]
    if row["failing"]:
        present.append("failing")
    return " ".join(present)


def _needs_detail(row: dict[str, Any]) -> bool:
    return bool(
        row["failing"] or row["verdicts"].get("untestable") or row["critical"] or row["differences"]
    )


def _details(builder: ReportBuilder, views: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per route with real differences: its row, top paths and example views within budget."""
    chosen = [view for view in views if view["detail"]]
    chosen.sort(
        key=lambda v: (
            -v["s"]["failing"],
            -v["s"]["verdicts"].get("untestable", 0),
            v["s"]["route"],
        )
    )
    stats = {(s.group, s.route): s for s in builder.routes.values()}
    records = [stats[(v["s"]["group"], v["s"]["route"])].examples for v in chosen]
    per_route = max(1, min(6, (BODY_BUDGET // MIN_BODY_CAP // 3) // max(len(chosen), 1)))
    bodies = 3 * sum(min(len(r), per_route) for r in records)
    cap = max(MIN_BODY_CAP, min(BODY_CAP, BODY_BUDGET // max(bodies, 1)))
    out = []
    for view, kept in zip(chosen, records, strict=True):
        examples: list[ExampleView] = [builder.keeper.view(k).fit(cap) for k in kept[:per_route]]
        drawn = list({c.path: c for e in reversed(examples) for c in e.charts}.values())[:2]
        out.append({**view, "examples": examples, "charts": drawn})
    return out


def render_html(
    builder: ReportBuilder,
    *,
    summary: dict[str, Any] | None = None,
    title: str | None = None,
    sources: list[str] | None = None,
    not_mirrored: Mapping[str, int] | None = None,
    data_state: Mapping[str, Any] | None = None,
    cutover: Mapping[str, Any] | None = None,
) -> str:
    """The report's HTML, from a filled builder (and its summary, when already computed);
    with `not_mirrored` (the shadow proxy's counts), a "Not mirrored" section; with `cutover`
    (its timeline), a "Cutover" section."""
    summary = summary or builder.summary()
    views = [
        {
            "s": row,
            "anchor": f"route-{i}",
            "verdicts": route_verdicts(row),
            "detail": _needs_detail(row),
        }
        for i, row in enumerate(summary["routes"])
    ]
    script = _asset("report.js")
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode()
    template = _environment().get_template("report.html.j2")
    return template.render(
        title=title or "Cryptobot parity report",
        generated=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        sources=sources or [],
        s=summary,
        groups=summary["groups"],
        routes=views,
        anchors={(v["s"]["group"], v["s"]["route"]): v["anchor"] for v in views if v["detail"]},
        details=_details(builder, views),
        not_mirrored=not_mirrored_rows(dict(not_mirrored)) if not_mirrored is not None else None,
        data_state=data_state,  # `parity data`'s findings (DataStateResult.to_dict())
        cutover=cutover,  # harness.report.sources.cutover_timeline
        verdicts=VERDICTS,
        failing=FAILING,
        css=Markup(_asset("report.css")),
        script=Markup(script),
        script_hash=f"sha256-{digest}",
    )
