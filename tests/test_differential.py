"""Differential property tests: hypothesis generates Cryptobot requests (from the strategies
exported in `harness.testing.requests`), sends each to the primary and the candidate, and
asserts parity with the same engine the gate uses. Docker against Docker holds; each drifted
native is caught.

Marked `differential` (not `parity`: a user's `pytest -m parity` gate runs only the gate items);
they run with the rest of the suite. With `--parity-primary URL --parity-candidate URL` they run
against real environments instead of the reference app
(`pytest -m differential --parity-primary URL --parity-candidate URL`); the order properties then
run only when every copy proves the trade route's precondition (its dry-run switch on): the real
trade service reads no dry-run header, so an order sent to a live copy would be real."""

from __future__ import annotations

import asyncio

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, multiple, rule

from harness.config import load_config
from harness.diff.paths import last_key
from harness.diff.values import DEFAULT_ATOL, DEFAULT_RTOL
from harness.judge.engine import Engine
from harness.mirror.transport import TransportSettings, make_client, send
from harness.model import Body, Exchange, Request, Response, Verdict
from harness.testing.requests import ohlcv_requests, order_requests, strategy_payloads

pytestmark = pytest.mark.differential
PASSING = (Verdict.MATCH, Verdict.NOISE_ONLY)
EXAMPLES = settings(max_examples=40, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
DRIFT_EXAMPLES = settings(EXAMPLES, max_examples=15)


@pytest.fixture(scope="module")
def targets(request, reference_factory):
    """(primary, secondary, candidate, drifted) base URLs."""
    option = request.config.getoption
    if option("parity_primary") and option("parity_candidate"):
        return (option("parity_primary"), option("parity_secondary"),
                option("parity_candidate"), None)
    # Orders go straight to every copy here: all of them in dry-run mode (the trade service
    # reads no dry-run header), so no example's order is real and none answers an earlier one.
    return (reference_factory("docker", dry_run=True).base_url,
            reference_factory("docker", dry_run=True).base_url,
            reference_factory("docker", dry_run=True).base_url,
            reference_factory("native", drifts=("tz-offset", "amount-precision")).base_url)


@pytest.fixture(scope="module")
def order_targets(targets):
    """`targets`, once every copy has proven the orders route's precondition (asked now, as the
    mirror asks it); else the order properties are skipped with the copy and the reason."""
    precondition = load_config().routes.match("POST", "/api/trades/orders").precondition
    assert precondition is not None
    for url in filter(None, targets):
        try:
            answer = httpx.request(precondition.method, url + precondition.path, timeout=10)
            body = answer.json() if answer.status_code == 200 else None
            unmet = precondition.unmet(answer.status_code, body)
        except (httpx.HTTPError, ValueError) as exc:
            unmet = f"{precondition.method} {precondition.path}: {exc}"
        if unmet:
            pytest.skip(f"{url} not proven {precondition.described}: no order sent ({unmet})")
    return targets


def judge(engine: Engine, request: Request, primary: str, candidate: str,
          secondary: str | None = None) -> Exchange:
    async def both():
        async with make_client(TransportSettings(timeout_s=10)) as client:
            urls = [primary, candidate] + ([secondary] if secondary else [])
            return await asyncio.gather(*(send(client, u, request, timeout_s=10) for u in urls))

    answers = asyncio.run(both())
    exchange = Exchange(request=request, primary=answers[0], candidate=answers[1],
                        secondary=answers[2] if secondary else None)
    return engine.judge(exchange)


def as_response(answer: httpx.Response) -> Response:
    """An httpx answer as the model's `Response`."""
    return Response(answer.status_code, list(answer.headers.items()),
                    Body.from_bytes(answer.content))


def explain(exchange: Exchange) -> str:
    return f"{exchange.request.method} {exchange.request.path} {exchange.request.query}: " + \
        "; ".join(d.message for d in exchange.differences if not d.noise)


@EXAMPLES
@given(request=ohlcv_requests())
def test_candles_agree_docker_vs_docker(targets, request):
    primary, secondary, candidate, _ = targets
    exchange = judge(Engine(), request, primary, candidate, secondary)
    assert exchange.verdict in PASSING, explain(exchange)


@EXAMPLES
@given(request=order_requests())
def test_dry_run_orders_agree_docker_vs_docker(order_targets, request):
    primary, secondary, candidate, _ = order_targets
    exchange = judge(Engine(), request, primary, candidate, secondary)
    assert exchange.verdict in PASSING, explain(exchange)


@DRIFT_EXAMPLES
@given(request=ohlcv_requests())
def test_tz_drift_is_caught_on_every_non_empty_answer(targets, request):
    primary, _, _, drifted = targets
    if drifted is None:
        pytest.skip("no drifted candidate against real environments")
    exchange = judge(Engine(), request, primary, drifted)
    body = exchange.primary.body.text or ""
    if exchange.primary.status == 200 and body not in ("[]", ""):
        assert exchange.verdict is Verdict.MISMATCH
        assert any("shifted by +1h" in d.message for d in exchange.differences)
    else:
        assert exchange.verdict in PASSING, explain(exchange)


@DRIFT_EXAMPLES
@given(request=order_requests())
def test_amount_precision_drift_is_caught_exactly_when_it_matters(order_targets, request):
    primary, _, _, drifted = order_targets
    if drifted is None:
        pytest.skip("no drifted candidate against real environments")
    exchange = judge(Engine(), request, primary, drifted)
    amount = orjson.loads(request.body.raw)["amount"]
    kept, rounded = round(amount, 8), round(amount, 6)
    # "matters" is measured by the order comparator's own tolerance; 9.99999999 → 10.0 moves the
    # amount by exactly rtol·10, so float rounding decides it (and the cost derived from it)
    edge = DEFAULT_ATOL + DEFAULT_RTOL * max(abs(kept), abs(rounded))
    if exchange.primary.status != 200 or kept == rounded:
        assert exchange.verdict in PASSING, explain(exchange)
    elif abs(kept - rounded) > 2 * edge:
        assert exchange.verdict is Verdict.MISMATCH, explain(exchange)
        assert any(d.path.endswith("amount") for d in exchange.differences)
    else:
        assert {last_key(d.path) for d in exchange.differences} <= {"amount", "cost"}, \
            explain(exchange)


class StrategyLifecycle(RuleBasedStateMachine):
    """Random create / update / delete / read sequences on both environments stay in parity
    (ids correlated: each environment numbers its own strategies)."""

    primary = candidate = ""
    created = Bundle("created")

    @initialize()
    def start(self) -> None:
        self.engine = Engine()
        self.client = httpx.Client(timeout=10)
        self.ids: dict[int, int] = {}

    def both(self, method: str, path_of, payload=None) -> tuple[httpx.Response, httpx.Response]:
        return (self.client.request(method, self.primary + path_of(True), json=payload),
                self.client.request(method, self.candidate + path_of(False), json=payload))

    @rule(target=created, payload=strategy_payloads())
    def create(self, payload):
        p, c = self.both("POST", lambda _: "/api/strategies/", payload)
        assert p.status_code == c.status_code
        if p.status_code != 201:
            return -1
        self.ids[p.json()["id"]] = c.json()["id"]
        return p.json()["id"]

    def _path(self, strategy_id: int, suffix: str = ""):
        return lambda on_primary: (f"/api/strategies/"
                                   f"{strategy_id if on_primary else self.ids.get(strategy_id, -1)}"
                                   f"{suffix}")

    @rule(strategy_id=created, payload=strategy_payloads())
    def update(self, strategy_id, payload):
        p, c = self.both("PUT", self._path(strategy_id), {"parameters": payload["parameters"]})
        self.check(p, c)

    @rule(strategy_id=created)
    def read(self, strategy_id):
        self.check(*self.both("GET", self._path(strategy_id)))
        self.check(*self.both("GET", self._path(strategy_id, "/versions")))

    @rule(strategy_id=created)
    def delete(self, strategy_id):
        self.check(*self.both("DELETE", self._path(strategy_id)))

    @rule()
    def list_all(self):
        self.check(*self.both("GET", lambda _: "/api/strategies/"))

    def check(self, p: httpx.Response, c: httpx.Response) -> None:
        exchange = Exchange(request=Request(p.request.method, p.request.url.path),
                            primary=as_response(p), candidate=as_response(c))
        self.engine.judge(exchange)
        assert exchange.verdict in PASSING, explain(exchange)

    def teardown(self) -> None:
        self.client.close()


def test_strategy_lifecycles_stay_in_parity(targets):
    primary, _, candidate, _ = targets
    StrategyLifecycle.primary, StrategyLifecycle.candidate = primary, candidate
    StrategyLifecycle.TestCase.settings = settings(max_examples=15, stateful_step_count=8,
                                                   deadline=None, database=None)
    StrategyLifecycle.TestCase().runTest()


class AuthSessions(RuleBasedStateMachine):
    """Random login / refresh / authorised call / logout sequences, each step sent to both
    environments with that environment's own tokens, judged by the auth comparator (claims and
    lifetimes, never token strings). With `drifted` set, the token-lifetime drift must be caught
    on every answer that carries an access token, and nothing else may differ."""

    primary = candidate = ""
    drifted = False
    sessions = Bundle("sessions")

    @initialize()
    def start(self) -> None:
        self.engine = Engine()
        self.client = httpx.Client(timeout=10)

    def both(self, method: str, path: str, tokens=(None, None),
             options=lambda token: {}) -> tuple[httpx.Response, httpx.Response]:
        """`path` on each environment; `options(token)` gives the request's keyword arguments
        with that environment's token."""
        return tuple(self.client.request(method, base + path, **options(token))
                     for base, token in zip((self.primary, self.candidate), tokens, strict=True))

    def check(self, method: str, path: str, p: httpx.Response, c: httpx.Response) -> None:
        exchange = Exchange(request=Request(method, path), primary=as_response(p),
                            candidate=as_response(c))
        self.engine.judge(exchange)
        carries_token = p.status_code == 200 and "access_token" in p.json()
        if self.drifted and carries_token:
            assert exchange.verdict is Verdict.MISMATCH, explain(exchange)
            assert any("lifetime" in d.message for d in exchange.differences), explain(exchange)
        else:
            assert exchange.verdict in PASSING, explain(exchange)

    @rule(target=sessions, user=st.sampled_from(["demo", "admin"]), wrong=st.booleans())
    def login(self, user, wrong):
        form = {"username": user, "password": user + ("-wrong" if wrong else "")}
        p, c = self.both("POST", "/auth/login", options=lambda _: {"data": form})
        self.check("POST", "/auth/login", p, c)
        if p.status_code != 200:
            return multiple()
        return ((p.json()["access_token"], c.json()["access_token"]),
                (p.json()["refresh_token"], c.json()["refresh_token"]))

    @rule(target=sessions, session=sessions)
    def refresh(self, session):
        p, c = self.both("POST", "/auth/refresh", session[1],
                         lambda token: {"json": {"refresh_token": token}})
        self.check("POST", "/auth/refresh", p, c)
        if p.status_code != 200:
            return multiple()
        return (p.json()["access_token"], c.json()["access_token"]), session[1]

    @rule(session=sessions, path=st.sampled_from(["/auth/users/me", "/auth/validate",
                                                  "/auth/api-keys"]))
    def authorised_call(self, session, path):
        p, c = self.both("GET", path, session[0],
                         lambda token: {"headers": {"Authorization": f"Bearer {token}"}})
        self.check("GET", path, p, c)

    @rule(session=sessions)
    def logout(self, session):
        p, c = self.both("POST", "/auth/logout", session[1],
                         lambda token: {"params": {"refresh_token": token}})
        self.check("POST", "/auth/logout", p, c)

    def teardown(self) -> None:
        self.client.close()


AUTH_RUNS = settings(max_examples=12, stateful_step_count=8, deadline=None, database=None)


def test_login_refresh_sessions_stay_in_parity(targets):
    primary, _, candidate, _ = targets
    AuthSessions.primary, AuthSessions.candidate, AuthSessions.drifted = primary, candidate, False
    AuthSessions.TestCase.settings = AUTH_RUNS
    AuthSessions.TestCase().runTest()


def test_the_token_lifetime_drift_is_caught_on_every_token(targets, reference_factory):
    if targets[3] is None:
        pytest.skip("needs the reference app (a drifted native)")
    drifted = reference_factory("native", drifts=("token-lifetime",)).base_url
    AuthSessions.primary, AuthSessions.candidate, AuthSessions.drifted = targets[0], drifted, True
    AuthSessions.TestCase.settings = AUTH_RUNS
    AuthSessions.TestCase().runTest()
