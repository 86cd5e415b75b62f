"""Orders reach a mirrored side only after it proved its dry-run switch on, in the shadow proxy, the
replay and `pytest -m parity` alike. Real processes: the reference Cryptobot (Docker primary, live;
Docker secondary; native candidate), `parity shadow`, `parity replay` and pytest. Every test counts
the real orders and the dry runs each copy received."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import tomllib
import uuid
from importlib import resources
from pathlib import Path

import httpx
import orjson
import pytest
from support import Shadow
from traffic import wait_for

from harness.config import build_config, load_config, route_toml
from harness.errors import ConfigError
from harness.judge.engine import Engine
from harness.mirror.policy import BREAKER_FILE, Breakers, MirrorPolicy
from harness.mirror.step import Mirror
from harness.mirror.transport import TransportSettings, make_client
from harness.model import Body, Exchange, Request, Response, Severity, Verdict
from harness.processes import free_port
from harness.store.reader import iter_records

ORDERS = "/api/trades/orders"
SWITCH = "/api/v1/settings/dry_run"
RECHECK_S = 0.5
NOT_PROVEN = "not proven in dry-run mode: no order mirrored"
DEFAULT_TOML = resources.files("harness").joinpath("default_config.toml").read_text()


@pytest.fixture(scope="module")
def apps(reference_factory):
    """Primary (Docker, live), secondary (Docker) and candidate (native, no drift)."""
    started = [reference_factory("docker", wait=False), reference_factory("docker", wait=False),
               reference_factory("native", wait=False)]
    for app in started:
        app.wait_healthy()
    return started


@pytest.fixture
def config(tmp_path) -> Path:
    path = tmp_path / "parity.toml"
    path.write_text(f"[safety]\nprecondition_recheck_s = {RECHECK_S}\n")
    return path


def switch(app, on: bool) -> None:
    assert httpx.put(app.base_url + SWITCH, json={"dry_run": on}).json() == {"dry_run": on}


def received(app) -> tuple[int, int]:
    """(real orders executed, dry-run orders answered) by the trade service of `app`."""
    real = [o for o in httpx.get(app.base_url + "/_debug/orders").json() if o["venue"] == "trade"]
    return len(real), httpx.get(app.base_url + "/_debug/dry-run-count").json()["trade"]


def order() -> dict:
    return {"exchange": "binance", "symbol": "ETH/USDT", "side": "buy", "type": "limit",
            "amount": 0.1234, "price": 3000.0, "client_order_id": f"proof-{uuid.uuid4().hex}"}


def place(url: str, count: int) -> None:
    """`count` real orders (and one invalid one) from a client, through `url`."""
    with httpx.Client(base_url=url, timeout=10) as client:
        for _ in range(count):
            answer = client.post(ORDERS, json=order())
            assert answer.status_code == 200 and answer.json()["status"] == "open", answer.text
        invalid = client.post(ORDERS, json={**order(), "price": None})  # 422 everywhere
        assert invalid.status_code == 422


def order_records(recordings: Path, wanted: int) -> list[dict]:
    def ready() -> list[dict] | None:
        found = [r for r in iter_records([recordings]) if r["route"] == f"POST {ORDERS}"]
        return found if len(found) >= wanted else None

    return wait_for(ready, 60, f"{wanted} recorded orders")


def test_shadow_mirrors_orders_only_to_sides_proven_in_dry_run_mode(tmp_path, apps, config):
    primary, secondary, candidate = apps
    for app in (secondary, candidate):
        switch(app, False)
    before = {app.base_url: received(app) for app in apps}
    shadow = Shadow(tmp_path, primary.base_url, candidate.base_url, "--secondary",
                    secondary.base_url, "--config", str(config))
    try:
        # Both sides live: nothing is sent, and the recordings say why.
        place(shadow.url, 3)
        skipped = order_records(shadow.recordings, 4)
        assert received(candidate) == before[candidate.base_url]
        assert received(secondary) == before[secondary.base_url]
        assert {r["verdict"] for r in skipped} == {"skipped"}
        assert all(r["reason"].startswith(f"candidate {NOT_PROVEN}") for r in skipped), skipped
        assert "dry_run = false" in skipped[0]["reason"]

        # The candidate proven, the secondary not: only the candidate gets the orders.
        switch(candidate, True)
        time.sleep(RECHECK_S + 0.3)  # the last "not proven" answer goes stale
        place(shadow.url, 3)
        records = order_records(shadow.recordings, 8)[4:]
        assert received(candidate) == (before[candidate.base_url][0],
                                       before[candidate.base_url][1] + 3)
        assert received(secondary) == before[secondary.base_url]
        assert [r["mirror"] for r in records] == ["dry-run"] * 4
        assert NOT_PROVEN in records[0]["secondary"]["error"]
        assert [r["verdict"] for r in records] == ["match"] * 4  # intent equal; 422 == 422

        # Both proven: both get them.
        switch(secondary, True)
        time.sleep(RECHECK_S + 0.3)
        place(shadow.url, 2)
        order_records(shadow.recordings, 11)
        assert received(candidate)[1] == before[candidate.base_url][1] + 5
        assert received(secondary)[1] == before[secondary.base_url][1] + 2

        # The candidate switched live mid-run: mirroring stops within the recheck interval.
        switch(candidate, False)
        time.sleep(RECHECK_S + 0.3)
        place(shadow.url, 3)
        last = order_records(shadow.recordings, 15)[11:]
        assert all(r["reason"].startswith(f"candidate {NOT_PROVEN}") for r in last), last
        assert received(candidate)[1] == before[candidate.base_url][1] + 5
        assert received(secondary)[1] == before[secondary.base_url][1] + 2
    finally:
        shadow.stop()
    # Never a real order on a mirrored side; the identical 422s tripped no breaker.
    assert received(candidate)[0] == before[candidate.base_url][0]
    assert received(secondary)[0] == before[secondary.base_url][0]
    assert received(primary)[0] == before[primary.base_url][0] + 11
    assert not (shadow.recordings / BREAKER_FILE).exists()


@pytest.fixture
def recorded(tmp_path, apps, config) -> Path:
    """Recordings of 3 orders (and an invalid one) shadowed while no side was proven."""
    primary, secondary, candidate = apps
    for app in (secondary, candidate):
        switch(app, False)
    shadow = Shadow(tmp_path, primary.base_url, candidate.base_url, "--secondary",
                    secondary.base_url, "--config", str(config))
    try:
        place(shadow.url, 3)
        order_records(shadow.recordings, 4)
    finally:
        shadow.stop()
    return shadow.recordings


def replay(recordings: Path, candidate, secondary, config: Path, save: Path) -> list[dict]:
    """`parity replay` as a subprocess; the replayed order exchanges."""
    done = subprocess.run(
        [sys.executable, "-m", "harness.cli", "replay", str(recordings), "--candidate",
         candidate.base_url, "--secondary", secondary.base_url, "--config", str(config),
         "--save", str(save), "--no-progress"],
        capture_output=True, text=True, timeout=120)
    assert done.returncode in (0, 1), done.stderr[-2000:]
    return [r for r in iter_records([save]) if r["route"] == f"POST {ORDERS}"]


def test_replay_sends_no_order_to_unproven_sides_and_proven_ones_get_each_once(
        tmp_path, apps, config, recorded):
    _, secondary, candidate = apps
    before = {app.base_url: received(app) for app in apps}
    unproven = replay(recorded, candidate, secondary, config, tmp_path / "first")
    assert len(unproven) == 4 and {r["verdict"] for r in unproven} == {"skipped"}
    assert all(NOT_PROVEN in r["reason"] for r in unproven)
    assert received(candidate) == before[candidate.base_url]
    assert received(secondary) == before[secondary.base_url]

    for app in (secondary, candidate):
        switch(app, True)
    proven = replay(recorded, candidate, secondary, config, tmp_path / "second")
    assert [r["verdict"] for r in proven] == ["match"] * 4
    for app in (candidate, secondary):
        assert received(app) == (before[app.base_url][0], before[app.base_url][1] + 3)


def test_a_breaker_tripped_by_one_tool_stops_the_route_in_the_replay(
        tmp_path, apps, config, recorded):
    _, secondary, candidate = apps
    for app in (secondary, candidate):
        switch(app, True)
    Breakers(recorded / BREAKER_FILE).trip(f"POST {ORDERS}", "tripped by the shadow proxy")
    before = {app.base_url: received(app) for app in apps}
    stopped = replay(recorded, candidate, secondary, config, tmp_path / "saved")
    assert {r["reason"] for r in stopped} == {"breaker open (tripped by the shadow proxy)"}
    assert {app.base_url: received(app) for app in apps} == before


def test_pytest_parity_sends_no_order_to_an_unproven_candidate(tmp_path, apps, config, recorded):
    _, secondary, candidate = apps
    for app in (secondary, candidate):
        switch(app, False)
    before = {app.base_url: received(app) for app in apps}
    work = tmp_path / "gate"
    work.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "parity", "-p", "no:cacheprovider",
         "--parity-recordings", str(recorded), "--parity-candidate", candidate.base_url,
         "--parity-secondary", secondary.base_url, "--parity-config", str(config), "-q"],
        cwd=work, capture_output=True, text=True, timeout=120)
    assert done.returncode in (0, 1), done.stdout[-2000:] + done.stderr[-2000:]
    assert "candidate not proven in dry-run mode" in done.stderr, done.stderr[-2000:]
    assert {app.base_url: received(app) for app in apps} == before

    for app in (secondary, candidate):
        switch(app, True)
    subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "parity", "-p", "no:cacheprovider",
         "--parity-recordings", str(recorded), "--parity-candidate", candidate.base_url,
         "--parity-secondary", secondary.base_url, "--parity-config", str(config), "-q"],
        cwd=work, capture_output=True, text=True, timeout=120)
    for app in (candidate, secondary):
        assert received(app) == (before[app.base_url][0], before[app.base_url][1] + 3)


# --- one mirrored exchange at a time (harness.mirror.step against the real reference app) ------


def mirror_orders(config_text: str, candidate: str, secondary: str | None,
                  orders: list[dict]) -> tuple[list[Exchange], Mirror]:
    """Each order as a shadowed exchange (the primary answered it as a real order), mirrored."""
    config = build_config(tomllib.loads(DEFAULT_TOML), "parity.toml", tomllib.loads(config_text))
    primary = Response(200, [("content-type", "application/json")],
                       Body.from_bytes(orjson.dumps({"status": "open"})), 1.0)

    async def scenario() -> tuple[list[Exchange], Mirror]:
        async with make_client(TransportSettings(timeout_s=5)) as client:
            mirror = Mirror(client, Engine(config), MirrorPolicy(), candidate, secondary)
            done = []
            for body in orders:
                request = Request("POST", ORDERS, [], [("content-type", "application/json")],
                                  Body.from_bytes(orjson.dumps(body)))
                exchange = Exchange(request, primary)
                route = mirror.engine.route_of(exchange)
                done.append(await mirror.run(exchange, route))
            return done, mirror

    return asyncio.run(scenario())


def test_the_switch_is_asked_once_per_recheck_interval_never_assumed(apps):
    _, secondary, candidate = apps
    switch(candidate, True)
    switch(secondary, True)
    _, cached = mirror_orders("[safety]\nprecondition_recheck_s = 600\n", candidate.base_url,
                              secondary.base_url, [order() for _ in range(4)])
    assert cached.preconditions.checks == 2  # once per side, then the answer stands
    assert cached.preconditions.confirmations == 8  # and again after each answer, never cached
    _, every = mirror_orders("[safety]\nprecondition_recheck_s = 0\n", candidate.base_url,
                             None, [order() for _ in range(3)])
    assert every.preconditions.checks == 3


def test_an_unreachable_side_is_not_proven(apps):
    before = received(apps[0])
    done, _ = mirror_orders("", f"http://127.0.0.1:{free_port()}", None, [order()])
    assert done[0].verdict is Verdict.SKIPPED
    assert done[0].reason.startswith(f"candidate {NOT_PROVEN} (GET {SWITCH}: connection")
    assert received(apps[0]) == before


def orders_route(dry_run: str) -> str:
    """A parity.toml replacing the trade orders route with a `dry_run` declaration (no
    precondition)."""
    return f"""
[[routes]]
method = "POST"
path = "{ORDERS}"
group = "trade"
comparator = "order"
mirror = "dry-run"
{dry_run}
"""


def test_a_dry_run_path_rewrite_sends_orders_to_the_echo_whatever_the_switch(apps):
    _, _, candidate = apps
    switch(candidate, False)
    before = received(candidate)
    echo_route = orders_route('dry_run = { path = "/api/v1/orders/" }')
    done, mirror = mirror_orders(echo_route, candidate.base_url, None, [order()])
    assert done[0].mirror == "dry-run" and mirror.policy.tripped == {}
    assert received(candidate) == (before[0], before[1] + 1)


def test_a_side_whose_answer_does_not_prove_the_dry_run_trips_the_breaker(apps):
    _, _, candidate = apps
    switch(candidate, False)
    before = received(candidate)
    # The old default: the trade service ignores the header, so the order is real.
    header_only = orders_route('dry_run = { headers = { "X-Dry-Run" = "true" } }')
    first = order()
    done, mirror = mirror_orders(header_only, candidate.base_url, None, [first, order()])
    assert list(mirror.policy.tripped) == [f"POST {ORDERS}"]
    assert any(d.severity is Severity.CRITICAL for d in done[0].differences)
    assert done[1].reason.startswith("breaker open")
    assert received(candidate)[0] == before[0] + 1  # the one order the proof came too late for
    real = httpx.get(candidate.base_url + "/_debug/orders").json()
    assert real[-1]["client_order_id"] == first["client_order_id"]


def mirror_to_real_like_service(turned_off_by_the_order: bool) -> tuple[list[Exchange], Mirror,
                                                                          dict]:
    """Two orders mirrored to a stand-in shaped like the real trade service in dry-run mode: it
    answers an order like any order (no dry-run status in the body) and serves its switch;
    `turned_off_by_the_order`: the switch goes off while it takes the first order."""
    from aiohttp import web

    config = build_config(tomllib.loads(DEFAULT_TOML), "parity.toml", {})
    primary = Response(200, [("content-type", "application/json")],
                       Body.from_bytes(orjson.dumps({"id": "p1", "status": "open"})), 1.0)
    state = {"dry_run": True, "orders": 0}

    async def get_switch(request: web.Request) -> web.Response:
        return web.json_response({"dry_run": state["dry_run"]})

    async def create(request: web.Request) -> web.Response:
        state["orders"] += 1
        if turned_off_by_the_order:
            state["dry_run"] = False
        return web.json_response({"id": f"c{state['orders']}", **await request.json(),
                                  "status": "open"})

    async def scenario() -> tuple[list[Exchange], Mirror]:
        app = web.Application()
        app.router.add_get(SWITCH, get_switch)
        app.router.add_post(ORDERS, create)
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            async with make_client(TransportSettings(timeout_s=5)) as client:
                mirror = Mirror(client, Engine(config), MirrorPolicy(),
                                f"http://127.0.0.1:{port}", None)
                done = []
                for body in (order(), order()):
                    request = Request("POST", ORDERS, [], [("content-type", "application/json")],
                                      Body.from_bytes(orjson.dumps(body)))
                    exchange = Exchange(request, primary)
                    done.append(await mirror.run(exchange, mirror.engine.route_of(exchange)))
                return done, mirror
        finally:
            await runner.cleanup()

    done, mirror = asyncio.run(scenario())
    return done, mirror, state


def test_a_proven_side_answering_like_the_real_service_is_no_breach():
    """The real trade service in dry-run mode answers an order like any order: the second check
    is its switch, asked again right after the answer, not the answer's body."""
    done, mirror, state = mirror_to_real_like_service(turned_off_by_the_order=False)
    assert [e.mirror for e in done] == ["dry-run", "dry-run"] and state["orders"] == 2
    assert mirror.policy.tripped == {}
    assert not any(d.severity is Severity.CRITICAL for e in done for d in e.differences)


def test_a_switch_turned_off_while_taking_an_order_trips_the_breaker():
    done, mirror, state = mirror_to_real_like_service(turned_off_by_the_order=True)
    [(route, reason)] = mirror.policy.tripped.items()
    assert route == f"POST {ORDERS}" and "precondition failed right after the answer" in reason
    assert done[0].verdict is Verdict.MISMATCH
    assert any(d.severity is Severity.CRITICAL and d.path == SWITCH for d in done[0].differences)
    assert done[1].reason.startswith("breaker open") and state["orders"] == 1


# --- the declaration in parity.toml -------------------------------------------------------------


@pytest.mark.parametrize(("route", "message"), [
    ('precondition = { expect = { dry_run = true } }', "precondition.path: missing"),
    ('precondition = { path = "/s/{id}", expect = { a = 1 } }', "expected a literal path"),
    ('precondition = { path = "/s", method = "PUT", expect = { a = 1 } }', "only read (GET)"),
    ('precondition = { path = "/s", expect = {} }', "name at least one field"),
    ('precondition = { path = "/s", expect = { a = 1 }, when = 2 }', "precondition.when: unknown"),
    ('dry_run = { proof_path = "status" }', "needs a dry_run rewrite"),
    ('dry_run = { path = "/echo/{id}" }', "not a template"),
])
def test_bad_preconditions_and_rewrites_are_one_line_errors(route, message):
    text = (f'[[routes]]\nmethod = "POST"\npath = "/x"\ngroup = "trade"\nmirror = "dry-run"\n'
            f"{route}\n")
    with pytest.raises(ConfigError) as error:
        build_config(tomllib.loads(DEFAULT_TOML), "parity.toml", tomllib.loads(text))
    assert message in str(error.value) and "\n" not in str(error.value)
    assert str(error.value).startswith("parity.toml: routes[0].")


def test_the_declaration_round_trips_and_the_recheck_is_one_setting():
    config = load_config()
    trade = config.routes.get("POST", ORDERS)
    again = build_config(tomllib.loads(DEFAULT_TOML), "parity.toml",
                         tomllib.loads(route_toml(trade))).routes.get("POST", ORDERS)
    assert again == trade
    assert config.safety.precondition_recheck_s == 2.0
    with pytest.raises(ConfigError, match=r"safety\.precondition_recheck_s"):
        build_config({}, "parity.toml", {"safety": {"precondition_recheck_s": -1}})
