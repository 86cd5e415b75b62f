"""`parity shadow`: a reverse proxy in front of production (the primary). Every client is answered
by the primary, untouched; a copy of each exchange goes, off the hot path, to mirror workers that
send it to the candidate (and a secondary Docker copy), judge and record it. Unsafe requests reach
the candidate only as dry runs or where the route allows it. Ctrl-C or SIGTERM lets the workers
finish what they hold (see --drain), flushes the recordings and exits."""

from __future__ import annotations

import argparse
import asyncio
import os
from urllib.parse import urlsplit

from harness.errors import UserError


def add_parser(
    subparsers: argparse._SubParsersAction, name: str, summary: str
) -> argparse.ArgumentParser:
    """Register the subcommand."""
    parser = subparsers.add_parser(name, help=summary, description=__doc__)
    parser.add_argument("--primary", required=True, metavar="URL",
                        help="production (Docker): clients are answered from here")
    parser.add_argument("--candidate", required=True, metavar="URL",
                        help="the native environment mirrors are sent to")
    parser.add_argument("--secondary", metavar="URL",
                        help="a second Docker copy, to learn what is noise")
    parser.add_argument("--listen", default="127.0.0.1:8080", metavar="HOST:PORT",
                        help="where clients connect (default 127.0.0.1:8080)")
    parser.add_argument("--config", metavar="FILE", help="parity.toml (routes, gates, [shadow])")
    parser.add_argument("--recordings", default="recordings", metavar="DIR",
                        help="where exchanges are recorded (default recordings/)")
    parser.add_argument("--sample", type=float, metavar="RATE",
                        help="share of clients mirrored, 0 to 1: all of a client's requests "
                             "or none (default [shadow] sample: 1)")
    parser.add_argument("--timeout", type=float, metavar="S",
                        help="timeout of one mirrored request (default [shadow] timeout_s: 5)")
    parser.add_argument("--workers", type=int, metavar="N",
                        help="mirror worker processes (default [shadow] workers: 1)")
    parser.add_argument("--queue-size", type=int, metavar="N",
                        help="exchanges a worker holds at most; beyond, mirrors are dropped and "
                             "counted (default [shadow] queue_size: 10000)")
    parser.add_argument("--max-inflight", type=int, default=128, metavar="N",
                        help="mirrors a worker sends at once at most (default 128)")
    parser.add_argument("--drain", type=float, metavar="SECONDS",
                        help="seconds the proxy waits at exit for the mirrors in flight to "
                             "finish; what is still held then is counted abandoned "
                             "(default [shadow] drain_s: 15)")
    parser.add_argument("--no-idle-workers", dest="idle_workers", action="store_false",
                        default=None,
                        help="run the mirror workers outside Linux's SCHED_IDLE class: on a "
                             "machine whose CPU is never idle, idle-class workers fall behind "
                             "and mirrors are dropped (counted); outside it they compete, "
                             "niced, with production for CPU")
    parser.add_argument("--worker-nice", type=int, metavar="N",
                        help="CPU niceness added to the workers, 0 to 19 (default 10)")
    parser.add_argument("--certs", action="append", default=[], metavar="[DOMAIN=]PEM",
                        help="serve TLS to clients with this PEM (certificate chain and key; "
                             "mitmproxy's certs option); repeatable")
    parser.add_argument("--ca-bundle", metavar="PEM",
                        help="CA bundle that verifies the primary, candidate and secondary "
                             "(default: the system's CAs)")
    parser.add_argument("--insecure", action="store_true",
                        help="do not verify upstream TLS certificates (test setups only)")
    parser.add_argument("--metrics", metavar="HOST:PORT",
                        help="serve Prometheus metrics at http://HOST:PORT/metrics, a listener "
                             "of its own (default: off)")
    parser.add_argument("--admin", metavar="HOST:PORT",
                        help="cutover: serve the admin endpoint `parity cutover` talks to on a "
                             "listener of its own (bearer token required); moved users are "
                             "answered by the candidate (default: off, plain shadow mode)")
    parser.add_argument("--admin-token-file", metavar="FILE",
                        help="the admin endpoint's bearer token (default: PARITY_ADMIN_TOKEN)")
    parser.add_argument("--cutover-state", metavar="FILE",
                        help="the cutover's state (shares, hash key, history), written "
                             "atomically on every change (default: parity-cutover.json beside "
                             "the recordings)")
    parser.add_argument("--cutover", metavar="FILE",
                        help="the cutover plan: a TOML file with a [cutover] table (identity "
                             "sources, early adopters, rollback thresholds) over parity.toml's")
    parser.add_argument("--mark-served", action="store_true",
                        help="add X-Parity-Served-By: primary|candidate to every answer "
                             "(tests and debugging)")
    parser.add_argument("--routes-from-primary", action=argparse.BooleanOptionalAction,
                        default=True,
                        help="read the primary's /openapi.json at start (2 s at most, never "
                             "fatal): log the routes the route table does not know and save "
                             "them beside the recordings for the report (default: on)")
    return parser


def _url(option: str, value: str | None) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UserError(f"{option} {value!r}: expected an http(s) URL such as http://host:8000")
    try:
        parts.port  # noqa: B018 - raises for a port out of range
    except ValueError:
        raise UserError(f"{option} {value!r}: the port is not valid") from None
    return value.rstrip("/")


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"--listen {value!r}: expected HOST:PORT, e.g. 127.0.0.1:8080")
    return host.strip("[]") or "127.0.0.1", int(port)


def _file(option: str, value: str) -> str:
    path = value.partition("=")[2] if option == "--certs" and "=" in value else value
    if not os.path.isfile(path):
        raise UserError(f"{option} {value!r}: no such file")
    return value


def _positive(option: str, value: float | None, *, high: float | None = None) -> None:
    if value is not None and (value <= 0 or (high is not None and value > high)):
        raise UserError(f"{option} must be {'between 0 and ' + str(high) if high else 'positive'}"
                        f", got {value}")


def _cutover_options(args: argparse.Namespace, port: int, primary: str) -> dict[str, object]:
    """The addon's cutover options (none without --admin); UserError for a bad address, the
    public port, or no token."""
    if not args.admin:
        for option, value in (("--admin-token-file", args.admin_token_file),
                              ("--cutover", args.cutover),
                              ("--cutover-state", args.cutover_state),
                              ("--mark-served", args.mark_served)):
            if value:
                raise UserError(f"{option} needs --admin HOST:PORT (the cutover)")
        return {}
    from harness.cutover.control import read_admin_token
    from harness.metrics.shadow import parse_listen

    try:
        _host, admin_port = parse_listen(args.admin, "--admin")
        read_admin_token(args.admin_token_file)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if admin_port == port:
        raise UserError(f"--admin {args.admin!r}: must not be the proxied port ({port}): the "
                        "admin endpoint is never on the public listener")
    if args.cutover:
        from harness.config import load_config, load_cutover_plan
        from harness.errors import ConfigError

        try:
            load_cutover_plan(args.cutover, load_config(args.config).cutover)
        except ConfigError as exc:
            raise UserError(f"--cutover: {exc}") from None
    return {"parity_admin": args.admin, "parity_admin_token_file": args.admin_token_file or "",
            "parity_cutover_plan": args.cutover or "",
            "parity_cutover_state": args.cutover_state or "",
            "parity_mark_served": args.mark_served, "parity_primary": primary}


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted."""
    from mitmproxy.exceptions import OptionsError

    from harness.config import load_config
    from harness.shadow.proxy import ProxySettings, serve

    config = load_config(args.config)
    primary = _url("--primary", args.primary)
    candidate = _url("--candidate", args.candidate)
    secondary = _url("--secondary", args.secondary)
    host, port = _listen(args.listen)
    sample = config.shadow.sample if args.sample is None else args.sample
    if not 0.0 <= sample <= 1.0:
        raise UserError(f"--sample must be between 0 and 1, got {sample}")
    timeout = config.shadow.timeout_s if args.timeout is None else args.timeout
    for option, value in (("--timeout", timeout), ("--workers", args.workers),
                          ("--queue-size", args.queue_size), ("--max-inflight", args.max_inflight)):
        _positive(option, value)
    drain = config.shadow.drain_s if args.drain is None else args.drain
    if drain < 0:
        raise UserError(f"--drain must be 0 or more, got {drain}")
    if args.worker_nice is not None and not 0 <= args.worker_nice <= 19:
        raise UserError(f"--worker-nice must be between 0 and 19, got {args.worker_nice}")
    certs = tuple(_file("--certs", value) for value in args.certs)
    if args.metrics:
        from harness.metrics.shadow import parse_listen

        try:
            metrics = parse_listen(args.metrics)
        except ValueError as exc:
            raise UserError(str(exc)) from None
        if metrics[1] == port:
            raise UserError(f"--metrics {args.metrics!r}: must not be the proxied port ({port})")
    ca_bundle = _file("--ca-bundle", args.ca_bundle) if args.ca_bundle else None
    cutover = _cutover_options(args, port, primary or "")
    # Given only when asked for: the addon's options hold the defaults.
    priority = {option: value for option, value in (("parity_worker_idle", args.idle_workers),
                                                    ("parity_worker_nice", args.worker_nice))
                if value is not None}
    settings = ProxySettings(
        primary=primary or "",
        listen_host=host,
        listen_port=port,
        certs=certs,
        ca_bundle=ca_bundle,
        insecure=args.insecure,
        addon_options={
            "parity_candidate": candidate,
            "parity_secondary": secondary or "",
            "parity_config": args.config or "",
            "parity_recordings": args.recordings,
            "parity_sample": str(sample),
            "parity_timeout": str(timeout),
            "parity_workers": args.workers or config.shadow.workers,
            "parity_queue_size": args.queue_size or config.shadow.queue_size,
            "parity_max_inflight": args.max_inflight,
            "parity_drain": str(drain),
            "parity_insecure": args.insecure,
            "parity_ca_bundle": ca_bundle or "",
            "parity_metrics": args.metrics or "",
            **priority,
            **cutover,
        },
    )
    if args.routes_from_primary:
        from harness.routes_openapi import announce

        announce(primary or "", config.routes, args.recordings)
    print(f"parity shadow: listening on {host}:{port}, primary {primary}, candidate {candidate}"
          + (f", secondary {secondary}" if secondary else "")
          + f", recordings in {args.recordings}", flush=True)
    try:
        asyncio.run(serve(settings))
    except OptionsError as exc:
        raise UserError(str(exc)) from None
    return 0
