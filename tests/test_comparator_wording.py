"""The same drift reads the same from every comparator: an integer that became a string, and a
number past its tolerance, put in a field each comparator reads itself (the backtest's metrics,
an order's amount, a strategy's parameter, a JWT claim, a candle's close) and in a plain JSON
answer, give one wording (`harness.diff.values.type_message` / `number_message`)."""

from __future__ import annotations

import copy

import pytest

from harness.diff.base import CompareOptions, get
from harness.testing.answers import answer, encode

OPTIONS = CompareOptions(rtol=1e-6, atol=0.0)
CLAIMS = {"sub": "alice", "role": "trader", "iat": 1_700_000_000, "exp": 1_700_000_900,
          "limit": 5}


def _metrics(value):
    return {"id": 1, "status": "completed", "metrics": {"sharpe_ratio": 1.5, "trades": value}}


def _order(value):
    return {"exchange": "binance", "symbol": "BTC/USDT", "side": "buy", "type": "limit",
            "amount": value, "price": 60_000.0}


def _strategy(value):
    return [{"id": 1, "name": "sma", "parameters": {"fast": value, "slow": 30}}]


def _token(value):
    return {"access_token": encode({**CLAIMS, "limit": value}), "token_type": "bearer"}


def _candles(value):
    return [{"timestamp": f"2024-05-01T{h:02d}:00:00Z", "open": 1.0, "high": 2.0, "low": 0.5,
             "close": value if h == 3 else 1.5, "volume": 10.0} for h in range(6)]


# comparator, body builder, the path its finding names
CASES = [
    ("json", _metrics, "metrics.trades"),
    ("backtest", _metrics, "metrics.trades"),
    ("order", _order, "amount"),
    ("strategy", _strategy, "[0].parameters.fast"),
    ("auth", _token, "access_token.claims.limit"),
]


def _finding(name, build, path, a, b):
    found = get(name)(answer(build(a)), answer(build(b)), OPTIONS)
    assert found, f"{name}: no finding for {a!r} → {b!r}"
    matching = [d for d in found if d.path.endswith(path)]
    assert matching, f"{name}: {[d.path for d in found]}"
    return matching[0]


@pytest.mark.parametrize(("name", "build", "path"), CASES, ids=[c[0] for c in CASES])
def test_an_integer_that_became_a_string_reads_the_same(name, build, path):
    finding = _finding(name, build, path, 5, "5")
    # after the place, which a comparator may name for a reader ("access token claim limit")
    assert finding.message.endswith(': type changed integer → string (5 vs "5")')


# Not auth: a claim is an identity, compared exactly whatever the route's tolerance.
@pytest.mark.parametrize(("name", "build", "path"), CASES[:4], ids=[c[0] for c in CASES[:4]])
def test_a_number_past_its_tolerance_reads_the_same(name, build, path):
    finding = _finding(name, build, path, 1.2034, 1.1987)
    assert finding.message == f"{path} 1.2034 vs 1.1987 (rel 3.9e-03 > 1e-06)"


def test_a_candle_past_its_tolerance_names_the_same_numbers():
    primary, candidate = _candles(1.2034), _candles(1.1987)
    found = get("ohlcv")(answer(primary), answer(copy.deepcopy(candidate)), OPTIONS)
    assert [d.message for d in found] == ["[3].close 1.2034 vs 1.1987 (rel 3.9e-03 > 1e-06)"]


@pytest.mark.parametrize(("name", "build", "path"), CASES[:4], ids=[c[0] for c in CASES[:4]])
def test_an_integer_past_float_range_against_a_float_reads_as_it_is(name, build, path):
    """parse_json keeps such an integer exact; telling it from a float must not overflow (it
    made the comparator fail, an incomparable verdict instead of a finding)."""
    huge = 2**1100
    finding = _finding(name, build, path, 0.5, huge)
    assert finding.message.startswith(f"{path} 0.5 vs {huge}")
