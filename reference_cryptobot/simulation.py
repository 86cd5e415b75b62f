"""The backtest computation: an SMA-crossover strategy with fees over the data service's closes,
its equity curve, trades and performance metrics. No I/O; the service is in backtest.py.

Long only: buy all-in at the close of the candle where the fast SMA crosses above the slow one,
sell at the close where it crosses below, and close an open position at the end of the period.
Fees are charged on the notional of every fill.

Drifts: `fee-rounding` rounds each fee to cents (Decimal ROUND_HALF_UP); `float-order` values the
position in the equity curve as invested × (close / entry price) instead of units × close, and
sums the volatilities exactly (math.fsum) instead of pairwise: the same quantities evaluated in
another order, a few ulps apart (~1e-16 relative, never near 1e-12; no error accumulates).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import numpy as np
from pydantic import BaseModel, Field, ValidationError, model_validator

from reference_cryptobot.clock import as_utc, iso
from reference_cryptobot.market import Timeframe, closes, is_symbol, normalise_symbol
from reference_cryptobot.settings import Settings

PERIODS_PER_YEAR = {"1m": 525_600, "5m": 105_120, "15m": 35_040, "1h": 8_760, "4h": 2_190,
                    "1d": 365}
STRATEGIES = ("sma_crossover", "sma", "ma_crossover", "moving_average_crossover")
MAX_CANDLES = 250_000


class BacktestRequest(BaseModel):
    """BacktestRequest of the backtest service's spec, plus `exchange` and `initial_capital`."""

    strategy: str = Field(min_length=1)
    parameters: dict[str, Any] = Field(default_factory=dict)
    symbol: str
    exchange: str = "binance"
    timeframe: Timeframe
    start_date: datetime
    end_date: datetime
    initial_capital: float = Field(default=10_000.0, gt=0, le=1e12, allow_inf_nan=False)

    @model_validator(mode="after")
    def _check(self) -> BacktestRequest:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {self.strategy!r} (known: {', '.join(STRATEGIES)})")
        if not is_symbol(normalise_symbol(self.symbol)):
            raise ValueError("symbol must name a market: BTCUSDT, BTC-USDT or BTC/USDT")
        if as_utc(self.end_date) <= as_utc(self.start_date):
            raise ValueError("end_date must be after start_date")
        return self


class SmaParameters(BaseModel):
    """Parameters of the SMA crossover (periods in candles, fee as a fraction of notional)."""

    fast: int = Field(default=10, ge=1, le=10_000)
    slow: int = Field(default=30, ge=1, le=10_000)
    fee: float = Field(default=0.001, ge=0, lt=1, allow_inf_nan=False)


def sma_parameters(parameters: dict[str, Any]) -> SmaParameters:
    """Validated SMA parameters; pydantic's ValidationError names the bad one."""
    return SmaParameters.model_validate(parameters)


def parameter_errors(parameters: dict[str, Any]) -> list[dict[str, Any]]:
    """FastAPI-shaped errors (loc under body.parameters) for bad SMA parameters, or []."""
    try:
        sma_parameters(parameters)
    except ValidationError as exc:
        return [{**error, "loc": ("body", "parameters", *error["loc"])}
                for error in exc.errors(include_url=False)]
    return []


def _fee_function(settings: Settings) -> Callable[[float, float], float]:
    if settings.has("fee-rounding"):
        def cents(notional: float, rate: float) -> float:
            fee = Decimal(repr(notional)) * Decimal(repr(rate))
            return float(fee.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))
        return cents
    return lambda notional, rate: notional * rate


def _sma(close: np.ndarray, window: int) -> np.ndarray:
    averages = np.full(len(close), np.nan)
    if window <= len(close):
        total = np.concatenate(([0.0], np.cumsum(close)))
        averages[window - 1:] = (total[window:] - total[:-window]) / window
    return averages


def _crossings(close: np.ndarray, fast: int, slow: int) -> list[tuple[int, bool]]:
    """(index, up) for every candle where the fast SMA crosses the slow one."""
    spread = _sma(close, fast) - _sma(close, slow)
    valid = ~np.isnan(spread)
    above = spread > 0
    below = spread < 0
    prev_valid = np.concatenate(([False], valid[:-1]))
    up = valid & prev_valid & above & ~np.concatenate(([False], above[:-1]))
    down = valid & prev_valid & below & ~np.concatenate(([False], below[:-1]))
    events = [(int(i), True) for i in np.flatnonzero(up)]
    events += [(int(i), False) for i in np.flatnonzero(down)]
    return sorted(events)


def simulate(settings: Settings, times: list[datetime], close: np.ndarray, symbol: str,
             params: SmaParameters, initial: float
             ) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """(equity, equity curve, trades) of the long-only SMA crossover. The equity (units × close
    while long) feeds the metrics; the curve is what the service answers: the same equity, or on
    a `float-order` copy the position valued as invested × (close / entry price)."""
    fee_of = _fee_function(settings)
    equity = np.empty(len(close))
    curve = np.empty(len(close))
    trades: list[dict[str, Any]] = []
    cash, settled = float(initial), 0  # equity[:settled] and curve[:settled] are filled in
    entry: dict[str, Any] | None = None

    def hold_until(i: int) -> None:
        assert entry is not None
        held = close[settled:i]
        equity[settled:i] = entry["amount"] * held
        curve[settled:i] = (entry["invested"] * (held / entry["price"])
                            if settings.has("float-order") else equity[settled:i])

    def exit_at(i: int) -> None:
        nonlocal cash, settled, entry
        assert entry is not None
        hold_until(i)
        price = float(close[i])
        proceeds = entry["amount"] * price
        fee = fee_of(proceeds, params.fee)
        cash = proceeds - fee
        equity[i] = curve[i] = cash
        trades.append({
            "id": str(uuid.uuid4()),
            "symbol": symbol,
            "side": "long",
            "entry_time": iso(times[entry["index"]]),
            "exit_time": iso(times[i]),
            "entry_price": entry["price"],
            "exit_price": price,
            "amount": entry["amount"],
            "fee": entry["fee"] + fee,
            "pnl": cash - entry["cash"],
        })
        settled, entry = i + 1, None

    for i, up in _crossings(close, params.fast, params.slow):
        if up and entry is None:
            equity[settled:i] = curve[settled:i] = cash
            price = float(close[i])
            fee = fee_of(cash, params.fee)
            entry = {"index": i, "price": price, "fee": fee, "cash": cash,
                     "invested": cash - fee, "amount": (cash - fee) / price}
            cash, settled = 0.0, i
        elif not up and entry is not None:
            exit_at(i)
    if entry is not None:
        exit_at(len(close) - 1)
    equity[settled:] = curve[settled:] = cash
    return equity, curve, trades


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def metrics(settings: Settings, equity: np.ndarray, trades: list[dict[str, Any]],
            initial: float, timeframe: str) -> dict[str, Any]:
    """Performance metrics of one run (PerformanceMetrics of the spec, plus `total_pnl`);
    values that are not finite numbers are null."""
    periods = PERIODS_PER_YEAR[timeframe]
    values = np.concatenate(([initial], equity))
    with np.errstate(all="ignore"):
        returns = np.diff(values) / values[:-1]
        mean = float(np.mean(returns)) if len(returns) else 0.0
        std, down = _volatilities(settings, returns, mean)
        drawdown = float(np.max(1.0 - values / np.maximum.accumulate(values)))
    final = float(values[-1])
    growth = math.log(final / initial) * periods / max(len(returns), 1) if final > 0 else None
    annual = math.expm1(growth) if growth is not None and growth < 700 else None
    pnls = [t["pnl"] for t in trades]
    wins = [p for p in pnls if p > 0]
    losses = [p for p in pnls if p <= 0]
    found = {
        "profit": final - initial,
        "profit_pct": (final - initial) / initial * 100.0,
        "max_drawdown": drawdown,
        "sharpe_ratio": mean / std * math.sqrt(periods) if std > 0 else 0.0,
        "sortino_ratio": mean / down * math.sqrt(periods) if down > 0 else 0.0,
        "calmar_ratio": annual / drawdown if annual is not None and drawdown > 0 else None,
        "win_rate": len(wins) / len(pnls) if pnls else 0.0,
        "total_trades": len(trades),
        "total_pnl": sum(pnls),
        "profit_factor": sum(wins) / -sum(losses) if sum(losses) < 0 else None,
        "volatility": std * math.sqrt(periods),
        "downside_volatility": down * math.sqrt(periods),
        "annual_return": annual,
        "avg_win": sum(wins) / len(wins) if wins else None,
        "avg_loss": sum(losses) / len(losses) if losses else None,
        "expectancy": sum(pnls) / len(pnls) if pnls else None,
    }
    return {name: _finite(value) if isinstance(value, float) else value
            for name, value in found.items()}


def _volatilities(settings: Settings, returns: np.ndarray, mean: float) -> tuple[float, float]:
    """(standard deviation, downside deviation) of per-candle returns."""
    count = len(returns)
    downside = np.minimum(returns, 0.0)
    if settings.has("float-order"):  # exact sums instead of numpy's pairwise ones
        std = math.sqrt(math.fsum((returns - mean) ** 2) / (count - 1)) if count > 1 else 0.0
        return std, math.sqrt(math.fsum(downside ** 2) / count) if count else 0.0
    std = float(np.std(returns, ddof=1)) if count > 1 else 0.0
    return std, float(np.sqrt(np.mean(downside ** 2))) if count else 0.0


def run_backtest(settings: Settings, req: BacktestRequest) -> dict[str, Any]:
    """Run one backtest: `{metrics, equity_curve, trades, final_equity, ...}` (the `results` of a
    BacktestResult). ValueError when the period holds too many candles."""
    symbol = normalise_symbol(req.symbol)
    timeframe = req.timeframe.value
    start, end = as_utc(req.start_date), as_utc(req.end_date)
    times, close = closes(settings, req.exchange.lower(), symbol, timeframe, start, end)
    if len(close) > MAX_CANDLES:
        raise ValueError(f"{len(close)} candles in the period; at most {MAX_CANDLES}")
    params = sma_parameters(req.parameters)
    initial = float(req.initial_capital)
    equity, curve, trades = simulate(settings, times, close, req.symbol, params, initial)
    return {
        "symbol": req.symbol,  # as sent: the real service keeps the request's symbol
        "exchange": req.exchange.lower(),
        "timeframe": timeframe,
        "start_date": iso(start),
        "end_date": iso(end),
        "initial_capital": initial,
        "final_equity": float(equity[-1]) if len(equity) else initial,
        "candles": len(close),
        "metrics": metrics(settings, equity, trades, initial, timeframe),
        "equity_curve": [{"timestamp": iso(t), "equity": e}
                         for t, e in zip(times, curve.tolist(), strict=True)],
        "trades": trades,
    }
