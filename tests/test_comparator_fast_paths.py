"""The shortcuts that make the comparators fast must not change a verdict: identical answers judged
by their headers alone, the shift search by votes, the sorted windows of `near_pairs`."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.diff import base as registry
from harness.diff.base import CompareOptions, Lifted, get
from harness.diff.lift import lift
from harness.diff.values import near_count, near_pairs, within
from harness.judge.engine import Engine
from harness.model import (
    Body,
    Difference,
    Exchange,
    Kind,
    Request,
    Response,
    Severity,
    Verdict,
)
from harness.routes import DryRunRewrite, Route
from harness.testing import answers as shapes

ENGINE = Engine()
BODIES = {
    "json": st.one_of(shapes.backtest_results(), shapes.strategy_lists()),
    "ohlcv": shapes.candles(min_size=1),
    "backtest": shapes.backtest_results(),
    "strategy": shapes.strategy_lists(),
    "order": st.one_of(shapes.orders(), shapes.dry_run_answers()),
    "auth": shapes.token_answers(),
}
# Headers a route compares or an auth answer carries, each side drawing its own.
HEADERS = st.lists(st.sampled_from([
    ("content-type", "application/json; charset=utf-8"),
    ("cache-control", "no-store"),
    ("location", "/api/x/1"),
    ("set-cookie", "refresh=abc; HttpOnly; Secure; Path=/; Max-Age=3600"),
    ("set-cookie", "refresh=abc; Secure; Path=/; Max-Age=60"),
    ("date", "Mon, 01 Jan 2024 00:00:00 GMT"),
]), max_size=4, unique=True)


def response(body, headers=(), status=200) -> Response:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Response(status, [("content-type", "application/json"), *headers],
                    Body.from_bytes(raw))


def route(comparator: str, **extra) -> Route:
    return Route("GET", "/fast", "other", comparator, CompareOptions(extra=extra))


def judged(primary: Response, candidate: Response, on: Route) -> list[Difference]:
    exchange = Exchange(request=Request("GET", "/fast"), primary=primary, candidate=candidate)
    return ENGINE.judge(exchange, on).differences


def seen(differences: list[Difference]) -> list[tuple]:
    return [(d.path, d.kind, d.severity, d.message) for d in differences]


@settings(max_examples=30, deadline=None)
@given(st.data(), st.sampled_from(sorted(BODIES)), HEADERS, HEADERS)
def test_identical_bodies_judged_as_the_comparator_judges_them(data, name, p_headers, c_headers):
    body = data.draw(BODIES[name])
    primary, candidate = response(body, p_headers), response(body, c_headers)
    expected = get(name)(lift(primary), lift(candidate), CompareOptions())
    assert seen(judged(primary, candidate, route(name))) == seen(expected)


def test_a_missing_dry_run_proof_is_judged_on_identical_bodies_too():
    """Identical bodies on a route owing a proof: the proof is the mirror's second check, and
    the engine turns its outcome into the critical finding."""
    order = {"symbol": "BTC/USDT", "side": "buy", "amount": 1.0, "status": "open"}
    owing = replace(route("order"), mirror="dry-run", dry_run=DryRunRewrite({"X-Dry-Run": "1"}))
    assert judged(response(order), response(order), owing) == []  # alike, and nothing owed
    exchange = Exchange(request=Request("POST", "/fast"), primary=response(order),
                        candidate=response(order), mirror="dry-run")
    found = ENGINE.judge(exchange, owing, unproven="answer does not prove the dry run")
    assert [(d.path, d.severity) for d in found.differences] == [("status", Severity.CRITICAL)]
    assert found.verdict is Verdict.MISMATCH


def test_identical_tokens_still_verify_with_configured_keys():
    claims = {"sub": "alice", "roles": ["user"], "exp": 1_704_069_000, "jti": "a"}
    forged = {"access_token": shapes.encode(claims, secret="x" * 64)}
    keys = {"secret": shapes.SECRET, "alg": "HS256"}
    found = judged(response(forged), response(forged), route("auth", keys=keys))
    assert {(d.path, d.severity) for d in found} == {
        ("access_token.signature", Severity.CRITICAL)}


def _reads_the_body(primary: Lifted, candidate: Lifted, options: CompareOptions):
    """Says whether it was given the bodies: a comparator allowing the fast path."""
    return [Difference("", Kind.CHANGED, primary.kind, candidate.kind, "bodies given")]



def test_a_dry_run_route_never_judges_by_the_headers_alone(monkeypatch):
    # Registered for this test only: other tests list the known comparators.
    monkeypatch.setitem(registry._REGISTRY, "test-reads-the-body", _reads_the_body)
    monkeypatch.setitem(registry._IDENTICAL_IS_MATCH, _reads_the_body, True)
    answer = {"status": "dry_run", "order": {"symbol": "BTC/USDT", "side": "buy"}}
    plain = route("test-reads-the-body")
    (found,) = judged(response(answer), response(answer), plain)
    assert (found.primary, found.candidate) == ("empty", "empty")  # the fast path
    proving = Route("POST", "/fast", "trade", "test-reads-the-body", CompareOptions(),
                    mirror="dry-run", dry_run=DryRunRewrite(headers={"X-Dry-Run": "true"}))
    (found,) = judged(response(answer), response(answer), proving)
    assert (found.primary, found.candidate) == ("json", "json")


# --- near_pairs: a superset of what the exact check accepts ----------------------------------

VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.integers(-(10**20), 10**20),
    st.sampled_from([None, True, False, "1", "x", 0, 1, 1.0, 2**53 + 1, 10**400]),
    st.floats(0.999, 1.001),
)


def accepted(a, b, rtol: float, atol: float) -> bool:
    """The exact check the shift searches apply to one pair."""
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (a, b))
    if numbers:
        try:
            return within(float(a), float(b), rtol, atol)
        except OverflowError:
            return True  # raises in the exact check: it must see the pair
    return a == b


@settings(max_examples=300, deadline=None)
@given(st.lists(VALUES, max_size=12), st.lists(VALUES, max_size=12),
       st.sampled_from([0.0, 1e-12, 1e-9, 1e-3, 0.4, 0.7]),
       st.sampled_from([0.0, 1e-12, 1e-3, 1.0, math.inf]))
def test_near_pairs_never_leaves_out_a_pair_the_exact_check_accepts(p, c, rtol, atol):
    found = set(near_pairs(p, c, rtol, atol))
    must = {(i, j) for i, a in enumerate(p) for j, b in enumerate(c) if accepted(a, b, rtol, atol)}
    assert must <= found
    assert len(found) == len(near_pairs(p, c, rtol, atol))  # each pair once


def test_near_pairs_is_small_when_few_values_agree():
    p = [100.0 + i for i in range(500)]
    c = [v * 1.000001 for v in p]
    assert near_pairs(p, c, 1e-9, 1e-12) == []
    assert near_pairs(p, p, 1e-9, 1e-12) == [(i, i) for i in range(500)]


# --- the shift found by votes is the shift the scores give ----------------------------------


def candle_rows(shift_h: int = 0, scale: float = 1.0, count: int = 48) -> list[dict]:
    return [{"timestamp": shapes.iso(shapes.EPOCH_2024 + 3600 * (i + shift_h)),
             "open": (100.0 + i) * scale, "high": (101.0 + i) * scale,
             "low": (99.0 + i) * scale, "close": (100.5 + i) * scale, "volume": 10.0 + i}
            for i in range(count)]


def test_a_shift_within_tolerance_is_found_not_only_exact_equality():
    ohlcv = get("ohlcv")
    primary, shifted = candle_rows(), candle_rows(shift_h=1, scale=1 + 1e-7)
    loose = CompareOptions(rtol=1e-6)
    found = ohlcv(shapes.answer(primary), shapes.answer(shifted), loose)
    assert any("candles shifted by +1h" in d.message for d in found)
    strict = ohlcv(shapes.answer(primary), shapes.answer(shifted), CompareOptions())
    assert not any("shifted" in d.message for d in strict)  # values differ: no shift claimed


def test_trades_shifted_within_tolerance_are_aligned_by_the_shift():
    def trades(shift_h: int, scale: float) -> list[dict]:
        return [{"symbol": "BTC/USDT", "side": "buy" if i % 2 else "sell",
                 "entry_time": shapes.iso(shapes.EPOCH_2024 + 3600 * (8 * i + shift_h)),
                 "entry_price": (60_000.0 + 10 * i) * scale, "amount": 0.01, "pnl": 1.0}
                for i in range(12)]

    backtest = get("backtest")
    found = backtest(shapes.answer({"trades": trades(0, 1.0)}),
                     shapes.answer({"trades": trades(2, 1 + 1e-8)}),
                     CompareOptions(rtol=1e-6))
    assert [d.message for d in found] == [
        'trades entry times shifted by +2h ("2024-01-01T00:00:00Z" vs "2024-01-01T02:00:00Z")']


# --- near_count: the bound that lets the OHLCV shift vote be skipped --------------------------


@settings(max_examples=300, deadline=None)
@given(st.lists(VALUES, max_size=12), st.lists(VALUES, max_size=12),
       st.sampled_from([0.0, 1e-12, 1e-9, 1e-3, 0.4, 0.7]),
       st.sampled_from([0.0, 1e-12, 1e-3, 1.0, math.inf]))
def test_near_count_is_never_under_the_values_near_pairs_pairs(p, c, rtol, atol):
    bound = near_count(p, c, rtol, atol)
    if bound is not None:
        assert len({i for i, _ in near_pairs(p, c, rtol, atol)}) <= bound


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=30),
       st.sampled_from([1e-12, 1e-9, 1e-6]), st.floats(-0.999, 0.999))
def test_near_count_counts_values_on_the_edge_of_the_window(p, rtol, where):
    c = [v * (1 + where * rtol) for v in p]  # every value within tolerance, some on the edge
    assert near_count(p, c, rtol, 1e-12) == len(p)


def test_near_count_is_small_when_few_values_agree():
    p = [round(60_000 * (1 + 0.001 * ((i * 7919) % 13 - 6)), 2) for i in range(120)]
    assert near_count(p, [round(v * 1.000001, 2) for v in p], 1e-9, 1e-12) < 60
    assert near_count(p, p, 1e-9, 1e-12) == 120
    assert near_count(p, [1.0, None], 1e-9, 1e-12) is None  # not every value a number


_FINITE = st.one_of(st.floats(-1e6, 1e6), st.integers(-(10**6), 10**6),
                    st.sampled_from([0.0, -0.0, 1e-300]))
_SPECIAL = st.sampled_from([None, math.nan, math.inf, -math.inf, 1e308, -1e308])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_FINITE, _FINITE), min_size=97, max_size=140),
       st.lists(st.tuples(st.integers(0, 96), st.booleans(), _SPECIAL), max_size=2),
       st.sampled_from([1.0, 1.000001, 1.1]),
       st.sampled_from([(1e-9, 1e-12), (0.0, 0.0), (1e-3, 0.0), (0.0, 1.0)]))
def test_one_numeric_column_is_judged_as_among_other_columns(points, specials, drift,
                                                              tolerance):
    """A long column alone (numpy's one-column pass) comes to what the general pass finds for it
    beside another column: the same count, first index and deviations, nulls and NaN included."""
    from harness.diff.values import _numeric_mismatches

    p = [a for a, _ in points]
    c = [b * drift if k % 3 else a for k, (a, b) in enumerate(points)]
    for at, primary_side, value in specials:
        (p if primary_side else c)[at] = value
    rtol, atol = tolerance
    (alone,) = _numeric_mismatches([(p, c)], [rtol], [atol])
    beside, _ = _numeric_mismatches([(p, c), (p, p)], [rtol, rtol], [atol, atol])
    assert alone == beside


def test_points_are_one_table_only_with_the_same_members():
    from harness.diff.values import columns_if_same_members

    assert columns_if_same_members([{"t": 1, "x": 2.0}, {"t": 3, "x": 4.0}]) == {
        "t": [1, 3], "x": [2.0, 4.0]}
    assert columns_if_same_members([{"t": 1, "x": 2.0}, {"t": 3, "x": 4.0, "y": 5}]) is None
    assert columns_if_same_members([{"t": 1, "x": 2.0}, {"t": 3, "y": 4.0}]) is None
    assert columns_if_same_members([{"t": 1, "x": 2.0}, {"x": 3}]) is None
    assert columns_if_same_members([{}, {}]) == {}
    assert columns_if_same_members([{}, {"t": 1}]) is None
    wide = [{f"m{k}": k + i for k in range(6)} for i in range(3)]
    assert columns_if_same_members(wide)["m5"] == (5, 6, 7)
    assert columns_if_same_members([*wide, {**wide[0], "extra": 1}]) is None


# --- the compiled numeric kernel (harness/diff/_kernel.pyx) and its Python twin ---------------

_NUMBERS = st.one_of(
    st.floats(-1e6, 1e6), st.integers(-(10**6), 10**6), st.floats(),  # NaN, ±inf, 1e308 too
    st.sampled_from([0.0, -0.0, 5e-324, 1.7976931348623157e308, None, 2**1100, -(2**64)]))
_TOLERANCES = st.sampled_from([(1e-9, 1e-12), (0.0, 0.0), (1e-3, 0.0), (0.0, 1.0), (1e-6, 1e-9),
                               (-1e-9, 0.0), (0.0, -1.0), (math.nan, 0.0), (0.0, math.inf)])


@st.composite
def _column_pairs(draw: st.DrawFn) -> tuple[list, list, float, float]:
    """Two equally long columns, the candidate's mostly the primary's moved by about its
    tolerance (points on the edge, where a fused multiply-add would round otherwise)."""
    rtol, atol = draw(_TOLERANCES)
    primary = draw(st.lists(_NUMBERS, max_size=150))
    candidate = []
    for value in primary:
        how = draw(st.sampled_from(["same", "edge", "other"]))
        if how == "edge" and type(value) is float and math.isfinite(value) and rtol == rtol:
            value = value * (1 + draw(st.floats(-1.001, 1.001)) * abs(rtol)) + draw(
                st.sampled_from([0.0, atol if math.isfinite(atol) else 0.0]))
        elif how == "other":
            value = draw(_NUMBERS)
        candidate.append(value)
    return primary, candidate, rtol, atol


def _compiled_kernel():
    from harness.diff import values

    if not values.COMPILED_KERNEL:
        pytest.skip("the compiled kernel is not built (no C compiler at install time): "
                    "the comparators run on its Python twin")
    return values


def test_the_compiled_kernel_is_built_from_its_current_source():
    """A kernel compiled before its .pyx last changed would be tested, and used, instead of the
    source: rebuild it (`pip install -e .`)."""
    from harness.diff import _kernel

    values = _compiled_kernel()
    source = Path(values.__file__).with_name("_kernel.pyx")
    assert Path(_kernel.__file__).stat().st_mtime >= source.stat().st_mtime, (
        f"{_kernel.__file__} is older than {source}: rebuild it with pip install -e .")


@settings(max_examples=600, deadline=None)
@given(_column_pairs(), st.booleans())
def test_the_compiled_kernel_finds_what_its_python_twin_finds(columns, as_tuples):
    values = _compiled_kernel()
    primary, candidate, rtol, atol = columns
    if any(v is None for v in primary + candidate):  # (the twin reads numbers only; so does C)
        assert values.finite_column(primary, candidate, rtol, atol) is None
        return
    if as_tuples:
        primary, candidate = tuple(primary), tuple(candidate)
    assert (values.finite_column(primary, candidate, rtol, atol)
            == values._finite_column_py(primary, candidate, rtol, atol))


@settings(max_examples=300, deadline=None)
@given(st.lists(_column_pairs(), min_size=1, max_size=3))
def test_columns_are_judged_alike_with_the_compiled_kernel_and_without(pairs):
    """The whole numeric judgement (`_numeric_mismatches`: kernel, Python loop, numpy, exact
    integers) comes to the same counts, first points and words with the kernel as without it."""
    values = _compiled_kernel()
    size = min(len(p) for p, *_ in pairs)
    if not size:
        return
    columns = [(p[:size], c[:size]) for p, c, *_ in pairs]
    rtols, atols = [r for *_, r, _ in pairs], [a for *_, a in pairs]
    with_kernel = values._numeric_mismatches(columns, rtols, atols)
    with values.python_twin():
        without = values._numeric_mismatches(columns, rtols, atols)
    assert with_kernel == without
