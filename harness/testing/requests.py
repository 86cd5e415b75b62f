"""Hypothesis strategies, exported so users write their own properties: JSON documents (for
comparator properties) and Cryptobot requests derived from the shapes in the services' OpenAPI
specs. Strategies are values: compose them, e.g.

    @given(ohlcv_requests())
    def test_candles_agree(request): ...

Every strategy here yields a `harness.model.Request`, ready for
`harness.mirror.transport.send` to both environments. Edge cases are deliberate: empty,
reversed and huge date ranges, DST boundaries, backtests that cannot trade, extreme fees,
fast ≥ slow, order amounts tiny, huge and with eight decimals, unicode strategy names.
"""

from __future__ import annotations

import urllib.parse
from datetime import UTC, datetime, timedelta

import orjson
from hypothesis import strategies as st

from harness.model import Body, Request

EXCHANGES = ("binance", "kraken", "coinbase")
SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT", "ETH/BTC")
TIMEFRAMES = ("1m", "5m", "15m", "1h", "4h", "1d")
REFERENCE_END = datetime(2024, 6, 1, tzinfo=UTC)
# Daylight-saving boundaries (EU and US, 2024): where a host in local time goes wrong.
DST_BOUNDARIES = (
    datetime(2024, 3, 10, 7, tzinfo=UTC),
    datetime(2024, 3, 31, 1, tzinfo=UTC),
    datetime(2023, 10, 29, 1, tzinfo=UTC),
    datetime(2023, 11, 5, 6, tzinfo=UTC),
)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _json_request(method: str, path: str, payload: object, headers=()) -> Request:
    return Request(
        method=method,
        path=path,
        headers=[("content-type", "application/json"), *headers],
        body=Body.from_bytes(orjson.dumps(payload)),
    )


def json_scalars() -> st.SearchStrategy[object]:
    """JSON scalars: null, booleans, integers, finite floats, strings."""
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**53), 2**53),
        st.floats(allow_nan=False, allow_infinity=False, width=64),
        st.text(max_size=20),
    )


def json_values(max_leaves: int = 30) -> st.SearchStrategy[object]:
    """Any JSON value: nested objects and lists of scalars."""
    return st.recursive(
        json_scalars(),
        lambda children: st.one_of(
            st.lists(children, max_size=5),
            st.dictionaries(st.text(min_size=1, max_size=8), children, max_size=5),
        ),
        max_leaves=max_leaves,
    )


def json_documents(max_leaves: int = 30) -> st.SearchStrategy[dict[str, object]]:
    """A JSON object at the top, as API answers are."""
    return st.dictionaries(st.text(min_size=1, max_size=8), json_values(max_leaves), max_size=6)


@st.composite
def json_variants(draw: st.DrawFn, value: object, depth: int = 0) -> object:
    """`value` with a few edits, as a drifted answer has: leaves changed (also to another type),
    members dropped or added, list items dropped, added or swapped."""
    choice = draw(st.integers(0, 7))
    if isinstance(value, dict) and value and choice < 6:
        out = dict(value)
        names = list(out)
        name = names[draw(st.integers(0, len(names) - 1))]
        if choice == 0:
            del out[name]
        elif choice == 1:
            out[draw(st.text(min_size=1, max_size=8))] = draw(json_scalars())
        else:
            out[name] = draw(json_variants(out[name], depth + 1))
        return out
    if isinstance(value, list) and value and choice < 6:
        items = list(value)
        at = draw(st.integers(0, len(items) - 1))
        if choice == 0:
            del items[at]
        elif choice == 1:
            items.insert(at, draw(json_scalars()))
        elif choice == 2:
            other = draw(st.integers(0, len(items) - 1))
            items[at], items[other] = items[other], items[at]
        else:
            items[at] = draw(json_variants(items[at], depth + 1))
        return items
    if depth == 0 and choice == 7:
        return value
    return draw(json_scalars())


@st.composite
def json_pairs(draw: st.DrawFn, max_leaves: int = 20) -> tuple[dict[str, object], object]:
    """(document, a variant of it): pairs that share most of their content, for properties of
    comparators (symmetry, ignore globs, tolerance). The variant may be a scalar."""
    document = draw(json_documents(max_leaves))
    return document, draw(json_variants(document))


def exchanges() -> st.SearchStrategy[str]:
    """Exchange ids the services know."""
    return st.sampled_from(EXCHANGES)


def symbols() -> st.SearchStrategy[str]:
    """Trading pairs in `BASE/QUOTE` form."""
    return st.sampled_from(SYMBOLS)


def timeframes() -> st.SearchStrategy[str]:
    """Candle timeframes."""
    return st.sampled_from(TIMEFRAMES)


@st.composite
def date_ranges(draw: st.DrawFn) -> tuple[datetime, datetime]:
    """(start, end): ordinary, empty (start == end), reversed, huge, or across a DST boundary."""
    kind = draw(st.sampled_from(("ordinary", "empty", "reversed", "huge", "dst")))
    if kind == "dst":
        start = draw(st.sampled_from(DST_BOUNDARIES)) - timedelta(hours=draw(st.integers(1, 12)))
    else:
        start = REFERENCE_END - timedelta(hours=draw(st.integers(1, 24 * 120)))
    span = {
        "ordinary": timedelta(hours=draw(st.integers(1, 24 * 14))),
        "empty": timedelta(0),
        "reversed": -timedelta(hours=draw(st.integers(1, 48))),
        "huge": timedelta(days=draw(st.integers(365, 3650))),
        "dst": timedelta(hours=draw(st.integers(2, 36))),
    }[kind]
    return start, start + span


@st.composite
def ohlcv_requests(draw: st.DrawFn) -> Request:
    """`GET /api/v1/data/ohlcv/{exchange}/{symbol}/{timeframe}` with a range and/or a limit."""
    symbol = draw(symbols()).replace("/", "-")
    path = f"/api/v1/data/ohlcv/{draw(exchanges())}/{symbol}/{draw(timeframes())}"
    query: list[tuple[str, str]] = []
    if draw(st.booleans()):
        start, end = draw(date_ranges())
        query += [("start", _iso(start)), ("end", _iso(end))]
    if draw(st.booleans()):
        query.append(("limit", str(draw(st.integers(-1, 1200)))))
    return Request(method="GET", path=path, query=query)


@st.composite
def backtest_parameters(draw: st.DrawFn) -> dict:
    """SMA crossover parameters, including fast ≥ slow, zero and extreme fees."""
    fast = draw(st.integers(1, 50))
    slow = draw(st.one_of(st.integers(fast + 1, 200), st.integers(1, fast)))
    fee = draw(st.sampled_from((0.0, 0.001, 0.0075, 0.05, 0.5)))
    return {"fast": fast, "slow": slow, "fee": fee}


@st.composite
def backtest_requests(draw: st.DrawFn) -> Request:
    """`POST /api/backtest/start` bodies as BacktestRequest in the spec."""
    start, end = draw(date_ranges())
    return _json_request("POST", "/api/backtest/start", {
        "strategy": "sma_crossover",
        "parameters": draw(backtest_parameters()),
        "symbol": draw(symbols()),
        "exchange": draw(exchanges()),
        "timeframe": draw(st.sampled_from(("1h", "4h", "1d"))),
        "start_date": _iso(start),
        "end_date": _iso(end),
        "initial_capital": draw(st.sampled_from((100, 10_000, 1_000_000))),
    })


def order_amounts() -> st.SearchStrategy[float]:
    """Amounts: tiny, huge, and with up to eight decimals (where precision drifts show)."""
    return st.one_of(
        st.decimals(min_value="0.00000001", max_value="0.001", places=8).map(float),
        st.decimals(min_value="0.001", max_value="10", places=8).map(float),
        st.integers(1_000, 10_000_000).map(float),
    ).filter(lambda amount: amount > 0)


@st.composite
def order_requests(draw: st.DrawFn, *, dry_run: bool = True) -> Request:
    """`POST /api/trades/orders` (market or limit), with an `X-Dry-Run: true` header unless told
    otherwise. The header makes nothing safe on the real trade service, which ignores it: send
    these only to copies that proved their dry-run switch on (the orders route's precondition,
    `harness.mirror.preconditions`)."""
    kind = draw(st.sampled_from(("market", "limit")))
    order: dict = {
        "exchange": draw(exchanges()),
        "symbol": draw(symbols()),
        "side": draw(st.sampled_from(("buy", "sell"))),
        "type": kind,
        "amount": draw(order_amounts()),
        "client_order_id": "prop-" + draw(st.text("0123456789abcdef", min_size=12, max_size=12)),
    }
    if kind == "limit":
        order["price"] = float(draw(st.decimals(min_value="0.01", max_value="100000", places=2)))
        order["time_in_force"] = draw(st.sampled_from(("GTC", "IOC", "FOK")))
        order["post_only"] = draw(st.booleans())
    headers = [("x-dry-run", "true")] if dry_run else []
    return _json_request("POST", "/api/trades/orders", order, headers)


def strategy_names() -> st.SearchStrategy[str]:
    """Names with unicode, spaces and symbols, as users type them."""
    return st.text(
        st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40
    ).filter(lambda name: name.strip() != "")


@st.composite
def strategy_payloads(draw: st.DrawFn) -> dict:
    """StrategyCreate bodies."""
    return {
        "name": draw(strategy_names()),
        "description": draw(st.text(max_size=60)),
        "parameters": {
            "fast": draw(st.integers(1, 50)),
            "slow": draw(st.integers(1, 200)),
            "stop_loss": draw(st.floats(0.001, 0.5, allow_nan=False)),
        },
    }


@st.composite
def login_requests(draw: st.DrawFn) -> Request:
    """OAuth2 password logins: known users, wrong passwords, unknown users."""
    user = draw(st.sampled_from(("demo", "admin", "nobody", "DEMO")))
    password = draw(st.sampled_from((user, "wrong", "")))
    form = urllib.parse.urlencode({"username": user, "password": password})
    return Request(
        method="POST",
        path="/auth/login",
        headers=[("content-type", "application/x-www-form-urlencoded")],
        body=Body.from_bytes(form.encode()),
    )


def cryptobot_requests() -> st.SearchStrategy[Request]:
    """Any of the stateless Cryptobot requests above."""
    return st.one_of(ohlcv_requests(), backtest_requests(), order_requests(), login_requests())
