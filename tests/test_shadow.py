"""The shadow proxy against real processes: production answers unchanged, every exchange recorded
with the right verdict, orders only ever reach the candidate as dry runs, and a down, hanging or
slow candidate costs clients nothing."""

from __future__ import annotations

import socket
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest

from harness.processes import ManagedProcess, free_port
from harness.store.reader import iter_records

SHADOW = [sys.executable, "-m", "harness.cli", "shadow"]
ADDON = Path(__file__).resolve().parent.parent / "harness" / "shadow" / "addon.py"


def start_proxy(tmp_path, primary: str, candidate: str, secondary: str | None = None,
                *extra: str) -> tuple[ManagedProcess, str, Path]:
    port = free_port()
    recordings = tmp_path / f"rec-{port}"
    argv = [*SHADOW, "--primary", primary, "--candidate", candidate, "--listen",
            f"127.0.0.1:{port}", "--recordings", str(recordings), "--timeout", "1", *extra]
    if secondary:
        argv += ["--secondary", secondary]
    proxy = ManagedProcess(argv, health_url=f"http://127.0.0.1:{port}/health",
                           log_path=tmp_path / f"shadow-{port}.log").start()
    return proxy, f"http://127.0.0.1:{port}", recordings


def records_after_stop(proxy: ManagedProcess, recordings: Path) -> list[dict]:
    assert proxy.stop(timeout=60) == 0, proxy.log_tail()
    return list(iter_records([recordings])) if recordings.exists() else []


@pytest.fixture(scope="module")
def apps(reference_factory):
    primary, secondary = reference_factory("docker"), reference_factory("docker")
    candidate = reference_factory("native", drifts=("tz-offset", "amount-precision"))
    return primary, secondary, candidate


ORDER = {"symbol": "BTC/USDT", "side": "buy", "type": "limit", "amount": 0.12345678,
         "price": 60000.0}


def test_answers_unchanged_orders_dry_run_once_and_verdicts_recorded(tmp_path, apps):
    primary, secondary, candidate = apps
    proxy, url, recordings = start_proxy(tmp_path, primary.base_url, candidate.base_url,
                                         secondary.base_url)
    paths = ["/api/v1/data/ohlcv/binance/BTC-USDT/1h?limit=5", "/health",
             "/api/v1/settings/dry_run", "/api/v1/data/ohlcv/binance/ETH-USDT/7h"]
    with httpx.Client(base_url=url) as client:
        for path in paths:
            through, direct = client.get(path), httpx.get(primary.base_url + path)
            assert (through.status_code, through.content) == (direct.status_code, direct.content)
        orders = []
        for number in range(5):
            placed = client.post("/api/trades/orders",
                                 json={**ORDER, "client_order_id": f"shadow-{number}"})
            assert placed.status_code == 200 and placed.json()["status"] == "open"
            orders.append(placed.json()["id"])
        cancelled = client.delete(f"/api/trades/orders/{orders[0]}")
        assert cancelled.json()["status"] == "cancelled"
    records = records_after_stop(proxy, recordings)
    assert len(records) == 1 + len(paths) + 6  # + the launcher's health check
    by_route = {}
    for record in records:
        by_route.setdefault(record["route"], []).append(record)
    candles = by_route["GET /api/v1/data/ohlcv/{exchange}/{symbol}/{timeframe}"]
    # tz-offset on the candidate shifts the candles; both reject the 7h timeframe alike.
    assert sorted(r["verdict"] for r in candles) == ["match", "mismatch"]
    assert all(r["verdict"] == "mismatch" and r["mirror"] == "dry-run"
               for r in by_route["POST /api/trades/orders"])
    assert by_route["DELETE /api/trades/orders/{order_id}"][0]["verdict"] == "skipped"
    assert httpx.get(candidate.base_url + "/_debug/orders").json() == []
    assert httpx.get(candidate.base_url + "/_debug/dry-run-count").json()["trade"] == 5
    assert httpx.get(secondary.base_url + "/_debug/orders").json() == []
    assert len(httpx.get(primary.base_url + "/_debug/orders").json()) >= 5


def test_docker_against_docker_is_all_match_or_noise(tmp_path, apps):
    primary, secondary, _ = apps
    proxy, url, recordings = start_proxy(tmp_path, primary.base_url, secondary.base_url,
                                         primary.base_url)
    with httpx.Client(base_url=url) as client:
        token = client.post("/auth/login", data={"username": "demo", "password": "demo"}).json()
        auth = {"Authorization": f"Bearer {token['access_token']}"}
        client.get("/auth/users/me", headers=auth)
        client.get("/api/v1/data/ohlcv/binance/BTC-USDT/1h?limit=50")
        created = client.post("/api/strategies/strategies/", json={"name": "s", "parameters": {}})
        client.get(f"/api/strategies/strategies/{created.json()['id']}")
        client.post("/api/trades/orders", json=ORDER, headers={"X-Dry-Run": "true"})
    records = records_after_stop(proxy, recordings)
    assert len(records) == 7  # + the launcher's health check
    assert {r["verdict"] for r in records} <= {"match", "noise-only"}, [
        (r["route"], r["verdict"], r["differences"][:2]) for r in records]
    secret = token["access_token"]
    written = b"".join(p.read_bytes() for p in recordings.iterdir())
    assert secret.encode() not in written and b"redacted:sha256:" in written


class Hanging:
    """Accepts connections and never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(100)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


@pytest.mark.parametrize("fault", ["down", "hanging"])
def test_a_faulty_candidate_costs_clients_nothing(tmp_path, apps, fault):
    primary = apps[0]
    hanging = Hanging() if fault == "hanging" else None
    candidate = hanging.url if hanging else f"http://127.0.0.1:{free_port()}"
    proxy, url, recordings = start_proxy(tmp_path, primary.base_url, candidate)
    process = psutil.Process(proxy.pid)
    path = "/api/v1/data/ohlcv/binance/BTC-USDT/1h?limit=20"
    expected = httpx.get(primary.base_url + path).content
    try:
        with httpx.Client(base_url=url, timeout=5) as client:
            for _ in range(50):  # warm up
                assert client.get(path).content == expected
            rss_before = process.memory_info().rss
            started = time.perf_counter()
            for _ in range(300):
                answer = client.get(path)
                assert answer.status_code == 200 and answer.content == expected
            elapsed = time.perf_counter() - started
            rss_after = process.memory_info().rss
    finally:
        records = records_after_stop(proxy, recordings)
        if hanging:
            hanging.close()
    assert elapsed < 30, elapsed  # a hanging candidate (1 s timeout) never sits in the path
    assert rss_after - rss_before < 20 * 1024 * 1024, (rss_before, rss_after)
    assert records and {r["verdict"] for r in records} == {"candidate-error"}
    reasons = {r["reason"] for r in records}
    assert reasons <= {"connection refused", "timeout after 1s"}, reasons


def test_mitmdump_with_the_addon_script(tmp_path, apps):
    primary, _, candidate = apps
    port = free_port()
    recordings = tmp_path / "rec"
    mitmdump = Path(sys.executable).parent / "mitmdump"
    proxy = ManagedProcess(
        [str(mitmdump), "--mode", f"reverse:{primary.base_url}", "--listen-host", "127.0.0.1",
         "--listen-port", str(port), "-q", "-s", str(ADDON),
         "--set", f"parity_candidate={candidate.base_url}",
         "--set", f"parity_recordings={recordings}"],
        health_url=f"http://127.0.0.1:{port}/health", log_path=tmp_path / "mitmdump.log",
    ).start()
    httpx.get(f"http://127.0.0.1:{port}/api/v1/settings/dry_run")
    records = records_after_stop(proxy, recordings)
    assert {r["route"] for r in records} >= {"GET /health", "GET /api/v1/settings/dry_run"}
    assert all(r["verdict"] == "match" for r in records)


def test_bad_arguments_are_one_line_errors():
    import subprocess

    done = subprocess.run([*SHADOW, "--primary", "ftp://x", "--candidate", "http://c"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().startswith("parity shadow: error: --primary 'ftp://x'")
