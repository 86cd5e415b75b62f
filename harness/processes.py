"""Real processes for the demo, the tests and the benchmarks: each started in its own process
group, waited for until its health URL answers 200, and always stopped (SIGTERM to the group,
then SIGKILL), also at interpreter exit.

    with ManagedProcess([...], health_url="http://127.0.0.1:8001/health") as proc: ...
    app = start_reference_app("native", drifts=("tz-offset",), data_dir=tmp)  # app.base_url

This module launches the reference Cryptobot as `python -m reference_cryptobot`; it never
imports it.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx

POLL_INTERVAL_S = 0.05
BIND_RETRIES = 3
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST_CHOSEN_PORT = 10000


@functools.cache  # one pool for the process's life: `free_port`'s cursor walks it
def _port_pool() -> range | None:
    """The ports `free_port` walks: those between 10000 and the kernel's ephemeral range, where
    every connect() takes its local port (a port chosen there can be taken by any client before
    our server binds it). pytest-xdist workers choose ports at the same moments, so each walks its
    own residue class. None where the range cannot be read or leaves too little room."""
    try:
        low = int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    count = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1))
    index = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0) % count
    pool = range(LOWEST_CHOSEN_PORT + index, low, count)
    return pool if len(pool) >= 1000 else None


_port_lock = threading.Lock()
_port_cursor: int | None = None


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now, for a server about to start. Ports are handed out
    in turn from a random start in `_port_pool()`, so one process never gets the same port twice
    in a row and two test workers never get the same one; another process may still bind it
    first (a caller that must be sure retries on "address already in use")."""
    global _port_cursor
    pool = _port_pool()
    if pool is not None:
        with _port_lock:
            if _port_cursor is None:
                _port_cursor = random.randrange(len(pool))
            for _ in range(len(pool)):
                _port_cursor = (_port_cursor + 1) % len(pool)
                if _bindable(host, pool[_port_cursor]):
                    return pool[_port_cursor]
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _group_alive(pgid: int) -> bool:
    """Whether a process group has a member that is not a zombie (Linux: from /proc; elsewhere
    any member counts)."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
            return True
    return False


class ProcessError(RuntimeError):
    """A managed process did not come up; the message ends with the tail of its log."""


class _Registry:
    """Processes still running, stopped at interpreter exit (strong references: a process
    nobody holds any more must still be stopped)."""

    def __init__(self) -> None:
        self._live: set[ManagedProcess] = set()
        self._lock = threading.Lock()
        atexit.register(self.stop_all)

    def add(self, process: ManagedProcess) -> None:
        with self._lock:
            self._live.add(process)

    def discard(self, process: ManagedProcess) -> None:
        with self._lock:
            self._live.discard(process)

    def stop_all(self) -> None:
        with self._lock:
            live = list(self._live)
        for process in live:
            process.stop(timeout=3.0)


_REGISTRY = _Registry()


class ManagedProcess:
    """A subprocess in its own process group, its output in a log file.

    `start()` waits until `health_url` answers 200 (when given) and raises ProcessError with the
    log tail if the process exits first or does not become healthy within `startup_timeout`.
    `stop()` sends SIGTERM to the whole group, SIGKILL after a timeout, and kills stragglers the
    leader left behind. Usable as a context manager.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        health_url: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        startup_timeout: float = 20.0,
        log_path: str | os.PathLike[str] | None = None,
    ) -> None:
        self.argv = [str(arg) for arg in argv]
        self.health_url = health_url
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd
        self.startup_timeout = startup_timeout
        if log_path is None:
            handle, name = tempfile.mkstemp(prefix="parity-process-", suffix=".log")
            os.close(handle)
            log_path = name
        self.log_path = Path(log_path)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        """The process id (also its process group id)."""
        if self.process is None:
            raise ProcessError(f"{self.argv[0]} was never started")
        return self.process.pid

    @property
    def running(self) -> bool:
        """Whether the process was started and has not exited."""
        return self.process is not None and self.process.poll() is None

    def start(self, *, wait: bool = True) -> Self:
        """Start the process; with `wait`, return once it is healthy."""
        if self.process is not None:
            raise ProcessError(f"{self.argv[0]} was already started")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=self.env, cwd=self.cwd, start_new_session=True,
            )
        _REGISTRY.add(self)
        if wait:
            self.wait_healthy()
        return self

    def wait_healthy(self) -> None:
        """Poll `health_url` until it answers 200; stop the process and raise ProcessError if
        it exits first or the startup timeout passes."""
        if self.health_url is None:
            return
        deadline = time.monotonic() + self.startup_timeout
        with httpx.Client(timeout=1.0, trust_env=False) as client:
            while True:
                if not self.running:
                    code = self.process.returncode if self.process else None
                    self.stop()
                    raise ProcessError(f"{self._name()} exited with status {code} before it "
                                       f"was healthy; its log ({self.log_path}) ends:\n"
                                       f"{self.log_tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(self.health_url).status_code == 200:
                        return
                if time.monotonic() > deadline:
                    self.stop()
                    raise ProcessError(f"{self._name()}: {self.health_url} did not answer 200 "
                                       f"within {self.startup_timeout:g} s; its log "
                                       f"({self.log_path}) ends:\n{self.log_tail()}")
                time.sleep(POLL_INTERVAL_S)

    def _name(self) -> str:
        return " ".join(self.argv[:4]) + (" ..." if len(self.argv) > 4 else "")

    def log_tail(self, lines: int = 30) -> str:
        """The last lines the process wrote (stdout and stderr)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def signal(self, signum: int) -> None:
        """Send `signum` to the whole process group (if it still has members)."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signum)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM the group, SIGKILL it after `timeout` s; the leader's exit status (negative:
        killed by that signal), None if it was never started. Idempotent."""
        if self.process is None:
            return None
        deadline = time.monotonic() + timeout
        if self.process.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.process.wait(5.0)
        # Children the leader left in its group get the rest of the timeout, then SIGKILL.
        while _group_alive(self.process.pid) and time.monotonic() < deadline:
            time.sleep(POLL_INTERVAL_S)
        self.signal(signal.SIGKILL)
        _REGISTRY.discard(self)
        return self.process.returncode

    def __enter__(self) -> Self:
        return self.start() if self.process is None else self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


class ReferenceApp(ManagedProcess):
    """A reference Cryptobot process; `base_url` is where it answers."""

    def __init__(
        self,
        argv: Sequence[str],
        base_url: str,
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        startup_timeout: float = 20.0,
        log_path: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__(argv, health_url=base_url + "/health", env=env, cwd=cwd,
                         startup_timeout=startup_timeout, log_path=log_path)
        self.base_url = base_url


def reference_argv(flavor: str, *, port: int, drifts: Sequence[str] = (), seed: int = 7,
                   data_dir: str | os.PathLike[str], host: str = "127.0.0.1",
                   log_level: str = "warning") -> list[str]:
    """The command line of one reference Cryptobot process."""
    argv = [sys.executable, "-m", "reference_cryptobot", "--flavor", flavor, "--host", host,
            "--port", str(port), "--seed", str(seed), "--data-dir", str(data_dir),
            "--log-level", log_level]
    if drifts:
        argv += ["--drift", ",".join(drifts)]
    return argv


def start_reference_app(
    flavor: str,
    *,
    drifts: Sequence[str] = (),
    seed: int = 7,
    data_dir: str | os.PathLike[str] | None = None,
    host: str = "127.0.0.1",
    port: int | None = None,
    log_path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    startup_timeout: float = 20.0,
    wait: bool = True,
) -> ReferenceApp:
    """Start `python -m reference_cryptobot` and (with `wait`) return once /health answers.

    Without `port`, a free port is picked, and picked again if another process takes it first.
    Without `data_dir`, a fresh temporary directory holds its sqlite files.
    """
    data_dir = data_dir or tempfile.mkdtemp(prefix=f"reference-{flavor}-")
    attempts = 1 if port is not None or not wait else BIND_RETRIES
    for attempt in range(1, attempts + 1):
        chosen = port or free_port(host)
        app = ReferenceApp(
            reference_argv(flavor, port=chosen, drifts=drifts, seed=seed, data_dir=data_dir,
                           host=host),
            f"http://{host}:{chosen}", log_path=log_path, env=env,
            startup_timeout=startup_timeout,
        )
        try:
            return app.start(wait=wait)
        except ProcessError:
            if attempt == attempts or "address already in use" not in app.log_tail().lower():
                raise
    raise AssertionError("unreachable")
