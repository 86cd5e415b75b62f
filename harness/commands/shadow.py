"""`parity shadow`: a reverse proxy in front of production (the primary) that mirrors every
request, off the hot path, to the candidate (and a secondary copy), then judges and records the
exchanges. Ctrl-C or SIGTERM flushes the recordings and stops the workers."""

from __future__ import annotations

import argparse
import asyncio
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
                        help="the native environment mirrors go to")
    parser.add_argument("--secondary", metavar="URL",
                        help="a second Docker copy, to learn what is noise")
    parser.add_argument("--listen", default="127.0.0.1:8080", metavar="HOST:PORT",
                        help="where clients connect (default 127.0.0.1:8080)")
    parser.add_argument("--config", metavar="FILE", help="parity.toml (routes, gates, shadow)")
    parser.add_argument("--recordings", default="recordings", metavar="DIR",
                        help="where exchanges are recorded (default recordings/)")
    parser.add_argument("--sample", type=float, metavar="RATE",
                        help="share of requests mirrored, 0 to 1 (default from parity.toml: 1)")
    parser.add_argument("--timeout", type=float, metavar="S",
                        help="per-mirror timeout in seconds (default from parity.toml: 5)")
    parser.add_argument("--workers", type=int, metavar="N", help="mirror worker processes")
    parser.add_argument("--queue-size", type=int, metavar="N",
                        help="exchanges waiting for a worker at most; beyond, mirrors are dropped")
    parser.add_argument("--certs", action="append", metavar="[DOMAIN=]PEM",
                        help="serve TLS to clients with this certificate+key PEM (mitmproxy's "
                             "certs option); repeatable")
    parser.add_argument("--ca-bundle", metavar="PEM",
                        help="CA bundle to verify candidate and secondary certificates")
    parser.add_argument("--insecure", action="store_true",
                        help="do not verify upstream TLS certificates (test setups only)")
    return parser


def _url(option: str, value: str | None) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UserError(f"{option} {value!r}: expected an http(s) URL such as http://host:8000")
    return value.rstrip("/")


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"--listen {value!r}: expected HOST:PORT, e.g. 127.0.0.1:8080")
    return host or "127.0.0.1", int(port)


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted."""
    from harness.config import load_config
    from harness.shadow.proxy import serve

    config = load_config(args.config)
    primary = _url("--primary", args.primary)
    candidate = _url("--candidate", args.candidate)
    secondary = _url("--secondary", args.secondary)
    host, port = _listen(args.listen)
    sample = config.shadow.sample if args.sample is None else args.sample
    if not 0.0 <= sample <= 1.0:
        raise UserError("--sample must be between 0 and 1")
    timeout = config.shadow.timeout_s if args.timeout is None else args.timeout
    if timeout <= 0:
        raise UserError("--timeout must be positive")
    settings = {
        "parity_candidate": candidate,
        "parity_secondary": secondary or "",
        "parity_config": args.config or "",
        "parity_recordings": args.recordings,
        "parity_sample": str(sample),
        "parity_timeout": str(timeout),
        "parity_workers": args.workers or config.shadow.workers,
        "parity_queue_size": args.queue_size or config.shadow.queue_size,
        "parity_insecure": args.insecure,
        "parity_ca_bundle": args.ca_bundle or "",
    }
    print(f"parity shadow: listening on {host}:{port}, primary {primary}, candidate {candidate}"
          + (f", secondary {secondary}" if secondary else ""), flush=True)
    asyncio.run(serve(settings, host, port, primary, args.certs))
    return 0
