"""Realistic Cryptobot user sessions, sent through the shadow proxy by `parity demo` (and usable by
benchmarks): log in, query candles, run a backtest start → poll → results, manage
strategies, place orders (real on the primary, as a user would; the proxy mirrors them only to
copies in dry-run mode) and paper trades. Deterministic for a given seed."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

import httpx

SYMBOLS = ("BTC-USDT", "ETH-USDT", "SOL-USDT")
TIMEFRAMES = ("1h", "4h", "1d")


@dataclass(slots=True)
class TrafficStats:
    """What the client saw: requests sent and any errors (the proxy must add none)."""

    requests: int = 0
    errors: list[str] = field(default_factory=list)

    def note(self, answer: httpx.Response) -> httpx.Response:
        self.requests += 1
        if answer.status_code >= 500:
            self.errors.append(f"{answer.request.method} {answer.request.url.path}: "
                               f"HTTP {answer.status_code}")
        return answer


class CryptobotSession:
    """One user's session against a Cryptobot base URL (the shadow proxy in the demo)."""

    def __init__(self, client: httpx.Client, rng: random.Random, stats: TrafficStats) -> None:
        self.client = client
        self.rng = rng
        self.stats = stats
        self.headers: dict[str, str] = {}

    def _get(self, path: str, **kw) -> httpx.Response:
        return self.stats.note(self.client.get(path, headers=self.headers, **kw))

    def _post(self, path: str, **kw) -> httpx.Response:
        headers = {**self.headers, **kw.pop("headers", {})}
        return self.stats.note(self.client.post(path, headers=headers, **kw))

    def login(self, user: str = "demo") -> None:
        answer = self._post("/auth/login", data={"username": user, "password": user})
        if answer.status_code == 200:
            self.headers = {"Authorization": f"Bearer {answer.json()['access_token']}"}
            self._get("/auth/validate")
            self._get("/auth/users/me")
        self._post("/auth/login", data={"username": user, "password": "wrong-password"})

    def candles(self) -> None:
        symbol = self.rng.choice(SYMBOLS)
        timeframe = self.rng.choice(TIMEFRAMES)
        self._get(f"/api/v1/data/ohlcv/binance/{symbol}/{timeframe}",
                  params={"limit": self.rng.choice((24, 48, 100))})
        self._get(f"/api/v1/data/ohlcv/binance/{symbol}/1h",
                  params={"start": "2024-05-20T00:00:00Z", "end": "2024-05-22T00:00:00Z"})

    def backtest(self) -> None:
        fast = self.rng.choice((5, 8, 10))
        answer = self._post("/api/backtest/start", json={
            "strategy": "sma_crossover",
            "parameters": {"fast": fast, "slow": fast * 3, "fee": 0.001},
            "symbol": self.rng.choice(SYMBOLS).replace("-", "/"),
            "exchange": "binance",
            "timeframe": "1h",
            "start_date": "2024-03-01T00:00:00Z",
            "end_date": "2024-06-01T00:00:00Z",
            "initial_capital": 10_000,
        })
        if answer.status_code not in (200, 201, 202):
            return
        backtest_id = answer.json()["id"]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            status = self._get(f"/api/backtest/status/{backtest_id}")
            if status.status_code != 200 or status.json().get("status") in ("completed", "failed"):
                break
            time.sleep(0.05)
        self._get(f"/api/backtest/results/{backtest_id}")
        self._get(f"/api/backtest/performance/{backtest_id}")

    def strategies(self) -> None:
        name = f"sma-{self.rng.randrange(10_000)}"
        created = self._post("/api/strategies/", json={
            "name": name,
            "description": "demo strategy",
            "parameters": {"fast": 10, "slow": 30},
        })
        self._get("/api/strategies/")
        if created.status_code not in (200, 201):
            return
        strategy_id = created.json()["id"]
        base = f"/api/strategies/{strategy_id}"
        self._get(base)
        self.stats.note(self.client.put(base, headers=self.headers, json={
            "description": "tuned", "parameters": {"fast": 12, "slow": 36},
        }))
        self._post(f"{base}/activate")
        self._get(f"{base}/versions")
        self._post(f"{base}/deactivate")

    def orders(self, amount_decimals: int = 8) -> None:
        """A market and a limit order, real on the primary; the proxy mirrors them only to copies
        that proved their dry-run switch on. The trade service reads no dry-run header."""
        amount = round(self.rng.uniform(0.001, 0.5), amount_decimals)
        order = {
            "exchange": "binance",
            "symbol": "BTC/USDT",
            "side": self.rng.choice(("buy", "sell")),
            "type": "market",
            "amount": amount,
            "client_order_id": f"demo-{self.rng.getrandbits(48):012x}",
        }
        self._post("/api/trades/orders", json=order)
        limit = {**order, "type": "limit", "price": round(self.rng.uniform(60000, 70000), 2),
                 "time_in_force": "GTC",
                 "client_order_id": f"demo-{self.rng.getrandbits(48):012x}"}
        self._post("/api/trades/orders", json=limit)

    def paper_trading(self) -> None:
        self._get("/mcp/paper-trading/balances")
        self._post("/mcp/paper-trading/orders", json={
            "symbol": "ETH/USDT",
            "side": "buy",
            "type": "market",
            "amount": round(self.rng.uniform(0.01, 2), 6),
        }, headers={"X-Dry-Run": "true"})

    def run(self) -> None:
        """A whole session, in the order a real user would go."""
        self.login()
        self.candles()
        self.backtest()
        self.strategies()
        self.orders()
        self.paper_trading()
        self.candles()
