"""`parity replay`: the nightly shadow replay. Recorded requests go to the candidate again, are
judged like live shadow traffic, and each migration group's gate decides the exit code:
0 every gate holds, 1 a gate fails, 2 usage or configuration error."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import UserError
from harness.judge.gate import GroupGate, gate_groups
from harness.settings import ShadowSettings

if TYPE_CHECKING:
    from harness.config import Config
    from harness.model import Exchange
    from harness.replay.credentials import ServiceAccount


def add_parser(
    subparsers: argparse._SubParsersAction, name: str, summary: str
) -> argparse.ArgumentParser:
    """Register the subcommand."""
    parser = subparsers.add_parser(name, help=summary, description=__doc__)
    parser.add_argument("recordings", nargs="+", metavar="RECORDINGS",
                        help="recording segments or directories")
    parser.add_argument("--candidate", required=True, metavar="URL", help="the native environment")
    parser.add_argument("--primary", metavar="URL",
                        help="live primary, for routes whose answers age (candles, balances)")
    parser.add_argument("--secondary", metavar="URL",
                        help="live secondary Docker copy, for noise learning")
    parser.add_argument("--config", metavar="FILE", help="parity.toml (routes, gates)")
    parser.add_argument("--login", metavar="USER",
                        help="service account to log in with on each environment (else [replay] "
                             "username in parity.toml or PARITY_REPLAY_USERNAME); needed when the "
                             "recorded requests carry credentials. Its password comes from "
                             "--password-file, else PARITY_PASSWORD, else a prompt (never from "
                             "the command line)")
    parser.add_argument("--password-file", metavar="FILE",
                        help="file whose first line is the --login password (keep it owner-only)")
    parser.add_argument("--concurrency", type=int, default=32, metavar="N",
                        help="requests in flight at once (default 32)")
    parser.add_argument("--rate", type=float, metavar="R", help="at most R requests per second")
    parser.add_argument("--shard", metavar="K/N", help="replay only shard K of N (by session)")
    parser.add_argument("--timeout", type=float, default=ShadowSettings().timeout_s,
                        metavar="S", help="per-request timeout in seconds (default %(default)g)")
    parser.add_argument("--report", metavar="OUT.html", help="write the HTML diff report")
    parser.add_argument("--json", metavar="OUT.json", help="write the machine-readable summary")
    parser.add_argument("--save", metavar="DIR", help="also record the replayed exchanges in DIR")
    parser.add_argument("--no-progress", action="store_true", help="plain progress lines only")
    parser.add_argument("--metrics-file", metavar="PATH.prom",
                        help="write per-group results for node_exporter's textfile collector "
                             "(atomically)")
    return parser


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """`K/N` → (K, N) with 1 ≤ K ≤ N."""
    if not text:
        return None
    try:
        k, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise UserError(f"--shard {text!r}: expected K/N, e.g. 2/4") from None
    if not 1 <= k <= n:
        raise UserError(f"--shard {text!r}: K must be between 1 and N")
    return k, n


def run(args: argparse.Namespace) -> int:
    """Replay, judge, gate; print the per-group verdicts."""
    from harness.config import load_config
    from harness.replay.credentials import ServiceAccount, require_login, terminal_prompt
    from harness.store.reader import count_records, iter_records

    if args.concurrency < 1:
        raise UserError("--concurrency must be at least 1")
    if args.rate is not None and args.rate <= 0:
        raise UserError("--rate must be positive")
    for url in (args.candidate, args.primary, args.secondary):
        if url and not url.startswith(("http://", "https://")):
            raise UserError(f"{url!r} is not an http(s) URL")
    shard = parse_shard(args.shard)
    if args.metrics_file:
        from harness.metrics.replay import check_metrics_file

        try:
            check_metrics_file(args.metrics_file)
        except ValueError as exc:
            raise UserError(str(exc)) from None
    config = load_config(args.config)
    total = count_records(args.recordings)
    account = ServiceAccount.from_sources(args.login, config.replay,
                                          password_file=args.password_file,
                                          prompt=terminal_prompt)
    require_login(account, iter_records(args.recordings))
    # The judged exchanges go through the store (redacted) like every recording: into --save,
    # else a temporary directory; the gate and the report read them back from there.
    store = Path(args.save) if args.save else Path(tempfile.mkdtemp(prefix="parity-replay-"))
    try:
        return _replay_into(args, config, account, total, shard, store)
    finally:
        if not args.save:
            shutil.rmtree(store, ignore_errors=True)


def _replay_into(args: argparse.Namespace, config: Config, account: ServiceAccount | None,
                 total: int, shard: tuple[int, int] | None, store: Path) -> int:
    """Replay into the store at `store`, then gate, print and report from what it holds."""
    from harness.mirror.policy import breakers_beside
    from harness.mirror.transport import TransportSettings
    from harness.replay.progress import ReplayProgress
    from harness.replay.runner import ReplayTargets, replay_records
    from harness.routes_openapi import unknown_routes
    from harness.store.reader import iter_records
    from harness.store.writer import SegmentWriter

    progress = ReplayProgress(total, fancy=not args.no_progress and sys.stderr.isatty())
    unknown = unknown_routes(config, args.recordings)
    with SegmentWriter(store, prefix="replay") as writer:

        def on_exchange(exchange: Exchange) -> None:
            unknown.add_record(exchange.to_dict())
            writer.write(exchange)
            progress.advance(exchange)

        with progress:
            stats = replay_records(
                iter_records(args.recordings),
                config,
                ReplayTargets(args.candidate, args.primary, args.secondary),
                account=account,
                concurrency=args.concurrency,
                rate=args.rate,
                shard=shard,
                transport=TransportSettings(timeout_s=args.timeout,
                                            max_connections=args.concurrency),
                on_exchange=on_exchange,
                breakers=breakers_beside(args.recordings),
            )
        segments = list(writer.segments)
    gates = gate_groups(iter_records(segments), config.gates)
    failed = print_gates(gates)
    for line in unknown.lines():
        print(line)
    if args.metrics_file:
        from harness.metrics.replay import write_replay_metrics

        try:
            write_replay_metrics(args.metrics_file,
                                 {group: (g.result, g.tally) for group, g in gates.items()})
        except OSError as exc:
            raise UserError(f"--metrics-file {args.metrics_file!r}: {exc}") from None
        print(f"wrote {args.metrics_file}")
    print(f"replayed {stats.total} exchanges in {stats.rate and stats.total / stats.rate:.1f}s "
          f"({stats.rate:.0f}/s)")
    if args.report or args.json:
        from harness.report import build_report

        build_report(segments, args.report, json_out=args.json, config=config)
        for path in (args.report, args.json):
            if path:
                print(f"wrote {path}")
    return 1 if failed else 0


def print_gates(gates: Mapping[str, GroupGate]) -> bool:
    """Print one line per migration group; True when any gate failed."""
    failed = False
    for group, gate in gates.items():
        result, tally = gate.result, gate.tally
        failed |= not result.passed
        first = next(iter(result.reasons), "")
        print(f"{group:<10} {result.status.upper():<11} compared {tally.compared:>6}  "
              f"failing {tally.failing:>5}  {first}")
        rest = list(result.reasons[1:4] if not result.passed else ())
        skipped = tally.skipped_line()
        if skipped and skipped not in first and skipped not in rest:
            rest.append(skipped)  # what the policy kept from the candidate, even when ready
        for reason in rest:
            print(f"{'':<10} {reason}")
    return failed
