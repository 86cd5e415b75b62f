"""The shadow proxy against real processes: the reference Cryptobot as primary (Docker), secondary
(Docker) and candidate (native, with drifts), the proxy as a subprocess, and a client running
realistic sessions through it. Clients get the primary's answers unchanged; every exchange is
recorded with the right verdict; orders reach the candidate only as dry runs, once each; a down,
hanging or slow candidate costs clients nothing and the proxy's memory does not grow."""

from __future__ import annotations

import signal
import socket
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import psutil
import pytest
from support import Shadow, SlowCopy, started_workers

from harness.processes import ManagedProcess, free_port
from harness.store.reader import iter_records

ADDON = Path(__file__).resolve().parent.parent / "harness" / "shadow" / "addon.py"
ORDER = {"exchange": "binance", "symbol": "BTC/USDT", "side": "buy", "type": "limit",
         "amount": 0.12345678, "price": 60000.0}


@pytest.fixture(scope="module")
def apps(reference_factory):
    """Primary and secondary (Docker flavour), candidate (native, two drifts); the secondary and
    the candidate in dry-run mode (orders are mirrored only to copies that prove it)."""
    primary, secondary = reference_factory("docker"), reference_factory("docker")
    candidate = reference_factory("native", drifts=("tz-offset", "amount-precision"))
    for app in (secondary, candidate):
        httpx.put(app.base_url + "/api/v1/settings/dry_run", json={"dry_run": True})
    return primary, secondary, candidate


def user_session(client: httpx.Client, direct: httpx.Client) -> int:
    """A Cryptobot user's session through the proxy (`client`); reads are compared with the
    primary's answers fetched directly (`direct`). Returns the number of requests proxied."""
    sent = 0

    def call(method: str, path: str, expect: int = 200, **kw) -> httpx.Response:
        nonlocal sent
        sent += 1
        answer = client.request(method, path, **kw)
        assert answer.status_code == expect, (method, path, answer.status_code, answer.text)
        return answer

    def same_as_direct(path: str, **kw) -> httpx.Response:
        through = call("GET", path, **kw)
        assert through.content == direct.get(path, **kw).content, path
        return through

    token = call("POST", "/auth/login", data={"username": "demo", "password": "demo"}).json()
    auth = {"Authorization": f"Bearer {token['access_token']}"}
    same_as_direct("/auth/users/me", headers=auth)
    same_as_direct("/api/v1/data/ohlcv/binance/BTC-USDT/1h", params={"limit": "24"})

    started = call("POST", "/api/backtest/start", 202, json={
        "strategy": "sma_crossover", "parameters": {"fast": 5, "slow": 15, "fee": 0.001},
        "symbol": "BTC/USDT", "exchange": "binance", "timeframe": "1h",
        "start_date": "2024-03-01T00:00:00Z", "end_date": "2024-04-01T00:00:00Z",
        "initial_capital": 10_000}).json()
    deadline = time.monotonic() + 10
    while call("GET", f"/api/backtest/status/{started['id']}").json()["status"] not in (
            "completed", "failed") and time.monotonic() < deadline:
        time.sleep(0.05)
    same_as_direct(f"/api/backtest/results/{started['id']}")

    created = call("POST", "/api/strategies/", 201, headers=auth,
                   json={"name": "shadow", "parameters": {"fast": 10, "slow": 30}}).json()
    base = f"/api/strategies/{created['id']}"
    same_as_direct(base)
    call("PUT", base, json={"description": "tuned", "parameters": {"fast": 12, "slow": 36}})
    call("POST", f"{base}/activate")
    same_as_direct(f"{base}/versions")
    call("DELETE", base, 204)

    # Real orders (mirrored to copies in dry-run mode) and the client's retry of the first; the
    # trade service reads no dry-run header.
    placed = call("POST", "/api/trades/orders", json={**ORDER, "client_order_id": "shadow-1"})
    retried = call("POST", "/api/trades/orders", json={**ORDER, "client_order_id": "shadow-1"})
    assert placed.json()["id"] == retried.json()["id"] and placed.json()["status"] == "open"
    call("POST", "/api/trades/orders", json={**ORDER, "client_order_id": "shadow-2"},
         headers={"X-Dry-Run": "true"})
    call("GET", "/mcp/paper-trading/balances")
    call("POST", "/mcp/paper-trading/orders", headers={"X-Dry-Run": "true"},
         json={"symbol": "ETH/USDT", "side": "buy", "type": "market", "amount": 0.5})
    return sent


def test_a_session_answered_by_the_primary_and_judged_against_the_native_candidate(
        tmp_path, apps):
    primary, secondary, candidate = apps
    # The primary's strategy ids run ahead, so the candidate's differ and must be correlated.
    httpx.post(primary.base_url + "/api/strategies/", json={"name": "ahead"})
    shadow = Shadow(tmp_path, primary.base_url, candidate.base_url, "--secondary",
                    secondary.base_url)
    with httpx.Client(base_url=shadow.url) as client, \
            httpx.Client(base_url=primary.base_url) as direct:
        sent = user_session(client, direct)
    records = shadow.stop()

    assert len(records) == sent + 1  # and the launcher's health check
    by_group: dict[str, Counter] = {}
    for record in records:
        by_group.setdefault(record["group"], Counter())[record["verdict"]] += 1
        assert record["verdict"] != "candidate-error", record["reason"]
    assert by_group["data"]["mismatch"] == 1  # tz-offset: candles shifted
    assert set(by_group["strategy"]) <= {"match", "noise-only"}, by_group["strategy"]
    orders = [r for r in records if r["route"] == "POST /api/trades/orders"]
    assert [r["mirror"].split(":")[0] for r in orders] == ["dry-run", "skipped", "dry-run"]
    assert orders[0]["verdict"] == "mismatch"  # amount-precision: 0.12345678 → 0.123457
    assert "duplicate order" in orders[1]["reason"]
    # Orders reached the candidate and the secondary only as dry runs, exactly once each.
    for environment in (candidate, secondary):
        assert httpx.get(environment.base_url + "/_debug/orders").json() == []
        counts = httpx.get(environment.base_url + "/_debug/dry-run-count").json()
        assert (counts["trade"], counts["paper"]) == (2, 1), (environment, counts)
    real = httpx.get(primary.base_url + "/_debug/orders").json()
    assert [o["client_order_id"] for o in real if o["venue"] == "trade"] == ["shadow-1",
                                                                          "shadow-2"]
    assert "mirrored" in shadow.log() and "(final)" in shadow.log()


def test_docker_against_docker_is_all_match_or_noise_and_ctrl_c_exits_cleanly(tmp_path, apps):
    primary, secondary, _ = apps
    shadow = Shadow(tmp_path, primary.base_url, secondary.base_url)
    with httpx.Client(base_url=shadow.url) as client, \
            httpx.Client(base_url=primary.base_url) as direct:
        sent = user_session(client, direct)
    records = shadow.stop(signal.SIGINT)
    assert len(records) == sent + 1
    verdicts = Counter(r["verdict"] for r in records)
    assert set(verdicts) <= {"match", "noise-only", "skipped"}, [
        (r["route"], r["verdict"], r["reason"], r["differences"][:2]) for r in records
        if r["verdict"] not in ("match", "noise-only", "skipped")]
    assert verdicts["skipped"] == 1  # the retried order
    tokens = [r for r in records if r["route"] == "POST /auth/login"]
    assert "redacted:sha256:" in str(tokens[0]["primary"]["body"])


class Hanging:
    """Accepts connections and never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(512)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                self.held.append(self.sock.accept()[0])
            except OSError:
                return

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


@pytest.mark.parametrize("fault", ["down", "hanging", "slow"])
def test_a_faulty_candidate_costs_clients_nothing(tmp_path, apps, fault):
    primary, path = apps[0], "/health"
    stand_in = Hanging() if fault == "hanging" else SlowCopy(primary.base_url, path) \
        if fault == "slow" else None
    candidate = stand_in.url if stand_in else f"http://127.0.0.1:{free_port()}"
    shadow = Shadow(tmp_path, primary.base_url, candidate, "--timeout", "1",
                    "--max-inflight", "256")
    expected = httpx.get(primary.base_url + path).content
    proxy = psutil.Process(shadow.process.pid)
    latencies = []
    try:
        with httpx.Client(base_url=shadow.url, timeout=5) as client:
            for _ in range(20):  # warm up
                assert client.get(path).content == expected
            rss_before = proxy.memory_info().rss
            for _ in range(120):
                started = time.perf_counter()
                answer = client.get(path)
                latencies.append(time.perf_counter() - started)
                assert answer.status_code == 200 and answer.content == expected
            rss_after = proxy.memory_info().rss
    finally:
        records = shadow.stop()
        if stand_in:
            stand_in.close()
    latencies.sort()
    assert latencies[int(len(latencies) * 0.99)] < 0.25, latencies[-5:]  # never waits on a mirror
    assert rss_after - rss_before < 8 * 1024 * 1024, (rss_before, rss_after)
    assert len(records) == 141  # and the launcher's health check
    records = [r for r in records if r["request"]["path"] == path]
    verdicts = {r["verdict"] for r in records}
    if fault == "slow":
        assert verdicts == {"match"}, Counter((r["verdict"], r["reason"]) for r in records)
        assert min(r["candidate"]["latency_ms"] for r in records) >= 450
    else:
        assert verdicts == {"candidate-error"}
        reason = "connection refused" if fault == "down" else "timeout after 1s"
        assert {r["reason"] for r in records} == {reason}


def test_mitmdump_with_the_addon_script(tmp_path, apps):
    primary, _, candidate = apps
    port = free_port()
    recordings = tmp_path / "rec"
    mitmdump = Path(sys.executable).parent / "mitmdump"
    proxy = ManagedProcess(
        [str(mitmdump), "--mode", f"reverse:{primary.base_url}", "--listen-host", "127.0.0.1",
         "--listen-port", str(port), "-s", str(ADDON),
         "--set", f"parity_candidate={candidate.base_url}",
         "--set", f"parity_recordings={recordings}", "--set", "parity_timeout=2"],
        health_url=f"http://127.0.0.1:{port}/health", log_path=tmp_path / "mitmdump.log",
    ).start()
    workers = started_workers(proxy)
    answer = httpx.get(f"http://127.0.0.1:{port}/api/v1/data/ohlcv/binance/ETH-USDT/4h",
                       params={"limit": "5"})
    assert answer.content == httpx.get(
        f"{primary.base_url}/api/v1/data/ohlcv/binance/ETH-USDT/4h", params={"limit": "5"}
    ).content
    assert proxy.stop(timeout=60) == 0, proxy.log_tail()
    assert workers and not any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE
                               for w in workers)
    records = {r["route"]: r for r in iter_records([recordings])}
    assert records["GET /health"]["verdict"] == "match"
    assert records["GET /api/v1/data/ohlcv/{exchange}/{symbol}/{timeframe}"]["verdict"] \
        == "mismatch"
    final = proxy.log_tail(50)
    assert "shadow: 2 requests answered: compared 2, " in final
    assert "in flight" not in final and "captured 2, mirrored 2" in final


def test_bad_arguments_are_one_line_errors(tmp_path, capsys):
    from harness.cli import main

    for argv, message in (
            (["--primary", "ftp://x", "--candidate", "http://c"], "--primary 'ftp://x'"),
            (["--primary", "http://p", "--candidate", "http://c:99999"], "--candidate"),
            (["--primary", "http://p", "--candidate", "http://c", "--sample", "3"], "--sample"),
            (["--primary", "http://p", "--candidate", "http://c", "--listen", "nope"],
             "--listen 'nope'"),
            (["--primary", "http://p", "--candidate", "http://c", "--certs",
              str(tmp_path / "none.pem")], "--certs")):
        assert main(["shadow", *argv]) == 2
        error = capsys.readouterr().err
        assert error.startswith(f"parity shadow: error: {message}"), error
        assert len(error.strip().splitlines()) == 1
