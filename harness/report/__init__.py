"""The HTML diff report reviewed before cutover, and its machine-readable summary.

    summary = build_report(["recordings/"], "reports/nightly.html", json_out="summary.json")

`aggregate` counts (streaming, bounded memory), `render` writes one self-contained HTML file.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson

from harness.config import Config, GateRules
from harness.errors import UserError
from harness.files import write_atomically
from harness.model import Exchange
from harness.report.aggregate import ReportBuilder, gate_rules
from harness.report.render import render_html
from harness.report.sources import Source, cutover_timeline, iter_sources, shadow_counters

__all__ = ["ReportBuilder", "build_report", "gate_rules", "render_html", "write_report"]


def build_report(
    sources: Iterable[Source] | Source,
    out_html: str | Path | None,
    *,
    json_out: str | Path | None = None,
    gates: GateRules | Mapping[str, Any] | None = None,
    title: str | None = None,
    config: Config | str | Path | None = None,
    data_state: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Count every exchange of `sources` (recordings paths, record dicts or `Exchange`s), write
    the HTML report to `out_html` (unless None) and the JSON summary to `json_out`, and return
    the summary. `gates` maps a migration group to its gate; without it, the gates of `config`
    (a loaded `Config`, or a parity.toml path), else those of the shipped configuration. The
    route table of `config` (else the shipped one) names traffic on routes it does not know,
    with the templates the primary's spec declared when the shadow proxy saved them beside the
    recordings."""
    if isinstance(sources, str | Path | dict | Exchange):
        sources = [sources]
    loaded = _config(config)
    if gates is None and loaded is not None:
        gates = loaded.gates
    spec: list[Any] = []
    if isinstance(sources, list | tuple):
        from harness.routes_openapi import saved_routes

        spec = saved_routes(s for s in sources if isinstance(s, str | Path))
    builder = ReportBuilder(gates, routes=loaded.routes if loaded else None, spec_routes=spec)
    names: list[str] = []

    def noted(items: Iterable[Source]) -> Iterable[Source]:  # streams: never listed
        for item in items:
            if isinstance(item, str | Path):
                names.append(str(item))
            yield item

    for item in iter_sources(noted(sources)):
        if isinstance(item, Exchange):
            builder.add(item)
        else:
            builder.add_record(item)
    if builder.records == 0 and builder.dropped:
        raise UserError(
            f"none of the {builder.dropped} records read is an exchange "
            f"(no 'request'): {', '.join(names) or 'input'}"
        )
    return write_report(builder, out_html, json_out=json_out, title=title, sources=names,
                        not_mirrored=shadow_counters(names), data_state=data_state,
                        cutover=cutover_timeline(names))


def _config(config: Config | str | Path | None) -> Config | None:
    """A loaded `Config` from a path or a `Config`; None when none is given."""
    if config is None:
        return None
    if isinstance(config, str | Path):
        from harness.config import load_config

        return load_config(config)
    return config


def write_report(
    builder: ReportBuilder,
    out_html: str | Path | None,
    *,
    json_out: str | Path | None = None,
    title: str | None = None,
    sources: list[str] | None = None,
    not_mirrored: Mapping[str, int] | None = None,
    data_state: Mapping[str, Any] | None = None,
    cutover: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write the report of a filled builder; returns the summary (the `--json` content).
    `not_mirrored`: what the shadow proxy did not mirror (see `sources.shadow_counters`), shown
    and summarised when given; `cutover`: the cutover's timeline (`sources.cutover_timeline`)."""
    summary = builder.summary()
    if title:
        summary["title"] = title
    if not_mirrored is not None:
        summary["not_mirrored"] = dict(not_mirrored)
    if cutover is not None:
        summary["cutover"] = dict(cutover)
    if data_state is not None:
        summary["data_state"] = dict(data_state)
        _fold_data_gates(summary, data_state)
    if out_html is not None:
        html = render_html(builder, summary=summary, title=title, sources=sources,
                           not_mirrored=not_mirrored, data_state=data_state, cutover=cutover)
        write_report_file(Path(out_html), html.encode("utf-8"))
    if json_out is not None:
        data = orjson.dumps(summary, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)
        write_report_file(Path(json_out), data + b"\n")
    return summary


def write_report_file(path: Path, data: bytes) -> None:
    """Readers never see half a report (`harness.files.write_atomically`, readable by all);
    a failure is a one-line UserError."""
    try:
        write_atomically(path, data, mode=0o644)
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None


def _fold_data_gates(summary: dict[str, Any], data_state: Mapping[str, Any]) -> None:
    """A group whose data differ is not ready, whatever its answers say: it joins the groups
    the headline says block cutover ("data differ: strategy")."""
    from harness.datastate.findings import groups_whose_data_differ

    differ = groups_whose_data_differ(data_state)
    if not differ:
        return
    note = f"data differ: {', '.join(differ)}"
    summary["blocking"] = list(dict.fromkeys([*summary.get("blocking", []), *differ]))
    summary["blocked_by"] = list(dict.fromkeys([*summary.get("blocked_by", []), *differ]))
    if summary.get("verdict") == "not ready":
        summary["headline"] = f"{summary['headline']}; {note}"
    else:
        summary["verdict"] = "not ready"
        summary["headline"] = f"NOT READY for cutover: {note}"
