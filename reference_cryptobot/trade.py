"""Trade service: orders (real or dry run) and the service-wide dry-run switch.

    POST   /api/trades/orders             MarketOrder | LimitOrder → order, or dry-run echo
                                          (by the switch alone: no request header is read)
    GET    /api/trades/orders             → persisted orders, oldest first
    GET    /api/trades/orders/{order_id}  ?exchange= (optional) → order
    DELETE /api/trades/orders/{order_id}  ?exchange= (optional) → the cancelled order
    GET    /api/v1/settings/dry_run       → {"dry_run": bool}
    PUT    /api/v1/settings/dry_run       {"dry_run": bool}
    POST   /api/v1/orders/                an order → {"status": "dry_run", "order": <as sent>},
                                          never executed whatever the switch says

Authentication is optional here: a bearer token or an X-API-KEY header is accepted and not
checked, which keeps the service usable by the harness. The `amount-precision` drift rounds
amounts to 6 decimals instead of 8 (dry runs and persisted orders alike). The switch starts as
the settings say (`Settings.dry_run`), like the real service's DRY_RUN setting.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException, Request
from pydantic import BaseModel

from reference_cryptobot.clock import now_iso
from reference_cryptobot.orders import (
    OrderBook,
    OrderRequest,
    dry_run_answer,
    fills_now,
    intent,
    switched_to_dry_run,
)
from reference_cryptobot.settings import Settings

VENUE = "trade"


class DryRunSetting(BaseModel):
    """The service-wide dry-run switch."""

    dry_run: bool


def amount_decimals(settings: Settings) -> int:
    """Decimals order amounts keep (6 with the `amount-precision` drift)."""
    return 6 if settings.has("amount-precision") else 8


def _book(request: Request) -> OrderBook:
    return request.app.state.orders


def _status(settings: Settings, order: dict[str, Any]) -> str:
    if fills_now(settings, order):
        return "filled"
    return "expired" if order["time_in_force"] in ("IOC", "FOK") else "open"


router = APIRouter(tags=["orders"])


@router.post("/api/trades/orders")
def create_order(request: Request, body: OrderRequest) -> dict[str, Any]:
    """Place a market or limit order; a dry run is priced and echoed, never persisted."""
    settings: Settings = request.app.state.settings
    priced = intent(settings, body, amount_decimals=amount_decimals(settings))
    if switched_to_dry_run(request):
        _book(request).count_dry_run(VENUE)
        return dry_run_answer(priced)
    status = _status(settings, priced)
    filled = priced["amount"] if status == "filled" else 0.0
    now = now_iso()
    order = {"id": str(uuid.uuid4()), **priced, "status": status, "filled": filled,
             "remaining": round(priced["amount"] - filled, 8),
             "average": priced["price"] if status == "filled" else None,
             "created_at": now, "updated_at": now}
    return _book(request).place(VENUE, order)


@router.get("/api/trades/orders")
def list_orders(request: Request) -> list[dict[str, Any]]:
    """Persisted orders, oldest first."""
    return _book(request).all(VENUE)


def _order(request: Request, order_id: str, exchange: str | None) -> dict[str, Any]:
    order = _book(request).get(VENUE, order_id)
    if exchange is not None and exchange.lower() != order["exchange"]:
        raise HTTPException(status_code=404, detail=f"Order {order_id} not found")
    return order


@router.get("/api/trades/orders/{order_id}")
def get_order(request: Request, order_id: str, exchange: str | None = None) -> dict[str, Any]:
    """One persisted order."""
    return _order(request, order_id, exchange)


@router.delete("/api/trades/orders/{order_id}")
def cancel_order(request: Request, order_id: str,
                 exchange: str | None = None) -> dict[str, Any]:
    """Cancel an open order."""
    order = _order(request, order_id, exchange)
    if order["status"] != "open":
        raise HTTPException(status_code=400,
                            detail=f"Order {order_id} is {order['status']} and cannot be "
                                   "cancelled")
    order.update(status="cancelled", updated_at=now_iso())
    _book(request).save(order)
    return order


class EchoOrder(BaseModel):
    """The loose order the dry-run echo accepts (the real echo's model)."""

    exchange: str
    symbol: str
    side: str
    amount: float
    type: str
    client_order_id: str | None = None


@router.post("/api/v1/orders/")
def echo_order(request: Request, body: EchoOrder) -> dict[str, Any]:
    """Echo an order as a dry run: validated, never priced, persisted or executed."""
    _book(request).count_dry_run(VENUE)
    return {"status": "dry_run", "order": body.model_dump()}


@router.get("/api/v1/settings/dry_run")
def get_dry_run(request: Request) -> dict[str, bool]:
    """The service-wide dry-run switch."""
    return {"dry_run": request.app.state.dry_run}


@router.put("/api/v1/settings/dry_run")
def set_dry_run(request: Request, body: DryRunSetting) -> dict[str, bool]:
    """Turn the service-wide dry-run switch on or off (it covers paper trading too)."""
    request.app.state.dry_run = body.dry_run
    return {"dry_run": body.dry_run}


def install(app: FastAPI, settings: Settings, data_dir: Path) -> None:
    """Add the trade service (routes, the order book, the switch) to the app."""
    app.state.orders = OrderBook(data_dir / "orders.sqlite")
    app.state.dry_run = bool(settings.dry_run)
    app.include_router(router)
