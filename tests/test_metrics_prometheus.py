"""The shadow proxy's metrics against a real Prometheus server on loopback: the reference Cryptobot
as primary (Docker) and as a drifted candidate (native, candles shifted by an hour), `parity
shadow --metrics`, and Prometheus (Debian's package) run with the shipped scrape config and rules,
rendered with the test's ports and 1 s intervals. Asserted through Prometheus's HTTP API: the
per-group parity ratio, the latency quantiles (against the recorded answer times), the parity
alert; the nightly replay's textfile metrics scraped and alerted on; a killed worker's counts
kept."""

from __future__ import annotations

import http.server
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support import Shadow

from harness.metrics import LATENCY_BUCKETS, exported_names
from harness.processes import ManagedProcess, free_port
from harness.store.reader import iter_records

DEPLOY = Path(__file__).resolve().parent.parent / "deploy" / "prometheus"
DATA = ("/api/v1/data/ohlcv/binance/BTC-USDT/1h", {"limit": "24"})  # drifted: +1h candles
STRATEGY = ("/api/strategies/", None)  # the same on both sides
ROUNDS = 30  # more than the alerts' minimum traffic (20 compared in 5 min)
WAIT_S = 90.0

pytestmark = pytest.mark.skipif(shutil.which("prometheus") is None,
                                reason="needs Debian's prometheus package (.ci/run installs it)")


class TextfileServer:
    """Serves one file's current content on every path: what node_exporter's textfile collector
    would expose of the nightly replay's `.prom` file."""

    def __init__(self, path: Path) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = path.read_bytes() if path.exists() else b""
                self.send_response(200)
                self.send_header("content-type", "text/plain; version=0.0.4")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def render_config(tmp_path: Path, shadow: str, replay_node: str) -> Path:
    """The shipped scrape config with the test's targets, the shipped rules by absolute path and
    1 s scrape and evaluation intervals."""
    text = (DEPLOY / "prometheus.yml").read_text()
    for old, new in (("scrape_interval: 15s", "scrape_interval: 1s"),
                     ("evaluation_interval: 15s", "evaluation_interval: 1s"),
                     ("- parity-rules.yml", f"- {DEPLOY / 'parity-rules.yml'}"),
                     ('"shadow-host:9464"', f'"{shadow}"'),
                     ('"replay-host:9100"', f'"{replay_node}"')):
        assert old in text, f"deploy/prometheus/prometheus.yml no longer has {old!r}"
        text = text.replace(old, new)
    path = tmp_path / "prometheus.yml"
    path.write_text(text)
    return path


class Prometheus:
    """A real Prometheus server on a free loopback port with its own data directory."""

    def __init__(self, tmp_path: Path, config: Path) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        self.process = ManagedProcess(
            ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address={self.url.removeprefix('http://')}"],
            health_url=f"{self.url}/-/ready", log_path=tmp_path / "prometheus.log",
            startup_timeout=60).start()

    def query(self, expr: str) -> list[dict]:
        answer = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        assert answer.status_code == 200, (expr, answer.text)
        return answer.json()["data"]["result"]

    def value(self, expr: str) -> float | None:
        """The single value of `expr`, None while it has none."""
        result = self.query(expr)
        assert len(result) <= 1, (expr, result)
        return float(result[0]["value"][1]) if result else None

    def by_group(self, expr: str) -> dict[str, float]:
        return {r["metric"].get("group", ""): float(r["value"][1]) for r in self.query(expr)}

    def alerts(self) -> list[dict]:
        return httpx.get(f"{self.url}/api/v1/alerts", timeout=10).json()["data"]["alerts"]

    def log(self) -> str:
        return self.process.log_tail(40)


def wait_for(what: str, check: Callable[[], Any], diagnose: Callable[[], str] = str) -> Any:
    """Poll `check` until it returns something truthy (generous: the machine may be loaded)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}\n{diagnose()}")
        time.sleep(0.25)


def prometheus_quantile(q: float, values: list[float]) -> float:
    """What `histogram_quantile(q, ...)` gives for `values` observed into LATENCY_BUCKETS:
    the bucket holding the rank, linearly interpolated (from 0 for the first bucket)."""
    bounds = [*LATENCY_BUCKETS, float("inf")]
    counts = [sum(1 for v in values if v <= bound) for bound in bounds]
    rank = q * counts[-1]
    index = next(i for i, count in enumerate(counts) if count >= rank)
    if index == len(bounds) - 1:
        return bounds[-2]
    start, below = (0.0, 0) if index == 0 else (bounds[index - 1], counts[index - 1])
    return start + (bounds[index] - start) * (rank - below) / (counts[index] - below)


def scrape(url: str) -> dict[str, float]:
    """The proxy's /metrics as {sample name with sorted labels: value}."""
    samples = {}
    for family in text_string_to_metric_families(httpx.get(url, timeout=10).text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}"] = sample.value
    return samples


@pytest.fixture()
def stack(reference_factory, tmp_path) -> Iterator[dict[str, Any]]:
    primary = reference_factory("docker", wait=False)
    candidate = reference_factory("native", drifts=("tz-offset",), wait=False)
    primary.wait_healthy()
    candidate.wait_healthy()
    metrics_dir = tmp_path / "multiproc"
    metrics_dir.mkdir()
    (metrics_dir / "counter_4242.db").write_bytes(b"left over by an earlier run")
    metrics_port = free_port()
    mp = pytest.MonkeyPatch()
    mp.setenv("PROMETHEUS_MULTIPROC_DIR", str(metrics_dir))
    try:
        shadow = Shadow(tmp_path, primary.base_url, candidate.base_url,
                        "--metrics", f"127.0.0.1:{metrics_port}")
    finally:
        mp.undo()
    replay_file = tmp_path / "textfile" / "parity-replay.prom"
    replay_file.parent.mkdir()
    node = TextfileServer(replay_file)
    prometheus = Prometheus(tmp_path, render_config(tmp_path, f"127.0.0.1:{metrics_port}",
                                                    node.address))
    try:
        yield {"primary": primary, "candidate": candidate, "shadow": shadow,
               "metrics": f"http://127.0.0.1:{metrics_port}/metrics", "prometheus": prometheus,
               "metrics_dir": metrics_dir, "replay_file": replay_file, "tmp": tmp_path}
    finally:
        prometheus.process.stop()
        node.close()
        shadow.process.stop()


def drive(stack) -> dict[str, list[dict]]:
    """ROUNDS requests of each group through the proxy, once Prometheus knows the series (a
    counter's first scraped value is not an increase to rate())."""
    prom, shadow = stack["prometheus"], stack["shadow"]

    def send_rounds(client: httpx.Client, rounds: int) -> None:
        for _ in range(rounds):
            for path, params in (DATA, STRATEGY):
                assert client.get(path, params=params).status_code == 200

    with httpx.Client(base_url=shadow.url, timeout=30) as client:
        send_rounds(client, 1)
        wait_for("both groups' series in Prometheus", lambda: {"data", "strategy"} <= set(
            prom.by_group("parity_shadow_exchanges_total")), prom.log)
        send_rounds(client, ROUNDS - 1)
    expected = {"data": ROUNDS, "strategy": ROUNDS}

    def recorded() -> dict[str, list[dict]]:
        records = list(iter_records([shadow.recordings]))
        return {group: [r for r in records if r["group"] == group] for group in expected}

    records = wait_for("every exchange recorded", lambda: (r := recorded()) and all(
        len(r[g]) == n for g, n in expected.items()) and r, shadow.log)
    wait_for("every exchange scraped", lambda: prom.by_group(
        'sum by (group) (parity_shadow_latency_seconds_count{side="candidate",'
        'group=~"data|strategy"})') == expected, prom.log)
    return records


def check_parity_ratio_per_group_and_alert(stack, driven) -> None:
    prom = stack["prometheus"]
    assert prom.by_group('sum by (group) (parity_shadow_exchanges_total{group=~"data|strategy"})'
                         ) == {"data": ROUNDS, "strategy": ROUNDS}
    assert prom.value('parity_shadow_exchanges_total{group="data",verdict="mismatch"}') == ROUNDS
    ratios = wait_for("parity ratios of both groups", lambda: (r := prom.by_group(
        'group:parity_shadow_parity:ratio_rate5m{group=~"data|strategy"}')) and len(r) == 2 and r,
        prom.log)
    assert ratios == {"data": 0.0, "strategy": 1.0}  # every candle drifted; strategies intact

    def parity_alerts() -> list[dict]:
        return [a for a in prom.alerts() if a["labels"]["alertname"] == "ParityBelowThreshold"]

    alerts = wait_for("the parity alert", parity_alerts, prom.log)
    assert {a["labels"]["group"] for a in alerts} == {"data"}
    assert {a["state"] for a in alerts} <= {"pending", "firing"}
    assert alerts[0]["labels"]["severity"] == "critical"
    # The candidate answers (no 5xx, no timeout): its error ratio is there, and zero.
    assert prom.by_group('group_side:parity_shadow_errors:ratio_rate5m{side="candidate",'
                         'group=~"data|strategy"}') == {"data": 0.0, "strategy": 0.0}


def check_latency_quantiles_match_the_recorded_answer_times(stack, driven) -> None:
    prom = stack["prometheus"]
    for group, records in driven.items():
        for side in ("primary", "candidate"):
            seconds = [r[side]["latency_ms"] / 1000 for r in records]
            for q in (0.5, 0.99):
                got = prom.value(f'histogram_quantile({q}, sum by (le) (parity_shadow_latency_'
                                 f'seconds_bucket{{group="{group}",side="{side}"}}))')
                assert got == pytest.approx(prometheus_quantile(q, seconds), rel=1e-9), (
                    group, side, q)
            # The dashboard's recording rules exist for both sides, from the same histogram.
            p99 = wait_for(f"p99 of {group} {side}", lambda g=group, s=side: prom.value(
                f'group_side:parity_shadow_latency_seconds:p99_rate5m{{group="{g}",side="{s}"}}'))
            assert 0 < p99 <= max(LATENCY_BUCKETS)


def check_the_proxy_exports_only_catalogued_names_without_ids(stack, driven) -> None:
    samples = scrape(stack["metrics"])
    names = {key.partition("{")[0] for key in samples}
    assert names <= exported_names(), names - exported_names()
    assert "parity_shadow_not_mirrored_total{reason=dropped}" in samples  # zero, but there
    routes = {key.split("route=")[1].split(",")[0] for key in samples if "route=" in key}
    assert "GET /api/v1/data/ohlcv/{exchange}/{symbol}/{timeframe}" in routes
    assert not any(any(ch.isdigit() for ch in route.replace("/api/v1/", "")) for route in routes)
    # The multiprocess directory was emptied at start: the stale file of "pid 4242" is gone.
    assert not (stack["metrics_dir"] / "counter_4242.db").exists()


def check_replay_textfile_scraped_and_alerted(stack, driven) -> None:
    prom, out = stack["prometheus"], stack["replay_file"]
    run = subprocess.run(
        [sys.executable, "-m", "harness.cli", "replay", str(stack["shadow"].recordings),
         "--candidate", stack["candidate"].base_url, "--no-progress", "--metrics-file", str(out)],
        capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stdout + run.stderr  # the data gate fails
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]  # no temporary left
    ready = wait_for("the replay's gate metrics", lambda: (r := prom.by_group(
        "parity_replay_gate_ready")) and {"data", "strategy"} <= set(r) and r, prom.log)
    assert ready["data"] == 0 and ready["strategy"] == 1
    assert prom.value('parity_replay_exchanges{group="data",verdict="mismatch"}') == ROUNDS
    assert prom.value('parity_replay_failure_ratio{group="data"}') == 1.0
    alerts = wait_for("the replay gate alert", lambda: [
        a for a in prom.alerts() if a["labels"]["alertname"] == "ParityReplayGateFailed"])
    assert {a["labels"]["group"] for a in alerts} == {"data"}


def check_a_killed_worker_keeps_its_counts_and_its_files_are_folded(stack, driven) -> None:
    shadow, metrics_dir = stack["shadow"], stack["metrics_dir"]
    key = ("parity_shadow_exchanges_total{group=data,route=GET /api/v1/data/ohlcv/{exchange}/"
           "{symbol}/{timeframe},verdict=mismatch}")
    before = scrape(stack["metrics"])[key]
    proxy = psutil.Process(shadow.process.pid)
    (worker,) = proxy.children()
    assert (metrics_dir / f"counter_{worker.pid}.db").exists()
    worker.send_signal(signal.SIGKILL)
    replacement = wait_for("a new worker", lambda: [w for w in proxy.children()
                                                    if w.pid != worker.pid], shadow.log)
    wait_for("the dead worker's files folded",
             lambda: not (metrics_dir / f"counter_{worker.pid}.db").exists(), shadow.log)
    assert not (metrics_dir / f"histogram_{worker.pid}.db").exists()
    assert (metrics_dir / "counter_archive.db").exists()
    assert scrape(stack["metrics"])[key] == before
    with httpx.Client(base_url=shadow.url, timeout=30) as client:
        for _ in range(3):
            assert client.get(DATA[0], params=DATA[1]).status_code == 200
    wait_for("the new worker's counts added", lambda: scrape(stack["metrics"])[key] == before + 3,
             shadow.log)
    assert scrape(stack["metrics"])["parity_shadow_worker_restarts_total{}"] == 1
    files = sorted(p.name for p in metrics_dir.glob("*.db"))
    assert all(name.endswith(("_archive.db", f"_{replacement[0].pid}.db")) for name in files), \
        files


def test_real_prometheus_sees_parity_latency_alerts_and_replay(stack) -> None:
    """One stack for the whole story (module-wide fixtures would start it once per xdist
    worker): traffic, then each check in turn; the worker is killed last."""
    driven = drive(stack)
    check_parity_ratio_per_group_and_alert(stack, driven)
    check_latency_quantiles_match_the_recorded_answer_times(stack, driven)
    check_the_proxy_exports_only_catalogued_names_without_ids(stack, driven)
    check_replay_textfile_scraped_and_alerted(stack, driven)
    check_a_killed_worker_keeps_its_counts_and_its_files_are_folded(stack, driven)
    stack["shadow"].stop()  # exits 0, no worker left behind, with the metrics listener too
    with pytest.raises(httpx.ConnectError):
        httpx.get(stack["metrics"], timeout=5)
