"""One gate: the same recordings get the same verdict per migration group from `parity report
--json`, `parity replay --json`, `pytest -m parity` and the demo's gate step, also for a group the
user's parity.toml gives no gate (it takes `[gates.default]`) and whose failure rate is strictly
between 0 % and 1 %: READY under the shipped 1 % default, NOT READY when parity.toml lowers the
default to 0.5 %."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from support import Shadow

from harness.config import load_config
from harness.demo.run import gate_recordings

BIN = Path(sys.executable).parent
GROUP = "data"  # no [gates.data] in the shipped defaults nor in the parity.toml below
INVALID = 149  # answered 422 alike by both copies: matches
# The latency gate has its own test (test_gate_latency.py); here the shadow proxy's and the
# replay's timings of loopback answers must not decide the verdict.
NO_LATENCY = "latency_min_pairs = 1000000\n"
CONFIGS = {
    "shipped default": ("ready", f"[gates.default]\n{NO_LATENCY}"),
    "stricter default": ("not ready", f"[gates.default]\nmax_mismatch_rate = 0.005\n{NO_LATENCY}"),
}


@pytest.fixture(scope="module")
def apps(reference_factory):
    started = {"primary": reference_factory("docker", wait=False),
               "candidate": reference_factory("native", drifts=("tz-offset",), wait=False)}
    for app in started.values():
        app.wait_healthy()
    return started


@pytest.fixture(scope="module")
def recordings(apps, tmp_path_factory) -> Path:
    """150 OHLCV reads recorded by the shadow proxy: 149 invalid symbols (the same 422 from both
    copies) and one real market (its candles shifted by the candidate's tz-offset drift)."""
    shadow = Shadow(tmp_path_factory.mktemp("agreement"), apps["primary"].base_url,
                    apps["candidate"].base_url)
    with httpx.Client(base_url=shadow.url, timeout=30) as client:
        for number in range(INVALID):
            answer = client.get(f"/api/v1/data/ohlcv/binance/NOMARKET{number}/1h")
            assert answer.status_code == 422, answer.text
        assert client.get("/api/v1/data/ohlcv/binance/BTC-USDT/1h").status_code == 200
    records = [r for r in shadow.stop() if r.get("group") == GROUP]
    assert len(records) == INVALID + 1
    return shadow.recordings


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=cwd,
                          env=dict(os.environ), stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_report_replay_pytest_and_demo_give_the_unconfigured_group_the_same_verdict(
        recordings, apps, tmp_path, name):
    expected, text = CONFIGS[name]
    config = tmp_path / "parity.toml"
    config.write_text(text)
    assert GROUP not in load_config(config).gates.named

    report = run([str(BIN / "parity"), "report", str(recordings), "--config", str(config),
                  "--out", str(tmp_path / "r.html"), "--json", str(tmp_path / "r.json")],
                 tmp_path)
    assert report.returncode in (0, 1), report.stderr
    group = json.loads((tmp_path / "r.json").read_text())["groups"][GROUP]
    assert 0 < group["failure_rate"] < 0.01 and group["failing"] == 1, group
    assert group["gate"]["max_mismatch_rate"] == load_config(config).gates.default.max_mismatch_rate
    verdicts = {"report": group["status"]}

    replay = run([str(BIN / "parity"), "replay", str(recordings), "--candidate",
                  apps["candidate"].base_url, "--config", str(config), "--no-progress",
                  "--json", str(tmp_path / "p.json")], tmp_path)
    line = re.search(rf"^{GROUP}\s+(READY|NOT READY)\s+compared\s+{INVALID + 1}\s+failing\s+1\b",
                     replay.stdout, re.M)
    assert line, replay.stdout + replay.stderr
    replayed = json.loads((tmp_path / "p.json").read_text())["groups"][GROUP]
    assert line.group(1).lower() == replayed["status"]
    verdicts["replay"] = replayed["status"]

    (tmp_path / "conftest.py").write_text("")
    gate = run([sys.executable, "-m", "pytest", "-m", "parity", "-p", "no:cacheprovider",
                "--parity-recordings", str(recordings), "--parity-config", str(config),
                "-rA", "-q"], tmp_path)
    item = re.search(rf"^(PASSED|FAILED) \S*parity::{GROUP}(?: - .*)?$", gate.stdout, re.M)
    assert item, gate.stdout[-3000:] + gate.stderr
    verdicts["pytest"] = "ready" if item.group(1) == "PASSED" else "not ready"

    result, tally = gate_recordings(recordings, load_config(config))[GROUP]
    assert tally.failing == 1 and tally.compared == INVALID + 1
    verdicts["demo"] = result.status

    assert verdicts == dict.fromkeys(verdicts, expected), verdicts
