"""Comparisons per second on typical Cryptobot bodies, with a baseline measured side by side.

    python bench/bench_compare.py

Each case runs the whole judge (`Engine.judge`: lift, comparator, noise counting, verdict).
Baseline: parsing both bodies with orjson (what a comparison that parses must at least do).
Reported: absolute rate per core and the ratio to the baseline, for identical bodies (the fast
path), differing bodies (deepdiff and the domain comparators), and a 10k-point numeric array.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import orjson

from harness.compare.engine import Engine
from harness.model import Body, Exchange, Request, Response
from reference_cryptobot.backtest import BacktestRequest, run_backtest
from reference_cryptobot.market import candles
from reference_cryptobot.settings import Settings

JSON = [("content-type", "application/json")]
ENGINE = Engine()
REQUEST = Request("GET", "/bench")


def answer(payload) -> Response:
    return Response(200, JSON, Body.from_bytes(orjson.dumps(payload)))


def bodies() -> dict[str, tuple[str, object, object]]:
    docker, drifted = Settings(), Settings(drifts=frozenset({"tz-offset", "fee-rounding"}))
    request = BacktestRequest(strategy="sma", parameters={"fast": 10, "slow": 30, "fee": 0.001},
                              symbol="BTC/USDT", timeframe="4h", start_date="2024-05-01T00:00:00Z",
                              end_date="2024-06-01T00:00:00Z")
    result, drifted_result = run_backtest(docker, request), run_backtest(drifted, request)
    strategies = [{"id": i, "name": f"s{i}", "parameters": {"fast": i, "slow": 3 * i},
                   "created_at": "2024-01-01T00:00:00Z", "is_active": i % 2 == 0}
                  for i in range(60)]
    changed = [dict(s, name=s["name"] + "x") if s["id"] == 7 else s for s in strategies]
    series = [float(i) * 1.0001 for i in range(10_000)]
    return {
        "ohlcv 60 candles": ("ohlcv", candles(docker, "binance", "BTC/USDT", "1h", limit=60),
                             candles(drifted, "binance", "BTC/USDT", "1h", limit=60)),
        "backtest results": ("backtest", result, drifted_result),
        "strategy list 60": ("strategy", strategies, changed),
        "json 10k numbers": ("json", {"values": series},
                             {"values": series[:5000] + [v + 1 for v in series[5000:]]}),
    }


def rate(fn: Callable[[], object], seconds: float = 0.6) -> float:
    count, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        fn()
        count += 1
    return count / elapsed


def main() -> None:
    print(f"{'body':<20} {'size':>8} {'case':<10} {'compare/s':>11} {'parse/s':>10} {'ratio':>7}")
    for name, (comparator, primary, candidate) in bodies().items():
        p_answer, c_answer = answer(primary), answer(candidate)
        raw_p, raw_c = p_answer.body.raw, c_answer.body.raw
        baseline = rate(lambda raw_p=raw_p: (orjson.loads(raw_p), orjson.loads(raw_p)))
        for case, other in (("identical", p_answer), ("differing", c_answer)):
            def once(other=other, p_answer=p_answer, comparator=comparator) -> None:
                ENGINE.judge(Exchange(request=REQUEST, primary=p_answer, candidate=other,
                                      route="bench", group="other", comparator=comparator))

            measured = rate(once)
            print(f"{name:<20} {len(raw_p):>8} {case:<10} {measured:>11,.0f} {baseline:>10,.0f} "
                  f"{measured / baseline:>7.2f}")
        del raw_c


if __name__ == "__main__":
    main()
