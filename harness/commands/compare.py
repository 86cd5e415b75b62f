"""`parity compare`: diff two answers read from files with a comparator, by hand; with a third
(`--secondary`, a second Docker copy's answer) judged three ways, as the shadow proxy judges:
differences where the two Docker copies disagree too are noise when the values look generated
(ids, timestamps, tokens) and make the answer untestable otherwise.

Exit 0 when they match (or differ only in noise), 1 when they differ (mismatch, untestable,
incomparable), 2 on a usage or input error."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import orjson

from harness.errors import UserError
from harness.model import Body, Difference, Exchange, Request, Response


def add_parser(
    subparsers: argparse._SubParsersAction, name: str, summary: str
) -> argparse.ArgumentParser:
    """Register the subcommand."""
    parser = subparsers.add_parser(name, help=summary, description=__doc__)
    parser.add_argument("primary", metavar="PRIMARY", help="the primary's answer body (a file)")
    parser.add_argument("candidate", metavar="CANDIDATE", help="the candidate's answer body")
    pick = parser.add_mutually_exclusive_group()
    pick.add_argument("--comparator", metavar="NAME",
                      help="json (default), backtest, order, auth, ohlcv, strategy")
    pick.add_argument("--route", metavar='"METHOD /path"',
                      help="take comparator and options from the route table")
    parser.add_argument("--rtol", type=float, metavar="X", help="relative tolerance for numbers")
    parser.add_argument("--atol", type=float, metavar="Y", help="absolute tolerance for numbers")
    parser.add_argument("--ignore", action="append", default=[], metavar="PATH",
                        help="ignore paths matching this glob (items[*].created_at); repeatable")
    parser.add_argument("--status-primary", type=int, default=200, metavar="N",
                        help="the primary's status code (default 200)")
    parser.add_argument("--status-candidate", type=int, default=200, metavar="N",
                        help="the candidate's status code (default 200)")
    parser.add_argument("--secondary", metavar="SECONDARY",
                        help="a second Docker copy's answer body: judge three ways (noise, "
                             "untestable)")
    parser.add_argument("--status-secondary", type=int, default=200, metavar="N",
                        help="the secondary's status code (default 200)")
    parser.add_argument("--config", metavar="FILE", help="parity.toml")
    parser.add_argument("--json", action="store_true", help="print the verdict as JSON")
    return parser


def _answer(path: str, status: int) -> Response:
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
    return Response(status=status, headers=[("content-type", _content_type(raw))],
                    body=Body.from_bytes(raw))


def _content_type(raw: bytes) -> str:
    """JSON for a file that is (or tries to be) a JSON document, text otherwise."""
    from harness.diff.lift import parse_json

    if raw.lstrip()[:1] in (b"{", b"["):
        return "application/json"  # a broken document is reported as such, not diffed as text
    try:
        parse_json(raw)
    except (ValueError, RecursionError):
        return "text/plain"
    return "application/json"


def run(args: argparse.Namespace) -> int:
    """Compare the two files and print the differences."""
    from harness.config import load_config
    from harness.diff import base as registry
    from harness.judge.engine import Engine

    config = load_config(args.config)
    if args.route:
        method, _, path = args.route.strip().partition(" ")
        if not path.startswith("/"):
            raise UserError(f'--route {args.route!r}: expected "METHOD /path"')
        route = config.routes.match(method, path)
    else:
        method, path = "GET", "/"
        name = args.comparator or "json"
        if name not in registry.names():
            raise UserError(f"unknown comparator {name!r} (known: {', '.join(registry.names())})")
        route = dataclasses.replace(config.routes.match(method, path), comparator=name)
    for name in ("rtol", "atol"):
        value = getattr(args, name)
        if value is not None and not 0 <= value < float("inf"):
            raise UserError(f"--{name} must be a non-negative number, got {value}")
    options = dataclasses.replace(
        route.options,
        rtol=args.rtol if args.rtol is not None else route.options.rtol,
        atol=args.atol if args.atol is not None else route.options.atol,
        ignore=route.options.ignore + tuple(args.ignore),
        compare_headers=False,
    )
    route = dataclasses.replace(route, options=options)
    primary = _answer(args.primary, args.status_primary)
    secondary = _answer(args.secondary, args.status_secondary) if args.secondary else None

    def judge(candidate: Response, second: Response | None) -> Exchange:
        exchange = Exchange(request=Request(method, path), primary=primary, candidate=candidate,
                            secondary=second, route=route.name, group=route.group,
                            comparator=route.comparator)
        return Engine(config).judge(exchange, route)

    judged = judge(_answer(args.candidate, args.status_candidate), secondary)
    # Where the two Docker copies disagree: what the noise and untestable verdicts rest on.
    copies = judge(secondary, None).differences if secondary is not None else None
    if args.json:
        out = {"verdict": str(judged.verdict), "comparator": judged.comparator,
               "reason": judged.reason,
               "differences": [_public(d, noise=copies is not None)
                               for d in judged.differences]}
        if copies is not None:
            out["secondary"] = [_as_secondary(_public(d, noise=False)) for d in copies]
        sys.stdout.write(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        _print_readable(judged, copies)
    return 0 if str(judged.verdict) in ("match", "noise-only") else 1


def _public(diff: Difference, *, noise: bool) -> dict:
    """A difference as `--json` shows it; `noise` (learned from a secondary) only when judged
    three ways."""
    data = diff.to_dict()
    if not noise:
        data.pop("noise")
    return data


def _as_secondary(data: dict) -> dict:
    """A primary-vs-secondary difference, its other side named for what it is."""
    return {("secondary" if key == "candidate" else key): value for key, value in data.items()}


def _print_readable(exchange: Exchange, copies: list[Difference] | None) -> None:
    """The verdict and one line per difference (noise marked), then where the Docker copies
    disagree when judged three ways; colour only on a terminal (rich decides)."""
    from rich.console import Console
    from rich.markup import escape

    console = Console(highlight=False)
    verdict = str(exchange.verdict)
    colour = {"match": "green", "mismatch": "red"}.get(verdict, "yellow")
    count = len(exchange.differences)
    head = f"[bold {colour}]{verdict}[/] ({escape(exchange.comparator)}"
    head += f", {count} difference{'s' if count != 1 else ''})" if count else ")"
    if exchange.reason:
        head += f": {escape(exchange.reason)}"
    console.print(head, soft_wrap=True)
    for diff in exchange.differences:
        mark = {"critical": "[bold red]✖[/]", "warning": "[yellow]•[/]"}.get(
            str(diff.severity), "[dim]·[/]")
        message = diff.message
        if diff.path and message.startswith(diff.path):
            text = f"[bold]{escape(diff.path)}[/]{escape(message[len(diff.path):])}"
        else:
            text = escape(message)
        noise = " [dim]noise[/]" if diff.noise else ""
        console.print(f"  {mark} {text} [dim]({diff.kind})[/]{noise}", soft_wrap=True)
    if copies is not None:
        console.print(f"the two Docker copies (primary, secondary) disagree at {len(copies)} "
                      f"place{'s' if len(copies) != 1 else ''}"
                      + (": " + escape(", ".join(d.path or "body" for d in copies[:8]))
                         if copies else ""), soft_wrap=True)
