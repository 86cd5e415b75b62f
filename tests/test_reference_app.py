"""The reference Cryptobot behaves like the real services: the shapes of their specs, the same
answers from every Docker copy apart from documented noise, each drift visible in exactly its own
service, dry runs never persisted. Plus the process launcher it runs under.

Real processes: a Docker pair (primary, secondary) and one native copy with every drift. Each
single drift runs in-process (uvicorn in a thread, same app factory), which keeps the file fast.
"""

from __future__ import annotations

import calendar
import itertools
import math
import re
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import psutil
import pytest
import uvicorn

from harness.processes import ManagedProcess, ProcessError, ReferenceApp, free_port
from reference_cryptobot.drifts import DRIFTS
from reference_cryptobot.server import build_parser, create_app, main
from reference_cryptobot.settings import JWT_SECRET_DEFAULT, Settings

# --- noise: what may differ between two copies answering the same requests -------------------

TIME_FIELDS = {"created_at", "updated_at", "completed_at", "start_time", "end_time"}
SECRET_FIELDS = {"api_key", "key"}
TOKEN_FIELDS = {"access_token", "refresh_token"}
UUID_FIELDS = {"id", "optimization_id"}  # only where the value is a uuid4
NOISE_FIELDS = TIME_FIELDS | SECRET_FIELDS | TOKEN_FIELDS | UUID_FIELDS
UUID_TEXT = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
UUID = re.compile(f"^{UUID_TEXT}$")
UUID_IN_TEXT = re.compile(UUID_TEXT)  # e.g. "Order <uuid> not found"
SERVICES = ("health", "data", "auth", "backtest", "strategy", "trade", "mcp")


def token_view(token: str) -> dict[str, Any]:
    """A JWT without its noise (jti, iat, exp, signature): its other claims and its lifetime."""
    claims = jwt.decode(token, JWT_SECRET_DEFAULT, algorithms=["HS256"])
    stable = {k: v for k, v in claims.items() if k not in ("jti", "iat", "exp")}
    return {"claims": stable, "lifetime": claims["exp"] - claims["iat"]}


def denoise(value: Any) -> Any:
    """A body with the documented noise replaced by placeholders."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key in TIME_FIELDS and item is not None:
                out[key] = "<time>"
            elif key in SECRET_FIELDS:
                out[key] = "<secret>"
            elif key in TOKEN_FIELDS:
                out[key] = token_view(item)
            else:
                out[key] = denoise(item)
        return out
    if isinstance(value, list):
        return [denoise(item) for item in value]
    if isinstance(value, str):
        return UUID_IN_TEXT.sub("<uuid>", value)
    return value


def differences(a: Any, b: Any, rtol: float = 0.0, path: str = "") -> list[str]:
    """Paths where two JSON values differ; floats within `rtol` (relative) count as equal."""
    if isinstance(a, dict) and isinstance(b, dict):
        if list(a) != list(b):
            return [f"{path}: keys {list(a)} != {list(b)}"]
        return [d for k in a for d in differences(a[k], b[k], rtol, f"{path}.{k}")]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} items != {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True))
                for d in differences(x, y, rtol, f"{path}[{i}]")]
    if isinstance(a, float) and isinstance(b, float) and not isinstance(a, bool):
        if math.isclose(a, b, rel_tol=rtol, abs_tol=0.0):
            return []
        return [f"{path}: {a!r} != {b!r}"]
    return [] if type(a) is type(b) and a == b else [f"{path}: {a!r} != {b!r}"]


def noisy_fields(a: Any, b: Any, key: str = "") -> set[str]:
    """Field names whose raw values differ between two bodies of the same shape."""
    if isinstance(a, dict) and isinstance(b, dict):
        return {f for k in a.keys() & b.keys() for f in noisy_fields(a[k], b[k], k)}
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return {f for x, y in zip(a, b, strict=True) for f in noisy_fields(x, y, key)}
    if isinstance(a, str) and isinstance(b, str) and not UUID.match(a):
        a, b = UUID_IN_TEXT.sub("<uuid>", a), UUID_IN_TEXT.sub("<uuid>", b)
    return set() if a == b else {key}


# --- the shapes of the specs, where the reference app and the real services overlap ---------
# "name": required, "name?": optional; types joined by "|".

SHAPES: dict[str, dict[str, str]] = {
    "TokenPairResponse": {"access_token": "str", "token_type": "str", "expires_in": "int",
                          "refresh_token": "str", "refresh_token_expires_in": "int"},
    "TokenResponse": {"access_token": "str", "token_type": "str", "expires_in": "int"},
    "TokenValidationResponse": {"valid": "bool", "username?": "str|null", "roles?": "list",
                                "message?": "str|null"},
    "UserOut": {"username": "str", "email": "str", "full_name?": "str|null",
                "disabled?": "bool|null", "mfa_enabled?": "bool|null", "mfa_setup?": "bool|null",
                "id": "int", "roles": "list"},
    "APIKeyOut": {"description": "str", "exchange": "str", "is_test?": "bool", "id": "int",
                  "key": "str"},
    "APIKeyResponse": {"api_key": "str", "created_at": "str", "expires_at?": "str|null",
                       "permissions?": "list"},
    "BacktestResult": {"id": "str", "strategy": "str", "parameters": "dict",
                       "start_time": "str", "end_time?": "str|null", "status": "str",
                       "results?": "dict|null"},
    "PerformanceMetrics": {
        "profit": "number", "max_drawdown": "number", "sharpe_ratio": "number",
        "win_rate": "number", "total_trades": "int", "profit_factor?": "number|null",
        "sortino_ratio?": "number|null", "calmar_ratio?": "number|null",
        "downside_volatility?": "number|null", "volatility?": "number|null",
        "avg_win?": "number|null", "avg_loss?": "number|null", "expectancy?": "number|null"},
    "OptimizationResponse": {"optimization_id": "str", "strategy_name": "str", "symbol": "str",
                             "timeframe": "str", "start_date": "str", "end_date": "str",
                             "results": "list"},
    "HTTPValidationError": {"detail": "list"},
    # The strategy spec has no schemas, only examples (list item; details with versions).
    "StrategyResponse": {"id": "int", "name": "str", "description": "str",
                         "parameters": "dict", "is_active": "bool", "version": "int",
                         "versions?": "list"},
    "StrategyVersion": {"version": "int", "parameters": "dict"},
    # The data service's answer is untyped in its spec; the candle as the brief defines it.
    "Candle": {"timestamp": "str", "open": "number", "high": "number", "low": "number",
               "close": "number", "volume": "number", "exchange": "str", "symbol": "str",
               "timeframe": "str"},
    # MarketOrder / LimitOrder fields, echoed on the persisted order.
    "Order": {"id": "str", "exchange": "str", "symbol": "str", "side": "str", "type": "str",
              "amount": "number", "price": "number", "client_order_id?": "str|null",
              "risk_params?": "dict|null", "time_in_force?": "str|null",
              "post_only?": "bool|null", "status": "str"},
    "DryRun": {"status": "str", "order": "dict"},
    "Detail": {"detail": "str"},
}
NESTED = {"HTTPValidationError": ("detail", {"loc": "list", "msg": "str", "type": "str"}),
          "OptimizationResponse": ("results", {"parameters": "dict", "metrics": "dict"}),
          "BacktestResult": ("results", None)}
TYPES: dict[str, Callable[[Any], bool]] = {
    "str": lambda v: isinstance(v, str),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "bool": lambda v: isinstance(v, bool),
    "list": lambda v: isinstance(v, list),
    "dict": lambda v: isinstance(v, dict),
    "null": lambda v: v is None,
}


def shape_problems(body: Any, shape: str) -> list[str]:
    """What makes `body` not fit `shape` ("Name" or "[Name]" for a list of them)."""
    if shape.startswith("["):
        if not isinstance(body, list):
            return [f"not a list: {body!r:.80}"]
        return [p for item in body for p in shape_problems(item, shape[1:-1])]
    if not isinstance(body, dict):
        return [f"not an object: {body!r:.80}"]
    problems = []
    for name, types in SHAPES[shape].items():
        required = not name.endswith("?")
        name = name.rstrip("?")
        if name not in body:
            problems += [f"{shape}.{name} missing"] if required else []
        elif not any(TYPES[t](body[name]) for t in types.split("|")):
            problems.append(f"{shape}.{name}: {body[name]!r:.60} is not {types}")
    if shape in NESTED:
        member, item_shape = NESTED[shape]
        items = body.get(member) if isinstance(body.get(member), list) else []
        for item in items:
            for name, types in (item_shape or {}).items():
                if name not in item or not TYPES[types](item[name]):
                    problems.append(f"{shape}.{member}[].{name} missing or not {types}")
    return problems


# --- one realistic request script, answers grouped by service -------------------------------

BACKTEST = {"strategy": "sma_crossover", "parameters": {"fast": 10, "slow": 30, "fee": 0.001},
            "symbol": "BTC/USDT", "exchange": "binance", "timeframe": "1h",
            "start_date": "2024-03-01T00:00:00Z", "end_date": "2024-06-01T00:00:00Z",
            "initial_capital": 10_000}
OPTIMIZE = {"strategy_name": "sma_crossover", "symbol": "ETH/USDT", "timeframe": "4h",
            "start_date": "2024-01-01T00:00:00Z", "end_date": "2024-06-01T00:00:00Z",
            "parameter_ranges": [{"name": "fast", "start_value": 5, "end_value": 15, "step": 5},
                                 {"name": "slow", "values": [30, 60]}]}
LIMIT_ORDER = {"exchange": "binance", "symbol": "BTC/USDT", "side": "buy", "type": "limit",
               "amount": 0.987654321, "price": 60000.5, "client_order_id": "script-1",
               "time_in_force": "GTC", "post_only": True}
DRY = {"X-Dry-Run": "true"}


@dataclass
class Run:
    """Answers of one copy to the script: by service, each {"step", "status", "body"}."""

    answers: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    shapes: dict[tuple[str, str], str] = field(default_factory=dict)

    def body(self, service: str, step: str) -> Any:
        """The body answered at a step."""
        return next(a["body"] for a in self.answers[service] if a["step"] == step)

    def clean(self) -> dict[str, list[dict[str, Any]]]:
        """The answers without noise."""
        return {service: denoise(answers) for service, answers in self.answers.items()}


class Script:
    """Sends the script to one base URL and records the answers."""

    def __init__(self, base_url: str) -> None:
        self.client = httpx.Client(base_url=base_url, timeout=20, trust_env=False)
        self.run = Run()

    def call(self, service: str, step: str, method: str, path: str, *, shape: str | None = None,
             expect: int = 200, **kw: Any) -> Any:
        answer = self.client.request(method, path, **kw)
        assert answer.status_code == expect, (step, answer.status_code, answer.text[:300])
        body = answer.json() if answer.content else None
        self.run.answers[service].append({"step": step, "status": answer.status_code,
                                          "body": body})
        if shape:
            self.run.shapes[(service, step)] = shape
        return body

    def all(self) -> Run:
        with self.client:
            for part in (self.health, self.data, self.auth, self.backtest, self.strategy,
                         self.trade, self.mcp):
                part()
        return self.run

    def health(self) -> None:
        self.call("health", "health", "GET", "/health")

    def data(self) -> None:
        base = "/api/v1/data/ohlcv"
        self.call("data", "default", "GET", f"{base}/binance/BTC-USDT/1h", shape="[Candle]")
        self.call("data", "encoded-symbol", "GET", f"{base}/kraken/ETH%2FUSDT/1d",
                  params={"start": "2024-05-01T00:00:00Z", "end": "2024-05-10T00:00:00Z"},
                  shape="[Candle]")
        self.call("data", "from-start", "GET", f"{base}/coinbase/SOL_USDT/15m",
                  params={"start": "2024-05-30T12:07:00Z", "limit": 10}, shape="[Candle]")
        self.call("data", "bad-timeframe", "GET", f"{base}/binance/BTC-USDT/7h", expect=422,
                  shape="HTTPValidationError")

    def auth(self) -> None:
        tokens = self.call("auth", "login", "POST", "/auth/login",
                           data={"username": "demo", "password": "demo"},
                           shape="TokenPairResponse")
        self.call("auth", "login-admin", "POST", "/auth/login",
                  data={"username": "admin", "password": "admin"}, shape="TokenPairResponse")
        self.call("auth", "login-wrong", "POST", "/auth/login", expect=401,
                  data={"username": "demo", "password": "nope"}, shape="Detail")
        bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
        self.call("auth", "me", "GET", "/auth/users/me", headers=bearer, shape="UserOut")
        self.call("auth", "me-anonymous", "GET", "/auth/users/me", expect=401, shape="Detail")
        self.call("auth", "validate", "GET", "/auth/validate", headers=bearer,
                  shape="TokenValidationResponse")
        self.call("auth", "validate-garbage", "GET", "/auth/validate",
                  headers={"Authorization": "Bearer not-a-jwt"}, shape="TokenValidationResponse")
        self.call("auth", "refresh", "POST", "/auth/refresh",
                  json={"refresh_token": tokens["refresh_token"]}, shape="TokenResponse")
        key = self.call("auth", "key-create", "POST", "/auth/api-keys", headers=bearer,
                        json={"description": "bot", "exchange": "binance"},
                        shape="APIKeyResponse")
        self.call("auth", "keys", "GET", "/auth/api-keys", headers=bearer, shape="[APIKeyOut]")
        self.call("auth", "key-delete", "DELETE", f"/auth/api-keys/{key['id']}", headers=bearer)
        self.call("auth", "keys-after", "GET", "/auth/api-keys", headers=bearer,
                  shape="[APIKeyOut]")
        self.call("auth", "logout", "POST", "/auth/logout",
                  params={"refresh_token": tokens["refresh_token"]})
        self.call("auth", "refresh-revoked", "POST", "/auth/refresh", expect=401,
                  json={"refresh_token": tokens["refresh_token"]}, shape="Detail")

    def backtest(self) -> None:
        started = self.call("backtest", "start", "POST", "/api/backtest/start", json=BACKTEST,
                            expect=202, shape="BacktestResult")
        path = started["id"]
        deadline = time.monotonic() + 10
        while self.client.get(f"/api/backtest/status/{path}").json()["status"] != "completed":
            assert time.monotonic() < deadline, "the backtest did not complete within 10 s"
            time.sleep(0.02)
        self.call("backtest", "status", "GET", f"/api/backtest/status/{path}",
                  shape="BacktestResult")
        self.call("backtest", "results", "GET", f"/api/backtest/results/{path}",
                  shape="BacktestResult")
        self.call("backtest", "performance", "GET", f"/api/backtest/performance/{path}",
                  shape="PerformanceMetrics")
        self.call("backtest", "unknown", "GET", "/api/backtest/results/nope", expect=404,
                  shape="Detail")
        self.call("backtest", "optimize", "POST", "/api/backtest/optimize", json=OPTIMIZE,
                  shape="OptimizationResponse")
        self.call("backtest", "bad-parameters", "POST", "/api/backtest/start", expect=422,
                  json={**BACKTEST, "parameters": {"fast": 0}}, shape="HTTPValidationError")

    def strategy(self) -> None:
        base = "/api/strategies"
        for name in ("alpha", "beta", "gamma"):
            self.call("strategy", f"create-{name}", "POST", f"{base}/", expect=201,
                      json={"name": name, "description": f"{name} SMA",
                            "parameters": {"fast": 5, "slow": 20}}, shape="StrategyResponse")
        self.call("strategy", "update", "PUT", f"{base}/1",
                  json={"parameters": {"fast": 8, "slow": 21}}, shape="StrategyResponse")
        for strategy_id in (1, 3):
            self.call("strategy", f"activate-{strategy_id}", "POST",
                      f"{base}/{strategy_id}/activate", shape="StrategyResponse")
        self.call("strategy", "list", "GET", f"{base}/", shape="[StrategyResponse]")
        self.call("strategy", "list-all", "GET", f"{base}/", params={"active_only": "false"},
                  shape="[StrategyResponse]")
        self.call("strategy", "get", "GET", f"{base}/1", shape="StrategyResponse")
        self.call("strategy", "versions", "GET", f"{base}/1/versions", shape="[StrategyVersion]")
        self.call("strategy", "deactivate", "POST", f"{base}/3/deactivate",
                  shape="StrategyResponse")
        self.call("strategy", "delete", "DELETE", f"{base}/2", expect=204)
        self.call("strategy", "get-deleted", "GET", f"{base}/2", expect=404, shape="Detail")

    def trade(self) -> None:
        orders, switch = "/api/trades/orders", "/api/v1/settings/dry_run"
        # Live, as production: an order is real whatever its headers say.
        self.call("trade", "switch-live", "PUT", switch, json={"dry_run": False})
        placed = self.call("trade", "place-limit", "POST", orders, json=LIMIT_ORDER,
                           headers=DRY, shape="Order")
        self.call("trade", "place-again", "POST", orders, json=LIMIT_ORDER, shape="Order")
        self.call("trade", "get", "GET", f"{orders}/{placed['id']}",
                  params={"exchange": "binance"}, shape="Order")
        self.call("trade", "list", "GET", orders, shape="[Order]")
        self.call("trade", "cancel", "DELETE", f"{orders}/{placed['id']}", shape="Order")
        self.call("trade", "cancel-again", "DELETE", f"{orders}/{placed['id']}", expect=400,
                  shape="Detail")
        self.call("trade", "place-market", "POST", orders, shape="Order",
                  json={"exchange": "binance", "symbol": "BTC/USDT", "side": "buy",
                        "type": "market", "amount": 0.015})
        self.call("trade", "limit-without-price", "POST", orders, expect=422,
                  json={**LIMIT_ORDER, "price": None}, shape="HTTPValidationError")
        self.call("trade", "switch", "GET", switch)
        self.call("trade", "switch-on", "PUT", switch, json={"dry_run": True})
        self.call("trade", "dry-run-market", "POST", orders, shape="DryRun",
                  json={"exchange": "binance", "symbol": "ETH/USDT", "side": "sell",
                        "amount": "0.5", "risk_params": {"stop_loss_pct": 0.05,
                                                         "take_profit_pct": 0.1}})
        self.call("trade", "dry-run-limit", "POST", orders, shape="DryRun",
                  json={**LIMIT_ORDER, "amount": 0.123456789, "client_order_id": "script-dry"})
        self.call("trade", "switch-off", "PUT", switch, json={"dry_run": False})
        self.call("trade", "echo", "POST", "/api/v1/orders/", shape="DryRun",
                  json={"exchange": "binance", "symbol": "BTC/USDT", "side": "buy",
                        "amount": 0.2, "type": "market", "client_order_id": "script-echo"})

    def mcp(self) -> None:
        paper = "/mcp/paper-trading"
        order = {"symbol": "ETH/USDT", "side": "buy", "type": "market", "amount": 1.234567891}
        self.call("mcp", "balances", "GET", f"{paper}/balances")
        self.call("mcp", "dry-run", "POST", f"{paper}/orders", json=order, headers=DRY,
                  shape="DryRun")
        placed = self.call("mcp", "order", "POST", f"{paper}/orders", json=order, shape="Order")
        self.call("mcp", "get", "GET", f"{paper}/orders/{placed['id']}", shape="Order")
        self.call("mcp", "balances-after", "GET", f"{paper}/balances")
        self.call("mcp", "too-much", "POST", f"{paper}/orders", expect=400, shape="Detail",
                  json={**order, "amount": 1000})


def differing_services(a: Run, b: Run, rtol: float = 0.0) -> set[str]:
    """Services whose answers differ beyond the documented noise."""
    clean_a, clean_b = a.clean(), b.clean()
    assert set(clean_a) == set(clean_b) == set(SERVICES)
    return {s for s in SERVICES if differences(clean_a[s], clean_b[s], rtol)}


@contextmanager
def served(settings: Settings) -> Iterator[str]:
    """The app of `settings` served by uvicorn in a thread of this process; its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port,
                                           log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, name=f"reference-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "in-process app did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@dataclass
class Fleet:
    """The real processes and their answers to the script (run once, on fresh state)."""

    primary: ReferenceApp
    secondary: ReferenceApp
    native: ReferenceApp
    runs: dict[str, Run]


@pytest.fixture(scope="module")
def fleet(reference_factory) -> Fleet:
    """Docker primary and secondary, native with every drift: started side by side, then the
    script against each of them (also side by side)."""
    apps = {"primary": reference_factory("docker", wait=False),
            "secondary": reference_factory("docker", wait=False),
            "native": reference_factory("native", drifts=tuple(DRIFTS), wait=False)}
    for app in apps.values():
        app.wait_healthy()
    with ThreadPoolExecutor(len(apps)) as pool:
        runs = dict(zip(apps, pool.map(lambda app: Script(app.base_url).all(), apps.values()),
                        strict=True))
    return Fleet(apps["primary"], apps["secondary"], apps["native"], runs)


# --- parity of the copies -------------------------------------------------------------------


def test_two_docker_copies_differ_only_in_documented_noise(fleet):
    primary, secondary = fleet.runs["primary"], fleet.runs["secondary"]
    assert differing_services(primary, secondary) == set()
    noisy = noisy_fields(dict(primary.answers), dict(secondary.answers))
    assert noisy <= NOISE_FIELDS, noisy - NOISE_FIELDS
    assert {"access_token", "created_at", "id", "api_key"} <= noisy, "real noise expected"


def test_noise_headers_on_every_answer_flavour_in_a_header_only(fleet):
    answers = [httpx.get(app.base_url + "/health", trust_env=False)
               for app in (fleet.primary, fleet.primary, fleet.native)]
    assert [a.json() for a in answers] == [{"status": "ok"}] * 3
    assert [a.headers["x-cryptobot-flavor"] for a in answers] == ["docker", "docker", "native"]
    ids = {a.headers["x-request-id"] for a in answers}
    assert len(ids) == 3 and all(UUID.match(i) for i in ids)
    assert all(float(a.headers["x-process-time"]) >= 0 and a.headers["date"] for a in answers)


@pytest.mark.parametrize("flavor", ["primary", "native"])
def test_answers_have_the_shapes_of_the_specs(fleet, flavor):
    run = fleet.runs[flavor]
    problems = [f"{service} {step}: {problem}"
                for (service, step), shape in run.shapes.items()
                for problem in shape_problems(run.body(service, step), shape)]
    assert problems == []
    assert len(run.shapes) >= 45


def test_all_drifts_together_touch_exactly_their_services(fleet):
    primary, native = fleet.runs["primary"], fleet.runs["native"]
    expected = {d.service for d in DRIFTS.values() if d.content}
    assert differing_services(primary, native) == expected
    assert {"health", "mcp"}.isdisjoint(expected)


@pytest.fixture(scope="module")
def in_process_docker(tmp_path_factory) -> Run:
    """The script against the Docker app served in-process (uvicorn in a thread)."""
    with served(Settings(flavor="docker", data_dir=tmp_path_factory.mktemp("inproc"))) as url:
        return Script(url).all()


def test_the_in_process_app_answers_as_the_process(fleet, in_process_docker):
    assert differing_services(fleet.runs["primary"], in_process_docker) == set()


def _candles_shifted(docker: Run, drifted: Run) -> None:
    for step in ("default", "encoded-symbol", "from-start"):
        ours, theirs = docker.body("data", step), drifted.body("data", step)
        assert len(ours) == len(theirs) > 0
        for a, b in zip(ours, theirs, strict=True):
            assert _epoch(b["timestamp"]) - _epoch(a["timestamp"]) == 3600
            assert {k: v for k, v in a.items() if k != "timestamp"} == \
                {k: v for k, v in b.items() if k != "timestamp"}


def _epoch(stamp: str) -> int:
    return calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ"))


def _shorter_tokens(docker: Run, drifted: Run) -> None:
    for step, field_name in (("login", "expires_in"), ("refresh", "expires_in")):
        assert docker.body("auth", step)[field_name] == 1800
        assert drifted.body("auth", step)[field_name] == 900
    assert token_view(drifted.body("auth", "login")["access_token"])["lifetime"] == 900
    assert token_view(drifted.body("auth", "login")["refresh_token"])["lifetime"] == 7 * 86400


def _float_noise_only(docker: Run, drifted: Run) -> None:
    a, b = denoise(docker.answers["backtest"]), denoise(drifted.answers["backtest"])
    assert differences(a, b), "float-order must change some float"
    assert differences(a, b, rtol=1e-12) == []


def _fees_in_cents(docker: Run, drifted: Run) -> None:
    ours = docker.body("backtest", "results")["results"]
    theirs = drifted.body("backtest", "results")["results"]
    profit, drifted_profit = ours["metrics"]["profit"], theirs["metrics"]["profit"]
    assert abs(profit - drifted_profit) > 1e-6 * abs(profit)
    assert all(round(t["fee"], 2) == pytest.approx(t["fee"], abs=1e-9)
               for t in theirs["trades"])
    assert differences(denoise(ours), denoise(theirs), rtol=1e-9)


def _amounts_to_six_decimals(docker: Run, drifted: Run) -> None:
    assert docker.body("trade", "dry-run-limit")["order"]["amount"] == 0.12345679
    assert drifted.body("trade", "dry-run-limit")["order"]["amount"] == 0.123457
    assert drifted.body("trade", "place-limit")["amount"] == 0.987654
    assert drifted.body("mcp", "order")["amount"] == 1.23456789


def _newest_first(docker: Run, drifted: Run) -> None:
    for step in ("list", "list-all"):
        ids = [s["id"] for s in docker.body("strategy", step)]
        assert ids == sorted(ids) and len(ids) >= 2
        assert [s["id"] for s in drifted.body("strategy", step)] == ids[::-1]


EFFECTS: dict[str, Callable[[Run, Run], None]] = {
    "tz-offset": _candles_shifted,
    "token-lifetime": _shorter_tokens,
    "float-order": _float_noise_only,
    "fee-rounding": _fees_in_cents,
    "amount-precision": _amounts_to_six_decimals,
    "list-order": _newest_first,
}


@pytest.mark.parametrize("drift", [name for name, d in DRIFTS.items() if d.content])
def test_each_drift_changes_exactly_its_own_service(in_process_docker, drift, tmp_path):
    settings = Settings(flavor="native", drifts={drift}, data_dir=tmp_path)
    with served(settings) as url:
        drifted = Script(url).all()
    assert differing_services(in_process_docker, drifted) == {DRIFTS[drift].service}
    EFFECTS[drift](in_process_docker, drifted)
    if drift == "float-order":  # not a regression: equal within 1e-12 everywhere
        assert differing_services(in_process_docker, drifted, rtol=1e-12) == set()


# --- the data service -----------------------------------------------------------------------


def test_candles_depend_on_their_timestamp_only(fleet):
    base = fleet.primary.base_url + "/api/v1/data/ohlcv/binance"
    default = httpx.get(f"{base}/BTC-USDT/1h", trust_env=False).json()
    assert len(default) == 100 and default[-1]["timestamp"] == "2024-05-31T23:00:00Z"
    encoded = httpx.get(f"{base}/BTC%2FUSDT/1h", trust_env=False)
    assert "%2F" in encoded.request.url.raw_path.decode()
    # One market, each answer naming the symbol as sent (as the real data service does).
    assert encoded.json() == [{**c, "symbol": "BTC/USDT"} for c in default]
    assert {c["symbol"] for c in default} == {"BTC-USDT"}
    by_time = {c["timestamp"]: c for c in default}
    for params in ({"limit": 7}, {"start": "2024-05-31T10:30:00Z", "limit": 5},
                   {"end": "2024-05-31T12:00:00+02:00", "limit": 3},
                   {"start": "2024-05-31T01:00:00Z", "end": "2024-05-31T04:00:00Z"}):
        some = httpx.get(f"{base}/BTC-USDT/1h", params=params, trust_env=False).json()
        assert some and all(by_time[c["timestamp"]] == c for c in some), params
    ranged = httpx.get(f"{base}/BTC-USDT/1h", trust_env=False,
                       params={"start": "2024-05-31T10:30:00Z", "limit": 2}).json()
    assert [c["timestamp"] for c in ranged] == ["2024-05-31T11:00:00Z", "2024-05-31T12:00:00Z"]
    for c in default:
        assert c["low"] <= min(c["open"], c["close"]) <= max(c["open"], c["close"]) <= c["high"]
    assert all(a["close"] == b["open"] for a, b in itertools.pairwise(default))


@pytest.mark.parametrize(("path", "params"), [
    ("BTC-USDT/7h", {}),
    ("BTC-USDT/1h", {"start": "2024-05-02T00:00:00Z", "end": "2024-05-01T00:00:00Z"}),
    ("BTC-USDT/1h", {"limit": 0}),
    ("BTC-USDT/1h", {"limit": 1001}),
    ("BTC-USDT/1h", {"start": "yesterday"}),
    ("BTC-USDT/1h", {"end": "2024-13-01T00:00:00Z"}),
    ("BTC/1h", {}),  # no quote asset: not a market
])
def test_bad_candle_queries_are_422_in_fastapis_shape(fleet, path, params):
    answer = httpx.get(f"{fleet.primary.base_url}/api/v1/data/ohlcv/binance/{path}",
                       params=params, trust_env=False)
    assert answer.status_code == 422
    assert shape_problems(answer.json(), "HTTPValidationError") == []
    assert answer.json()["detail"]


# --- auth, trade ----------------------------------------------------------------------------


def test_login_failures_do_not_tell_users_apart(fleet):
    login = fleet.native.base_url + "/auth/login"
    unknown = httpx.post(login, data={"username": "nobody", "password": "demo"}, trust_env=False)
    wrong = httpx.post(login, data={"username": "demo", "password": "nope"}, trust_env=False)
    assert unknown.status_code == wrong.status_code == 401
    assert unknown.content == wrong.content == b'{"detail":"Incorrect username or password"}'
    assert unknown.headers["www-authenticate"] == wrong.headers["www-authenticate"] == "Bearer"


def test_the_signing_secret_can_be_overridden(monkeypatch):
    assert Settings().jwt_secret == JWT_SECRET_DEFAULT
    monkeypatch.setenv("CRYPTOBOT_JWT_SECRET", "another-secret-of-at-least-32-bytes!")
    assert Settings().jwt_secret == "another-secret-of-at-least-32-bytes!"


def test_tokens_are_shared_secret_hs256_with_the_documented_claims(fleet):
    tokens = fleet.runs["primary"].body("auth", "login")
    access = jwt.decode(tokens["access_token"], JWT_SECRET_DEFAULT, algorithms=["HS256"])
    assert set(access) == {"sub", "roles", "email", "token_type", "jti", "iat", "exp"}
    assert (access["sub"], access["roles"], access["token_type"]) == ("demo", ["trader"],
                                                                      "access")
    assert access["exp"] - access["iat"] == tokens["expires_in"] == 1800
    admin = fleet.runs["primary"].body("auth", "login-admin")["access_token"]
    assert token_view(admin)["claims"]["roles"] == ["admin", "trader"]
    # A token from one copy is valid on another (the signing secret is shared).
    other = httpx.get(fleet.secondary.base_url + "/auth/validate", trust_env=False,
                      headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert other.json()["valid"] is True


def test_trade_orders_obey_the_switch_alone_and_dry_runs_are_never_persisted(fleet):
    order = {"exchange": "binance", "symbol": "ETH/USDT", "side": "sell", "amount": 0.25,
             "client_order_id": "idem-1"}
    switch = "/api/v1/settings/dry_run"
    with httpx.Client(base_url=fleet.native.base_url, trust_env=False) as c:
        before = c.get("/_debug/orders").json()
        counted = c.get("/_debug/dry-run-count").json()
        assert c.put(switch, json={"dry_run": True}).json() == {"dry_run": True}
        assert c.get(switch).json() == {"dry_run": True}
        switched = c.post("/api/trades/orders", json=order).json()
        paper = c.post("/mcp/paper-trading/orders", headers={"X-Dry-Run": "1"},
                       json={**order, "side": "buy"}).json()
        assert c.put(switch, json={"dry_run": False}).json() == {"dry_run": False}
        echo = c.post("/api/v1/orders/", json={**order, "type": "market"}).json()
        assert [switched["status"], paper["status"], echo["status"]] == ["dry_run"] * 3
        assert echo["order"] == {**order, "type": "market"}  # echoed as sent, never priced
        assert c.get(f"/api/trades/orders/{switched['order']['id']}").status_code == 404
        assert c.get("/_debug/orders").json() == before
        now = c.get("/_debug/dry-run-count").json()
        assert (now["trade"] - counted["trade"], now["paper"] - counted["paper"]) == (2, 1)
        # Live: the dry-run header is not read, the order is real (and idempotent).
        first = c.post("/api/trades/orders", json=order, headers=DRY).json()
        again = c.post("/api/trades/orders", json={**order, "amount": 9}).json()
        assert first == again and first["status"] == "filled"
        assert c.get("/_debug/orders").json() == [*before, {"venue": "trade", **first}]
        assert c.post("/api/v1/orders/", json={"symbol": "BTC/USDT"}).status_code == 422


def test_the_switch_starts_off_on_docker_on_on_native_unless_told(monkeypatch, tmp_path):
    monkeypatch.delenv("CRYPTOBOT_DRY_RUN", raising=False)
    assert (Settings(flavor="docker").dry_run, Settings(flavor="native").dry_run) == \
        (False, True)
    monkeypatch.setenv("CRYPTOBOT_DRY_RUN", "true")
    assert Settings(flavor="docker").dry_run is True
    assert Settings(flavor="docker", dry_run=False).dry_run is False
    with served(Settings(flavor="native", dry_run=False, data_dir=tmp_path)) as url:
        assert httpx.get(url + "/api/v1/settings/dry_run").json() == {"dry_run": False}
    args = build_parser().parse_args(["--no-dry-run"])
    assert args.dry_run is False and build_parser().parse_args([]).dry_run is None


def test_backtest_runs_in_the_background_and_unknown_ids_are_404(fleet):
    with httpx.Client(base_url=fleet.secondary.base_url, trust_env=False) as c:
        started = c.post("/api/backtest/start", json={**BACKTEST, "timeframe": "4h"})
        assert started.status_code == 202 and started.json()["status"] == "pending"
        backtest_id = started.json()["id"]
        early = c.get(f"/api/backtest/results/{backtest_id}").json()
        if early["status"] != "completed":  # results appear only once the run has completed
            assert early["results"] is None and early["completed_at"] is None
            performance = c.get(f"/api/backtest/performance/{backtest_id}")
            assert performance.status_code in (200, 409)
        deadline = time.monotonic() + 5
        while c.get(f"/api/backtest/status/{backtest_id}").json()["status"] != "completed":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        results = c.get(f"/api/backtest/results/{backtest_id}").json()
        assert results["completed_at"] and results["results"]["equity_curve"]
        for what in ("status", "results", "performance"):
            assert c.get(f"/api/backtest/{what}/no-such-id").status_code == 404


def test_optimisation_ranks_every_combination_by_sharpe(fleet):
    answer = fleet.runs["primary"].body("backtest", "optimize")
    sharpes = [r["metrics"]["sharpe_ratio"] for r in answer["results"]]
    assert len(sharpes) == 3 * 2 and sharpes == sorted(sharpes, reverse=True)
    assert answer["best_parameters"] == answer["results"][0]["parameters"]
    assert {tuple(sorted(r["parameters"].items())) for r in answer["results"]} == {
        (("fast", f), ("slow", s)) for f in (5, 10, 15) for s in (30, 60)}


# --- the command line and the launcher ------------------------------------------------------


def test_unknown_drift_is_a_clear_error_with_status_2(capsys):
    assert main(["--flavor", "native", "--drift", "tz-offset,nope"]) == 2
    assert "unknown drift 'nope' (known: tz-offset," in capsys.readouterr().err
    done = subprocess.run([sys.executable, "-m", "reference_cryptobot", "--drift", "nope"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "unknown drift 'nope'" in done.stderr


def test_a_process_that_dies_early_fails_fast_with_its_log(tmp_path):
    script = "import sys; print('cannot start: port taken', flush=True); sys.exit(3)"
    process = ManagedProcess([sys.executable, "-c", script], startup_timeout=20,
                             health_url=f"http://127.0.0.1:{free_port()}/health",
                             log_path=tmp_path / "dies.log")
    started = time.monotonic()
    with pytest.raises(ProcessError, match=r"(?s)status 3.*cannot start: port taken"):
        process.start()
    assert time.monotonic() - started < 10
    assert not process.running


def test_stop_ends_the_whole_process_group(tmp_path):
    child = "import time; time.sleep(60)"
    parent = (f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {child!r}]);"
              "time.sleep(60)")
    with ManagedProcess([sys.executable, "-c", parent], log_path=tmp_path / "p.log") as process:
        deadline = time.monotonic() + 10
        while not psutil.Process(process.pid).children():
            assert time.monotonic() < deadline
            time.sleep(0.02)
        members = [psutil.Process(process.pid), *psutil.Process(process.pid).children()]
    assert process.stop() is not None  # idempotent
    deadline = time.monotonic() + 5
    while not all(_ended(member) for member in members):
        assert time.monotonic() < deadline, [m.pid for m in members if not _ended(m)]
        time.sleep(0.05)
    assert Path(process.log_path).exists()


def _ended(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_free_ports_of_two_test_workers_never_meet_nor_clients_ports():
    """Two pytest-xdist workers choosing ports at once (the CI failure: a proxy's admin port
    answered by another worker's server) get disjoint ports, below the ephemeral range every
    connect() takes its local port from, and one process never gets a port twice running."""
    ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    script = ("from harness.processes import free_port; "
              "print(*[free_port() for _ in range(500)])")
    chosen = {}
    for worker in ("gw0", "gw1"):
        env = {"PYTEST_XDIST_WORKER": worker, "PYTEST_XDIST_WORKER_COUNT": "2",
               "PATH": "/usr/bin:/bin"}
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              env=env, timeout=60, check=True)
        chosen[worker] = [int(port) for port in done.stdout.split()]
    for ports in chosen.values():
        assert len(set(ports)) == len(ports) == 500
        assert all(1024 <= port < ephemeral_low for port in ports)
    assert not set(chosen["gw0"]) & set(chosen["gw1"])
