"""Properties of the `order` comparator: the order's intent, and the dry-run proof."""

from __future__ import annotations

import copy
import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from harness.diff.base import CompareOptions, get
from harness.model import Kind, Severity
from harness.testing.answers import answer, dry_run_answers, order_intents, orders

EXAMPLES = settings(max_examples=120, deadline=None)
NUMBERS = ("amount", "price")


def diff(primary, candidate, status=(200, 200), **options):
    return get("order")(
        answer(primary, status[0]), answer(candidate, status[1]), CompareOptions(**options)
    )


def paths_of(differences):
    return {d.path for d in differences}


@EXAMPLES
@given(st.one_of(orders(), dry_run_answers()))
def test_reflexive(body):
    assert diff(body, copy.deepcopy(body)) == []


@EXAMPLES
@given(orders(), st.text("0123456789abcdef", min_size=8, max_size=8), st.integers(0, 10**12))
def test_invariant_to_order_ids_and_timestamps(order, new_id, moment):
    other = {**order, "id": new_id, "timestamp": moment, "datetime": "2030-01-01T00:00:00Z"}
    assert diff(order, other) == []


@EXAMPLES
@given(order_intents())
def test_real_order_against_its_dry_run_echo_matches(intent):
    """Shadow mode: the primary placed the user's order, the candidate echoed a dry run."""
    real = {"id": "X1", **intent, "status": "open", "filled": 0.0, "timestamp": 1}
    echo = {"status": "dry_run", "order": dict(intent)}
    assert diff(real, echo) == []


@EXAMPLES
@given(dry_run_answers())
def test_a_candidate_that_does_not_prove_the_dry_run_is_critical(echo):
    real = {"id": "X1", **echo["order"], "status": "open"}
    found = diff(echo, real)
    critical = [d for d in found if d.severity is Severity.CRITICAL]
    assert [d.path for d in critical] == ["status"]
    assert "a real order may have been placed on the candidate" in critical[0].message
    failed = diff(echo, {"detail": "exchange unavailable"}, status=(200, 502))
    assert any(d.severity is Severity.CRITICAL for d in failed)


def test_the_proof_the_comparator_reads_is_the_primary_answers_never_an_option():
    """What a dry-run mirror owes is declared on its route (checked by the mirror): two real
    orders alike are a match here, whatever the options carry."""
    order = {"symbol": "BTC/USDT", "side": "buy", "amount": 1.0, "status": "open"}
    assert diff(order, order, extra={"require_dry_run": True}) == []
    echo = {"status": "dry_run", "order": order}
    assert [d.severity for d in diff(echo, order)] == [Severity.CRITICAL]


@st.composite
def changed_intents(draw):
    """A dry-run echo and a copy with one intent field changed; the expected path."""
    echo = draw(dry_run_answers())
    order = echo["order"]
    field = draw(
        st.sampled_from(
            [
                f
                for f in (
                    "amount",
                    "price",
                    "side",
                    "symbol",
                    "type",
                    "exchange",
                    "time_in_force",
                    "post_only",
                )
                if f in order
            ]
        )
    )
    other = copy.deepcopy(echo)
    value = order[field]
    if field in NUMBERS:
        other["order"][field] = value * draw(st.sampled_from([1.000001, 0.5, 2.0]))
    elif isinstance(value, bool):
        other["order"][field] = not value
    else:
        other["order"][field] = value + "-x"
    return echo, other, f"order.{field}"


@EXAMPLES
@given(changed_intents())
def test_every_intent_change_is_found_at_its_path(case):
    echo, other, path = case
    assert paths_of(diff(echo, other)) == {path}


@EXAMPLES
@given(changed_intents())
def test_symmetric(case):
    echo, other, _ = case
    assert paths_of(diff(echo, other)) == paths_of(diff(other, echo))


@EXAMPLES
@given(dry_run_answers(), st.floats(1e-13, 1e-2), st.randoms(use_true_random=False))
def test_monotonic_in_tolerance(echo, noise, rng):
    other = copy.deepcopy(echo)
    for field in NUMBERS:
        if field in other["order"]:
            other["order"][field] *= 1 + rng.uniform(-noise, noise)
    found = [paths_of(diff(echo, other, rtol=r)) for r in (0.0, 1e-12, 1e-9, 1e-6, 1e-3, 1.0)]
    for tighter, looser in itertools.pairwise(found):
        assert looser <= tighter
    assert found[-1] == set()


def test_messages_read_like_a_review():
    echo = {
        "status": "dry_run",
        "order": {"symbol": "BTC/USDT", "side": "buy", "amount": 0.12345678},
    }
    other = {
        "status": "dry_run",
        "order": {"symbol": "BTC/USDT", "side": "buy", "amount": 0.123457},
    }
    (found,) = diff(echo, other)
    assert found.message == "order.amount 0.12345678 vs 0.123457 (rel 1.8e-06 > 1e-09)"
    as_text = {"status": "dry_run", "order": {**echo["order"], "amount": "0.12345678"}}
    (typed,) = diff(echo, as_text)
    assert typed.kind is Kind.TYPE and "type changed number → string" in typed.message
    risk = copy.deepcopy(echo)
    risk["order"]["risk_params"] = {"stop_loss_pct": 0.02}
    other_risk = copy.deepcopy(risk)
    other_risk["order"]["risk_params"]["stop_loss_pct"] = 0.03
    assert paths_of(diff(risk, other_risk)) == {"order.risk_params.stop_loss_pct"}
