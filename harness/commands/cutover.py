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

from harness.cutover.status import status_lines
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
