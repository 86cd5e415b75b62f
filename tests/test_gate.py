"""The gate rule: exchanges skipped by policy are named, never failed as missing data; the minimum
count applies to a migration group, not to each of its routes."""

from __future__ import annotations

from harness.judge.gate import MAX_SKIP_REASONS, GateRule, Tally, evaluate


def record(verdict: str, route: str = "GET /api/x", reason: str | None = None,
           differences: list[dict] | None = None) -> dict:
    method, _, path = route.partition(" ")
    return {"request": {"method": method, "path": path}, "route": route, "verdict": verdict,
            "reason": reason, "differences": differences or []}


def tally_of(*records: dict) -> Tally:
    tally = Tally()
    for one in records:
        tally.add(one)
    return tally


NEVER = record("skipped", "GET /api/trades/orders/{order_id}", "route never mirrored")


def test_a_route_never_mirrored_by_policy_is_reported_not_failed():
    route = tally_of(NEVER, NEVER)
    result = evaluate(route, GateRule(0.0, 5).for_route())
    assert result.passed
    assert result.reasons == (
        "no data by policy: nothing was sent to the candidate, skipped by policy: 2 "
        "(route never mirrored x2)",)


def test_a_group_with_only_skipped_exchanges_is_untestable_with_its_reason():
    group = tally_of(NEVER, record("skipped", "POST /api/trades/orders", "unsafe method POST"))
    result = evaluate(group, GateRule(0.0, 1))
    assert result.status == "untestable" and not result.passed
    assert "no data by policy" in result.reasons[0]
    assert "route never mirrored x1" in result.reasons[0]
    assert "unsafe method POST x1" in result.reasons[0]
    assert "min_exchanges = 0" in result.reasons[1]
    # A group whose gate asks for no minimum passes, still saying why nothing was compared.
    relaxed = evaluate(group, GateRule(0.0, 0))
    assert relaxed.passed and "no data by policy" in relaxed.reasons[0]


def test_an_empty_tally_is_still_no_data():
    assert evaluate(Tally(), GateRule(0.0, 0)).status == "no data"


def test_skipped_exchanges_neither_fail_nor_count_towards_the_minimum():
    group = tally_of(record("match"), record("match", "GET /api/y"), NEVER, NEVER, NEVER)
    assert group.compared == 2 and group.skipped == 3 and group.failure_rate == 0.0
    assert evaluate(group, GateRule(0.0, 2)).passed
    short = evaluate(group, GateRule(0.0, 3))
    assert short.status == "not ready"
    assert short.reasons[0] == "only 2 compared exchanges (gate needs 3)"
    assert short.reasons[-1] == "skipped by policy: 3 (route never mirrored x3)"


def test_the_minimum_count_applies_to_the_group_not_to_each_route():
    rule = GateRule(0.0, 2)
    first, second = tally_of(record("match")), tally_of(record("match", "GET /api/y"))
    for route in (first, second):
        assert not evaluate(route, rule).passed  # one compared exchange each: short of 2
        assert evaluate(route, rule.for_route()).passed
    group = Tally()
    group.merge(first)
    group.merge(second)
    assert evaluate(group, rule).passed


def test_a_failing_route_still_fails_with_skipped_exchanges_beside_it():
    bad = record("mismatch", differences=[{"path": "amount", "message": "amount 1 vs 2",
                                           "severity": "critical"}])
    result = evaluate(tally_of(bad, NEVER), GateRule(0.0, 1).for_route())
    assert result.status == "not ready"
    assert "1 critical finding(s)" in result.reasons
    assert result.reasons[-1].startswith("skipped by policy: 1")


def test_skip_reasons_are_bounded_and_survive_merging():
    tally = Tally()
    for number in range(MAX_SKIP_REASONS + 5):
        other = tally_of(record("skipped", reason=f"breaker open (reason {number})"))
        tally.merge(other)
    assert tally.skipped == MAX_SKIP_REASONS + 5
    assert len(tally.skip_reasons) == MAX_SKIP_REASONS + 1
    assert tally.skip_reasons["(other reasons)"] == 5
    assert tally.skipped_line().endswith(" ...)")
