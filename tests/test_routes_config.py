"""The route table and parity.toml: defaults, overrides, and one-line errors."""

from __future__ import annotations

import pytest

from harness.config import load_config
from harness.errors import ConfigError
from harness.lift import lift
from harness.model import Body, Request, Response


def write(tmp_path, text: str):
    path = tmp_path / "parity.toml"
    path.write_text(text)
    return path


def test_default_table_maps_every_reference_route():
    routes = load_config().routes
    expected = {
        ("GET", "/api/v1/data/ohlcv/binance/BTC-USDT/1h"): ("data", "ohlcv"),
        ("POST", "/api/backtest/start"): ("backtest", "backtest"),
        ("GET", "/api/backtest/results/123"): ("backtest", "backtest"),
        ("GET", "/api/strategies/strategies/"): ("strategy", "strategy"),
        ("PUT", "/api/strategies/strategies/7"): ("strategy", "strategy"),
        ("POST", "/auth/login"): ("auth", "auth"),
        ("POST", "/api/trades/orders"): ("trade", "order"),
        ("POST", "/mcp/paper-trading/orders"): ("mcp", "order"),
        ("GET", "/mcp/paper-trading/balances"): ("mcp", "json"),
    }
    for (method, path), (group, comparator) in expected.items():
        route = routes.match(method, path)
        assert (route.group, route.comparator) == (group, comparator), path


def test_orders_are_dry_run_and_sensitive_auth_is_never_mirrored():
    routes = load_config().routes
    order = routes.match("POST", "/api/trades/orders")
    assert order.mirror == "dry-run"
    rewritten = order.dry_run.apply(
        Request("POST", "/api/trades/orders", headers=[("x-dry-run", "false")])
    )
    assert rewritten.headers == [("X-Dry-Run", "true")]
    proof = lift(
        Response(
            200,
            [("content-type", "application/json")],
            Body.from_bytes(b'{"status": "dry_run", "order": {}}'),
        )
    )
    assert order.dry_run.proven(proof)
    assert routes.match("POST", "/auth/reset-password").mirror == "never"
    assert routes.match("DELETE", "/api/trades/orders/5").mirror == "never"


def test_unknown_routes_fall_back_by_prefix():
    route = load_config().routes.match("GET", "/api/backtest/walkforward/abc123def4567890")
    assert route.group == "backtest" and route.template == "/api/backtest/walkforward/{id}"


def test_user_file_overrides_a_default_route_and_gates(tmp_path):
    config = load_config(
        write(
            tmp_path,
            """
[gates.data]
max_mismatch_rate = 0.05

[[routes]]
method = "GET"
path = "/api/v1/data/ohlcv/{exchange}/{symbol}/{timeframe}"
group = "data"
comparator = "json"
[routes.options]
rtol = 1e-6
ignore = ["[*].volume"]
""",
        )
    )
    route = config.routes.match("GET", "/api/v1/data/ohlcv/a/b/1h")
    assert route.comparator == "json" and route.options.ignore == ("[*].volume",)
    assert config.gates["data"].max_mismatch_rate == 0.05
    assert config.gates["trade"].max_mismatch_rate == 0.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[[routes]]\nmethod = "GET"\npath = "/x"\ngroup = "data"\ncomparator = "foo"',
            "routes[0].comparator: unknown comparator 'foo' (known: auth, backtest",
        ),
        (
            '[[routes]]\nmethod = "GET"\npath = "/x"\ngroup = "data"\n[routes.options]\nrtol = -1',
            "routes[0].options.rtol: must be >= 0.0",
        ),
        (
            '[[routes]]\nmethod = "GET"\npath = "x/{y"\ngroup = "data"',
            "routes[0].path: bad template",
        ),
        (
            '[[routes]]\nmethod = "GET"\npath = "/x"\ngroup = "data"\ncolour = 1',
            "routes[0].colour: unknown key",
        ),
        (
            '[[routes]]\nmethod = "POST"\npath = "/x"\ngroup = "trade"\nmirror = "dry-run"',
            'routes[0].dry_run: mirror = "dry-run" needs a dry_run rewrite',
        ),
        (
            '[gates.data]\nmax_mismatch_rate = "high"',
            "gates.data.max_mismatch_rate: expected a number",
        ),
        ("[noise\n", "not valid TOML"),
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


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.toml")
