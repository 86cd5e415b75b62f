"""`parity shadow`: a reverse proxy in front of production (the primary). Every client is answered
by the primary, untouched; a copy of each exchange goes, off the hot path, to mirror workers that
send it to the candidate (and a secondary Docker copy), judge and record it. Unsafe requests reach
the candidate only as dry runs or where the route allows it. Ctrl-C or SIGTERM lets the workers
finish what they hold (see --drain), flushes the recordings and exits."""

from __future__ import annotations

import argparse
import asyncio

from harness.errors import UserError
from harness.settings import (
    SettingError,
    ShadowSettings,
    ShadowTargets,
    add_flags,
    existing_file,
    from_flags,
    http_url,
    options_of,
)


def add_parser(
    subparsers: argparse._SubParsersAction, name: str, summary: str
) -> argparse.ArgumentParser:
    """Register the subcommand: its own flags, then one per declared setting (harness.settings)."""
    parser = subparsers.add_parser(name, help=summary, description=__doc__)
    parser.add_argument("--primary", required=True, metavar="URL",
                        help="production (Docker): clients are answered from here")
    parser.add_argument("--listen", default="127.0.0.1:8080", metavar="HOST:PORT",
                        help="where clients connect (default 127.0.0.1:8080)")
    parser.add_argument("--certs", action="append", default=[], metavar="[DOMAIN=]PEM",
                        help="serve TLS to clients with this PEM (certificate chain and key; "
                             "mitmproxy's certs option); repeatable")
    add_flags(parser, ShadowTargets, ShadowSettings)
    return parser


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"--listen {value!r}: expected HOST:PORT, e.g. 127.0.0.1:8080")
    return host.strip("[]") or "127.0.0.1", int(port)


def _cert(value: str) -> str:
    try:
        existing_file(value.partition("=")[2] if "=" in value else value)
    except SettingError:
        raise UserError(f"--certs {value!r}: no such file") from None
    return value


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted."""
    from mitmproxy.exceptions import OptionsError

    from harness.config import load_config
    from harness.shadow.proxy import ProxySettings, serve

    config = load_config(args.config)
    try:
        primary = http_url(args.primary)
        if not primary:
            raise SettingError("'' is not an http(s) URL such as http://host:8000")
    except SettingError as exc:
        raise UserError(f"--primary {exc}") from None
    targets = from_flags(ShadowTargets, args, fail=UserError)
    shadow = from_flags(ShadowSettings, args, config.shadow, fail=UserError)
    host, port = _listen(args.listen)
    certs = tuple(_cert(value) for value in args.certs)
    if shadow.metrics:
        from harness.metrics.shadow import parse_listen

        try:
            metrics = parse_listen(shadow.metrics)
        except ValueError as exc:
            raise UserError(str(exc)) from None
        if metrics[1] == port:
            raise UserError(f"--metrics {shadow.metrics!r}: must not be the proxied port "
                            f"({port})")
    settings = ProxySettings(
        primary=primary,
        listen_host=host,
        listen_port=port,
        certs=certs,
        ca_bundle=targets.ca_bundle or None,
        insecure=targets.insecure,
        addon_options=options_of(targets, shadow),
    )
    if shadow.routes_from_primary:
        from harness.routes_openapi import announce

        announce(primary, config.routes, targets.recordings)
    print(f"parity shadow: listening on {host}:{port}, primary {primary}, candidate "
          f"{targets.candidate}" + (f", secondary {targets.secondary}" if targets.secondary
                                    else "")
          + f", recordings in {targets.recordings}", flush=True)
    try:
        asyncio.run(serve(settings))
    except OptionsError as exc:
        raise UserError(str(exc)) from None
    return 0
