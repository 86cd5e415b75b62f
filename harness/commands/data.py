"""`parity data`: do the primary's and the candidate's databases hold the same data?

Checksums of key segments are computed inside both databases and compared; differing segments
are split until small, then their rows are compared (see harness/datastate). Exit 0 same data,
1 differences (or a table that cannot be compared), 2 usage or connection error."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from harness.errors import UserError


def add_parser(
    subparsers: argparse._SubParsersAction, name: str, summary: str
) -> argparse.ArgumentParser:
    """Register the subcommand."""
    parser = subparsers.add_parser(name, help=summary, description=__doc__)
    parser.add_argument("--primary-db", required=True, metavar="URL",
                        help="SQLAlchemy URL: sqlite:///FILE (or a data dir of *.sqlite files), "
                             "postgresql+psycopg://USER:PASSWORD@HOST:PORT/DB")
    parser.add_argument("--candidate-db", required=True, metavar="URL", help="the same, native")
    parser.add_argument("--config", metavar="FILE", help="parity.toml ([data.tables])")
    parser.add_argument("--table", action="append", default=[], metavar="NAME[:KEY[,KEY]]",
                        help="compare only this table (repeatable); KEY overrides its key")
    parser.add_argument("--since", metavar="TIMESTAMP",
                        help="rows updated at or after this instant are rechecked as in flight "
                             "(default: the run's start)")
    parser.add_argument("--settle", type=float, metavar="SECONDS",
                        help="wait before rechecking rows in flight ([data] settle_s)")
    parser.add_argument("--reverse", action="store_true",
                        help="candidate → primary: rows written on native after a cutover must "
                             "be back on Docker before a rollback")
    parser.add_argument("--json", metavar="OUT.json", help="write the findings as JSON")
    parser.add_argument("--report", metavar="OUT.html",
                        help="write an HTML report with the Data state section")
    return parser


def parse_since(text: str | None) -> datetime | None:
    """`--since` as an aware instant (a naive one is taken as UTC)."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UserError(f"--since {text!r}: not an ISO-8601 timestamp") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def run(args: argparse.Namespace) -> int:
    """Compare, print per group and table, write --json / --report; the exit code."""
    import orjson

    from harness.datastate import compare_databases, load_data_settings
    from harness.datastate.render import print_result

    settings = load_data_settings(args.config).only(args.table)
    if args.settle is not None and args.settle < 0:
        raise UserError(f"--settle {args.settle}: must be >= 0")
    result = compare_databases(args.primary_db, args.candidate_db, settings,
                               reverse=args.reverse, since=parse_since(args.since),
                               settle_s=args.settle)
    if all(state.status == "absent" for state in result.tables):
        names = ", ".join(state.table for state in result.tables)
        raise UserError(f"none of the tables ({names}) is in either database: wrong URLs, or "
                        "list yours in [data.tables] / --table")
    print_result(result, sys.stdout)
    if args.json:
        from harness.report import write_report_file

        document = orjson.dumps(result.to_dict(), option=orjson.OPT_INDENT_2)
        write_report_file(Path(args.json), document + b"\n")
    if args.report:
        from harness.report import write_report
        from harness.report.aggregate import ReportBuilder

        write_report(ReportBuilder(), args.report, title="parity data: data state",
                     data_state=result.to_dict())
    return 1 if result.differs else 0
