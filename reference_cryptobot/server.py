"""The reference Cryptobot process: every service in one FastAPI app, served by uvicorn.

    python -m reference_cryptobot --flavor docker|native --port PORT [--host 127.0.0.1]
        [--drift NAME[,NAME...]] [--data-dir DIR] [--seed N] [--[no-]dry-run] [--log-level warning]
        [--control-token T]   (PUT /_reference/drifts switches drifts at runtime: control.py)

`parity cryptobot ...` runs the same `main` with the same options.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from reference_cryptobot import auth, backtest, control, debug, market, paper, strategy, trade
from reference_cryptobot.drifts import UnknownDriftError, describe, parse_drifts
from reference_cryptobot.noise import NoiseHeaders
from reference_cryptobot.settings import FLAVORS, Settings

LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


def create_app(settings: Settings, control_token: str | None = None) -> FastAPI:
    """The app with every service, its state (sqlite files in the settings' data dir, or in a
    temporary one removed at shutdown) and the noise headers every real copy shows; with
    `control_token`, `PUT /_reference/drifts` switches drifts at runtime."""
    owned = settings.data_dir is None
    data_dir = Path(tempfile.mkdtemp(prefix="reference-cryptobot-")) if owned \
        else settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await app.state.backtests.close()
            app.state.strategies.close()
            app.state.orders.close()
            if owned:
                shutil.rmtree(data_dir, ignore_errors=True)

    app = FastAPI(title="Reference Cryptobot", version="1.0.0", lifespan=lifespan)
    app.state.settings = settings
    app.add_middleware(NoiseHeaders, flavor=settings.flavor)

    @app.get("/health", tags=["health"])
    def health() -> dict[str, str]:
        """Liveness; the flavour is in the `x-cryptobot-flavor` header, not the body."""
        return {"status": "ok"}

    app.include_router(market.router)
    backtest.install(app, settings)
    strategy.install(app, settings, data_dir)
    auth.install(app, settings)
    trade.install(app, settings, data_dir)
    paper.install(app)
    debug.install(app)
    if control_token:
        control.install(app, control_token)
    return app


def build_parser(prog: str = "reference_cryptobot") -> argparse.ArgumentParser:
    """The command line of `python -m reference_cryptobot` (and `parity cryptobot`)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Run the reference Cryptobot: data, backtest, strategy, auth, trade and MCP "
                    "paper trading in one process.",
    )
    parser.add_argument("--flavor", choices=FLAVORS, default="docker",
                        help="docker (the primary and secondary) or native (the candidate)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on")
    parser.add_argument("--drift", default="", metavar="NAME[,NAME...]",
                        help=f"migration drifts to switch on: {describe()}")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="where the sqlite files go (default: a temporary directory)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the synthetic market data")
    parser.add_argument("--dry-run", action=argparse.BooleanOptionalAction, default=None,
                        help="the trade service's dry-run switch at start (default: "
                             "CRYPTOBOT_DRY_RUN, else on for native, off for docker)")
    parser.add_argument("--log-level", choices=LOG_LEVELS, default="warning",
                        help="uvicorn's log level")
    parser.add_argument("--control-token", metavar="TOKEN", default=None,
                        help="enable PUT /_reference/drifts ({\"drifts\": [...]}, header "
                             "Authorization: Bearer TOKEN) to switch drifts while running; "
                             "absent without it")
    return parser


def main(argv: Sequence[str] | None = None, *, prog: str = "reference_cryptobot") -> int:
    """Serve until interrupted (SIGINT/SIGTERM). Exit status 2 on bad options, e.g. an unknown
    drift; 1 if the server cannot start; 0 after `--help`. `prog` names the command in messages."""
    import uvicorn

    parser = build_parser(prog)
    try:
        args = parser.parse_args(None if argv is None else list(argv))
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 2
    try:
        drifts = parse_drifts(args.drift)
    except UnknownDriftError as exc:
        parser.print_usage(sys.stderr)
        print(f"{parser.prog}: error: --drift: {exc}", file=sys.stderr)
        return 2
    if not 0 < args.port < 65536:
        print(f"{parser.prog}: error: --port must be in 1..65535, not {args.port}",
              file=sys.stderr)
        return 2
    settings = Settings(flavor=args.flavor, drifts=drifts, seed=args.seed,
                        data_dir=args.data_dir,
                        **({} if args.dry_run is None else {"dry_run": args.dry_run}))
    config = uvicorn.Config(create_app(settings, args.control_token), host=args.host,
                            port=args.port,
                            log_level=args.log_level, access_log=False,
                            timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    try:
        server.run()
    except SystemExit as exit_:  # uvicorn exits when it cannot bind
        return exit_.code if isinstance(exit_.code, int) else 1
    return 0 if server.started else 1
