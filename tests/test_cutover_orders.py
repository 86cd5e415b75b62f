"""Every order executes exactly once, on exactly one side, whatever the cutover does between a
create and its retries: a hypothesis state machine of order creates, retries with the same
`client_order_id` (from any client), advances, rollbacks and resumes of the trade group, run
through a real proxy in front of two live trade services (neither in dry-run mode)."""

from __future__ import annotations

import uuid

import httpx
import orjson
import pytest
from cutover_support import ADMIN_TOKEN, CutoverProxy
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)

from harness.processes import start_reference_app
from harness.report import build_report
from harness.shadow import counters as c

ORDERS = "/api/trades/orders"


@pytest.fixture(scope="module")
def live_pair(reference_factory):
    primary = reference_factory("docker", dry_run=False, wait=False)
    candidate = reference_factory("native", dry_run=False, wait=False)
    primary.wait_healthy()
    candidate.wait_healthy()
    return primary, candidate


@pytest.fixture(scope="module")
def order_proxy(live_pair, tmp_path_factory):
    primary, candidate = live_pair
    patch = pytest.MonkeyPatch()
    patch.setenv("PARITY_REPLAY_USERNAME", "demo")  # the token-exchange check before trade moves
    patch.setenv("PARITY_PASSWORD", "demo")
    proxy = CutoverProxy(tmp_path_factory.mktemp("orders"), primary.base_url, candidate.base_url)
    patch.undo()
    yield proxy
    proxy.stop()


def post_order(client: httpx.Client, url: str, client_order_id: str,
               identity: str = "10.9.1.7") -> httpx.Response:
    """A buy order with `client_order_id`, sent to `url` by client `identity`."""
    return client.post(url + ORDERS, headers={"X-Forwarded-For": identity},
                       json={"symbol": "BTC/USDT", "side": "buy", "amount": 0.01,
                             "client_order_id": client_order_id})


def persisted(base_url: str) -> dict[str, list[dict]]:
    """client_order_id → the real orders persisted on one side."""
    found: dict[str, list[dict]] = {}
    for order in httpx.get(base_url + "/_debug/orders").json():
        if order.get("client_order_id"):
            found.setdefault(order["client_order_id"], []).append(order)
    return found


def order_machine(proxy: CutoverProxy, primary: str, candidate: str) -> type:
    admin = httpx.Client(base_url=proxy.admin,
                         headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=60)
    client = httpx.Client(base_url=proxy.url, timeout=60)

    class Orders(RuleBasedStateMachine):
        """Creates, retries and cutover moves; each order stays on the side that served it."""

        orders = Bundle("orders")

        def __init__(self) -> None:
            super().__init__()
            self.served: dict[str, str] = {}  # client_order_id → side of the first attempt
            self.ids: dict[str, str] = {}  # client_order_id → order id answered

        @initialize()
        def start_in_shadow_mode(self) -> None:
            status = admin.get("/cutover/status").json()
            if status["groups"]["trade"]["share"] > 0:
                assert admin.post("/cutover/rollback", json={"group": "trade"}).status_code == 200

        def _send(self, client_order_id: str, identity: int) -> httpx.Response:
            answer = post_order(client, "", client_order_id, f"10.9.0.{identity}")
            assert answer.status_code == 200, answer.text
            return answer

        @rule(target=orders, identity=st.integers(0, 255))
        def create(self, identity: int) -> str:
            client_order_id = uuid.uuid4().hex
            answer = self._send(client_order_id, identity)
            self.served[client_order_id] = answer.headers["x-parity-served-by"]
            self.ids[client_order_id] = answer.json()["id"]
            return client_order_id

        @rule(order=orders, identity=st.integers(0, 255))
        def retry(self, order: str, identity: int) -> None:
            answer = self._send(order, identity)  # from any client: the key decides
            assert answer.headers["x-parity-served-by"] == self.served[order]
            assert answer.json()["id"] == self.ids[order]

        def _retry_all(self, identity: int) -> None:
            """After a move, every client retries every order it has: each goes to its side."""
            for order in self.served:
                self.retry(order, identity)

        @rule(share=st.sampled_from([5, 25, 50, 75, 100]), identity=st.integers(0, 255))
        def advance(self, share: int, identity: int) -> None:
            current = admin.get("/cutover/status").json()["groups"]["trade"]["share"]
            answer = admin.post("/cutover/advance",
                                json={"group": "trade", "percent": max(share, current)})
            assert answer.status_code == 200, answer.text
            self._retry_all(identity)

        @rule(identity=st.integers(0, 255))
        def rollback(self, identity: int) -> None:
            assert admin.post("/cutover/rollback", json={"group": "trade", "reason": "test"}
                              ).status_code == 200
            self._retry_all(identity)

        @rule(identity=st.integers(0, 255))
        def resume(self, identity: int) -> None:
            admin.post("/cutover/resume", json={"group": "trade"})  # refused when not rolled back
            self._retry_all(identity)

        @invariant()
        def each_order_exists_once_on_the_side_that_served_it(self) -> None:
            on = {"primary": persisted(primary), "candidate": persisted(candidate)}
            for client_order_id, side in self.served.items():
                other = "candidate" if side == "primary" else "primary"
                assert len(on[side].get(client_order_id, [])) == 1, (client_order_id, side)
                assert client_order_id not in on[other], (client_order_id, "on both sides")

    return Orders


def run_machine(order_proxy, live_pair, examples: int, steps: int) -> None:
    primary, candidate = live_pair
    machine = order_machine(order_proxy, primary.base_url, candidate.base_url)
    machine.TestCase.settings = settings(max_examples=examples, stateful_step_count=steps,
                                         deadline=None, derandomize=False,
                                         suppress_health_check=list(HealthCheck))
    machine.TestCase().runTest()
    served = {side for side in ("primary", "candidate")}
    assert served  # both sides exist; the invariant checked every step


def test_orders_execute_exactly_once(order_proxy, live_pair) -> None:
    run_machine(order_proxy, live_pair, examples=10, steps=15)


@pytest.mark.slow
def test_orders_execute_exactly_once_long(order_proxy, live_pair) -> None:
    run_machine(order_proxy, live_pair, examples=60, steps=40)


def _order(client: httpx.Client, proxy: CutoverProxy, client_order_id: str) -> httpx.Response:
    answer = post_order(client, proxy.url, client_order_id)
    assert answer.status_code == 200, answer.text
    return answer


def test_an_order_keeps_its_side_through_a_kill_9_and_a_moved_share(live_pair, tmp_path,
                                                                     monkeypatch) -> None:
    """Pins are on disk before the order is sent: after kill -9 and a restart, a retry goes
    where the first attempt went, though the share now sends that client the other way."""
    primary, candidate = live_pair
    monkeypatch.setenv("PARITY_REPLAY_USERNAME", "demo")  # the token check before trade moves
    monkeypatch.setenv("PARITY_PASSWORD", "demo")
    state = tmp_path / "cutover-state.json"
    to_candidate, to_primary = uuid.uuid4().hex, uuid.uuid4().hex
    first = CutoverProxy(tmp_path, primary.base_url, candidate.base_url, state=state)
    try:
        with httpx.Client(timeout=60) as client:
            served = _order(client, first, to_primary).headers["x-parity-served-by"]
            assert served == "primary"
            assert first.cli("advance", "trade", "100").returncode == 0
            served = _order(client, first, to_candidate).headers["x-parity-served-by"]
            assert served == "candidate"
        assert first.cli("rollback", "trade", "--reason", "test").returncode == 0
    finally:
        first.kill_9()
    assert state.with_name("cutover-state.orders.jsonl").exists()
    again = CutoverProxy(tmp_path, primary.base_url, candidate.base_url, state=state)
    try:
        with httpx.Client(timeout=60) as client:
            # trade is at 0 %: without the pin the retry would go to the primary
            assert _order(client, again, to_candidate).headers["x-parity-served-by"] == \
                "candidate"
            assert again.cli("resume", "trade").returncode == 0  # back at 100 %
            assert _order(client, again, to_primary).headers["x-parity-served-by"] == "primary"
    finally:
        again.stop()
    on_primary, on_candidate = persisted(primary.base_url), persisted(candidate.base_url)
    assert len(on_candidate.get(to_candidate, [])) == 1 and to_candidate not in on_primary
    assert len(on_primary.get(to_primary, [])) == 1 and to_primary not in on_candidate


def test_a_retry_pinned_to_a_dead_candidate_is_refused_by_the_proxy(live_pair, tmp_path,
                                                                    monkeypatch) -> None:
    """The order's first attempt went to the candidate, which then dies: its retry is answered
    503 by the proxy itself (served by `proxy`), never sent to the primary, and counted as
    refused by the proxy, an outcome of its own that the report shows."""
    primary, _ = live_pair
    monkeypatch.setenv("PARITY_REPLAY_USERNAME", "demo")
    monkeypatch.setenv("PARITY_PASSWORD", "demo")
    candidate = start_reference_app("native", data_dir=tmp_path / "candidate",
                                    env={"CRYPTOBOT_DRY_RUN": "false"})
    order = uuid.uuid4().hex
    proxy = CutoverProxy(tmp_path, primary.base_url, candidate.base_url)
    try:
        assert proxy.cli("advance", "trade", "100").returncode == 0
        with httpx.Client(timeout=60) as client:
            assert _order(client, proxy, order).headers["x-parity-served-by"] == "candidate"
            candidate.stop()
            retry = post_order(client, proxy.url, order, "10.9.1.8")
        assert retry.status_code == 503 and "not sent elsewhere" in retry.text
        assert retry.headers["x-parity-served-by"] == "proxy"
    finally:
        proxy.stop()
        candidate.stop()
    assert order not in persisted(primary.base_url)
    (counters_file,) = proxy.recordings.glob("shadow-counters-*.json")
    totals = orjson.loads(counters_file.read_bytes())["totals"]
    assert totals[c.REFUSED] == 1 and c.accounted(totals) == totals[c.ANSWERED]
    assert build_report([proxy.recordings], tmp_path / "r.html")["not_mirrored"][c.REFUSED] == 1
    assert "refused by the proxy" in (tmp_path / "r.html").read_text()
