"""The generic `json` comparator: properties over generated JSON, and the readable findings."""

from __future__ import annotations

import copy
import math

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from comparators.base import CompareOptions, Incomparable, Lifted
from comparators.generic import compare_bodies, compare_headers, compare_json
from comparators.paths import PathMatcher
from harness.lift import lift
from harness.model import Body, Kind, Response
from harness.strategies import json_documents, json_values


def paths_of(differences) -> set[str]:
    return {d.path for d in differences}


@settings(max_examples=300, deadline=None)
@given(json_values())
def test_a_value_matches_itself(value):
    assert compare_bodies(value, copy.deepcopy(value), CompareOptions()) == []


@settings(max_examples=300, deadline=None)
@given(json_documents(), json_documents())
def test_swapping_reports_the_same_paths(a, b):
    forward = compare_bodies(a, b, CompareOptions())
    backward = compare_bodies(b, a, CompareOptions())
    assert paths_of(forward) == paths_of(backward)


finite = st.floats(min_value=-1e12, max_value=1e12, allow_nan=False).filter(lambda x: abs(x) > 1e-6)


@settings(max_examples=300, deadline=None)
@given(
    x=finite,
    rel=st.floats(min_value=1e-12, max_value=0.5),
    rtol=st.sampled_from([1e-9, 1e-6, 1e-3]),
)
def test_numeric_change_found_above_tolerance_and_never_below(x, rel, rtol):
    y = x * (1 + rel)
    assume(y != x)
    deviation = abs(x - y) / max(abs(x), abs(y))
    assume(not math.isclose(deviation, rtol, rel_tol=1e-6))
    found = compare_bodies(
        {"metrics": {"profit": x}}, {"metrics": {"profit": y}}, CompareOptions(rtol=rtol, atol=0.0)
    )
    if deviation > rtol:
        assert paths_of(found) == {"metrics.profit"}
    else:
        assert found == []


@settings(max_examples=200, deadline=None)
@given(json_documents(), json_documents(), st.sampled_from(["*", "a", "a.*", "**.b", "[*]"]))
def test_ignore_globs_hide_exactly_what_they_match(a, b, glob):
    everything = compare_bodies(a, b, CompareOptions())
    kept = compare_bodies(a, b, CompareOptions(ignore=(glob,)))
    matcher = PathMatcher([glob])
    expected = {d.path for d in everything if not matcher(d.path)}
    # Ignoring never adds findings; everything kept is unselected by the glob.
    assert paths_of(kept) <= paths_of(everything) | expected
    assert not any(matcher(p) for p in paths_of(kept))
    assert expected <= paths_of(kept) | {d.path for d in everything if d.kind is Kind.ORDER}


def test_findings_read_like_a_reviewer_wrote_them():
    primary = {"results": {"metrics": {"sharpe_ratio": 1.2034}}, "n": 1, "items": [{"name": "a"}]}
    candidate = {"results": {"metrics": {"sharpe_ratio": 1.1987}}, "n": "1", "items": []}
    found = {d.path: d for d in compare_bodies(primary, candidate, CompareOptions(rtol=1e-9))}
    assert found["results.metrics.sharpe_ratio"].message == (
        "results.metrics.sharpe_ratio 1.2034 vs 1.1987 (rel 3.9e-03 > 1e-09)"
    )
    assert found["n"].kind is Kind.TYPE and "int → str" in found["n"].message
    assert found["items[0]"].kind is Kind.MISSING


def test_nan_equals_nan_and_bool_is_not_int():
    assert compare_bodies({"x": math.nan}, {"x": math.nan}, CompareOptions()) == []
    (diff,) = compare_bodies({"x": True}, {"x": 1}, CompareOptions())
    assert diff.kind is Kind.TYPE


def test_reordered_list_is_one_order_finding_unless_declared_unordered():
    a, b = {"s": [1, 2, 3, 4]}, {"s": [4, 3, 2, 1]}
    (diff,) = compare_bodies(a, b, CompareOptions())
    assert diff.kind is Kind.ORDER and diff.path == "s"
    assert compare_bodies(a, b, CompareOptions(unordered=("s",))) == []


def test_long_lists_are_described_by_length():
    (diff,) = compare_bodies(list(range(50)), list(range(40)), CompareOptions())
    assert diff.kind is Kind.LENGTH and "50 vs 40" in diff.message


def answer(body: bytes, content_type="application/json", status=200, **headers) -> Lifted:
    return lift(
        Response(status, [("content-type", content_type), *headers.items()], Body.from_bytes(body))
    )


def test_status_change_is_critical_and_volatile_headers_are_ignored():
    primary = answer(b"{}", **{"x-request-id": "a", "cache-control": "no-store"})
    candidate = answer(b"{}", status=500, **{"x-request-id": "b", "cache-control": "max-age=5"})
    found = {d.path: d for d in compare_json(primary, candidate, CompareOptions())}
    assert str(found["@status"].severity) == "critical"
    assert "@headers.cache-control" in found and "@headers.x-request-id" not in found
    assert (
        compare_headers(primary, candidate, CompareOptions(ignore_headers=("cache-control",))) == []
    )


def test_malformed_json_is_incomparable_binary_compared_by_digest():
    with pytest.raises(Incomparable, match="invalid JSON"):
        compare_json(answer(b'{"a": 1'), answer(b'{"a": 2}'), CompareOptions())
    (diff,) = compare_json(
        answer(b"\xff\x00", "application/octet-stream"),
        answer(b"\xff\x01", "application/octet-stream"),
        CompareOptions(),
    )
    assert "binary bodies differ" in diff.message
    (diff,) = compare_json(
        answer(b"hello\nworld", "text/plain"),
        answer(b"hello\nthere", "text/plain"),
        CompareOptions(),
    )
    assert "text bodies differ" in diff.message
