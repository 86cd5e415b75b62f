"""Properties of the `ohlcv` comparator: candles aligned by timestamp."""

from __future__ import annotations

import copy
import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from harness.diff.base import CompareOptions, get
from harness.diff.paths import generalize
from harness.diff.values import show_offset, to_epoch
from harness.model import Kind
from harness.testing.answers import answer, candles, iso

EXAMPLES = settings(max_examples=120, deadline=None)


def diff(primary, candidate, **options):
    return get("ohlcv")(answer(primary), answer(candidate), CompareOptions(**options))


def general_paths(differences):
    return {generalize(d.path) for d in differences}


@EXAMPLES
@given(candles())
def test_reflexive(rows):
    assert diff(rows, copy.deepcopy(rows)) == []


@EXAMPLES
@given(candles(), st.sampled_from(["data", "candles", "ohlcv"]))
def test_invariant_to_member_order_and_envelope(rows, key):
    reordered = [dict(reversed(list(row.items()))) for row in rows]
    assert diff({key: rows, "symbol": "BTC/USDT"}, {"symbol": "BTC/USDT", key: reordered}) == []


@st.composite
def changed_candles(draw):
    """Candles and a copy with some values scaled and some candles dropped."""
    rows = draw(candles(min_size=1))
    other = copy.deepcopy(rows)
    for i in draw(st.sets(st.integers(0, len(rows) - 1), max_size=3)):
        field = draw(st.sampled_from(["open", "high", "low", "close", "volume"]))
        other[i][field] = round(other[i][field] * draw(st.floats(0.5, 1.5)), 8)
    dropped = draw(st.sets(st.integers(0, len(rows) - 1), max_size=2))
    return rows, [row for i, row in enumerate(other) if i not in dropped]


@EXAMPLES
@given(changed_candles())
def test_symmetric(pair):
    rows, other = pair
    forward, backward = diff(rows, other), diff(other, rows)
    assert general_paths(forward) == general_paths(backward)
    assert len(forward) == len(backward)


@EXAMPLES
@given(candles(min_size=1), st.floats(1e-12, 1e-2), st.randoms(use_true_random=False))
def test_monotonic_in_tolerance(rows, noise, rng):
    other = copy.deepcopy(rows)
    for row in other:
        for field in ("open", "high", "low", "close", "volume"):
            row[field] *= 1 + rng.uniform(-noise, noise)
    found = [general_paths(diff(rows, other, rtol=r)) for r in (0.0, 1e-12, 1e-9, 1e-6, 1e-3, 1e-1)]
    for tighter, looser in itertools.pairwise(found):
        assert looser <= tighter


@EXAMPLES
@given(candles(min_size=1), st.sampled_from([-12, -5, -1, 1, 2, 3, 8]))
def test_timezone_shift_is_one_difference(rows, hours):
    shifted = copy.deepcopy(rows)
    for row in shifted:
        ts = row["timestamp"]
        if isinstance(ts, int):
            row["timestamp"] = ts + hours * 3_600_000
        else:
            row["timestamp"] = iso(to_epoch(ts) + hours * 3600)
    found = diff(rows, shifted)
    assert len(found) == 1, [d.message for d in found]
    assert f"candles shifted by {show_offset(hours * 3600)}" in found[0].message
    assert found[0].path == "[0].timestamp"


@EXAMPLES
@given(candles(min_size=2), st.data())
def test_missing_candles_are_one_difference(rows, data):
    dropped = sorted(
        data.draw(st.sets(st.integers(0, len(rows) - 1), min_size=1, max_size=len(rows) - 1))
    )
    kept = [row for i, row in enumerate(rows) if i not in dropped]
    found = diff(rows, kept)
    assert [(d.kind, d.path) for d in found] == [(Kind.MISSING, f"[{dropped[0]}]")]
    assert found[0].message.startswith(f"{len(dropped)} candle")
    extra = diff(kept, rows)
    assert [(d.kind, d.path) for d in extra] == [(Kind.EXTRA, f"[{dropped[0]}]")]


@EXAMPLES
@given(candles(min_size=1), st.data())
def test_every_value_change_is_found_at_its_path(rows, data):
    i = data.draw(st.integers(0, len(rows) - 1))
    field = data.draw(st.sampled_from(["open", "high", "low", "close", "volume"]))
    factor = data.draw(st.sampled_from([0.9, 1.0001, 1.5, 2.0]))
    other = copy.deepcopy(rows)
    other[i][field] = other[i][field] * factor
    found = diff(rows, other)
    assert [d.path for d in found] == [f"[{i}].{field}"]
    assert "rel" in found[0].message


def test_messages_read_like_a_review():
    rows = [
        {
            "timestamp": 1_704_067_200_000 + i * 3_600_000,
            "open": 100.0 + i,
            "high": 102.0 + i,
            "low": 99.0 + i,
            "close": 101.0 + i,
            "volume": 5.0,
        }
        for i in range(10)
    ]
    other = copy.deepcopy(rows)
    for row in other[4:]:
        row["close"] *= 1.001
    (found,) = diff(rows, other)
    assert found.path == "[4].close"
    assert found.message.startswith("close diverges from index 4 (max rel 1.0e-03")
    assert "6 of 10 candles" in found.message
    (order,) = diff(rows, rows[::-1])
    assert order.kind is Kind.ORDER and "ascending vs descending" in order.message


def test_ccxt_rows_and_notation():
    rows = [
        [1_704_067_200_000 + i * 60_000, 1.0 + i, 2.0 + i, 0.5 + i, 1.5 + i, 10.0] for i in range(5)
    ]
    other = copy.deepcopy(rows)
    other[2][4] = 9.0
    (found,) = diff(rows, other)
    assert found.path == "[2][4]"
    iso_rows = [
        {
            "timestamp": "2024-01-01T00:00:00Z",
            "open": 1,
            "high": 1,
            "low": 1,
            "close": 1,
            "volume": 1,
        }
    ]
    offset_rows = [dict(iso_rows[0], timestamp="2024-01-01T01:00:00+01:00")]
    (notation,) = diff(iso_rows, offset_rows)
    assert "same instants in another notation" in notation.message


def test_ccxt_rows_without_volume_and_unreadable_times():
    """Five-value ccxt rows (no volume) are candles like six-value ones; a NaN or infinite
    timestamp is no time (the candles are then compared as plain JSON), never a comparator
    failure."""
    rows = [[1_704_067_200_000 + i * 60_000, 1.0 + i, 2.0 + i, 0.5 + i, 1.5 + i] for i in range(5)]
    other = copy.deepcopy(rows)
    other[3][2] = 7.0
    (found,) = diff(rows, other)
    assert found.path == "[3][2]" and found.message.endswith("5.0 vs 7.0 (rel 2.9e-01 > 1e-09)")
    for bad in (float("nan"), float("inf")):
        broken = copy.deepcopy(rows)
        broken[1][0] = bad
        assert to_epoch(bad) is None
        assert [d.path for d in diff(rows, broken)] == ["[1][0]"]


def test_reference_cryptobot_timezone_drift():
    """The reference data service with its tz-offset drift: one difference, +1h."""
    from reference_cryptobot.market import candles as reference_candles
    from reference_cryptobot.settings import Settings

    docker = reference_candles(Settings(), "binance", "BTC/USDT", "15m", limit=300)
    native = reference_candles(
        Settings(drifts=frozenset({"tz-offset"})), "binance", "BTC/USDT", "15m", limit=300
    )
    (found,) = diff(docker, native)
    assert found.message.startswith("candles shifted by +1h")
    assert diff(docker, copy.deepcopy(docker)) == []


def test_two_windows_of_one_series_pair_the_candles_they_share():
    """The latest candles asked a little apart: the candles before and after the shared run are
    one missing and one extra difference, and a change inside the run is found at the primary's
    path, whichever side starts first."""
    series = [
        {
            "timestamp": iso(1_714_521_600 + 3600 * i),
            "open": 100.0 + i,
            "high": 102.0 + i,
            "low": 99.0 + 0.5 * i,
            "close": 101.0 + 0.25 * i,
            "volume": 5.0 + i,
        }
        for i in range(30)
    ]
    for k in (1, 3):
        primary, candidate = series[: 30 - k], copy.deepcopy(series[k:])
        candidate[10 - k]["close"] = 1.5  # the candle at the primary's index 10
        found = diff(primary, candidate)
        assert [(d.kind, d.path) for d in found] == [
            (Kind.MISSING, "[0]"), (Kind.EXTRA, f"[{30 - 2 * k}]"), (Kind.CHANGED, "[10].close")
        ], [d.message for d in found]
        assert found[0].message.startswith(f"{k} candle")
        backward = diff(candidate, primary)
        assert [(d.kind, d.path) for d in backward] == [
            (Kind.MISSING, f"[{30 - 2 * k}]"),
            (Kind.EXTRA, "[0]"),
            (Kind.CHANGED, f"[{10 - k}].close"),
        ]
        shifted = copy.deepcopy(candidate)
        for row in shifted:
            row["timestamp"] = iso(to_epoch(row["timestamp"]) + 3600)
        found = diff(primary, shifted)
        assert [(d.kind, d.path) for d in found] == [
            (Kind.CHANGED, f"[{k}].timestamp"),
            (Kind.MISSING, "[0]"),
            (Kind.EXTRA, f"[{30 - 2 * k}]"),
            (Kind.CHANGED, "[10].close"),
        ], [d.message for d in found]
        assert found[0].message.startswith("candles shifted by +1h")
