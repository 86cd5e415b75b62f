"""The engine: verdicts, incomparable inputs, and noise learned from the secondary."""

from __future__ import annotations

import json
import random
import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from harness.compare.engine import Engine
from harness.model import Body, Exchange, Request, Response, Verdict

JSON = [("content-type", "application/json")]


def answer(payload, status=200, **kw) -> Response:
    return Response(status, JSON, Body.from_bytes(json.dumps(payload).encode()), 1.0, **kw)


def exchange(primary, candidate, secondary=None, path="/api/v1/settings/dry_run") -> Exchange:
    return Exchange(
        request=Request("GET", path),
        primary=answer(primary),
        candidate=candidate if isinstance(candidate, Response) else answer(candidate),
        secondary=answer(secondary) if secondary is not None else None,
    )


def test_match_and_mismatch():
    engine = Engine()
    assert engine.judge(exchange({"dry_run": True}, {"dry_run": True})).verdict is Verdict.MATCH
    judged = engine.judge(exchange({"dry_run": True}, {"dry_run": False}))
    assert judged.verdict is Verdict.MISMATCH
    assert judged.group == "trade" and judged.route == "GET /api/v1/settings/dry_run"


def test_candidate_errors_skips_and_incomparable_bodies():
    engine = Engine()
    down = exchange({}, Response(error="connection refused"))
    assert engine.judge(down).verdict is Verdict.CANDIDATE_ERROR
    assert down.reason == "connection refused"
    skipped = exchange({}, {})
    skipped.mirror = "skipped:unsafe method POST"
    assert engine.judge(skipped).verdict is Verdict.SKIPPED
    broken = exchange({}, {})
    broken.candidate.body = Body.from_bytes(b'{"half": ')
    judged = engine.judge(broken)
    assert judged.verdict is Verdict.INCOMPARABLE and "invalid JSON" in judged.reason


def test_truncated_bodies_compare_by_digest():
    engine = Engine()
    same = exchange({"x": "a" * 100}, {"x": "a" * 100})
    for response in (same.primary, same.candidate):
        response.body.truncated = True
    assert engine.judge(same).verdict is Verdict.MATCH
    same.candidate.body.sha256 = "0" * 64
    assert engine.judge(same).verdict is Verdict.INCOMPARABLE


def test_volatile_differences_seen_on_the_secondary_are_noise_not_dropped():
    engine = Engine()
    for _ in range(20):
        ids = [str(uuid.uuid4()) for _ in range(3)]
        judged = engine.judge(exchange(
            {"request_id": ids[0], "value": 1},
            {"request_id": ids[1], "value": 1},
            {"request_id": ids[2], "value": 1},
        ))
        assert judged.verdict is Verdict.NOISE_ONLY
        assert [d.path for d in judged.differences] == ["request_id"]
        assert judged.differences[0].noise
    summary = engine.noise.summary()["GET /api/v1/settings/dry_run"]
    assert summary["request_id"]["rate"] == 1.0


def test_a_real_change_next_to_noise_is_still_a_mismatch():
    engine = Engine()
    judged = engine.judge(exchange(
        {"request_id": str(uuid.uuid4()), "value": 1},
        {"request_id": str(uuid.uuid4()), "value": 2},
        {"request_id": str(uuid.uuid4()), "value": 1},
    ))
    assert judged.verdict is Verdict.MISMATCH
    assert {d.path: d.noise for d in judged.differences} == {"request_id": True, "value": False}


def test_learned_noise_explains_later_exchanges_without_a_secondary():
    engine = Engine()
    for _ in range(10):
        engine.judge(exchange({"ts": "2024-01-01T00:00:01Z"}, {"ts": "2024-01-01T00:00:02Z"},
                              {"ts": "2024-01-01T00:00:03Z"}))
    judged = engine.judge(exchange({"ts": "2024-01-01T00:00:01Z"}, {"ts": "2024-01-01T00:00:09Z"}))
    assert judged.verdict is Verdict.NOISE_ONLY


def test_unseeded_random_content_makes_the_route_untestable():
    engine = Engine()
    rng = random.Random(1)
    for _ in range(5):
        judged = engine.judge(exchange(
            {"score": rng.random()}, {"score": rng.random()}, {"score": rng.random()}
        ))
        assert judged.verdict is Verdict.UNTESTABLE
        assert "score" in judged.reason
    assert "score" in engine.noise.untestable_routes()["GET /api/v1/settings/dry_run"]
    rules = engine.noise.export_ignore_rules(engine.config.routes)
    assert 'path = "/api/v1/settings/dry_run"' in rules and '"score",' in rules


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.sampled_from(["a", "b", "c"]), st.integers(0, 3), min_size=1),
       st.sampled_from(["a", "b", "c"]))
def test_noise_marks_exactly_the_paths_the_secondary_shows(payload, noisy_key):
    engine = Engine()
    primary = {**payload, noisy_key: str(uuid.uuid4())}
    secondary = {**payload, noisy_key: str(uuid.uuid4())}
    candidate = {**payload, noisy_key: str(uuid.uuid4())}
    judged = engine.judge(exchange(primary, candidate, secondary))
    assert {d.path for d in judged.differences if d.noise} == {noisy_key}
    assert judged.verdict is Verdict.NOISE_ONLY


def test_a_broken_comparator_makes_the_exchange_incomparable(monkeypatch):
    from comparators import base

    def explode(*_):
        raise RuntimeError("bug")

    monkeypatch.setitem(base._REGISTRY, "json", explode)
    judged = Engine().judge(exchange({}, {"a": 1}))
    assert judged.verdict is Verdict.INCOMPARABLE and "bug" in judged.reason
