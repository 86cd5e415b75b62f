"""The HTML diff report: readiness per migration group, the numbers, escaping, self-containment,
bounded size and memory, and the `parity report` command."""

from __future__ import annotations

import re
import sys
from html.parser import HTMLParser
from types import ModuleType, SimpleNamespace

import orjson
import pytest
from report_data import HOSTILE_ID, scenario, write_jsonl

from harness.cli import main as parity
from harness.config import load_config
from harness.model import Exchange
from harness.report import ReportBuilder, build_report
from harness.report.aggregate import RESERVOIR, Reservoir
from harness.report.charts import MAX_POINTS
from harness.report.examples import _redactor
from harness.report.pretty import GAP, json_lines, window

DRIFTS = ("fee-rounding", "amount-precision", "token-lifetime")
GROUPS = ("data", "backtest", "strategy", "auth", "trade", "mcp")


class Page(HTMLParser):
    """Every element with its attributes, and the text of <script> elements."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self._in_script = False
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))
        self._in_script = tag == "script"
        if self._in_script:
            self.scripts.append("")

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts[-1] += data

    def find(self, tag: str | None = None, **attrs: str) -> list[dict[str, str | None]]:
        found = []
        for name, element in self.elements:
            if tag and name != tag:
                continue
            if all(element.get(k.replace("_", "-")) == v for k, v in attrs.items()):
                found.append(element)
        return found


@pytest.fixture(scope="module")
def drifted(tmp_path_factory):
    """A run with three drifts (backtest, trade, auth) and the hostile exchange."""
    tmp = tmp_path_factory.mktemp("drifted")
    data = write_jsonl(tmp / "exchanges.jsonl", scenario(1200, drifts=DRIFTS, hostile=True))
    html, js = tmp / "report.html", tmp / "summary.json"
    summary = build_report([data], html, json_out=js, title="Nightly parity")
    return SimpleNamespace(data=data, html=html.read_text(), summary=summary, json=js)


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("clean")
    data = write_jsonl(tmp / "exchanges.jsonl", scenario(900, seed=3))
    summary = build_report([data], tmp / "report.html")
    return SimpleNamespace(summary=summary, html=(tmp / "report.html").read_text())


# --- readiness ---------------------------------------------------------------------------------


def test_drifted_run_blocks_exactly_the_drifted_groups(drifted):
    groups = drifted.summary["groups"]
    assert {g for g in GROUPS if groups[g]["status"] == "not ready"} == {
        "backtest",
        "trade",
        "auth",
    }
    assert {g for g in GROUPS if groups[g]["status"] == "ready"} == {"data", "strategy", "mcp"}
    assert drifted.summary["verdict"] == "not ready"
    assert drifted.summary["blocking"] == ["backtest", "auth", "trade"]
    assert drifted.summary["headline"] == "NOT READY for cutover: blocked by backtest, auth, trade"


def test_findings_name_the_differing_paths(drifted):
    groups = drifted.summary["groups"]
    backtest = {d["path"] for d in groups["backtest"]["top_differences"]}
    assert {"results.trades[*].fee", "results.equity_curve[*]"} <= backtest
    assert groups["trade"]["top_finding"].startswith("order.amount: amount ")
    assert groups["auth"]["top_finding"] == "expires_in: token lifetime 3600 s != 1800 s"
    assert any("critical finding" in r for r in groups["auth"]["reasons"])
    assert any(r.startswith("failure rate") for r in groups["trade"]["reasons"])
    for path in ("results.trades[*].fee", "order.amount", "expires_in"):
        assert path in drifted.html


def test_all_match_run_is_ready(clean):
    groups = clean.summary["groups"]
    assert {g: groups[g]["status"] for g in GROUPS} == dict.fromkeys(GROUPS, "ready")
    assert clean.summary["verdict"] == "ready"
    assert clean.summary["headline"].startswith("READY for cutover")
    assert 'data-verdict="ready"' in clean.html


def test_untestable_group_unless_its_gate_allows_it():
    records = list(scenario(500, untestable=("mcp",)))
    builder = ReportBuilder()
    builder.add_records(records)
    mcp = builder.summary()["groups"]["mcp"]
    assert mcp["status"] == "untestable"
    assert mcp["untestable_routes"] == ["POST /mcp/tools/{tool}"]
    assert mcp["top_finding"].startswith("result.generated_at")  # the real path, not the noise
    lenient = ReportBuilder({"mcp": {"allow_untestable": True, "max_mismatch_rate": 0.01}})
    lenient.add_records(records)
    assert lenient.summary()["groups"]["mcp"]["status"] == "ready"


def test_gates_from_mapping_or_objects():
    records = list(scenario(600, drifts=("amount-precision",)))
    strict = ReportBuilder()
    strict.add_records(records)
    assert strict.summary()["groups"]["trade"]["status"] == "not ready"
    loose = ReportBuilder(
        {"trade": SimpleNamespace(max_mismatch_rate=0.5, min_exchanges=1, allow_untestable=False)}
    )
    loose.add_records(records)
    assert loose.summary()["groups"]["trade"]["status"] == "ready"
    hungry = ReportBuilder({"data": {"min_exchanges": 100_000}})
    hungry.add_records(records)
    data = hungry.summary()["groups"]["data"]
    assert data["status"] == "not ready"
    assert any("gate needs 100000" in r for r in data["reasons"])


def test_groups_without_exchanges_have_no_data():
    builder = ReportBuilder()
    builder.add_records(r for r in scenario(400) if r["group"] in ("data", "strategy"))
    summary = builder.summary()
    assert summary["groups"]["trade"]["status"] == "no data"
    assert summary["verdict"] == "ready"
    assert "no data for backtest, auth, trade, mcp" in summary["headline"]
    assert ReportBuilder().summary()["verdict"] == "no data"


def test_candidate_errors_and_skips_are_counted():
    builder = ReportBuilder()
    builder.add_records(scenario(800, candidate_errors=0.05))
    summary = builder.summary()
    totals = summary["totals"]
    assert totals["verdicts"]["candidate-error"] > 0
    assert totals["verdicts"]["skipped"] > 0
    assert totals["compared"] == totals["exchanges"] - totals["verdicts"]["skipped"]
    logout = next(r for r in summary["routes"] if r["route"] == "POST /auth/logout")
    assert logout["skip_reasons"] == {"unsafe method: not mirrored": logout["exchanges"]}
    assert logout["latency"]["candidate"]["n"] == 0


# --- the numbers -------------------------------------------------------------------------------


def _cells(page: Page, row_key: str) -> dict[str, dict[str, str]]:
    """data-k -> data-value of the cells following each row that carries `row_key`."""
    rows: dict[str, dict[str, str]] = {}
    current = None
    for tag, attrs in page.elements:
        if tag == "tr":
            current = attrs.get(row_key)
            if current is not None:
                rows[current] = {}
        elif tag == "td" and current is not None and attrs.get("data-k") and "data-value" in attrs:
            rows[current][attrs["data-k"]] = attrs["data-value"]
    return rows


def test_json_summary_numbers_equal_the_html(drifted):
    page = Page(drifted.html)
    data = orjson.loads(drifted.json.read_bytes())
    assert data["groups"] == orjson.loads(orjson.dumps(drifted.summary["groups"]))
    routes = _cells(page, "data-route")
    assert set(routes) == {r["route"] for r in data["routes"]}
    for row in data["routes"]:
        cells = routes[row["route"]]
        assert int(cells["exchanges"]) == row["exchanges"]
        for verdict, count in row["verdicts"].items():
            assert int(cells[verdict]) == count, (row["route"], verdict)
        assert float(cells["failure-rate"]) == row["failure_rate"]
    groups = _cells(page, "id")
    for name, g in data["groups"].items():
        assert page.find("tr", id=f"group-{name}")[0]["data-status"] == g["status"]
        cells = groups[f"group-{name}"]
        assert int(cells["exchanges"]) == g["exchanges"]
        assert int(cells["compared"]) == g["compared"]
        assert int(cells["failing"]) == g["failing"]
        assert float(cells["failure-rate"]) == g["failure_rate"]
    assert sum(r["exchanges"] for r in data["routes"]) == data["totals"]["exchanges"] == 1200


def test_latency_percentiles_are_exact_below_the_reservoir():
    values = [float(v) for v in range(1, 1001)]
    sample = Reservoir()
    for v in reversed(values):
        sample.add(v)
    summary = sample.summary()
    assert (summary["p50"], summary["p95"], summary["p99"]) == (500.5, 950.05, 990.01)
    assert summary["n"] == 1000 and summary["max"] == 1000.0


def test_memory_stays_bounded():
    sample = Reservoir(size=64)
    for v in range(10_000):
        sample.add(float(v))
    assert len(sample.values) == 64 and sample.count == 10_000
    builder = ReportBuilder()
    builder.add_records(scenario(3000, drifts=DRIFTS))
    for stats in builder.routes.values():
        assert len(stats.examples) <= 6
        assert len(stats.latency_primary.values) <= RESERVOIR
    assert builder.keeper.used <= builder.keeper.budget


def test_exchange_objects_count_like_their_records():
    records = list(scenario(300, drifts=DRIFTS))
    from_dicts, from_objects = ReportBuilder(), ReportBuilder()
    from_dicts.add_records(records)
    for record in records:
        from_objects.add(Exchange.from_dict(record))
    assert from_dicts.summary() == from_objects.summary()


def test_sources_mix_paths_dicts_and_exchanges(tmp_path):
    records = list(scenario(60))
    path = write_jsonl(tmp_path / "a.jsonl", records[:20])
    mixed = [str(path), *records[20:40], *(Exchange.from_dict(r) for r in records[40:])]
    summary = build_report(mixed, None, json_out=tmp_path / "s.json")
    assert summary["totals"]["exchanges"] == 60
    assert not (tmp_path / "None").exists()
    assert orjson.loads((tmp_path / "s.json").read_bytes())["totals"]["exchanges"] == 60


# --- what the page shows -----------------------------------------------------------------------


def test_differences_are_highlighted_side_by_side(drifted):
    page = Page(drifted.html)
    assert page.find("table", id="readiness")
    marked = page.find("span", **{"class": "l m-diff"})
    assert len(marked) >= 4
    assert page.find("div", **{"class": "side side-primary"})
    assert page.find("div", **{"class": "side side-candidate"})
    # the fee line of the first fee-rounding example is marked on both sides
    assert re.search(
        r'<span class="l m-diff">\s*<span class="key">&#34;fee&#34;: </span>', drifted.html
    )


def test_learned_noise_is_shown_apart(drifted):
    noise = {(n["route"], n["path"]) for n in drifted.summary["noise"]}
    assert ("GET /api/strategies/", "generated_at") in noise
    assert ("GET /api/v1/data/ohlcv/{exchange}/{symbol}/{timeframe}", "data[*][*]") in noise
    page = Page(drifted.html)
    assert page.find("table", id="noise-table")
    for n in drifted.summary["noise"]:
        assert 0 < n["rate"] <= 1


def test_equity_curves_are_drawn_where_they_differ(drifted):
    page = Page(drifted.html)
    primary = page.find("polyline", **{"class": "curve-primary"})
    candidate = page.find("polyline", **{"class": "curve-candidate"})
    assert primary and candidate
    assert "first difference [150]" in drifted.html


def test_long_equity_curves_are_downsampled(tmp_path):
    curve = [10_000.0 + i for i in range(5000)]
    other = curve[:4000] + [v + 3 for v in curve[4000:]]
    record = next(r for r in scenario(50) if r["route"].startswith("GET /api/backtest/results"))
    for side, values in (("primary", curve), ("candidate", other)):
        body = {"status": "completed", "results": {"equity_curve": values}}
        text = orjson.dumps(body).decode()
        record[side]["body"] = {"text": text, "size": len(text)}
    record["verdict"] = "mismatch"
    record["differences"] = [
        {
            "path": "results.equity_curve[4000]",
            "kind": "changed",
            "primary": 14000.0,
            "candidate": 14003.0,
            "severity": "warning",
            "message": "equity differs",
            "noise": False,
        }
    ]
    build_report([record], tmp_path / "r.html")
    page = Page((tmp_path / "r.html").read_text())
    for line in page.find("polyline"):
        assert 2 <= len(line["points"].split()) <= MAX_POINTS
    assert "first difference [4000]" in (tmp_path / "r.html").read_text()


def test_orders_are_shown_as_intent_tables(drifted):
    html = drifted.html
    assert '<table class="grid intent">' in html
    intent = html[html.index('<table class="grid intent">') :]
    intent = intent[: intent.index("</table>")]
    assert re.search(r'<tr class="m-diff"><th>amount</th>', intent)
    assert "<th>symbol</th>" in intent and "<th>side</th>" in intent
    assert "dry run" in intent


def test_filters_and_search_are_there(drifted):
    page = Page(drifted.html)
    assert page.find("select", id="f-group") and page.find("select", id="f-verdict")
    assert page.find("input", id="f-search")
    rows = [attrs for tag, attrs in page.elements if tag == "tr" and "data-count" in attrs]
    assert rows and all(r["data-filter"] == "all" and r["data-group"] in GROUPS for r in rows)


# --- safety ------------------------------------------------------------------------------------


def test_hostile_recorded_content_is_escaped(drifted):
    html = drifted.html
    page = Page(html)
    assert HOSTILE_ID in html
    assert "<script>window.__pwned" not in html
    assert "<img" not in html and "<svg onload" not in html
    assert "</textarea></script>" not in html
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in html
    # one script, ours; no element carries an event handler attribute
    assert len(page.scripts) == 1 and "__pwned" in page.scripts[0]
    assert not [a for _, attrs in page.elements for a in attrs if a.startswith("on")]


def test_report_is_self_contained(drifted):
    page = Page(drifted.html)
    for tag, attrs in page.elements:
        for name in ("src", "href", "action", "srcset", "poster", "data"):
            value = attrs.get(name)
            if value is not None and name != "data":
                assert value.startswith("#"), (tag, name, value)
        assert tag not in ("link", "iframe", "object", "embed", "img", "base")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", drifted.html)
    assert "@import" not in drifted.html and "url(" not in drifted.html
    csp = page.find("meta", http_equiv="Content-Security-Policy")[0]["content"]
    assert "default-src 'none'" in csp and "script-src 'sha256-" in csp


def test_secrets_go_through_the_store_redactor(tmp_path, monkeypatch):
    fake = ModuleType("harness.store.redact")
    fake.redact_text = lambda text: text.replace("hunter2", "redacted:sha256:f52fbd32")
    monkeypatch.setitem(sys.modules, "harness.store.redact", fake)
    _redactor.cache_clear()
    try:
        record = next(
            r for r in scenario(40, drifts=("token-lifetime",)) if r["route"] == "POST /auth/login"
        )
        record["request"]["query"] = [["password", "hunter2"]]
        record["reason"] = "token hunter2 expired"
        text = record["primary"]["body"]["text"].replace("bearer", "hunter2")
        record["primary"]["body"] = {"text": text, "size": len(text)}
        record["candidate"]["headers"].append(["x-token", "hunter2"])
        summary = build_report([record], tmp_path / "r.html", json_out=tmp_path / "s.json")
    finally:
        _redactor.cache_clear()
    html = (tmp_path / "r.html").read_text()
    assert "hunter2" not in html and "redacted:sha256:f52fbd32" in html
    assert "hunter2" not in orjson.dumps(summary).decode()


def test_file_stays_small_with_many_failing_routes_and_large_bodies(tmp_path):
    big = {"items": [{"id": k, "name": "x" * 40, "values": list(range(20))} for k in range(600)]}
    other = orjson.loads(orjson.dumps(big))
    other["items"][300]["name"] = "y"
    texts = orjson.dumps(big).decode(), orjson.dumps(other).decode()

    def records():
        for i in range(400):
            yield {
                "id": str(i),
                "route": f"GET /r{i % 80}",
                "group": "data",
                "verdict": "mismatch",
                "differences": [
                    {
                        "path": "items[300].name",
                        "kind": "changed",
                        "primary": "x",
                        "candidate": "y",
                        "severity": "warning",
                        "message": "name",
                    }
                ],
                "request": {"method": "GET", "path": f"/r{i % 80}", "body": {"text": "q" * 90_000}},
                "primary": {"status": 200, "body": {"text": texts[0]}, "latency_ms": 3.0},
                "candidate": {"status": 200, "body": {"text": texts[1]}, "latency_ms": 4.0},
            }

    build_report(records(), tmp_path / "r.html")
    assert (tmp_path / "r.html").stat().st_size < 5 * 1024 * 1024
    html = (tmp_path / "r.html").read_text()
    # each shown answer keeps its differing line, cut to the budget around it
    assert html.count('<span class="l m-diff">') >= 2 * 80
    assert "differing lines in context" in html


# --- pretty printing ---------------------------------------------------------------------------


def test_pretty_lines_mark_the_differing_path_and_below():
    body = {"results": {"trades": [{"fee": 1.0, "pnl": 2.0} for _ in range(4)], "ok": True}}
    lines = json_lines(body, {"results.trades[2].fee": "diff", "results.ok": "noise"})
    marked = [(line.label, line.text, line.mark) for line in lines if line.mark]
    assert marked == [('"fee": ', "1.0,", "diff"), ('"ok": ', "true", "noise")]
    whole = json_lines(body, {"results.trades": "diff"})
    assert sum(1 for line in whole if line.mark == "diff") == 1 + 4 * 4 + 1


def test_pretty_folds_and_thins_large_containers():
    body = {"curve": list(range(1000)), "rows": [{"v": i} for i in range(1000)]}
    lines = json_lines(body, {"rows[500].v": "diff"})
    texts = [line.text for line in lines]
    assert any(t.endswith("⟨1000 items⟩") for t in texts)  # no difference inside: folded
    assert "⋯ 495 items ⋯" in texts and "⋯ 497 items ⋯" in texts
    assert len(lines) < 40
    shown, cut = window(json_lines({"a": list(range(3000))}, {"a[2999]": "diff"}), 40)
    assert cut and any(line.mark == GAP for line in shown) and shown[-1].mark == GAP


# --- the command -------------------------------------------------------------------------------


def test_parity_report_writes_and_prints_the_headline(drifted, tmp_path, capsys):
    out, js = tmp_path / "sub" / "r.html", tmp_path / "s.json"
    code = parity(
        [
            "report",
            str(drifted.data),
            "--out",
            str(out),
            "--json",
            str(js),
            "--title",
            "Cutover review",
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0
    assert f"wrote {out}" in printed
    assert "NOT READY for cutover: blocked by backtest, auth, trade" in printed
    assert "<title>Cutover review" in out.read_text()
    assert orjson.loads(js.read_bytes())["verdict"] == "not ready"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "recordings not found"),
        (b'{"request": {}}\nnot json\n{"request": {}}\n', ":2: not a JSON line"),
        (b'garbage\n{"request": {}}\n', ":1: not a JSON line"),
        (b'{"hello": 1}\n', "none of the 1 records read is an exchange"),
    ],
)
def test_parity_report_bad_input_is_one_line_and_exit_2(tmp_path, capsys, content, message):
    source = tmp_path / "in.jsonl"
    if content is not None:
        source.write_bytes(content)
    code = parity(["report", str(source), "--out", str(tmp_path / "r.html")])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err
    assert not (tmp_path / "r.html").exists()


def test_torn_last_line_is_skipped_with_a_warning(tmp_path, capsys):
    lines = [orjson.dumps(r) for r in scenario(5)]
    source = tmp_path / "torn.jsonl"
    source.write_bytes(b"\n".join(lines[:4]) + b"\n" + lines[4][:100])
    code = parity(
        [
            "report",
            str(source),
            "--out",
            str(tmp_path / "r.html"),
            "--json",
            str(tmp_path / "s.json"),
        ]
    )
    assert code == 0
    assert "torn last line skipped" in capsys.readouterr().err
    assert orjson.loads((tmp_path / "s.json").read_bytes())["totals"]["exchanges"] == 4


def test_directories_and_gzip_segments(tmp_path):
    import gzip

    records = list(scenario(30))
    write_jsonl(tmp_path / "a.jsonl", records[:10])
    with gzip.open(tmp_path / "b.jsonl.gz", "wb") as handle:
        handle.write(b"".join(orjson.dumps(r) + b"\n" for r in records[10:]))
    summary = build_report([tmp_path], None)
    assert summary["totals"]["exchanges"] == 30


def test_report_gates_are_the_shipped_configuration():
    # One place for gates (default_config.toml): a group without its own takes [gates.default].
    builder = ReportBuilder()
    assert builder.gates.rule("trade").max_mismatch_rate == 0.0
    assert builder.gates.rule("data") == load_config(None).gates.default
    assert builder.gates.rule("data").max_mismatch_rate == 0.01
