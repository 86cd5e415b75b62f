"""Crash safety of `parity shadow` under load, with real processes (reference apps as primary and
candidate, the proxy and its workers as subprocesses, client threads sending continuously):

- kill -9 of the proxy: its workers see their pipe end, finish, flush and exit on their own (no
  orphan is left); every segment line before a torn last line is valid JSON and the strict reader
  reads them; a restart on the same directory opens new segments and leaves every old file
  byte-for-byte unchanged; `parity report` over the directory still builds.
- kill -9 of a worker: clients see no error, the proxy restarts the worker (logged and counted as
  `worker-restarts`), recording goes on in a new segment, every segment stays readable, and what
  the dead worker held is counted abandoned: every answered request still has one outcome.
- a full recordings volume (a 2 MiB tmpfs when this runs as root and may mount; otherwise
  RLIMIT_FSIZE on the proxy and its workers, where writes fail with EFBIG): clients keep getting
  the primary's answers with no error, recording stops loudly once per worker ("RECORDING
  STOPPED"), the final counters show `not-recorded N` and the proxy exits cleanly.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import psutil
import pytest
from support import Shadow
from traffic import (
    Load,
    check_segments,
    counted,
    final_summary,
    gone,
    records_in,
    wait_for,
)

from harness.shadow import counters as c
from harness.store.reader import count_records, segment_files

PATH = "/api/v1/data/ohlcv/binance/BTC-USDT/1h"
SMALL = {"limit": "24"}  # about 4 KB: many records per second
LARGE = {"limit": "500"}  # about 90 KB: fills a small volume fast
FSIZE_LIMIT = 512 * 1024  # bytes a file may reach under RLIMIT_FSIZE (the proxy's log stays below)
TMPFS_SIZE = "2m"


@pytest.fixture(scope="module")
def apps(docker_pair):
    """The primary and the candidate: two Docker-flavour reference apps."""
    return docker_pair


def expected(primary: str, params: dict[str, str]) -> bytes:
    """The primary's answer, fetched directly."""
    return httpx.get(primary + PATH, params=params).content


def full_log(shadow: Shadow) -> str:
    """Everything the proxy and its workers logged."""
    return shadow.process.log_path.read_text(errors="replace")


def final_totals(shadow: Shadow) -> dict[str, int]:
    """The proxy's final counter totals; they must account for every request it answered."""
    (counters_file,) = shadow.recordings.glob("shadow-counters-*.json")
    saved = orjson.loads(counters_file.read_bytes())
    assert saved["final"] is True
    totals = saved["totals"]
    assert totals[c.ANSWERED] > 0 and c.accounted(totals) == totals[c.ANSWERED], totals
    return totals


def parity_report(recordings: Path, out: Path) -> subprocess.CompletedProcess[str]:
    """`parity report` over `recordings`, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "harness.cli", "report", str(recordings),
                           "--out", str(out)], capture_output=True, text=True, timeout=120)


def test_kill_9_of_the_proxy_loses_at_most_a_torn_line_and_a_restart_appends(tmp_path, apps):
    primary, candidate = (app.base_url for app in apps)
    shadow = Shadow(tmp_path, primary, candidate)
    recordings = shadow.recordings
    load = Load(shadow.url, PATH, expected(primary, SMALL), params=SMALL).start()
    try:
        load.wait_sent(50)
        wait_for(lambda: count_records(recordings) >= 30, 30, "30 recorded exchanges")
        os.kill(shadow.process.pid, signal.SIGKILL)
        shadow.process.process.wait(timeout=10)
        load.stop()
        # Nobody tells the workers: their pipe ends, they finish what they hold and exit.
        wait_for(lambda: all(gone(w) for w in shadow.workers), 20,
                 f"the workers to exit after the proxy died: {shadow.log()[-2000:]}")
    finally:
        load.stop()
        shadow.process.stop()
        for worker in shadow.workers:
            if not gone(worker):
                worker.kill()
    before = check_segments(recordings)
    assert before.records >= 30
    old = {path: path.read_bytes() for path in recordings.rglob("*") if path.is_file()}

    again = Shadow(tmp_path, primary, candidate, "--recordings", str(recordings))
    again.recordings = recordings
    try:
        with httpx.Client(base_url=again.url) as client:
            for _ in range(20):
                assert client.get(PATH, params=SMALL).content == load.expected
    finally:
        again.stop()
    for path, content in old.items():
        assert path.read_bytes() == content, f"{path} changed after the restart"
    new = [path for path in segment_files(recordings) if path not in old]
    assert new, "the restart wrote into an old segment"
    assert records_in(new) >= 21  # and the launcher's health check
    assert check_segments(recordings).records == before.records + records_in(new)

    report = tmp_path / "report.html"
    done = parity_report(recordings, report)
    assert done.returncode == 0, done.stderr
    assert report.is_file() and "Not mirrored" in report.read_text()


def test_kill_9_of_a_worker_costs_clients_nothing_and_recording_goes_on(tmp_path, apps):
    primary, candidate = (app.base_url for app in apps)
    shadow = Shadow(tmp_path, primary, candidate)
    proxy = psutil.Process(shadow.process.pid)
    (first,) = shadow.workers
    load = Load(shadow.url, PATH, expected(primary, SMALL), params=SMALL).start()
    replacement: psutil.Process | None = None
    try:
        wait_for(lambda: count_records(shadow.recordings) >= 30, 30, "30 recorded exchanges")
        first.kill()
        replacement = wait_for(
            lambda: next((p for p in proxy.children() if p.pid != first.pid), None), 20,
            f"a new worker: {shadow.log()[-2000:]}")
        sent = load.sent
        wait_for(lambda: records_in([p for p in segment_files(shadow.recordings)
                                     if p.name.startswith("shadow-w1.1-")]) >= 30, 30,
                 "30 exchanges recorded by the restarted worker")
        assert load.sent > sent
    finally:
        load.stop()
        try:
            shadow.stop()
        finally:
            if replacement is not None and not gone(replacement):
                replacement.kill()
    assert load.errors == [], load.errors[:5]
    assert replacement is not None and gone(replacement)
    log = full_log(shadow)
    assert f"worker w1 exited with status {-signal.SIGKILL}; starting another" in log, log[-3000:]
    assert counted(final_summary(log), "worker-restarts") == 1, final_summary(log)
    names = [path.name for path in segment_files(shadow.recordings)]
    assert any(n.startswith("shadow-w1-") for n in names), names
    assert any(n.startswith("shadow-w1.1-") for n in names), names
    check_segments(shadow.recordings)
    final_totals(shadow)


def _can_mount_tmpfs(directory: Path) -> bool:
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    directory.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs",
                           str(directory)], capture_output=True, timeout=30)
    return done.returncode == 0


@pytest.fixture
def full_volume(request, tmp_path) -> Iterator[tuple[str, Path]]:
    """(how, recordings directory): a small tmpfs when it can be mounted here, else a plain
    directory whose writers get an RLIMIT_FSIZE (set by the test once the processes run).
    The variant that is not used here is skipped; PARITY_TEST_DISK_FULL=rlimit forces the
    RLIMIT_FSIZE variant."""
    how = request.param
    directory = tmp_path / "volume"
    forced = os.environ.get("PARITY_TEST_DISK_FULL")
    if how == "tmpfs":
        if forced == "rlimit":
            pytest.skip("PARITY_TEST_DISK_FULL=rlimit")
        if not _can_mount_tmpfs(directory):
            pytest.skip("cannot mount a tmpfs here (not root, or no permission): the "
                        "RLIMIT_FSIZE variant covers it")
        try:
            yield how, directory
        finally:
            done = subprocess.run(["umount", str(directory)], capture_output=True, timeout=30)
            if done.returncode != 0:
                subprocess.run(["umount", "-l", str(directory)], capture_output=True, timeout=30)
        return
    if forced != "rlimit":
        probe = tmp_path / "probe"
        if _can_mount_tmpfs(probe):
            subprocess.run(["umount", str(probe)], capture_output=True, timeout=30)
            pytest.skip("a tmpfs can be mounted here: the tmpfs variant covers it")
    directory.mkdir()
    yield how, directory


@pytest.mark.parametrize("full_volume", ["tmpfs", "rlimit"], indirect=True)
def test_a_full_recordings_volume_stops_recording_loudly_and_costs_clients_nothing(
        tmp_path, apps, full_volume):
    how, recordings = full_volume
    primary, candidate = (app.base_url for app in apps)
    shadow = Shadow(tmp_path, primary, candidate, "--recordings", str(recordings))
    shadow.recordings = recordings
    load: Load | None = None
    try:
        if how == "rlimit":
            assert shadow.process.log_path.stat().st_size < FSIZE_LIMIT // 4
            # Python ignores SIGXFSZ: a write past the limit fails with EFBIG. Workers started
            # later (restarts) inherit the proxy's limit.
            for process in (psutil.Process(shadow.process.pid), *shadow.workers):
                process.rlimit(psutil.RLIMIT_FSIZE, (FSIZE_LIMIT, FSIZE_LIMIT))
        load = Load(shadow.url, PATH, expected(primary, LARGE), params=LARGE).start()
        wait_for(lambda: "RECORDING STOPPED" in full_log(shadow), 60,
                 f"recording to stop: {shadow.log()[-2000:]}")
        sent = load.sent
        load.wait_sent(sent + 50)  # production goes on after recording stopped
    finally:
        if load is not None:
            load.stop()
        shadow.stop()  # exits 0, no worker left, the segments read strictly
    assert load.errors == [], load.errors[:5]
    log = full_log(shadow)
    assert log.count("RECORDING STOPPED") == len(shadow.workers) == 1, log[-3000:]
    assert "RECORDING STOPPED: writing segment" in log
    assert counted(final_summary(log), "not-recorded") > 0, final_summary(log)
    check_segments(recordings)
    # The counters file cannot be written to the full volume: the final log line says it all.
    assert "in flight" not in final_summary(log), final_summary(log)
