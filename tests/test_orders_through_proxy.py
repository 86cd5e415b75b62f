"""No duplicate and no real orders: a hypothesis state machine sends random sequences of order
creates, retries with the same client_order_id, cancels and reads through the shadow proxy. The
candidate never persists a real order and gets exactly one dry run per client order (a retry with
the same client_order_id is not sent to it again); the primary holds each client order exactly
once."""

from __future__ import annotations

import sys
import time
import uuid

import httpx
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule

from harness.processes import ManagedProcess, free_port
from harness.testing.requests import order_amounts


@pytest.fixture(scope="module")
def stack(reference_factory, tmp_path_factory):
    # The primary live (real orders), the native candidate in dry-run mode (its start value).
    primary, candidate = reference_factory("docker"), reference_factory("native")
    port = free_port()
    proxy = ManagedProcess(
        [sys.executable, "-m", "harness.cli", "shadow", "--primary", primary.base_url,
         "--candidate", candidate.base_url, "--listen", f"127.0.0.1:{port}",
         "--recordings", str(tmp_path_factory.mktemp("orders"))],
        health_url=f"http://127.0.0.1:{port}/health",
    ).start()
    yield primary.base_url, candidate.base_url, f"http://127.0.0.1:{port}"
    proxy.stop(timeout=60)


def dry_runs(base_url: str) -> int:
    return httpx.get(base_url + "/_debug/dry-run-count").json()["trade"]


class OrderTraffic(RuleBasedStateMachine):
    urls: tuple[str, str, str] = ("", "", "")
    orders = Bundle("orders")

    def __init__(self) -> None:
        super().__init__()
        self.primary, self.candidate, proxy = self.urls
        self.client = httpx.Client(base_url=proxy, timeout=10)
        self.start_dry_runs = dry_runs(self.candidate)
        self.asked: dict[str, dict] = {}
        self.run_id = uuid.uuid4().hex[:8]  # the primary keeps orders across examples

    @rule(target=orders, amount=order_amounts(), side=st.sampled_from(["buy", "sell"]),
          key=st.text("abcdef0123456789", min_size=10, max_size=10))
    def create(self, amount, side, key):
        body = {"symbol": "ETH/USDT", "side": side, "type": "limit", "amount": amount,
                "price": 3000.0, "client_order_id": f"sm-{self.run_id}-{key}"}
        answer = self.client.post("/api/trades/orders", json=body)
        assert answer.status_code == 200, answer.text
        self.asked.setdefault(body["client_order_id"], body)
        return answer.json()

    @rule(order=orders)
    def retry(self, order):
        body = self.asked[order["client_order_id"]]
        again = self.client.post("/api/trades/orders", json=body)
        assert again.json()["id"] == order["id"]  # idempotent on the primary

    @rule(order=orders)
    def cancel(self, order):
        # 400: the order is no longer open (filled, expired or already cancelled)
        assert self.client.delete(f"/api/trades/orders/{order['id']}").status_code in (200, 400)

    @rule(order=orders)
    def read(self, order):
        assert self.client.get(f"/api/trades/orders/{order['id']}").status_code == 200

    @invariant()
    def candidate_holds_no_real_order(self):
        assert httpx.get(self.candidate + "/_debug/orders").json() == []

    def teardown(self):
        deadline = time.monotonic() + 20
        while dry_runs(self.candidate) - self.start_dry_runs < len(self.asked):
            assert time.monotonic() < deadline, "a mirrored order never arrived"
            time.sleep(0.05)
        time.sleep(0.2)  # nothing more may arrive: retries of a client order are not mirrored
        assert dry_runs(self.candidate) - self.start_dry_runs == len(self.asked)
        assert httpx.get(self.candidate + "/_debug/orders").json() == []
        persisted = [o for o in httpx.get(self.primary + "/_debug/orders").json()
                     if o["client_order_id"] in self.asked]
        assert sorted(o["client_order_id"] for o in persisted) == sorted(self.asked)
        for order in persisted:
            assert order["amount"] == round(self.asked[order["client_order_id"]]["amount"], 8)
        self.client.close()


def run_order_traffic(stack, examples: int, steps: int) -> None:
    OrderTraffic.urls = stack
    OrderTraffic.TestCase.settings = settings(max_examples=examples, stateful_step_count=steps,
                                              deadline=None, database=None)
    OrderTraffic.TestCase().runTest()


def test_no_duplicate_and_no_real_orders(stack):
    run_order_traffic(stack, examples=8, steps=8)


@pytest.mark.slow
def test_no_duplicate_and_no_real_orders_long(stack):
    run_order_traffic(stack, examples=60, steps=20)
