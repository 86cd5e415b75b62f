"""The `parity` command line: one subcommand per job, each in `harness/commands/`."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from harness.errors import UserError

# name -> (module in harness.commands, one-line summary shown in `parity --help`)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("demo", "run the whole harness end to end against the reference Cryptobot"),
    "shadow": (
        "shadow",
        "reverse proxy in front of production that mirrors traffic to the candidate",
    ),
    "replay": ("replay", "replay recordings against the candidate and apply the gates (nightly)"),
    "report": ("report", "build the self-contained HTML diff report from recordings"),
    "compare": ("compare", "compare two response bodies from files with a comparator"),
    "cryptobot": ("cryptobot", "run the reference Cryptobot (docker or native flavour)"),
    "data": ("data", "compare the primary's and the candidate's databases, row by row, fast"),
    "routes": ("routes", "write a parity.toml route table from the running services' specs"),
    "cutover": ("cutover", "move users to the candidate in sticky batches; status, rollback"),
}
# Subcommands that parse their own options: everything after the name is theirs, passed as
# `app_args` (argparse's REMAINDER does not take options that come first: `--flavor docker`).
PASS_THROUGH = ("cryptobot",)

DESCRIPTION = """\
cryptobot-parity: prove, service by service, that the native Cryptobot answers like the Docker one.

  parity demo                      watch the whole pipeline catch real migration drifts
  parity shadow --primary URL --candidate URL      mirror live traffic, record, compare
  parity replay recordings/ --candidate URL        nightly replay with per-group gates
  parity report recordings/ --out reports/x.html   the report reviewed before cutover
  parity compare primary.json candidate.json       diff two answers by hand
  parity routes --from URL --out parity.toml       a route table from the live OpenAPI specs
"""


SECRETS_HELP_FOR = ("shadow", "replay", "report")  # the commands that read or write recordings


def _add_secrets_help(parser: argparse.ArgumentParser) -> None:
    """Where the redaction key lives and how to rotate it, at the end of `--help`."""
    from harness.store.redaction_key import HELP

    parser.epilog = f"{parser.epilog}\n\n{HELP}" if parser.epilog else HELP
    parser.formatter_class = argparse.RawDescriptionHelpFormatter


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="parity",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, summary) in SUBCOMMANDS.items():
        module = importlib.import_module(f"harness.commands.{module_name}")
        sub = module.add_parser(subparsers, name, summary)
        sub.set_defaults(_run=module.run)
        if name in SECRETS_HELP_FOR:
            _add_secrets_help(sub)
    return parser


class _StderrHandler(logging.StreamHandler):
    """Logs to whatever sys.stderr is at the time of each record (so redirections apply)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def _configure_logging() -> None:
    root = logging.getLogger("parity")
    if not any(isinstance(h, _StderrHandler) for h in root.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        root.propagate = False  # mitmproxy's own log handler would print it twice


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `parity` console script."""
    _configure_logging()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in PASS_THROUGH:
        module = importlib.import_module(f"harness.commands.{SUBCOMMANDS[argv[0]][0]}")
        args = argparse.Namespace(command=argv[0], app_args=argv[1:], _run=module.run)
    else:
        args = build_parser().parse_args(argv)
    if not getattr(args, "_run", None):
        build_parser().print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except UserError as exc:
        print(f"parity {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"parity {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
