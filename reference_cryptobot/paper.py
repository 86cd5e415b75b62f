"""MCP paper trading: balances and orders filled at once against a simulated account.

    GET  /mcp/paper-trading/balances     → {"balances": {asset: amount}, "quote_currency": ...}
    POST /mcp/paper-trading/orders       same order body as the trade service
    GET  /mcp/paper-trading/orders/{id}  → order

Orders fill immediately (market orders at the latest close, limit orders at their price) if the
account holds enough; the dry-run marker is honoured as in the trade service. Amounts keep 8
decimals on every copy: the `amount-precision` drift is the trade service's alone.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException, Request

from reference_cryptobot.clock import now_iso
from reference_cryptobot.orders import OrderBook, OrderRequest, dry_run_answer, intent, is_dry_run

VENUE = "paper"
STARTING_BALANCES = {"USDT": 100_000.0}


def balances(book: OrderBook) -> dict[str, float]:
    """The account after every persisted paper order, assets sorted."""
    funds = dict(STARTING_BALANCES)
    for order in book.all(VENUE):
        base, quote = order["symbol"].split("/")
        sign = 1 if order["side"] == "buy" else -1
        funds[base] = round(funds.get(base, 0.0) + sign * order["amount"], 8)
        funds[quote] = round(funds.get(quote, 0.0) - sign * order["cost"], 8)
    return dict(sorted(funds.items()))


def _check_funds(book: OrderBook, order: dict[str, Any]) -> None:
    base, quote = order["symbol"].split("/")
    asset, needed = (quote, order["cost"]) if order["side"] == "buy" else (base, order["amount"])
    held = balances(book).get(asset, 0.0)
    if needed > held:
        raise HTTPException(status_code=400,
                            detail=f"Insufficient {asset} balance: need {needed}, have {held}")


def _book(request: Request) -> OrderBook:
    return request.app.state.orders


router = APIRouter(prefix="/mcp/paper-trading", tags=["mcp"])


@router.get("/balances")
def get_balances(request: Request) -> dict[str, Any]:
    """The paper account's balances."""
    return {"balances": balances(_book(request)), "quote_currency": "USDT"}


@router.post("/orders")
def paper_order(request: Request, body: OrderRequest) -> dict[str, Any]:
    """Fill a paper order (or echo it, in a dry run)."""
    book = _book(request)
    priced = intent(request.app.state.settings, body, amount_decimals=8)
    dry_run = is_dry_run(request)
    with book.exclusive():
        if not dry_run and body.client_order_id:  # a repeat answers the order it repeats
            existing = book.find(VENUE, client_order_id=body.client_order_id)
            if existing is not None:
                return existing
        _check_funds(book, priced)
        if dry_run:
            book.count_dry_run(VENUE)
            return dry_run_answer(priced)
        now = now_iso()
        order = {"id": str(uuid.uuid4()), **priced, "status": "filled",
                 "filled": priced["amount"], "remaining": 0.0, "average": priced["price"],
                 "created_at": now, "updated_at": now}
        return book.place(VENUE, order)


@router.get("/orders/{order_id}")
def get_paper_order(request: Request, order_id: str) -> dict[str, Any]:
    """One paper order."""
    return _book(request).get(VENUE, order_id)


def install(app: FastAPI) -> None:
    """Add MCP paper trading (it shares the trade service's order book)."""
    app.include_router(router)
