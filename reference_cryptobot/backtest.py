"""Backtest service: a real SMA-crossover backtest with fees over the data service's candles, run in
the background after `start`, plus a deterministic grid optimiser."""

from __future__ import annotations

import asyncio
import itertools
import math
import uuid
from datetime import UTC, datetime
from decimal import ROUND_UP, Decimal
from typing import Any

import numpy as np
from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field

from reference_cryptobot.market import STEP, candle_range, first_time, normalise_symbol, series
from reference_cryptobot.settings import Settings

PERIODS_PER_YEAR = {"1m": 525_600, "5m": 105_120, "15m": 35_040, "1h": 8_760, "4h": 2_190,
                    "1d": 365}


class BacktestRequest(BaseModel):
    """BacktestRequest as in the backtest service's spec."""

    strategy: str
    parameters: dict[str, Any] = Field(default_factory=dict)
    symbol: str
    exchange: str = "binance"
    timeframe: str
    start_date: datetime
    end_date: datetime
    initial_capital: float = Field(default=10_000.0, gt=0)


class ParameterRange(BaseModel):
    """One optimised parameter: explicit values."""

    name: str
    values: list[float]


class OptimizationRequest(BaseModel):
    """OptimizationRequest as in the spec."""

    strategy_name: str
    parameter_ranges: list[ParameterRange]
    symbol: str
    exchange: str = "binance"
    timeframe: str
    start_date: datetime
    end_date: datetime
    initial_capital: float = Field(default=10_000.0, gt=0)


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _fee(notional: float, rate: float, settings: Settings) -> float:
    fee = notional * rate
    if settings.has("fee-rounding"):
        return float(Decimal(repr(fee)).quantize(Decimal("0.01"), rounding=ROUND_UP))
    return fee


def run_backtest(settings: Settings, req: BacktestRequest) -> dict[str, Any]:
    """Simulate the SMA crossover and compute metrics, equity curve and trades."""
    timeframe = req.timeframe if req.timeframe in STEP else "1h"
    symbol = normalise_symbol(req.symbol)
    start = req.start_date if req.start_date.tzinfo else req.start_date.replace(tzinfo=UTC)
    end = req.end_date if req.end_date.tzinfo else req.end_date.replace(tzinfo=UTC)
    indexes = candle_range(timeframe, start, end, 100_000)
    close = series(settings.seed, req.exchange.lower(), symbol, timeframe)[3][
        indexes.start:indexes.stop]
    times = [first_time(timeframe) + STEP[timeframe] * i for i in indexes]
    fast = max(int(req.parameters.get("fast", 10)), 1)
    slow = max(int(req.parameters.get("slow", 30)), 1)
    rate = float(req.parameters.get("fee", 0.001))

    cash, units = float(req.initial_capital), 0.0
    equity = np.empty(len(close))
    trades: list[dict[str, Any]] = []
    entry: dict[str, Any] | None = None
    csum = np.concatenate(([0.0], np.cumsum(close)))
    for i, price in enumerate(close):
        price = float(price)
        if i >= max(fast, slow):
            fast_ma = (csum[i + 1] - csum[i + 1 - fast]) / fast
            slow_ma = (csum[i + 1] - csum[i + 1 - slow]) / slow
            if units == 0.0 and fast_ma > slow_ma and fast < slow:
                fee = _fee(cash, rate, settings)
                units, cash = (cash - fee) / price, 0.0
                entry = {"time": times[i], "price": price, "fee": fee, "amount": units,
                         "cost": units * price + fee}
            elif units > 0.0 and fast_ma < slow_ma and entry is not None:
                proceeds = units * price
                fee = _fee(proceeds, rate, settings)
                cash, units = proceeds - fee, 0.0
                trades.append(_trade(symbol, entry, times[i], price, fee, cash))
                entry = None
        equity[i] = cash + units * price
    return _results(settings, req, symbol, timeframe, times, equity, trades)


def _trade(symbol: str, entry: dict[str, Any], exit_time: datetime, price: float, fee: float,
           cash: float) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "symbol": symbol,
        "side": "long",
        "entry_time": _iso(entry["time"]),
        "exit_time": _iso(exit_time),
        "entry_price": round(entry["price"], 8),
        "exit_price": round(price, 8),
        "amount": round(entry["amount"], 8),
        "fee": entry["fee"] + fee,
        "pnl": cash - entry["cost"],
    }


def _equity_path(settings: Settings, initial: float, equity: np.ndarray) -> np.ndarray:
    """The equity curve from per-candle returns; the float-order drift sums in another order
    (log space), which changes only the last bits."""
    if len(equity) == 0:
        return equity
    previous = np.concatenate(([initial], equity[:-1]))
    returns = (equity - previous) / previous
    if settings.has("float-order"):
        return initial * np.exp(np.cumsum(np.log1p(returns)))
    return initial * np.cumprod(1.0 + returns)


def _results(settings: Settings, req: BacktestRequest, symbol: str, timeframe: str,
             times: list[datetime], raw_equity: np.ndarray, trades: list[dict[str, Any]]
             ) -> dict[str, Any]:
    initial = float(req.initial_capital)
    equity = _equity_path(settings, initial, raw_equity)
    returns = np.diff(equity) / equity[:-1] if len(equity) > 1 else np.array([])
    periods = PERIODS_PER_YEAR[timeframe]
    std = float(np.std(returns)) if len(returns) > 1 else 0.0
    downside = returns[returns < 0]
    down_std = float(np.std(downside)) if len(downside) > 1 else 0.0
    mean = float(np.mean(returns)) if len(returns) else 0.0
    peak = np.maximum.accumulate(equity) if len(equity) else equity
    drawdown = float(np.max((peak - equity) / peak)) if len(equity) else 0.0
    final = float(equity[-1]) if len(equity) else initial
    years = max(len(equity) / periods, 1e-9)
    annual = (final / initial) ** (1 / years) - 1 if final > 0 else -1.0
    pnls = [t["pnl"] for t in trades]
    metrics = {
        "profit": final - initial,
        "profit_pct": (final - initial) / initial * 100,
        "max_drawdown": drawdown,
        "sharpe_ratio": mean / std * math.sqrt(periods) if std else 0.0,
        "sortino_ratio": mean / down_std * math.sqrt(periods) if down_std else 0.0,
        "calmar_ratio": annual / drawdown if drawdown else 0.0,
        "win_rate": sum(1 for p in pnls if p > 0) / len(pnls) if pnls else 0.0,
        "total_trades": len(trades),
        "total_pnl": math.fsum(pnls) if settings.has("float-order") else sum(pnls),
    }
    return {
        "strategy": req.strategy,
        "parameters": req.parameters,
        "symbol": symbol,
        "exchange": req.exchange,
        "timeframe": timeframe,
        "start_date": _iso(req.start_date),
        "end_date": _iso(req.end_date),
        "initial_capital": initial,
        "final_equity": final,
        "metrics": metrics,
        "equity_curve": [{"timestamp": _iso(t), "equity": float(e)}
                         for t, e in zip(times, equity, strict=True)],
        "trades": trades,
    }


router = APIRouter(tags=["backtest"])


def _runs(request: Request) -> dict[str, dict[str, Any]]:
    return request.app.state.backtests


async def _complete(app, backtest_id: str, req: BacktestRequest) -> None:
    run = app.state.backtests[backtest_id]
    await asyncio.sleep(0.05)
    run["status"] = "running"
    try:
        result = await asyncio.to_thread(run_backtest, app.state.settings, req)
    except Exception as exc:  # a failed run is reported, as the real service does
        run.update(status="failed", error=str(exc), completed_at=_now())
        return
    run.update(status="completed", result=result, completed_at=_now())


@router.post("/api/backtest/start", status_code=202)
async def start_backtest(request: Request, body: BacktestRequest) -> dict[str, Any]:
    """Queue a backtest; it completes shortly after in the background."""
    if body.end_date <= body.start_date:
        raise HTTPException(status_code=422, detail="end_date must be after start_date")
    backtest_id = str(uuid.uuid4())
    _runs(request)[backtest_id] = {"status": "pending", "created_at": _now(), "request": body}
    request.app.state.tasks.add(
        task := asyncio.create_task(_complete(request.app, backtest_id, body))
    )
    task.add_done_callback(request.app.state.tasks.discard)
    return {"id": backtest_id, "status": "pending", "strategy": body.strategy,
            "symbol": normalise_symbol(body.symbol), "created_at": _runs(request)[backtest_id][
                "created_at"]}


def _run(request: Request, backtest_id: str) -> dict[str, Any]:
    run = _runs(request).get(backtest_id)
    if run is None:
        raise HTTPException(status_code=404, detail=f"Backtest {backtest_id} not found")
    return run


@router.get("/api/backtest/status/{backtest_id}")
def backtest_status(request: Request, backtest_id: str) -> dict[str, Any]:
    """Where a backtest is."""
    run = _run(request, backtest_id)
    progress = {"pending": 0.0, "running": 0.5}.get(run["status"], 1.0)
    return {"id": backtest_id, "status": run["status"], "progress": progress,
            "created_at": run["created_at"], "error": run.get("error")}


def _completed(request: Request, backtest_id: str) -> dict[str, Any]:
    run = _run(request, backtest_id)
    if run["status"] != "completed":
        raise HTTPException(status_code=409, detail=f"Backtest {backtest_id} is {run['status']}")
    return run


@router.get("/api/backtest/results/{backtest_id}")
def backtest_results(request: Request, backtest_id: str) -> dict[str, Any]:
    """Metrics, equity curve and trades of a completed backtest."""
    run = _completed(request, backtest_id)
    return {"id": backtest_id, "status": "completed", "created_at": run["created_at"],
            "completed_at": run["completed_at"], **run["result"]}


@router.get("/api/backtest/performance/{backtest_id}")
def backtest_performance(request: Request, backtest_id: str) -> dict[str, Any]:
    """The performance summary of a completed backtest."""
    run = _completed(request, backtest_id)
    result = run["result"]
    return {"id": backtest_id, "metrics": result["metrics"],
            "final_equity": result["final_equity"],
            "initial_capital": result["initial_capital"]}


@router.post("/api/backtest/optimize")
async def optimize(request: Request, body: OptimizationRequest) -> dict[str, Any]:
    """Grid search over the parameter ranges, ranked by Sharpe ratio (deterministic)."""
    names = [r.name for r in body.parameter_ranges]
    grid = list(itertools.product(*(r.values for r in body.parameter_ranges)))[:50]
    settings: Settings = request.app.state.settings

    def evaluate() -> list[dict[str, Any]]:
        ranked = []
        for values in grid:
            params = {n: (int(v) if float(v).is_integer() else v)
                      for n, v in zip(names, values, strict=True)}
            req = BacktestRequest(strategy=body.strategy_name, parameters=params,
                                  symbol=body.symbol, exchange=body.exchange,
                                  timeframe=body.timeframe, start_date=body.start_date,
                                  end_date=body.end_date, initial_capital=body.initial_capital)
            ranked.append({"parameters": params,
                           "metrics": run_backtest(settings, req)["metrics"]})
        ranked.sort(key=lambda r: r["metrics"]["sharpe_ratio"], reverse=True)
        return ranked

    results = await asyncio.to_thread(evaluate)
    return {"optimization_id": str(uuid.uuid4()), "status": "completed",
            "best_parameters": results[0]["parameters"] if results else None,
            "results": results, "created_at": _now()}
