"""The cutover's pure core: identities, positions, the state's ramps and rollbacks, persistence,
the rollback judge and the `[cutover]` table."""

from __future__ import annotations

import base64
import json
import statistics

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.config import CutoverPlan, GateRule, GateRules, build_config, load_config
from harness.cutover.identity import identity_of, jwt_subject, position
from harness.cutover.judge import LATENCY_SAMPLES, Judged, RollbackJudge, p99
from harness.cutover.state import ADOPTERS, CutoverError, CutoverState
from harness.errors import ConfigError

SOURCES = ("jwt-sub", "api-key", "forwarded-for", "peer")
IDENTITIES = [f"sub:user{n}" for n in range(2000)]


def jwt(claims: dict) -> bytes:
    def part(data: dict) -> bytes:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=")
    return part({"alg": "HS256"}) + b"." + part(claims) + b".c2lnbmF0dXJl"


# --- identities -----------------------------------------------------------------------------

def test_identity_sources_first_present_wins() -> None:
    token = jwt({"sub": "alice", "exp": 1})
    fields = ((b"Authorization", b"Bearer " + token), (b"X-API-Key", b"k1"),
              (b"X-Forwarded-For", b"10.0.0.9, 10.0.0.1"))
    assert identity_of(fields, "127.0.0.1", SOURCES) == "sub:alice"
    assert identity_of(fields, "127.0.0.1", ("api-key", "peer")).startswith(
        "key:redacted:sha256:")
    assert identity_of(fields, "127.0.0.1", ("forwarded-for", "peer")) == "ip:10.0.0.9"
    assert identity_of(fields, "127.0.0.1", ("peer",)) == "ip:127.0.0.1"
    # A token that is not a JWT, and no other header: the peer.
    assert identity_of(((b"authorization", b"Bearer garbage"),), "10.1.1.1", SOURCES) == \
        "ip:10.1.1.1"
    assert identity_of((), "", SOURCES) == "ip:unknown"


def test_jwt_subject_rejects_what_is_not_a_jwt() -> None:
    assert jwt_subject(jwt({"sub": 42})) == "42"
    assert jwt_subject(jwt({"name": "x"})) is None
    assert jwt_subject(jwt({"sub": True})) is None
    assert jwt_subject(b"a.!!!.c") is None
    assert jwt_subject(b"a.b") is None


def test_api_key_identity_is_the_recordings_fingerprint() -> None:
    from harness.store.redact import fingerprint

    assert identity_of(((b"x-api-key", b"secret-1"),), "", ("api-key",)) == \
        "key:" + fingerprint("secret-1")


@given(st.text(min_size=1, max_size=40), st.binary(min_size=8, max_size=32))
def test_position_is_stable_and_in_range(identity: str, key: bytes) -> None:
    first = position(key, identity)
    assert 0.0 <= first < 100.0
    assert position(key, identity) == first


# --- ramps: stickiness and monotonic moves --------------------------------------------------

EVENTS = st.lists(st.one_of(
    st.tuples(st.just("advance"), st.sampled_from(["data", "auth"]),
              st.floats(min_value=0.0, max_value=100.0, allow_nan=False)),
    st.tuples(st.just("rollback"), st.sampled_from(["data", "auth"]), st.just(0.0)),
    st.tuples(st.just("resume"), st.sampled_from(["data", "auth"]), st.just(0.0)),
), min_size=1, max_size=30)


def moved(state: CutoverState, group: str) -> set[str]:
    return {identity for identity in IDENTITIES if state.moves(group, identity)}


def run_sticky_ramp(events: list[tuple[str, str, float]]) -> None:
    state = CutoverState(early_adopters=("sub:early",))
    before = {group: moved(state, group) for group in ("data", "auth")}
    for step, (kind, group, share) in enumerate(events):
        try:
            if kind == "advance":
                state.advance(group, share, now=step)
            elif kind == "rollback":
                state.rollback(group, "test", now=step)
            else:
                state.resume(group, now=step)
        except CutoverError:
            continue  # refused (a lower share, nothing to resume): nothing changed
        after = moved(state, group)
        if kind == "rollback":
            assert after == set() and not state.moves(group, "sub:early")
        else:
            assert before[group] <= after  # a ramp only adds identities
        share_now = state.group(group).share
        # Exactly the identities below the share: the same set in every group at that share.
        assert after == {i for i in IDENTITIES if state.position_of(i) < share_now}
        n = len(IDENTITIES)
        sigma = (n * share_now / 100 * (1 - share_now / 100)) ** 0.5
        assert abs(len(after) - n * share_now / 100) <= 5 * sigma + 1
        if state.group(group).active:
            assert state.moves(group, "sub:early")  # early adopters first
        before[group] = after


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(EVENTS)
def test_ramps_are_sticky_and_monotonic(events: list[tuple[str, str, float]]) -> None:
    run_sticky_ramp(events)


@pytest.mark.slow
@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(EVENTS)
def test_ramps_are_sticky_and_monotonic_long(events: list[tuple[str, str, float]]) -> None:
    run_sticky_ramp(events)


def test_the_same_identities_move_first_in_every_group() -> None:
    state = CutoverState()
    state.advance("data", 30, now=0)
    state.advance("backtest", 30, now=0)
    assert moved(state, "data") == moved(state, "backtest")
    assert moved(state, "strategy") == set()


def test_advance_refuses_lower_shares_bad_numbers_and_unknown_groups() -> None:
    state = CutoverState()
    state.advance("data", 50, now=0)
    with pytest.raises(CutoverError, match="only goes up"):
        state.advance("data", 10, now=1)
    with pytest.raises(CutoverError, match="between 0 and 100"):
        state.advance("data", 150, now=1)
    with pytest.raises(CutoverError, match="not a percentage"):
        state.advance("data", "half", now=1)
    with pytest.raises(CutoverError, match="unknown group"):
        state.advance("payments", 10, now=1)
    with pytest.raises(CutoverError, match="no early adopters"):
        state.advance("auth", ADOPTERS, now=1)
    with pytest.raises(CutoverError, match="not rolled back"):
        state.resume("data", now=1)


def test_early_adopters_alone_then_batches_then_rollback_and_resume() -> None:
    state = CutoverState(early_adopters=("sub:user7",))
    state.advance("data", ADOPTERS, now=10)
    assert moved(state, "data") == {"sub:user7"}
    assert state.clean_clock("data", now=15) == 5
    state.advance("data", 25, now=20)
    quarter = moved(state, "data")
    assert "sub:user7" in quarter and len(quarter) > 300
    state.rollback("data", "candles shifted by +1h", now=30, automatic=True)
    assert moved(state, "data") == set() and state.clean_clock("data", now=31) is None
    assert state.group("data").last_rollback == {"at": 30, "reason": "candles shifted by +1h",
                                                  "automatic": True}
    state.resume("data", now=40)
    assert moved(state, "data") == quarter and state.clean_clock("data", now=41) == 1
    assert [e["event"] for e in state.history] == ["advance", "advance", "rollback", "resume"]


def test_state_survives_a_round_trip_and_routes_the_same(tmp_path) -> None:
    path = tmp_path / "state" / "cutover.json"
    state = CutoverState(early_adopters=("ip:10.0.0.1",))
    state.advance("data", 40, now=1)
    state.rollback("auth", "token rejected", now=2)
    state.save(path)
    again = CutoverState.load(path)
    assert again.to_dict() == state.to_dict()
    assert moved(again, "data") == moved(state, "data")
    assert not list(path.parent.glob(".*.tmp"))  # the temporary file was renamed


def test_a_damaged_state_file_is_one_line(tmp_path) -> None:
    path = tmp_path / "cutover.json"
    path.write_text("{not json")
    with pytest.raises(CutoverError, match="cannot read the cutover state"):
        CutoverState.load(path)
    path.write_text(orjson.dumps({"version": 1, "key": "zz"}).decode())
    with pytest.raises(CutoverError, match="damaged"):
        CutoverState.load(path)
    assert CutoverState.load(tmp_path / "none.json").groups == {}


# --- the rollback judge ----------------------------------------------------------------------

PLAN = CutoverPlan(window_s=10.0, min_count=5, p99_multiple=2.0, error_margin=0.1)
GATES = GateRules({"data": GateRule(max_mismatch_rate=0.2, min_exchanges=1)})


def judged(verdict: str = "match", **kw) -> Judged:
    base = {"group": "data", "served": "candidate", "verdict": verdict, "primary_status": 200,
            "candidate_status": 200, "primary_ms": 10.0, "candidate_ms": 10.0}
    return Judged(**{**base, **kw})


def test_judge_rolls_back_at_once_on_a_critical_finding_or_an_unreachable_candidate() -> None:
    judge = RollbackJudge(PLAN, GATES)
    assert judge.add(judged(), now=0) is None
    assert judge.add(judged("mismatch", critical="dry run breached"), now=1) == \
        "critical finding: dry run breached"
    assert judge.add(judged("candidate-error", error="connection refused"), now=1) == \
        "candidate unreachable (connection refused)"
    assert judge.add(judged("candidate-error", error="timeout after 5s"), now=1) is None


def test_judge_failure_rate_needs_the_minimum_count_and_names_the_finding() -> None:
    judge = RollbackJudge(PLAN, GATES)
    for n in range(4):
        judge.add(judged("mismatch", finding="candles shifted by +1h"), now=n * 0.1)
        assert judge.verdict("data", now=n * 0.1) is None  # under min_count
    judge.add(judged("mismatch", finding="candles shifted by +1h"), now=0.5)
    reason = judge.verdict("data", now=0.5)
    assert reason is not None and "failure rate 100% (5/5" in reason
    assert reason.endswith("candles shifted by +1h")


def test_judge_window_slides_and_skips_do_not_count() -> None:
    judge = RollbackJudge(PLAN, GATES)
    for n in range(5):
        judge.add(judged("mismatch", finding="x"), now=n)
    for _n in range(20):
        judge.add(judged("skipped"), now=20)
    for _n in range(5):
        judge.add(judged(), now=20)
    assert judge.verdict("data", now=20) is None  # the failures left the window


def test_judge_5xx_and_p99() -> None:
    judge = RollbackJudge(PLAN, GATES)
    for n in range(10):
        judge.add(judged(candidate_status=500 if n < 2 else 200), now=0)
    assert "candidate 5xx rate 20.0%" in (judge.verdict("data", now=0) or "")
    judge = RollbackJudge(PLAN, GATES)
    for _n in range(LATENCY_SAMPLES):  # clients of the candidate wait 100 ms...
        judge.add(judged(candidate_ms=100.0, primary_ms=60.0), now=0)
    assert judge.verdict("data", now=0) is None  # within 2x of the primary's mirrored answers
    for _n in range(LATENCY_SAMPLES):  # ...those of the primary 10 ms
        judge.add(judged(served="primary", candidate_ms=500.0), now=0.1)
    assert judge.verdict("data", now=0.1) is None  # checked at most every LATENCY_EVERY_S
    assert "p99 latency 100 ms over 2x the primary's 10 ms" in (
        judge.verdict("data", now=1.0) or "")
    judge.reset("data")
    assert judge.verdict("data", now=1.0) is None


def test_judge_latency_with_everyone_moved_uses_the_mirrors_answers() -> None:
    judge = RollbackJudge(PLAN, GATES)
    for _n in range(LATENCY_SAMPLES):
        judge.add(judged(candidate_ms=30.0, primary_ms=20.0), now=0)
    assert judge.verdict("data", now=0) is None
    for _n in range(LATENCY_SAMPLES):
        judge.add(judged(candidate_ms=90.0, primary_ms=20.0), now=1)
    assert "p99 latency 90 ms over 2x the primary's 20 ms" in (judge.verdict("data", now=1) or "")


def test_p99_nearest_rank() -> None:
    values = [float(n) for n in range(1, 101)]
    assert p99(values) == 99.0
    assert p99([3.0]) == 3.0
    assert statistics.median(values) < p99(values)


def test_judged_wire_round_trip_and_malformed_items() -> None:
    item = judged("mismatch", finding="f", critical="c", error="e")
    assert Judged.from_wire(orjson.loads(orjson.dumps(item.to_wire()))) == item
    with pytest.raises((ValueError, TypeError)):
        Judged.from_wire(["data"])


# --- the [cutover] table ---------------------------------------------------------------------

def test_cutover_table_defaults_and_overrides() -> None:
    assert load_config().cutover == CutoverPlan()
    data = {"cutover": {"window_s": 5.0}}
    config = build_config(data, "parity.toml", {"cutover": {
        "identity": ["peer"], "early_adopters": ["sub:alice"], "min_count": 3}})
    assert config.cutover.identity == ("peer",) and config.cutover.window_s == 5.0
    assert config.cutover.early_adopters == ("sub:alice",) and config.cutover.min_count == 3


@pytest.mark.parametrize(("table", "message"), [
    ({"identity": ["cookie"]}, "parity.toml: cutover.identity: expected some of"),
    ({"early_adopters": ["alice"]}, "cutover.early_adopters: 'alice' is not an identity"),
    ({"min_count": 0}, "cutover.min_count: expected an integer >= 1"),
    ({"p99_multiple": 0.5}, "cutover.p99_multiple: must be"),
    ({"window_s": 0}, "cutover.window_s: must be > 0"),
    ({"speed": 1}, "cutover.speed: unknown key"),
])
def test_cutover_table_mistakes_are_one_line(table: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")) as exc:
        build_config({}, "parity.toml", {"cutover": table})
    assert "\n" not in str(exc.value)


# --- the reverse mirror's safety rules ------------------------------------------------------

def test_unsafe_requests_reach_the_primary_only_as_a_dry_run_it_honours() -> None:
    from harness.cutover.reverse import ReversePolicy
    from harness.model import Body, Request

    routes = load_config().routes
    policy = ReversePolicy()

    def decide(method: str, path: str, body: bytes = b"") -> str:
        request = Request(method=method, path=path, body=Body.from_bytes(body))
        return policy.decide(routes.match(method, path), request).label

    assert decide("GET", "/api/v1/data/ohlcv/binance/BTCUSDT/1h") == "mirrored"
    # A real order (precondition only, no rewrite), an `always` route, a `never` route:
    # nothing reaches production.
    assert decide("POST", "/api/trades/orders", b'{"client_order_id": "a"}').startswith(
        "skipped:served by the candidate")
    assert decide("POST", "/api/strategies/", b"{}").startswith("skipped:served by the candidate")
    assert decide("POST", "/auth/login").startswith("skipped:")
    # Paper trading honours its dry-run header: sent as a dry run (its precondition is still
    # proven on the primary before it goes, by harness.mirror).
    assert decide("POST", "/mcp/paper-trading/orders", b'{"client_order_id": "b"}') == "dry-run"
    # The same order again is not sent twice (and the reason names the side it was sent to).
    assert decide("POST", "/mcp/paper-trading/orders", b'{"client_order_id": "b"}') == (
        "skipped:duplicate order: already sent to the primary once")


# --- the command line without a proxy ---------------------------------------------------------

def test_cutover_command_errors_are_one_line(tmp_path, monkeypatch) -> None:
    import subprocess
    import sys

    from harness.processes import free_port

    def cutover(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "harness.cli", "cutover", *args],
                              capture_output=True, text=True, timeout=60)

    monkeypatch.delenv("PARITY_ADMIN_TOKEN", raising=False)
    no_token = cutover("--admin", f"http://127.0.0.1:{free_port()}", "status")
    assert no_token.returncode == 2 and "--admin-token-file FILE or PARITY_ADMIN_TOKEN" in \
        no_token.stderr
    token = tmp_path / "token"
    token.write_text("t\n")
    nobody = cutover("--admin", f"http://127.0.0.1:{free_port()}", "--token-file", str(token),
                     "status")
    assert nobody.returncode == 2 and nobody.stderr.count("\n") == 1
    assert "cannot reach the admin endpoint" in nobody.stderr
