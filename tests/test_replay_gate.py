"""`parity replay` and `pytest -m parity` against the reference app: recordings made by the shadow
proxy replay clean against a Docker copy and fail, naming the groups, against a drifted native;
serial and xdist runs agree; the nightly pieces run as written. The recordings hold what real
traffic holds: routes the policy never mirrors (GET/DELETE of an order) and a refresh with a
garbage token; replaying them needs a login, whose password never goes on the command line."""

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
from harness.replay.runner import UNRESTORABLE
from harness.store.reader import iter_records

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def clean_env() -> dict[str, str]:
    """The environment without a service account (each test says where its comes from), read when
    called: the session's redaction key file is set by a fixture after import."""
    return {k: v for k, v in os.environ.items()
            if k not in ("PARITY_PASSWORD", "PARITY_REPLAY_USERNAME", "PARITY_REPLAY_PASSWORD")}
GARBAGE = "not-a-refresh-token"


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
        real_world_extras(client, envs["primary"].base_url)
    assert proxy.stop(timeout=60) == 0
    assert stats.errors == []
    return directory


def real_world_extras(client: httpx.Client, primary: str) -> None:
    """What real traffic also holds: a refresh with a valid and with a garbage token, a token
    minted before the recordings began and a garbage one, and reads and a cancel of an order placed
    on the primary (routes the policy never mirrors)."""
    tokens = client.post("/auth/login", data={"username": "demo", "password": "demo"}).json()
    auth = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
                       ).status_code == 200
    assert client.post("/auth/refresh", json={"refresh_token": GARBAGE}).status_code == 401
    earlier = httpx.post(f"{primary}/auth/login", data={"username": "demo", "password": "demo"})
    assert client.get("/auth/users/me", headers={
        "Authorization": f"Bearer {earlier.json()['access_token']}"}).status_code == 200
    assert client.get("/auth/users/me", headers={"Authorization": f"Bearer {GARBAGE}"}
                      ).status_code == 401
    # Another user's session: the replay cannot log in as them (only the service account's
    # password is restored), so neither the login nor what the session does is replayable.
    admin = client.post("/auth/login", data={"username": "admin", "password": "admin"}).json()
    assert client.get("/auth/users/me", headers={
        "Authorization": f"Bearer {admin['access_token']}"}).status_code == 200
    placed = httpx.post(f"{primary}/api/trades/orders", json={
        "exchange": "binance", "symbol": "BTC/USDT", "side": "buy", "type": "limit",
        "amount": 0.01, "price": 1000.0, "time_in_force": "GTC"}, headers=auth)
    order_id = (placed.json().get("order") or placed.json()).get("id") or "unknown-order"
    client.get(f"/api/trades/orders/{order_id}", headers=auth)
    client.delete(f"/api/trades/orders/{order_id}", headers=auth)


@pytest.fixture(scope="module")
def password_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("secrets") / "replay-password"
    path.write_text("demo\n")
    path.chmod(0o600)
    return path


def parity(*args: str, cwd: Path | None = None,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "parity"), *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd, env=env or clean_env(), stdin=subprocess.DEVNULL)


def test_replay_against_docker_passes_and_against_drifted_fails(recordings, envs, tmp_path,
                                                               password_file):
    login = ("--login", "demo", "--password-file", str(password_file))
    clean = parity("replay", str(recordings), "--candidate", envs["docker"].base_url, *login,
                   "--no-progress", "--json", str(tmp_path / "a.json"),
                   "--save", str(tmp_path / "replayed"))
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "NOT READY" not in clean.stdout and "NO DATA" not in clean.stdout
    assert re.search(r"^trade\s+READY .*skipped by policy: \d+ \(.*route never mirrored x\d+",
                     clean.stdout, re.MULTILINE), clean.stdout
    # The garbage refresh token stayed garbage: the candidate refused it as the primary did; the
    # valid one (minted by the recorded login) was swapped for a fresh one and accepted.
    refreshes = [r for r in iter_records([tmp_path / "replayed"])
                 if r["request"]["path"] == "/auth/refresh"]
    statuses = sorted((r["primary"]["status"], r["candidate"]["status"], r["verdict"])
                      for r in refreshes)
    assert statuses == [(200, 200, "match"), (401, 401, "match")], statuses
    # A token from before the recordings cannot be replayed: skipped, saying so; a garbage one
    # is sent as recorded and refused again.
    whoami = [r for r in iter_records([tmp_path / "replayed"])
              if r["request"]["path"] == "/auth/users/me"]
    seen = [(r["primary"]["status"], r["verdict"], r["reason"]) for r in whoami]
    assert seen.count((200, "skipped", UNRESTORABLE)) == 2, seen  # the earlier token, admin's
    assert (401, "match", None) in seen, seen
    assert {v for s, v, _ in seen if s == 200} == {"match", "skipped"}, seen
    drifted = parity("replay", str(recordings), "--candidate", envs["drifted"].base_url, *login,
                     "--no-progress", "--report", str(tmp_path / "r.html"))
    assert drifted.returncode == 1, drifted.stdout + drifted.stderr
    failing = set(re.findall(r"^(\w+)\s+NOT READY", drifted.stdout, re.MULTILINE))
    assert failing == {"data", "auth", "trade"}, drifted.stdout
    assert "candles shifted by +1h" in drifted.stdout
    assert (tmp_path / "r.html").exists()


def test_a_status_the_docker_copies_disagree_on_is_untestable_live_and_in_the_replay(envs,
                                                                                    tmp_path):
    # A backtest only the primary has: the secondary and the candidate answer 404, the primary 200.
    primary = envs["primary"].base_url
    started = httpx.post(f"{primary}/api/backtest/start", timeout=30, json={
        "strategy": "sma_crossover", "parameters": {"fast": 5, "slow": 15, "fee": 0.001},
        "symbol": "BTC/USDT", "exchange": "binance", "timeframe": "1h",
        "start_date": "2024-03-01T00:00:00Z", "end_date": "2024-04-01T00:00:00Z",
        "initial_capital": 10_000})
    assert started.status_code == 202, started.text
    directory = tmp_path / "recordings"
    port = free_port()
    proxy = ManagedProcess(
        [sys.executable, "-m", "harness.cli", "shadow", "--primary", primary, "--candidate",
         envs["docker"].base_url, "--secondary", envs["secondary"].base_url, "--listen",
         f"127.0.0.1:{port}", "--recordings", str(directory)],
        health_url=f"http://127.0.0.1:{port}/health", log_path=tmp_path / "shadow.log",
    ).start()
    answer = httpx.get(f"http://127.0.0.1:{port}/api/backtest/status/{started.json()['id']}",
                       timeout=30)
    assert answer.status_code == 200
    assert proxy.stop(timeout=60) == 0
    (live,) = [r for r in iter_records([directory]) if "/backtest/" in r["request"]["path"]]
    assert (live["secondary"]["status"], live["candidate"]["status"]) == (404, 404)
    assert live["verdict"] == "untestable", live
    done = parity("replay", str(directory), "--candidate", envs["docker"].base_url,
                  "--no-progress", "--save", str(tmp_path / "replayed"))
    assert done.returncode == 1, done.stdout + done.stderr  # untestable is not ready for cutover
    assert re.search(r"^backtest\s+UNTESTABLE", done.stdout, re.MULTILINE), done.stdout
    assert "critical" not in done.stdout and "NOT READY" not in done.stdout
    (replayed,) = [r for r in iter_records([tmp_path / "replayed"])
                   if "/backtest/" in r["request"]["path"]]
    assert replayed["verdict"] == "untestable"
    assert "primary 200, secondary 404; candidate 404" in replayed["reason"]


def test_replay_usage_errors_exit_2(recordings, tmp_path, password_file):
    empty = tmp_path / "empty"
    empty.write_text("")
    for args in (["replay", str(tmp_path / "none"), "--candidate", "http://127.0.0.1:1"],
                 ["replay", str(recordings), "--candidate", "nope"],
                 ["replay", str(recordings), "--candidate", "http://x", "--shard", "3/2"],
                 ["replay", str(recordings), "--candidate", "http://127.0.0.1:1", "--login",
                  "demo:demo"],
                 ["replay", str(recordings), "--candidate", "http://127.0.0.1:1", "--login",
                  "demo", "--password-file", str(empty)]):
        done = parity(*args)
        assert done.returncode == 2, args
        assert done.stderr.strip().count("\n") == 0 and "error:" in done.stderr


def test_replay_without_a_login_on_recordings_with_credentials_fails_fast(recordings, envs):
    done = parity("replay", str(recordings), "--candidate", envs["docker"].base_url,
                  "--no-progress")
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip().count("\n") == 0 and "--login USER" in done.stderr
    assert "POST /auth/login" in done.stderr and done.stdout == ""  # before replaying anything
    # --login without a password anywhere (no file, no PARITY_PASSWORD, stdin not a terminal).
    nopass = parity("replay", str(recordings), "--candidate", envs["docker"].base_url,
                    "--login", "demo", "--no-progress")
    assert nopass.returncode == 2 and "PARITY_PASSWORD" in nopass.stderr, nopass.stderr


def test_pytest_gate_without_a_login_on_recordings_with_credentials_fails_fast(
        recordings, envs, tmp_path):
    (tmp_path / "conftest.py").write_text("")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "parity", "-p", "no:cacheprovider",
         "--parity-recordings", str(recordings), "--parity-candidate", envs["docker"].base_url],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, env=clean_env(),
        stdin=subprocess.DEVNULL)
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr
    assert done.stderr.strip().count("\n") == 0 and "--parity-login USER" in done.stderr


def run_gate(recordings: Path, candidate: str, tmp_path: Path, *extra: str):
    (tmp_path / "conftest.py").write_text("")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "parity", "-p", "no:cacheprovider",
         "--parity-recordings", str(recordings), "--parity-candidate", candidate,
         "--parity-login", "demo", "-q", "-rN", *extra],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={**clean_env(), "PARITY_PASSWORD": "demo"}, stdin=subprocess.DEVNULL,
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
    # The routes the policy never mirrors (GET, DELETE of an order) are skipped, not failed.
    assert re.search(r"\b\d+ skipped", serial_counts), serial_counts
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
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "needs something to gate on" in done.stderr


def test_the_projects_own_tests_are_not_part_of_a_parity_gate(recordings):
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "parity",
                           "-p", "no:cacheprovider", f"--parity-recordings={recordings}"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0 and "parity::" in done.stdout, done.stdout[-2000:]
    assert "test_differential.py::" not in done.stdout, done.stdout[-2000:]
    own = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-m",
                          "differential", "-p", "no:cacheprovider", "tests/test_differential.py"],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert own.returncode == 0 and "test_differential.py::" in own.stdout, own.stdout[-2000:]


def test_nightly_script_runs_as_written(recordings, reference_factory, tmp_path):
    day = datetime.now(UTC).strftime("%Y%m%d")
    env = {**os.environ, "PARITY_RECORDINGS": str(recordings), "PARITY_REPORTS": str(tmp_path),
           "PARITY_CANDIDATE": reference_factory("docker", dry_run=True).base_url,
           "PARITY_DAY": day,
           "PARITY_BIN": str(BIN / "parity"), "PARITY_REPLAY_USERNAME": "demo",
           "PARITY_REPLAY_PASSWORD": "demo"}  # the systemd units' environment file
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
