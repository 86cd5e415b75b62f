"""Trade service (orders, dry run, the service-wide dry-run switch) and MCP paper trading.

A request carrying `X-Dry-Run: true` (or any request while the switch is on) is validated and
priced but never persisted; its answer is `{"status": "dry_run", "order": {...}}`. Real orders are
persisted and idempotent by `client_order_id`. `/_debug/...` lets tests prove which real orders
and dry runs reached this process.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, HTTPException, Request
from pydantic import BaseModel, Field, model_validator

from reference_cryptobot.market import normalise_symbol, series
from reference_cryptobot.settings import Settings

QUOTE_BALANCE = 100_000.0


class Side(StrEnum):
    """Order side."""

    BUY = "buy"
    SELL = "sell"


class OrderRequest(BaseModel):
    """MarketOrder or LimitOrder, as in the trade service's spec."""

    exchange: str = "binance"
    symbol: str
    side: Side
    type: Literal["market", "limit"] = "market"
    amount: float = Field(gt=0)
    price: float | None = Field(default=None, gt=0)
    client_order_id: str | None = Field(default=None, max_length=64)
    time_in_force: Literal["GTC", "IOC", "FOK"] | None = None
    post_only: bool | None = None
    risk_params: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _limit_needs_price(self) -> OrderRequest:
        if self.type == "limit" and self.price is None:
            raise ValueError("a limit order needs a price")
        return self


class DryRunSetting(BaseModel):
    """The service-wide dry-run switch."""

    dry_run: bool


class OrderBook:
    """Persisted real orders (trade and paper venues) in sqlite, and dry-run counts."""

    def __init__(self, path: str) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS orders (id TEXT PRIMARY KEY, venue TEXT NOT NULL, "
            "client_order_id TEXT, body TEXT NOT NULL)"
        )
        self._lock = threading.Lock()
        self.dry_runs = {"trade": 0, "paper": 0}

    def find(self, venue: str, *, order_id: str | None = None,
             client_order_id: str | None = None) -> dict[str, Any] | None:
        column, value = ("id", order_id) if order_id else ("client_order_id", client_order_id)
        with self._lock:
            row = self._db.execute(
                f"SELECT body FROM orders WHERE venue = ? AND {column} = ?",
                (venue, value),
            ).fetchone()
        return json.loads(row[0]) if row else None

    def save(self, venue: str, order: dict[str, Any]) -> None:
        with self._lock, self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO orders VALUES (?, ?, ?, ?)",
                (order["id"], venue, order.get("client_order_id"), json.dumps(order)),
            )

    def all(self, venue: str | None = None) -> list[dict[str, Any]]:
        where, args = (" WHERE venue = ?", (venue,)) if venue else ("", ())
        with self._lock:
            rows = self._db.execute(
                f"SELECT body FROM orders{where} ORDER BY rowid", args
            ).fetchall()
        return [json.loads(r[0]) for r in rows]


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _market_price(settings: Settings, exchange: str, symbol: str) -> float:
    return round(float(series(settings.seed, exchange, symbol, "1h")[3][-1]), 2)


def _intent(settings: Settings, body: OrderRequest, *, venue: str) -> dict[str, Any]:
    digits = 6 if venue == "trade" and settings.has("amount-precision") else 8
    symbol = normalise_symbol(body.symbol)
    price = body.price if body.price is not None else _market_price(
        settings, body.exchange.lower(), symbol)
    amount = round(body.amount, digits)
    return {
        "exchange": body.exchange.lower(),
        "symbol": symbol,
        "side": body.side.value,
        "type": body.type,
        "amount": amount,
        "price": round(price, 8),
        "client_order_id": body.client_order_id,
        "time_in_force": body.time_in_force,
        "post_only": body.post_only,
        "risk_params": body.risk_params,
        "estimated_cost": round(amount * price, 8),
    }


def _is_dry_run(request: Request, header: str | None) -> bool:
    return (header or "").strip().lower() in ("1", "true", "yes") or request.app.state.dry_run


def place(request: Request, body: OrderRequest, header: str | None, venue: str) -> dict[str, Any]:
    """Validate, price, and persist unless this is a dry run."""
    settings: Settings = request.app.state.settings
    book: OrderBook = request.app.state.orders
    intent = _intent(settings, body, venue=venue)
    if _is_dry_run(request, header):
        book.dry_runs[venue] += 1
        return {"status": "dry_run",
                "order": {"id": str(uuid.uuid4()), **intent, "created_at": _now()}}
    if body.client_order_id:
        existing = book.find(venue, client_order_id=body.client_order_id)
        if existing is not None:
            return existing
    order = {"id": str(uuid.uuid4()), **intent,
             "status": "filled" if body.type == "market" else "open", "created_at": _now()}
    book.save(venue, order)
    return order


def _lookup(request: Request, venue: str, order_id: str) -> dict[str, Any]:
    order = request.app.state.orders.find(venue, order_id=order_id)
    if order is None:
        raise HTTPException(status_code=404, detail=f"Order {order_id} not found")
    return order


router = APIRouter(tags=["trade"])
DryRunHeader = Annotated[str | None, Header(alias="X-Dry-Run")]


@router.post("/api/trades/orders")
def create_order(request: Request, body: OrderRequest,
                 x_dry_run: DryRunHeader = None) -> dict[str, Any]:
    """Place a market or limit order (or echo it, in a dry run)."""
    return place(request, body, x_dry_run, "trade")


@router.get("/api/trades/orders")
def list_orders(request: Request) -> list[dict[str, Any]]:
    """Persisted orders, oldest first."""
    return request.app.state.orders.all("trade")


@router.get("/api/trades/orders/{order_id}")
def get_order(request: Request, order_id: str) -> dict[str, Any]:
    """One persisted order."""
    return _lookup(request, "trade", order_id)


@router.delete("/api/trades/orders/{order_id}")
def cancel_order(request: Request, order_id: str) -> dict[str, Any]:
    """Cancel an open order."""
    order = _lookup(request, "trade", order_id)
    order["status"] = "cancelled"
    request.app.state.orders.save("trade", order)
    return order


@router.get("/api/v1/settings/dry_run")
def get_dry_run(request: Request) -> dict[str, bool]:
    """The service-wide dry-run switch."""
    return {"dry_run": request.app.state.dry_run}


@router.put("/api/v1/settings/dry_run")
def set_dry_run(request: Request, body: DryRunSetting) -> dict[str, bool]:
    """Turn the service-wide dry-run switch on or off."""
    request.app.state.dry_run = body.dry_run
    return {"dry_run": body.dry_run}


@router.get("/mcp/paper-trading/balances")
def balances(request: Request) -> dict[str, Any]:
    """Paper balances after every persisted paper order."""
    funds: dict[str, float] = {"USDT": QUOTE_BALANCE}
    for order in request.app.state.orders.all("paper"):
        base, quote = order["symbol"].split("/")
        sign = 1 if order["side"] == "buy" else -1
        funds[base] = round(funds.get(base, 0.0) + sign * order["amount"], 8)
        funds[quote] = round(funds.get(quote, 0.0) - sign * order["estimated_cost"], 8)
    return {"balances": funds, "currency": "USDT"}


@router.post("/mcp/paper-trading/orders")
def paper_order(request: Request, body: OrderRequest,
                x_dry_run: DryRunHeader = None) -> dict[str, Any]:
    """Place a paper order (or echo it, in a dry run)."""
    return place(request, body, x_dry_run, "paper")


@router.get("/mcp/paper-trading/orders/{order_id}")
def get_paper_order(request: Request, order_id: str) -> dict[str, Any]:
    """One paper order."""
    return _lookup(request, "paper", order_id)


@router.get("/_debug/orders", include_in_schema=False)
def debug_orders(request: Request) -> list[dict[str, Any]]:
    """Every persisted real order (trade and paper): tests prove none reached the candidate."""
    return request.app.state.orders.all()


@router.get("/_debug/dry-run-count", include_in_schema=False)
def debug_dry_runs(request: Request) -> dict[str, int]:
    """How many dry-run orders this process has answered."""
    runs = request.app.state.orders.dry_runs
    return {**runs, "total": sum(runs.values())}
