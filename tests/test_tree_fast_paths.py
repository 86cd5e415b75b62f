"""The generic walk's C-level shortcuts must find what the plain item-by-item checks find: the
items that are not `same`, the numbers past the tolerance (in Python for few, numpy for many,
finite tables in fewer numpy calls),
the records compared member by member, and the path matcher that is its own cache."""

from __future__ import annotations

import copy
import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.diff.base import CompareOptions
from harness.diff.paths import PathMatcher, matcher
from harness.diff.tree import (
    _column_mismatches,
    _Differ,
    _finite_mismatches,
    _mismatch_mask,
    _unequal_items,
    compare_bodies,
    compare_many,
    same,
)
from harness.diff.values import within
from harness.testing.requests import json_values

NAN = float("nan")
# Values that tell `same` from `==`: 1 vs 1.0 vs true, -0.0, NaN, containers.
TRICKY = st.sampled_from([0, 1, 1.0, True, False, -0.0, 0.0, None, NAN, "1", [1], [1.0], {"a": 1},
                          {"a": 1.0}, {"a": 1, "b": 2}, {"b": 2, "a": 1}])


@st.composite
def list_pairs(draw: st.DrawFn) -> tuple[list, list]:
    """A list and a variant: items shared (the same object), copied, or replaced."""
    first = draw(st.lists(st.one_of(TRICKY, json_values(max_leaves=6)), max_size=12))
    second = []
    for item in first:
        how = draw(st.integers(0, 3))
        second.append(item if how == 0 else copy.deepcopy(item) if how == 1 else
                      draw(st.one_of(TRICKY, json_values(max_leaves=6))))
    return first, second


@settings(max_examples=300, deadline=None)
@given(list_pairs())
def test_unequal_items_are_the_items_that_are_not_same(pair):
    a, b = pair
    assert _unequal_items(a, b) == [i for i, (x, y) in enumerate(zip(a, b, strict=True))
                                    if not same(x, y)]


NUMBERS = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                    st.integers(-(2**53) + 1, 2**53 - 1),
                    st.sampled_from([0.02, 0.0200001, 1e308, -1e308, 5e-324]))


@st.composite
def number_columns(draw: st.DrawFn) -> tuple[list, list]:
    first = draw(st.lists(NUMBERS, min_size=1, max_size=30))
    second = [draw(st.sampled_from([x, x * 1.000001 if isinstance(x, float) else x + 1,
                                    draw(NUMBERS)])) for x in first]
    return first, second


@settings(max_examples=400, deadline=None)
@given(number_columns(), st.sampled_from([0.0, 1e-9, 1e-6, 0.5]),
       st.sampled_from([0.0, 1e-12, 1.0]))
def test_numbers_compared_in_python_are_those_numpy_finds(columns, rtol, atol):
    a, b = columns
    unequal = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
    found = _finite_mismatches(a, b, unequal, rtol, atol)
    mask, _ = _mismatch_mask(np.array(a, dtype=float), np.array(b, dtype=float), rtol, atol)
    table = _column_mismatches(np.array([a, b], dtype=float), np.array([b, a], dtype=float),
                               rtol, atol)
    assert table == [np.flatnonzero(mask).tolist()] * 2  # numpy's one call for a whole table
    if found is None:  # a value that is not finite, or too big to add up: left to numpy
        sums = [sum(float(side[i]) for i in unequal) for side in (a, b)]
        assert not all(map(math.isfinite, sums))
    else:
        assert found == np.flatnonzero(mask).tolist()


@settings(max_examples=300, deadline=None)
@given(number_columns())
def test_numbers_without_a_tolerance_differ_where_numpy_finds(columns):
    a, b = columns
    found: dict[int, list[int]] = {}
    left = _Differ._exact_numbers([(a, b)], [0], found)
    mask, _ = _mismatch_mask(np.array(a, dtype=float), np.array(b, dtype=float), 0.0, 0.0)
    if left:  # a value that is not finite, or a sum too big: left to numpy
        assert not (math.isfinite(sum(a)) and math.isfinite(sum(b))) and not found
    else:
        assert found == {0: np.flatnonzero(mask).tolist()}


TABLE_ROW = st.fixed_dictionaries({
    "s": st.one_of(st.sampled_from(["a", "b", ""]), TRICKY), "t": st.sampled_from(["x", "y"]),
    "v": NUMBERS, "w": NUMBERS,
})


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(TABLE_ROW, TABLE_ROW), min_size=8, max_size=24))
def test_a_table_without_a_tolerance_finds_what_each_item_finds(pairs):
    # Each row numbered the same on both sides: no item of one side can be another's.
    pairs = [({**a, "i": i}, {**b, "i": i}) for i, (a, b) in enumerate(pairs)]
    options = CompareOptions()
    whole = compare_bodies([a for a, _ in pairs], [b for _, b in pairs], options,
                           summarise=False)
    each = [d for i, (a, b) in enumerate(pairs)
            for d in compare_bodies(a, b, options, path=f"[{i}]")]
    assert sorted((d.path, d.kind, d.message) for d in whole) == sorted(
        (d.path, d.kind, d.message) for d in each)


@settings(max_examples=400, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True),
       st.sampled_from([None, 1.000001, 1 + 5e-10, -1.0, 0.0]),
       st.floats(allow_nan=True, allow_infinity=True),
       st.sampled_from([0.0, 1e-9, 1e-6]), st.sampled_from([0.0, 1e-12, 1.0]))
def test_two_floats_of_an_object_differ_where_within_says(x, factor, other, rtol, atol):
    y = other if factor is None else x * factor
    found = compare_bodies({"v": x, "w": "a"}, {"v": y, "w": "b"},
                           CompareOptions(rtol=rtol, atol=atol))
    assert [d.path for d in found] == ["v", "w"][within(x, y, rtol, atol):]


RECORD = st.fixed_dictionaries({
    "id": st.integers(0, 5), "name": st.sampled_from(["a", "b"]),
    "p": st.fixed_dictionaries({"x": NUMBERS, "y": TRICKY}), "t": TRICKY, "v": NUMBERS,
})


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(RECORD, RECORD), min_size=8, max_size=20),
       st.sampled_from([(), ("**.t",), ("[2].p",), ("**.p.x",), ("[*].v",)]))
def test_records_compared_member_by_member_find_what_each_walk_finds(pairs, ignore):
    options = CompareOptions(ignore=ignore, rtol=1e-9, atol=0.0)
    items = [(a, b, f"[{i}]") for i, (a, b) in enumerate(pairs)]
    each = [d for a, b, path in items for d in compare_bodies(a, b, options, path=path)]
    together = compare_many(items, options)
    assert [(d.path, d.kind, d.message) for d in together] == [
        (d.path, d.kind, d.message) for d in each]


def test_a_matcher_is_its_own_cache_and_answers_past_its_size():
    globs = matcher(["**.id", "metrics"])
    assert globs is matcher(["**.id", "metrics"]) and globs == globs and hash(globs) == id(globs)
    assert globs("trades[3].id") and globs("metrics.sharpe") and not globs("trades[3].idx")
    assert globs != PathMatcher(["**.id", "metrics"])  # one per glob tuple: identity is equality
    assert bool(globs) and not PathMatcher([]) and not PathMatcher([])("anything")
    many = PathMatcher(["**.x"])
    for i in range(PathMatcher._MAX_CACHED + 10):
        assert many(f"a[{i}].x") and not many(f"a[{i}].y")
    assert len(many) == PathMatcher._MAX_CACHED  # the cache is bounded; answers still right
