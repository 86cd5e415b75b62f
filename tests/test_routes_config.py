"""The route table and parity.toml: defaults, mirror policies, dry-run rewrites, overrides, and
one-line errors."""

from __future__ import annotations

import time
import tomllib
from importlib import resources

import pytest

from harness.config import GateRule, build_config, load_config, route_toml
from harness.diff import base
from harness.diff.lift import lift
from harness.errors import ConfigError
from harness.model import Body, Request, Response
from harness.routes import RouteTable, guess_group

DEFAULTS = load_config()

# Every operation of the real services' OpenAPI specs (/work/shared/cryptobot-api) and of the
# reference Cryptobot, with a concrete path, the group and the mirror policy expected.
SPEC_ROUTES = [
    ("GET", "/api/v1/data/ohlcv/binance/BTC-USDT/1h", "data", "ohlcv", "safe"),
    ("POST", "/api/backtest/start", "backtest", "backtest", "always"),
    ("POST", "/api/backtest/optimize", "backtest", "backtest", "always"),
    ("POST", "/api/backtest/walkforward", "backtest", "backtest", "always"),
    ("GET", "/api/backtest/status/17", "backtest", "backtest", "safe"),
    ("GET", "/api/backtest/results/17", "backtest", "backtest", "safe"),
    ("GET", "/api/backtest/performance/17", "backtest", "backtest", "safe"),
    ("GET", "/api/strategies/", "strategy", "strategy", "safe"),
    ("POST", "/api/strategies/", "strategy", "strategy", "always"),
    ("GET", "/api/strategies/5", "strategy", "strategy", "safe"),
    ("PUT", "/api/strategies/5", "strategy", "strategy", "always"),
    ("DELETE", "/api/strategies/5", "strategy", "strategy", "always"),
    ("POST", "/api/strategies/5/activate", "strategy", "strategy", "always"),
    ("POST", "/api/strategies/5/deactivate", "strategy", "strategy", "always"),
    ("GET", "/api/strategies/5/versions", "strategy", "strategy", "safe"),
    ("POST", "/auth/login", "auth", "auth", "always"),
    ("POST", "/auth/refresh", "auth", "auth", "always"),
    ("POST", "/auth/logout", "auth", "auth", "always"),
    ("GET", "/auth/validate", "auth", "auth", "safe"),
    ("POST", "/auth/mfa/verify-login", "auth", "auth", "never"),
    ("POST", "/auth/mfa/verify-backup", "auth", "auth", "never"),
    ("POST", "/auth/request-reset", "auth", "auth", "never"),
    ("POST", "/auth/reset-password", "auth", "auth", "never"),
    ("POST", "/auth/change-password", "auth", "auth", "never"),
    ("GET", "/auth/api-keys", "auth", "auth", "safe"),
    ("POST", "/auth/api-keys", "auth", "auth", "always"),
    ("DELETE", "/auth/api-keys/k1", "auth", "auth", "always"),
    ("POST", "/auth/mfa/setup", "auth", "auth", "never"),
    ("POST", "/auth/mfa/verify", "auth", "auth", "never"),
    ("GET", "/auth/mfa/backup-codes", "auth", "auth", "never"),
    ("GET", "/auth/mfa/status", "auth", "auth", "safe"),
    ("POST", "/auth/mfa/enable", "auth", "auth", "never"),
    ("GET", "/auth/users", "auth", "auth", "safe"),
    ("POST", "/auth/users", "auth", "auth", "never"),
    ("GET", "/auth/users/me", "auth", "auth", "safe"),
    ("GET", "/auth/users/3", "auth", "auth", "safe"),
    ("PUT", "/auth/users/3", "auth", "auth", "never"),
    ("DELETE", "/auth/users/3", "auth", "auth", "never"),
    ("GET", "/admin/admin/sessions", "auth", "auth", "safe"),
    ("POST", "/admin/admin/sessions/terminate", "auth", "auth", "never"),
    ("POST", "/admin/admin/sessions/suspicious", "auth", "auth", "never"),
    ("GET", "/api-keys/api-keys", "auth", "auth", "safe"),
    ("POST", "/api-keys/api-keys", "auth", "auth", "never"),
    ("POST", "/api-keys/api-keys/rotate", "auth", "auth", "never"),
    ("POST", "/api-keys/api-keys/revoke", "auth", "auth", "never"),
    ("POST", "/api-keys/api-keys/emergency-revoke", "auth", "auth", "never"),
    ("GET", "/api-keys/api-keys/history/binance", "auth", "auth", "safe"),
    ("GET", "/api-keys/api-keys/expiring", "auth", "auth", "safe"),
    ("GET", "/api-keys/api-keys/k1", "auth", "auth", "safe"),
    ("POST", "/api-keys/api-keys/validate", "auth", "auth", "never"),
    ("POST", "/api/trades/orders", "trade", "order", "dry-run"),
    ("GET", "/api/trades/orders", "trade", "json", "never"),
    ("GET", "/api/trades/orders/o-1", "trade", "order", "never"),
    ("DELETE", "/api/trades/orders/o-1", "trade", "order", "never"),
    ("GET", "/api/v1/settings/dry_run", "trade", "json", "never"),
    ("PUT", "/api/v1/settings/dry_run", "trade", "json", "never"),
    ("GET", "/mcp/paper-trading/balances", "mcp", "json", "safe"),
    ("POST", "/mcp/paper-trading/orders", "mcp", "order", "dry-run"),
    ("GET", "/mcp/paper-trading/orders/o-1", "mcp", "order", "never"),
    ("GET", "/health", "other", "json", "safe"),
    ("GET", "/", "other", "json", "safe"),
]


def write(tmp_path, text: str):
    path = tmp_path / "parity.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(("method", "path", "group", "comparator", "mirror"), SPEC_ROUTES)
def test_every_cryptobot_route_has_a_declared_entry(method, path, group, comparator, mirror):
    route = DEFAULTS.routes.match(method, path)
    assert route in DEFAULTS.routes.routes, f"{method} {path} fell to the catch-all"
    assert (route.group, route.comparator, route.mirror) == (group, comparator, mirror)


def test_routes_carry_correlation_ages_and_settling():
    routes = DEFAULTS.routes
    assert routes.match("POST", "/auth/login").correlate == ("access_token", "refresh_token")
    assert "order.id" in routes.match("POST", "/api/trades/orders").correlate
    assert routes.match("GET", "/api/v1/data/ohlcv/a/b/1h").ages
    assert routes.match("GET", "/mcp/paper-trading/balances").ages
    assert routes.match("GET", "/api/backtest/results/9").settle_s > 0
    assert routes.match("GET", "/api/backtest/results/9").name == "GET /api/backtest/results/{id}"


def test_a_precondition_reads_its_fields_with_the_difference_path_grammar():
    from harness.diff.values import show
    from harness.routes import Precondition

    nested = Precondition("/s", {"mode.dry_run": True, "sides[1].on": 1})
    assert nested.unmet(200, {"mode": {"dry_run": True}, "sides": [{}, {"on": 1}]}) is None
    assert nested.unmet(200, {"mode": {"dry_run": "yes"}, "sides": [{}, {"on": 1}]}) == (
        'GET /s answered mode.dry_run = "yes"')
    assert nested.unmet(200, {"mode": {"dry_run": True}, "sides": [{"on": 1}]}) == (
        "GET /s answered no sides[1].on")
    long = nested.unmet(200, {"mode": {"dry_run": "x" * 200}, "sides": []})
    # Shown as every finding shows a value: shortened, in the one format.
    assert long == f"GET /s answered mode.dry_run = {show('x' * 200)}" and len(long) < 120


def test_orders_go_only_to_sides_in_dry_run_mode_and_each_answer_must_prove_it():
    trade = DEFAULTS.routes.match("POST", "/api/trades/orders")
    # The real trade service reads no dry-run header and answers a dry run like any order: no
    # rewrite, no body proof; its switch is the precondition and the check after each answer.
    assert trade.dry_run is None
    assert trade.precondition.path == "/api/v1/settings/dry_run"
    assert trade.precondition.expect == {"dry_run": True}
    assert trade.precondition.unmet(200, {"dry_run": True}) is None
    assert "dry_run = false" in trade.precondition.unmet(200, {"dry_run": False})
    assert "dry_run = 1" in trade.precondition.unmet(200, {"dry_run": 1})
    assert "no dry_run" in trade.precondition.unmet(200, ["dry_run"])
    assert "HTTP 404" in trade.precondition.unmet(404, {"dry_run": True})
    assert "require_dry_run" not in trade.options.extra  # the proof is declared once
    with pytest.raises(ConfigError, match=r"routes\[0\]\.options\.extra\.require_dry_run: "
                                          r"no longer read: a dry-run proof is declared once"):
        build_config({}, "parity.toml", {"routes": [{
            "method": "POST", "path": "/o", "group": "trade", "comparator": "order",
            "options": {"extra": {"require_dry_run": True}}}]})
    order = DEFAULTS.routes.match("POST", "/mcp/paper-trading/orders")
    request = Request("POST", "/api/trades/orders", query=[("a", "1")],
                      headers=[("x-dry-run", "false"), ("accept", "*/*")],
                      body=Body.from_bytes(b'{"amount": 1}'))
    rewritten = order.dry_run.apply(request)
    assert rewritten is not request and request.headers[0] == ("x-dry-run", "false")
    assert rewritten.headers == [("accept", "*/*"), ("X-Dry-Run", "true")]
    assert rewritten.query == [("a", "1")] and rewritten.body.raw == b'{"amount": 1}'

    def answer(body: bytes):
        return lift(Response(200, [("content-type", "application/json")],
                             Body.from_bytes(body)))

    assert order.dry_run.proven(answer(b'{"status": "dry_run", "order": {}}'))
    assert not order.dry_run.proven(answer(b'{"status": "filled", "order": {}}'))
    assert not order.dry_run.proven(answer(b"[]"))


def test_a_dry_run_rewrite_can_set_body_fields_and_query_parameters(tmp_path):
    config = load_config(write(tmp_path, """
[[routes]]
method = "POST"
path = "/mcp/paper-trading/orders"
group = "mcp"
comparator = "order"
mirror = "dry-run"
[routes.dry_run]
query = { dry = "1" }
body = { dry_run = true }
proof_path = "order.mode"
proof_value = "paper"
"""))
    rewrite = config.routes.match("POST", "/mcp/paper-trading/orders").dry_run
    out = rewrite.apply(Request("POST", "/x", body=Body.from_bytes(b'{"amount": 2}')))
    assert out.query == [("dry", "1")]
    assert out.body.raw == b'{"amount":2,"dry_run":true}'
    proof = lift(Response(200, [("content-type", "application/json")],
                          Body.from_bytes(b'{"order": {"mode": "paper"}}')))
    assert rewrite.proven(proof)


@pytest.mark.parametrize(
    ("path", "group"),
    [
        ("/api/v1/data/tickers", "data"),
        ("/api/backtest/walkforward/abc", "backtest"),
        ("/api/strategies/5/performance", "strategy"),
        ("/auth/sessions", "auth"),
        ("/api/trades/positions", "trade"),
        ("/api/v1/settings/risk", "trade"),
        ("/mcp/tools/quote", "mcp"),
        ("/metrics", "other"),
    ],
)
def test_unknown_routes_fall_back_by_prefix(path, group):
    route = DEFAULTS.routes.match("GET", path)
    assert (route.group, route.comparator, route.mirror) == (group, "json", "safe")
    assert guess_group(path) == group


def test_catch_all_template_generalises_identifiers():
    route = DEFAULTS.routes.match("GET", "/api/backtest/walkforward/abc123def4567890")
    assert route.template == "/api/backtest/walkforward/{id}"
    assert DEFAULTS.routes.match("GET", "/x/42/y").name == "GET /x/{id}/y"


def test_matching_is_fast_and_cached():
    routes = RouteTable(list(DEFAULTS.routes))
    paths = [f"/api/backtest/results/{i}" for i in range(5_000)]
    started = time.perf_counter()
    for path in paths:
        routes.match("GET", path)
    cold = time.perf_counter() - started
    assert cold < 1.0  # ≥ 5,000 uncached matches a second, even on a busy machine
    assert routes.match("GET", paths[0]) is routes.match("GET", paths[0])


def test_gates_and_noise_defaults():
    gates = DEFAULTS.gates
    assert gates["trade"] == GateRule(0.0, 1, False) and gates["auth"].max_mismatch_rate == 0.0
    assert all(gates[g].max_mismatch_rate == 0.01 for g in ("data", "backtest", "strategy"))
    assert DEFAULTS.noise.relative_threshold == 0.20
    assert DEFAULTS.noise.absolute_threshold == 0.0003
    assert DEFAULTS.shadow.workers >= 1 and 0 < DEFAULTS.shadow.sample <= 1


def test_user_file_overrides_a_default_route_and_extends_the_table(tmp_path):
    config = load_config(write(tmp_path, """
[gates.data]
max_mismatch_rate = 0.05

[shadow]
workers = 4

[[routes]]
method = "GET"
path = "/api/v1/data/ohlcv/{exchange}/{symbol}/{timeframe}"
group = "data"
comparator = "json"
[routes.options]
rtol = 1e-6
ignore = ["[*].volume"]

[[routes]]
method = "get"
path = "/api/v1/data/tickers/{symbol}"
group = "data"
"""))
    route = config.routes.match("GET", "/api/v1/data/ohlcv/a/b/1h")
    assert route.comparator == "json" and route.options.ignore == ("[*].volume",)
    assert route.options.rtol == 1e-6
    assert len(config.routes) == len(DEFAULTS.routes) + 1
    assert config.routes.match("GET", "/api/v1/data/tickers/BTC").name == (
        "GET /api/v1/data/tickers/{symbol}")
    assert config.gates["data"].max_mismatch_rate == 0.05
    assert config.gates["trade"].max_mismatch_rate == 0.0
    assert config.shadow.workers == 4 and config.shadow.queue_size == DEFAULTS.shadow.queue_size


def test_comparator_names_are_checked_against_the_registry_at_load_time(tmp_path, monkeypatch):
    text = '[[routes]]\nmethod = "GET"\npath = "/x"\ngroup = "other"\ncomparator = "mine"\n'
    with pytest.raises(ConfigError, match="unknown comparator 'mine'"):
        load_config(write(tmp_path, text))
    monkeypatch.setitem(base._REGISTRY, "mine", lambda p, c, o: [])
    assert load_config(write(tmp_path, text)).routes.match("GET", "/x").comparator == "mine"


def test_every_default_route_survives_a_round_trip_through_toml():
    defaults = tomllib.loads(
        resources.files("harness").joinpath("default_config.toml").read_text()
    )
    text = "\n".join(route_toml(route) for route in DEFAULTS.routes)
    again = build_config(defaults, "<export>", tomllib.loads(text))
    assert list(again.routes) == list(DEFAULTS.routes)


ROUTE = '[[routes]]\nmethod = "GET"\npath = "/x"\ngroup = "data"\n'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (ROUTE + 'comparator = "foo"',
         "routes[0].comparator: unknown comparator 'foo' (known: auth, backtest, json, ohlcv, "
         "order, strategy)"),
        (ROUTE + "[routes.options]\nrtol = -1", "routes[0].options.rtol: must be >= 0.0, got -1"),
        (ROUTE + '[routes.options]\natol = "tiny"', "routes[0].options.atol: expected a number"),
        (ROUTE + "[routes.options]\nrtol = inf", "routes[0].options.rtol: expected a number"),
        (ROUTE + '[routes.options]\nignore = "id"',
         "routes[0].options.ignore: expected a list of strings"),
        ('[[routes]]\nmethod = "GET"\npath = "x/{y"\ngroup = "data"',
         "routes[0].path: bad template 'x/{y': must start with /"),
        ('[[routes]]\nmethod = "GET"\npath = "/x/{y"\ngroup = "data"',
         "routes[0].path: bad template '/x/{y': bad parameter or unbalanced braces"),
        ('[[routes]]\nmethod = "GET"\npath = "/x"\ngroup = "money"',
         "routes[0].group: unknown group 'money' (known: data, backtest, strategy, auth, trade, "
         "mcp, other)"),
        (ROUTE + 'mirror = "sometimes"', "routes[0].mirror: unknown mirror policy 'sometimes'"),
        ('[[routes]]\nmethod = "FETCH"\npath = "/x"\ngroup = "data"',
         "routes[0].method: unknown method 'FETCH'"),
        (ROUTE + "colour = 1", "routes[0].colour: unknown key"),
        ('[[routes]]\nmethod = "GET"\ngroup = "data"', "routes[0]: needs method and path"),
        ('[[routes]]\nmethod = "POST"\npath = "/x"\ngroup = "trade"\nmirror = "dry-run"',
         'routes[0].dry_run: mirror = "dry-run" needs a dry_run rewrite'),
        ('[gates.data]\nmax_mismatch_rate = "high"',
         "gates.data.max_mismatch_rate: 'high' is not a number"),
        ("[gates.data]\nmax_mismatch_rate = 2", "gates.data.max_mismatch_rate: must be between"),
        ("[gates.money]\nmax_mismatch_rate = 0", "gates.money: unknown key"),
        ("[shadow]\nworkers = 0", "shadow.workers: must be at least 1, got 0"),
        ("[shadow]\nsample = 1.5", "shadow.sample: must be between 0 and 1, got 1.5"),
        ("[shadow]\nthreads = 2", "shadow.threads: unknown key"),
        ("[noise]\nrelative_threshold = -0.1", "noise.relative_threshold: must be between"),
        ("[noise\n", "not valid TOML (Expected ']' at the end of a table declaration "
                     "(at line 1, column 7))"),
        ("[surprise]\n", "surprise: unknown key"),
    ],
)
def test_bad_files_give_one_line_naming_file_key_and_reason(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(str(path) + ": ")
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_errors_name_the_users_route_index(tmp_path):
    text = (ROUTE + "\n") * 3 + '[[routes]]\nmethod = "GET"\npath = "/y"\ngroup = "data"\n' \
        'comparator = "foo"\n'
    with pytest.raises(ConfigError, match=r"routes\[3\]\.comparator"):
        load_config(write(tmp_path, text))


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.toml")
