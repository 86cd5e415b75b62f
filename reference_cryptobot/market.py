"""Data service: deterministic synthetic OHLCV candles.

A series (seed, exchange, symbol, timeframe) is a random walk on the timeframe's grid, from EPOCH
to the fixed REFERENCE_END, built so that a candle depends on its grid index only, never on the
range asked: a coarse walk across blocks of BLOCK candles (with a volatility per block, so calm
and wild stretches alternate) and, inside each block, a Brownian bridge pinned to the coarse walk
at both ends. Any block is computed on its own (and cached); each series ends at the asset's
reference price.

    GET /api/v1/data/ohlcv/{exchange}/{symbol}/{timeframe}?start=&end=&limit=

`symbol` is `BTCUSDT`, `BTC-USDT`, `BTC_USDT` or `BTC%2FUSDT`, all one market (the real data
service strips `/` and `-` before asking the exchange); every candle carries the symbol as sent,
as the real one's do. Without start/end:
the `limit` latest candles before REFERENCE_END. The backtest service reads the same series
through `closes`, always unshifted (the `tz-offset` drift is a rendering fault of this service).
The `slow` drift delays each OHLCV answer by `drifts.SLOW_S`.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Query, Request, WebSocket
from fastapi.responses import JSONResponse

from reference_cryptobot.clock import as_utc, iso
from reference_cryptobot.drifts import SLOW_S
from reference_cryptobot.errors import invalid
from reference_cryptobot.settings import REFERENCE_END, Settings

EPOCH = datetime(2017, 1, 1, tzinfo=UTC)  # the first candle of every series
BLOCK = 512  # candles per independently generated block
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
HOURLY_VOLATILITY = 0.005  # standard deviation of one hour's log return
TZ_DRIFT = timedelta(hours=1)

# Reference prices in USD at REFERENCE_END; other assets get a stable made-up price.
USD_PRICES = {
    "BTC": 67_500.0, "ETH": 3_800.0, "SOL": 165.0, "BNB": 600.0, "XRP": 0.52, "ADA": 0.45,
    "DOGE": 0.16, "USDT": 1.0, "USDC": 1.0, "USD": 1.0, "EUR": 1.08,
}
HOURLY_NOTIONAL_USD = {"BTC": 60e6, "ETH": 25e6, "SOL": 8e6}
DEFAULT_HOURLY_NOTIONAL_USD = 2e6
SYMBOL = re.compile(r"^([A-Z0-9]{1,20})/([A-Z0-9]{1,20})$")
# Quote assets a concatenated symbol (`BTCUSDT`) is split at, longest match first.
QUOTES = ("FDUSD", "USDT", "USDC", "BUSD", "TUSD", "DAI", "USD", "EUR", "GBP", "TRY", "BTC",
          "ETH", "BNB")


class Timeframe(StrEnum):
    """Candle timeframes the data service knows."""

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
    """The market a symbol names: `BTC-USDT`, `btc_usdt`, `BTC/USDT` or `BTCUSDT` → `BTC/USDT`
    (a concatenated symbol is split at a known quote asset)."""
    market = symbol.strip().upper().replace("-", "/").replace("_", "/")
    if "/" not in market:
        quote = next((q for q in QUOTES if market.endswith(q) and len(market) > len(q)), None)
        if quote is not None:
            return f"{market[:-len(quote)]}/{quote}"
    return market


def is_symbol(symbol: str) -> bool:
    """Whether a normalised symbol has the `BASE/QUOTE` form."""
    return SYMBOL.match(symbol) is not None


def _rng(*parts: object) -> np.random.Generator:
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return np.random.default_rng(int.from_bytes(digest, "big"))


def usd_price(asset: str) -> float:
    """An asset's reference price in USD (stable made-up price for unknown assets)."""
    if asset in USD_PRICES:
        return USD_PRICES[asset]
    return float(10 ** _rng("usd", asset).uniform(-1.0, 3.0))


def anchor_price(symbol: str) -> float:
    """The price of `BASE/QUOTE` at REFERENCE_END, in QUOTE."""
    base, _, quote = symbol.partition("/")
    return usd_price(base) / usd_price(quote or "USDT")


def price_decimals(symbol: str) -> int:
    """Decimals a price of this market is quoted with (about six significant digits)."""
    return min(8, max(2, 5 - math.floor(math.log10(anchor_price(symbol)))))


def last_index(timeframe: str) -> int:
    """Grid index of the last candle (the one that closes at REFERENCE_END)."""
    return (REFERENCE_END - EPOCH) // STEP[timeframe] - 1


def open_time(timeframe: str, index: int) -> datetime:
    """When candle `index` of a timeframe opens."""
    return EPOCH + STEP[timeframe] * index


@dataclass(frozen=True, slots=True)
class Series:
    """One synthetic market series."""

    seed: int
    exchange: str
    symbol: str
    timeframe: str

    @property
    def sigma(self) -> float:
        """Standard deviation of one candle's log return."""
        return HOURLY_VOLATILITY * math.sqrt(STEP[self.timeframe] / timedelta(hours=1))


@lru_cache(maxsize=128)
def _coarse(series: Series) -> tuple[np.ndarray, np.ndarray]:
    """(walk, volatility): the log level at each block boundary and each block's vol factor."""
    blocks = last_index(series.timeframe) // BLOCK + 1
    rng = _rng(series.seed, series.exchange, series.symbol, series.timeframe, "coarse")
    vol = np.exp(rng.normal(0.0, 0.35, blocks))
    steps = rng.normal(0.0, 1.0, blocks) * series.sigma * math.sqrt(BLOCK) * vol
    return np.concatenate(([0.0], np.cumsum(steps))), vol


@lru_cache(maxsize=512)
def _block(series: Series, block: int) -> np.ndarray:
    """Rows: log open, log close, upper wick, lower wick, volume factor (unanchored)."""
    walk, vol = _coarse(series)
    rng = _rng(series.seed, series.exchange, series.symbol, series.timeframe, "block", block)
    sigma = series.sigma * vol[block]
    walked = np.cumsum(rng.normal(0.0, sigma, BLOCK))
    fraction = np.arange(1, BLOCK + 1) / BLOCK
    bridge = walked - fraction * walked[-1]
    log_close = walk[block] + fraction * (walk[block + 1] - walk[block]) + bridge
    log_open = np.concatenate(([walk[block]], log_close[:-1]))
    upper = np.abs(rng.normal(0.0, 0.6 * sigma, BLOCK))
    lower = np.abs(rng.normal(0.0, 0.6 * sigma, BLOCK))
    activity = rng.gamma(2.0, 0.5, BLOCK) * (0.5 + np.abs(log_close - log_open) / sigma)
    return np.vstack((log_open, log_close, upper, lower, activity))


@lru_cache(maxsize=128)
def _log_offset(series: Series) -> float:
    """Shifts the walk so that the last close is the reference price."""
    last = last_index(series.timeframe)
    final = _block(series, last // BLOCK)[1, last % BLOCK]
    return math.log(anchor_price(series.symbol)) - float(final)


def _rows(series: Series, indexes: range) -> np.ndarray:
    first, stop = indexes.start, indexes.stop
    blocks = [_block(series, b) for b in range(first // BLOCK, (stop - 1) // BLOCK + 1)]
    offset = first - (first // BLOCK) * BLOCK
    return np.concatenate(blocks, axis=1)[:, offset:offset + len(indexes)]


def ohlcv_arrays(settings: Settings, exchange: str, symbol: str, timeframe: str,
                 indexes: range) -> dict[str, list[float]]:
    """Rounded open/high/low/close/volume of the candles at `indexes` (a step-1 range)."""
    if len(indexes) == 0:
        return {name: [] for name in ("open", "high", "low", "close", "volume")}
    series = Series(settings.seed, exchange, symbol, timeframe)
    log_open, log_close, upper, lower, activity = _rows(series, indexes)
    shift = _log_offset(series)
    open_, close = np.exp(log_open + shift), np.exp(log_close + shift)
    high = np.maximum(open_, close) * np.exp(upper)
    low = np.minimum(open_, close) * np.exp(-lower)
    base = symbol.partition("/")[0]
    hours = STEP[timeframe] / timedelta(hours=1)
    volume = activity * HOURLY_NOTIONAL_USD.get(base, DEFAULT_HOURLY_NOTIONAL_USD) * hours / \
        usd_price(base)
    digits = price_decimals(symbol)
    rounded = {name: [round(v, digits) for v in values.tolist()]
               for name, values in (("open", open_), ("high", high), ("low", low),
                                    ("close", close))}
    rounded["volume"] = [round(v, 4) for v in volume.tolist()]
    return rounded


def candle_range(timeframe: str, start: datetime | None, end: datetime | None,
                 limit: int | None) -> range:
    """Grid indexes answered for a query: inside [start, end] (both inclusive, clipped to the
    history), at most `limit` of them: the first ones from `start`, else the last ones up to
    `end` (or up to REFERENCE_END)."""
    step = STEP[timeframe]
    last = last_index(timeframe)
    first = 0 if start is None else max(0, -((EPOCH - as_utc(start)) // step))
    stop = last + 1 if end is None else min(last, (as_utc(end) - EPOCH) // step) + 1
    if stop <= first:
        return range(0)
    if limit is None:
        return range(first, stop)
    if start is None:
        return range(max(first, stop - limit), stop)
    return range(first, min(stop, first + limit))


def candles(settings: Settings, exchange: str, symbol: str, timeframe: str,
            start: datetime | None = None, end: datetime | None = None,
            limit: int = DEFAULT_LIMIT, *, shift: bool = True) -> list[dict[str, Any]]:
    """Candles as the data service answers them, of the market `symbol` names in any form it
    accepts (each candle says `symbol` as given). `shift=False` renders true timestamps even on
    a copy with the `tz-offset` drift."""
    indexes = candle_range(timeframe, start, end, limit)
    values = ohlcv_arrays(settings, exchange, normalise_symbol(symbol), timeframe, indexes)
    drift = TZ_DRIFT if shift and settings.has("tz-offset") else timedelta(0)
    step = STEP[timeframe]
    origin = open_time(timeframe, indexes.start) + drift if indexes else EPOCH
    return [
        {
            "timestamp": iso(origin + step * n),
            "open": values["open"][n],
            "high": values["high"][n],
            "low": values["low"][n],
            "close": values["close"][n],
            "volume": values["volume"][n],
            "exchange": exchange,
            "symbol": symbol,
            "timeframe": timeframe,
        }
        for n in range(len(indexes))
    ]


def closes(settings: Settings, exchange: str, symbol: str, timeframe: str,
           start: datetime, end: datetime) -> tuple[list[datetime], np.ndarray]:
    """Every candle's open time and close in [start, end], unshifted: what a backtest reads."""
    indexes = candle_range(timeframe, start, end, None)
    values = ohlcv_arrays(settings, exchange, symbol, timeframe, indexes)
    times = [open_time(timeframe, i) for i in indexes]
    return times, np.asarray(values["close"], dtype=float)


def latest_close(settings: Settings, exchange: str, symbol: str) -> float:
    """The last hourly close before REFERENCE_END: the market price orders are filled at."""
    last = last_index("1h")
    return ohlcv_arrays(settings, exchange, symbol, "1h", range(last, last + 1))["close"][0]


router = APIRouter(tags=["data"])


@router.get("/api/v1/data/ohlcv/{exchange}/{symbol:path}/{timeframe}")
def get_ohlcv(
    request: Request,
    exchange: str,
    symbol: str,
    timeframe: Timeframe,
    start: datetime | None = None,
    end: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> JSONResponse:
    """Historical OHLCV candles of one market, oldest first."""
    market = normalise_symbol(symbol)
    if not is_symbol(market):
        raise invalid(("path", "symbol"),
                      "symbol must name a market: BTCUSDT, BTC-USDT or BTC/USDT", symbol)
    if start is not None and end is not None and as_utc(start) > as_utc(end):
        raise invalid(("query", "end"), "end must not be before start",
                      request.query_params.get("end"))
    settings: Settings = request.app.state.settings
    if settings.has("slow"):
        time.sleep(SLOW_S)  # a sync endpoint: FastAPI runs it in its thread pool
    return JSONResponse(candles(settings, exchange.lower(), symbol, timeframe.value,
                                start, end, limit))


@router.websocket("/ws/ohlcv/{exchange}/{symbol}/{timeframe}")
async def stream_ohlcv(websocket: WebSocket, exchange: str, symbol: str, timeframe: str) -> None:
    """The latest candles of one market as a WebSocket stream: one JSON candle per message,
    oldest first (`?limit=` of them, default 5), then the server closes. A client message is
    echoed back as `{"echo": ...}` while the stream is open, so a test can check both ways."""
    market = normalise_symbol(symbol)
    if not is_symbol(market) or timeframe not in STEP:
        await websocket.close(code=1008, reason="unknown market or timeframe")
        return
    await websocket.accept()
    asked = websocket.query_params.get("limit", "5")
    limit = min(MAX_LIMIT, int(asked)) if asked.isdigit() and int(asked) > 0 else 5
    settings: Settings = websocket.app.state.settings
    for candle in candles(settings, exchange.lower(), symbol, timeframe, limit=limit):
        await websocket.send_json(candle)
    try:
        async with asyncio.timeout(0.2):
            await websocket.send_json({"echo": await websocket.receive_text()})
    except TimeoutError:
        pass
    await websocket.close()
