"""Orders shown as their intent: what the user asked to trade, and what primary and candidate
say they did with it, one row per field (exchange, symbol, side, type, amount, price...).

Reads the flat order (``{exchange, symbol, side, ...}``) and the dry-run echo
(``{"status": "dry_run", "order": {...}}``), like the `order` comparator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.diff.orders import DRY_RUN, INTENT

OUTCOME = ("status", "filled", "remaining", "average", "cost", "fee")


@dataclass(slots=True)
class IntentRow:
    """One field of the order on each side; `differs` when primary and candidate disagree."""

    field: str
    request: Any
    primary: Any
    candidate: Any
    differs: bool


@dataclass(slots=True)
class IntentTable:
    """The order intent of one exchange."""

    rows: list[IntentRow]
    primary_dry_run: bool
    candidate_dry_run: bool


def order_of(body: Any) -> tuple[dict[str, Any] | None, bool]:
    """The order inside an answer or request body, and whether it is a dry-run echo."""
    if not isinstance(body, dict):
        return None, False
    inner = body.get("order")
    if isinstance(inner, dict):
        return inner, body.get("status") == DRY_RUN
    if "symbol" in body and ("side" in body or "amount" in body):
        return body, body.get("status") == DRY_RUN
    return None, False


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool):
        return abs(a - b) <= 1e-9 * max(abs(a), abs(b), 1e-12)
    return a == b


def intent_table(request_body: Any, primary_body: Any, candidate_body: Any) -> IntentTable | None:
    """The intent table of an order exchange, or None when no side holds an order."""
    asked, _ = order_of(request_body)
    mine, mine_dry = order_of(primary_body)
    theirs, theirs_dry = order_of(candidate_body)
    if mine is None and theirs is None:
        return None
    asked, mine, theirs = asked or {}, mine or {}, theirs or {}
    present = {*asked, *mine, *theirs}
    fields = [f for f in INTENT if f in present]
    fields += [f for f in OUTCOME if f in mine or f in theirs]
    rows = [
        IntentRow(
            field=name,
            request=asked.get(name),
            primary=mine.get(name),
            candidate=theirs.get(name),
            # The outcome of a real order and of a dry run differ by design; the intent must not.
            differs=not _same(mine.get(name), theirs.get(name))
            and (name in INTENT or mine_dry == theirs_dry),
        )
        for name in fields
    ]
    return IntentTable(rows, mine_dry, theirs_dry)
