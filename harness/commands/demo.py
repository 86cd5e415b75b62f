"""`parity demo`: the whole harness end to end in about a minute. Starts the reference Cryptobot
as Docker primary and secondary and as the native candidate (with realistic migration drifts), puts
the shadow proxy in front, drives realistic sessions and generated edge requests through it, then
runs the gate, writes the HTML report and prints the readiness of each migration group.

Exit 0 when the demo ran (its verdict is expected to be NOT READY with the default drifts)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from harness.demo.run import DEFAULT_DRIFTS, DemoOptions, print_summary, run_demo
from harness.errors import UserError


def add_parser(
    subparsers: argparse._SubParsersAction, name: str, summary: str
) -> argparse.ArgumentParser:
    """Register the subcommand."""
    parser = subparsers.add_parser(name, help=summary, description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("reports/demo.html"),
                        help="the HTML report (default reports/demo.html)")
    parser.add_argument("--drift", default=",".join(DEFAULT_DRIFTS), metavar="NAME,...",
                        help="drifts of the native candidate ('' for none; default: all six)")
    parser.add_argument("--sessions", type=int, default=6, metavar="N",
                        help="user sessions driven through the proxy (default 6)")
    parser.add_argument("--edge-requests", type=int, default=30, metavar="N",
                        help="hypothesis-generated edge requests (default 30)")
    parser.add_argument("--seed", type=int, default=7, metavar="S",
                        help="seed of market data and sessions (same seed, same findings)")
    parser.add_argument("--keep-recordings", type=Path, metavar="DIR",
                        help="keep the recorded exchanges in DIR")
    parser.add_argument("--cutover", action="store_true",
                        help="the cutover act instead: data moved to 50 %% of the users, a drift "
                             "switched on in the candidate, the automatic rollback (~20 s)")
    return parser


def run(args: argparse.Namespace) -> int:
    """Run the demo and print the summary."""
    if args.sessions < 1 or args.edge_requests < 0:
        raise UserError("--sessions must be at least 1 and --edge-requests at least 0")
    drifts = tuple(d.strip() for d in args.drift.split(",") if d.strip())
    console = Console(width=max(Console().width, 140))
    if args.cutover:
        from harness.cutover.demo import run_cutover_act

        run_cutover_act(console, seed=args.seed)
        return 0
    result = run_demo(DemoOptions(out=args.out, drifts=drifts, sessions=args.sessions,
                                  edge_requests=args.edge_requests, seed=args.seed,
                                  keep_recordings=args.keep_recordings), console)
    print_summary(result, console)
    return 0
