"""Replay throughput and memory against the reference app, with a baseline side by side.

    python bench/bench_replay.py [N ...]        (default: 2000 10000)

For each N, a recording of N exchanges (candle queries of many sessions, as the shadow proxy
writes them) is replayed against a Docker-flavour reference app. Baseline: the same requests sent
by a bare aiohttp loop with the same concurrency (no reading, comparing or judging): what the
target can serve, so the ratio shows what the replay's own work costs. Reported:
exchanges/s, the ratio to the baseline, and the replay's peak Python memory (tracemalloc), which
must not grow with N.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import aiohttp
import httpx

from harness.config import load_config
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
    """The same requests from a bare aiohttp loop: what the target serves to the cheapest client."""
    started = time.perf_counter()
    limit = asyncio.Semaphore(CONCURRENCY)
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector) as client:
        async def one(record):
            async with limit, client.get(base_url + record["request"]["path"],
                                         params=record["request"]["query"]) as answer:
                await answer.read()

        await asyncio.gather(*(one(r) for r in records))
    return time.perf_counter() - started


def main(sizes: list[int]) -> None:
    app = start_reference_app("docker")
    config = load_config()
    print(f"{'exchanges':>10} {'replay/s':>10} {'baseline/s':>11} {'ratio':>6} {'peak MiB':>9}")
    try:
        for n in sizes:
            with tempfile.TemporaryDirectory() as tmp:
                make_recording(Path(tmp), app.base_url, n)
                base_s = asyncio.run(baseline(app.base_url, list(iter_records(tmp))))
                tracemalloc.start()
                started = time.perf_counter()
                stats = replay_records(iter_records(tmp), config, ReplayTargets(app.base_url),
                                       concurrency=CONCURRENCY)
                elapsed = time.perf_counter() - started
                peak = tracemalloc.get_traced_memory()[1]
                tracemalloc.stop()
                assert stats.total == n, stats
                print(f"{n:>10} {n / elapsed:>10.0f} {n / base_s:>11.0f} "
                      f"{(n / elapsed) / (n / base_s):>6.2f} {peak / 2**20:>9.1f}")
    finally:
        app.stop()


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [2000, 10000])
