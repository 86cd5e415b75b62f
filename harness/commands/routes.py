"""`parity routes`: write a parity.toml route table from the running services' OpenAPI specs
(`GET /openapi.json`). Paths the default table declares keep its group, comparator and options;
unsafe methods are never mirrored until you decide. Exit 0 when written, 2 when a spec cannot be
read or the result would not load."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from harness.errors import UserError
from harness.files import write_atomically


def add_parser(
    subparsers: argparse._SubParsersAction, name: str, summary: str
) -> argparse.ArgumentParser:
    """Register the subcommand."""
    parser = subparsers.add_parser(name, help=summary, description=__doc__)
    parser.add_argument("--from", dest="sources", action="append", required=True,
                        metavar="URL",
                        help="a service (its /openapi.json is read), a spec URL or a spec file; "
                             "repeat for each service behind a path-routing front")
    parser.add_argument("--out", metavar="parity.toml",
                        help="where to write the table (default: standard output)")
    parser.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    parser.add_argument("--timeout", type=float, default=10.0, metavar="S",
                        help="seconds to wait for each spec (default 10)")
    return parser


def run(args: argparse.Namespace) -> int:
    """Fetch the specs, write the table, check that it loads."""
    from harness.config import load_config
    from harness.errors import ConfigError
    from harness.model import SAFE_METHODS
    from harness.routes_openapi import read_routes, routes_toml

    if args.timeout <= 0:
        raise UserError(f"--timeout must be positive, got {args.timeout}")
    out = Path(args.out) if args.out else None
    if out is not None and out.exists() and not args.force:
        raise UserError(f"--out {out}: exists (use --force to overwrite)")
    routes = read_routes(args.sources, args.timeout)
    if not routes:
        raise UserError(f"no operation in the spec(s) of {', '.join(args.sources)}")
    text = routes_toml(routes, load_config(None), list(args.sources))
    with tempfile.TemporaryDirectory(prefix="parity-routes-") as scratch:
        check = Path(scratch) / "parity.toml"
        check.write_text(text, encoding="utf-8")
        try:
            load_config(check)
        except ConfigError as exc:  # a bug here, not the user's: say so in one line
            raise UserError(f"the written table does not load: {exc}") from None
    if out is None:
        sys.stdout.write(text)
        return 0
    try:
        write_atomically(out, text.encode("utf-8"), mode=0o644)
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc.strerror or exc}") from None
    unsafe = sum(1 for r in routes if r.method not in SAFE_METHODS)
    print(f"wrote {out}: {len(routes)} routes from {len(args.sources)} spec(s); "
          f"{unsafe} unsafe ones never mirrored until you decide", file=sys.stderr)
    return 0
