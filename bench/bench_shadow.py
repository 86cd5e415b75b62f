"""The shadow proxy's cost, measured side by side in one run.

    python bench/bench_shadow.py [--seconds 5]

The proxy runs pinned to core 0; wrk, the upstreams and the mirror workers run on the other core.
Configurations: direct to the primary (baseline), plain `mitmdump --mode reverse`, and
`parity shadow` with the candidate fast, slow (500 ms) and down. Loads: saturated (wrk, 16
connections) and paced (~100 req/s from a Python client). Reported: throughput, p50/p99 latency,
the proxy's CPU µs per request, and the share of mirrors the candidate received.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

from harness.processes import ManagedProcess, free_port

HERE = Path(__file__).resolve().parent
PROXY_CORE, OTHER_CORES = "0", "1"


def upstream(delay: float = 0.0) -> tuple[ManagedProcess, str]:
    port = free_port()
    argv = ["taskset", "-c", OTHER_CORES, sys.executable, str(HERE / "upstream.py"), str(port),
            str(delay)]
    url = f"http://127.0.0.1:{port}"
    return ManagedProcess(argv, health_url=url + "/__count").start(), url


def proxy(kind: str, primary: str, candidate: str | None, recordings: Path) -> tuple:
    port = free_port()
    if kind == "mitmdump":
        argv = [str(Path(sys.executable).parent / "mitmdump"), "-q", "--mode",
                f"reverse:{primary}", "--listen-host", "127.0.0.1", "--listen-port", str(port)]
    else:
        argv = [sys.executable, "-m", "harness.cli", "shadow", "--primary", primary,
                "--candidate", candidate, "--listen", f"127.0.0.1:{port}",
                "--recordings", str(recordings), "--timeout", "2", "--queue-size", "20000"]
    process = ManagedProcess(["taskset", "-c", PROXY_CORE, *argv],
                             health_url=f"http://127.0.0.1:{port}/__count").start()
    return process, f"http://127.0.0.1:{port}"


def saturated(url: str, seconds: int) -> dict:
    out = subprocess.run(["taskset", "-c", OTHER_CORES, "wrk", "-t1", "-c16", f"-d{seconds}s",
                          "--latency", url + "/bench"], capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))

    def ms(label: str) -> float:
        value, unit = re.search(rf"{label}%\s+([\d.]+)(us|ms|s)", out).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    return {"rps": rps, "p50": ms("50"), "p99": ms("99"), "requests": total}


def paced(url: str, seconds: int, rate: float = 100.0) -> dict:
    async def run() -> list[float]:
        latencies: list[float] = []
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=16)) as client:
            async def one() -> None:
                started = time.perf_counter()
                await client.get(url + "/bench")
                latencies.append((time.perf_counter() - started) * 1000)

            tasks, start = [], time.perf_counter()
            for i in range(int(seconds * rate)):
                await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
                tasks.append(asyncio.create_task(one()))
            await asyncio.gather(*tasks)
        return sorted(latencies)

    os.sched_setaffinity(0, {int(OTHER_CORES)})
    latencies = asyncio.run(run())
    n = len(latencies)
    return {"rps": rate, "p50": latencies[n // 2], "p99": latencies[int(n * 0.99) - 1],
            "requests": n}


def count(url: str) -> int:
    return int(httpx.get(url + "/__count").text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=5)
    args = parser.parse_args()
    if not shutil.which("wrk") or not shutil.which("taskset") or (os.cpu_count() or 1) < 2:
        sys.exit("needs wrk, taskset and 2 cores (apt-get install wrk util-linux)")
    primary_proc, primary = upstream()
    fast_proc, fast = upstream()
    slow_proc, slow = upstream(0.5)
    down = f"http://127.0.0.1:{free_port()}"
    rows = []
    try:
        for name, kind, candidate in (("direct", None, None), ("mitmdump", "mitmdump", None),
                                      ("shadow, fast", "shadow", fast),
                                      ("shadow, slow 500 ms", "shadow", slow),
                                      ("shadow, down", "shadow", down)):
            for load in ("saturated", "paced"):
                recordings = Path(tempfile.mkdtemp(prefix="bench-shadow-"))
                before = count(candidate) if candidate in (fast, slow) else 0
                if kind is None:
                    process, url = None, primary
                else:
                    process, url = proxy(kind, primary, candidate, recordings)
                    cpu = psutil.Process(process.pid)
                    cpu_before = sum(p.cpu_times().user + p.cpu_times().system
                                     for p in [cpu, *cpu.children()] if "taskset" not in p.name()
                                     and p.pid == process.pid)
                result = (saturated if load == "saturated" else paced)(url, args.seconds)
                if process is not None:
                    spent = cpu.cpu_times().user + cpu.cpu_times().system - cpu_before
                    result["cpu_us"] = spent / max(result["requests"], 1) * 1e6
                    process.stop(timeout=120)
                if candidate in (fast, slow):
                    result["delivered"] = (count(candidate) - before) / max(result["requests"], 1)
                rows.append((name, load, result))
                shutil.rmtree(recordings, ignore_errors=True)
    finally:
        for process in (primary_proc, fast_proc, slow_proc):
            process.stop()
    base = {load: r for name, load, r in rows if name == "mitmdump"}
    print(f"{'configuration':<22} {'load':<10} {'req/s':>8} {'vs mitmdump':>11} {'p50 ms':>8} "
          f"{'p99 ms':>8} {'proxy µs/req':>13} {'mirrors':>8}")
    for name, load, r in rows:
        ratio = r["rps"] / base[load]["rps"] if load == "saturated" else float("nan")
        delivered = f"{r['delivered']:.1%}" if "delivered" in r else "-"
        cpu = f"{r['cpu_us']:.0f}" if "cpu_us" in r else "-"
        print(f"{name:<22} {load:<10} {r['rps']:>8.0f} {ratio:>11.2f} {r['p50']:>8.2f} "
              f"{r['p99']:>8.2f} {cpu:>13} {delivered:>8}")


if __name__ == "__main__":
    main()
