"""Real processes for the demo, the tests and the benchmarks: started in their own process group
on 127.0.0.1, waited for until healthy, and always stopped (SIGTERM, then SIGKILL), also at exit."""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import httpx

_LIVE: weakref.WeakSet[ManagedProcess] = weakref.WeakSet()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class ProcessError(RuntimeError):
    """A managed process failed to start; the message holds the tail of its log."""


class ManagedProcess:
    """A subprocess in its own process group, with its output in a log file."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        health_url: str | None = None,
        env: dict[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        startup_timeout: float = 20.0,
        log_path: str | os.PathLike[str] | None = None,
    ) -> None:
        self.argv = list(argv)
        self.health_url = health_url
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd
        self.startup_timeout = startup_timeout
        self.log_path = Path(log_path) if log_path else Path(
            tempfile.mkstemp(prefix="parity-proc-", suffix=".log")[1])
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> ManagedProcess:
        """Start and wait until healthy; ProcessError (with the log tail) otherwise."""
        log = self.log_path.open("ab")
        try:
            self.process = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.cwd,
                start_new_session=True, stdin=subprocess.DEVNULL,
            )
        finally:
            log.close()
        _LIVE.add(self)
        if self.health_url:
            self._wait_healthy()
        return self

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ProcessError(f"{self.argv[0]} exited with {self.process.returncode}:\n"
                                   f"{self.log_tail()}")
            try:
                if httpx.get(self.health_url, timeout=1.0, verify=False).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise ProcessError(f"{self.health_url} not healthy after {self.startup_timeout}s:\n"
                           f"{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        """The last lines the process wrote."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def signal(self, signum: int) -> None:
        """Send `signum` to the whole process group."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signum)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM the group, then SIGKILL after `timeout`; returns the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.process.wait(5)
        else:
            self.signal(signal.SIGKILL)  # children the leader left behind
        _LIVE.discard(self)
        return self.process.returncode

    def __enter__(self) -> ManagedProcess:
        return self.start() if self.process is None else self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


@atexit.register
def _stop_all() -> None:
    for process in list(_LIVE):
        process.stop(timeout=3.0)


class ReferenceApp(ManagedProcess):
    """A reference Cryptobot process; `base_url` is where it answers."""

    def __init__(self, argv: Sequence[str], base_url: str, **kw) -> None:
        super().__init__(argv, health_url=base_url + "/health", **kw)
        self.base_url = base_url


def start_reference_app(
    flavor: str,
    *,
    drifts: Sequence[str] = (),
    seed: int = 7,
    data_dir: str | os.PathLike[str] | None = None,
    host: str = "127.0.0.1",
    port: int | None = None,
    log_path: str | os.PathLike[str] | None = None,
) -> ReferenceApp:
    """Start `python -m reference_cryptobot` and wait until it answers /health."""
    port = port or free_port(host)
    data_dir = data_dir or tempfile.mkdtemp(prefix=f"reference-{flavor}-")
    argv = [sys.executable, "-m", "reference_cryptobot", "--flavor", flavor, "--host", host,
            "--port", str(port), "--seed", str(seed), "--data-dir", str(data_dir)]
    if drifts:
        argv += ["--drift", ",".join(drifts)]
    app = ReferenceApp(argv, f"http://{host}:{port}", log_path=log_path)
    return app.start()
