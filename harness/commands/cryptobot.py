"""`parity cryptobot`: run the reference Cryptobot, the target of the demo, tests and benchmarks.

The reference app is a separate package; it is imported only here, when the command runs.
"""

from __future__ import annotations

import argparse


def add_parser(
    subparsers: argparse._SubParsersAction, name: str, summary: str
) -> argparse.ArgumentParser:
    """Register the subcommand; its own options are parsed by the reference app."""
    parser = subparsers.add_parser(
        name,
        help=summary,
        description=summary + " (all options are passed to `python -m reference_cryptobot`)",
        add_help=False,
    )
    # Never parsed here: `harness.cli` hands everything after `cryptobot` to the app (PASS_THROUGH).
    parser.add_argument("app_args", nargs=argparse.REMAINDER)
    return parser


def run(args: argparse.Namespace) -> int:
    """Serve the reference Cryptobot until interrupted."""
    from reference_cryptobot.server import main

    return main(args.app_args, prog="parity cryptobot")
