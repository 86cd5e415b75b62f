"""Orders shared by the trade service and MCP paper trading: the request model (MarketOrder or
LimitOrder of the trade spec), pricing, the dry-run marker, and the sqlite order book.

A dry run is validated and priced like a real order but never persisted:
`{"status": "dry_run", "order": {...}}`. The trade service decides by its service-wide switch
alone, as the real one does (it reads no request header); paper trading also honours the header
`X-Dry-Run: true`. Real orders are
persisted, answered flat, and idempotent by `client_order_id` (a repeat answers the existing
order). The book also counts dry runs, so tests can prove what reached a copy.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from fastapi import HTTPException, Request
from pydantic import BaseModel, Field, model_validator

from reference_cryptobot.clock import now_iso
from reference_cryptobot.market import is_symbol, latest_close, normalise_symbol
from reference_cryptobot.settings import Settings

DRY_RUN_VALUES = ("1", "true", "yes", "on")


class Side(StrEnum):
    """OrderSide of the spec."""

    BUY = "buy"
    SELL = "sell"


def _fraction() -> Any:
    return Field(default=None, gt=0, le=1, allow_inf_nan=False)


class RiskParameters(BaseModel):
    """RiskParameters of the spec (the ones that shape an order)."""

    stop_loss_pct: float | None = _fraction()
    stop_loss_price: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    take_profit_pct: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    take_profit_price: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    trailing_stop_pct: float | None = _fraction()
    risk_tolerance: float | None = _fraction()
    position_size_pct: float | None = _fraction()
    max_drawdown: float | None = _fraction()


class OrderRequest(BaseModel):
    """MarketOrder or LimitOrder (amount and price may be numeric strings, as in the spec)."""

    exchange: str = Field(default="binance", min_length=1, max_length=50)
    symbol: str
    side: Side
    type: Literal["market", "limit"] = "market"
    amount: float = Field(gt=0, le=1e15, allow_inf_nan=False)
    price: float | None = Field(default=None, gt=0, le=1e15, allow_inf_nan=False)
    client_order_id: str | None = Field(default=None, min_length=1, max_length=64)
    time_in_force: Literal["GTC", "IOC", "FOK"] = "GTC"
    post_only: bool | None = None
    risk_params: RiskParameters | None = None

    @model_validator(mode="after")
    def _check(self) -> OrderRequest:
        if not is_symbol(normalise_symbol(self.symbol)):
            raise ValueError("symbol must look like BASE/QUOTE, e.g. BTC/USDT")
        if self.type == "limit" and self.price is None:
            raise ValueError("a limit order needs a price")
        return self


def _risk(body: OrderRequest, price: float) -> dict[str, Any] | None:
    """The risk parameters given, with the stop-loss / take-profit prices they imply."""
    if body.risk_params is None:
        return None
    risk = body.risk_params.model_dump(exclude_none=True)
    sign = 1 if body.side is Side.BUY else -1
    if "stop_loss_pct" in risk and "stop_loss_price" not in risk:
        risk["stop_loss_price"] = round(price * (1 - sign * risk["stop_loss_pct"]), 8)
    if "take_profit_pct" in risk and "take_profit_price" not in risk:
        risk["take_profit_price"] = round(price * (1 + sign * risk["take_profit_pct"]), 8)
    return risk


def intent(settings: Settings, body: OrderRequest, *, amount_decimals: int) -> dict[str, Any]:
    """What an order asks for, priced: limit orders at their price, market orders at the latest
    close of the data service's hourly series. Amounts and prices to 8 decimals (or
    `amount_decimals`)."""
    exchange, symbol = body.exchange.lower(), normalise_symbol(body.symbol)
    market = latest_close(settings, exchange, symbol)
    price = round(body.price if body.type == "limit" else market, 8)
    amount = round(body.amount, amount_decimals)
    return {
        "client_order_id": body.client_order_id,
        "exchange": exchange,
        "symbol": symbol,
        "side": body.side.value,
        "type": body.type,
        "amount": amount,
        "price": price,
        "cost": round(amount * price, 8),
        "time_in_force": body.time_in_force,
        "post_only": (body.post_only or False) if body.type == "limit" else None,
        "risk_params": _risk(body, price),
    }


def fills_now(settings: Settings, order: dict[str, Any]) -> bool:
    """Whether an order fills at once: market orders, and limit orders at or through the
    market price."""
    if order["type"] == "market":
        return True
    market = latest_close(settings, order["exchange"], order["symbol"])
    return order["price"] >= market if order["side"] == Side.BUY else order["price"] <= market


def switched_to_dry_run(request: Request) -> bool:
    """Whether the service-wide dry-run switch is on."""
    return bool(request.app.state.dry_run)


def is_dry_run(request: Request) -> bool:
    """Whether the request carries the dry-run marker or the service-wide switch is on."""
    marker = request.headers.get("x-dry-run", "").strip().lower()
    return marker in DRY_RUN_VALUES or switched_to_dry_run(request)


def dry_run_answer(order: dict[str, Any]) -> dict[str, Any]:
    """The answer to a dry run: the priced intent, never persisted."""
    return {"status": "dry_run", "order": {"id": str(uuid.uuid4()), **order,
                                           "created_at": now_iso()}}


class OrderBook:
    """Persisted real orders of one venue ("trade" or "paper") in sqlite, and dry-run counts."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS orders (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
            "id TEXT UNIQUE NOT NULL, venue TEXT NOT NULL, client_order_id TEXT, "
            "body TEXT NOT NULL, price REAL, updated_at TEXT, UNIQUE (venue, client_order_id))"
        )
        self._lock = threading.RLock()
        self.dry_runs = {"trade": 0, "paper": 0}

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    def exclusive(self) -> threading.RLock:
        """Hold this while checking and placing, so nothing else is placed in between."""
        return self._lock

    def count_dry_run(self, venue: str) -> None:
        """One more dry run answered for `venue`."""
        with self._lock:
            self.dry_runs[venue] += 1

    def place(self, venue: str, order: dict[str, Any]) -> dict[str, Any]:
        """Persist a new order, or answer the existing one with the same client_order_id."""
        with self._lock:
            if order.get("client_order_id"):
                existing = self.find(venue, client_order_id=order["client_order_id"])
                if existing is not None:
                    return existing
            self._db.execute(
                "INSERT INTO orders (id, venue, client_order_id, body, price, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (order["id"], venue, order.get("client_order_id"), json.dumps(order),
                 order.get("price"), order.get("updated_at")),
            )
        return order

    def save(self, order: dict[str, Any]) -> None:
        """Store a changed order."""
        with self._lock:
            self._db.execute("UPDATE orders SET body = ?, price = ?, updated_at = ? WHERE id = ?",
                             (json.dumps(order), order.get("price"), order.get("updated_at"),
                              order["id"]))

    def find(self, venue: str, *, order_id: str | None = None,
             client_order_id: str | None = None) -> dict[str, Any] | None:
        """An order of `venue` by id or client_order_id."""
        column, value = ("id", order_id) if order_id is not None else \
            ("client_order_id", client_order_id)
        with self._lock:
            row = self._db.execute(f"SELECT body FROM orders WHERE venue = ? AND {column} = ?",
                                   (venue, value)).fetchone()
        return json.loads(row[0]) if row else None

    def get(self, venue: str, order_id: str) -> dict[str, Any]:
        """An order of `venue` by id; 404 otherwise."""
        order = self.find(venue, order_id=order_id)
        if order is None:
            raise HTTPException(status_code=404, detail=f"Order {order_id} not found")
        return order

    def all(self, venue: str | None = None) -> list[dict[str, Any]]:
        """Orders of a venue (or every venue, each tagged with it), oldest first."""
        where, args = (" WHERE venue = ?", (venue,)) if venue else ("", ())
        with self._lock:
            rows = self._db.execute(f"SELECT venue, body FROM orders{where} ORDER BY seq",
                                    args).fetchall()
        if venue:
            return [json.loads(body) for _, body in rows]
        return [{"venue": v, **json.loads(body)} for v, body in rows]
