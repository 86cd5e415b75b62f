"""Introspection for tests (not part of the real services, hidden from the OpenAPI schema):
which real orders were persisted here, and how many dry runs were answered.

    GET /_debug/orders          → every persisted real order (trade and paper), with its venue
    GET /_debug/dry-run-count   → {"trade": n, "paper": m, "total": n + m}
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI, Request

router = APIRouter(prefix="/_debug", include_in_schema=False)


@router.get("/orders")
def debug_orders(request: Request) -> list[dict[str, Any]]:
    """Every persisted real order: tests prove none reached a candidate."""
    return request.app.state.orders.all()


@router.get("/dry-run-count")
def debug_dry_runs(request: Request) -> dict[str, int]:
    """How many dry-run orders this process has answered, per venue."""
    counts = dict(request.app.state.orders.dry_runs)
    return {**counts, "total": sum(counts.values())}


def install(app: FastAPI) -> None:
    """Add the introspection endpoints."""
    app.include_router(router)
