"""Replay throughput and memory against the reference app, with a baseline side by side.

    python bench/bench_replay.py [N ...]        (default: 10000 100000)

For each N, a recording of N exchanges (candle queries of many sessions, as the shadow proxy
writes them) is replayed against a Docker-flavour reference app. Baseline: the same requests sent
by a bare aiohttp loop with the same concurrency (no reading, comparing or judging): what the
target can serve, so the ratio shows what the replay's own work costs. Reported:
exchanges/s, the ratio to the baseline, and the peak RSS of the replay, run in a process of its
own, with its growth over the process's peak before the replay started: it must not grow with N
(the recording is streamed, never loaded).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import sys
import tempfile
import threading
import time
from pathlib import Path

import aiohttp
import httpx
import psutil

from harness.config import load_config
from harness.loop import run_async
from harness.model import Body, Exchange, Request, Response
from harness.processes import start_reference_app
from harness.replay.runner import ReplayTargets, replay_records
from harness.store.reader import iter_records
from harness.store.writer import SegmentWriter

CONCURRENCY = 32


def make_recording(directory: Path, base_url: str, n: int) -> None:
    paths = [f"/api/v1/data/ohlcv/binance/{s}/1h" for s in ("BTC-USDT", "ETH-USDT", "SOL-USDT")]
    answers = {p: httpx.get(base_url + p, params={"limit": "24"}) for p in paths}
    with SegmentWriter(directory) as writer:
        for i in range(n):
            path = paths[i % len(paths)]
            answer = answers[path]
            writer.write(Exchange(
                request=Request("GET", path, [("limit", "24")]),
                primary=Response(answer.status_code, list(answer.headers.items()),
                                 Body.from_bytes(answer.content), 2.0),
                session=f"client-{i % 64}",
            ))


async def baseline(base_url: str, records) -> float:
    """The same requests from a bare aiohttp loop (`CONCURRENCY` tasks pulling from the
    recording): what the target serves to the cheapest client."""
    started = time.perf_counter()
    records = iter(records)
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector) as client:
        async def pull() -> None:
            for record in records:
                async with client.get(base_url + record["request"]["path"],
                                      params=record["request"]["query"]) as answer:
                    await answer.read()

        await asyncio.gather(*(pull() for _ in range(CONCURRENCY)))
    return time.perf_counter() - started


def _replay_in_child(directory: str, base_url: str, results) -> None:
    """Replay `directory` in this (fresh) process; put (seconds, exchanges, RSS before the
    replay, peak RSS during it) on `results`, in bytes. RSS is sampled every 20 ms."""
    config = load_config()
    me = psutil.Process()
    before = peak = me.memory_info().rss
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.02):
            peak = max(peak, me.memory_info().rss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    stats = replay_records(iter_records(directory), config, ReplayTargets(base_url),
                           concurrency=CONCURRENCY)
    elapsed = time.perf_counter() - started
    done.set()
    sampler.join()
    results.put((elapsed, stats.total, before, max(peak, me.memory_info().rss)))


def replay_measured(directory: str, base_url: str) -> tuple[float, int, int, int]:
    """The replay in a child process of its own, so its peak memory is its own."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    child = context.Process(target=_replay_in_child, args=(directory, base_url, results))
    child.start()
    outcome = results.get()
    child.join()
    return outcome


def main(sizes: list[int]) -> None:
    app = start_reference_app("docker")
    print(f"{'exchanges':>10} {'replay/s':>10} {'baseline/s':>11} {'ratio':>6} "
          f"{'peak RSS MiB':>13} {'growth MiB':>11}")
    try:
        for n in sizes:
            with tempfile.TemporaryDirectory() as tmp:
                make_recording(Path(tmp), app.base_url, n)
                base_s = run_async(baseline(app.base_url, iter_records(tmp)))
                elapsed, total, before, peak = replay_measured(tmp, app.base_url)
                assert total == n, (total, n)
                print(f"{n:>10} {n / elapsed:>10.0f} {n / base_s:>11.0f} "
                      f"{base_s / elapsed:>6.2f} {peak / 2**20:>13.1f} "
                      f"{(peak - before) / 2**20:>11.1f}", flush=True)
    finally:
        app.stop()


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [10000, 100000])
