"""The `order` comparator: trade answers, compared on the order's intent.

Works for the flat order (``{id, exchange, symbol, side, type, amount, price, status, ...}``) and
for the dry-run echo (``{"status": "dry_run", "order": {...}}``), in any mix: in shadow mode the
primary placed the user's real order while the candidate only echoed a dry run, and then only
the intent is compared: exchange, symbol, side, type, amount, price, time_in_force, post_only,
client_order_id and the risk parameters (stop loss, take profit, ...). When both answers are of
one kind, every field is compared.

- Amounts, prices and risk numbers within tolerance (default rtol 1e-9, atol 1e-12; numeric
  strings read as numbers, a number that became a string is a type difference).
- Order ids and timestamps are ignored.
- **Critical**: the primary's answer proves a dry run and the candidate's does not (its status is
  not ``dry_run``): a real order may have been placed on the candidate. (What a dry-run mirror
  owes is declared on its route, `dry_run` / `precondition`, and checked by the mirror.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.diff import paths
from harness.diff.base import CompareOptions, Lifted, register
from harness.diff.orders import DRY_RUN, INTENT
from harness.diff.paths import matcher
from harness.diff.values import (
    compare_answers,
    compare_scalar,
    critical,
    field_tolerance,
    generic_bodies,
    member_difference,
    show,
    with_ignored,
)
from harness.model import Difference, Kind

VOLATILE = (
    "id",
    "order_id",
    "exchange_order_id",
    "orderId",
    "dry_run_id",
    "timestamp",
    "datetime",
    "created_at",
    "updated_at",
    "submitted_at",
    "filled_at",
    "transact_time",
    "lastTradeTimestamp",
    "last_trade_timestamp",
)
DEFAULT_IGNORE = tuple(f"**.{name}" for name in VOLATILE)


@dataclass(slots=True)
class OrderAnswer:
    """One side's order: where it sits in the body and whether the answer proves a dry run."""

    order: dict[str, Any]
    wrapped: bool  # {"status": ..., "order": {...}}
    dry_run: bool
    status: Any
    envelope: dict[str, Any]  # the wrapper's members but the order

    @classmethod
    def read(cls, body: Any) -> OrderAnswer | None:
        """The order in an answer body, or None when the body is not an order."""
        if not isinstance(body, dict):
            return None
        dry_run = body.get("status") == DRY_RUN or body.get("dry_run") is True
        inner = body.get("order")
        if isinstance(inner, dict):
            envelope = {k: v for k, v in body.items() if k != "order"}
            return cls(inner, True, dry_run, body.get("status"), envelope)
        if "symbol" in body and "side" in body:
            return cls(body, False, dry_run, body.get("status"), {})
        return None


def proves_dry_run(body: Any) -> bool:
    """Does this answer body prove the order was a dry run (status ``dry_run``)?"""
    answer = OrderAnswer.read(body)
    return bool(answer and answer.dry_run) or (
        isinstance(body, dict) and body.get("status") == DRY_RUN
    )


# Identical answers prove the same: their headers alone are judged.
@register("order", identical_is_match=True)
def compare_order(primary: Lifted, candidate: Lifted, options: CompareOptions) -> list[Difference]:
    """Compare two trade answers on the order's intent (see the module docstring)."""
    options = with_ignored(options, DEFAULT_IGNORE)
    proof = _dry_run_proof(primary, candidate)
    differences = compare_answers(primary, candidate, options, _bodies)
    if proof:  # the proof difference says all there is to say about `status`
        differences = [d for d in differences if d.path != "status"]
    return proof + differences


def _dry_run_proof(primary: Lifted, candidate: Lifted) -> list[Difference]:
    """The critical difference when the primary's answer proves a dry run and the
    candidate's does not."""
    required = primary.kind == "json" and proves_dry_run(primary.body)
    if not required or (candidate.kind == "json" and proves_dry_run(candidate.body)):
        return []
    c_status = candidate.body.get("status") if isinstance(candidate.body, dict) else None
    if candidate.kind != "json" or c_status is None:
        seen = f"the candidate answered {candidate.status} without a dry-run status"
    else:
        seen = f"status {show(DRY_RUN)} vs {show(c_status)}"
    return [
        critical(
            Difference(
                "status",
                Kind.CHANGED,
                DRY_RUN,
                c_status,
                f"{seen}: the candidate's answer does not prove a dry run; a real order may "
                "have been placed on the candidate",
            )
        )
    ]


def _bodies(primary: Lifted, candidate: Lifted, options: CompareOptions) -> list[Difference]:
    p, c = OrderAnswer.read(primary.body), OrderAnswer.read(candidate.body)
    if p is None or c is None:
        return generic_bodies(primary.body, candidate.body, options)
    prefix = "order" if p.wrapped or c.wrapped else ""
    walker = _Walker(options)
    differences = []
    if p.dry_run != c.dry_run:
        # A real order against a dry-run echo (shadow mode): only the intent is comparable.
        names = [n for n in INTENT if n in p.order or n in c.order]
    else:
        names = [*p.order, *(n for n in c.order if n not in p.order)]
        if p.wrapped and c.wrapped:
            differences += generic_bodies(p.envelope, c.envelope, options)
        elif p.wrapped != c.wrapped:
            names = [n for n in names if n != "status"]
            differences += walker.value("status", p.status, c.status, "status")
    for name in names:
        differences += walker.member(paths.key(prefix, name), p.order, c.order, name)
    return differences


class _Walker:
    """Scalars within tolerance (numeric strings as numbers), objects member by member."""

    def __init__(self, options: CompareOptions) -> None:
        self.options = options
        self.ignored = matcher(options.ignore)

    def member(self, path: str, p: dict, c: dict, name: str) -> list[Difference]:
        if self.ignored(path):
            return []
        if name not in c:
            return [member_difference(path, p[name], missing=True)] if name in p else []
        if name not in p:
            return [member_difference(path, c[name], missing=False)]
        return self.value(path, p[name], c[name], name)

    def value(self, path: str, p: Any, c: Any, name: str) -> list[Difference]:
        if isinstance(p, dict) and isinstance(c, dict):
            differences = []
            for key in [*p, *(k for k in c if k not in p)]:
                differences += self.member(paths.key(path, key), p, c, key)
            return differences
        if isinstance(p, dict | list) or isinstance(c, dict | list):
            return generic_bodies(p, c, self.options, path=path)
        rtol, atol = field_tolerance(self.options, path, name)
        found = compare_scalar(path, p, c, rtol, atol, numeric_strings=True)
        return [found] if found else []
