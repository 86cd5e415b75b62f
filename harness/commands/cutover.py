"""`parity cutover`: move users to the candidate in sticky batches, per migration group, through
the running proxy's admin endpoint (`parity shadow --admin HOST:PORT`).

    parity cutover status [--json]               shares, moved identities, clean clock, rollbacks
    parity cutover advance GROUP PERCENT         raise a group's share (or `adopters` first)
    parity cutover rollback GROUP [--reason T]   back to 0 % at once
    parity cutover resume GROUP                  back to the share before the last rollback

The token comes from --token-file or PARITY_ADMIN_TOKEN. A group rolls back on its own on a
parity breach (see harness/cutover/judge.py)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

import orjson

from harness.errors import UserError

DEFAULT_ADMIN = "http://127.0.0.1:8091"
ADMIN_ENV = "PARITY_ADMIN"


def add_parser(
    subparsers: argparse._SubParsersAction, name: str, summary: str
) -> argparse.ArgumentParser:
    """Register the subcommand."""
    parser = subparsers.add_parser(name, help=summary, description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--admin", metavar="URL",
                        help=f"the proxy's admin endpoint (default: ${ADMIN_ENV}, else "
                             f"{DEFAULT_ADMIN})")
    parser.add_argument("--token-file", metavar="FILE",
                        help="the admin token (default: PARITY_ADMIN_TOKEN)")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    status = actions.add_parser("status", help="each group's share, moved identities, clean "
                                               "clock and last rollback")
    status.add_argument("--json", action="store_true", help="the status as JSON")
    advance = actions.add_parser("advance", help="raise a group's share of moved identities")
    advance.add_argument("group")
    advance.add_argument("percent", help="0 to 100, or `adopters` (the early adopters only)")
    rollback = actions.add_parser("rollback", help="drop a group to 0 %% at once")
    rollback.add_argument("group")
    rollback.add_argument("--reason", default="", help="kept in the history and the status")
    resume = actions.add_parser("resume", help="back to the share before the last rollback")
    resume.add_argument("group")
    return parser


def _token(token_file: str | None) -> str:
    from harness.cutover.control import read_admin_token

    try:
        return read_admin_token(token_file)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def _call(args: argparse.Namespace, method: str, path: str,
          body: dict[str, Any] | None = None) -> dict[str, Any]:
    import httpx

    base = (args.admin or os.environ.get(ADMIN_ENV) or DEFAULT_ADMIN).rstrip("/")
    headers = {"Authorization": f"Bearer {_token(args.token_file)}"}
    try:
        answer = httpx.request(method, base + path, json=body, headers=headers, timeout=30.0,
                               trust_env=False)
    except httpx.HTTPError as exc:
        raise UserError(f"cannot reach the admin endpoint {base} ({type(exc).__name__}): is "
                        "`parity shadow --admin` running there?") from None
    try:
        data = answer.json()
    except ValueError:
        raise UserError(f"{base}: answered HTTP {answer.status_code}, not the admin "
                        "endpoint") from None
    if answer.status_code != 200:
        raise UserError(str(data.get("error") if isinstance(data, dict) else data))
    return data


def clock(seconds: float | None) -> str:
    """'3d 4h', '2h 5m', '1m 3s', '12s'; '-' for None."""
    if seconds is None:
        return "-"
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {secs}s" if minutes else f"{secs}s"


def status_lines(status: dict[str, Any]) -> list[str]:
    """The status as a table, one group per line, and the last rollback's reason."""
    lines = [f"{'group':<10} {'share':>6}  {'moved':>11}  {'clean clock':>11}  last rollback"]
    for name, group in status["groups"].items():
        share = f"{group['share']:g} %" + ("+" if group["adopters"] and not group["share"]
                                           else "")
        moved = f"{group['moved_identities']}/{group['seen_identities']}"
        last = group.get("last_rollback")
        when = "-" if not last else (
            f"{clock(status['now'] - last['at'])} ago"
            f"{' (automatic)' if last.get('automatic') else ''}: {last['reason']}")
        lines.append(f"{name:<10} {share:>6}  {moved:>11}  {clock(group['clean_clock_s']):>11}"
                     f"  {when}")
    lines.append(f"rollbacks: {status['rollbacks']}; early adopters: "
                 f"{len(status['early_adopters'])}; state: {status['state_file']}")
    return lines


def run(args: argparse.Namespace) -> int:
    """Talk to the running proxy."""
    if args.action == "status":
        status = _call(args, "GET", "/cutover/status")
        if args.json:
            sys.stdout.write(orjson.dumps(status, option=orjson.OPT_INDENT_2).decode() + "\n")
        else:
            print("\n".join(status_lines(status)))
        return 0
    body: dict[str, Any] = {"group": args.group}
    if args.action == "advance":
        body["percent"] = args.percent
    if args.action == "rollback":
        body["reason"] = args.reason or f"rolled back by hand at {time.strftime('%H:%M:%S')}"
    result = _call(args, "POST", f"/cutover/{args.action}", body)
    print(result["message"])
    return 0
