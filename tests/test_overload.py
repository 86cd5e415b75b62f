"""Overload with a bounded memory: mirrors arrive far faster (≥ 10×) than the candidate answers,
for a sustained period, and nothing grows. Real processes: a reference app as primary, a
stand-in candidate answering one request at a time after DELAY_S, the proxy and its worker as
subprocesses, client threads sending back to back. Proves that clients get every answer right
with no error, that the proxy and the worker stay under a memory bound computed from the
settings, that what could not be mirrored is dropped and counted (`dropped N` in the final
summary), and that the drops reach the report (the proxy's counters file, shown by `parity
report` in its "Not mirrored" section).

The bound (RSS, measured with psutil while the overload lasts; the peaks are printed, see
`pytest -s`):

    frame   = body + FRAME_OVERHEAD                      one pickled exchange on the pipe
    held    = min(queue_size * (EXPANSION * frame + PER_HELD), EXPANSION * MAX_HELD_BYTES)
    worker <= worker_baseline + held + PIPE_BYTES + READ_CHUNK + SLACK
    proxy  <= proxy_baseline + workers * frame + clients * EXPANSION * frame + SLACK

The pipe (`channel.PIPE_BYTES`, 1 MiB) is the bounded queue between the two; its bytes are the
kernel's, but the worker may have read up to one more pipe's worth (plus a `READ_CHUNK`) that is
not yet admitted. The worker holds at most `queue_size` exchanges and `MAX_HELD_BYTES` of frames
(`worker.Intake`), each decoded into an `Exchange` (EXPANSION × its frame, plus PER_HELD for the
objects, task and lane slot around it). The proxy holds at most one partly written frame per
worker and the flows of the clients being answered. SLACK covers the allocator and the HTTP
clients' pools. Baselines are measured after a warm-up, before the overload.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time

import httpx
import orjson
import psutil
import pytest
from support import Shadow, SlowCopy
from traffic import Load, counted, final_summary, wait_for

from harness.report import build_report
from harness.shadow.channel import PIPE_BYTES
from harness.shadow.worker import MAX_HELD_BYTES, READ_CHUNK
from harness.store.reader import segment_files

MiB = 1024 * 1024
PATH = "/api/v1/data/ohlcv/binance/BTC-USDT/1h"
PARAMS = {"limit": "100"}  # about 18 KB answers
QUEUE_SIZE = 500
MAX_INFLIGHT = 8
CLIENTS = 2
DELAY_S = 0.2  # the candidate answers one request at a time, each after this: ≤ 5 per second
FRAME_OVERHEAD = 4 * 1024  # request line, headers, timings, pickling
EXPANSION = 3  # an exchange decoded in memory vs its frame (bytes → text, headers as lists)
PER_HELD = 16 * 1024  # objects, task and lane slot around one held exchange
SLACK = 32 * MiB


class Peaks:
    """Samples the RSS of the proxy and of each of its workers until stopped; keeps the peaks."""

    def __init__(self, proxy: psutil.Process, workers: list[psutil.Process]) -> None:
        self.processes = {"proxy": proxy, **{f"worker {w.pid}": w for w in workers}}
        self.peaks = dict.fromkeys(self.processes, 0)
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Peaks:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            for name, process in self.processes.items():
                with contextlib.suppress(psutil.Error):
                    self.peaks[name] = max(self.peaks[name], process.memory_info().rss)
            self.samples += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def bounds(body: int, proxy_baseline: int, worker_baseline: int, workers: int
           ) -> tuple[int, int]:
    """(proxy bound, worker bound) in bytes, by the formula of the module docstring."""
    frame = body + FRAME_OVERHEAD
    held = min(QUEUE_SIZE * (EXPANSION * frame + PER_HELD), EXPANSION * MAX_HELD_BYTES)
    worker = worker_baseline + held + PIPE_BYTES + READ_CHUNK + SLACK
    proxy = proxy_baseline + workers * frame + CLIENTS * EXPANSION * frame + SLACK
    return proxy, worker


@pytest.fixture(scope="module")
def primary(reference_factory):
    """The primary: a Docker-flavour reference app."""
    return reference_factory("docker")


def saved_totals(shadow: Shadow) -> dict[str, int]:
    """The totals of the proxy's counters file so far (empty before its first write)."""
    files = list(shadow.recordings.glob("shadow-counters-*.json"))
    if not files:
        return {}
    try:
        return orjson.loads(files[0].read_bytes())["totals"]
    except (OSError, orjson.JSONDecodeError, KeyError):
        return {}


def mb(value: int) -> str:
    return f"{value / MiB:.1f} MiB"


@pytest.mark.parametrize("seconds", [
    pytest.param(5, id="5s"),
    pytest.param(15, id="15s", marks=pytest.mark.slow),
])
def test_overload_drops_and_counts_with_a_bounded_memory(tmp_path, primary, seconds):
    candidate = SlowCopy(primary.base_url, PATH, DELAY_S, params=PARAMS, one_at_a_time=True)
    expected = httpx.get(primary.base_url + PATH, params=PARAMS).content
    shadow = Shadow(tmp_path, primary.base_url, candidate.url, "--queue-size", str(QUEUE_SIZE),
                    "--max-inflight", str(MAX_INFLIGHT), "--timeout", "30", "--drain", "1")
    proxy = psutil.Process(shadow.process.pid)
    load: Load | None = None
    peaks: Peaks | None = None
    try:
        with httpx.Client(base_url=shadow.url) as client:  # warm up, then the baselines
            for _ in range(10):
                assert client.get(PATH, params=PARAMS).content == expected
        wait_for(lambda: candidate.answered >= 10, 30, "the warm-up mirrors")
        proxy_baseline = proxy.memory_info().rss
        worker_baseline = max(w.memory_info().rss for w in shadow.workers)
        peaks = Peaks(proxy, shadow.workers).start()
        load = Load(shadow.url, PATH, expected, params=PARAMS, threads=CLIENTS).start()
        started, answered_before = time.monotonic(), candidate.answered
        while time.monotonic() - started < seconds:  # the overload lasts this long
            assert shadow.process.running, shadow.log()[-2000:]
            time.sleep(0.2)
        # On a loaded machine the clients may not have filled the queue yet: go on until the
        # proxy's counters file (written every second) shows drops.
        wait_for(lambda: saved_totals(shadow).get("dropped", 0) > 0, 120,
                 f"drops: {shadow.log()[-2000:]}", interval=0.2)
        sent, elapsed = load.sent, time.monotonic() - started
        mirrored = candidate.answered - answered_before
        load.stop()
        peaks.stop()
    finally:
        if load is not None:
            load.stop()
        if peaks is not None:
            peaks.stop()
        try:
            shadow.stop()
        finally:
            candidate.close()
    log = shadow.process.log_path.read_text(errors="replace")
    summary = final_summary(log)
    dropped = counted(summary, "dropped")
    proxy_bound, worker_bound = bounds(len(expected), proxy_baseline, worker_baseline,
                                       len(shadow.workers))
    print(f"\noverload {seconds}s: {sent} answers in {elapsed:.1f}s ({sent / elapsed:.0f}/s), "
          f"the candidate answered {mirrored} ({mirrored / elapsed:.1f}/s): arriving "
          f"{sent / max(mirrored, 1):.0f}x faster; {summary}")
    print(f"  answer {len(expected)} bytes, queue-size {QUEUE_SIZE}, max-inflight "
          f"{MAX_INFLIGHT}, {peaks.samples} samples")
    print(f"  proxy:  baseline {mb(proxy_baseline)}, peak {mb(peaks.peaks['proxy'])}, "
          f"bound {mb(proxy_bound)}")
    for name, peak in peaks.peaks.items():
        if name != "proxy":
            print(f"  {name}: baseline {mb(worker_baseline)}, peak {mb(peak)}, "
                  f"bound {mb(worker_bound)}")

    assert load.errors == [], load.errors[:5]
    assert sent > 0 and dropped > 0, summary
    # Told to stop with a full queue, the worker abandons it at once (no straggler killed, no
    # mirror sent after its clients were closed).
    assert "did not stop" not in log and "Traceback" not in log, log[-3000:]
    assert peaks.samples > 0
    assert peaks.peaks["proxy"] <= proxy_bound
    for name, peak in peaks.peaks.items():
        assert name == "proxy" or peak <= worker_bound, (name, peak, worker_bound)

    # The drops are in the proxy's counters file and in the report.
    (counters_file,) = shadow.recordings.glob("shadow-counters-*.json")
    saved = orjson.loads(counters_file.read_bytes())
    assert saved["final"] is True and saved["totals"]["dropped"] == dropped
    assert all(path.suffix != ".json" for path in segment_files(shadow.recordings))
    report = tmp_path / "report.html"
    done = subprocess.run([sys.executable, "-m", "harness.cli", "report", str(shadow.recordings),
                           "--out", str(report)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    html = report.read_text()
    assert "Not mirrored" in html
    assert f'data-k="dropped" data-value="{dropped}"' in html


def test_the_not_mirrored_section_is_there_only_with_counters_files(tmp_path):
    """Without a shadow counters file beside the segments, the report has no "Not mirrored"
    section; with two (two proxy runs), it shows their sums, and a broken one is ignored."""
    segments = tmp_path / "rec"
    segments.mkdir()
    record = {"id": "x1", "route": "GET /health", "group": "", "verdict": "match",
              "request": {"method": "GET", "path": "/health", "query": [], "headers": [],
                          "body": {}},
              "primary": {"status": 200, "headers": [], "body": {"text": "ok"}},
              "candidate": {"status": 200, "headers": [], "body": {"text": "ok"}}}
    (segments / "shadow-w1-20240101T000000-1-0001.jsonl").write_bytes(orjson.dumps(record) + b"\n")
    out = tmp_path / "report.html"
    summary = build_report([segments], out)
    assert "not_mirrored" not in summary and "Not mirrored" not in out.read_text()

    for pid, dropped in ((11, 7), (12, 5)):
        (segments / f"shadow-counters-20240101T000000-{pid}.json").write_bytes(orjson.dumps(
            {"final": True, "totals": {"dropped": dropped, "worker-restarts": 1, "captured": 9}}))
    (segments / "shadow-counters-20240101T000000-13.json").write_text("{not json")
    summary = build_report([segments], out)
    html = out.read_text()
    assert summary["not_mirrored"]["dropped"] == 12
    assert summary["not_mirrored"]["worker-restarts"] == 2
    assert 'data-k="dropped" data-value="12"' in html
    assert 'data-k="too-large" data-value="0"' in html
    assert 'data-k="unaccounted"' not in html  # files without `answered` (older proxies)

    # A run whose outcomes do not add up to what it answered shows what is unaccounted.
    (segments / "shadow-counters-20240101T000000-14.json").write_bytes(orjson.dumps(
        {"final": True, "totals": {"answered": 40, "compared": 10, "skipped-by-policy": 2}}))
    summary = build_report([segments], out)
    html = out.read_text()
    assert summary["not_mirrored"]["answered"] == 40
    assert 'data-k="compared" data-value="10"' in html
    assert 'data-k="unaccounted" data-value="16"' in html  # 40 - (10 + 2 + 12 dropped)
