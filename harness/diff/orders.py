"""What an order is made of, for every reader of orders (the `order` comparator, the report's
intent table): the fields that say what the user asked to trade, and the status of a dry-run
echo (``{"status": "dry_run", "order": {...}}``)."""

from __future__ import annotations

DRY_RUN = "dry_run"
INTENT = (
    "exchange",
    "symbol",
    "side",
    "type",
    "amount",
    "price",
    "stop_price",
    "time_in_force",
    "post_only",
    "reduce_only",
    "leverage",
    "client_order_id",
    "risk_params",
    "stop_loss",
    "take_profit",
    "stop_loss_pct",
    "stop_loss_price",
    "take_profit_pct",
    "take_profit_price",
    "trailing_stop_pct",
)
