"""Helpers shared by the tests that run the shadow proxy as a real process."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import psutil

from harness.processes import ManagedProcess, free_port
from harness.store.reader import iter_records

SHADOW = [sys.executable, "-m", "harness.cli", "shadow"]


class Shadow:
    """`parity shadow` as a subprocess on a free port, recording into its own directory."""

    def __init__(self, tmp_path: Path, primary: str, candidate: str, *extra: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.recordings = tmp_path / f"rec-{self.port}"
        argv = [*SHADOW, "--primary", primary, "--candidate", candidate, "--listen",
                f"127.0.0.1:{self.port}", "--recordings", str(self.recordings), *extra]
        self.process = ManagedProcess(argv, health_url=f"{self.url}/health",
                                      log_path=tmp_path / f"shadow-{self.port}.log").start()
        self.workers = psutil.Process(self.process.pid).children()

    def stop(self, signum: int = signal.SIGTERM) -> list[dict]:
        """Stop the proxy with `signum`; it must exit cleanly and leave no worker behind.
        Returns the recorded exchanges."""
        assert self.workers, "the proxy started no worker"
        self.process.process.send_signal(signum)
        assert self.process.process.wait(timeout=60) == 0, self.process.log_tail()
        for worker in self.workers:
            assert not worker.is_running() or worker.status() == psutil.STATUS_ZOMBIE
        return list(iter_records([self.recordings])) if self.recordings.exists() else []

    def log(self) -> str:
        return self.process.log_tail(200)
