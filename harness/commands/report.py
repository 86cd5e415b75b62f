"""`parity report`: build the self-contained HTML diff report (and its JSON summary) from
recordings of judged exchanges. Exit 0 when written, 2 on missing or unreadable input."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import UserError

if TYPE_CHECKING:
    from harness.config import Config


def add_parser(
    subparsers: argparse._SubParsersAction, name: str, summary: str
) -> argparse.ArgumentParser:
    """Register the subcommand."""
    parser = subparsers.add_parser(name, help=summary, description=__doc__)
    parser.add_argument(
        "recordings",
        nargs="+",
        metavar="RECORDINGS",
        help="recording segments (.jsonl, .jsonl.gz) or directories of them",
    )
    parser.add_argument(
        "--out",
        required=True,
        metavar="OUT.html",
        help="where to write the report, e.g. reports/nightly.html",
    )
    parser.add_argument(
        "--json", metavar="OUT.json", help="also write the machine-readable summary"
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="parity.toml whose [gates] decide readiness and whose routes are known (default: "
             "the shipped configuration; give the one the recordings were made with)",
    )
    parser.add_argument("--title", metavar="TITLE", help="the report's title")
    return parser


def _config(config: str | None) -> Config | None:
    if config is None:
        return None
    if not Path(config).is_file():
        raise UserError(f"--config {config}: no such file")
    from harness.config import load_config

    return load_config(config)


def run(args: argparse.Namespace) -> int:
    """Build the report; print where it is and its headline."""
    from harness.report import build_report

    summary = build_report(
        args.recordings, args.out, json_out=args.json, config=_config(args.config),
        title=args.title
    )
    print(f"wrote {args.out}")
    if args.json:
        print(f"wrote {args.json}")
    print(summary["headline"])
    for group, info in summary["groups"].items():
        if info["status"] in ("not ready", "untestable"):
            why = info["top_finding"] or "; ".join(info["reasons"][:1])
            print(f"  {group}: {info['status']}: {why}")
    unknown = summary.get("unknown_routes") or []
    if unknown:
        print("  routes the route table does not know: "
              + ", ".join(f"{r['route']} ({r['exchanges']})" for r in unknown[:5])
              + (" ..." if len(unknown) > 5 else ""))
    return 0
