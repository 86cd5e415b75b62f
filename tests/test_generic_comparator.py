"""The generic `json` comparator and lift: properties over generated JSON, and the findings a
reviewer reads."""

from __future__ import annotations

import copy
import math

import orjson
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from harness.diff.base import CompareOptions, Incomparable, Lifted
from harness.diff.lift import lift
from harness.diff.paths import PathMatcher
from harness.diff.tree import compare_bodies, compare_headers, compare_json
from harness.model import Body, Kind, Response, Severity
from harness.testing.requests import json_documents, json_pairs, json_values

GLOBS = ["*", "a", "a.*", "**.b", "[*]", "*[*]", "**"]


def paths_of(differences) -> set[str]:
    return {d.path for d in differences}


def found(differences) -> set[tuple[str, Kind]]:
    return {(d.path, d.kind) for d in differences}


# --- properties ------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(json_values())
def test_a_value_matches_itself(value):
    assert compare_bodies(value, copy.deepcopy(value), CompareOptions()) == []
    if not isinstance(value, float):  # orjson writes NaN as null
        reparsed = orjson.loads(orjson.dumps(value))
        assert compare_bodies(value, reparsed, CompareOptions(rtol=1e-12)) == []


@settings(max_examples=150, deadline=None)
@given(json_pairs())
def test_swapping_primary_and_candidate_reports_the_same_paths(pair):
    a, b = pair
    forward = compare_bodies(a, b, CompareOptions())
    backward = compare_bodies(b, a, CompareOptions())
    assert paths_of(forward) == paths_of(backward)
    assert (forward == []) == (a == b and orjson.dumps(a) == orjson.dumps(b))


@settings(max_examples=60, deadline=None)
@given(json_documents(), json_documents())
def test_swapping_unrelated_documents_reports_the_same_paths(a, b):
    assert paths_of(compare_bodies(a, b, CompareOptions())) == paths_of(
        compare_bodies(b, a, CompareOptions())
    )


finite = st.floats(min_value=-1e12, max_value=1e12, allow_nan=False).filter(lambda x: abs(x) > 1e-6)


@settings(max_examples=300, deadline=None)
@given(
    x=finite,
    rel=st.floats(min_value=1e-12, max_value=0.5),
    rtol=st.sampled_from([1e-9, 1e-6, 1e-3]),
    where=st.sampled_from(["leaf", "records", "series"]),
)
def test_numeric_change_found_above_tolerance_and_never_below(x, rel, rtol, where):
    y = x * (1 + rel)
    assume(y != x)
    deviation = abs(x - y) / max(abs(x), abs(y))
    assume(not math.isclose(deviation, rtol, rel_tol=1e-6))
    # The same change as a lone leaf, in a list of records (compared by column) and in a long
    # numeric series (compared with numpy): all three paths must agree.
    if where == "leaf":
        p, c, path = {"metrics": {"profit": x}}, {"metrics": {"profit": y}}, "metrics.profit"
    elif where == "records":
        p = [{"t": i, "close": x} for i in range(10)]
        c = [{"t": i, "close": y} for i in range(10)]
        path = "[0].close"
    else:
        p, c, path = {"s": [x] * 40}, {"s": [x] * 39 + [y]}, "s[39]"
    differences = compare_bodies(p, c, CompareOptions(rtol=rtol, atol=0.0))
    if deviation > rtol:
        assert paths_of(differences) == {path}
    else:
        assert differences == []


@settings(max_examples=120, deadline=None)
@given(json_pairs(), st.sampled_from(GLOBS))
def test_ignore_globs_hide_exactly_what_they_match(pair, glob):
    a, b = pair
    matcher = PathMatcher([glob])
    everything = compare_bodies(a, b, CompareOptions(), summarise=False)
    kept = compare_bodies(a, b, CompareOptions(ignore=(glob,)), summarise=False)
    assert found(kept) == {(d.path, d.kind) for d in everything if not matcher(d.path)}
    # Summarised, nothing a glob selects is ever shown either.
    assert not any(matcher(d.path) for d in compare_bodies(a, b, CompareOptions(ignore=(glob,))))


@settings(max_examples=100, deadline=None)
@given(st.lists(json_values(max_leaves=4), max_size=8), st.randoms(use_true_random=False))
def test_declared_unordered_lists_ignore_order_only(items, rng):
    shuffled = list(items)
    rng.shuffle(shuffled)
    options = CompareOptions(unordered=("items",))
    assert compare_bodies({"items": items}, {"items": shuffled}, options) == []
    if items:
        changed = [*shuffled[1:], "a value no generated list holds"]
        assert compare_bodies({"items": items}, {"items": changed}, options) != []


# --- findings ----------------------------------------------------------------------------------


def test_findings_read_like_a_reviewer_wrote_them():
    primary = {"results": {"metrics": {"sharpe_ratio": 1.2034}}, "price": 1,
               "items": [{"name": "a"}, {"name": "b"}, {"name": "c", "x": 1}]}
    candidate = {"results": {"metrics": {"sharpe_ratio": 1.1987}}, "price": "1",
                 "items": [{"name": "a"}, {"name": "b"}, {"x": 1}]}
    by_path = {d.path: d for d in compare_bodies(primary, candidate, CompareOptions(rtol=1e-9))}
    assert by_path["results.metrics.sharpe_ratio"].message == (
        "results.metrics.sharpe_ratio 1.2034 vs 1.1987 (rel 3.9e-03 > 1e-09)"
    )
    assert by_path["price"].kind is Kind.TYPE
    assert by_path["price"].message == 'price: type changed integer → string (1 vs "1")'
    assert by_path["items[2].name"].kind is Kind.MISSING
    assert by_path["items[2].name"].message == "items[2].name missing from the candidate's answer"
    assert all(d.severity is Severity.WARNING for d in by_path.values())


def test_nan_equals_nan_bool_is_not_int_and_1_is_1_0():
    assert compare_bodies({"x": math.nan}, {"x": math.nan}, CompareOptions()) == []
    assert compare_bodies({"x": [1, 2]}, {"x": [1.0, 2.0]}, CompareOptions()) == []
    (diff,) = compare_bodies({"x": True}, {"x": 1}, CompareOptions())
    assert diff.kind is Kind.TYPE and "boolean → integer" in diff.message
    # Hidden from Python's == inside containers too.
    (diff,) = compare_bodies({"x": [True, 2]}, {"x": [1, 2]}, CompareOptions())
    assert diff.path == "x[0]" and diff.kind is Kind.TYPE
    rows = [{"ok": True, "n": i} for i in range(10)]
    (diff,) = compare_bodies(rows, [{**r, "ok": 1} if r["n"] == 4 else r for r in rows],
                             CompareOptions())
    assert diff.path == "[4].ok" and diff.kind is Kind.TYPE


def test_infinities_and_huge_integers():
    assert compare_bodies([math.inf], [math.inf], CompareOptions(rtol=0.5)) == []
    assert compare_bodies([math.inf], [1e308], CompareOptions(rtol=0.5)) != []
    assert compare_bodies({"n": 2**70}, {"n": 2**70 + 1}, CompareOptions()) != []
    assert compare_bodies({"n": 2**70}, {"n": 2**70 + 1}, CompareOptions(rtol=1e-9)) == []
    # past float range the same: the tolerance computed exactly (in fractions), not given up on
    assert compare_bodies({"n": 10**400}, {"n": 10**400 + 1}, CompareOptions(rtol=1e-9)) == []
    assert compare_bodies({"n": 10**400}, {"n": 10**400 + 1}, CompareOptions()) != []
    assert compare_bodies({"n": 10**400}, {"n": 10**391}, CompareOptions(rtol=1e-9)) != []


def test_reordered_list_is_one_order_finding_unless_declared_unordered():
    a = {"s": [{"id": i, "v": i * 2} for i in range(4)]}
    b = {"s": a["s"][::-1]}
    (diff,) = compare_bodies(a, b, CompareOptions())
    assert diff.kind is Kind.ORDER and diff.path == "s"
    assert compare_bodies(a, b, CompareOptions(unordered=("s",))) == []


def test_shifted_list_is_described_by_what_was_removed_and_added():
    a = [{"t": i} for i in range(20)]
    b = [*a[1:], {"t": 20}]
    assert found(compare_bodies(a, b, CompareOptions())) == {("[0]", Kind.MISSING),
                                                            ("[19]", Kind.EXTRA)}
    b = [*a[:10], {"t": 99}, *a[10:]]
    assert found(compare_bodies(a, b, CompareOptions())) == {("[10]", Kind.EXTRA)}


def test_long_lists_are_described_by_length():
    (diff,) = compare_bodies(list(range(50)), list(range(40)), CompareOptions())
    assert diff.kind is Kind.LENGTH and "50 vs 40 items" in diff.message


def test_a_member_differing_in_many_items_is_one_counted_difference():
    candles = [{"timestamp": f"2024-05-01T{h:02d}:00:00Z", "close": 100.0 + h} for h in range(24)]
    drifted = [{"timestamp": f"2024-05-01T{h:02d}:30:00Z", "close": (100.0 + h) * 1.01}
               for h in range(24)]
    differences = compare_bodies({"candles": candles}, {"candles": drifted},
                                 CompareOptions(rtol=1e-9))
    assert paths_of(differences) == {"candles[0].timestamp", "candles[0].close"}
    assert all("24 of 24 items of candles differ at [*]." in d.message for d in differences)
    everything = compare_bodies({"candles": candles}, {"candles": drifted},
                                CompareOptions(rtol=1e-9), summarise=False)
    assert len(everything) == 48


def test_long_numeric_series_is_one_difference_at_the_first_point():
    curve = [10_000.0 + i for i in range(1_000)]
    moved = curve[:600] + [v + 0.5 for v in curve[600:]]
    (diff,) = compare_bodies({"equity": curve}, {"equity": moved}, CompareOptions(rtol=1e-9))
    assert diff.path == "equity[600]" and "400 of 1000 points differ" in diff.message
    assert compare_bodies({"equity": curve}, {"equity": moved}, CompareOptions(atol=1.0)) == []


# --- status, headers, non-JSON bodies ------------------------------------------------------------


def answer(body: bytes, content_type="application/json", status=200, **headers) -> Lifted:
    return lift(
        Response(status, [("content-type", content_type), *headers.items()], Body.from_bytes(body))
    )


def test_status_change_is_critical_and_volatile_headers_are_ignored():
    primary = answer(b"{}", **{"x-request-id": "a", "cache-control": "no-store",
                               "date": "Mon, 01 Jan 2024 00:00:00 GMT", "server": "nginx"})
    candidate = answer(b"{}", status=500, **{"x-request-id": "b", "cache-control": "max-age=5",
                                             "server": "uvicorn", "x-ratelimit-remaining": "9"})
    by_path = {d.path: d for d in compare_json(primary, candidate, CompareOptions())}
    assert by_path["@status"].severity is Severity.CRITICAL
    assert by_path["@status"].message == "status 200 vs 500"
    assert set(by_path) == {"@status", "@headers.cache-control"}
    assert by_path["@headers.cache-control"].severity is Severity.INFO
    assert compare_headers(primary, candidate,
                           CompareOptions(ignore_headers=("Cache-Control",))) == []
    assert compare_headers(primary, candidate, CompareOptions(compare_headers=False)) == []
    extra = CompareOptions(extra={"headers": ["server"]})
    assert "@headers.server" in paths_of(compare_headers(primary, candidate, extra))


def test_content_type_compared_by_media_type():
    json_utf8 = answer(b"{}", "application/json; charset=utf-8")
    assert compare_headers(answer(b"{}"), json_utf8, CompareOptions()) == []
    (diff,) = compare_headers(answer(b"{}"), answer(b"{}", "text/plain"), CompareOptions())
    assert diff.path == "@headers.content-type" and diff.severity is Severity.WARNING


def test_malformed_json_is_incomparable_text_and_binary_are_summarised():
    with pytest.raises(Incomparable, match="invalid JSON"):
        compare_json(answer(b'{"a": 1'), answer(b'{"a": 2}'), CompareOptions())
    assert compare_json(answer(b'{"a": 1'), answer(b'{"a": 1'), CompareOptions()) == []
    (diff,) = compare_json(answer(b"\xff\x00", "application/octet-stream"),
                           answer(b"\xff\x01", "application/octet-stream"), CompareOptions())
    assert diff.path == "" and "binary bodies differ: 2 bytes sha256:" in diff.message
    (diff,) = compare_json(answer(b"hello\nworld", "text/plain"),
                           answer(b"hello\nthere", "text/plain"), CompareOptions())
    assert diff.message == "text bodies differ at line 2: -world | +there"
    (diff,) = compare_json(answer(b'{"a": 1}'), answer(b""), CompareOptions())
    assert diff.kind is Kind.MISSING and "has no body" in diff.message


# --- lift ----------------------------------------------------------------------------------------


def lifted(body: bytes, headers=(("Content-Type", "application/json"),)) -> Lifted:
    return lift(Response(200, list(headers), Body.from_bytes(body)))


def test_lift_lowers_headers_into_lists_and_parses_json():
    answer_ = lift(Response(201, [("Set-Cookie", "a=1"), ("set-cookie", "b=2"),
                                  ("Content-Type", "application/problem+json")],
                            Body.from_bytes(b'{"detail": "x"}')))
    assert answer_.headers["set-cookie"] == ["a=1", "b=2"]
    assert (answer_.kind, answer_.body, answer_.status) == ("json", {"detail": "x"}, 201)


def test_lift_sniffs_json_without_a_json_content_type():
    assert lifted(b' [1, 2]', ()).kind == "json"
    assert lifted(b'{"a": 1}', [("content-type", "text/plain")]).kind == "json"
    not_json = lifted(b"[not json", [("content-type", "text/plain")])
    assert (not_json.kind, not_json.parse_error) == ("text", None)


def test_lift_keeps_what_does_not_parse():
    broken = lifted(b'{"a": ')
    assert broken.kind == "text" and broken.parse_error.startswith("invalid JSON")
    binary = lifted(b"\xff\xfe{", [("content-type", "application/octet-stream")])
    assert (binary.kind, binary.body) == ("bytes", b"\xff\xfe{")
    assert lifted(b"").kind == "empty"


def test_lift_falls_back_for_nan_and_huge_numbers():
    assert math.isnan(lifted(b'{"x": NaN}').body["x"])
    assert lifted(b'{"x": Infinity}').body["x"] == math.inf
    huge = 123456789012345678901234567890
    assert lifted(b'{"n": %d}' % huge).body["n"] == huge


def test_integers_past_float_range_are_compared_exactly():
    """parse_json keeps integers past 64 bits exact (orjson would round them); past float range
    they are compared as integers, within tolerance in fractions, never a comparator failure."""
    big = 10**400

    def answer(value: int) -> Lifted:
        return lift(Response(200, [("content-type", "application/json")],
                             Body.from_bytes(b'{"supply": %d}' % value)))

    (found,) = compare_json(answer(big), answer(big * 2 + 1), CompareOptions())
    assert found.path == "supply" and found.message.endswith("(rel 5.0e-01)")
    assert compare_json(answer(big), answer(big + 1), CompareOptions(rtol=1e-9)) == []
    assert len(compare_json(answer(big), answer(big + 1), CompareOptions())) == 1


BIG = "1" + "0" * 400  # past float range


@pytest.mark.parametrize("comparator", ["json", "backtest", "ohlcv", "order", "strategy", "auth"])
@pytest.mark.parametrize("primary,candidate,path", [
    (f'{{"metrics": {{"x": {BIG}}}}}', f'{{"metrics": {{"x": {BIG}2}}}}', "metrics.x"),
    (f'[{{"timestamp": 1714521600000, "open": {BIG}, "high": 1, "low": 1, "close": 1, '
     f'"volume": 1}}]', f'[{{"timestamp": 1714521600000, "open": {BIG}1, "high": 1, "low": 1, '
     f'"close": 1, "volume": 1}}]', "[0].open"),
    (f'{{"equity_curve": [{BIG}, {", ".join(["1.5"] * 200)}]}}',
     f'{{"equity_curve": [{BIG}1, {", ".join(["1.5"] * 200)}]}}', "equity_curve[0]"),
])
def test_every_comparator_finds_a_change_past_float_range(comparator, primary, candidate, path):
    """Scalars, candle columns and long curves (numpy's path) alike: the change is found where
    it is, never a comparator failure on the integer."""
    from harness.diff.base import get

    def answer(text: str) -> Lifted:
        return lift(Response(200, [("content-type", "application/json")],
                             Body.from_bytes(text.encode())))

    found = get(comparator)(answer(primary), answer(candidate), CompareOptions())
    assert [d.path for d in found] == [path]
    assert found[0].message.endswith(("(rel 9.0e-01)", "(rel 9.0e-01 > 1e-09)")), found[0].message


@pytest.mark.parametrize("literal", [2**64, 10**19 * 3, -(2**63) - 1, -(10**19) + 1, -(10**30)])
def test_integers_orjson_would_round_are_read_exactly(literal):
    """orjson reads integers past 2**64 - 1 and below -2**63 as floats; parse_json reads such
    bodies with Python's json, so that the last digit still counts."""
    from harness.diff.lift import parse_json

    for value in (literal, literal + 1):
        assert parse_json(b'{"n": [1.5, %d]}' % value) == {"n": [1.5, value]}
    assert parse_json(b"[%d]" % (2**63 - 1)) == [2**63 - 1]  # orjson's own range: orjson
