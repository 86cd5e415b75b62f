"""Coverage under a wrong candidate: an answer is asked again only when the candidate says it is
not finished (a running backtest, a 404 for a just-created id), never for a finished answer that
differs, and the asking again runs beside the client's lane, so the client's later requests are
mirrored meanwhile. A real worker (`MirrorWorker.run`, with its lanes) against a real loopback
candidate (aiohttp), recording into real segments."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from harness.config import load_config
from harness.judge.engine import Engine
from harness.mirror.policy import Breakers, MirrorPolicy
from harness.mirror.step import answer_unfinished
from harness.mirror.transport import TransportSettings, make_client
from harness.model import Body, Response
from harness.shadow import counters as c
from harness.shadow.capture import Captured
from harness.shadow.settings import WorkerSettings
from harness.shadow.worker import MirrorWorker
from harness.store.reader import iter_records
from harness.store.writer import SegmentWriter

CONFIG = load_config()
JSON = ((b"content-type", b"application/json"),)
RESULTS = {"id": "b1", "status": "completed", "strategy": "sma_crossover",
           "results": {"metrics": {"sharpe_ratio": 1.25, "total_return": 0.125}}}
RUNNING = {**RESULTS, "status": "running", "results": None}
STRATEGY = {"id": 5, "name": "s", "description": "d", "parameters": {"fast": 10}}


def answer(data, status: int = 200) -> Response:
    return Response(status, [("content-type", "application/json")],
                    Body.from_bytes(orjson.dumps(data)))


def captured(method: str, path: str, answer_data, status: int = 200, body=None) -> Captured:
    """What the proxy hands a worker for one exchange of client 10.0.0.1."""
    now = time.time()
    request_body = orjson.dumps(body) if body is not None else b""
    return (method.encode(), path.encode(), JSON, request_body, status, JSON,
            orjson.dumps(answer_data), now, now, now, "10.0.0.1")


class Candidate:
    """A loopback candidate whose answer to each GET is chosen by `answers[path](seen)`, where
    `seen` lists the (method, path) it received so far; POSTs create strategy 5."""

    def __init__(self, answers: dict[str, Callable[[list[tuple[str, str]]], web.Response]]):
        self.answers = answers
        self.seen: list[tuple[str, str]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append((request.method, request.path))
        if request.method == "POST":
            return web.json_response(STRATEGY, status=201)
        return self.answers[request.path](self.seen)


def mirror_all(tmp_path, candidate: Candidate, items: list[Captured], *,
               cancel_when: Callable[[], bool] | None = None
               ) -> tuple[MirrorWorker, list[dict], list[int]]:
    """Run a worker over `items` (one client) until they are done, or cancel it once
    `cancel_when()` holds; returns the worker, what it recorded and the sizes it released."""
    released: list[int] = []

    async def source() -> AsyncIterator[tuple[Captured, int]]:
        for number, item in enumerate(items):
            yield item, number

    async def scenario() -> MirrorWorker:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", candidate.handle)
        async with TestServer(app, host="127.0.0.1") as server:
            settings = WorkerSettings(candidate=str(server.make_url("")).rstrip("/"),
                                      timeout_s=5.0)
            worker = MirrorWorker(settings, engine=Engine(CONFIG),
                                  writer=SegmentWriter(tmp_path / "rec", prefix="shadow-w1"),
                                  policy=MirrorPolicy(Breakers()))
            async with make_client(TransportSettings(timeout_s=5.0)) as client:
                run = asyncio.create_task(worker.run(source(), released.append, client=client))
                if cancel_when is not None:
                    while not cancel_when():
                        await asyncio.sleep(0.01)
                    run.cancel()
                stopped = pytest.raises(asyncio.CancelledError) if cancel_when else None
                with stopped or contextlib.nullcontext():
                    await run
            worker.close()
        return worker

    worker = asyncio.run(scenario())
    return worker, list(iter_records([tmp_path / "rec"])), released


def by_path(records: list[dict]) -> dict[str, dict]:
    return {f"{r['request']['method']} {r['request']['path']}": r for r in records}


def test_an_unfinished_answer_settles_beside_the_lane_while_the_client_goes_on(tmp_path):
    # The candidate's backtest finishes only once the client's next request (a write, which a
    # lane runs after everything before it) has reached the candidate: asked again inside the
    # lane, the results would stay "running" for all of settle_s and be judged a mismatch.
    def results(seen):
        done = ("POST", "/api/strategies/") in seen
        return web.json_response(RESULTS if done else RUNNING)

    candidate = Candidate({"/api/backtest/results/b1": results,
                           "/api/strategies/5": lambda seen: web.json_response(
                               STRATEGY)})
    items = [captured("GET", "/api/backtest/results/b1", RESULTS),
             captured("POST", "/api/strategies/", STRATEGY, 201,
                      body={"name": "s"}),
             captured("GET", "/api/strategies/5", STRATEGY)]
    worker, records, released = mirror_all(tmp_path, candidate, items)

    first_post = candidate.seen.index(("POST", "/api/strategies/"))
    assert candidate.seen[0] == ("GET", "/api/backtest/results/b1")
    assert first_post == 1  # not held back behind the unfinished results
    last_results = max(n for n, seen in enumerate(candidate.seen)
                       if seen == ("GET", "/api/backtest/results/b1"))
    assert last_results > first_post  # asked again beside the lane, after it
    verdicts = {path: r["verdict"] for path, r in by_path(records).items()}
    assert verdicts == {"GET /api/backtest/results/b1": "match",
                        "POST /api/strategies/": "match",
                        "GET /api/strategies/5": "match"}
    assert worker.counts[c.COMPARED] == 3 and sorted(released) == [0, 1, 2]


def test_a_finished_answer_that_differs_is_asked_once(tmp_path):
    drifted = {**RESULTS, "results": {"metrics": {"sharpe_ratio": 1.26, "total_return": 0.125}}}
    candidate = Candidate({"/api/backtest/results/b1": lambda seen: web.json_response(drifted)})
    worker, records, released = mirror_all(
        tmp_path, candidate, [captured("GET", "/api/backtest/results/b1", RESULTS)])
    assert candidate.seen == [("GET", "/api/backtest/results/b1")]
    assert [r["verdict"] for r in records] == ["mismatch"]
    assert worker.counts[c.COMPARED] == 1 and released == [0]


def test_a_404_for_a_just_created_id_is_asked_again_until_found(tmp_path):
    def results(seen):
        if len(seen) < 3:
            return web.json_response({"detail": "Backtest b1 not found"}, status=404)
        return web.json_response(RESULTS)

    candidate = Candidate({"/api/backtest/results/b1": results})
    worker, records, _ = mirror_all(
        tmp_path, candidate, [captured("GET", "/api/backtest/results/b1", RESULTS)])
    assert len(candidate.seen) == 3 and worker.counts[c.COMPARED] == 1
    assert [r["verdict"] for r in records] == ["match"]


def test_a_worker_told_to_stop_keeps_a_settling_exchange_held_for_the_abandoned_count(tmp_path):
    candidate = Candidate({"/api/backtest/results/b1": lambda seen: web.json_response(RUNNING)})
    worker, records, released = mirror_all(
        tmp_path, candidate, [captured("GET", "/api/backtest/results/b1", RESULTS)],
        cancel_when=lambda: len(candidate.seen) >= 2)
    # Not released: the intake still holds it, and `Intake.abandon` counts it abandoned.
    assert released == [] and records == []
    assert c.accounted(worker.counts) == 0


@pytest.mark.parametrize(("primary", "candidate", "unfinished"), [
    (answer(RESULTS), answer(RUNNING), True),
    (answer(RESULTS), answer({**RUNNING, "status": "PENDING"}), True),
    (answer(RESULTS), answer({"detail": "not found"}, 404), True),
    (answer(RESULTS), answer({"detail": "Backtest b1 is running"}, 409), True),
    (answer(RESULTS), answer(RUNNING, 202), True),
    (answer(RUNNING), answer(RUNNING), False),  # the primary is not finished either
    (answer(RESULTS), answer({**RESULTS, "results": {}}), False),  # finished, differs
    (answer({"detail": "gone"}, 404), answer({"detail": "gone"}, 404), False),
    (answer(RESULTS), answer({"detail": "boom"}, 500), False),
    (answer(RESULTS), Response(error="connection refused"), False),
    (answer(RESULTS), answer(["running"]), False),
])
def test_what_counts_as_an_unfinished_answer(primary, candidate, unfinished):
    assert answer_unfinished(primary, candidate) is unfinished
