"""The engine: verdicts, inputs that cannot be compared, and noise learned from the secondary."""

from __future__ import annotations

import base64
import json
import random
import time
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.config import NoiseSettings, load_config
from harness.judge.engine import Engine
from harness.judge.gate import GateRule, Tally, evaluate
from harness.model import Body, Exchange, Request, Response, Severity, Verdict

JSON = [("content-type", "application/json")]
SETTINGS = "/api/v1/settings/dry_run"
NEUTRAL_KEYS = ("alpha", "beta", "gamma", "delta", "omega")
CONFIG = load_config()


def answer(payload, status=200, **kw) -> Response:
    return Response(status, JSON, Body.from_bytes(json.dumps(payload).encode()), 1.0, **kw)


def exchange(primary, candidate, secondary=None, path=SETTINGS, method="GET") -> Exchange:
    return Exchange(
        request=Request(method, path),
        primary=primary if isinstance(primary, Response) else answer(primary),
        candidate=candidate if isinstance(candidate, Response) else answer(candidate),
        secondary=(secondary if isinstance(secondary, Response) or secondary is None
                   else answer(secondary)),
    )


# --- verdicts -----------------------------------------------------------------------------------


def test_match_and_mismatch_fill_route_group_and_comparator():
    engine = Engine()
    assert engine.judge(exchange({"dry_run": True}, {"dry_run": True})).verdict is Verdict.MATCH
    judged = engine.judge(exchange({"dry_run": True}, {"dry_run": False}))
    assert judged.verdict is Verdict.MISMATCH and judged.reason is None
    assert (judged.route, judged.group, judged.comparator) == (
        "GET /api/v1/settings/dry_run", "trade", "json")
    assert [d.path for d in judged.differences] == ["dry_run"]


def test_candidate_errors_skips_and_incomparable_bodies():
    engine = Engine()
    down = engine.judge(exchange({}, Response(error="connection refused")))
    assert (down.verdict, down.reason) == (Verdict.CANDIDATE_ERROR, "connection refused")
    missing = exchange({}, {})
    missing.candidate = None
    assert engine.judge(missing).verdict is Verdict.CANDIDATE_ERROR
    skipped = exchange({}, {})
    skipped.mirror = "skipped:unsafe method POST"
    judged = engine.judge(skipped)
    assert (judged.verdict, judged.reason) == (Verdict.SKIPPED, "unsafe method POST")
    broken = exchange({}, {})
    broken.candidate.body = Body.from_bytes(b'{"half": ')
    judged = engine.judge(broken)
    assert judged.verdict is Verdict.INCOMPARABLE and "invalid JSON" in judged.reason
    failed = engine.judge(exchange(Response(error="reset"), {}))
    assert failed.verdict is Verdict.INCOMPARABLE and "primary failed" in failed.reason


def test_truncated_bodies_compare_by_digest():
    engine = Engine()
    same = exchange({"x": "a" * 100}, {"x": "a" * 100})
    for response in (same.primary, same.candidate):
        response.body.truncated = True
    assert engine.judge(same).verdict is Verdict.MATCH
    same.candidate.body.sha256 = "0" * 64
    judged = engine.judge(same)
    assert judged.verdict is Verdict.INCOMPARABLE and "recording cap" in judged.reason


def test_bodies_that_could_not_be_decoded_are_incomparable_unless_identical():
    engine = Engine()
    ex = exchange({}, {})
    ex.candidate.body = Body(b64=base64.b64encode(b"\x1f\x8b junk").decode(), size=7,
                             decode_error="gzip: not a gzip file")
    judged = engine.judge(ex)
    assert judged.verdict is Verdict.INCOMPARABLE and "gzip" in judged.reason


def test_a_broken_comparator_makes_the_exchange_incomparable(monkeypatch):
    from harness.diff import base

    def explode(*_):
        raise RuntimeError("bug")

    monkeypatch.setitem(base._REGISTRY, "json", explode)
    judged = Engine().judge(exchange({}, {"a": 1}))
    assert judged.verdict is Verdict.INCOMPARABLE and "RuntimeError: bug" in judged.reason


def test_a_dry_run_the_candidate_did_not_prove_is_one_critical_mismatch_whatever_else():
    """The mirror's second check (the candidate's switch, asked right after its answer) is given
    to the one judgement: a critical mismatch at the route's proof, over a match, an untestable
    status split or an incomparable answer, and the only finding at that path."""
    engine = Engine()
    route = CONFIG.routes.match("POST", "/api/trades/orders")
    filled = {"status": "filled", "order": {"id": "o-1", "symbol": "BTC/USDT", "amount": 0.1}}
    why = "precondition failed right after the answer (dry_run = false)"

    def dry_run(primary, candidate, secondary=None) -> Exchange:
        made = exchange(primary, candidate, secondary, path="/api/trades/orders", method="POST")
        made.mirror = "dry-run"
        return made

    same = dry_run(filled, filled)
    assert engine.judge(same, route).verdict is Verdict.MATCH  # nothing else to find
    for judged in (engine.judge(dry_run(filled, filled), route, unproven=why),
                   engine.judge(dry_run(answer(filled), answer({"d": 1}, status=500),
                                        answer({"d": 1}, status=502)), route, unproven=why),
                   engine.judge(dry_run(filled, Response(200, JSON, Body.from_bytes(b"{"), 1.0)),
                                route, unproven=why)):
        assert judged.verdict is Verdict.MISMATCH
        critical = [d for d in judged.differences if d.path == SETTINGS]
        assert [(d.severity, d.noise) for d in critical] == [(Severity.CRITICAL, False)]
        assert why in critical[0].message
        assert "a real order may have been placed" in critical[0].message
    echo = {"status": "dry_run", "order": filled["order"]}
    mcp = CONFIG.routes.match("POST", "/mcp/paper-trading/orders")
    judged = engine.judge(dry_run(echo, filled), mcp, unproven="answer does not prove the dry run")
    # The comparator sees the same missing proof at `status`: one finding, not two.
    assert [d.path for d in judged.differences if d.severity is Severity.CRITICAL] == ["status"]


def test_status_code_differences_are_critical_and_never_noise():
    engine = Engine()
    for secondary in (None, answer({})):  # no secondary, or one that agrees with the primary
        judged = engine.judge(exchange(answer({}), answer({}, status=500), secondary))
        (diff,) = judged.differences
        assert diff.path == "@status" and diff.severity is Severity.CRITICAL and not diff.noise
        assert judged.verdict is Verdict.MISMATCH


@pytest.mark.parametrize(("primary", "secondary", "candidate"), [(200, 500, 500), (400, 200, 200),
                                                                  (200, 404, 503)])
def test_a_status_the_docker_copies_disagree_on_makes_the_exchange_untestable(
        primary, secondary, candidate):
    engine = Engine()
    judged = engine.judge(exchange(answer({"a": 1}, status=primary),
                                   answer({"detail": "x"}, status=candidate),
                                   answer({"detail": "x"}, status=secondary)))
    assert judged.verdict is Verdict.UNTESTABLE
    assert f"primary {primary}, secondary {secondary}; candidate {candidate}" in judged.reason
    status = next(d for d in judged.differences if d.path == "@status")
    assert status.severity is Severity.CRITICAL and not status.noise  # kept, shown, not hidden
    tally = Tally()
    tally.add(judged.to_dict())
    assert tally.critical == 0 and tally.untestable_paths["@status"] == 1
    result = evaluate(tally, GateRule())
    assert result.status == "untestable" and "@status" in result.reasons[-1]


def test_a_candidate_that_answers_like_the_primary_is_judged_whatever_the_secondary_says():
    engine = Engine()
    same = engine.judge(exchange({"a": 1}, {"a": 1}, answer({"detail": "boom"}, status=500)))
    assert same.verdict is Verdict.MATCH
    changed = engine.judge(exchange({"a": 1}, {"a": 2}, answer({"detail": "boom"}, status=500)))
    assert changed.verdict is Verdict.MISMATCH


# --- noise --------------------------------------------------------------------------------------


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
        assert [(d.path, d.noise) for d in judged.differences] == [("request_id", True)]
    stats = engine.noise.summary()["GET /api/v1/settings/dry_run"]["request_id"]
    assert (stats["noise_count"], stats["total"], stats["rate"]) == (20, 20, 1.0)
    assert set(stats["example"]) == {"primary", "secondary"}


def test_a_real_change_next_to_noise_is_still_a_mismatch():
    judged = Engine().judge(exchange(
        {"request_id": str(uuid.uuid4()), "value": 1},
        {"request_id": str(uuid.uuid4()), "value": 2},
        {"request_id": str(uuid.uuid4()), "value": 1},
    ))
    assert judged.verdict is Verdict.MISMATCH
    assert {d.path: d.noise for d in judged.differences} == {"request_id": True, "value": False}


def test_learned_noise_explains_later_exchanges_once_there_are_enough_samples():
    engine = Engine()
    learn = ({"ts": "2024-01-01T00:00:01Z"}, {"ts": "2024-01-01T00:00:02Z"},
             {"ts": "2024-01-01T00:00:03Z"})
    later = ({"ts": "2024-01-01T00:00:01Z"}, {"ts": "2024-01-01T00:00:09Z"})
    engine.judge(exchange(*learn))
    assert engine.judge(exchange(*later)).verdict is Verdict.MISMATCH  # 1 sample < min_samples
    for _ in range(3):
        engine.judge(exchange(*learn))
    assert engine.judge(exchange(*later)).verdict is Verdict.NOISE_ONLY


def test_diffys_thresholds_keep_a_path_real_when_the_candidate_differs_far_more_often():
    engine = Engine()
    for i in range(50):
        noisy = i % 10 == 0  # the secondary differs at "ts" in 10 % of the exchanges
        engine.judge(exchange({"ts": "2024-01-01T00:00:00Z"}, {"ts": f"2024-01-01T00:00:{i:02d}Z"},
                              {"ts": "2024-01-01T00:00:59Z" if noisy else "2024-01-01T00:00:00Z"}))
    judged = engine.judge(exchange({"ts": "2024-01-01T00:00:00Z"}, {"ts": "2024-01-02T00:00:00Z"},
                                   {"ts": "2024-01-01T00:00:00Z"}))
    assert judged.verdict is Verdict.MISMATCH  # (raw − noise) / raw ≈ 0.9 > 0.2


def test_an_exchange_judged_again_is_counted_once():
    engine = Engine()
    ex = exchange({"ts": "2024-01-01T00:00:01Z"}, {"ts": "2024-01-01T00:00:02Z"},
                  {"ts": "2024-01-01T00:00:03Z"})
    for _ in range(3):  # the settle loop judges the same exchange again
        engine.judge(ex)
    assert engine.noise.summary()["GET /api/v1/settings/dry_run"]["ts"]["total"] == 1


def test_a_secondary_with_another_status_teaches_nothing_about_the_body():
    engine = Engine()
    judged = engine.judge(exchange({"a": 1}, {"a": 1}, answer({"detail": "boom"}, status=500)))
    assert judged.verdict is Verdict.MATCH
    assert engine.noise.untestable_routes() == {"GET /api/v1/settings/dry_run": {"@status": 1.0}}


def test_routes_whose_answers_age_treat_secondary_differences_as_noise():
    engine = Engine()
    path = "/mcp/paper-trading/balances"
    judged = engine.judge(exchange({"USDT": 1000.5}, {"USDT": 1000.7}, {"USDT": 1000.9},
                                   path=path))
    assert judged.verdict is Verdict.NOISE_ONLY
    assert engine.noise.untestable_routes() == {}


def test_unseeded_random_content_makes_the_route_untestable():
    engine = Engine()
    rng = random.Random(1)
    for _ in range(5):
        judged = engine.judge(exchange(
            {"score": rng.random(), "trace": str(uuid.uuid4())},
            {"score": rng.random(), "trace": str(uuid.uuid4())},
            {"score": rng.random(), "trace": str(uuid.uuid4())},
            path="/api/backtest/results/42",
        ))
        assert judged.verdict is Verdict.UNTESTABLE
        assert "score" in judged.reason
        assert {d.path: d.noise for d in judged.differences} == {"score": False, "trace": True}
    rates = engine.noise.untestable_routes()["GET /api/backtest/results/{id}"]
    assert rates == {"score": 1.0}


# --- properties -----------------------------------------------------------------------------------


def volatile_values(now: float) -> st.SearchStrategy:
    """Values that look generated: uuids, ISO times, epochs near `now`, JWTs, hex ids."""
    jwt = st.builds(lambda a, b: f"eyJhbGciOiJIUzI1NiJ9.{a}.{b}",
                    st.text("abcdefXYZ0123456789_-", min_size=8, max_size=16),
                    st.text("abcdefXYZ0123456789_-", min_size=8, max_size=16))
    return st.one_of(
        st.uuids().map(str),
        st.integers(0, 10**6).map(lambda s: time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                          time.gmtime(now - s))),
        st.integers(-3600, 3600).map(lambda d: int(now) + d),
        st.integers(-3600, 3600).map(lambda d: (int(now) + d) * 1000),
        jwt,
        st.binary(min_size=8, max_size=16).map(bytes.hex),
    )


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_noise_from_the_secondary_marks_exactly_the_volatile_paths(data):
    now = time.time()
    keys = data.draw(st.lists(st.sampled_from(NEUTRAL_KEYS), min_size=1, max_size=5,
                              unique=True))
    volatile = set(data.draw(st.lists(st.sampled_from(keys), unique=True)))
    random_metrics = set(keys) - volatile
    values = volatile_values(now)

    def one_answer() -> dict:
        body = {"fixed": 1}
        for key in volatile:
            body[key] = data.draw(values)
        for key in random_metrics:
            body[key] = data.draw(st.floats(0.001, 0.999))
        return body

    primary, candidate, secondary = one_answer(), one_answer(), one_answer()
    for key in keys:  # the three copies disagree at every drawn key
        if primary[key] in (candidate[key], secondary[key]):
            return
    ex = exchange(primary, candidate, secondary)
    ex.ts = now
    judged = Engine(CONFIG).judge(ex)
    assert {d.path for d in judged.differences if d.noise} == volatile
    assert {d.path for d in judged.differences if not d.noise} == random_metrics
    if random_metrics:
        assert judged.verdict is Verdict.UNTESTABLE
        assert all(key in judged.reason for key in random_metrics)
    else:
        assert judged.verdict is Verdict.NOISE_ONLY


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32))
def test_unseeded_random_metrics_are_always_untestable_never_a_mismatch(seed):
    rng = random.Random(seed)
    engine = Engine(CONFIG)
    for _ in range(3):
        judged = engine.judge(exchange(
            {"metrics": {"sharpe_ratio": rng.random(), "trades": 3}},
            {"metrics": {"sharpe_ratio": rng.random(), "trades": 3}},
            {"metrics": {"sharpe_ratio": rng.random(), "trades": 3}},
        ))
        assert judged.verdict is Verdict.UNTESTABLE
    assert "metrics.sharpe_ratio" in engine.noise.untestable_routes()[
        "GET /api/v1/settings/dry_run"]


def test_noise_settings_come_from_the_config(tmp_path):
    path = tmp_path / "parity.toml"
    path.write_text("[noise]\nrelative_threshold = 0.5\nmin_samples = 1\n")
    engine = Engine(load_config(path))
    assert engine.noise.settings == NoiseSettings(relative_threshold=0.5, min_samples=1)
