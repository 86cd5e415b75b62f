"""`parity demo` end to end with real processes: the default drifts are caught in exactly their
groups, and a drift-free candidate is ready everywhere."""

from __future__ import annotations

from rich.console import Console

from harness.demo.run import DemoOptions, run_demo


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


def test_no_drift_means_every_group_ready(tmp_path):
    result = run_demo(DemoOptions(out=tmp_path / "demo.html", drifts=(), sessions=2,
                                  edge_requests=10), Console(quiet=True))
    assert set(statuses(result).values()) == {"ready"}, statuses(result)
