"""What `parity shadow --metrics` costs production: saturated throughput with the metrics on vs
off, measured side by side in one run (goal: on ≥ 0.97 × off).

    python bench/bench_metrics.py [--seconds 4] [--rounds 5] [--scrape-every 1]

Two shadow proxies with the same settings, one with `--metrics`, in front of the same primary
and a fast candidate (bench_shadow's upstreams, pinning and wrk run), take turns round after
round; medians are reported. While the proxy with metrics is loaded, /metrics is scraped every
--scrape-every seconds (1 s: fifteen times Prometheus's default rate, a pessimistic cost).
Needs Linux, 2 cores, taskset and wrk (apt-get install -y wrk).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from bench_shadow import count, saturated, settle, start_proxy, upstream

from harness.processes import ManagedProcess, free_port

GOAL = 0.97


class Scraper:
    """Scrapes `url` every `every` seconds in a thread while running; keeps the scrape times."""

    def __init__(self, url: str, every: float) -> None:
        self.url, self.every = url, every
        self.times_ms: list[float] = []
        self.sizes: list[int] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Scraper:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self._stop.wait(self.every):
                started = time.perf_counter()
                answer = client.get(self.url)
                self.times_ms.append((time.perf_counter() - started) * 1000)
                self.sizes.append(len(answer.content))

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=4, help="wrk duration of one run")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--scrape-every", type=float, default=1.0)
    args = parser.parse_args()
    if not shutil.which("wrk") or not shutil.which("taskset") or (os.cpu_count() or 1) < 2:
        sys.exit("needs wrk, taskset and 2 cores (apt-get install -y wrk util-linux)")
    work = Path(tempfile.mkdtemp(prefix="bench-metrics-"))
    started: list[ManagedProcess] = []
    rps: dict[str, list[float]] = {"off": [], "on": []}
    try:
        urls = []
        for _ in range(2):
            process, url = upstream(0.0)
            started.append(process)
            urls.append(url)
        primary, candidate = urls
        metrics_port = free_port()
        proxies = {}
        for name, extra in (("off", ()), ("on", ("--metrics", f"127.0.0.1:{metrics_port}"))):
            process, url = start_proxy("shadow", primary, candidate, work, extra)
            started.append(process)
            proxies[name] = url
        scraper = Scraper(f"http://127.0.0.1:{metrics_port}/metrics", args.scrape_every)
        for round_ in range(1, args.rounds + 1):
            for name in ("off", "on") if round_ % 2 else ("on", "off"):
                if name == "on":
                    with scraper:
                        result = saturated(proxies[name], args.seconds)
                else:
                    result = saturated(proxies[name], args.seconds)
                settle(candidate, 30.0)
                rps[name].append(result["rps"])
                print(f"  round {round_} metrics {name:<3} {result['rps']:8.0f} req/s  "
                      f"p99 {result['p99']:7.2f} ms  errors {result['errors']}", flush=True)
        off, on = statistics.median(rps["off"]), statistics.median(rps["on"])
        ratio = on / off
        print(f"\nsaturated req/s, median of {args.rounds}: metrics off {off:.0f}, on {on:.0f}: "
              f"{ratio:.3f} x")
        if scraper.times_ms:
            print(f"/metrics scraped {len(scraper.times_ms)} times under load: median "
                  f"{statistics.median(scraper.times_ms):.1f} ms, "
                  f"{statistics.median(scraper.sizes)} bytes; mirrors delivered "
                  f"{count(candidate)}")
        ok = ratio >= GOAL
        print(f"{'PASS' if ok else 'FAIL'}  saturated, metrics on ≥ {GOAL} × off: {ratio:.3f}")
        return 0 if ok else 1
    finally:
        for process in reversed(started):
            process.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
