"""`parity shadow`: not built yet."""

from __future__ import annotations

import argparse
import sys


def add_parser(
    subparsers: argparse._SubParsersAction, name: str, summary: str
) -> argparse.ArgumentParser:
    """Register the subcommand."""
    return subparsers.add_parser(name, help=summary, description=summary)


def run(args: argparse.Namespace) -> int:
    """Say plainly that this subcommand is not built yet."""
    print("parity shadow: not built yet", file=sys.stderr)
    return 2
