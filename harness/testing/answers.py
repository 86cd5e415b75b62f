"""Hypothesis strategies for Cryptobot's answer shapes, so users can write their own properties
of the comparators (or of their own code) from ours.

    from hypothesis import given
    from harness.diff.base import get
    from harness.testing.answers import answer, candles

    @given(candles())
    def test_ohlcv_reflexive(rows):
        assert get("ohlcv")(answer(rows), answer(rows), CompareOptions()) == []

Shapes follow the Cryptobot specs: ``candles()`` (data service), ``performance_metrics()``,
``equity_curves()``, ``trade_lists()``, ``backtest_results()``, ``optimization_results()``
(backtest service), ``orders()`` and ``dry_run_answers()`` (trade service), ``jwt_claims()`` and
``token_answers()`` (auth service), ``strategies()`` and ``strategy_lists()`` (strategy service).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from hypothesis import strategies as st

from harness.diff.base import Lifted
from harness.testing.requests import exchanges, symbols, timeframes

# The length of each timeframe of `harness.testing.requests.TIMEFRAMES`, in seconds.
TIMEFRAME_SECONDS = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "4h": 14400, "1d": 86400}
ROLES = ("admin", "user", "trader", "read_only")
EPOCH_2024 = 1_704_067_200  # 2024-01-01T00:00:00Z
# Long enough for HS512 (pyjwt warns below 64 bytes).
SECRET = "parity-test-secret-0123456789abcdef-0123456789abcdef-0123456789abcdef"


def answer(body: Any, status: int = 200, headers: dict[str, list[str]] | None = None) -> Lifted:
    """A JSON answer as the comparators receive it (what ``harness.diff.lift.lift`` produces)."""
    raw = json.dumps(body).encode()
    all_headers = {"content-type": ["application/json"], **(headers or {})}
    return Lifted(status=status, headers=all_headers, kind="json", body=body, raw=raw)


def iso(seconds: float) -> str:
    """Epoch seconds as the ISO 8601 UTC string Cryptobot writes (``2024-01-01T00:00:00Z``)."""
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


# --- building blocks -------------------------------------------------------------------------


def prices(low: float = 0.01, high: float = 100_000.0) -> st.SearchStrategy[float]:
    """A positive price with at most 8 decimals."""
    return st.floats(low, high, allow_nan=False, allow_infinity=False).map(lambda x: round(x, 8))


def amounts() -> st.SearchStrategy[float]:
    """An order or trade amount with at most 8 decimals."""
    return st.floats(0.0001, 1000.0, allow_nan=False, allow_infinity=False).map(
        lambda x: round(x, 8)
    )


def ratios(low: float = -10.0, high: float = 10.0) -> st.SearchStrategy[float]:
    """A metric value such as a Sharpe ratio."""
    return st.floats(low, high, allow_nan=False, allow_infinity=False)


def timestamps(fmt: str = "iso") -> st.SearchStrategy[Any]:
    """A 2024 instant as ISO text (``fmt="iso"``), epoch milliseconds (``"ms"``) or seconds."""
    seconds = st.integers(EPOCH_2024, EPOCH_2024 + 365 * 86400)
    return seconds.map(lambda s: _format_time(s, fmt))


def _format_time(seconds: int, fmt: str) -> Any:
    if fmt == "ms":
        return seconds * 1000
    if fmt == "s":
        return seconds
    return iso(seconds)


def ids() -> st.SearchStrategy[str]:
    """An opaque id (uuid-like hex)."""
    return st.integers(0, 16**12 - 1).map(lambda n: f"{n:012x}")


# --- data service ----------------------------------------------------------------------------


@st.composite
def candles(
    draw: st.DrawFn,
    min_size: int = 0,
    max_size: int = 40,
    fmt: str | None = None,
    timeframe: str | None = None,
) -> list[dict[str, Any]]:
    """Consecutive candles ``{timestamp, open, high, low, close, volume}``, ascending, with
    consistent highs and lows; timestamps as ISO text or epoch milliseconds."""
    fmt = fmt or draw(st.sampled_from(("iso", "ms")))
    step = TIMEFRAME_SECONDS[timeframe or draw(timeframes())]
    start = draw(st.integers(0, 2000)) * 3600 + EPOCH_2024
    bars = draw(
        st.lists(
            st.tuples(prices(1.0, 70_000.0), ratios(-0.05, 0.05), ratios(0, 0.03), amounts()),
            min_size=min_size,
            max_size=max_size,
        )
    )
    rows = []
    for i, (open_, change, spread, volume) in enumerate(bars):
        close = round(open_ * (1 + change), 8)
        rows.append(
            {
                "timestamp": _format_time(start + i * step, fmt),
                "open": open_,
                "high": round(max(open_, close) * (1 + spread), 8),
                "low": round(min(open_, close) * (1 - spread), 8),
                "close": close,
                "volume": volume,
            }
        )
    return rows


# --- backtest service ------------------------------------------------------------------------


@st.composite
def performance_metrics(draw: st.DrawFn) -> dict[str, Any]:
    """A ``PerformanceMetrics`` object: the required metrics, and optional ones that may be null."""
    metrics: dict[str, Any] = {
        "profit": draw(ratios(-1e5, 1e5)),
        "max_drawdown": draw(ratios(0, 1)),
        "sharpe_ratio": draw(ratios()),
        "win_rate": draw(ratios(0, 1)),
        "total_trades": draw(st.integers(0, 500)),
    }
    for name in ("profit_factor", "sortino_ratio", "calmar_ratio", "volatility", "expectancy"):
        if draw(st.booleans()):
            metrics[name] = draw(st.none() | ratios())
    return metrics


@st.composite
def equity_curves(draw: st.DrawFn, min_size: int = 1, max_size: int = 40) -> list[Any]:
    """An equity curve: a list of balances, or of ``{timestamp, equity}`` points."""
    values = draw(st.lists(prices(100.0, 1e6), min_size=min_size, max_size=max_size))
    if draw(st.booleans()):
        return values
    start = EPOCH_2024 + draw(st.integers(0, 1000)) * 3600
    return [{"timestamp": iso(start + i * 3600), "equity": v} for i, v in enumerate(values)]


def _trade(
    entry: int,
    entry_price: float,
    exit_price: float,
    amount: float,
    side: str,
    symbol: str,
    held: int,
) -> dict[str, Any]:
    pnl = (exit_price - entry_price) * amount * (1 if side == "buy" else -1)
    return {
        "id": f"{entry * 2654435761 % 16**12:012x}",
        "symbol": symbol,
        "side": side,
        "entry_time": iso(entry),
        "exit_time": iso(entry + held),
        "entry_price": entry_price,
        "exit_price": exit_price,
        "amount": amount,
        "fee": round(amount * entry_price * 0.001, 8),
        "pnl": round(pnl, 8),
    }


def _trade_fields(entries: st.SearchStrategy[int]) -> st.SearchStrategy[tuple]:
    return st.tuples(
        entries,
        prices(1, 70_000),
        prices(1, 70_000),
        amounts(),
        st.sampled_from(("buy", "sell")),
        symbols(),
        st.integers(60, 86400),
    )


def trades() -> st.SearchStrategy[dict[str, Any]]:
    """One closed trade: symbol, side, entry/exit time and price, amount, fee, pnl, id."""
    entries = st.integers(EPOCH_2024 // 60, (EPOCH_2024 + 10**7) // 60).map(lambda m: m * 60)
    return _trade_fields(entries).map(lambda fields: _trade(*fields))


def trade_lists(min_size: int = 0, max_size: int = 15) -> st.SearchStrategy[list[dict[str, Any]]]:
    """Trades in entry order, at distinct entry times."""
    entries = st.integers(0, 10**6).map(lambda m: EPOCH_2024 + 60 * m)
    return st.lists(
        _trade_fields(entries), min_size=min_size, max_size=max_size, unique_by=lambda f: f[0]
    ).map(lambda rows: [_trade(*fields) for fields in sorted(rows)])


@st.composite
def backtest_results(draw: st.DrawFn) -> dict[str, Any]:
    """A completed ``BacktestResult``: metrics, equity curve and trades under ``results``."""
    start = draw(st.integers(EPOCH_2024, EPOCH_2024 + 10**7))
    return {
        "id": draw(ids()),
        "strategy": draw(st.sampled_from(("mean_reversion", "breakout", "momentum"))),
        "parameters": draw(parameters()),
        "start_time": iso(start),
        "end_time": iso(start + draw(st.integers(1, 600))),
        "status": "completed",
        "results": {
            "metrics": draw(performance_metrics()),
            "equity_curve": draw(equity_curves()),
            "trades": draw(trade_lists()),
        },
    }


@st.composite
def optimization_results(draw: st.DrawFn) -> dict[str, Any]:
    """An ``OptimizationResponse``: one metrics object per distinct parameter set."""
    sets = draw(st.lists(st.integers(2, 60), min_size=1, max_size=8, unique=True))
    return {
        "optimization_id": draw(ids()),
        "strategy_name": "mean_reversion",
        "symbol": draw(symbols()),
        "timeframe": draw(timeframes()),
        "start_date": "2024-01-01",
        "end_date": "2024-03-01",
        "results": [
            {"parameters": {"lookback": n}, "metrics": draw(performance_metrics())} for n in sets
        ],
    }


def parameters() -> st.SearchStrategy[dict[str, Any]]:
    """Strategy parameters: a few named numbers."""
    return st.fixed_dictionaries(
        {"lookback": st.integers(2, 200), "threshold": ratios(0.1, 5).map(lambda x: round(x, 4))},
        optional={"stop_loss_pct": ratios(0.001, 0.2).map(lambda x: round(x, 4))},
    )


# --- trade service ---------------------------------------------------------------------------


@st.composite
def order_intents(draw: st.DrawFn) -> dict[str, Any]:
    """What an order asks for: exchange, symbol, side, type, amount, price and risk parameters."""
    kind = draw(st.sampled_from(("market", "limit")))
    intent: dict[str, Any] = {
        "exchange": draw(exchanges()),
        "symbol": draw(symbols()),
        "side": draw(st.sampled_from(("buy", "sell"))),
        "type": kind,
        "amount": draw(amounts()),
        "client_order_id": draw(st.none() | ids()),
        "time_in_force": draw(st.sampled_from(("GTC", "IOC", "FOK"))),
    }
    if kind == "limit":
        intent["price"] = draw(prices())
        intent["post_only"] = draw(st.booleans())
    if draw(st.booleans()):
        intent["risk_params"] = {
            "stop_loss_pct": draw(ratios(0.001, 0.2)),
            "take_profit_pct": draw(ratios(0.001, 0.5)),
            "volatility_adjustment": draw(st.booleans()),
        }
    return intent


@st.composite
def orders(draw: st.DrawFn) -> dict[str, Any]:
    """A placed order as the trade service answers it: the intent plus id, status, timestamps."""
    intent = draw(order_intents())
    moment = draw(timestamps("ms"))
    return {
        "id": draw(ids()),
        **intent,
        "status": "open",
        "timestamp": moment,
        "datetime": iso(moment / 1000),
    }


@st.composite
def dry_run_answers(draw: st.DrawFn) -> dict[str, Any]:
    """The trade service's dry-run echo: ``{"status": "dry_run", "order": {...}}``."""
    order = draw(order_intents())
    if draw(st.booleans()):
        order = {"id": draw(ids()), **order, "timestamp": draw(timestamps("ms"))}
    return {"status": "dry_run", "order": order}


# --- auth service ----------------------------------------------------------------------------


@st.composite
def jwt_claims(draw: st.DrawFn, with_iat: bool | None = None) -> dict[str, Any]:
    """Access-token claims as Cryptobot mints them: sub, roles, email, token_type, exp, jti;
    ``iat`` only when asked (``with_iat``) or drawn (the real tokens carry none)."""
    user = draw(st.sampled_from(("alice", "bob", "carol", "trader1")))
    issued = draw(st.integers(EPOCH_2024, EPOCH_2024 + 10**7))
    claims = {
        "sub": user,
        "roles": draw(st.lists(st.sampled_from(ROLES), min_size=1, max_size=3, unique=True)),
        "email": f"{user}@example.com",
        "token_type": "access",
        "exp": issued + draw(st.sampled_from((900, 1800, 3600))),
        "jti": draw(ids()),
    }
    if with_iat or (with_iat is None and draw(st.booleans())):
        claims["iat"] = issued
    return claims


def encode(claims: dict[str, Any], secret: str = SECRET, alg: str = "HS256") -> str:
    """A signed JWT for `claims`."""
    import jwt

    return jwt.encode(claims, secret, algorithm=alg)


@st.composite
def token_answers(draw: st.DrawFn, secret: str = SECRET) -> dict[str, Any]:
    """A login answer: ``access_token``, ``refresh_token``, ``token_type``, ``expires_in``."""
    claims = draw(jwt_claims())
    refresh = {
        **claims,
        "token_type": "refresh",
        "exp": claims["exp"] + 7 * 86400,
        "jti": draw(ids()),
    }
    return {
        "access_token": encode(claims, secret),
        "refresh_token": encode(refresh, secret),
        "token_type": "bearer",
        "expires_in": claims["exp"] - claims.get("iat", claims["exp"] - 1800),
        "refresh_token_expires_in": 7 * 86400,
    }


# --- strategy service ------------------------------------------------------------------------


@st.composite
def strategies(draw: st.DrawFn, name: str | None = None, id_: int | None = None) -> dict[str, Any]:
    """A ``StrategyResponse`` with its version history (version 1 first)."""
    versions = draw(st.lists(parameters(), min_size=1, max_size=4))
    created = draw(st.integers(EPOCH_2024, EPOCH_2024 + 10**7))
    return {
        "id": id_ if id_ is not None else draw(st.integers(1, 10_000)),
        "name": name or draw(st.sampled_from(("Mean Reversion", "Breakout", "Momentum"))),
        "description": draw(st.sampled_from(("", "Basic mean reversion strategy", "Trend"))),
        "parameters": dict(versions[-1]),
        "is_active": draw(st.booleans()),
        "version": len(versions),
        "versions": [
            {"version": i + 1, "parameters": dict(p), "created_at": iso(created + i * 3600)}
            for i, p in enumerate(versions)
        ],
        "created_at": iso(created),
        "updated_at": iso(created + len(versions) * 3600),
    }


@st.composite
def strategy_lists(draw: st.DrawFn, max_size: int = 6) -> list[dict[str, Any]]:
    """Strategies with distinct names and ids."""
    names = draw(
        st.lists(st.text("abcdefghij ", min_size=3, max_size=12), max_size=max_size, unique=True)
    )
    ids_ = draw(
        st.lists(st.integers(1, 10_000), min_size=len(names), max_size=len(names), unique=True)
    )
    return [draw(strategies(name=n, id_=i)) for n, i in zip(names, ids_, strict=True)]
