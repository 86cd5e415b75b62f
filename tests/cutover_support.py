"""Helpers of the cutover tests: a reference app whose drifts switch at runtime, and the shadow
proxy with its admin endpoint."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from support import LoopbackListener, Shadow

from harness.processes import ReferenceApp, free_port, reference_argv

CONTROL_TOKEN = "t0k3n-for-tests"
ADMIN_TOKEN = "admin-t0k3n"
OHLCV = "/api/v1/data/ohlcv/binance/BTCUSDT/1h"


def controlled_app(tmp_path: Path, flavor: str = "native", token: str | None = CONTROL_TOKEN,
                   *, extra: tuple[str, ...] = ()) -> ReferenceApp:
    """A reference app whose drifts can be switched with `token` (None: no control endpoint)."""
    port = free_port()
    argv = reference_argv(flavor, port=port, data_dir=tmp_path / f"{flavor}-{port}")
    if token:
        argv += ["--control-token", token]
    return ReferenceApp([*argv, *extra], f"http://127.0.0.1:{port}",
                        log_path=tmp_path / f"{flavor}-{port}.log").start()


def switch_drifts(app: ReferenceApp, drifts: list[str]) -> None:
    answer = httpx.put(f"{app.base_url}/_reference/drifts", json={"drifts": drifts},
                       headers={"Authorization": f"Bearer {CONTROL_TOKEN}"})
    assert answer.status_code == 200, answer.text


class CutoverProxy(Shadow):
    """`parity shadow --admin ... --mark-served` with a token file and a parity.toml."""

    def __init__(self, tmp_path: Path, primary: str, candidate: str, *extra: str,
                 config: str = "[cutover]\nwindow_s = 10.0\nmin_count = 10\n",
                 state: Path | None = None) -> None:
        self.token_file = tmp_path / "admin.token"
        self.token_file.write_text(ADMIN_TOKEN + "\n")
        config_file = tmp_path / "parity.toml"
        config_file.write_text(config)
        self.admin_port = free_port()
        self.admin = f"http://127.0.0.1:{self.admin_port}"
        options = ["--admin", f"127.0.0.1:{self.admin_port}", "--admin-token-file",
                   str(self.token_file), "--mark-served", "--config", str(config_file)]
        if state is not None:
            options += ["--cutover-state", str(state)]
        super().__init__(tmp_path, primary, candidate, *options, *extra)

    def kill_9(self) -> None:
        """SIGKILL the proxy (no drain, no state written at exit) and reap it and its workers."""
        self.process.process.send_signal(signal.SIGKILL)
        self.process.process.wait(timeout=30)
        self.process.stop()

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`parity cutover ARGS` against this proxy."""
        return subprocess.run([sys.executable, "-m", "harness.cli", "cutover", "--admin",
                               self.admin, "--token-file", str(self.token_file), *args],
                              capture_output=True, text=True, timeout=60)

    def status(self) -> dict[str, Any]:
        answer = httpx.get(f"{self.admin}/cutover/status",
                           headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert answer.status_code == 200, answer.text
        return answer.json()

    def get(self, client: httpx.Client, identity: int, path: str = OHLCV) -> httpx.Response:
        """GET `path` as client 10.0.x.y (its X-Forwarded-For)."""
        return client.get(self.url + path, params={"limit": 3},
                          headers={"X-Forwarded-For": f"10.0.{identity // 256}.{identity % 256}"})

    def served(self, client: httpx.Client, identities: range) -> dict[int, str]:
        """Who served each identity's GET (all must be answered 200)."""
        served = {}
        for identity in identities:
            answer = self.get(client, identity)
            assert answer.status_code == 200, answer.text
            served[identity] = answer.headers["x-parity-served-by"]
        return served


def wait_for(condition: Callable[[], Any], timeout_s: float = 60.0, every_s: float = 0.05,
             step: Callable[[], None] | None = None) -> Any:
    """Poll `condition` (running `step` between polls) until it is truthy; its value. Fails
    after `timeout_s`: generous, the machine is shared; not a speed assertion."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, "condition not met in time"
        if step is not None:
            step()
        time.sleep(every_s)


class HangingServer(LoopbackListener):
    """A candidate that accepts connections and reads requests but never answers; `requests`
    counts the request heads it received."""

    def __init__(self) -> None:
        self.requests = 0
        super().__init__()

    def handle(self, conn: socket.socket) -> None:
        while True:
            try:
                data = conn.recv(65536)
            except OSError:
                return
            if not data:
                return
            self.requests += data.count(b"\r\n\r\n")
