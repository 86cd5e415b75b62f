"""The reference Cryptobot process: every service in one FastAPI app, served by uvicorn.

    python -m reference_cryptobot --flavor docker|native --port PORT [--drift a,b] [--seed N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from fastapi import FastAPI, Request, Response

from reference_cryptobot import auth, backtest, market, strategy, trade
from reference_cryptobot.settings import DRIFTS, Settings


def create_app(settings: Settings) -> FastAPI:
    """The app with every service, its state and the noise every real copy shows."""
    app = FastAPI(title="reference-cryptobot", version="1.0")
    app.state.settings = settings
    app.state.backtests = {}
    app.state.tasks = set()
    app.state.api_keys = {}
    app.state.dry_run = False
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app.state.strategies = strategy.StrategyStore(str(settings.data_dir / "strategies.sqlite"))
    app.state.orders = trade.OrderBook(str(settings.data_dir / "orders.sqlite"))

    @app.middleware("http")
    async def noise_headers(request: Request, call_next):
        started = time.perf_counter()
        response: Response = await call_next(request)
        response.headers["x-request-id"] = str(uuid.uuid4())
        response.headers["x-process-time"] = f"{time.perf_counter() - started:.6f}"
        response.headers["x-cryptobot-flavor"] = settings.flavor
        return response

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    for module in (market, backtest, strategy, auth, trade):
        app.include_router(module.router)
    return app


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line of `python -m reference_cryptobot` (and `parity cryptobot`)."""
    drift_help = "; ".join(f"{name}: {doc}" for name, doc in DRIFTS.items())
    parser = argparse.ArgumentParser(
        prog="parity cryptobot",
        description="Run the reference Cryptobot (all services in one process).",
    )
    parser.add_argument("--flavor", choices=("docker", "native"), default="docker")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--drift", default="", metavar="NAME[,NAME...]",
                        help=f"migration drifts to switch on ({drift_help})")
    parser.add_argument("--data-dir", type=Path, help="where sqlite files go (default: a temp dir)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the synthetic market data")
    parser.add_argument("--log-level", default="warning")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until interrupted; exit 2 on an unknown drift."""
    import uvicorn

    args = parse_args(argv)
    drifts = frozenset(d.strip() for d in args.drift.split(",") if d.strip())
    unknown = sorted(drifts - set(DRIFTS))
    if unknown:
        print(f"parity cryptobot: error: unknown drift {unknown[0]!r} "
              f"(known: {', '.join(DRIFTS)})", file=sys.stderr)
        return 2
    if drifts and args.flavor == "docker":
        print("parity cryptobot: note: drifts on the docker flavour", file=sys.stderr)
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="reference-cryptobot-"))
    settings = Settings(flavor=args.flavor, drifts=drifts, seed=args.seed, data_dir=data_dir)
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level=args.log_level,
                access_log=False)
    return 0
