"""The metrics' shipped files and their parts without a Prometheus server: promtool on the rules
(checked and unit-tested) and the scrape config, the Grafana dashboard asking only for exported
names, the worker metrics' bounded labels and the folding of dead workers' files (real worker
processes writing real multiprocess files), the replay's textfile, and the options' errors."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness import metrics as m
from harness.judge.gate import GateRule, Tally, evaluate
from harness.metrics.replay import write_replay_metrics
from harness.metrics.shadow import NOT_MIRRORED_REASONS, ShadowMetrics
from harness.processes import ManagedProcess, free_port

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "cryptobot-parity.json"
PARITY = [sys.executable, "-m", "harness.cli"]
needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None,
                                    reason="needs Debian's prometheus package (promtool)")

# A name in PromQL that is a metric or a recorded series (ours all start with parity_ or are
# level:metric:operations), once string literals are taken out.
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def series_names(expr: str) -> set[str]:
    names = set(_NAME.findall(_STRING.sub('""', expr)))
    return {n for n in names if n.startswith("parity_") or n.count(":") == 2}


def rules() -> list[dict]:
    """The rules of the shipped file as {record|alert, expr}, read without a YAML library
    (promtool checks the syntax): `- record:`/`- alert:` lines and their `expr:` blocks."""
    found: list[dict] = []
    lines = (PROMETHEUS / "parity-rules.yml").read_text().splitlines()
    for index, line in enumerate(lines):
        head = re.match(r"\s*- (record|alert): (\S+)", line)
        if head:
            found.append({head.group(1): head.group(2), "expr": ""})
        elif found and (expr := re.match(r"(\s*)expr: ?(.*)", line)):
            body = [expr.group(2).removeprefix(">-")]
            indent = len(expr.group(1))
            for more in lines[index + 1:]:
                if more.strip() and len(more) - len(more.lstrip()) <= indent:
                    break
                body.append(more)
            found[-1]["expr"] = " ".join(part.strip() for part in body)
    return found


def recorded_names() -> set[str]:
    return {rule["record"] for rule in rules() if "record" in rule}


@needs_promtool
@pytest.mark.parametrize("argv", [
    ["check", "rules", str(PROMETHEUS / "parity-rules.yml")],
    ["check", "config", str(PROMETHEUS / "prometheus.yml")],
    ["test", "rules", str(PROMETHEUS / "parity-rules.test.yml")],
])
def test_promtool_accepts_the_shipped_files(argv) -> None:
    run = subprocess.run(["promtool", *argv], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr


def test_rules_ask_only_for_exported_or_recorded_names() -> None:
    found = rules()
    assert {r.get("alert") for r in found} >= {
        "ParityBelowThreshold", "ParityShadowSilent", "ParityBreakerTripped",
        "ParityMirrorsDropped", "ParityCandidateSlower", "ParityOrdersRefused"}
    known = m.exported_names() | recorded_names()
    for rule in found:
        assert rule["expr"], rule
        assert series_names(rule["expr"]) <= known, (rule, series_names(rule["expr"]) - known)
        assert set(re.findall(r'reason="([^"]+)"', rule["expr"])) <= NOT_MIRRORED_REASONS, rule


def test_dashboard_loads_and_asks_only_for_exported_names() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "cryptobot-parity"
    exprs: list[str] = [v["definition"] for v in dashboard["templating"]["list"]
                        if "definition" in v]
    for panel in dashboard["panels"]:
        exprs += [target["expr"] for target in panel.get("targets", [])]
    known = m.exported_names() | recorded_names()
    used = set().union(*(series_names(expr) for expr in exprs))
    assert used <= known, used - known
    # One row per migration group, primary and candidate side by side in it.
    (row,) = [p for p in dashboard["panels"] if p["type"] == "row" and p.get("repeat")]
    assert row["repeat"] == "group"
    start = dashboard["panels"].index(row) + 1
    end = next(i for i, p in enumerate(dashboard["panels"]) if i >= start and p["type"] == "row")
    in_row = " ".join(t["expr"] for p in dashboard["panels"][start:end] for t in p["targets"])
    for needed in ("parity:ratio", "p50", "p99", "errors:ratio"):
        assert needed in in_row, needed
    assert '{group="$group"}' in in_row


WORKER_SCRIPT = textwrap.dedent("""
    import sys
    from harness.config import load_config
    from harness.metrics.worker import WorkerMetrics
    from harness.model import Exchange, Request, Response, Verdict

    def judged(path, verdict, status=200, error=None):
        exchange = Exchange(Request("GET", path), Response(200, latency_ms=3.0),
                            Response(status, latency_ms=40.0, error=error))
        engine_route = load_config(None).routes.match("GET", path)
        exchange.route, exchange.group = engine_route.name, engine_route.group
        exchange.verdict = verdict
        return exchange

    metrics = WorkerMetrics(sys.argv[1], [r.name for r in load_config(None).routes])
    for _ in range(int(sys.argv[2])):
        metrics.judged(judged("/api/v1/data/ohlcv/binance/BTC-USDT/1h", Verdict.MISMATCH))
        metrics.judged(judged("/api/v1/data/no-such-route/8f14e45fceea167a5a36dedd4bea2543",
                              Verdict.MATCH))
        metrics.judged(judged("/api/v1/data/ohlcv/binance/BTC-USDT/1h",
                              Verdict.CANDIDATE_ERROR, 0, "refused"))
""")


def run_worker(directory: Path, rounds: int) -> int:
    """A process writing worker metrics like a mirror worker; returns its (now dead) pid."""
    before = set(directory.glob("counter_*.db"))
    process = subprocess.run([sys.executable, "-c", WORKER_SCRIPT, str(directory), str(rounds)],
                             capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert process.returncode == 0, process.stderr
    (new,) = set(directory.glob("counter_*.db")) - before
    return int(new.stem.rpartition("_")[2])


def exposition(collector: ShadowMetrics) -> dict[tuple, float]:
    """What `collector` serves, as {(sample name, sorted labels): value}."""
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(generate_latest(registry).decode())
            for s in family.samples}


def key(name: str, **labels: str) -> tuple:
    return name, tuple(sorted(labels.items()))


def test_dead_workers_files_fold_into_the_archive_without_changing_a_count(tmp_path) -> None:
    metrics = ShadowMetrics("127.0.0.1", free_port(), tmp_path)
    first, second = run_worker(tmp_path, 3), run_worker(tmp_path, 4)
    before = exposition(metrics)
    exchanges = "parity_shadow_exchanges_total"
    data = "GET /api/v1/data/ohlcv/{exchange}/{symbol}/{timeframe}"
    assert before[key(exchanges, group="data", route=data, verdict="mismatch")] == 7
    # A path no route names is labelled `other`, never with its id.
    assert before[key(exchanges, group="data", route="other", verdict="match")] == 7
    assert not any("8f14e45f" in str(labels) for _, labels in before)
    errors = "parity_shadow_errors_total"
    assert before[key(errors, group="data", side="candidate", reason="no-answer")] == 7
    assert before[key(errors, group="data", side="primary", reason="server-error")] == 0
    count = "parity_shadow_latency_seconds_count"
    assert before[key(count, group="data", side="primary")] == 21
    assert before[key(count, group="data", side="candidate")] == 14  # no time for no answer
    metrics.tick({}, gone=[first])
    metrics.tick({}, gone=[second])
    live_gauges = {key("parity_shadow_queue_depth"), key("parity_shadow_recording_stopped")}
    assert live_gauges <= set(before)
    # Counts unchanged; the dead workers' live gauges gone with them.
    assert exposition(metrics) == {k: v for k, v in before.items() if k not in live_gauges}
    assert sorted(p.name for p in tmp_path.glob("*.db")) == ["counter_archive.db",
                                                             "histogram_archive.db"]


def test_proxy_counts_are_exported_by_name_and_reason(tmp_path) -> None:
    metrics = ShadowMetrics("127.0.0.1", free_port(), tmp_path)
    metrics.tick({"captured": 10, "dropped": 2, "match": 7, "worker-restarts": 1,
                  "some-new-count": 3})
    samples = exposition(metrics)
    assert samples[key("parity_shadow_captured_total")] == 10
    assert samples[key("parity_shadow_not_mirrored_total", reason="dropped")] == 2
    assert samples[key("parity_shadow_not_mirrored_total", reason="streams")] == 0
    assert samples[key("parity_shadow_worker_restarts_total")] == 1
    assert samples[key("parity_shadow_counts_total", reason="some-new-count")] == 3
    assert not any("match" in str(labels) for _, labels in samples)  # per group, from workers
    assert {name for name, _ in samples} <= m.exported_names()


def test_replay_textfile_has_each_groups_results(tmp_path) -> None:
    passing, failing = Tally(), Tally()
    for _ in range(5):
        passing.add({"verdict": "match"})
        failing.add({"verdict": "mismatch", "differences": [
            {"path": "$.exp", "message": "m", "severity": "critical"}]})
    failing.add({"verdict": "match"})
    results = {"auth": (evaluate(failing, GateRule()), failing),
               "data": (evaluate(passing, GateRule()), passing)}
    out = tmp_path / "parity-replay.prom"
    write_replay_metrics(out, results, finished=1_700_000_000)
    assert [p.name for p in tmp_path.iterdir()] == [out.name]
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(out.read_text())
               for s in family.samples}
    assert samples[("parity_replay_gate_ready", (("group", "auth"),))] == 0
    assert samples[("parity_replay_gate_ready", (("group", "data"),))] == 1
    assert samples[("parity_replay_exchanges", (("group", "auth"), ("verdict", "mismatch")))] == 5
    assert samples[("parity_replay_exchanges", (("group", "data"), ("verdict", "mismatch")))] == 0
    assert samples[("parity_replay_failure_ratio", (("group", "auth"),))] == pytest.approx(5 / 6)
    assert samples[("parity_replay_critical_findings", (("group", "auth"),))] == 5
    assert samples[("parity_replay_last_run_timestamp_seconds", ())] == 1_700_000_000
    assert {name for name, _ in samples} <= m.exported_names()


@pytest.mark.parametrize(("argv", "message"), [
    (["shadow", "--primary", "http://127.0.0.1:1", "--candidate", "http://127.0.0.1:2",
      "--metrics", "nowhere"], "--metrics 'nowhere': expected HOST:PORT"),
    (["shadow", "--primary", "http://127.0.0.1:1", "--candidate", "http://127.0.0.1:2",
      "--listen", "127.0.0.1:8111", "--metrics", "127.0.0.1:8111"], "must not be the proxied"),
    (["replay", "recordings", "--candidate", "http://127.0.0.1:2", "--metrics-file",
      "out.txt"], "must end in .prom"),
    (["replay", "recordings", "--candidate", "http://127.0.0.1:2", "--metrics-file",
      "/no/such/dir/x.prom"], "no such directory"),
])
def test_bad_metrics_options_are_one_line_errors(argv, message) -> None:
    run = subprocess.run([*PARITY, *argv], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert run.returncode == 2, run.stdout + run.stderr
    assert message in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr


def test_a_multiprocess_dir_that_is_a_file_is_a_one_line_error(tmp_path) -> None:
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    run = subprocess.run(
        [*PARITY, "shadow", "--primary", "http://127.0.0.1:1", "--candidate",
         "http://127.0.0.1:2", "--listen", f"127.0.0.1:{free_port()}", "--recordings",
         str(tmp_path / "rec"), "--metrics", f"127.0.0.1:{free_port()}",
         "--no-routes-from-primary"],  # no primary runs: only the error line is wanted
        capture_output=True, text=True, timeout=60, cwd=ROOT,
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(not_a_directory)})
    assert run.returncode == 2, run.stdout + run.stderr
    assert "PROMETHEUS_MULTIPROC_DIR" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr


def test_a_taken_metrics_port_stops_the_proxy_with_a_clear_error(tmp_path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proxy = ManagedProcess(
            [*PARITY, "shadow", "--primary", "http://127.0.0.1:1", "--candidate",
             "http://127.0.0.1:2", "--listen", f"127.0.0.1:{free_port()}", "--recordings",
             str(tmp_path / "rec"), "--metrics", f"127.0.0.1:{port}"],
            log_path=tmp_path / "shadow.log").start()
        assert proxy.process is not None
        assert proxy.process.wait(timeout=60) != 0
    assert f"--metrics 127.0.0.1:{port}: cannot listen" in proxy.log_tail(), proxy.log_tail()
