"""Routes from OpenAPI specs: several services' specs (files here; live services in
tests/test_report_causes.py) become one parity.toml that loads; bad specs are one line."""

from __future__ import annotations

import orjson
import pytest

from harness.cli import main as parity
from harness.config import load_config
from harness.errors import UserError
from harness.routes_openapi import (
    declared_route,
    fetch_spec,
    read_routes,
    save_routes,
    saved_routes,
    shape,
    spec_routes,
)

STRATEGY = {"openapi": "3.1.0", "info": {"title": "Strategy Service"}, "paths": {
    "/api/strategies/": {"get": {}, "post": {}},
    "/api/strategies/{id}": {"get": {}, "put": {}, "delete": {}},
    "/api/strategies/{id}/activate": {"post": {}},
    "/health": {"get": {}},
}}
TRADE = {"openapi": "3.1.0", "info": {"title": "Trade"}, "servers": [{"url": "/api/trades"}],
         "paths": {"/orders": {"post": {}}, "/orders/{order_id}": {"get": {}, "delete": {}},
                   "/health": {"get": {}}}}


def _write(tmp_path, name: str, spec: dict) -> str:
    path = tmp_path / name
    path.write_bytes(orjson.dumps(spec))
    return str(path)


def test_a_servers_prefix_is_applied_and_duplicates_across_specs_merge(tmp_path):
    trade = spec_routes(TRADE, "trade")
    assert {r.name for r in trade} == {
        "POST /api/trades/orders", "GET /api/trades/orders/{order_id}",
        "DELETE /api/trades/orders/{order_id}", "GET /api/trades/health"}
    routes = read_routes([_write(tmp_path, "s.json", STRATEGY),
                          _write(tmp_path, "s2.json", STRATEGY)])
    assert len(routes) == 7
    assert shape("/api/strategies/{id}/") == shape("/api/strategies/{strategy_id}")


def test_parity_routes_from_several_specs_writes_a_table_that_loads(tmp_path, capsys):
    out = tmp_path / "parity.toml"
    assert parity(["routes", "--from", _write(tmp_path, "strategy.json", STRATEGY),
                   "--from", _write(tmp_path, "trade.json", TRADE), "--out", str(out)]) == 0
    config = load_config(out)
    create = config.routes.match("POST", "/api/strategies/")
    # The default table's comparator where it declares the path, else the generic one.
    default = declared_route(load_config(None).routes, "POST", "/api/strategies/")
    assert (create.template, create.group, create.comparator, create.mirror) == (
        "/api/strategies/", "strategy", default.comparator if default else "json", "never")
    assert config.routes.match("GET", "/api/strategies/12").mirror == "safe"
    order = config.routes.match("POST", "/api/trades/orders")
    assert (order.group, order.comparator, order.mirror) == ("trade", "order", "never")
    assert "the default table's policy: \"dry-run\"" in out.read_text()
    assert "wrote" in capsys.readouterr().err


@pytest.mark.parametrize(("content", "message"), [
    (b"not json", "not JSON"),
    (b'{"openapi": "3.1.0"}', "not an OpenAPI document"),
])
def test_bad_specs_are_one_line(tmp_path, content, message):
    path = tmp_path / "spec.json"
    path.write_bytes(content)
    with pytest.raises(UserError, match=message):
        fetch_spec(str(path))
    with pytest.raises(UserError, match="cannot read it as a file"):
        fetch_spec(str(tmp_path / "missing.json"))


def test_saved_routes_are_never_rewritten(tmp_path):
    routes = spec_routes(STRATEGY, "strategy")
    first = save_routes(tmp_path, routes, "http://primary")
    before = first.read_bytes()
    assert save_routes(tmp_path, routes, "http://primary") == first  # the same: left alone
    assert first.read_bytes() == before
    redeployed = save_routes(tmp_path, routes[:2], "http://primary")
    assert redeployed != first and first.read_bytes() == before
    assert {r.name for r in saved_routes([tmp_path])} == {r.name for r in routes}
