"""The cutover through real processes: `parity shadow --admin` in front of a Docker primary and a
native candidate whose drifts switch at runtime, driven by `parity cutover`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import pytest
from cutover_support import (
    ADMIN_TOKEN,
    CutoverProxy,
    HangingServer,
    controlled_app,
    switch_drifts,
    wait_for,
)

from harness.processes import start_reference_app
from harness.report import build_report
from harness.store.reader import iter_records

IDENTITIES = range(400)


@pytest.fixture(scope="module")
def apps(reference_factory, tmp_path_factory):
    """The Docker primary and a native candidate with the runtime drift switch."""
    primary = reference_factory("docker")
    candidate = controlled_app(tmp_path_factory.mktemp("candidate"))
    yield primary, candidate
    candidate.stop()


@pytest.fixture
def proxy(apps, tmp_path):
    primary, candidate = apps
    shadow = CutoverProxy(tmp_path, primary.base_url, candidate.base_url)
    yield shadow
    shadow.stop()


def test_admin_needs_its_token_and_is_not_on_the_public_listener(proxy: CutoverProxy) -> None:
    status = f"{proxy.admin}/cutover/status"
    assert httpx.get(status).status_code == 401
    assert httpx.get(status, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert httpx.post(f"{proxy.admin}/cutover/advance", json={"group": "data", "percent": 50},
                      headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert proxy.status()["groups"]["data"]["share"] == 0  # nothing moved by those
    public = httpx.get(f"{proxy.url}/cutover/status",
                       headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert public.status_code == 404 and public.headers["x-parity-served-by"] == "primary"
    proxy.token_file.write_text("wrong\n")  # the CLI without a valid token: one line, exit 2
    refused = proxy.cli("status")
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert "valid admin token" in refused.stderr


def test_advance_moves_about_half_the_identities_and_they_stay(proxy: CutoverProxy) -> None:
    with httpx.Client() as client:
        before = proxy.served(client, IDENTITIES)
        assert set(before.values()) == {"primary"}  # plain shadow mode
        done = proxy.cli("advance", "data", "50")
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "data: 50 % of identities served by the candidate"
        first = proxy.served(client, IDENTITIES)
        moved = {i for i, side in first.items() if side == "candidate"}
        # 400 identities at 50 %: 200 ± 5 standard deviations (10)
        assert 150 <= len(moved) <= 250
        assert proxy.served(client, IDENTITIES) == first  # sticky
        assert proxy.cli("advance", "data", "80").returncode == 0
        more = {i for i, side in proxy.served(client, IDENTITIES).items() if side == "candidate"}
        assert moved < more  # a ramp only adds identities
        # Other groups stay where they are: a backtest list is still the primary's.
        other = client.get(proxy.url + "/api/strategies/",
                           headers={"X-Forwarded-For": "10.0.0.1"})
        assert other.headers["x-parity-served-by"] == "primary"
    status = json.loads(proxy.cli("status", "--json").stdout)
    data = status["groups"]["data"]
    assert data["share"] == 80 and data["moved_identities"] == len(more)
    assert data["seen_identities"] == len(IDENTITIES) and data["clean_clock_s"] >= 0
    lowered = proxy.cli("advance", "data", "10")
    assert lowered.returncode == 2 and "only goes up" in lowered.stderr


def test_early_adopters_from_the_cutover_plan_move_first(apps, tmp_path) -> None:
    primary, candidate = apps
    plan = tmp_path / "plan.toml"
    plan.write_text('[cutover]\nearly_adopters = ["ip:10.0.0.7", "ip:10.0.1.3"]\n')
    proxy = CutoverProxy(tmp_path, primary.base_url, candidate.base_url, "--cutover", str(plan))
    try:
        done = proxy.cli("advance", "data", "adopters")
        assert done.returncode == 0 and "early adopters moved (2)" in done.stdout
        with httpx.Client() as client:
            served = proxy.served(client, IDENTITIES)
        assert {i for i, side in served.items() if side == "candidate"} == {7, 256 + 3}
        assert "0 %+" in proxy.cli("status").stdout  # at 0 %, early adopters moved
    finally:
        proxy.stop()
    plan.write_text('[cutover]\nearly_adopters = ["alice"]\n')
    bad = subprocess.run([sys.executable, "-m", "harness.cli", "shadow", "--primary",
                          primary.base_url, "--candidate", candidate.base_url, "--admin",
                          "127.0.0.1:1", "--cutover", str(plan)], capture_output=True, text=True,
                         env={**os.environ, "PARITY_ADMIN_TOKEN": "x"}, timeout=60)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert "cutover.early_adopters: 'alice' is not an identity" in bad.stderr


def test_a_runtime_drift_rolls_data_back_with_no_client_error(
        proxy: CutoverProxy, apps, tmp_path) -> None:
    _, candidate = apps
    assert proxy.cli("advance", "data", "50").returncode == 0
    answers: list[httpx.Response] = []
    with httpx.Client() as client:
        before = proxy.served(client, IDENTITIES[:50])
        moved = [i for i, side in before.items() if side == "candidate"]
        switch_drifts(candidate, ["tz-offset"])
        try:
            def step() -> None:  # moved identities first: one is served by the drifted side
                answers.extend(proxy.get(client, i) for i in [*moved[:10], *IDENTITIES[:10]])

            status = wait_for(lambda: (s := proxy.status())["groups"]["data"]["share"] == 0
                              and s, step=step)
            after = proxy.served(client, IDENTITIES)
        finally:
            switch_drifts(candidate, [])
    assert all(answer.status_code == 200 for answer in answers)
    assert set(after.values()) == {"primary"}
    rollback = status["groups"]["data"]["last_rollback"]
    assert rollback["automatic"] and "candles shifted by +1h" in rollback["reason"]
    assert status["rollbacks"] == 1
    assert status["history"][-1]["event"] == "rollback"
    # Moved exchanges were mirrored to the primary and judged docker vs native (+1h: the
    # native answer the client got is the later one), recorded as "reverse".
    records = wait_for(lambda: [r for r in iter_records([proxy.recordings])
                                if r["mirror"] == "reverse" and r["verdict"] == "mismatch"])
    assert any("candles shifted by +1h" in d["message"] for d in records[0]["differences"])
    shown = proxy.cli("status").stdout
    assert "(automatic): failure rate" in shown and "candles shifted by +1h" in shown
    # Resume goes back to the same identities; the drift is off again.
    assert proxy.cli("resume", "data").returncode == 0
    assert proxy.status()["groups"]["data"]["share"] == 50
    # The report shows the timeline, with the finding that caused the rollback, never the key.
    summary = build_report([proxy.recordings], tmp_path / "report.html")
    html = (tmp_path / "report.html").read_text()
    assert 'id="cutover-timeline"' in html and "candles shifted by +1h" in html
    assert [e["event"] for e in summary["cutover"]["history"]] == ["advance", "rollback",
                                                                   "resume"]
    key = json.loads((proxy.recordings / "parity-cutover.json").read_text())["key"]
    assert key not in html


def test_a_killed_candidate_leaves_the_primary_serving(apps, tmp_path) -> None:
    primary, _ = apps
    candidate = controlled_app(tmp_path, token=None)
    proxy = CutoverProxy(tmp_path, primary.base_url, candidate.base_url)
    try:
        assert proxy.cli("advance", "data", "100").returncode == 0
        with httpx.Client() as client:
            assert set(proxy.served(client, IDENTITIES[:20]).values()) == {"candidate"}
            candidate.stop()
            served = proxy.served(client, IDENTITIES[:100])  # every one answered 200
        assert set(served.values()) == {"primary"}
        rollback = proxy.status()["groups"]["data"]["last_rollback"]
        assert rollback["automatic"] and "candidate unreachable" in rollback["reason"]
    finally:
        proxy.stop()


def test_a_candidate_failing_after_the_send(apps, tmp_path) -> None:
    """A safe request is then served by the primary; an unsafe one is answered 502 and retried
    nowhere; either rolls the group back."""
    primary, _ = apps
    hanging = HangingServer()
    proxy = CutoverProxy(tmp_path, primary.base_url, hanging.url, "--timeout", "1")
    try:
        with httpx.Client(timeout=30) as client:
            assert proxy.cli("advance", "other", "100").returncode == 0
            safe = client.get(proxy.url + "/health")
            assert safe.status_code == 200 and safe.headers["x-parity-served-by"] == "primary"
            reason = proxy.status()["groups"]["other"]["last_rollback"]["reason"]
            assert "candidate failed a moved request (timeout after 1s)" in reason
            assert proxy.cli("resume", "other").returncode == 0
            sent = hanging.requests
            unsafe = client.post(proxy.url + "/api/v1/anything", json={"a": 1})
            assert unsafe.status_code == 502 and "not retried" in unsafe.text
            assert unsafe.headers["x-parity-served-by"] == "candidate"
            assert hanging.requests == sent + 1  # the candidate got it once, nobody else did
            assert proxy.status()["groups"]["other"]["share"] == 0
        records = wait_for(lambda: [r for r in iter_records([proxy.recordings])
                                    if r["request"]["method"] == "POST"])
        # Moved and unsafe: not mirrored to the primary either.
        assert records[0]["mirror"].startswith("skipped:served by the candidate")
    finally:
        proxy.stop()
        hanging.close()


def test_the_state_survives_kill_9(apps, tmp_path) -> None:
    primary, candidate = apps
    state = tmp_path / "cutover-state.json"
    # A generous timeout and latency bound: on a loaded machine a slow answer of the candidate
    # would roll data back (a failed moved request, or a p99 over 3x the primary's: seen at 42 ms
    # vs 11 ms), and routing would differ for that reason, not the restart.
    config = "[cutover]\nwindow_s = 10.0\nmin_count = 10\np99_multiple = 1000.0\n"
    first = CutoverProxy(tmp_path, primary.base_url, candidate.base_url, "--timeout", "30",
                         config=config, state=state)
    assert first.cli("advance", "data", "30").returncode == 0
    with httpx.Client() as client:
        before = first.served(client, IDENTITIES)
    first.kill_9()
    again = CutoverProxy(tmp_path, primary.base_url, candidate.base_url, "--timeout", "30",
                         config=config, state=state)
    try:
        with httpx.Client() as client:
            after = again.served(client, IDENTITIES)
        status = again.status()["groups"]["data"]
        assert status["last_rollback"] is None, status
        assert after == before and status["share"] == 30
        assert "candidate" in before.values() and "primary" in before.values()
    finally:
        again.stop()


def test_sessions_must_survive_the_move(apps, tmp_path, monkeypatch) -> None:
    primary, candidate = apps
    monkeypatch.delenv("PARITY_REPLAY_USERNAME", raising=False)
    monkeypatch.delenv("PARITY_PASSWORD", raising=False)
    proxy = CutoverProxy(tmp_path, primary.base_url, candidate.base_url)
    try:
        refused = proxy.cli("advance", "auth", "10")
        assert refused.returncode == 2 and "no service account" in refused.stderr
        assert refused.stderr.count("\n") == 1
        assert proxy.status()["groups"]["auth"]["share"] == 0
        assert proxy.cli("advance", "data", "10").returncode == 0  # data needs no auth
    finally:
        proxy.stop()
    monkeypatch.setenv("PARITY_REPLAY_USERNAME", "demo")
    monkeypatch.setenv("PARITY_PASSWORD", "demo")
    proxy = CutoverProxy(tmp_path, primary.base_url, candidate.base_url)
    try:
        done = proxy.cli("advance", "auth", "10")
        assert done.returncode == 0, done.stderr
    finally:
        proxy.stop()
    other_key = start_reference_app("native", data_dir=tmp_path / "other-key",
                                    env={"CRYPTOBOT_JWT_SECRET": "another-signing-key"})
    proxy = CutoverProxy(tmp_path, primary.base_url, other_key.base_url)
    try:
        refused = proxy.cli("advance", "trade", "10")
        assert refused.returncode == 2
        assert "the candidate refuses a token minted by the primary" in refused.stderr
        assert proxy.status()["groups"]["trade"]["share"] == 0
    finally:
        proxy.stop()
        other_key.stop()
