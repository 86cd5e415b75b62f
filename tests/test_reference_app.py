"""The reference Cryptobot behaves like the real services: shapes of the specs, noise on every
copy, each drift visible in its own service only, dry runs never persisted."""

from __future__ import annotations

import time

import httpx
import pytest

from comparators.base import CompareOptions
from comparators.generic import compare_bodies

NOISE = ("**.created_at", "**.updated_at", "**.completed_at", "**.id", "**.jti", "**.iat",
         "**.exp", "**.access_token", "**.refresh_token", "**.key")


def script(base_url: str) -> dict[str, object]:
    """One realistic request sequence; answers by service, then by step."""
    answers: dict[str, object] = {}
    with httpx.Client(base_url=base_url, timeout=10) as c:
        answers["data"] = [
            c.get("/api/v1/data/ohlcv/binance/BTC-USDT/1h", params={"limit": 24}).json(),
            c.get("/api/v1/data/ohlcv/kraken/ETH%2FUSDT/1d",
                  params={"start": "2024-05-01T00:00:00Z", "end": "2024-05-10T00:00:00Z"}).json(),
        ]
        tokens = c.post("/auth/login", data={"username": "demo", "password": "demo"}).json()
        auth = {"Authorization": f"Bearer {tokens['access_token']}"}
        claims = _claims(tokens["access_token"])
        answers["auth"] = [
            {**tokens, "lifetime": claims["exp"] - claims["iat"], "roles": claims["roles"]},
            c.get("/auth/users/me", headers=auth).json(),
            c.get("/auth/validate", headers=auth).json(),
        ]
        started = c.post("/api/backtest/start", json={
            "strategy": "sma_crossover", "parameters": {"fast": 10, "slow": 30, "fee": 0.001},
            "symbol": "BTC/USDT", "timeframe": "1h",
            "start_date": "2024-03-01T00:00:00Z", "end_date": "2024-06-01T00:00:00Z",
        })
        assert started.status_code == 202
        backtest_id = started.json()["id"]
        for _ in range(100):
            if c.get(f"/api/backtest/status/{backtest_id}").json()["status"] == "completed":
                break
            time.sleep(0.05)
        answers["backtest"] = [c.get(f"/api/backtest/results/{backtest_id}").json(),
                               c.get(f"/api/backtest/performance/{backtest_id}").json()]
        for name in ("alpha", "beta"):
            c.post("/api/strategies/strategies/", json={"name": name, "parameters": {"fast": 5}})
        c.put("/api/strategies/strategies/1", json={"parameters": {"fast": 6}})
        answers["strategy"] = [c.get("/api/strategies/strategies/").json(),
                               c.get("/api/strategies/strategies/1/versions").json()]
        order = {"symbol": "BTC/USDT", "side": "buy", "type": "limit", "amount": 0.123456789,
                 "price": 65000.5, "client_order_id": "t-1"}
        answers["trade"] = [c.post("/api/trades/orders", json=order,
                                   headers={"X-Dry-Run": "true"}).json()]
        answers["mcp"] = [c.get("/mcp/paper-trading/balances").json(),
                          c.post("/mcp/paper-trading/orders", json={**order, "amount": 1.234567891},
                                 headers={"X-Dry-Run": "true"}).json()]
    return answers


def _claims(token: str) -> dict:
    import jwt

    return jwt.decode(token, options={"verify_signature": False})


def differing_services(a: dict, b: dict, **options) -> set[str]:
    opts = CompareOptions(ignore=NOISE, **options)
    return {service for service in a if compare_bodies(a[service], b[service], opts)}


@pytest.fixture(scope="module")
def answers(docker_pair, reference_factory):
    primary, secondary = docker_pair
    return {"primary": script(primary.base_url), "secondary": script(secondary.base_url)}


def test_two_docker_copies_differ_only_in_documented_noise(answers):
    assert differing_services(answers["primary"], answers["secondary"]) == set()
    raw = compare_bodies(answers["primary"], answers["secondary"], CompareOptions())
    assert raw, "the copies must show real noise (ids, timestamps, tokens)"


@pytest.mark.parametrize(
    ("drift", "service"),
    [("tz-offset", "data"), ("token-lifetime", "auth"), ("fee-rounding", "backtest"),
     ("amount-precision", "trade"), ("list-order", "strategy")],
)
def test_each_drift_changes_exactly_its_service(reference_factory, answers, drift, service):
    native = reference_factory("native", drifts=(drift,))
    assert differing_services(answers["primary"], script(native.base_url)) == {service}


def test_float_order_is_only_float_noise(reference_factory, answers):
    native = reference_factory("native", drifts=("float-order",))
    drifted = script(native.base_url)
    assert differing_services(answers["primary"], drifted) <= {"backtest"}
    assert differing_services(answers["primary"], drifted, rtol=1e-12) == set()


def test_noise_headers_and_health(docker_pair):
    answer = httpx.get(docker_pair[0].base_url + "/health")
    assert answer.json() == {"status": "ok"}
    assert answer.headers["x-request-id"] and answer.headers["x-process-time"]
    assert answer.headers["x-cryptobot-flavor"] == "docker"


def test_fastapi_validation_errors(docker_pair):
    base = docker_pair[0].base_url
    for path, params in [("/api/v1/data/ohlcv/binance/BTC-USDT/7m", {}),
                         ("/api/v1/data/ohlcv/binance/BTC-USDT/1h", {"limit": 0}),
                         ("/api/v1/data/ohlcv/binance/BTC-USDT/1h", {"start": "yesterday"}),
                         ("/api/v1/data/ohlcv/binance/BTC-USDT/1h",
                          {"start": "2024-05-02T00:00:00Z", "end": "2024-05-01T00:00:00Z"})]:
        answer = httpx.get(base + path, params=params)
        assert answer.status_code == 422 and "detail" in answer.json(), (path, params)


def test_login_errors_do_not_tell_users_apart(docker_pair):
    base = docker_pair[0].base_url
    unknown = httpx.post(base + "/auth/login", data={"username": "nobody", "password": "demo"})
    wrong = httpx.post(base + "/auth/login", data={"username": "demo", "password": "nope"})
    assert unknown.status_code == wrong.status_code == 401
    assert unknown.json() == wrong.json()


def test_dry_runs_are_never_persisted_and_client_order_id_is_idempotent(reference_factory):
    app = reference_factory("docker")
    order = {"symbol": "ETH/USDT", "side": "sell", "amount": 0.5, "client_order_id": "idem-1"}
    with httpx.Client(base_url=app.base_url) as c:
        echo = c.post("/api/trades/orders", json=order, headers={"X-Dry-Run": "true"}).json()
        assert echo["status"] == "dry_run" and c.get("/_debug/orders").json() == []
        first = c.post("/api/trades/orders", json=order).json()
        again = c.post("/api/trades/orders", json=order).json()
        assert first["id"] == again["id"] and len(c.get("/_debug/orders").json()) == 1
        assert c.get(f"/api/trades/orders/{first['id']}").json()["amount"] == 0.5
        c.put("/api/v1/settings/dry_run", json={"dry_run": True})
        assert c.post("/api/trades/orders", json={**order, "client_order_id": "x"}).json()[
            "status"] == "dry_run"
        assert c.get("/_debug/dry-run-count").json()["total"] == 2


def test_unknown_drift_exits_2():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "reference_cryptobot", "--drift", "nope"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "unknown drift 'nope'" in done.stderr
