"""`parity replay` and `pytest -m parity` against the reference app: recordings made by the shadow
proxy replay clean against a Docker copy and fail, naming the groups, against a drifted native;
serial and xdist runs agree; the nightly pieces run as written."""

from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from harness.demo.traffic import CryptobotSession, TrafficStats
from harness.processes import ManagedProcess, free_port

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def envs(reference_factory):
    return {
        "primary": reference_factory("docker"),
        # Copies that orders are mirrored to prove their dry-run switch on first.
        "secondary": reference_factory("docker", dry_run=True),
        "docker": reference_factory("docker", dry_run=True),
        "drifted": reference_factory("native", drifts=("tz-offset", "token-lifetime",
                                                       "amount-precision")),
    }


@pytest.fixture(scope="module")
def recordings(envs, tmp_path_factory) -> Path:
    """Real traffic recorded by the shadow proxy (candidate: a Docker copy)."""
    directory = tmp_path_factory.mktemp("recordings")
    port = free_port()
    proxy = ManagedProcess(
        [sys.executable, "-m", "harness.cli", "shadow", "--primary", envs["primary"].base_url,
         "--candidate", envs["secondary"].base_url, "--listen", f"127.0.0.1:{port}",
         "--recordings", str(directory)],
        health_url=f"http://127.0.0.1:{port}/health", log_path=directory.parent / "shadow.log",
    ).start()
    stats = TrafficStats()
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        for number in range(2):
            CryptobotSession(client, random.Random(number), stats).run()
    assert proxy.stop(timeout=60) == 0
    assert stats.errors == []
    return directory


def parity(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "parity"), *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


def test_replay_against_docker_passes_and_against_drifted_fails(recordings, envs, tmp_path):
    clean = parity("replay", str(recordings), "--candidate", envs["docker"].base_url,
                   "--login", "demo:demo", "--no-progress", "--json", str(tmp_path / "a.json"))
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "NOT READY" not in clean.stdout
    drifted = parity("replay", str(recordings), "--candidate", envs["drifted"].base_url,
                     "--login", "demo:demo", "--no-progress",
                     "--report", str(tmp_path / "r.html"))
    assert drifted.returncode == 1, drifted.stdout + drifted.stderr
    failing = set(re.findall(r"^(\w+)\s+NOT READY", drifted.stdout, re.MULTILINE))
    assert failing == {"data", "auth", "trade"}, drifted.stdout
    assert "candles shifted by +1h" in drifted.stdout
    assert (tmp_path / "r.html").exists()


def test_replay_usage_errors_exit_2(recordings, tmp_path):
    for args in (["replay", str(tmp_path / "none"), "--candidate", "http://127.0.0.1:1"],
                 ["replay", str(recordings), "--candidate", "nope"],
                 ["replay", str(recordings), "--candidate", "http://x", "--shard", "3/2"]):
        done = parity(*args)
        assert done.returncode == 2, args
        assert done.stderr.strip().count("\n") == 0 and "error:" in done.stderr


def run_gate(recordings: Path, candidate: str, tmp_path: Path, *extra: str):
    (tmp_path / "conftest.py").write_text("")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "parity", "-p", "no:cacheprovider",
         "--parity-recordings", str(recordings), "--parity-candidate", candidate,
         "--parity-login", "demo:demo", "-q", "-rN", *extra],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    counts = re.search(r"(\d+) (?:passed|failed)[^\n]*in [\d.]+s", done.stdout)
    return done, counts.group(0).rsplit(" in ", 1)[0] if counts else done.stdout[-500:]


@pytest.mark.parametrize("which", ["docker", "drifted"])
def test_pytest_gate_serial_and_xdist_agree(recordings, reference_factory, tmp_path, which):
    # A fresh candidate per run: replayed creates (strategies) persist in its database.
    drifts = () if which == "docker" else ("tz-offset", "token-lifetime", "amount-precision")
    flavor = "docker" if which == "docker" else "native"
    serial, serial_counts = run_gate(
        recordings, reference_factory(flavor, drifts=drifts, dry_run=True).base_url, tmp_path)
    parallel, parallel_counts = run_gate(
        recordings, reference_factory(flavor, drifts=drifts, dry_run=True).base_url, tmp_path,
        "-n", "2")
    expected = 0 if which == "docker" else 1
    assert serial.returncode == parallel.returncode == expected, serial.stdout[-2000:]
    assert serial_counts == parallel_counts
    if which == "drifted":
        assert re.search(r"_+ auth _+", serial.stdout), serial.stdout[-3000:]
        assert "access token lifetime 1800 s vs 900 s" in serial.stdout


def test_pytest_gate_selects_by_group(recordings, reference_factory, tmp_path):
    drifted = reference_factory("native", drifts=("tz-offset",))
    done, counts = run_gate(recordings, drifted.base_url, tmp_path, "-k", "strategy")
    assert done.returncode == 0, done.stdout[-2000:]
    assert "failed" not in counts


def test_pytest_parity_without_anything_to_gate_on_is_an_error(tmp_path):
    (tmp_path / "conftest.py").write_text("")
    done = subprocess.run([sys.executable, "-m", "pytest", "-m", "parity", "-p",
                           "no:cacheprovider"], capture_output=True, text=True, cwd=tmp_path,
                          timeout=120)
    assert done.returncode == 4
    assert "needs something to gate on" in done.stderr


def test_nightly_script_runs_as_written(recordings, reference_factory, tmp_path):
    day = datetime.now(UTC).strftime("%Y%m%d")
    env = {**os.environ, "PARITY_RECORDINGS": str(recordings), "PARITY_REPORTS": str(tmp_path),
           "PARITY_CANDIDATE": reference_factory("docker", dry_run=True).base_url,
           "PARITY_DAY": day,
           "PARITY_BIN": str(BIN / "parity"), "PARITY_REPLAY_USERNAME": "demo",
           "PARITY_REPLAY_PASSWORD": "demo"}
    done = subprocess.run(["bash", str(ROOT / "deploy" / "nightly-replay.sh")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / f"replay-{day}.html").exists()
    assert (tmp_path / f"replay-{day}.json").exists()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not here")
def test_systemd_units_verify(tmp_path):
    for unit in (ROOT / "deploy" / "systemd").iterdir():
        text = unit.read_text()
        text = text.replace("/opt/cryptobot-parity/.venv/bin/parity", str(BIN / "parity"))
        text = text.replace("/opt/cryptobot-parity/deploy/nightly-replay.sh",
                            str(ROOT / "deploy" / "nightly-replay.sh"))
        (tmp_path / unit.name).write_text(text)
    done = subprocess.run(["systemd-analyze", "verify", *map(str, sorted(tmp_path.iterdir()))],
                          capture_output=True, text=True, timeout=120)
    problems = [line for line in done.stderr.splitlines()
                if "parity" in line and "EnvironmentFile" not in line]
    assert not problems, done.stderr
