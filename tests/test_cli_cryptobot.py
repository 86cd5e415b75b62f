"""`parity cryptobot` as a user runs it: options pass through to the reference app, which serves
on the port given and accepts the symbol forms the real data and backtest services accept."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from harness.processes import ReferenceApp, free_port, start_reference_app

BIN = Path(sys.executable).parent / "parity"
FORMS = ("BTCUSDT", "BTC-USDT", "BTC%2FUSDT", "btc_usdt")
BACKTEST = {"strategy": "sma_crossover", "parameters": {"fast": 5, "slow": 20},
            "exchange": "binance", "timeframe": "1h", "start_date": "2024-04-01T00:00:00Z",
            "end_date": "2024-04-15T00:00:00Z"}


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> ReferenceApp:
    """`parity cryptobot --flavor docker --port P`: the console script, options first."""
    data_dir = tmp_path_factory.mktemp("parity-cryptobot")
    port = free_port()
    app = ReferenceApp([BIN, "cryptobot", "--flavor", "docker", "--port", str(port),
                        "--data-dir", data_dir], f"http://127.0.0.1:{port}",
                       log_path=data_dir / "app.log", startup_timeout=60)
    app.start()
    yield app
    app.stop()


def test_options_pass_through_and_it_serves_on_the_port(served):
    answer = httpx.get(served.base_url + "/health", trust_env=False)
    assert answer.status_code == 200
    assert answer.headers["x-cryptobot-flavor"] == "docker"


def test_help_is_the_apps_help_under_the_parity_name():
    done = subprocess.run([BIN, "cryptobot", "--help"], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: parity cryptobot")
    assert "--flavor" in done.stdout and "--port" in done.stdout


def test_a_bad_option_is_a_one_line_error_with_status_2():
    done = subprocess.run([BIN, "cryptobot", "--flavor", "podman"], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "parity cryptobot: error: argument --flavor: invalid choice: 'podman'" in done.stderr


def test_every_symbol_form_names_one_market_answered_as_sent(served):
    bodies = {}
    for form in FORMS:
        answer = httpx.get(f"{served.base_url}/api/v1/data/ohlcv/binance/{form}/1h",
                           params={"limit": 5}, trust_env=False)
        assert answer.status_code == 200, (form, answer.text)
        bodies[form] = answer.json()
    sent = {"BTCUSDT": "BTCUSDT", "BTC-USDT": "BTC-USDT", "BTC%2FUSDT": "BTC/USDT",
            "btc_usdt": "btc_usdt"}
    for form, candles in bodies.items():
        assert len(candles) == 5 and {c["symbol"] for c in candles} == {sent[form]}
    values = {form: [{k: v for k, v in c.items() if k != "symbol"} for c in candles]
              for form, candles in bodies.items()}
    assert all(series == values["BTC-USDT"] for series in values.values())


def test_not_a_market_is_still_422(served):
    answer = httpx.get(f"{served.base_url}/api/v1/data/ohlcv/binance/BTC/1h", trust_env=False)
    assert answer.status_code == 422
    assert "BTCUSDT" in answer.text  # the message names the accepted forms


def test_backtests_accept_every_symbol_form_and_answer_it_as_sent(served):
    client = httpx.Client(base_url=served.base_url, timeout=30, trust_env=False)
    results = {}
    with client:
        for symbol in ("BTCUSDT", "BTC-USDT", "BTC/USDT"):
            started = client.post("/api/backtest/start", json={**BACKTEST, "symbol": symbol})
            assert started.status_code == 202, started.text
            assert started.json()["symbol"] == symbol
            run_id = started.json()["id"]
            deadline = time.monotonic() + 60  # generous: a loaded machine
            while (body := client.get(f"/api/backtest/results/{run_id}").json())["status"] \
                    in ("pending", "running") and time.monotonic() < deadline:
                time.sleep(0.05)
            assert body["status"] == "completed" and body["symbol"] == symbol
            assert body["results"]["symbol"] == symbol
            results[symbol] = body["results"]["metrics"]
        optimised = client.post("/api/backtest/optimize", json={
            "strategy_name": "sma_crossover", "symbol": "ETHUSDT", "timeframe": "4h",
            "start_date": "2024-01-01T00:00:00Z", "end_date": "2024-03-01T00:00:00Z",
            "parameter_ranges": [{"name": "fast", "values": [5, 10]}]})
        assert optimised.status_code == 200, optimised.text
        assert optimised.json()["symbol"] == "ETHUSDT"
    assert results["BTCUSDT"] == results["BTC-USDT"] == results["BTC/USDT"]


def test_the_reference_app_module_takes_the_same_forms(tmp_path):
    app = start_reference_app("native", data_dir=tmp_path, log_path=tmp_path / "app.log")
    try:
        answer = httpx.get(f"{app.base_url}/api/v1/data/ohlcv/kraken/ETHBTC/1d",
                           params={"limit": 2}, trust_env=False)
    finally:
        app.stop()
    assert answer.status_code == 200 and [c["symbol"] for c in answer.json()] == ["ETHBTC"] * 2
