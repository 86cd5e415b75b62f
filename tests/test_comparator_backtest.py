"""Properties of the `backtest` comparator: metrics, equity curves, trade tables."""

from __future__ import annotations

import copy
import itertools

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from harness.diff.base import CompareOptions, get
from harness.diff.paths import generalize
from harness.diff.values import to_epoch
from harness.model import Kind
from harness.testing.answers import (
    answer,
    backtest_results,
    iso,
    optimization_results,
    performance_metrics,
)

EXAMPLES = settings(max_examples=100, deadline=None)
METRICS = ("profit", "max_drawdown", "sharpe_ratio", "win_rate")


def diff(primary, candidate, **options):
    return get("backtest")(answer(primary), answer(candidate), CompareOptions(**options))


def general_paths(differences):
    return {generalize(d.path) for d in differences}


@EXAMPLES
@given(st.one_of(backtest_results(), optimization_results(), performance_metrics()))
def test_reflexive(body):
    assert diff(body, copy.deepcopy(body)) == []


@EXAMPLES
@given(backtest_results(), st.randoms(use_true_random=False))
def test_invariant_to_ids_run_timestamps_and_trade_order(result, rng):
    other = copy.deepcopy(result)
    other["id"] = "another-run"
    other["start_time"], other["end_time"] = iso(0), None
    other["created_at"] = iso(1)
    for trade in other["results"]["trades"]:
        trade["id"] = f"t-{rng.random()}"
    rng.shuffle(other["results"]["trades"])
    assert diff(result, other) == []


@EXAMPLES
@given(optimization_results(), st.randoms(use_true_random=False))
def test_invariant_to_optimization_order(optimization, rng):
    shuffled = copy.deepcopy(optimization)
    shuffled["optimization_id"] = "another-optimization"
    rng.shuffle(shuffled["results"])
    assert diff(optimization, shuffled) == []


@st.composite
def changed_results(draw):
    """A backtest result and a copy with some metrics, curve points and trades changed."""
    result = draw(backtest_results())
    other = copy.deepcopy(result)
    results = other["results"]
    for name in draw(st.sets(st.sampled_from(METRICS), max_size=2)):
        results["metrics"][name] = results["metrics"][name] * 1.01 + 0.5
    curve = results["equity_curve"]
    for i in draw(st.sets(st.integers(0, len(curve) - 1), max_size=3)):
        if isinstance(curve[i], dict):
            curve[i]["equity"] *= 1.02
        else:
            curve[i] *= 1.02
    if draw(st.booleans()):
        del curve[-1]
    trades = results["trades"]
    if trades:
        for i in draw(st.sets(st.integers(0, len(trades) - 1), max_size=2)):
            trades[i]["fee"] = trades[i]["fee"] * 2 + 0.01
        if draw(st.booleans()):
            del trades[draw(st.integers(0, len(trades) - 1))]
    return result, other


@EXAMPLES
@given(changed_results())
def test_symmetric(pair):
    result, other = pair
    forward, backward = diff(result, other), diff(other, result)
    assert general_paths(forward) == general_paths(backward)
    assert len(forward) == len(backward)


@EXAMPLES
@given(backtest_results(), st.floats(1e-13, 1e-2), st.randoms(use_true_random=False))
def test_monotonic_in_tolerance(result, noise, rng):
    other = copy.deepcopy(result)

    def jitter(value):
        return value * (1 + rng.uniform(-noise, noise))

    metrics = other["results"]["metrics"]
    for name in METRICS:
        metrics[name] = jitter(metrics[name])
    curve = other["results"]["equity_curve"]
    for i, point in enumerate(curve):
        if isinstance(point, dict):
            point["equity"] = jitter(point["equity"])
        else:
            curve[i] = jitter(point)
    for trade in other["results"]["trades"]:
        trade["exit_price"] = jitter(trade["exit_price"])
    found = [
        general_paths(diff(result, other, rtol=r)) for r in (0.0, 1e-12, 1e-9, 1e-6, 1e-3, 1.0)
    ]
    for tighter, looser in itertools.pairwise(found):
        assert looser <= tighter
    assert found[-1] == set()


@EXAMPLES
@given(backtest_results(), st.sampled_from(METRICS), st.sampled_from([1.001, 1.5, -1.0]))
def test_every_metric_change_is_found(result, name, factor):
    other = copy.deepcopy(result)
    old = result["results"]["metrics"][name]
    new = old * factor + 1e-3
    assume(abs(new - old) > 1e-6 * max(1.0, abs(old)))  # -1.0 * 1.001 + 1e-3 is -1.0 again
    other["results"]["metrics"][name] = new
    found = diff(result, other)
    assert [d.path for d in found] == [f"results.metrics.{name}"]


@EXAMPLES
@given(backtest_results(), st.data())
def test_every_trade_change_is_found(result, data):
    trades = result["results"]["trades"]
    if not trades:
        return
    i = data.draw(st.integers(0, len(trades) - 1))
    field = data.draw(st.sampled_from(["entry_price", "exit_price", "amount", "fee", "pnl"]))
    other = copy.deepcopy(result)
    other["results"]["trades"][i][field] = trades[i][field] * 1.5 + 1
    assert [d.path for d in diff(result, other)] == [f"results.trades[{i}].{field}"]
    del other["results"]["trades"][i]
    found = diff(result, other)
    assert [(d.kind, d.path) for d in found] == [(Kind.MISSING, f"results.trades[{i}]")]
    assert "1 trade missing from the candidate" in found[0].message


@EXAMPLES
@given(backtest_results(), st.data())
def test_equity_curve_reports_first_index_once(result, data):
    curve = result["results"]["equity_curve"]
    start = data.draw(st.integers(0, len(curve) - 1))
    other = copy.deepcopy(result)
    for i in range(start, len(curve)):
        point = other["results"]["equity_curve"][i]
        if isinstance(point, dict):
            point["equity"] *= 1.005
        else:
            other["results"]["equity_curve"][i] = point * 1.005
    found = diff(result, other)
    assert len(found) == 1
    suffix = ".equity" if isinstance(curve[0], dict) else ""
    assert found[0].path == f"results.equity_curve[{start}]{suffix}"
    if len(curve) - start > 1:
        assert f"diverges from index {start} (max rel 5.0e-03" in found[0].message
    shorter = copy.deepcopy(result)
    shorter["results"]["equity_curve"].append(copy.deepcopy(curve[-1]))
    (length,) = diff(result, shorter)
    assert length.kind is Kind.LENGTH and length.path == "results.equity_curve"


def test_counts_exact_null_is_not_zero_and_per_field_tolerance():
    primary = {"sharpe_ratio": 1.2034, "total_trades": 12, "sortino_ratio": None, "profit": 10.0}
    candidate = {"sharpe_ratio": 1.1987, "total_trades": 12.0, "sortino_ratio": 0, "profit": 10.0}
    found = {d.path: d for d in diff(primary, candidate)}
    assert found["sharpe_ratio"].message == "sharpe_ratio 1.2034 vs 1.1987 (rel 3.9e-03 > 1e-09)"
    assert found["total_trades"].kind is Kind.TYPE
    assert found["sortino_ratio"].message == (
        "sortino_ratio: type changed null → integer (null vs 0)")
    loose = diff(primary, candidate, extra={"tolerances": {"sharpe_ratio": {"rtol": 1e-2}}})
    assert "sharpe_ratio" not in {d.path for d in loose}


def test_trades_shifted_by_a_timezone_are_one_difference():
    trades = [
        {
            "id": i,
            "symbol": "BTC/USDT",
            "side": "buy",
            "entry_time": iso(1_704_067_200 + i * 7200),
            "exit_time": iso(1_704_067_200 + i * 7200 + 600),
            "entry_price": 100.0 + i,
            "fee": 0.1,
        }
        for i in range(6)
    ]
    shifted = copy.deepcopy(trades)
    for trade in shifted:
        for field in ("entry_time", "exit_time"):
            trade[field] = iso(to_epoch(trade[field]) + 3600)
    (found,) = diff({"trades": trades}, {"trades": shifted})
    assert "entry times shifted by +1h" in found.message


def test_reference_cryptobot_drifts():
    """On the reference Cryptobot's real answers: summation-order noise passes, fee rounding is
    caught once per column (not once per trade or point)."""
    from datetime import UTC, datetime

    from reference_cryptobot.backtest import BacktestRequest, run_backtest
    from reference_cryptobot.settings import Settings

    request = BacktestRequest(
        strategy="sma",
        parameters={"fast": 10, "slow": 30},
        symbol="BTC/USDT",
        timeframe="4h",
        start_date=datetime(2024, 1, 1, tzinfo=UTC),
        end_date=datetime(2024, 5, 1, tzinfo=UTC),
    )
    docker = run_backtest(Settings(), request)
    assert diff(docker, run_backtest(Settings(drifts=frozenset({"float-order"})), request)) == []
    found = diff(docker, run_backtest(Settings(drifts=frozenset({"fee-rounding"})), request))
    found_paths = {generalize(d.path) for d in found}
    assert {"trades[*].fee", "trades[*].pnl", "equity_curve[*].equity"} <= found_paths
    assert "metrics.profit" in found_paths
    assert len(found) == len(found_paths)


def test_entry_prices_without_times_are_compared_item_by_item():
    """A list of open positions (entry prices, no entry time) is no trade table: compared by
    position, it never fails the comparator."""
    positions = [{"symbol": "BTC/USDT", "entry_price": 60_000.0, "amount": 0.1},
                 {"symbol": "ETH/USDT", "entry_price": 3_000.0, "amount": 2.0}]
    moved = copy.deepcopy(positions)
    moved[1]["entry_price"] = 3_001.0
    (found,) = diff({"positions": positions}, {"positions": moved})
    assert found.path == "positions[1].entry_price"
    assert found.kind is Kind.CHANGED
    assert diff({"positions": positions}, {"positions": copy.deepcopy(positions), "x": 1}) != []


@EXAMPLES
@given(
    st.lists(st.tuples(st.integers(0, 5), st.sampled_from(["buy", "sell"]),
                       st.sampled_from([100.0, 101.0, 102.5])), min_size=1, max_size=8),
    st.sampled_from([0, 1800, 3600, -3600, 7200]),
    st.lists(st.integers(0, 7), max_size=2),
)
def test_trades_moved_by_one_constant_pair_as_the_shift_vote_does(rows, shift, changed):
    """The one-pass recognition of trades all moved by one constant (same labels and prices)
    finds what the shift vote and the alignment find: equal findings with it switched off.
    Repeated keys, a shift of 0 and changed prices (the vote's cases) included."""
    from comparators import backtest

    trades = [{"symbol": "BTC/USDT", "side": side, "entry_time": iso(1_704_067_200 + h * 3600),
               "entry_price": price, "fee": 0.1} for h, side, price in rows]
    moved = copy.deepcopy(trades)
    for trade in moved:
        trade["entry_time"] = iso(to_epoch(trade["entry_time"]) + shift)
    for k in changed:
        if k < len(moved):
            moved[k]["entry_price"] += 1.0
    found = diff({"trades": trades}, {"trades": moved})
    one_pass = backtest._constant_shift
    backtest._constant_shift = lambda *args: 0
    try:
        voted = diff({"trades": trades}, {"trades": moved})
    finally:
        backtest._constant_shift = one_pass
    assert [(d.path, d.kind, d.message) for d in found] == [
        (d.path, d.kind, d.message) for d in voted]
