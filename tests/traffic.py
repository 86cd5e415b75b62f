"""Helpers of the crash-safety and overload tests: steady client traffic through the shadow proxy,
deadline-bounded polling, and a check that recording segments are sound after a crash."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil

from harness.store.reader import ReadStats, iter_records, segment_files


def wait_for(condition: Callable[[], Any], timeout: float, what: str,
             interval: float = 0.05) -> Any:
    """Poll `condition` until it returns something truthy (returned); AssertionError naming
    `what` when `timeout` seconds pass first."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


class Load:
    """`threads` clients sending GET `path` through `url` back to back until stopped, each answer
    checked against `expected` (the primary's body). Failures are collected, not raised."""

    def __init__(self, url: str, path: str, expected: bytes, *,
                 params: Mapping[str, str] | None = None, threads: int = 2) -> None:
        self.url = url
        self.path = path
        self.params = dict(params or {})
        self.expected = expected
        self.sent = 0  # answered right
        self.errors: list[str] = []  # wrong answers and transport errors
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def start(self) -> Load:
        """Start the client threads."""
        for thread in self._threads:
            thread.start()
        return self

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self._stop.is_set():
                try:
                    answer = client.get(self.path, params=self.params)
                    ok = answer.status_code == 200 and answer.content == self.expected
                    error = "" if ok else f"HTTP {answer.status_code}: {answer.text[:200]}"
                except httpx.HTTPError as exc:
                    error = f"{type(exc).__name__}: {exc}"
                with self._lock:
                    if error:
                        self.errors.append(error)
                    else:
                        self.sent += 1
                if error:
                    time.sleep(0.05)  # the proxy is gone: do not spin

    def wait_sent(self, count: int, timeout: float = 60.0) -> None:
        """Wait until `count` answers (in all) were right."""
        wait_for(lambda: self.sent >= count, timeout, f"{count} answers through the proxy "
                 f"(got {self.sent}, errors {self.errors[:3]})")

    def stop(self) -> None:
        """Stop the clients and wait for them."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)


def gone(process: psutil.Process) -> bool:
    """Whether a process has exited (a zombie nobody reaped yet counts as exited)."""
    try:
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def check_segments(directory: Path) -> ReadStats:
    """Every line of every segment under `directory` is a JSON object, except at most a torn
    last line per segment (an interrupted write); the strict reader reads them all. Returns the
    reader's stats."""
    files = segment_files(directory)
    assert files, f"no segment under {directory}"
    for path in files:
        # The last piece is empty when the segment ends with a newline, else a torn last line.
        *lines, _torn = path.read_bytes().split(b"\n")
        for number, line in enumerate(lines, start=1):
            assert isinstance(orjson.loads(line), dict), f"{path}:{number}"
    stats = ReadStats()
    for _ in iter_records([directory], strict=True, stats=stats):
        pass
    assert stats.corrupt == 0 and stats.torn <= len(files), stats
    return stats


def records_in(paths: list[Path]) -> int:
    """Records the strict reader reads from these segment files."""
    return sum(1 for _ in iter_records(paths, strict=True)) if paths else 0


def final_summary(log: str) -> str:
    """The proxy's final counters line."""
    lines = [line for line in log.splitlines() if "(final)" in line]
    assert lines, log[-3000:]
    return lines[-1]


def counted(summary: str, name: str) -> int:
    """The count `name` in a counters summary line ("dropped 12" → 12), 0 when absent."""
    words = summary.replace(",", " ").replace("(", " ").split()
    for index, word in enumerate(words[:-1]):
        if word == name and words[index + 1].isdigit():
            return int(words[index + 1])
    return 0
