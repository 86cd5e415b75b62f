"""`parity demo` end to end with real processes: the default drifts are caught in exactly their
groups, and a drift-free candidate is ready everywhere. Coverage holds under the wrong candidate:
at least 95 % of the requests the proxy answered are compared, none is abandoned, and the
outcomes in the summary line and the report add up to the requests answered."""

from __future__ import annotations

import orjson
from rich.console import Console

from harness.demo.run import DemoOptions, edge_requests, print_summary, run_demo
from harness.shadow import counters as c


def statuses(result) -> dict[str, str]:
    return {group: gate.status for group, (gate, _) in result.groups.items()}


def test_default_drifts_are_caught_in_their_groups_only(tmp_path):
    result = run_demo(DemoOptions(out=tmp_path / "demo.html", sessions=2, edge_requests=10,
                                  keep_recordings=tmp_path / "rec"), Console(quiet=True))
    assert statuses(result) == {"data": "not ready", "backtest": "not ready",
                                "strategy": "ready", "auth": "not ready", "trade": "not ready",
                                "mcp": "ready"}
    findings = {g: " ".join(gate.reasons) for g, (gate, _) in result.groups.items()}
    assert "candles shifted by +1h" in findings["data"]
    assert "access token lifetime 1800 s vs 900 s" in findings["auth"]
    assert "order.amount" in findings["trade"]
    assert "profit" in findings["backtest"]
    assert result.client_errors == []
    html = (tmp_path / "demo.html").read_text()
    assert "NOT READY" in html
    assert list((tmp_path / "rec").glob("shadow-*.jsonl"))

    counts, answered = result.counts, result.answered
    assert answered >= result.requests  # the clients' requests plus the launcher's health checks
    assert sum(counts[key] for key, _ in c.OUTCOMES) == answered, counts
    assert counts[c.ABANDONED] == 0 and counts[c.DROPPED] == 0, counts
    assert counts[c.COMPARED] >= 0.95 * answered, counts
    console = Console(record=True, width=200)
    print_summary(result, console)
    line = next(x for x in console.export_text().splitlines() if x.startswith("shadow proxy:"))
    assert line.startswith(f"shadow proxy: {answered} requests answered: compared "
                           f"{counts[c.COMPARED]}, ") and "in flight" not in line, line
    section = html[html.index('id="not-mirrored"'):]
    section = section[:section.index("</section>")]
    for key, _ in (*c.OUTCOMES, (c.ANSWERED, "")):
        assert f'data-k="{key}" data-value="{counts[key]}"' in section, key


def test_no_drift_means_every_group_ready(tmp_path):
    result = run_demo(DemoOptions(out=tmp_path / "demo.html", drifts=(), sessions=2,
                                  edge_requests=10), Console(quiet=True))
    assert set(statuses(result).values()) == {"ready"}, statuses(result)


def test_the_demos_edge_orders_are_distinct_orders():
    """hypothesis draws `prop-000000000000` again and again; the proxy takes a repeated
    client_order_id for a retry and never sends it twice, so the demo gives each edge order its
    own id (else a dozen of them were 'skipped by policy' instead of compared)."""
    ids = [orjson.loads(r.body.text)["client_order_id"] for r in edge_requests(80, seed=7)
           if r.method == "POST" and r.body.text and "client_order_id" in r.body.text]
    assert len(ids) > 10 and len(set(ids)) == len(ids)
