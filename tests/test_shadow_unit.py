"""The shadow proxy's parts on their own: the pipe hand-off, the captured tuple, the counts,
correlation, the mirror policy (dry runs, breakers, no order twice), the worker with a fake
candidate, the pool with real worker processes, and the addon's options and hooks."""

from __future__ import annotations

import asyncio
import gzip
import os
import pickle
import time

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from mitmproxy import exceptions
from mitmproxy.test import taddons, tflow

from harness.config import load_config
from harness.judge.engine import Engine
from harness.mirror.correlation import Correlator, is_identifier_key, values_at
from harness.mirror.policy import BREAKER_FILE, Breakers, MirrorPolicy, idempotency_key
from harness.mirror.transport import TransportSettings, make_client, url_of
from harness.model import Body, Exchange, Request, Response, Severity, Verdict
from harness.processes import free_port
from harness.routes import DryRunRewrite, Route
from harness.shadow import counters as c
from harness.shadow.addon import ShadowAddon, client_of
from harness.shadow.capture import capture, to_exchange
from harness.shadow.channel import FrameReader, Sender, open_pipe
from harness.shadow.counters import Counters
from harness.shadow.pool import MAX_CAPTURE_BYTES, WorkerPool
from harness.shadow.settings import WorkerSettings
from harness.shadow.worker import Intake, MirrorWorker
from harness.store.reader import iter_records

CONFIG = load_config()
ROUTES = CONFIG.routes


def json_response(data, status: int = 200, headers=()) -> Response:
    return Response(status, [("content-type", "application/json"), *headers],
                    Body.from_bytes(orjson.dumps(data)), 1.0)


def json_request(method: str, path: str, data=None, headers=()) -> Request:
    body = Body.from_bytes(orjson.dumps(data)) if data is not None else Body()
    return Request(method, path, [], [("content-type", "application/json"), *headers], body)


# --- channel ---------------------------------------------------------------------------------


def test_frames_cross_the_pipe_whole_and_a_full_pipe_refuses_without_blocking():
    read_fd, write_fd = open_pipe(size=65536)
    sender, reader = Sender(write_fd), FrameReader()
    try:
        assert sender.send(b"hello") and sender.send(b"") and sender.send(b"x" * 1000)
        assert reader.feed(os.read(read_fd, 3)) == []  # half a header
        assert reader.feed(os.read(read_fd, 65536)) == [b"hello", b"", b"x" * 1000]
        payload = b"y" * 4000
        started = time.perf_counter()
        accepted = sum(sender.send(payload) for _ in range(1000))
        assert time.perf_counter() - started < 1.0
        assert 0 < accepted < 1000  # the rest refused: the caller counts them as dropped
        frames = []
        while chunk := _read_available(read_fd):
            frames += reader.feed(chunk)
        assert frames == [payload] * accepted and reader.pending == 0
        sender.close()
        assert os.read(read_fd, 10) == b""  # the worker sees the end
        assert not sender.send(b"late")
    finally:
        sender.close()
        os.close(read_fd)


def _read_available(fd: int) -> bytes:
    os.set_blocking(fd, False)
    try:
        return os.read(fd, 1 << 20)
    except BlockingIOError:
        return b""


def test_a_frame_larger_than_the_pipe_goes_through_in_pieces():
    async def scenario() -> list[bytes]:
        read_fd, write_fd = open_pipe(size=65536)
        sender, reader = Sender(write_fd), FrameReader()
        big = os.urandom(300_000)
        assert sender.send(big)
        assert not sender.send(b"next")  # one partial frame at a time
        received: list[bytes] = []
        while not received:
            received += reader.feed(_read_available(read_fd))
            await asyncio.sleep(0.001)
        assert await sender.drain(1.0)
        assert sender.send(b"next")
        received += reader.feed(_read_available(read_fd))
        sender.close()
        os.close(read_fd)
        return [received[0] == big, received[1:]]

    assert asyncio.run(scenario()) == [True, [b"next"]]


# --- capture ---------------------------------------------------------------------------------


def test_captured_flow_becomes_the_exchange_with_decoded_bodies_and_a_session():
    flow = tflow.tflow(resp=True)
    flow.request.method = "POST"
    flow.request.path = "/api/backtest/start?fast=5&empty="
    flow.request.headers["content-encoding"] = "gzip"
    flow.request.headers["x-forwarded-for"] = "203.0.113.9, 10.0.0.1"
    flow.request.raw_content = gzip.compress(b'{"strategy": "sma"}')
    flow.response.headers["content-type"] = "application/json"
    flow.response.raw_content = b'{"id": "b-1"}'
    captured = capture(flow)
    assert isinstance(pickle.loads(pickle.dumps(captured)), tuple)
    exchange = to_exchange(captured)
    assert exchange.request.method == "POST"
    assert exchange.request.path == "/api/backtest/start"
    assert exchange.request.query == [("fast", "5"), ("empty", "")]
    assert exchange.request.body.text == '{"strategy": "sma"}'
    assert exchange.primary.status == 200 and exchange.primary.body.text == '{"id": "b-1"}'
    assert exchange.primary.latency_ms is not None and exchange.primary.latency_ms >= 0
    # The session is the first forwarded hop, as a digest (not the address).
    other = tflow.tflow(resp=True)
    other.request.headers["x-forwarded-for"] = "203.0.113.9"
    assert exchange.session == to_exchange(capture(other)).session
    assert "203.0.113.9" not in exchange.session


def test_the_candidate_gets_the_clients_exact_query_until_something_rewrites_it():
    flow = tflow.tflow(resp=True)
    flow.request.path = "/api/strategies/5?a=%7E&b&c=%ZZ&d=a%20b&e=x;y"
    request = to_exchange(capture(flow)).request
    assert request.raw_query == "a=%7E&b&c=%ZZ&d=a%20b&e=x;y"
    assert "raw_query" not in request.to_dict()  # live only, never recorded
    assert str(url_of("http://c", request)).endswith("?a=%7E&b&c=%ZZ&d=a%20b&e=x;y")
    rewritten = DryRunRewrite(query={"dry_run": "true"}).apply(request)
    assert rewritten.raw_query is None and ("dry_run", "true") in rewritten.query
    correlator = Correlator()
    correlator.add("5", "70", scope="strategy")
    kept = correlator.translate(request)  # only the path changes: the query stays exact
    assert kept.path.endswith("/70") and kept.raw_query == request.raw_query
    flow.request.path = "/api/strategies/?strategy_id=5&a=%7E"
    swapped = correlator.translate(to_exchange(capture(flow)).request)
    assert swapped.raw_query is None and ("strategy_id", "70") in swapped.query


# --- counters --------------------------------------------------------------------------------


def test_counters_sum_the_proxy_and_the_latest_report_of_each_worker():
    counters = Counters()
    counters.add(c.ANSWERED, 13)
    counters.add(c.CAPTURED, 10)
    counters.add(c.DROPPED, 2)
    counters.add(c.STREAMS, 1)
    counters.report("w1", {c.MIRRORED: 3, "match": 2, "mismatch": 1, c.COMPARED: 3})
    counters.report("w1", {c.MIRRORED: 5, "match": 4, "mismatch": 1,  # cumulative: replaces
                           c.COMPARED: 5})
    counters.report("w2", {c.MIRRORED: 2, "candidate-error": 2, "skipped": 1, c.COMPARED: 2,
                           c.SKIPPED: 1})
    totals = counters.totals()
    assert totals[c.MIRRORED] == 7 and totals["match"] == 4 and totals[c.DROPPED] == 2
    assert counters.decided_by("w1") == 5 and counters.decided_by("w2") == 3
    line = counters.summary()
    assert line.startswith("shadow: 13 requests answered: compared 7, skipped-by-policy 1, "
                           "dropped 2, abandoned 0, too-large 0, streams 1, ")
    assert "in flight 2;" in line  # 13 answered, 11 with an outcome
    assert "mirrored 7 (matched 4, mismatched 1, " in line and "candidate errors 2" in line
    counters.report("w1", {c.MIRRORED: 7, "match": 6, "mismatch": 1, c.COMPARED: 7})
    assert "in flight" not in counters.summary()
    assert c.accounted(counters.totals()) == 13


# --- correlation -----------------------------------------------------------------------------


def test_ids_learned_from_a_create_are_swapped_into_later_requests():
    correlator = Correlator()
    create = ROUTES.match("POST", "/api/strategies/")
    assert create.correlate
    assert correlator.learn(create, json_response({"id": 5, "name": "s"}),
                            json_response({"id": 7, "name": "s"})) == 1
    get = Request("GET", "/api/strategies/5", [("limit", "5")])
    assert correlator.translate(get).path == "/api/strategies/7"
    assert correlator.translate(get).query == [("limit", "5")]  # a number, not an id
    body = json_request("POST", "/api/strategies/5/activate",
                        {"strategy_id": 5, "ids": [5, 6], "count": 5})
    assert orjson.loads(correlator.translate(body).body.raw) == {
        "strategy_id": 7, "ids": [7, 6], "count": 5}
    # API key 5 is another 5: short values stay in their migration group.
    assert correlator.translate(Request("DELETE", "/auth/api-keys/5")).path == "/auth/api-keys/5"
    unchanged = Request("GET", "/api/strategies/9")
    assert correlator.translate(unchanged) is unchanged


def test_tokens_follow_the_session_in_headers_cookies_query_and_forms():
    correlator = Correlator()
    login = ROUTES.match("POST", "/auth/login")
    correlator.learn(login, json_response({"access_token": "p-access-123456",
                                           "refresh_token": "p-refresh-123456"}),
                     json_response({"access_token": "c-access-654321",
                                    "refresh_token": "c-refresh-654321"}))
    request = Request("GET", "/auth/users/me", [("token", "p-access-123456")],
                      [("Authorization", "Bearer p-access-123456"),
                       ("Cookie", "session=p-refresh-123456; theme=dark"),
                       ("X-Refresh", "p-refresh-123456")])
    swapped = correlator.translate(request)
    assert dict(swapped.headers) == {"Authorization": "Bearer c-access-654321",
                                     "Cookie": "session=c-refresh-654321; theme=dark",
                                     "X-Refresh": "c-refresh-654321"}
    assert swapped.query == [("token", "c-access-654321")]
    form = Request("POST", "/auth/refresh", [],
                   [("content-type", "application/x-www-form-urlencoded")],
                   Body.from_bytes(b"refresh_token=p-refresh-123456&grant_type=refresh"))
    assert correlator.translate(form).body.text == (
        "refresh_token=c-refresh-654321&grant_type=refresh")


def test_the_map_is_bounded_and_pairs_expire():
    now = [0.0]
    correlator = Correlator(max_pairs=3, ttl_s=10, clock=lambda: now[0])
    for n in range(5):
        correlator.add(f"primary-value-{n}", f"other-value-{n}")
    assert len(correlator) == 3 and correlator.get("primary-value-0") is None
    assert correlator.get("primary-value-4") == "other-value-4"
    now[0] = 5.0
    assert correlator.get("primary-value-3") == "other-value-3"  # use refreshes it
    now[0] = 12.0
    assert correlator.get("primary-value-2") is None  # unused for 12 s: gone
    assert correlator.get("primary-value-3") == "other-value-3"


def test_nothing_is_learned_from_failed_answers_and_paths_select_nested_values():
    correlator = Correlator()
    route = Route("POST", "/x", "other", correlate=("order.id", "items[*].id"))
    assert correlator.learn(route, json_response({"order": {"id": "a"}}),
                            Response(error="connection refused")) == 0
    assert correlator.learn(route, json_response({"order": {"id": "a"}, "items": [{"id": 1}]}),
                            json_response({"order": {"id": "b"}, "items": [{"id": 2}]})) == 2
    assert values_at({"a": [{"b": 1}, {"b": 2}]}, "a[*].b") == [1, 2]
    assert values_at({"a": [{"b": 1}]}, "a[3].b") == []
    assert is_identifier_key("backtestId") and is_identifier_key("refresh_token")
    assert not is_identifier_key("paid") and not is_identifier_key("limit")


# --- policy ----------------------------------------------------------------------------------

ORDER = {"symbol": "BTC/USDT", "side": "buy", "type": "market", "amount": 0.1,
         "client_order_id": "co-1"}


def test_safe_methods_are_mirrored_and_writes_only_as_dry_runs_or_where_allowed():
    policy = MirrorPolicy()

    def decide(method: str, path: str, data=None):
        return policy.decide(ROUTES.match(method, path), json_request(method, path, data))

    assert decide("GET", "/api/v1/data/ohlcv/binance/BTC-USDT/1h").label == "mirrored"
    order = decide("POST", "/api/trades/orders", ORDER)
    assert order.label == "dry-run"  # unchanged: the trade service reads no dry-run header
    assert order.request.headers == json_request("POST", "/", ORDER).headers
    paper = decide("POST", "/mcp/paper-trading/orders", ORDER)
    assert ("X-Dry-Run", "true") in paper.request.headers
    assert decide("POST", "/api/strategies/", {"name": "s"}).label == "mirrored"
    assert decide("DELETE", "/api/trades/orders/1").skipped
    assert decide("PUT", "/unknown/thing", {}).label == "skipped:unsafe method PUT"


def test_an_order_reaches_the_candidate_at_most_once():
    policy = MirrorPolicy()
    route = ROUTES.match("POST", "/api/trades/orders")
    first = policy.decide(route, json_request("POST", "/api/trades/orders", ORDER))
    again = policy.decide(route, json_request("POST", "/api/trades/orders", ORDER))
    other = policy.decide(route, json_request("POST", "/api/trades/orders",
                                              {**ORDER, "client_order_id": "co-2"}))
    assert first.label == "dry-run" and other.label == "dry-run"
    assert again.skipped and "duplicate order" in again.label and policy.duplicates == 1
    keyed = json_request("POST", "/x", {"a": 1}, headers=[("Idempotency-Key", "k-1")])
    assert idempotency_key(keyed) == "idempotency-key=k-1"
    assert idempotency_key(json_request("POST", "/x", {"order": {"clientOrderId": 7}})) \
        == "clientOrderId=7"
    assert idempotency_key(json_request("POST", "/x", {"a": 1})) is None


def test_a_breaker_tripped_in_one_worker_stops_the_route_in_every_worker(tmp_path, caplog):
    path = tmp_path / "breakers.jsonl"
    one, two = MirrorPolicy(Breakers(path)), MirrorPolicy(Breakers(path))
    route = ROUTES.match("POST", "/api/trades/orders")
    assert two.decide(route, json_request("POST", route.template, ORDER)).label == "dry-run"
    assert one.trip(route.name, "no dry-run proof") and not one.trip(route.name, "again")
    assert "BREAKER OPEN" in caplog.text
    blocked = two.decide(route, json_request("POST", route.template,
                                             {**ORDER, "client_order_id": "co-9"}))
    assert blocked.label == "skipped:breaker open (no dry-run proof)"
    assert MirrorPolicy(Breakers(path)).tripped == {route.name: "no dry-run proof"}  # restarts
    assert one.trips == 1 and two.trips == 0
    paper = ROUTES.match("POST", "/mcp/paper-trading/orders")
    assert two.decide(paper, json_request("POST", paper.template, {"amount": 1})).label \
        == "dry-run"


# --- worker with a fake candidate --------------------------------------------------------------


class FakeCandidate:
    """A real loopback server (aiohttp) standing in for the candidate: ids differ from the
    primary's, orders answer as dry runs unless `proves` is off (then an order answers like a real
    one and turns the dry-run switch off), its dry-run switch reads `switch`, and every request
    is kept as (method, path, X-Dry-Run header)."""

    def __init__(self, proves: bool = True, delay: float = 0.0, switch: bool = True) -> None:
        self.proves = proves
        self.switch = switch
        self.delay = delay
        self.requests: list[tuple[str, str, str | None]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((request.method, request.path, request.headers.get("x-dry-run")))
        if self.delay:
            await asyncio.sleep(self.delay)
        path = request.path
        if path == "/api/strategies/" and request.method == "POST":
            return web.json_response({"id": 70, "name": "s"}, status=201)
        if path == "/api/strategies/70":
            return web.json_response({"id": 70, "name": "s"})
        if path.startswith("/api/strategies/"):
            return web.json_response({"detail": "Strategy not found"}, status=404)
        if path == "/api/v1/settings/dry_run":
            return web.json_response({"dry_run": self.switch})
        if path == "/api/trades/orders":
            status = "dry_run" if self.proves else "open"
            self.switch = self.switch and self.proves
            return web.json_response({"status": status, "order": {"amount": 0.1}})
        return web.json_response({"ok": True})


def make_exchange(method: str, path: str, data, answer, status: int = 200) -> Exchange:
    return Exchange(json_request(method, path, data), json_response(answer, status),
                    session="client:test")


def run_worker(candidate: FakeCandidate, exchanges: list[Exchange], *, breakers=None,
               timeout_s: float = 2.0) -> tuple[MirrorWorker, list[Exchange]]:
    async def scenario() -> MirrorWorker:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", candidate.handle)
        async with TestServer(app, host="127.0.0.1") as server:
            settings = WorkerSettings(candidate=str(server.make_url("")).rstrip("/"),
                                      timeout_s=timeout_s)
            worker = MirrorWorker(settings, engine=Engine(CONFIG), writer=object(),
                                  policy=MirrorPolicy(breakers or Breakers()))
            async with make_client(TransportSettings(timeout_s=timeout_s)) as client:
                worker.attach(client)
                for exchange in exchanges:  # one after the other, as one client's lane does
                    await worker.mirror_one(exchange)
        return worker

    return asyncio.run(scenario()), exchanges


def test_worker_mirrors_orders_once_as_dry_runs_and_follows_created_ids():
    candidate = FakeCandidate()
    exchanges = [
        make_exchange("POST", "/api/strategies/", {"name": "s"},
                      {"id": 5, "name": "s"}, 201),
        make_exchange("GET", "/api/strategies/5", None, {"id": 5, "name": "s"}),
        make_exchange("POST", "/api/trades/orders", ORDER, {"status": "open", "id": "o-1"}),
        make_exchange("POST", "/api/trades/orders", ORDER, {"status": "open", "id": "o-1"}),
        make_exchange("DELETE", "/api/trades/orders/o-1", None, {"status": "cancelled"}),
    ]
    worker, written = run_worker(candidate, exchanges)
    assert candidate.requests == [("POST", "/api/strategies/", None),
                    ("GET", "/api/strategies/70", None),
                    ("GET", "/api/v1/settings/dry_run", None),
                    ("POST", "/api/trades/orders", None),
                    ("GET", "/api/v1/settings/dry_run", None)]  # asked again after the answer
    assert [e.mirror.split(":")[0] for e in written] == [
        "mirrored", "mirrored", "dry-run", "skipped", "skipped"]
    assert "duplicate order" in written[3].reason
    assert worker.counts[c.MIRRORED] == 3 and worker.counts["skipped"] == 2
    assert worker.counts[c.COMPARED] == 3 and worker.counts[c.SKIPPED] == 2
    assert worker.report()["counts"][c.RETRIES_NOT_RESENT] == 1


def test_a_candidate_that_does_not_prove_the_dry_run_trips_the_breaker(tmp_path):
    candidate = FakeCandidate(proves=False)
    orders = [make_exchange("POST", "/api/trades/orders", {**ORDER, "client_order_id": f"c{n}"},
                            {"status": "open"}) for n in range(3)]
    worker, written = run_worker(candidate, orders, breakers=Breakers(tmp_path / "b.jsonl"))
    assert [r[1] for r in candidate.requests].count("/api/trades/orders") == 1  # stopped at once
    critical = [d for d in written[0].differences if d.severity is Severity.CRITICAL]
    assert written[0].verdict is Verdict.MISMATCH and critical
    assert all(e.reason.startswith("breaker open") for e in written[1:])
    assert list(worker.report()["breakers"]) == ["POST /api/trades/orders"]
    assert worker.report()["counts"][c.BREAKERS] == 1


def test_a_slow_candidate_is_a_candidate_error_after_the_timeout():
    candidate = FakeCandidate(delay=5.0)
    started = time.perf_counter()
    _, written = run_worker(candidate, [make_exchange("GET", "/health", None, {"ok": True})],
                            timeout_s=0.2)
    assert time.perf_counter() - started < 3.0
    assert written[0].verdict is Verdict.CANDIDATE_ERROR
    assert "timeout" in written[0].reason


@pytest.mark.parametrize("side", ["candidate", "primary"])
def test_past_the_whole_mirrors_deadline_an_unfinished_second_check_fails_safe(side):
    """The deadline bounds the whole mirror (the switch proved, the order sent, the switch asked
    again): cut off in the second check, the order did reach the mirrored side (`side`: the
    candidate, or the primary in a moved request's reverse mirror) and its dry run was never
    confirmed, so it counts as a failed check: the breaker trips naming that side, and the one
    judgement is a critical mismatch naming the unfinished check."""
    switch = "/api/v1/settings/dry_run"

    async def scenario() -> tuple[Exchange, list, dict]:
        release = asyncio.Event()

        class HangsOnTheSecondCheck(FakeCandidate):
            async def handle(self, request: web.Request) -> web.Response:
                if request.path == switch and any(r[1] == switch for r in self.requests):
                    await release.wait()  # kept (by the parent) once released
                return await super().handle(request)

        candidate = HangsOnTheSecondCheck()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", candidate.handle)
        async with TestServer(app, host="127.0.0.1") as server, \
                make_client(TransportSettings(timeout_s=60.0)) as client:
            from harness.mirror.step import Mirror

            mirror = Mirror(client, Engine(CONFIG), MirrorPolicy(),
                            str(server.make_url("")).rstrip("/"), timeout_s=60.0, side=side)
            exchange = make_exchange("POST", "/api/trades/orders", ORDER, {"status": "open"})
            route = mirror.engine.route_of(exchange)
            try:
                await mirror.run(exchange, route, deadline_s=1.0)
            finally:
                release.set()
        return exchange, candidate.requests, mirror.policy.tripped

    exchange, requests, tripped = asyncio.run(scenario())
    assert [r[1] for r in requests] == ["/api/v1/settings/dry_run", "/api/trades/orders",
                                        "/api/v1/settings/dry_run"]
    assert exchange.mirror == "dry-run" and exchange.verdict is Verdict.MISMATCH
    critical = [d for d in exchange.differences if d.severity is Severity.CRITICAL]
    assert len(critical) == 1 and "not confirmed after the answer" in critical[0].message
    assert list(tripped.values()) == [
        f"the {side}'s dry run not confirmed after the answer (no check answer within the "
        "whole mirror's 1s)"]


def test_the_intake_stops_reading_when_it_holds_its_limit():
    async def scenario() -> tuple[int, int, int]:
        read_fd, write_fd = open_pipe(size=65536)
        sender = Sender(write_fd)
        payload = pickle.dumps(("x" * 100,))
        for _ in range(50):
            assert sender.send(payload)
        intake = Intake(read_fd, max_items=10)
        intake.start()
        await asyncio.sleep(0.05)
        held_when_full = intake.held
        got = []
        async for captured, size in intake:
            got.append(captured)
            intake.release(size)
            if len(got) == 50:
                break
        sender.close()
        rest = [item async for item in intake]
        intake.close()
        return held_when_full, len(got), len(rest)

    held, got, rest = asyncio.run(scenario())
    assert held == 10 and got == 50 and rest == 0


def test_a_stopped_intake_counts_everything_it_will_not_mirror():
    async def scenario() -> int:
        read_fd, write_fd = open_pipe(size=65536)
        sender = Sender(write_fd)
        for _ in range(40):
            assert sender.send(pickle.dumps(("y" * 100,)))
        intake = Intake(read_fd, max_items=10)
        intake.start()
        await asyncio.sleep(0.05)
        async for _captured, size in intake:  # one finished; nine held; thirty not read
            intake.release(size)
            break
        abandoned = intake.abandon()
        intake.close()
        sender.close()
        return abandoned

    assert asyncio.run(scenario()) == 39


# --- pool: real worker processes ------------------------------------------------------------------


def test_pool_workers_mirror_record_report_and_stop(tmp_path):
    refused = f"http://127.0.0.1:{free_port()}"
    settings = WorkerSettings(candidate=refused, recordings=str(tmp_path / "rec"),
                              timeout_s=1.0, breakers=str(tmp_path / "breakers.jsonl"))
    counters = Counters()

    async def scenario() -> list[int]:
        pool = WorkerPool(settings, 2, counters)
        pool.start()
        if hasattr(os, "SCHED_IDLE"):  # production first: workers only take idle CPU time
            deadline = time.monotonic() + 20
            while any(os.sched_getscheduler(pid) != os.SCHED_IDLE for pid in pool.pids):
                assert time.monotonic() < deadline, "workers never switched to SCHED_IDLE"
                await asyncio.sleep(0.05)
        for n in range(20):
            flow = tflow.tflow(resp=True)
            flow.request.path = f"/health?n={n}"
            captured = capture(flow)
            pool.submit(captured, f"10.0.0.{n}")
        pids = pool.pids
        await pool.stop(drain_s=20)
        return pids

    pids = asyncio.run(scenario())
    records = list(iter_records([tmp_path / "rec"]))
    assert len(records) == 20
    assert {r["verdict"] for r in records} == {"candidate-error"}
    assert {r["reason"] for r in records} == {"connection refused"}
    assert len({p.name.split("-")[1] for p in (tmp_path / "rec").iterdir()}) == 2  # w1, w2
    totals = counters.totals()
    assert totals[c.CAPTURED] == 20 and totals["candidate-error"] == 20
    assert totals[c.COMPARED] == 20 and totals.get(c.ABANDONED, 0) == 0
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_a_full_queue_drops_and_counts_and_never_waits():
    counters = Counters()
    pool = WorkerPool(WorkerSettings(candidate="http://c"), 1, counters)
    read_fd, write_fd = open_pipe(size=65536)  # a worker that reads nothing
    pool._slots = [type("Slot", (), {"sender": Sender(write_fd), "sent": 0})()]
    flow = tflow.tflow(resp=True)
    flow.response.raw_content = b"x" * 2000
    started = time.perf_counter()
    for _ in range(1000):
        pool.submit(capture(flow), "10.0.0.1")
    assert time.perf_counter() - started < 1.0
    totals = counters.totals()
    assert totals[c.CAPTURED] + totals[c.DROPPED] == 1000 and totals[c.DROPPED] > 900
    flow.response.raw_content = b"x" * (MAX_CAPTURE_BYTES + 1)
    pool.submit(capture(flow), "10.0.0.1")
    assert counters.totals()[c.TOO_LARGE] == 1
    pool._slots[0].sender.close()
    os.close(read_fd)


def test_a_worker_that_dies_is_replaced(tmp_path, monkeypatch):
    import signal

    import harness.shadow.pool as pool_module

    monkeypatch.setattr(pool_module, "RESTART_AFTER_S", 0.0)
    settings = WorkerSettings(candidate=f"http://127.0.0.1:{free_port()}",
                              recordings=str(tmp_path / "rec"), timeout_s=1.0)
    counters = Counters()

    async def scenario() -> tuple[int, int]:
        pool = WorkerPool(settings, 1, counters)
        pool.start()
        (first,) = pool.pids
        os.kill(first, signal.SIGKILL)
        while pool._slots[0].process.poll() is None:
            await asyncio.sleep(0.01)
        pool.supervise()
        (second,) = pool.pids
        for _ in range(5):
            pool.submit(capture(tflow.tflow(resp=True)), "10.0.0.1")
        await pool.stop(drain_s=20)
        return first, second

    first, second = asyncio.run(scenario())
    assert first != second and counters.totals()[c.RESTARTS] == 1
    assert [p.name.split("-")[1] for p in (tmp_path / "rec").iterdir()] == ["w1.1"]
    assert len(list(iter_records([tmp_path / "rec"]))) == 5


def test_what_a_killed_worker_held_is_counted_abandoned(tmp_path, monkeypatch):
    import signal
    import socket

    import harness.shadow.pool as pool_module

    monkeypatch.setattr(pool_module, "RESTART_AFTER_S", 0.0)
    hanging = socket.socket()  # accepts connections (backlog), never answers
    hanging.bind(("127.0.0.1", 0))
    hanging.listen(64)
    settings = WorkerSettings(candidate=f"http://127.0.0.1:{hanging.getsockname()[1]}",
                              recordings=str(tmp_path / "rec"), timeout_s=60.0)
    counters = Counters()

    async def scenario() -> None:
        pool = WorkerPool(settings, 1, counters)
        pool.start()
        for _ in range(5):
            pool.submit(capture(tflow.tflow(resp=True)), "10.0.0.1")
        (worker,) = pool.pids
        os.kill(worker, signal.SIGKILL)
        while pool._slots[0].process.poll() is None:
            await asyncio.sleep(0.01)
        pool.supervise()  # restarted; the five it held are lost
        pool.counts[c.ANSWERED] += 5
        await pool.stop(drain_s=20)

    try:
        asyncio.run(scenario())
    finally:
        hanging.close()
    totals = counters.totals()
    assert totals[c.RESTARTS] == 1 and totals[c.ABANDONED] == 5
    assert c.accounted(totals) == totals[c.ANSWERED] == 5


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="Linux scheduling classes")
def test_a_worker_leaves_the_idle_class_to_drain_when_its_pipe_ends(tmp_path):
    import socket

    hanging = socket.socket()  # accepts connections (backlog), never answers
    hanging.bind(("127.0.0.1", 0))
    hanging.listen(64)
    settings = WorkerSettings(candidate=f"http://127.0.0.1:{hanging.getsockname()[1]}",
                              recordings=str(tmp_path / "rec"), timeout_s=60.0)

    async def scenario() -> tuple[int, int]:
        pool = WorkerPool(settings, 1, Counters())
        pool.start()
        (worker,) = pool.pids
        deadline = time.monotonic() + 20
        while os.sched_getscheduler(worker) != os.SCHED_IDLE:
            assert time.monotonic() < deadline, "the worker never switched to SCHED_IDLE"
            await asyncio.sleep(0.05)
        pool.submit(capture(tflow.tflow(resp=True)), "10.0.0.1")  # held: the candidate hangs
        pool._slots[0].sender.close()  # what the proxy does when it stops
        deadline = time.monotonic() + 20
        while (policy := os.sched_getscheduler(worker)) == os.SCHED_IDLE:
            assert time.monotonic() < deadline, "the worker stayed in SCHED_IDLE"
            await asyncio.sleep(0.05)
        held = pool._slots[0].process.poll() is None  # still finishing what it holds
        await pool.stop(drain_s=0)
        return policy, held

    try:
        policy, held = asyncio.run(scenario())
    finally:
        hanging.close()
    assert policy == os.SCHED_OTHER and held


# --- addon -----------------------------------------------------------------------------------


class FakePool:
    size = 1

    def __init__(self) -> None:
        self.counts = Counters().proxy
        self.submitted: list[tuple] = []

    def submit(self, captured, key) -> None:
        self.submitted.append(captured)


def test_addon_options_are_validated_naming_the_option(tmp_path):
    addon = ShadowAddon()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, parity_candidate="http://native:9000", parity_sample="0.25")
        assert addon.sample == 0.25
        bad = [({"parity_candidate": "ftp://x"}, "parity_candidate"),
               ({"parity_secondary": "nohost"}, "parity_secondary"),
               ({"parity_sample": "2"}, "parity_sample: must be between 0 and 1"),
               ({"parity_timeout": "soon"}, "parity_timeout: 'soon' is not a number"),
               ({"parity_queue_size": 0}, "parity_queue_size: must be at least 1"),
               ({"parity_workers": 0}, "parity_workers"),
               ({"parity_ca_bundle": str(tmp_path / "none.pem")}, "parity_ca_bundle"),
               ({"parity_worker_nice": 40}, "parity_worker_nice")]
        for options, message in bad:
            with pytest.raises(exceptions.OptionsError, match=message):
                tctx.configure(addon, **options)
        config = tmp_path / "parity.toml"
        config.write_text("[shadow]\nsample = 7\n")
        with pytest.raises(exceptions.OptionsError, match=r"parity_config: .*shadow\.sample"):
            tctx.configure(addon, parity_config=str(config))


def test_addon_hands_over_finished_flows_and_leaves_streams_alone():
    addon = ShadowAddon()
    pool = addon.pool = FakePool()
    with taddons.context(addon):
        plain = tflow.tflow(resp=True)
        addon.response(plain)
        assert pool.submitted == [capture(plain)]
        sse = tflow.tflow(resp=True)
        sse.response.headers["content-type"] = "text/event-stream"
        addon.responseheaders(sse)
        assert sse.response.stream is True
        sse.response.data.content = None  # what mitmproxy leaves after streaming
        addon.response(sse)
        addon.response(tflow.twebsocketflow())
        not_live = tflow.tflow(resp=True, live=False)
        addon.response(not_live)
        assert len(pool.submitted) == 1 and pool.counts[c.STREAMS] == 2
        addon.sample = 0.0
        addon.response(tflow.tflow(resp=True))
        assert pool.counts[c.NOT_SAMPLED] == 1 and len(pool.submitted) == 1


def test_sampling_keeps_or_leaves_out_whole_clients():
    addon = ShadowAddon()
    pool = addon.pool = FakePool()
    addon.sample = 0.5

    def flow_from(client: str):
        flow = tflow.tflow(resp=True)
        flow.request.headers["x-forwarded-for"] = f"{client}, 10.0.0.1"
        return flow

    clients = [f"198.51.100.{n}" for n in range(200)]
    with taddons.context(addon):
        for _ in range(2):
            for client in clients:
                addon.response(flow_from(client))
    assert 60 < len(pool.submitted) / 2 < 140
    assert pool.counts[c.NOT_SAMPLED] == 400 - len(pool.submitted)
    taken = [client_of(flow_from(client)) for client in clients]
    assert taken == clients
    first_pass = {captured[2] for captured in pool.submitted[: len(pool.submitted) // 2]}
    second_pass = {captured[2] for captured in pool.submitted[len(pool.submitted) // 2:]}
    assert first_pass == second_pass  # the same clients both times


def test_the_response_hook_costs_microseconds(capsys):
    """Capture, pickle and write to the pipe, as in production (the pipe drained meanwhile)."""
    addon = ShadowAddon()

    async def scenario() -> float:
        read_fd, write_fd = open_pipe()
        os.set_blocking(read_fd, False)
        pool = WorkerPool(WorkerSettings(candidate="http://c"), 1, addon.counters)
        pool._slots = [type("Slot", (), {"sender": Sender(write_fd), "sent": 0})()]
        addon.pool = pool
        flow = tflow.tflow(resp=True)
        flow.request.headers["authorization"] = "Bearer abc.def.ghi"
        flow.response.raw_content = b'{"candles": [[1, 2.5, 3.5, 1.5, 2.0, 10.0]]}' * 20
        rounds = 20_000
        started = time.perf_counter()
        for n in range(rounds):
            addon.response(flow)
            if n % 100 == 0:
                _read_available(read_fd)
        elapsed = time.perf_counter() - started
        pool._slots[0].sender.close()
        os.close(read_fd)
        assert addon.counters.proxy[c.CAPTURED] == rounds
        return elapsed / rounds * 1e6

    per_call = asyncio.run(scenario())
    with capsys.disabled():
        print(f"\nresponse hook: {per_call:.1f} µs per request")
    assert per_call < 100  # about 5 µs on an idle core; generous for a shared CI machine


def test_the_command_line_becomes_proxy_and_addon_options(monkeypatch, tmp_path):
    import harness.shadow.proxy as proxy_module
    from harness.cli import main

    seen = []

    async def fake_serve(settings):
        seen.append(settings)

    monkeypatch.setattr(proxy_module, "serve", fake_serve)
    pem = tmp_path / "server.pem"
    pem.write_text("pem")
    assert main(["shadow", "--primary", "https://primary:8443/", "--candidate", "https://c",
                 "--secondary", "http://s", "--listen", "0.0.0.0:9000", "--sample", "0.5",
                 "--timeout", "2", "--workers", "2", "--certs", f"*={pem}",
                 "--ca-bundle", str(pem), "--insecure", "--recordings", str(tmp_path)]) == 0
    (settings,) = seen
    assert (settings.primary, settings.listen_host, settings.listen_port) == (
        "https://primary:8443", "0.0.0.0", 9000)
    options = settings.mitmproxy_options()
    assert options["certs"] == [f"*={pem}"] and options["ssl_insecure"] is True
    assert options["ssl_verify_upstream_trusted_ca"] == str(pem)
    assert options["connection_strategy"] == "lazy"
    assert {k: options[k] for k in ("parity_candidate", "parity_secondary", "parity_sample",
                                    "parity_timeout", "parity_workers", "parity_insecure",
                                    "parity_ca_bundle")} == {
        "parity_candidate": "https://c", "parity_secondary": "http://s", "parity_sample": "0.5",
        "parity_timeout": "2.0", "parity_workers": 2, "parity_insecure": True,
        "parity_ca_bundle": str(pem)}
    # Not asked for: the declared defaults ([shadow] in parity.toml may change them).
    assert options["parity_drain"] == "15.0"
    assert (options["parity_worker_idle"], options["parity_worker_nice"]) == (True, 10)
    assert main(["shadow", "--primary", "http://p", "--candidate", "http://c", "--drain", "3",
                 "--no-idle-workers", "--worker-nice", "0", "--recordings", str(tmp_path)]) == 0
    options = seen[-1].mitmproxy_options()
    assert (options["parity_drain"], options["parity_worker_idle"],
            options["parity_worker_nice"]) == ("3.0", False, 0)


def test_running_starts_workers_with_the_options_and_done_stops_them(monkeypatch, tmp_path):
    import harness.shadow.addon as addon_module

    class RecordingPool(FakePool):
        def __init__(self, settings, workers, counters) -> None:
            super().__init__()
            self.settings, self.workers, self.events = settings, workers, ["created"]

        def start(self) -> None:
            self.events.append("started")

        def supervise(self) -> None:
            pass

        async def stop(self, drain_s: float) -> None:
            self.events.append(f"stopped {drain_s:g}")

    monkeypatch.setattr(addon_module, "WorkerPool", RecordingPool)
    addon = ShadowAddon()

    async def lifecycle() -> RecordingPool:
        with taddons.context(addon) as tctx:
            tctx.configure(addon, parity_candidate="https://native:9000/",
                           parity_insecure=True, parity_timeout="2.5", parity_workers=3,
                           parity_recordings=str(tmp_path / "rec"), parity_drain="4")
            addon.running()
            pool = addon.pool
            await addon.done()
            assert addon.pool is None
            return pool

    pool = asyncio.run(lifecycle())
    assert pool.events == ["created", "started", "stopped 4"] and pool.workers == 3
    s = pool.settings
    assert (s.candidate, s.verify, s.timeout_s, s.secondary) == (
        "https://native:9000", False, 2.5, None)
    assert s.breakers == str(tmp_path / "rec" / BREAKER_FILE)  # beside the recordings
    assert (tmp_path / "rec").is_dir()
