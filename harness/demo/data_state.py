"""The demo's data-state step: the Docker primary's databases synced to a native copy by the
reference sync job (with its bugs when the demo runs with drifts), then `parity data`.

Kept short: a handful of real orders (placed on the primary directly, never through the proxy,
so nothing real reaches the candidate), one sync, one comparison of a few hundred rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.markup import escape

from harness.datastate import compare_databases, load_data_settings
from harness.errors import UserError
from reference_cryptobot.sync import SYNC_DRIFTS, sync

REAL_ORDERS = 4


def place_real_orders(base_url: str, count: int = REAL_ORDERS) -> None:
    """Real (not dry-run) orders on the primary, so its order book has rows to sync."""
    with httpx.Client(base_url=base_url, timeout=30) as client:
        for number in range(count):
            order = {"exchange": "binance", "symbol": "BTC/USDT",
                     "side": "buy" if number % 2 else "sell", "type": "limit",
                     "amount": round(0.01 + number * 0.0137, 8),
                     "price": round(61_234.56789 + number * 101.0101, 8),
                     "client_order_id": f"demo-real-{number}"}
            client.post("/api/trades/orders", json=order).raise_for_status()


def run_data_state(primary_url: str, primary_dir: Path, work: Path, *, drifted: bool,
                   console: Console) -> dict[str, Any] | None:
    """Sync the primary's data dir into `work/native-data` (with the sync drifts when
    `drifted`), compare both with `parity data`, print the per-group data gates and return the
    findings (for the report's Data state section); None (and a warning) if the step fails."""
    drifts = frozenset(SYNC_DRIFTS) if drifted else frozenset()
    target = work / "native-data"
    try:
        place_real_orders(primary_url)
        sync(primary_dir, target, drifts)
        result = compare_databases(f"sqlite:///{primary_dir}", f"sqlite:///{target}",
                                   load_data_settings(), settle_s=0.5)
    except (UserError, OSError, httpx.HTTPError) as exc:
        console.print(f"[yellow]data state skipped: {exc}[/]")
        return None
    console.print("data state: the primary's databases synced to a native copy"
                  + (f" (sync bugs: {', '.join(sorted(drifts))})" if drifts else " (clean)")
                  + f", compared with parity data ({result.queries} queries, "
                  f"{result.rows_fetched} rows fetched)")
    for group, gate in result.gates().items():
        colour = "green" if gate.passed else "red"
        why = f"  {escape(gate.reasons[0])}" if gate.reasons else ""
        console.print(f"  data {group:<9}[{colour}]{gate.status.upper()}[/]{why}")
    for state in result.tables:
        for line in [*state.reasons, *state.lines()][:1]:
            console.print(f"    {escape(line)}", soft_wrap=True)
    return result.to_dict()
