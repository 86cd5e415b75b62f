"""Data service: deterministic synthetic OHLCV candles (a seeded random walk on a fixed time grid,
so a candle has the same values whatever range is asked)."""

from __future__ import annotations

import zlib
from datetime import datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import Annotated

import numpy as np
from fastapi import APIRouter, HTTPException, Query, Request

from reference_cryptobot.settings import REFERENCE_END, Settings

HISTORY = 5000  # candles generated per series, ending at REFERENCE_END
BASE_PRICES = {"BTC": 67000.0, "ETH": 3500.0, "SOL": 160.0}


class Timeframe(StrEnum):
    """Candle timeframes the service knows."""

    M1 = "1m"
    M5 = "5m"
    M15 = "15m"
    H1 = "1h"
    H4 = "4h"
    D1 = "1d"


STEP = {
    "1m": timedelta(minutes=1), "5m": timedelta(minutes=5), "15m": timedelta(minutes=15),
    "1h": timedelta(hours=1), "4h": timedelta(hours=4), "1d": timedelta(days=1),
}


def normalise_symbol(symbol: str) -> str:
    """`BTC-USDT`, `BTC_USDT` or `BTC/USDT` → `BTC/USDT`."""
    return symbol.replace("-", "/").replace("_", "/").upper()


@lru_cache(maxsize=256)
def series(seed: int, exchange: str, symbol: str, timeframe: str) -> tuple[np.ndarray, ...]:
    """(open, high, low, close, volume) arrays of HISTORY candles ending at REFERENCE_END."""
    rng = np.random.default_rng(zlib.crc32(f"{seed}|{exchange}|{symbol}|{timeframe}".encode()))
    base = BASE_PRICES.get(symbol.split("/")[0], 100.0)
    steps = rng.normal(0.0, 0.004 * np.sqrt(STEP[timeframe] / timedelta(hours=1)), HISTORY)
    close = base * np.exp(np.cumsum(steps))
    open_ = np.concatenate(([base], close[:-1]))
    spread = np.abs(rng.normal(0.0, 0.002, HISTORY)) * close
    high = np.maximum(open_, close) + spread
    low = np.minimum(open_, close) - spread
    volume = rng.gamma(2.0, 50.0, HISTORY)
    return open_, high, low, close, volume


def first_time(timeframe: str) -> datetime:
    """Timestamp of the first generated candle."""
    return REFERENCE_END - STEP[timeframe] * (HISTORY - 1)


def candle_range(timeframe: str, start: datetime | None, end: datetime | None,
                 limit: int) -> range:
    """Indexes of the candles to answer with."""
    step = STEP[timeframe]
    origin = first_time(timeframe)

    def index_at(moment: datetime, *, up: bool) -> int:
        offset = (moment - origin) / step
        whole = int(np.ceil(offset)) if up else int(np.floor(offset))
        return min(max(whole, 0), HISTORY)

    if start is None and end is None:
        return range(max(HISTORY - limit, 0), HISTORY)
    if start is not None and end is None:
        first = index_at(start, up=True)
        return range(first, min(first + limit, HISTORY))
    last = index_at(end, up=False) + 1 if end is not None else HISTORY
    last = min(last, HISTORY)
    first = index_at(start, up=True) if start is not None else max(last - limit, 0)
    return range(first, min(last, first + limit))


def candles(settings: Settings, exchange: str, symbol: str, timeframe: str,
            start: datetime | None = None, end: datetime | None = None,
            limit: int = 100, *, shift: bool = True) -> list[dict]:
    """Candles as the data service answers them. `shift=False` gives the true timestamps
    (the backtest service reads the series directly, so the tz drift stays in the data service)."""
    open_, high, low, close, volume = series(settings.seed, exchange, symbol, timeframe)
    origin = first_time(timeframe)
    step = STEP[timeframe]
    offset = timedelta(hours=1) if shift and settings.has("tz-offset") else timedelta(0)
    return [
        {
            "timestamp": (origin + step * i + offset).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "open": round(float(open_[i]), 2),
            "high": round(float(high[i]), 2),
            "low": round(float(low[i]), 2),
            "close": round(float(close[i]), 2),
            "volume": round(float(volume[i]), 4),
            "exchange": exchange,
            "symbol": symbol,
            "timeframe": timeframe,
        }
        for i in candle_range(timeframe, start, end, limit)
    ]


router = APIRouter(tags=["data"])


@router.get("/api/v1/data/ohlcv/{exchange}/{symbol}/{timeframe}")
def get_ohlcv(
    request: Request,
    exchange: str,
    symbol: str,
    timeframe: Timeframe,
    start: Annotated[datetime | None, Query()] = None,
    end: Annotated[datetime | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict]:
    """OHLCV history of one market."""
    if start is not None and end is not None and start > end:
        raise HTTPException(status_code=422, detail="start must not be after end")
    for moment in (start, end):
        if moment is not None and moment.tzinfo is None:
            raise HTTPException(status_code=422, detail="dates need a timezone (e.g. Z)")
    settings: Settings = request.app.state.settings
    return candles(settings, exchange.lower(), normalise_symbol(symbol), timeframe.value,
                   start, end, limit)
