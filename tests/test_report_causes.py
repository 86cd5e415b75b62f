"""The report names causes, not symptoms: writes that never reached the candidate behind the
reads that differ afterwards; traffic on routes the table does not know, by method and template;
the noise the secondary showed and what the rules ignore, with counts; every finding with a path;
"blocked by" apart from "untestable". Synthetic records for the rules, then the real pipeline:
three reference Cryptobot processes behind `parity shadow`."""

from __future__ import annotations

import base64
import dataclasses
from typing import Any

import httpx
import orjson
import pytest
from report_data import write_jsonl
from support import Shadow

from harness.cli import main as parity
from harness.config import load_config, route_toml
from harness.report import ReportBuilder, build_report
from harness.report.noise_seen import IGNORED, NOISE
from harness.routes import RouteTable
from harness.routes_openapi import SAVED_NAME, read_routes

JSON = [["content-type", "application/json"]]
TS = 1_714_564_800.0


def _answer(status: int, body: Any, headers: list | None = None) -> dict[str, Any]:
    text = orjson.dumps(body).decode()
    return {"status": status, "headers": [*JSON, *(headers or [])],
            "body": {"text": text, "size": len(text)}, "latency_ms": 5.0}


def _record(i: int, method: str, path: str, route: str, group: str, verdict: str, *,
            mirror: str = "mirrored", reason: str | None = None, differences: list | None = None,
            primary: dict | None = None, candidate: dict | None = None,
            secondary: dict | None = None, comparator: str = "json") -> dict[str, Any]:
    return {
        "v": 1, "id": f"ex{i:04d}", "ts": TS + i, "route": f"{method} {route}", "group": group,
        "comparator": comparator, "mirror": mirror, "session": None, "verdict": verdict,
        "reason": reason, "differences": differences or [],
        "request": {"method": method, "path": path, "query": [], "headers": [],
                    "body": {"size": 0}},
        "primary": primary or _answer(200, {}),
        "candidate": candidate if candidate is not None or verdict == "skipped" else
        _answer(200, {}),
        "secondary": secondary,
    }


def _diff(path: str, primary: Any, candidate: Any, message: str, *, noise: bool = False,
          severity: str = "warning") -> dict[str, Any]:
    return {"path": path, "kind": "changed", "primary": primary, "candidate": candidate,
            "severity": severity, "message": message, "noise": noise}


def _table_without_strategy_routes() -> RouteTable:
    """The shipped table as if it had come from a spec that misses the deployed strategy
    routes (issue 13: the table said /api/strategies/strategies/, the router /api/strategies/)."""
    return RouteTable([r for r in load_config(None).routes if r.group != "strategy"])


def _strategy_story() -> list[dict[str, Any]]:
    """A read before any write, six creates skipped (unknown route: unsafe method), then reads
    of the same resource that differ, and a read of another resource that differs too."""
    records = [_record(0, "GET", "/api/strategies/", "/api/strategies/", "strategy", "mismatch",
                       differences=[_diff("", [], {}, "type changed list → object")])]
    for i in range(1, 7):
        records.append(_record(i, "POST", "/api/strategies/", "/api/strategies/", "strategy",
                               "skipped", mirror="skipped:unsafe method POST",
                               reason="unsafe method POST"))
    for i in range(7, 10):
        records.append(_record(i, "GET", f"/api/strategies/{i}", "/api/strategies/{id}",
                               "strategy", "mismatch",
                               differences=[_diff("@status", 200, 404, "status 200 vs 404",
                                                  severity="critical")]))
    records.append(_record(10, "GET", "/api/strategies/", "/api/strategies/", "strategy",
                           "untestable", differences=[_diff("[*].name", "a", "b", "differs")]))
    records.append(_record(11, "GET", "/api/v1/data/ohlcv/binance/BTC-USDT/1h",
                           "/api/v1/data/ohlcv/{exchange}/{symbol}/{timeframe}", "data",
                           "mismatch", differences=[_diff("data[0][0]", 1, 2, "shifted")]))
    return records


def test_unmirrored_writes_are_named_as_the_cause_of_later_diverging_reads(tmp_path, capsys):
    builder = ReportBuilder(routes=_table_without_strategy_routes())
    builder.add_records(_strategy_story())
    summary = builder.summary()
    [cause] = summary["causes"]
    assert cause["message"].startswith(
        "state diverged: 6 writes to `POST /api/strategies/` not mirrored (unsafe method POST)")
    # Only the reads after the first unmirrored write are its symptoms; data is not involved.
    assert cause["reads"] == 4 and cause["resource"] == "/api/strategies"
    assert cause["read_routes"] == {"GET /api/strategies/{id}": 3, "GET /api/strategies/": 1}
    strategy = summary["groups"]["strategy"]
    assert strategy["top_finding"] == cause["message"] and strategy["causes"] == [cause["message"]]
    assert summary["groups"]["data"]["causes"] == []
    rows = {r["route"]: r for r in summary["routes"]}
    assert rows["GET /api/strategies/{id}"]["causes"] == [cause["message"]]
    # The routes the table does not know, by method and template, with counts.
    unknown = {r["route"]: r for r in summary["unknown_routes"]}
    assert unknown["POST /api/strategies/"]["exchanges"] == 6
    assert unknown["POST /api/strategies/"]["skipped"] == 6
    assert unknown["GET /api/strategies/{id}"]["exchanges"] == 3
    assert not any(r.startswith("GET /api/v1/data") for r in unknown)

    # The same through `parity report --config` (a table loaded from a file cannot drop the
    # shipped routes, so here the shipped table knows strategy routes only at their old paths).
    segment = write_jsonl(tmp_path / "rec.jsonl", _strategy_story())
    out = tmp_path / "r.html"
    assert parity(["report", str(segment), "--out", str(out), "--json",
                   str(tmp_path / "r.json")]) == 0
    printed = capsys.readouterr().out
    assert "strategy: not ready: state diverged: 6 writes to `POST /api/strategies/`" in printed
    html = out.read_text()
    assert 'id="causes-table"' in html and "state diverged: 6 writes to" in html


def test_no_cause_without_a_later_diverging_read():
    builder = ReportBuilder(routes=_table_without_strategy_routes())
    story = _strategy_story()
    builder.add_records([story[0], *story[1:7]])  # the diverging read came before the writes
    assert builder.summary()["causes"] == []


def test_every_finding_names_its_path_the_root_is_body():
    builder = ReportBuilder()
    builder.add_records(_strategy_story()[:1])
    summary = builder.summary()
    [row] = [r for r in summary["routes"] if r["group"] == "strategy"]
    assert [d["path"] for d in row["differences"]] == ["body"]
    assert summary["groups"]["strategy"]["top_finding"] == "body: type changed list → object"


def test_the_headline_separates_blocked_by_from_untestable():
    builder = ReportBuilder()
    builder.add_records([
        _record(0, "GET", "/api/backtest/results/1", "/api/backtest/results/{id}", "backtest",
                "untestable", differences=[_diff("metrics.sharpe", 1.0, 1.1, "differs")]),
        _record(1, "POST", "/auth/login", "/auth/login", "auth", "mismatch",
                differences=[_diff("access_token.claims.exp", 1, 2, "lifetime")]),
        _record(2, "GET", "/api/trades/orders", "/api/trades/orders", "trade", "match"),
    ])
    summary = builder.summary()
    assert summary["headline"] == "NOT READY for cutover: blocked by auth; untestable: backtest"
    assert summary["blocked_by"] == ["auth"] and summary["untestable"] == ["backtest"]


def _jwt(claims: dict[str, Any]) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(orjson.dumps(value)).decode().rstrip("=")

    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(claims)}.redacted:sha256:0a1b2c3d"


def _login(i: int, jti: str, exp: int, request_id: str) -> dict[str, Any]:
    return _answer(200, {"access_token": _jwt({"sub": "demo", "jti": jti, "exp": exp}),
                         "token_type": "bearer"},
                   [["date", f"Thu, 02 May 2024 10:00:{i:02d} GMT"],
                    ["x-request-id", request_id]])


def _strategy(created_at: str, name: str = "sma") -> dict[str, Any]:
    return _answer(200, {"id": 7, "name": name, "created_at": created_at})


def test_noise_the_secondary_showed_and_what_rules_ignore_are_listed_with_counts(tmp_path):
    records = []
    for i in range(4):
        records.append(_record(
            i, "POST", "/auth/login", "/auth/login", "auth", "match", comparator="auth",
            primary=_login(i, f"p{i}", 2000 + i, f"req-p{i}"),
            secondary=_login(i + 1, f"s{i}", 2001 + i, f"req-s{i}"),
            candidate=_login(i + 2, f"c{i}", 2000 + i, f"req-c{i}")))
    for i in range(4, 7):
        records.append(_record(
            i, "GET", "/api/strategies/strategies/7", "/api/strategies/strategies/{id}",
            "strategy", "match", comparator="strategy",
            primary=_strategy(f"2024-05-02T10:00:0{i}Z"),
            secondary=_strategy(f"2024-05-02T10:00:1{i}Z"),
            candidate=_strategy(f"2024-05-02T10:00:2{i}Z")))
    # A path the comparator does compare, where the copies differ: learned noise.
    records.append(_record(
        7, "GET", "/api/strategies/strategies/7", "/api/strategies/strategies/{id}", "strategy",
        "noise-only", comparator="strategy",
        primary=_strategy("2024-05-02T10:00:00Z", "a"),
        secondary=_strategy("2024-05-02T10:00:00Z", "b"),
        candidate=_strategy("2024-05-02T10:00:00Z", "c"),
        differences=[_diff("name", "a", "c", "name differs", noise=True)]))
    builder = ReportBuilder()
    builder.add_records(records)
    seen = builder.summary()["noise_observed"]
    assert seen["with_secondary"] == 8
    rows = {(r["route"], r["path"]): r for r in seen["paths"]}
    login = "POST /auth/login"
    for path in ("@headers.date", "@headers.x-request-id", "access_token.claims.jti",
                 "access_token.claims.exp"):
        assert rows[(login, path)]["secondary"] == 4, path
        assert rows[(login, path)]["handling"] == IGNORED, path
    assert rows[(login, "@headers.x-request-id")]["candidate_ignored"] == 4
    assert (login, "access_token.claims.sub") not in rows  # equal everywhere
    item = "GET /api/strategies/strategies/{id}"
    assert rows[(item, "created_at")]["secondary"] == 3
    assert rows[(item, "created_at")]["candidate_ignored"] == 3
    assert rows[(item, "created_at")]["handling"] == IGNORED
    assert rows[(item, "name")]["handling"] == NOISE and rows[(item, "name")]["secondary"] == 1

    segment = write_jsonl(tmp_path / "rec.jsonl", records)
    html_path = tmp_path / "r.html"
    build_report([segment], html_path)
    html = html_path.read_text()
    assert 'id="observed-noise-table"' in html and "access_token.claims.jti" in html
    assert "No noise was learned" not in html


def test_without_a_secondary_the_report_says_so_and_still_lists_what_rules_ignore(tmp_path):
    builder = ReportBuilder()
    builder.add_records(_strategy_story()[7:10])
    assert builder.summary()["noise_observed"] == {"with_secondary": 0, "paths": [],
                                                   "ignored_by_rule": 0, "learned": 0}
    records = [_record(i, "GET", "/api/strategies/strategies/7",
                       "/api/strategies/strategies/{id}", "strategy", "match",
                       comparator="strategy", primary=_strategy(f"2024-05-02T10:00:0{i}Z"),
                       candidate=_strategy(f"2024-05-02T10:00:1{i}Z")) for i in range(3)]
    html_path = tmp_path / "r.html"
    summary = build_report([write_jsonl(tmp_path / "rec.jsonl", records)], html_path)
    [row] = summary["noise_observed"]["paths"]
    assert (row["path"], row["handling"], row["candidate_ignored"], row["secondary"]) == (
        "created_at", IGNORED, 3, 0)
    html = html_path.read_text()
    assert "No secondary answer was recorded, so no noise could be learned" in html
    assert "No noise was learned" not in html


# --- the real pipeline --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def apps(reference_factory):
    """Primary and secondary (Docker flavour) and a clean candidate (native, no drift)."""
    started = [reference_factory(f, wait=False) for f in ("docker", "docker", "native")]
    for app in started:
        app.wait_healthy()
    return started


def _strategy_routes(url: str) -> tuple[str, str]:
    """The collection and item templates of the strategy routes the running app serves."""
    routes = read_routes([url])
    collection = next(r.template for r in routes
                      if r.method == "POST" and r.template.startswith("/api/strategies")
                      and "{" not in r.template)
    item = next(r.template for r in routes if r.method == "GET"
                and r.template.startswith(collection) and r.template.count("{") == 1
                and r.template.endswith("}"))
    return collection, item


def test_through_the_shadow_the_report_names_the_writes_that_were_not_mirrored(apps, tmp_path):
    """Issue 13's strategy story on real processes: the writes reach only the primary because
    the table does not declare their route (safe methods only, as for any unknown route)."""
    primary, secondary, candidate = apps
    collection, item = _strategy_routes(primary.base_url)
    create = load_config(None).routes.match("POST", collection)
    toml = tmp_path / "parity.toml"
    toml.write_text(route_toml(dataclasses.replace(create, template=collection, mirror="safe")))
    shadow = Shadow(tmp_path, primary.base_url, candidate.base_url,
                    "--secondary", secondary.base_url, "--config", str(toml))
    try:
        with httpx.Client(base_url=shadow.url, timeout=30) as client:
            token = client.post("/auth/login", data={"username": "demo", "password": "demo"})
            auth = {"Authorization": f"Bearer {token.json()['access_token']}"}
            ids = []
            for n in range(6):
                created = client.post(collection, headers=auth,
                                      json={"name": f"s{n}", "parameters": {"fast": 5}})
                assert created.status_code == 201, created.text
                ids.append(created.json()["id"])
            for strategy_id in ids[:3]:
                path = item.replace(item[item.index("{"):item.index("}") + 1], str(strategy_id))
                assert client.get(path, headers=auth).status_code == 200
            assert client.get(collection, headers=auth).status_code == 200
    finally:
        records = shadow.stop()
    skipped = [r for r in records if r["verdict"] == "skipped"]
    assert [r["mirror"] for r in skipped] == ["skipped:unsafe method POST"] * 6
    assert (shadow.recordings / SAVED_NAME).is_file()  # the primary's routes, for the report

    # The report judges the recordings against a table that misses the strategy routes.
    config = dataclasses.replace(load_config(None), routes=_table_without_strategy_routes())
    summary = build_report([shadow.recordings], tmp_path / "r.html", config=config)
    causes = [c for c in summary["causes"] if c["group"] == "strategy"]
    assert causes, summary["groups"]["strategy"]
    assert causes[0]["message"].startswith(
        f"state diverged: 6 writes to `POST {collection}` not mirrored (unsafe method POST)")
    assert causes[0]["reads"] >= 3  # the item reads (200 vs 404); the list may be untestable
    assert summary["groups"]["strategy"]["top_finding"] == causes[0]["message"]
    unknown = {r["route"]: r for r in summary["unknown_routes"]}
    assert unknown[f"POST {collection}"]["skipped"] == 6
    assert unknown[f"GET {item}"] == {"route": f"GET {item}", "exchanges": 3, "skipped": 0,
                                      "compared": 3, "in_spec": True}  # the spec's template
    # The secondary answered: the report lists what it differed at, e.g. the per-request id
    # header every copy sets, which no rule compares.
    seen = summary["noise_observed"]
    assert seen["with_secondary"] >= 4
    request_ids = [r for r in seen["paths"] if r["path"] == "@headers.x-request-id"]
    assert request_ids and all(r["handling"] == IGNORED for r in request_ids)
    html = (tmp_path / "r.html").read_text()
    assert "No noise was learned" not in html and "state diverged: 6 writes" in html


def test_parity_routes_writes_a_table_the_config_loads(apps, tmp_path, capsys):
    primary = apps[0]
    out = tmp_path / "parity.toml"
    assert parity(["routes", "--from", primary.base_url, "--out", str(out)]) == 0
    config = load_config(out)
    live = read_routes([primary.base_url])
    collection, _ = _strategy_routes(primary.base_url)
    for spec in live:
        route = config.routes.match(spec.method, spec.template.replace("{", "").replace("}", ""))
        assert route in config.routes.routes, spec.name  # every live route is declared
        if spec.method not in ("GET", "HEAD", "OPTIONS"):
            assert route.mirror == "never", spec.name  # until the user decides
    strategy_create = config.routes.match("POST", collection)
    assert (strategy_create.group, strategy_create.comparator) == ("strategy", "strategy")
    login = config.routes.match("POST", "/auth/login")
    assert (login.comparator, login.correlate) == ("auth", ("access_token", "refresh_token"))
    ohlcv = config.routes.match("GET", "/api/v1/data/ohlcv/binance/BTC-USDT/1h")
    assert ohlcv.comparator == "ohlcv" and ohlcv.ages
    text = out.read_text()
    assert "# Unsafe: not mirrored until you decide" in text
    # An existing file is kept unless --force; a service without a spec is one line, exit 2.
    assert parity(["routes", "--from", primary.base_url, "--out", str(out)]) == 2
    assert parity(["routes", "--from", primary.base_url + "/nothing-here", "--timeout", "5"]) == 2
    err = capsys.readouterr().err
    assert "exists (use --force" in err and "HTTP 404" in err


def test_the_replay_summary_names_routes_the_table_does_not_know(apps, tmp_path, capsys):
    """`parity replay` prints the unknown routes by method and template with counts, and its
    JSON summary lists them (the report's own rows)."""
    primary, _, candidate = apps
    records = []
    for i in range(3):
        path = f"/api/v9/widgets/{1000 + i}"
        answer = httpx.get(primary.base_url + path)
        records.append({**_record(i, "GET", path, "/api/v9/widgets/{id}", "other", "match"),
                        "primary": {"status": answer.status_code, "headers": JSON,
                                    "body": {"text": answer.text, "size": len(answer.text)},
                                    "latency_ms": 1.0},
                        "candidate": None, "verdict": None})
    segment = write_jsonl(tmp_path / "rec.jsonl", records)
    summary_path = tmp_path / "s.json"
    code = parity(["replay", str(segment), "--candidate", candidate.base_url, "--no-progress",
                   "--json", str(summary_path)])
    assert code in (0, 1)
    printed = capsys.readouterr().out
    assert "routes the route table does not know (1)" in printed
    assert "GET /api/v9/widgets/{id}" in printed and "3 exchanges" in printed
    summary = orjson.loads(summary_path.read_bytes())
    assert [(r["route"], r["exchanges"]) for r in summary["unknown_routes"]] == [
        ("GET /api/v9/widgets/{id}", 3)]


def test_a_gate_status_the_report_does_not_know_is_named_never_counted_ready():
    from harness.report.aggregate import _headline

    groups = {"data": {"status": "ready"}, "trade": {"status": "skipped by policy"},
              "mcp": {"status": "no data"}}
    assert _headline(groups) == (
        "ready", "READY for cutover: data (skipped by policy for trade; no data for mcp)", [])
    groups["trade"]["status"] = "untestable"
    assert _headline(groups)[1] == "NOT READY for cutover: untestable: trade"
