"""The demo's data-state step against a real reference Cryptobot: the primary's databases, synced
with the sync bugs, are not ready in both groups; synced cleanly, ready; the report shows it."""

from __future__ import annotations

import io

import httpx
import pytest
from rich.console import Console

from harness.demo.data_state import REAL_ORDERS, run_data_state
from harness.processes import start_reference_app
from harness.report import write_report
from harness.report.aggregate import ReportBuilder


@pytest.fixture
def primary(tmp_path):
    app = start_reference_app("docker", data_dir=tmp_path / "primary",
                              log_path=tmp_path / "primary.log")
    yield app
    app.stop()


def test_demo_data_state_step(primary, tmp_path):
    app = primary
    with httpx.Client(base_url=app.base_url, timeout=30) as client:
        for number in range(3):
            created = client.post("/api/strategies/", json={
                "name": f"s{number}", "parameters": {"fast": number}})
            created.raise_for_status()
            client.put(f"/api/strategies/{created.json()['id']}",
                       json={"parameters": {"fast": number + 1}}).raise_for_status()
    out = io.StringIO()
    console = Console(file=out, width=200)
    drifted = run_data_state(app.base_url, tmp_path / "primary", tmp_path / "a", drifted=True,
                             console=console)
    assert drifted is not None
    assert {g: v["status"] for g, v in drifted["groups"].items()} == {
        "strategy": "not ready", "trade": "not ready"}
    orders = next(t for t in drifted["tables"] if t["table"] == "orders")
    assert orders["rows"] == {"primary": REAL_ORDERS, "candidate": REAL_ORDERS}
    assert "+3600 s in UTC" in out.getvalue() and "[id=" in out.getvalue()
    versions = next(t for t in drifted["tables"] if t["table"] == "strategy_versions")
    assert versions["counts"]["missing"] == 3

    clean = run_data_state(app.base_url, tmp_path / "primary", tmp_path / "b", drifted=False,
                           console=console)
    assert clean is not None and clean["verdict"] == "same"
    html_path = tmp_path / "r.html"
    summary = write_report(ReportBuilder(), html_path, data_state=drifted)
    html = html_path.read_text()
    assert 'id="data-state"' in html and "not ready" in html
    # A group whose data differ blocks cutover in the headline, whatever its answers said.
    assert summary["verdict"] == "not ready"
    assert summary["headline"].endswith("data differ: strategy, trade"), summary["headline"]
    assert "data differ: strategy, trade" in html
    clean_summary = write_report(ReportBuilder(), tmp_path / "c.html", data_state=clean)
    assert "data differ" not in clean_summary["headline"]
