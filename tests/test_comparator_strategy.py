"""Properties of the `strategy` comparator: CRUD answers, lists in any order, versions in order."""

from __future__ import annotations

import copy
import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from harness.diff.base import CompareOptions, get
from harness.model import Kind
from harness.testing.answers import answer, iso, strategies, strategy_lists

EXAMPLES = settings(max_examples=100, deadline=None)


def diff(primary, candidate, **options):
    return get("strategy")(answer(primary), answer(candidate), CompareOptions(**options))


def paths_of(differences):
    return {d.path for d in differences}


@EXAMPLES
@given(st.one_of(strategies(), strategy_lists()))
def test_reflexive(body):
    assert diff(body, copy.deepcopy(body)) == []


@EXAMPLES
@given(strategy_lists(), st.randoms(use_true_random=False))
def test_invariant_to_ids_timestamps_and_list_order(items, rng):
    """Another database: other ids, other write times, another listing order."""
    other = copy.deepcopy(items)
    for n, item in enumerate(other):
        item["id"] = 50_000 + n
        item["created_at"] = item["updated_at"] = iso(n)
        for version in item["versions"]:
            version["created_at"] = iso(n)
    rng.shuffle(other)
    assert diff(items, other) == []


@st.composite
def changed_lists(draw):
    """A list, a changed and shuffled copy, and the paths the changes must be found at."""
    items = draw(strategy_lists(max_size=5).filter(bool))
    other = copy.deepcopy(items)
    expected = set()
    i = draw(st.integers(0, len(items) - 1))
    what = draw(st.sampled_from(["parameter", "version", "flag", "drop", "add"]))
    if what == "parameter":
        other[i]["parameters"]["lookback"] += 1
        expected.add(f"[{i}].parameters.lookback")
    elif what == "version":
        other[i]["versions"][0]["parameters"]["threshold"] += 0.5
        expected.add(f"[{i}].versions[0].parameters.threshold")
    elif what == "flag":
        other[i]["is_active"] = not other[i]["is_active"]
        expected.add(f"[{i}].is_active")
    elif what == "drop":
        del other[i]
        expected.add(f"[{i}]")
    else:
        other.append({**copy.deepcopy(items[i]), "name": "zz-new", "id": 99_999})
    order = list(range(len(other)))
    draw(st.randoms(use_true_random=False)).shuffle(order)
    shuffled = [other[j] for j in order]
    if what == "add":
        expected.add(f"[{order.index(len(other) - 1)}]")
    return items, shuffled, expected


@EXAMPLES
@given(changed_lists())
def test_every_change_is_found_at_its_path(case):
    items, other, expected = case
    assert paths_of(diff(items, other)) == expected


@EXAMPLES
@given(changed_lists())
def test_symmetric_up_to_list_positions(case):
    items, other, _ = case
    forward, backward = diff(items, other), diff(other, items)
    assert sorted(d.kind for d in forward) == sorted(
        {Kind.MISSING: Kind.EXTRA, Kind.EXTRA: Kind.MISSING}.get(d.kind, d.kind) for d in backward
    )
    strip = lambda d: d.path.split("]", 1)[-1]  # noqa: E731
    assert sorted(map(strip, forward)) == sorted(map(strip, backward))


@EXAMPLES
@given(strategies(), st.floats(1e-13, 1e-2), st.randoms(use_true_random=False))
def test_monotonic_in_tolerance(item, noise, rng):
    other = copy.deepcopy(item)
    other["parameters"]["threshold"] *= 1 + rng.uniform(-noise, noise)
    for version in other["versions"]:
        version["parameters"]["threshold"] *= 1 + rng.uniform(-noise, noise)
    found = [paths_of(diff(item, other, rtol=r)) for r in (0.0, 1e-12, 1e-9, 1e-6, 1e-3, 1.0)]
    for tighter, looser in itertools.pairwise(found):
        assert looser <= tighter
    assert found[-1] == set()


def test_versions_compared_in_order_and_ids_on_request():
    item = {
        "id": 1,
        "name": "Mean Reversion",
        "parameters": {"lookback": 14},
        "version": 2,
        "versions": [
            {"version": 1, "parameters": {"lookback": 10}},
            {"version": 2, "parameters": {"lookback": 14}},
        ],
    }
    swapped = {**item, "versions": item["versions"][::-1]}
    # Versions are compared in order: swapping them is one order finding at `versions`.
    assert ("versions", Kind.ORDER) in {(d.path, d.kind) for d in diff(item, swapped)}
    renumbered = {**item, "id": 7}
    assert diff(item, renumbered) == []
    (found,) = diff(item, renumbered, extra={"compare_ids": True})
    assert found.path == "id"
    (missing,) = diff([item], [])
    assert missing.kind is Kind.MISSING and '"Mean Reversion"' in missing.message
