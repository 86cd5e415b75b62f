"""Synthetic judged exchanges for the report's tests and bench: recordings lines as the engine
would write them, for every migration group, with drifts, learned noise, latencies, backtest
bodies with equity curves, orders (dry-run echoes) and one hostile body.

    records = list(scenario(600, drifts=("fee-rounding",)))
    write_jsonl(tmp_path / "exchanges.jsonl", records)
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

HOSTILE = (
    '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=1">'
    "</textarea></script><svg onload=window.__pwned=1>"
)
HOSTILE_ID = "hostile0000000000000000000000001"

# group -> [(method, route template, concrete path maker, comparator, weight)]
ROUTES: dict[str, list[tuple[str, str, str, float]]] = {
    "data": [("GET", "/api/v1/data/ohlcv/{exchange}/{symbol}/{timeframe}", "ohlcv", 3.0)],
    "backtest": [
        ("POST", "/api/backtest/start", "backtest", 0.6),
        ("GET", "/api/backtest/status/{backtest_id_str}", "backtest", 0.8),
        ("GET", "/api/backtest/results/{backtest_id_str}", "backtest", 1.0),
    ],
    "strategy": [
        ("GET", "/api/strategies/", "strategy", 1.2),
        ("POST", "/api/strategies/{id}/activate", "strategy", 0.4),
    ],
    "auth": [
        ("POST", "/auth/login", "auth", 0.6),
        ("GET", "/auth/validate", "auth", 1.2),
        ("POST", "/auth/logout", "auth", 0.2),
    ],
    "trade": [
        ("POST", "/api/trades/orders", "order", 0.8),
        ("GET", "/api/trades/orders/{order_id}", "order", 0.8),
    ],
    "mcp": [("POST", "/mcp/tools/{tool}", "json", 0.6)],
}
BASE_LATENCY = {
    "data": 35.0,
    "backtest": 90.0,
    "strategy": 20.0,
    "auth": 15.0,
    "trade": 45.0,
    "mcp": 60.0,
}
# drift name -> (group, route template, share of that route's exchanges it hits)
DRIFTS = {
    "tz-offset": ("data", "/api/v1/data/ohlcv/{exchange}/{symbol}/{timeframe}", 1.0),
    "fee-rounding": ("backtest", "/api/backtest/results/{backtest_id_str}", 0.4),
    "token-lifetime": ("auth", "/auth/login", 1.0),
    "amount-precision": ("trade", "/api/trades/orders", 0.3),
    "list-order": ("strategy", "/api/strategies/", 0.5),
}
SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT", "ADA/USDT")
JSON = [["content-type", "application/json"], ["server", "uvicorn"]]


def _body(value: Any) -> dict[str, Any]:
    text = orjson.dumps(value).decode()
    return {"text": text, "size": len(text)}


def _diff(
    path: str,
    kind: str,
    primary: Any,
    candidate: Any,
    message: str,
    severity: str = "warning",
    noise: bool = False,
) -> dict[str, Any]:
    return {
        "path": path,
        "kind": kind,
        "primary": primary,
        "candidate": candidate,
        "severity": severity,
        "message": message,
        "noise": noise,
    }


def _curve(rng: random.Random, n: int) -> list[float]:
    equity, out = 10_000.0, []
    for _ in range(n):
        equity *= 1 + rng.gauss(0.0004, 0.006)
        out.append(round(equity, 2))
    return out


class _Maker:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.curves = [_curve(rng, 240) for _ in range(8)]

    def hexid(self, n: int = 32) -> str:
        return f"{self.rng.getrandbits(4 * n):0{n}x}"

    # Each maker returns (path, query, request body, primary body, candidate body, diffs)
    def ohlcv(self, drift: bool) -> tuple:
        symbol = self.rng.choice(SYMBOLS)
        start = 1_704_067_200_000 + self.rng.randrange(1000) * 3_600_000
        candles = []
        price = self.rng.uniform(1, 60_000)
        for i in range(24):
            price *= 1 + self.rng.gauss(0, 0.004)
            candles.append(
                [
                    start + i * 3_600_000,
                    round(price, 2),
                    round(price * 1.002, 2),
                    round(price * 0.998, 2),
                    round(price * 1.001, 2),
                    round(self.rng.uniform(1, 900), 4),
                ]
            )
        body = {"exchange": "binance", "symbol": symbol, "timeframe": "1h", "data": candles}
        other = orjson.loads(orjson.dumps(body))
        diffs = []
        if drift:
            for candle in other["data"]:
                candle[0] += 3_600_000
            diffs.append(
                _diff(
                    "data[0][0]",
                    "changed",
                    candles[0][0],
                    other["data"][0][0],
                    "every candle timestamp is shifted by +3600 s (time zone?)",
                )
            )
        if self.rng.random() < 0.3:  # the latest candle is still forming: learned as noise
            other["data"][-1][5] = round(other["data"][-1][5] + 1.5, 4)
            diffs.append(
                _diff(
                    "data[23][5]",
                    "changed",
                    candles[-1][5],
                    other["data"][-1][5],
                    "volume of the latest candle",
                    noise=True,
                )
            )
        path = f"/api/v1/data/ohlcv/binance/{symbol.replace('/', '-')}/1h"
        return path, [["limit", "24"]], None, body, other, diffs

    def backtest(self, template: str, drift: bool) -> tuple:
        bt_id = self.hexid(12)
        if template.endswith("start"):
            req = {
                "strategy": "mean_reversion",
                "symbol": self.rng.choice(SYMBOLS),
                "timeframe": "1h",
                "start_date": "2024-01-01",
                "end_date": "2024-03-01",
            }
            body = {"backtest_id": bt_id, "status": "queued"}
            return "/api/backtest/start", [], req, body, {**body, "backtest_id": self.hexid(12)}, []
        if "/status/" in template:
            body = {"id": bt_id, "status": "completed", "progress": 1.0}
            return f"/api/backtest/status/{bt_id}", [], None, body, dict(body), []
        curve = self.rng.choice(self.curves)
        trades = [
            {
                "symbol": "BTC/USDT",
                "side": "buy",
                "entry_time": f"2024-01-{d + 1:02d}T10:00:00Z",
                "entry_price": 42_013.7 + 100 * d,
                "exit_price": 42_300.0 + 90 * d,
                "amount": 0.0537,
                "fee": round(0.0537 * (42_013.7 + 100 * d) * 0.001, 8),
                "pnl": round(0.0537 * (286.3 - 10 * d), 8),
            }
            for d in range(6)
        ]
        body = {
            "id": bt_id,
            "strategy": "mean_reversion",
            "parameters": {"lookback": 20, "threshold": 1.5},
            "start_time": "2024-05-01T12:00:00Z",
            "end_time": "2024-05-01T12:00:04Z",
            "status": "completed",
            "results": {
                "metrics": {
                    "total_return": round(curve[-1] / 10_000 - 1, 6),
                    "sharpe_ratio": 1.4213,
                    "max_drawdown": 0.0831,
                    "win_rate": 0.58,
                    "total_trades": 6,
                },
                "equity_curve": curve,
                "trades": trades,
            },
        }
        other = orjson.loads(orjson.dumps(body))
        diffs = []
        if drift:
            fee = other["results"]["trades"][2]["fee"]
            other["results"]["trades"][2]["fee"] = round(fee, 2)
            diffs.append(
                _diff(
                    "results.trades[2].fee",
                    "changed",
                    fee,
                    round(fee, 2),
                    f"fee {fee} != {round(fee, 2)} (rounded to cents)",
                )
            )
            other["results"]["equity_curve"] = curve[:150] + [
                round(v - 4.2, 2) for v in curve[150:]
            ]
            diffs.append(
                _diff(
                    "results.equity_curve[150]",
                    "changed",
                    curve[150],
                    other["results"]["equity_curve"][150],
                    "equity differs from index 150 on (90 points), largest deviation 4.2",
                )
            )
        return f"/api/backtest/results/{bt_id}", [], None, body, other, diffs

    def strategy(self, template: str, drift: bool) -> tuple:
        if template.endswith("activate"):
            sid = self.rng.randrange(1, 90)
            body = {"id": sid, "name": f"grid-{sid}", "is_active": True}
            return f"/api/strategies/{sid}/activate", [], None, body, dict(body), []
        items = [
            {
                "id": i,
                "name": f"strategy-{i}",
                "type": "mean_reversion",
                "is_active": i % 2 == 0,
                "parameters": {"lookback": 10 + i},
            }
            for i in range(1, 9)
        ]
        body = {"items": items, "total": len(items), "generated_at": "2024-05-01T12:00:00.123Z"}
        other = {**body, "generated_at": "2024-05-01T12:00:00.131Z"}
        diffs = [
            _diff(
                "generated_at",
                "changed",
                body["generated_at"],
                other["generated_at"],
                "generation time",
                noise=True,
            )
        ]
        if drift:
            other["items"] = list(reversed(items))
            diffs.append(_diff("items", "order", None, None, "same 8 strategies, another order"))
        return "/api/strategies/", [["page", "1"]], None, body, other, diffs

    def auth(self, template: str, drift: bool) -> tuple:
        if template == "/auth/login":
            req = {"username": "trader@example.com", "password": "redacted:sha256:5e884898"}
            body = {
                "access_token": "redacted:sha256:9f86d081",
                "token_type": "bearer",
                "expires_in": 3600,
            }
            other = {**body, "access_token": "redacted:sha256:60303ae2"}
            diffs = []
            if drift:
                other["expires_in"] = 1800
                diffs.append(
                    _diff(
                        "expires_in",
                        "changed",
                        3600,
                        1800,
                        "token lifetime 3600 s != 1800 s",
                        severity="critical",
                    )
                )
            return "/auth/login", [], req, body, other, diffs
        body = {"valid": True, "user": "trader@example.com", "roles": ["trader"]}
        return template, [], None, body, dict(body), []

    def order(self, template: str, drift: bool) -> tuple:
        amount = round(self.rng.uniform(0.001, 2), 8)
        intent = {
            "exchange": "binance",
            "symbol": self.rng.choice(SYMBOLS),
            "side": self.rng.choice(("buy", "sell")),
            "type": "limit",
            "amount": amount,
            "price": round(self.rng.uniform(100, 60_000), 2),
            "time_in_force": "GTC",
            "post_only": False,
        }
        if template.endswith("{order_id}"):
            oid = self.hexid(16)
            body = {"id": oid, **intent, "status": "open", "filled": 0.0}
            return f"/api/trades/orders/{oid}", [], None, body, dict(body), []
        primary = {"status": "dry_run", "order": dict(intent)}
        candidate = {"status": "dry_run", "order": dict(intent)}
        diffs = []
        if drift:
            candidate["order"]["amount"] = round(amount, 4)
            diffs.append(
                _diff(
                    "order.amount",
                    "changed",
                    amount,
                    round(amount, 4),
                    f"amount {amount} != {round(amount, 4)} (precision)",
                )
            )
        return "/api/trades/orders", [], intent, primary, candidate, diffs

    def mcp(self, untestable: bool) -> tuple:
        tool = self.rng.choice(("market_summary", "portfolio", "signals"))
        body = {
            "tool": tool,
            "result": {"ok": True, "items": [1, 2, 3]},
            "meta": {"request_id": self.hexid(8)},
        }
        other = {**body, "meta": {"request_id": self.hexid(8)}}
        diffs = [
            _diff(
                "meta.request_id",
                "changed",
                body["meta"]["request_id"],
                other["meta"]["request_id"],
                "request id",
                severity="info",
                noise=True,
            )
        ]
        if untestable:
            diffs.append(
                _diff(
                    "result.generated_at",
                    "changed",
                    "12:00:01",
                    "12:00:02",
                    "the Docker copies disagree here too",
                )
            )
        return f"/mcp/tools/{tool}", [], {"arguments": {}}, body, other, diffs


def scenario(
    n: int,
    *,
    drifts: Iterable[str] = (),
    seed: int = 7,
    hostile: bool = False,
    untestable: Iterable[str] = (),
    candidate_errors: float = 0.0,
) -> Iterator[dict[str, Any]]:
    """`n` judged exchanges over all groups. `drifts` names entries of `DRIFTS`; `untestable`
    names groups whose routes the Docker copies disagree on; `hostile` makes the first backtest
    results exchange carry hostile markup in its request, answer and differences."""
    rng = random.Random(seed)
    maker = _Maker(rng)
    drifts = set(drifts)
    untestable = set(untestable)
    unknown = drifts - set(DRIFTS)
    if unknown:
        raise ValueError(f"unknown drifts {sorted(unknown)}; known: {sorted(DRIFTS)}")
    choices = [(g, m, t, c) for g, routes in ROUTES.items() for m, t, c, _ in routes]
    weights = [w for routes in ROUTES.values() for *_, w in routes]
    hostile_due = hostile
    for i in range(n):
        group, method, template, comparator = rng.choices(choices, weights)[0]
        if hostile_due and template.endswith("{backtest_id_str}") and "results" in template:
            hostile_due = False
            yield _hostile(maker, i)
            continue
        yield _record(
            maker, i, group, method, template, comparator, drifts, untestable, candidate_errors
        )


def _record(
    maker: _Maker,
    i: int,
    group: str,
    method: str,
    template: str,
    comparator: str,
    drifts: set[str],
    untestable: set[str],
    candidate_errors: float,
) -> dict[str, Any]:
    rng = maker.rng
    drifted = any(DRIFTS[d][1] == template and rng.random() < DRIFTS[d][2] for d in drifts)
    if group == "data":
        path, query, req, primary, candidate, diffs = maker.ohlcv(drifted)
    elif group == "backtest":
        path, query, req, primary, candidate, diffs = maker.backtest(template, drifted)
    elif group == "strategy":
        path, query, req, primary, candidate, diffs = maker.strategy(template, drifted)
    elif group == "auth":
        path, query, req, primary, candidate, diffs = maker.auth(template, drifted)
    elif group == "trade":
        path, query, req, primary, candidate, diffs = maker.order(template, drifted)
    else:
        path, query, req, primary, candidate, diffs = maker.mcp(group in untestable)
    base = BASE_LATENCY[group]
    p_ms = round(base * math.exp(rng.gauss(0, 0.35)), 2)
    c_ms = round(base * 0.92 * math.exp(rng.gauss(0, 0.35)), 2)
    record: dict[str, Any] = {
        "v": 1,
        "id": maker.hexid(),
        "ts": 1_714_564_800.0 + i * 0.05,
        "route": f"{method} {template}",
        "group": group,
        "comparator": comparator,
        "mirror": "dry-run" if comparator == "order" and method == "POST" else "mirrored",
        "session": f"redacted:sha256:{maker.hexid(8)}",
        "reason": None,
        "request": {
            "method": method,
            "path": path,
            "query": query,
            "headers": [
                ["authorization", "redacted:sha256:1f2e3d4c"],
                ["accept", "application/json"],
            ],
            "body": _body(req) if req is not None else {"size": 0},
        },
        "primary": {"status": 200, "headers": JSON, "body": _body(primary), "latency_ms": p_ms},
        "candidate": {"status": 200, "headers": JSON, "body": _body(candidate), "latency_ms": c_ms},
        "secondary": None,
        "differences": diffs,
    }
    if template == "/auth/logout":
        record.update(
            verdict="skipped",
            reason="unsafe method: not mirrored",
            mirror="skipped:unsafe-method",
            candidate=None,
            differences=[],
        )
        return record
    if candidate_errors and rng.random() < candidate_errors:
        record.update(
            verdict="candidate-error",
            reason="candidate timed out after 5.0 s",
            differences=[],
            candidate={
                "status": 0,
                "headers": [],
                "body": {"size": 0},
                "latency_ms": None,
                "error": "timeout after 5.0 s",
            },
        )
        return record
    real = [d for d in diffs if not d["noise"]]
    if group in untestable:
        record["verdict"] = "untestable"
        record["reason"] = "the two Docker copies disagree at result.generated_at"
    elif real:
        record["verdict"] = "mismatch"
    elif diffs:
        record["verdict"] = "noise-only"
    else:
        record["verdict"] = "match"
    if diffs and rng.random() < 0.2:  # a secondary answer was recorded (noise learning)
        record["secondary"] = {
            "status": 200,
            "headers": JSON,
            "body": _body(candidate),
            "latency_ms": p_ms,
        }
    return record


def _hostile(maker: _Maker, i: int) -> dict[str, Any]:
    record = _record(
        maker,
        i,
        "backtest",
        "GET",
        "/api/backtest/results/{backtest_id_str}",
        "backtest",
        set(),
        set(),
        0.0,
    )
    primary = orjson.loads(record["primary"]["body"]["text"])
    candidate = orjson.loads(orjson.dumps(primary))
    candidate["strategy"] = HOSTILE
    record["id"] = HOSTILE_ID
    record["request"]["query"] = [["note", HOSTILE]]
    record["request"]["headers"].append(["x-note", HOSTILE])
    record["candidate"]["body"] = _body(candidate)
    record["candidate"]["headers"] = [*JSON, ["x-debug", HOSTILE]]
    record["differences"] = [
        _diff("strategy", "changed", primary["strategy"], HOSTILE, f"name differs: {HOSTILE}")
    ]
    record["verdict"] = "mismatch"
    record["reason"] = HOSTILE
    return record


def write_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> Path:
    """Write records as a recordings segment (one JSON line each)."""
    with open(path, "wb") as handle:
        for record in records:
            handle.write(orjson.dumps(record) + b"\n")
    return path
